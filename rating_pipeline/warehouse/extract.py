"""Extraction: one window's billing events, summed inside PostgreSQL (contract 3 and 6).

The sums stay in the database, in the temp table ``window_usage`` that the rest of the
rating reads (``sql/fill_window_usage.sql``, then ``sql/merge_mixed_bases.sql``): one row
per rollup (auth_id, model_id) of valid usage, with the distinct base_model values of its
events, and rows of invalid usage. The statement that sums them also digests them and
returns what was read (``WindowRead``). ``extract_window_usage`` reads the rows back,
invalid usage summed per (auth_id, model_id, problems), for tests and inspection only.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime

import psycopg

from rating_pipeline.records import PROBLEM_BITS
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window


@dataclass(frozen=True)
class UsageSum:
    """One row of ``window_usage``: a rollup (``problems`` empty; ``bases`` the distinct
    base_model values of its events) or one kind of invalid usage (``bases`` None)."""

    auth_id: str
    model_id: str
    bases: frozenset[str | None] | None
    event_count: int
    input_tokens: int
    output_tokens: int
    problems: frozenset[str]


@dataclass(frozen=True)
class WindowUsage:
    """One window's usage sums, and the latest ``ingested_at`` among its events."""

    window: Window
    groups: tuple[UsageSum, ...]
    max_ingested_at: datetime | None

    @property
    def event_count(self) -> int:
        return sum(group.event_count for group in self.groups)

    @property
    def input_tokens(self) -> int:
        return sum(group.input_tokens for group in self.groups)

    @property
    def output_tokens(self) -> int:
        return sum(group.output_tokens for group in self.groups)


@functools.cache
def decode_problems(bits: int) -> frozenset[str]:
    """The names of the problems set in ``bits`` (records.PROBLEM_BITS)."""
    unknown = bits & ~sum(PROBLEM_BITS)
    if unknown:
        raise ValueError(f"unknown problem bits {unknown} in {bits}")
    return frozenset(name for bit, name in PROBLEM_BITS.items() if bits & bit)


@dataclass(frozen=True)
class WindowRead:
    """What one rating read of its window's events: every output must account for these
    amounts (``amounts``), and ``events_digest`` identifies the summed rows.

    ``written``: whether ``window_usage`` holds them (False only when the digest was the
    unchanged one the caller passed); ``multi_base_rollups``: the rollups whose events carry
    several bases, to merge (None when nothing was written).
    """

    events_digest: str
    event_count: int
    input_tokens: int
    output_tokens: int
    max_ingested_at: datetime | None
    written: bool
    multi_base_rollups: int | None

    @property
    def amounts(self) -> tuple[int, int, int]:
        """(events, input tokens, output tokens)."""
        return self.event_count, self.input_tokens, self.output_tokens


def create_window_usage(
    conn: psycopg.Connection, window: Window, unchanged_digest: str | None = None
) -> WindowRead:
    """Sum the window's events (``start <= occurred_at < end``) into the temp table
    ``window_usage``, one row per (auth_id, model_id, base_model, problem_bits), unless
    their digest is ``unchanged_digest``: then the table is created but left empty.

    One statement reads the events, so one snapshot, in the caller's transaction; the table
    is dropped at its commit or rollback. No group crosses into Python.
    """
    conn.execute(load_sql("create_window_usage"))
    row = conn.execute(
        load_sql("fill_window_usage"),
        {"start": window.start, "end": window.end, "unchanged_digest": unchanged_digest},
    ).fetchone()
    assert row is not None
    digest, events, input_tokens, output_tokens, max_ingested_at, written, multi_base = row
    # Sums of bigint are numeric of scale 0: int() is exact.
    return WindowRead(
        events_digest=str(digest),
        event_count=int(events),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        max_ingested_at=max_ingested_at,
        written=bool(written),
        multi_base_rollups=None if multi_base is None else int(multi_base),
    )


def merge_mixed_bases(conn: psycopg.Connection) -> None:
    """Merge the per-base rows of each rollup whose events carry several bases into one row
    with the bases_key of them all (``sql/merge_mixed_bases.sql``)."""
    conn.execute(load_sql("merge_mixed_bases"))


def resolution_keys(conn: psycopg.Connection) -> tuple[tuple[str, str], ...]:
    """The distinct (model_id, bases_key) of the rollups in ``window_usage``, once merged."""
    return tuple(
        (model_id, bases_key) for model_id, bases_key in conn.execute(
            load_sql("select_resolution_keys")
        )
    )  # fmt: skip


def extract_window_usage(conn: psycopg.Connection, window: Window) -> WindowUsage:
    """The sums ``create_window_usage`` computes, decoded (for tests and inspection),
    with the bases of every rollup filled in as a rating fills them.

    Runs in a savepoint that is rolled back, so the temp table is gone afterwards and the
    caller's transaction is left as it was.
    """
    with conn.transaction(force_rollback=True):
        create_window_usage(conn, window)
        merge_mixed_bases(conn)
        rows = conn.execute(load_sql("select_window_usage")).fetchall()
    groups: list[UsageSum] = []
    max_ingested_at: datetime | None = None
    for auth_id, model_id, bits, bases_key, count, input_sum, output_sum, latest in rows:
        bases = None if bases_key is None else parse_bases_key(bases_key)
        # Sums of bigint are numeric of scale 0: int() is exact.
        groups.append(
            UsageSum(
                auth_id, model_id, bases, int(count), int(input_sum), int(output_sum),
                decode_problems(bits),
            )
        )  # fmt: skip
        if max_ingested_at is None or latest > max_ingested_at:
            max_ingested_at = latest
    return WindowUsage(window=window, groups=tuple(groups), max_ingested_at=max_ingested_at)


def parse_bases_key(bases_key: str) -> frozenset[str | None]:
    """The distinct base_model values of a ``bases_key`` (a JSON array; null is a value)."""
    bases = json.loads(bases_key)
    if not isinstance(bases, list) or not all(b is None or isinstance(b, str) for b in bases):
        raise ValueError(f"bases_key {bases_key!r} is not a JSON array of strings and nulls")
    return frozenset(bases)
