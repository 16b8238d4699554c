"""Stored output rows read back as records (for the UI, checks and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from rating_pipeline.records import RatedRollup, RatingException
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window

Record = TypeVar("Record", RatedRollup, RatingException)


def _field(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if name.endswith("_tokens") or name == "event_count":
        whole = int(value)
        if whole != value:
            raise ValueError(f"stored {name} {value} is not a whole number")
        return whole
    return value


def record_from_row(record: type[Record], row: Mapping[str, Any]) -> Record:
    """A record from a row whose columns are named as its fields (token sums as int)."""
    return record(**{name: _field(name, value) for name, value in row.items()})


def _records(
    conn: psycopg.Connection, record: type[Record], statement: str, params: dict[str, Any]
) -> tuple[Record, ...]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(load_sql(statement), params).fetchall()
    return tuple(record_from_row(record, row) for row in rows)


def costliest_rollups(
    conn: psycopg.Connection, window: Window, limit: int
) -> tuple[RatedRollup, ...]:
    """The window's ``limit`` costliest stored rollups, ties broken by key (code point)."""
    params = {"window_start": window.start, "limit": limit}
    return _records(conn, RatedRollup, "select_costliest_rollups", params)


def stored_rollups(conn: psycopg.Connection, window: Window) -> tuple[RatedRollup, ...]:
    """The window's ``rated_usage`` rows in key order, as of the caller's snapshot."""
    return _records(conn, RatedRollup, "select_window_rated_usage", {"window_start": window.start})


def stored_exceptions(conn: psycopg.Connection, window: Window) -> tuple[RatingException, ...]:
    """The window's ``rating_exception`` rows in key order, as of the caller's snapshot."""
    params = {"window_start": window.start}
    return _records(conn, RatingException, "select_window_rating_exception", params)
