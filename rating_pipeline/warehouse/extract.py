"""Extraction: one window's billing events, summed inside PostgreSQL (contract 3 and 6).

Only groups leave the database, never events: memory grows with the number of distinct
(auth_id, model_id, base_model, problems) of the window, not with its events. The SQL is
``sql/extract_window_usage.sql``.
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


def extract_window_usage(conn: psycopg.Connection, window: Window) -> WindowUsage:
    """Sum the window's events (``start <= occurred_at < end``) per group, in SQL.

    One statement, so one snapshot, in the caller's transaction. Its 'all' rows total every
    event per (auth_id, model_id, base_model); its 'negative' rows are the negative-token
    events among them, split by sign. The valid part of a key is its total minus its
    negative rows.
    """
    totals: dict[tuple[str, str, str | None], tuple[int, int, int, int]] = {}
    negative: list[UsageGroup] = []
    max_ingested_at: datetime | None = None
    with conn.cursor() as cursor:
        cursor.execute(load_sql("extract_window_usage"), {"start": window.start, "end": window.end})
        rows = cursor.fetchall()  # one row per group, never per event
    for kind, auth_id, model_id, base_model, bits, count, input_sum, output_sum, latest in rows:
        # Sums of bigint are numeric of scale 0: int() is exact.
        sums = (int(count), int(input_sum), int(output_sum))
        if kind == "all":
            totals[(auth_id, model_id, base_model)] = (bits, *sums)
            if max_ingested_at is None or latest > max_ingested_at:
                max_ingested_at = latest
        else:
            negative.append(UsageGroup(auth_id, model_id, base_model, *sums, decode_problems(bits)))
    for group in negative:
        key = (group.auth_id, group.model_id, group.base_model)
        bits, count, input_sum, output_sum = totals[key]
        totals[key] = (
            bits,
            count - group.event_count,
            input_sum - group.input_tokens,
            output_sum - group.output_tokens,
        )
    groups = list(negative)
    for (auth_id, model_id, base_model), (bits, count, input_sum, output_sum) in totals.items():
        if count < 0:
            raise RuntimeError(f"extraction of window {window.key}: negative remainder {count}")
        if count:
            groups.append(
                UsageGroup(
                    auth_id, model_id, base_model, count, input_sum, output_sum,
                    decode_problems(bits),
                )
            )  # fmt: skip
    return WindowUsage(window=window, groups=tuple(groups), max_ingested_at=max_ingested_at)
