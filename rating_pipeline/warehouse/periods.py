"""``period close`` and ``period status`` (contract section 10).

A close through T closes every window that starts before T. Once closed, a window's
``rated_usage`` rows never change: a later rating of it reconciles its open adjustments
instead (engine.converge). A close first counts the events of the windows it closes,
against their latest ratings, taking no lock; then it is one transaction under the periods
lock, held exclusively (close_mark.py): it records the windows found changed in
late_window, records itself, stamps every open adjustment with its id, and builds then
records the invoice lines of every month it wholly closes. It is refused,
writing nothing, unless T is a whole UTC hour after the current mark and not after the
start of the current hour, and every hour before T that holds events has been rated.
There is no reopen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from psycopg.pq import TransactionStatus

from rating_pipeline.errors import RatingPipelineError, shown
from rating_pipeline.money import exact_sum
from rating_pipeline.warehouse.close_mark import (
    begin_read_committed,
    close_mark,
    lock_periods,
    lock_periods_exclusively,
    month_of,
    next_month,
)
from rating_pipeline.warehouse.database import READ_ONLY_SESSION, database_clock
from rating_pipeline.warehouse.invoices import (
    MonthTotal,
    converge_month_lines,
    draft_totals,
    month_totals,
)
from rating_pipeline.warehouse.late_windows import (
    Compared,
    compare_with_latest_ratings,
    record_late_windows,
)
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import WINDOWED_FROM, Window, WindowError, require_hour_aligned_utc

CURRENT_HOUR = "SELECT date_trunc('hour', clock_timestamp(), 'UTC')"
# The first instant anything was billed or invoiced: a month can hold lines after its
# usage is gone (deleted events, re-rated away), or only adjustments (a window whose events
# priced only after it closed), and a close must converge those too.
FIRST_BILLED = (
    "SELECT least((SELECT min(window_start) FROM rated_usage), "
    "(SELECT min(bill_month) FROM rating_adjustment), (SELECT min(month) FROM invoice_line))"
)
UNRATED_HOURS_NAMED = 20
TRANSACTION_READ_ONLY = "SHOW transaction_read_only"
ONE_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
LAST_CLOSE = (
    "SELECT close_id, closed_through, closed_at, closed_by, note FROM rating_period_close "
    "ORDER BY close_id DESC LIMIT 1"
)


class CloseRefused(RatingPipelineError):
    """A close that may not be made, and why: nothing was written."""


@dataclass(frozen=True)
class PeriodClose:
    """One committed close: its record, the adjustments it stamped, and what it recorded
    of each month it wholly closed (one MonthTotal per month and account)."""

    close_id: int
    closed_through: datetime
    closed_at: datetime
    closed_by: str
    note: str | None
    adjustments_stamped: int
    months_closed: tuple[datetime, ...]
    invoices: tuple[MonthTotal, ...]
    changed_not_rated: tuple[datetime, ...] = ()
    unbilled: tuple[Unbilled, ...] = ()

    def lines(self) -> list[str]:
        """How the CLI reports it."""
        months = ", ".join(f"{m:%Y-%m}" for m in self.months_closed) or "none"
        lines = [
            f"close {self.close_id}: closed through {self.closed_through.isoformat()} by "
            f"{shown(self.closed_by)}; stamped {self.adjustments_stamped} open adjustment(s); "
            f"months wholly closed: {months}"
        ]
        if self.changed_not_rated:
            lines.append(
                changed_warning(
                    self.changed_not_rated,
                    "closed here",
                    "rating them now bills any difference as adjustments on the next invoice",
                )
            )
        if self.unbilled:
            lines.append(
                unbilled_note(
                    self.unbilled,
                    "closed here",
                    "priced or corrected and rated again, they bill as adjustments on the "
                    "next invoice",
                )
            )
        return lines + [invoice_total_line(t) for t in self.invoices]


def invoice_total_line(total: MonthTotal) -> str:
    """How the CLI reports one invoice a close freezes (or would)."""
    return (
        f"  {total.month:%Y-%m} {shown(total.account_id)}: {total.line_count} lines, total "
        f"{total.amount:f} USD (exact {total.amount_exact:f}, residual {total.residual:f})"
    )


@dataclass(frozen=True)
class ClosePreview:
    """What a close through ``closed_through`` would do now (``period close --dry-run``),
    its refusals passed: the open adjustments it would stamp, the months it would wholly
    close and their invoices as their lines stand now, and the windows it would freeze
    though their events changed after their latest rating and no rating read them since."""

    closed_through: datetime
    open_adjustments: tuple[OpenAdjustments, ...]
    months_closed: tuple[datetime, ...]
    changed_not_rated: tuple[datetime, ...]
    invoices: tuple[MonthTotal, ...] = ()
    unbilled: tuple[Unbilled, ...] = ()

    def lines(self) -> list[str]:
        """How the CLI reports it."""
        stamped = sum(w.adjustments for w in self.open_adjustments)
        cost = exact_sum(w.cost_usd for w in self.open_adjustments)
        months = ", ".join(f"{m:%Y-%m}" for m in self.months_closed) or "no month"
        lines = [
            f"dry run: a close through {self.closed_through.isoformat()} may be made now; it "
            f"would stamp {stamped} open adjustment(s) ({cost:f} USD) and wholly close "
            f"{months}. Nothing was written."
        ]
        if self.changed_not_rated:
            lines.append(
                changed_warning(
                    self.changed_not_rated,
                    "it would close",
                    "rate them first to bill the difference on the invoice of their own "
                    "month, or after the close as adjustments on the next invoice",
                )
            )
        if self.unbilled:
            lines.append(
                unbilled_note(
                    self.unbilled,
                    "it would close",
                    "priced or corrected and rated again before the close, they bill on "
                    "their own month's invoice; after it, as adjustments on the next",
                )
            )
        if self.invoices:
            lines.append("  the invoices it would freeze, from the lines as they stand now:")
        return lines + [invoice_total_line(t) for t in self.invoices]


def changed_warning(window_starts: tuple[datetime, ...], closed: str, remedy: str) -> str:
    """The line naming the windows a close freezes though their events changed after their
    latest rating, with no rating since."""
    named = ", ".join(Window(start).key for start in window_starts)
    return (
        f"  warning: {len(window_starts)} window(s) {closed} changed after their latest "
        "rating (found by the sensors or by the close's count of their events), and no "
        f"rating read them since: {named}; {remedy}"
    )


@dataclass(frozen=True)
class Unbilled:
    """The rating_exception rows of one reason in the hours a close freezes."""

    reason: str
    rollups: int
    events: int


def unbilled_in(
    conn: psycopg.Connection, mark: datetime | None, through: datetime
) -> tuple[Unbilled, ...]:
    """Per reason, the exceptions of the windows a close through ``through`` closes."""
    span = {"start": WINDOWED_FROM if mark is None else mark, "end": through}
    rows = conn.execute(load_sql("select_exceptions_by_reason"), span)
    return tuple(
        Unbilled(reason, int(rollups), int(events)) for reason, rollups, events, *_ in rows
    )


def unbilled_note(unbilled: tuple[Unbilled, ...], closed: str, remedy: str) -> str:
    """The line counting the events of the hours a close freezes that bill nothing."""
    events = sum(u.events for u in unbilled)
    reasons = ", ".join(
        f"{u.events} {u.reason} in {u.rollups} rollup{'s' * (u.rollups != 1)}" for u in unbilled
    )
    return (
        f"  note: the hours {closed} hold {events} event{'s' * (events != 1)} that bill "
        f"nothing (rating_exception: {reasons}); {remedy}"
    )


def close_period(
    conn: psycopg.Connection,
    through: datetime,
    closed_by: str,
    note: str | None = None,
    waiting: Callable[[int], object] = lambda holders: None,
) -> PeriodClose:
    """Close every window that starts before ``through``, in one transaction of its own;
    raise CloseRefused, writing nothing, when the close may not be made. ``waiting`` hears
    how many sessions hold the periods lock, before the close waits for them."""
    through = closable_through(through, closed_by)
    counted = count_changed_windows(conn, through)
    with conn.transaction():
        mark = begin_close(conn, through, counted, exclusive=True, waiting=waiting)
        changed = changed_not_rated(conn, mark, through)
        unbilled = unbilled_in(conn, mark, through)
        row = conn.execute(
            load_sql("insert_period_close"),
            {"closed_through": through, "closed_by": closed_by, "note": note},
        ).fetchone()
        assert row is not None
        close_id, closed_at = row
        stamped = conn.execute(load_sql("stamp_open_adjustments"), {"close_id": close_id})
        months = months_wholly_closed(conn, mark, through)
        invoices: list[MonthTotal] = []
        for month in months:
            converge_month_lines(conn, month, f"close-{close_id}", closed_at)
            for total in month_totals(conn, month):
                conn.execute(
                    load_sql("insert_period_close_total"),
                    {
                        "close_id": close_id,
                        "month": month,
                        "account_id": total.account_id,
                        "line_count": total.line_count,
                        "amount_exact": total.amount_exact,
                        "amount": total.amount,
                        "lines_sha256": total.lines_sha256,
                    },
                )
                invoices.append(total)
    return PeriodClose(
        close_id,
        through,
        closed_at,
        closed_by,
        note,
        stamped.rowcount,
        months,
        tuple(invoices),
        changed,
        unbilled,
    )


def closable_through(through: datetime, closed_by: str) -> datetime:
    """``through`` in UTC, or CloseRefused unless it is a whole UTC hour and ``closed_by``
    names someone (the refusals that need no database)."""
    try:
        through = require_hour_aligned_utc(through, "through")
    except WindowError as exc:
        raise CloseRefused(
            f"close refused: {exc}; a close is through the start of a UTC hour, e.g. "
            "2026-07-01T00:00:00Z"
        ) from exc
    if not closed_by.strip():
        raise CloseRefused("close refused: closed_by is blank; say who closes (--by)")
    return through


def begin_close(
    conn: psycopg.Connection,
    through: datetime,
    counted: Compared,
    *,
    exclusive: bool,
    waiting: Callable[[int], object] = lambda holders: None,
) -> datetime | None:
    """A close's first steps in its transaction: the periods lock (``exclusive`` for the
    close itself, ``waiting`` told first when it must wait; shared for a dry run, which no
    rating waits for) and the mark read after it; CloseRefused unless the close may be
    made; then the windows found changed recorded in late_window. Returns the mark."""
    begin_read_committed(conn)
    if exclusive:
        lock_periods_exclusively(conn, waiting)
    else:
        lock_periods(conn, exclusive=False)
    mark = close_mark(conn)
    refuse_unless_closable(conn, through, mark)
    record_changed_windows(conn, counted, mark, through)
    return mark


def refuse_unless_closable(
    conn: psycopg.Connection, through: datetime, mark: datetime | None
) -> None:
    """CloseRefused unless ``through`` is after ``mark``, not after the start of the
    current hour (the database's clock), and no hour before it holds unrated events."""
    if mark is not None and through <= mark:
        raise CloseRefused(
            f"close refused: {through.isoformat()} is not after the current mark "
            f"{mark.astimezone(UTC).isoformat()}; there is no reopen"
        )
    current = conn.execute(CURRENT_HOUR).fetchone()
    assert current is not None
    current_hour = current[0].astimezone(UTC)
    if through > current_hour:
        raise CloseRefused(
            f"close refused: {through.isoformat()} lies in the future; the latest instant a "
            f"close may be through now is {current_hour.isoformat()}"
        )
    unrated = unrated_hours_before(conn, through)
    if unrated:
        named = ", ".join(
            h.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") for h in unrated[:UNRATED_HOURS_NAMED]
        )
        more = (
            f" and {len(unrated) - UNRATED_HOURS_NAMED} more"
            if len(unrated) > UNRATED_HOURS_NAMED
            else ""
        )
        raise CloseRefused(
            f"close refused: {len(unrated)} hour(s) before {through.isoformat()} hold events "
            f"but were never rated: {named}{more}; rate them first (an hour no pricebook "
            "version covers needs a version effective from it, or its events corrected "
            "upstream)"
        )


def unrated_hours_before(conn: psycopg.Connection, through: datetime) -> list[datetime]:
    """The start of every hour before ``through`` that holds events but was never rated
    (from ``WINDOWED_FROM``: earlier instants name no hour), oldest first."""
    bounds = {"windowed_from": WINDOWED_FROM, "through": through}
    return [hour for (hour,) in conn.execute(load_sql("select_unrated_hours_before"), bounds)]


def count_changed_windows(conn: psycopg.Connection, through: datetime) -> Compared:
    """The rated windows a close through ``through`` would close, compared with their
    latest ratings, whether or not a sensor saw them change. Its own transaction, taking
    no lock and refused as the close would be: it reads every event of the period while
    ratings go on."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RatingPipelineError("a close needs a connection outside any transaction")
    with conn.transaction():
        begin_read_committed(conn)
        mark = close_mark(conn)
        refuse_unless_closable(conn, through, mark)
        return compare_with_latest_ratings(conn, WINDOWED_FROM if mark is None else mark, through)


def record_changed_windows(
    conn: psycopg.Connection, counted: Compared, mark: datetime | None, through: datetime
) -> None:
    """Under the close's lock, record in late_window what the count found changed, and
    what a count now finds of the windows rated since the count compared them: such a
    rating, committed after the count, may have read the events before the change the count
    saw, and its rows are the ones the close freezes."""
    start = WINDOWED_FROM if mark is None else mark
    found_at = database_clock(conn)
    recounted = compare_with_latest_ratings(conn, start, through, counted.log_ids)
    # One statement, as the sensors record theirs: each locks late_window's rows in window
    # order. A window found again stands against the newer rating its recount read.
    found = {c.window: c for c in [*counted.changed, *recounted.changed]}
    record_late_windows(conn, list(found.values()), found_at)


def preview_close(conn: psycopg.Connection, through: datetime, closed_by: str) -> ClosePreview:
    """What a close through ``through`` by ``closed_by`` would do now, or CloseRefused as it
    would be: the close's own steps, its records of changed windows included, up to its
    record of itself, and the lines of the months it would close, in a transaction rolled
    back, so nothing is written. It holds the periods lock shared, as ratings do; the close
    itself may find more. A read-only session is refused, as the close would be, even where
    the close would write nothing but its record."""
    through = closable_through(through, closed_by)
    with conn.transaction():
        read_only = conn.execute(TRANSACTION_READ_ONLY).fetchone() == ("on",)
    if read_only:
        raise CloseRefused(f"close refused: {READ_ONLY_SESSION}")
    counted = count_changed_windows(conn, through)
    with conn.transaction() as rolled_back:
        mark = begin_close(conn, through, counted, exclusive=False)
        months = months_wholly_closed(conn, mark, through)
        now = database_clock(conn)
        preview = ClosePreview(
            through,
            open_adjustments(conn),
            months,
            changed_not_rated(conn, mark, through),
            tuple(total for month in months for total in draft_totals(conn, month, now)),
            unbilled_in(conn, mark, through),
        )
        raise psycopg.Rollback(rolled_back)
    return preview


def changed_not_rated(
    conn: psycopg.Connection, mark: datetime | None, through: datetime
) -> tuple[datetime, ...]:
    """The windows a close through ``through`` closes that the sensors or the close's count
    found changed after their latest rating, with no rating since (late_window): their rows
    freeze as they are."""
    bounds = {"start": WINDOWED_FROM if mark is None else mark, "through": through}
    rows = conn.execute(load_sql("select_changed_windows_not_rated"), bounds)
    return tuple(start.astimezone(UTC) for (start,) in rows)


def months_wholly_closed(
    conn: psycopg.Connection, mark: datetime | None, through: datetime
) -> tuple[datetime, ...]:
    """The months a close through ``through`` wholly closes that ``mark`` had not and that
    may hold lines: from the month holding the mark or, if later, the first month with
    rated usage, adjustments or invoice lines (a month before it has nothing to build or
    record)."""
    first = conn.execute(FIRST_BILLED).fetchone()
    if first is None or first[0] is None:
        return ()
    month = month_of(first[0]) if mark is None else max(month_of(mark), month_of(first[0]))
    months = []
    while next_month(month) <= through:
        months.append(month)
        month = next_month(month)
    return tuple(months)


@dataclass(frozen=True)
class OpenAdjustments:
    """A window's open adjustments: how many, their cost, and the month they bill on."""

    window_start: datetime
    adjustments: int
    cost_usd: Decimal
    bill_month: datetime


@dataclass(frozen=True)
class PeriodStatus:
    """The latest close (its closed_through is the mark) and every window's open adjustments."""

    last_close: tuple[int, datetime, datetime, str, str | None] | None
    open_adjustments: tuple[OpenAdjustments, ...]

    def lines(self) -> list[str]:
        if self.last_close is None:
            return ["no period is closed: every window is open"]
        close_id, through, closed_at, closed_by, note = self.last_close
        lines = [
            f"closed through {through.astimezone(UTC).isoformat()} (close {close_id}, "
            f"{closed_at.astimezone(UTC).isoformat()} by {shown(closed_by)}"
            + (f": {shown(note)})" if note else ")"),
            f"next invoice: {month_of(through):%Y-%m}",
        ]
        total = exact_sum(w.cost_usd for w in self.open_adjustments)
        lines.append(
            f"open adjustments: {sum(w.adjustments for w in self.open_adjustments)} in "
            f"{len(self.open_adjustments)} window(s), {total:f} USD"
        )
        lines += [
            f"  {w.window_start.astimezone(UTC):%Y-%m-%dT%H:%MZ}: {w.adjustments} "
            f"adjustment(s), {w.cost_usd:f} USD, billed on {w.bill_month:%Y-%m}"
            for w in self.open_adjustments
        ]
        return lines


def open_adjustments(conn: psycopg.Connection) -> tuple[OpenAdjustments, ...]:
    """The windows with open adjustments."""
    return tuple(
        OpenAdjustments(window_start, int(count), cost, bill_month)
        for window_start, count, cost, bill_month in conn.execute(
            load_sql("select_open_adjustments_by_window")
        )
    )


def period_status(conn: psycopg.Connection) -> PeriodStatus:
    """What ``period status`` prints: the mark and the open adjustments of one snapshot, so a
    close committing meanwhile shows either wholly or not at all. ``conn`` must not be in a
    transaction: this reads in a read-only one of its own."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RatingPipelineError("period status needs a connection outside any transaction")
    with conn.transaction():
        conn.execute(ONE_SNAPSHOT)
        last = conn.execute(LAST_CLOSE).fetchone()
        return PeriodStatus(
            last_close=None if last is None else tuple(last),  # type: ignore[arg-type]
            open_adjustments=open_adjustments(conn),
        )


def where_close_stopped(
    conn: psycopg.Connection, through: datetime, stopped: str = "interrupted"
) -> str:
    """The line for a close ``stopped`` (by Ctrl-C, by a lost connection) before the
    command heard how it ended, read on a fresh ``conn``: a close is one transaction, so it
    committed whole or wrote nothing, and the mark tells which. A mark at ``through`` or
    later may be another close's, made meanwhile: the line names the close that made it."""
    last = conn.execute(LAST_CLOSE).fetchone()
    conn.rollback()
    if last is not None and last[1] >= through:
        close_id, mark, closed_at, closed_by, _ = last
        return (
            f"{stopped} after a close committed: closed through {mark.isoformat()} by "
            f"{shown(closed_by)} (close {close_id}, {closed_at.isoformat()}; `period status`)"
        )
    stays = f"the mark stays {last[1].isoformat()}" if last is not None else "no close yet"
    return f"{stopped}: the close was rolled back, nothing written; {stays}"
