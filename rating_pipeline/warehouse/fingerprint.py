"""What a rating's output is a function of, digested: the input fingerprint of a window.

A rating's output (every column of ``rated_usage`` and ``rating_exception`` but rated_at and
run_id) is determined by the window's events, as summed in one snapshot, and by its
context: the code that rates them (this release's sources and statements, and the versions
of the libraries and server that run them), the schema they write to, the pricebook
version as parsed (every field the rules read), the values the reconcile statements bind
(``reconcile.output_values``: the window, the pricebook version and the sha256 of its file,
the names of the problems and reasons) and what Python renders into the checksum. The
fingerprint is the digest of both parts. Two ratings of a window with equal fingerprints
produce equal outputs; the engine uses that to leave a window whose inputs did not change
without writing or comparing anything (``engine.latest_rating``).

The context is digested here, before the events are read (``input_context``). The events
are digested in SQL by the statement that sums them (``sql/fill_window_usage.sql``): every
summed row rendered injectively and hashed twice (2 x 64 bits), the hashes summed. The
rules (``pricing.resolve``) are not asked for their answers: they are a function of the
parsed pricebook and of the release, both in the context.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from collections.abc import Mapping
from importlib import metadata, resources
from importlib.resources.abc import Traversable

import psycopg

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import canonical_fields
from rating_pipeline.warehouse.reconcile import output_values
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window

# Bumped if what the fingerprint covers, or how it is rendered, ever changes.
FINGERPRINT_SCHEME = "rating-input-v2"
SCHEMA_REVISION = "SELECT version_num FROM alembic_version"
# The libraries whose behaviour reaches the output: the pricebook parser and the driver
# that carries Decimal values to numeric.
OUTPUT_LIBRARIES = ("PyYAML", "psycopg")


def source_digest(package: Traversable) -> str:
    """SHA-256 of every Python source under ``package`` (by relative path, bytes)."""
    digest = hashlib.sha256()
    sources: list[tuple[str, bytes]] = []
    pending: list[tuple[str, Traversable]] = [("", package)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                if entry.name != "__pycache__":
                    pending.append((f"{prefix}{entry.name}/", entry))
            elif entry.name.endswith(".py"):
                sources.append((prefix + entry.name, entry.read_bytes()))
    for path, text in sorted(sources):
        digest.update(canonical_fields(path, len(text)).encode() + b"\n" + text)
    return digest.hexdigest()


@functools.cache
def statements_digest() -> str:
    """SHA-256 of every statement the warehouse runs (``sql/*.sql``, by name).

    The texts are those ``load_sql`` serves (and caches), all loaded here at once: what is
    digested is what runs, even if the package's files are replaced while the process lives.
    """
    digest = hashlib.sha256()
    folder = resources.files("rating_pipeline.warehouse").joinpath("sql")
    names = sorted(entry.name[: -len(".sql")] for entry in folder.iterdir()
                   if entry.name.endswith(".sql"))  # fmt: skip
    for name in names:
        digest.update(canonical_fields(name, load_sql(name)).encode() + b"\n")
    return digest.hexdigest()


def compute_release_digest() -> str:
    """What identifies the code that rates: the package's Python sources and statements,
    the Python version and the versions of ``OUTPUT_LIBRARIES``.

    Any change to how the output is computed (a fix to the rules included) is a change to
    them, so no window is left as an earlier release wrote it. Raises if the package has
    no Python sources to digest (an install of compiled files only).
    """
    package = resources.files("rating_pipeline")
    if not package.joinpath("warehouse", "fingerprint.py").is_file():
        raise RatingPipelineError(
            "the rating_pipeline package has no Python sources to fingerprint the release by"
        )
    versions = [canonical_fields(name, metadata.version(name)) for name in OUTPUT_LIBRARIES]
    lines = [
        source_digest(package),
        statements_digest(),
        canonical_fields("python", platform.python_version()),
        *versions,
    ]
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


# Taken when the warehouse's engine is imported, with the code it runs: files replaced
# under a running process are not seen until it restarts, as its code is not reloaded.
RELEASE_DIGEST = compute_release_digest()


def release_digest() -> str:
    """``compute_release_digest`` as of this process's import of the warehouse."""
    return RELEASE_DIGEST


def pricebook_lines(version: PricebookVersion) -> list[str]:
    """The parsed version, every field the rules read, one canonical line per field or
    model (by model id): what the rules answer from, whatever built the version."""
    lines = [
        canonical_fields(
            "pricebook", version.version, version.effective_from, version.currency,
            version.fine_tune_multiplier,
        ),
    ]  # fmt: skip
    for model_id in sorted(version.models):
        entry = version.models[model_id]
        rate = entry.own_rate
        lines.append(
            canonical_fields(
                "model", model_id, None if rate is None else rate.input_per_mtok,
                None if rate is None else rate.output_per_mtok, entry.derived_from,
                entry.multiplier,
            )
        )  # fmt: skip
    return lines


def input_context(
    conn: psycopg.Connection,
    window: Window,
    version: PricebookVersion,
    checksum: Mapping[str, object],
) -> str:
    """The digest of everything a rating's output depends on but the events.

    ``checksum`` is what Python renders into the checksum (its header lines), so that a
    checksum carried with unchanged inputs is one this release computes. Reads the schema
    revision in the rating's transaction.
    """
    revision = conn.execute(SCHEMA_REVISION).fetchone()
    bound = sorted(output_values(window, version).items())
    lines = [
        canonical_fields(FINGERPRINT_SCHEME, release_digest()),
        canonical_fields("schema", None if revision is None else revision[0]),
        canonical_fields("server", conn.info.server_version),
        *pricebook_lines(version),
        *(canonical_fields("bound", name, value) for name, value in bound),
        *(canonical_fields("checksum", name, value) for name, value in sorted(checksum.items())),
    ]  # fmt: skip
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def input_fingerprint(context: str, events_digest: str) -> str:
    """The fingerprint of one rating's inputs, from ``input_context`` and the digest of the
    events (``fill_window_usage.sql``): equal fingerprints, equal outputs."""
    line = canonical_fields(FINGERPRINT_SCHEME, context, events_digest)
    return hashlib.sha256(f"{line}\n".encode()).hexdigest()
