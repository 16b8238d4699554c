"""Extraction: one window's billing events, summed inside PostgreSQL (contract 3 and 6).

The groups stay in the database, in the temp table ``window_usage`` that the rest of the
rating reads (``sql/create_window_usage.sql``); ``extract_window_usage`` reads them back
for tests and inspection only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

import psycopg

from rating_pipeline.records import PROBLEM_BITS, UsageGroup
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window


@dataclass(frozen=True)
class WindowUsage:
    """One window's usage groups, and the latest ``ingested_at`` among its events."""

    window: Window
    groups: tuple[UsageGroup, ...]
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
    """The groups ``create_window_usage`` computes, decoded (for tests and inspection).

    Runs in a savepoint that is rolled back, so the temp table is gone afterwards and the
    caller's transaction is left as it was.
    """
    with conn.transaction(force_rollback=True):
        create_window_usage(conn, window)
        rows = conn.execute(load_sql("select_window_usage")).fetchall()
    groups: list[UsageGroup] = []
    max_ingested_at: datetime | None = None
    for auth_id, model_id, base_model, bits, count, input_sum, output_sum, latest in rows:
        # Sums of bigint are numeric of scale 0: int() is exact.
        groups.append(
            UsageGroup(
                auth_id, model_id, base_model, int(count), int(input_sum), int(output_sum),
                decode_problems(bits),
            )
        )  # fmt: skip
        if max_ingested_at is None or latest > max_ingested_at:
            max_ingested_at = latest
    return WindowUsage(window=window, groups=tuple(groups), max_ingested_at=max_ingested_at)
