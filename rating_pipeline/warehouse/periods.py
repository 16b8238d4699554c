"""Closed periods (contract section 10): the close mark, the lock that holds it still, and
``period close`` / ``period status``.

A close closes every window that starts before its instant, T. Once closed, a window's
``rated_usage`` rows never change: a later rating of it reconciles its open adjustments
instead (engine.converge). A close is one transaction under the periods lock, held
exclusively: ratings and invoice builds hold it shared, so none is in flight while the
mark moves. It records itself, stamps every open adjustment with its id, and builds then
records the invoice lines of every month it wholly closes. There is no reopen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.warehouse.sqlfiles import load_sql

# Advisory lock keys of the periods lock: (PERIODS_NAMESPACE, PERIODS_KEY).
PERIODS_NAMESPACE = 0x434C4F53  # "CLOS"
PERIODS_KEY = 0


def lock_periods(conn: psycopg.Connection, *, exclusive: bool) -> None:
    """Hold the periods lock until the transaction ends: shared by ratings and invoice
    builds, exclusive by a close."""
    statement = "lock_periods_exclusive" if exclusive else "lock_periods_shared"
    conn.execute(load_sql(statement), {"namespace": PERIODS_NAMESPACE, "key": PERIODS_KEY})


def close_mark(conn: psycopg.Connection) -> datetime | None:
    """The latest close's instant: every window starting before it is closed (None: none)."""
    row = conn.execute(load_sql("select_close_mark")).fetchone()
    return None if row is None else row[0]


def month_of(instant: datetime) -> datetime:
    """The first instant (UTC) of the calendar month holding ``instant``."""
    utc = instant.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    """The first instant of the month after ``month`` (itself a month's first instant)."""
    return month_of(month + timedelta(days=32))


def wholly_closed(month: datetime, mark: datetime | None) -> bool:
    """Every window of ``month`` is closed under ``mark``."""
    return mark is not None and next_month(month) <= mark


@dataclass(frozen=True)
class MonthTotal:
    """What a close recorded for one month and account: the invoice it froze."""

    month: datetime
    account_id: str
    line_count: int
    amount_exact: Decimal
    amount: Decimal

    @property
    def residual(self) -> Decimal:
        """The invoice's total (the sum of its rounded lines) minus its exact sum."""
        return self.amount - self.amount_exact


class CloseRefused(RatingPipelineError):
    """A close that may not be made: nothing was written."""
