"""The close mark (contract section 10) and the lock that holds it still.

Every window that starts before the mark is closed. Ratings, invoice builds and exports
hold the periods lock shared and read after taking it; a close holds it exclusively, so
the mark never moves under a rating, a build or an export in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from rating_pipeline.warehouse.sqlfiles import load_sql

# Advisory lock keys of the periods lock: (PERIODS_NAMESPACE, PERIODS_KEY).
PERIODS_NAMESPACE = 0x434C4F53  # "CLOS"
PERIODS_KEY = 0


def begin_read_committed(conn: psycopg.Connection) -> None:
    """Make the caller's transaction, before its first statement, READ COMMITTED whatever
    the session's default: each statement after a lock wait then sees what committed while
    it waited. Under REPEATABLE READ or SERIALIZABLE the statement that waits takes the
    transaction's snapshot, before the rating or close it waits for commits."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


def lock_periods(conn: psycopg.Connection, *, exclusive: bool) -> None:
    """Hold the periods lock until the transaction ends: shared by ratings, invoice builds
    and exports, exclusive by a close."""
    statement = "lock_periods_exclusive" if exclusive else "lock_periods_shared"
    conn.execute(load_sql(statement), {"namespace": PERIODS_NAMESPACE, "key": PERIODS_KEY})


def lock_periods_exclusively(conn: psycopg.Connection, waiting: Callable[[int], object]) -> None:
    """lock_periods(exclusive=True), calling ``waiting`` first with how many sessions hold
    the lock when it is not free: while a close waits, every rating that starts waits
    behind it (PostgreSQL grants lock requests in order)."""
    keys = {"namespace": PERIODS_NAMESPACE, "key": PERIODS_KEY}
    free = conn.execute(load_sql("try_lock_periods_exclusive"), keys).fetchone()
    if free is not None and free[0]:
        return
    holders = conn.execute(load_sql("select_periods_lock_holders"), keys).fetchone()
    if holders is not None and holders[0]:  # none: they let go in between
        waiting(int(holders[0]))
    lock_periods(conn, exclusive=True)


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


def window_closed(start: datetime, mark: datetime | None) -> bool:
    """The window starting at ``start`` is closed under ``mark``: its rows are frozen."""
    return mark is not None and start < mark


def wholly_closed(month: datetime, mark: datetime | None) -> bool:
    """Every window of ``month`` is closed under ``mark``."""
    return mark is not None and next_month(month) <= mark
