"""Extraction: one window's billing events, summed inside PostgreSQL (contract 3 and 6).

The sums stay in the database, in the temp table ``window_usage`` that the rest of the
rating reads (``sql/create_window_usage.sql``, then ``sql/merge_mixed_bases.sql``): one row
per rollup (auth_id, model_id) of valid usage, with the distinct base_model values of its
events, and rows of invalid usage. ``extract_window_usage`` reads them back, invalid usage
summed per (auth_id, model_id, problems), for tests and inspection only.
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


def create_window_usage(conn: psycopg.Connection, window: Window) -> None:
    """Sum the window's events (``start <= occurred_at < end``) into the temp table
    ``window_usage``, one row per (auth_id, model_id, base_model, problem_bits).

    One statement, so one snapshot, in the caller's transaction; the table is dropped at its
    commit or rollback. No group crosses into Python.
    """
    conn.execute(load_sql("create_window_usage"), {"start": window.start, "end": window.end})


def extract_window_usage(conn: psycopg.Connection, window: Window) -> WindowUsage:
    """The sums ``create_window_usage`` computes, decoded (for tests and inspection),
    with the bases of every rollup filled in as a rating fills them.

    Runs in a savepoint that is rolled back, so the temp table is gone afterwards and the
    caller's transaction is left as it was.
    """
    with conn.transaction(force_rollback=True):
        create_window_usage(conn, window)
        conn.execute(load_sql("merge_mixed_bases"))
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
