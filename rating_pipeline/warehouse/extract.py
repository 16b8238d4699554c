"""Reading one window's events, summed inside PostgreSQL (contract 3 and 6), and counting
the events no window holds.

The sums stay in the temp table ``window_sums`` (``sql/fill_window_sums.sql``), one row per
rollup of valid usage and rows of invalid usage; nothing per rollup crosses into Python:
only their totals (``sql/select_window_read.sql``) and the distinct (model, bases) keys,
for ``pricing.resolve`` (``sql/select_resolution_keys.sql``).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg._encodings import pg2pyenc  # psycopg's map of PostgreSQL encodings

from rating_pipeline import pricing
from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.pricebook.model import (
    FINE_TUNE_PREFIX,
    SERVICE_TIERS,
    TOKEN_CLASSES,
    PricebookVersion,
)
from rating_pipeline.records import BLANK_CHARACTERS, MAX_ID_LENGTH
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import WINDOWED_FROM, WINDOWED_UNTIL, Window


@dataclass(frozen=True)
class WindowRead:
    """What one rating read of its window's events, in one snapshot: every output must
    account for these amounts, and ``events_digest`` identifies the summed rows (equal
    digests read equal events, counted exactly). ``keys`` are the distinct (model_id,
    bases_key) of its rollups, each a question for ``pricing.resolve``."""

    events_digest: str
    event_count: int
    tokens: dict[str, int]
    max_ingested_at: datetime | None
    keys: tuple[tuple[str, str], ...]

    @property
    def amounts(self) -> tuple[int, ...]:
        """(events, then every token class's sum in TOKEN_CLASSES order)."""
        return self.event_count, *self.tokens.values()


def read_window_usage(
    conn: psycopg.Connection, window: Window, version: PricebookVersion
) -> WindowRead:
    """Sum the window's events (``start <= occurred_at < end``) into ``window_sums`` per
    service and context tier (``version``'s thresholds classify each event), merge each
    rollup of several bases into one row per tier, and return what was read.

    Runs in the caller's transaction; the table is dropped at its commit or rollback.
    """
    params = usage_params(conn, window, version)
    digest, events, *sums, max_ingested_at = fill_window_sums(conn, params)
    if any(total.is_nan() for total in sums):
        # A numeric(p, 0) count holds 'NaN', which passed as valid (NaN >= 0 in PostgreSQL):
        # sum again, telling such events apart (a cost no other window pays).
        conn.execute(DROP_WINDOW_SUMS)
        params["nan_counts"] = True
        digest, events, *sums, max_ingested_at = fill_window_sums(conn, params)
    keys = resolution_keys(conn)
    # A rollup of several bases needs a model with several; without one there is no merge.
    if len({model_id for model_id, _ in keys}) < len(keys):
        conn.execute(load_sql("merge_mixed_bases"))
        keys = resolution_keys(conn)
    # Sums of bigint are numeric of scale 0: int() is exact.
    return WindowRead(
        events_digest=str(digest),
        event_count=int(events),
        tokens={c: int(total) for c, total in zip(TOKEN_CLASSES, sums, strict=True)},
        max_ingested_at=max_ingested_at,
        keys=keys,
    )


DROP_WINDOW_SUMS = "DROP TABLE window_sums"


def fill_window_sums(conn: psycopg.Connection, params: dict[str, object]) -> tuple[Any, ...]:
    """Sum the window's events into a new temp table ``window_sums``; return
    ``select_window_read``'s row: the digest, the event count, every class's sum and the
    latest ingested_at."""
    conn.execute(load_sql("fill_window_sums"), params)
    row = conn.execute(load_sql("select_window_read")).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return tuple(row)


def usage_params(
    conn: psycopg.Connection, window: Window, version: PricebookVersion
) -> dict[str, object]:
    """The values ``fill_window_sums.sql`` binds: the window, and what classifies its events
    (the version's context thresholds, the service tiers, the blank characters the
    warehouse's encoding can hold, the longest id), 'NaN' counts not yet told apart."""
    thresholds = pricing.context_thresholds(version)
    # The listed models an event can find a threshold by: those with one and, when unlisted
    # fine-tunes take their base's, the listed fine-tunes, which never do.
    listed = {
        model_id: above
        for model_id, above in thresholds.listed.items()
        if above is not None or (thresholds.event_bases and model_id.startswith(FINE_TUNE_PREFIX))
    }
    return {
        "start": window.start,
        "end": window.end,
        "listed_models": list(listed),
        "listed_thresholds": list(listed.values()),
        "event_bases": list(thresholds.event_bases),
        "base_thresholds": list(thresholds.event_bases.values()),
        "fine_tune_prefix": FINE_TUNE_PREFIX,
        "service_tiers": list(SERVICE_TIERS),
        "blank_characters": blank_characters(conn),
        "max_id_length": MAX_ID_LENGTH,
        "nan_counts": False,
    }


def undated_events(conn: psycopg.Connection) -> int:
    """How many events no window holds, so no rating reads: no occurred_at, or one outside
    the instants a window can hold (``windows.WINDOWED_FROM``)."""
    bounds = {"windowed_from": WINDOWED_FROM, "windowed_until": WINDOWED_UNTIL}
    row = conn.execute(load_sql("select_undated_events"), bounds).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return int(row[0])


def blank_characters(conn: psycopg.Connection) -> str:
    """The BLANK_CHARACTERS both the warehouse's encoding and the client's hold: an id
    cannot hold the others, and sending one would fail the statement, on the client or in
    the server's conversion."""
    codecs = (conn.info.encoding, _server_codec(conn))
    return "".join(c for c in BLANK_CHARACTERS if all(_encodes(c, codec) for codec in codecs))


class UnstorablePricebook(RatingPipelineError):
    """A pricebook version holds text the warehouse's encoding cannot store."""


def require_storable(conn: psycopg.Connection, version: PricebookVersion) -> None:
    """Raise UnstorablePricebook, before a window is read, when the version's name, a model
    id or a declared base is text the warehouse's encoding cannot hold (a LATIN1 warehouse,
    an en dash): binding it would fail every window the version rates, in a bare encoding
    error. Every text is storable in a UTF8 warehouse."""
    codec = _server_codec(conn)
    if codecs.lookup(codec).name == "utf-8":
        return
    texts = [version.version, *version.models]
    texts += [m.derived_from for m in version.models.values() if m.derived_from is not None]
    unstorable = [text for text in texts if not _encodes(text, codec)]
    if unstorable:
        encoding = conn.info.parameter_status("server_encoding")
        raise UnstorablePricebook(
            f"pricebook version {version.version!r} ({version.source_file}) holds text the "
            f"warehouse's encoding {encoding} cannot store: "
            f"{', '.join(repr(text) for text in unstorable[:5])}"
            f"{f' and {len(unstorable) - 5} more' if len(unstorable) > 5 else ''}; "
            "nothing rated: rename it, or rate into a UTF8 warehouse"
        )


def _server_codec(conn: psycopg.Connection) -> str:
    """The Python codec of the warehouse's encoding; ASCII where Python has none."""
    try:
        return pg2pyenc((conn.info.parameter_status("server_encoding") or "SQL_ASCII").encode())
    except psycopg.NotSupportedError:
        return "ascii"


def _encodes(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def resolution_keys(conn: psycopg.Connection) -> tuple[tuple[str, str], ...]:
    """The distinct (model_id, bases_key) of the rollups in ``window_sums``."""
    return tuple(conn.execute(load_sql("select_resolution_keys")))


def parse_bases_key(bases_key: str) -> frozenset[str | None]:
    """The distinct base_model values of a ``bases_key`` (a JSON array; null is a value)."""
    bases = json.loads(bases_key)
    if not isinstance(bases, list) or not all(b is None or isinstance(b, str) for b in bases):
        raise ValueError(f"bases_key {bases_key!r} is not a JSON array of strings and nulls")
    return frozenset(bases)
