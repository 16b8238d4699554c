"""Reading one window's events, summed inside PostgreSQL (contract 3 and 6).

The sums stay in the temp table ``window_sums`` (``sql/fill_window_sums.sql``), one row per
rollup of valid usage and rows of invalid usage; nothing per rollup crosses into Python.
Only the distinct (model, bases) keys do, for ``pricing.resolve``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg

from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window


@dataclass(frozen=True)
class WindowRead:
    """What one rating read of its window's events, in one snapshot: every output must
    account for these amounts, and ``events_digest`` identifies the summed rows (equal
    digests read equal events, counted exactly)."""

    events_digest: str
    event_count: int
    input_tokens: int
    output_tokens: int
    max_ingested_at: datetime | None

    @property
    def amounts(self) -> tuple[int, int, int]:
        """(events, input tokens, output tokens)."""
        return self.event_count, self.input_tokens, self.output_tokens


def read_window_usage(conn: psycopg.Connection, window: Window) -> WindowRead:
    """Sum the window's events (``start <= occurred_at < end``) into ``window_sums``, with
    every rollup's bases in one row, and return what was read.

    Runs in the caller's transaction; the table is dropped at its commit or rollback.
    """
    conn.execute(load_sql("create_window_sums"))
    row = conn.execute(
        load_sql("fill_window_sums"), {"start": window.start, "end": window.end}
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    digest, events, input_tokens, output_tokens, max_ingested_at, multi_base = row
    if multi_base:
        conn.execute(load_sql("merge_mixed_bases"))
    # Sums of bigint are numeric of scale 0: int() is exact.
    return WindowRead(
        events_digest=str(digest),
        event_count=int(events),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        max_ingested_at=max_ingested_at,
    )


def resolution_keys(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """The distinct (model_id, bases_key) of the rollups in ``window_sums``."""
    return list(conn.execute(load_sql("select_resolution_keys")))


def parse_bases_key(bases_key: str) -> frozenset[str | None]:
    """The distinct base_model values of a ``bases_key`` (a JSON array; null is a value)."""
    bases = json.loads(bases_key)
    if not isinstance(bases, list) or not all(b is None or isinstance(b, str) for b in bases):
        raise ValueError(f"bases_key {bases_key!r} is not a JSON array of strings and nulls")
    return frozenset(bases)
