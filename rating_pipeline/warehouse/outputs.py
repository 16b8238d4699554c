"""Stored output rows read back as records (for the UI, checks and tests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any

import psycopg

from rating_pipeline.records import RatedRollup, RatingException
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window


def _int(value: Decimal | int) -> int:
    whole = int(value)
    if whole != value:
        raise ValueError(f"stored token sum {value} is not a whole number")
    return whole


def rollup_from_row(row: Sequence[Any]) -> RatedRollup:
    """A RatedRollup from a row in the column order of ``select_window_rated_usage``."""
    return RatedRollup(
        window_start=row[0].astimezone(UTC),
        window_end=row[1].astimezone(UTC),
        auth_id=row[2],
        model_id=row[3],
        event_count=int(row[4]),
        input_tokens=_int(row[5]),
        output_tokens=_int(row[6]),
        rate_source=row[7],
        derivation_base=row[8],
        multiplier=row[9],
        input_rate_per_mtok=row[10],
        output_rate_per_mtok=row[11],
        cost_usd=row[12],
        pricebook_version=row[13],
        pricebook_sha256=row[14],
    )


def exception_from_row(row: Sequence[Any]) -> RatingException:
    """A RatingException from a row in the column order of ``select_window_rating_exception``."""
    return RatingException(
        window_start=row[0].astimezone(UTC),
        window_end=row[1].astimezone(UTC),
        auth_id=row[2],
        model_id=row[3],
        reason=row[4],
        detail=row[5],
        event_count=int(row[6]),
        input_tokens=_int(row[7]),
        output_tokens=_int(row[8]),
        pricebook_version=row[9],
    )


def costliest_rollups(
    conn: psycopg.Connection, window: Window, limit: int
) -> tuple[RatedRollup, ...]:
    """The window's ``limit`` costliest stored rollups, ties broken by key (code point)."""
    params = {"window_start": window.start, "limit": limit}
    return tuple(
        rollup_from_row(row) for row in conn.execute(load_sql("select_costliest_rollups"), params)
    )


def stored_rollups(conn: psycopg.Connection, window: Window) -> tuple[RatedRollup, ...]:
    """The window's ``rated_usage`` rows in key order, as of the caller's snapshot."""
    rows = conn.execute(load_sql("select_window_rated_usage"), {"window_start": window.start})
    return tuple(rollup_from_row(row) for row in rows)


def stored_exceptions(conn: psycopg.Connection, window: Window) -> tuple[RatingException, ...]:
    """The window's ``rating_exception`` rows in key order, as of the caller's snapshot."""
    rows = conn.execute(load_sql("select_window_rating_exception"), {"window_start": window.start})
    return tuple(exception_from_row(row) for row in rows)
