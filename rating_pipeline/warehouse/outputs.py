"""Stored output rows read back as records (for the rating's summary, the UI and checks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from rating_pipeline.pricebook.model import CONTEXT_TIERS, SERVICE_TIERS
from rating_pipeline.records import RatedRollup, RatingException
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window, require_span

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


def stored_exceptions(conn: psycopg.Connection, window: Window) -> tuple[RatingException, ...]:
    """The window's ``rating_exception`` rows in key order, as of the caller's snapshot."""
    params = {"window_start": window.start}
    return _records(conn, RatingException, "select_window_rating_exception", params)


@dataclass(frozen=True)
class ClassCost:
    """One token class's billed tokens and exact cost over some ``rated_usage`` rows."""

    token_class: str
    tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class TierCost:
    """The ``rated_usage`` rows of one (service tier, context tier): how many, their events,
    their tokens of every class, and their exact cost."""

    service_tier: str
    context_tier: str
    rollups: int
    events: int
    tokens: int
    cost_usd: Decimal


def cost_by_token_class(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> tuple[ClassCost, ...]:
    """Tokens and cost per token class of the windows in ``[start, end)``, in TOKEN_CLASSES
    order, classes without tokens left out; the costs add up exactly to the rows' total.
    The bounds are whole UTC hours (WindowError otherwise)."""
    start, end = require_span(start, end)
    rows = conn.execute(load_sql("select_cost_by_token_class"), {"start": start, "end": end})
    return tuple(ClassCost(name, int(tokens), cost) for name, tokens, cost in rows)


def cost_by_tier(conn: psycopg.Connection, start: datetime, end: datetime) -> tuple[TierCost, ...]:
    """Rollups, events, tokens and cost per (service tier, context tier) of the windows in
    ``[start, end)``, tiers in the contract's order; the costs add up to the rows' total.
    The bounds are whole UTC hours (WindowError otherwise)."""
    start, end = require_span(start, end)
    params = {
        "start": start,
        "end": end,
        "service_tiers": list(SERVICE_TIERS),
        "context_tiers": list(CONTEXT_TIERS),
    }
    return tuple(
        TierCost(service, context, int(rollups), int(events), int(tokens), cost)
        for service, context, rollups, events, tokens, cost in conn.execute(
            load_sql("select_cost_by_tier"), params
        )
    )


@dataclass(frozen=True)
class WindowTables:
    """What the UI shows of one window's stored rows: its costliest rollups, and its tokens
    and cost by token class and by tier; and the cost of its adjustments, stamped and open,
    which a closed window's cost adds to its frozen rows'."""

    costliest: tuple[RatedRollup, ...] = ()
    by_token_class: tuple[ClassCost, ...] = ()
    by_tier: tuple[TierCost, ...] = ()
    adjustments_cost_usd: Decimal = Decimal(0)


def window_tables(conn: psycopg.Connection, window: Window, costliest: int) -> WindowTables:
    """The window's tables as stored, as of the caller's snapshot (``costliest``: how many
    of the costliest rollups)."""
    row = conn.execute(
        load_sql("select_window_adjustments_cost"), {"window_start": window.start}
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return WindowTables(
        costliest_rollups(conn, window, costliest),
        cost_by_token_class(conn, window.start, window.end),
        cost_by_tier(conn, window.start, window.end),
        row[0],
    )
