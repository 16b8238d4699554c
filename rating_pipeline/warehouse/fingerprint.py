"""What a rating's output is a function of, digested: the input fingerprint of a window.

A rating's output (every column of ``rated_usage`` and ``rating_exception`` but rated_at and
run_id) is determined by: the rows of ``window_usage`` (the window's events summed, in one
snapshot), the rules' answer for each (model_id, bases) key, the values the reconcile
statements bind (``reconcile.output_values``: the window, the pricebook version and its
sha256, the names of the problems and reasons), the statements that compute it and the
schema they write to. The fingerprint digests all of them. Two ratings of a window with
equal fingerprints produce equal outputs; the engine uses that to leave a window whose
inputs did not change without comparing its rows again (``engine.find_unchanged_rating``).

``window_usage`` is digested in SQL, without sorting or sending its rows: each row is
rendered injectively (text fields length-prefixed, NULL told apart from empty) and hashed
twice with independent seeds (``hashtextextended``, 64 bits each); the hashes are summed
per resolution key (exact numeric sums, no wrap-around). A sum of per-row hashes does not
depend on row order, and because each hash covers the whole row, values swapped between
rows change it (a sum of per-column hashes would not see the swap). Any difference between
two windows' rows goes unseen only if both 64-bit sums collide at once. Python adds the
per-key sums, the rules' answers and the rest into one SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg

from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import canonical_fields
from rating_pipeline.warehouse.reconcile import output_values
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window

# Bumped if what the fingerprint covers, or how it is rendered, ever changes.
FINGERPRINT_SCHEME = "rating-input-v1"
SCHEMA_REVISION = "SELECT version_num FROM alembic_version"


@dataclass(frozen=True)
class UsageGroup:
    """The rows of ``window_usage`` sharing a resolution key, and their two hash sums.

    ``is_rollup``: valid rows (problem_bits = 0), which the rules price by
    (model_id, bases_key); a rollup with a NULL ``bases_key`` still awaits its bases merge.
    """

    model_id: str
    bases_key: str | None
    is_rollup: bool
    rows: int
    digest_1: int
    digest_2: int


def select_usage_groups(conn: psycopg.Connection) -> tuple[UsageGroup, ...]:
    """``window_usage`` grouped by resolution key, each group with its row-hash sums."""
    return tuple(
        UsageGroup(model_id, bases_key, is_rollup, int(rows), int(digest_1), int(digest_2))
        for model_id, bases_key, is_rollup, rows, digest_1, digest_2 in conn.execute(
            load_sql("select_usage_groups")
        )
    )


@functools.cache
def statements_digest() -> str:
    """SHA-256 of every statement the warehouse runs (``sql/*.sql``, by name).

    A change to how the output is computed changes every fingerprint, so no window is left
    as a rating under the old statements wrote it. The texts are those ``load_sql`` serves
    (and caches), all loaded here at once: what is digested is what runs, even if the
    package's files are replaced while the process lives.
    """
    digest = hashlib.sha256()
    folder = resources.files("rating_pipeline.warehouse").joinpath("sql")
    names = sorted(entry.name[: -len(".sql")] for entry in folder.iterdir()
                   if entry.name.endswith(".sql"))  # fmt: skip
    for name in names:
        digest.update(canonical_fields(name, load_sql(name)).encode() + b"\n")
    return digest.hexdigest()


def input_fingerprint(
    conn: psycopg.Connection,
    window: Window,
    version: PricebookVersion,
    groups: Iterable[UsageGroup],
    resolution: Sequence[Sequence[object]],
    checksum: Mapping[str, object],
) -> str:
    """The fingerprint of one rating's inputs: equal fingerprints, equal outputs.

    ``groups`` from ``select_usage_groups`` (after the bases merge), ``resolution`` the rows
    COPYed into ``window_resolution``, ``checksum`` what Python renders into the checksum
    (its header lines), so that a checksum carried with unchanged inputs is one this
    release computes; runs in the rating's transaction.
    """
    revision = conn.execute(SCHEMA_REVISION).fetchone()
    bound = sorted(output_values(window, version).items())
    lines = [
        canonical_fields(
            FINGERPRINT_SCHEME, statements_digest(), None if revision is None else revision[0],
        ),
        *(canonical_fields("bound", name, value) for name, value in bound),
        *(canonical_fields("checksum", name, value) for name, value in sorted(checksum.items())),
        *sorted(
            canonical_fields(
                "usage", g.model_id, g.bases_key, int(g.is_rollup), g.rows, g.digest_1,
                g.digest_2,
            )
            for g in groups
        ),
        *sorted(canonical_fields("resolution", *row) for row in resolution),
    ]  # fmt: skip
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()
