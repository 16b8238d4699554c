"""The warehouse reads of the Dagster layer: the statements are ``warehouse/sql/orchestration_*``
(and ``select_logged_rating``, a rating's own log row, and ``select_exceptions_by_reason``).

Each function runs one named statement with bound values and returns frozen records. None
of them writes; the caller owns the connection and its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import (
    HOUR,
    WINDOWED_FROM,
    WINDOWED_UNTIL,
    Window,
    require_hour_aligned_utc,
)

ROWS_LISTED = 20


@dataclass(frozen=True)
class Span:
    """Half-open ``[start, end)`` of whole UTC hours: one window or many."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, windows: Sequence[Window]) -> Span:
        return cls(windows[0].start, windows[-1].end)

    def params(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end}

    def __str__(self) -> str:
        """The partition key, or ``first...last`` as Dagster writes a range."""
        first, last = Window(self.start).key, Window(self.end - HOUR).key
        return first if first == last else f"{first}...{last}"


def _utc(instant: datetime | None) -> datetime | None:
    return None if instant is None else instant.astimezone(UTC)


def _window(instant: datetime) -> Window:
    return Window(instant.astimezone(UTC))


def window_event_counts(conn: psycopg.Connection, span: Span) -> dict[Window, int]:
    """How many events ``billing_event`` holds now for each window of ``span`` that has any."""
    return {
        _window(start): int(count)
        for start, count in conn.execute(load_sql("orchestration_window_usage"), span.params())
    }


@dataclass(frozen=True)
class CostAudit:
    """rated_usage rows of a span: how many, their total, and how many fail to reconstruct."""

    rows_audited: int
    rows_not_reconstructing: int
    total_cost_usd: Decimal


@dataclass(frozen=True)
class CostMismatch:
    """A rated_usage row whose cost is not its tokens times its own frozen rates."""

    window: Window
    auth_id: str
    model_id: str
    service_tier: str
    context_tier: str
    cost_usd: Decimal
    reconstructed_cost_usd: Decimal | None  # None: a class with tokens has no rate


@dataclass(frozen=True)
class LoggedTotalMismatch:
    """A window whose rows no longer add up to the total its latest rating logged, or that
    bills with no rating logged (``logged_cost_usd`` None)."""

    window: Window
    logged_cost_usd: Decimal | None
    billed_cost_usd: Decimal


def cost_audit(conn: psycopg.Connection, span: Span) -> CostAudit:
    row = conn.execute(load_sql("orchestration_cost_audit"), span.params()).fetchone()
    if row is None:  # an aggregate without GROUP BY always returns one row
        raise RuntimeError("orchestration_cost_audit returned no row")
    return CostAudit(int(row[0]), int(row[1]), row[2])


def cost_mismatches(conn: psycopg.Connection, span: Span) -> list[CostMismatch]:
    """The rows of ``span`` whose cost does not reconstruct, at most ROWS_LISTED."""
    params = {**span.params(), "limit": ROWS_LISTED}
    return [
        CostMismatch(_window(row[0]), *row[1:])
        for row in conn.execute(load_sql("orchestration_cost_mismatches"), params)
    ]


def logged_total_mismatches(conn: psycopg.Connection, span: Span) -> list[LoggedTotalMismatch]:
    return [
        LoggedTotalMismatch(_window(row[0]), row[1], row[2])
        for row in conn.execute(load_sql("orchestration_logged_totals"), span.params())
    ]


@dataclass(frozen=True)
class WindowConservation:
    """One rated window's event counts: now in billing_event, read, billed and excepted."""

    window: Window
    events_now: int
    events_read: int
    events_billed: int
    events_excepted: int

    @property
    def output_accounts_for_read(self) -> bool:
        """The latest rating's output holds exactly the events it read."""
        return self.events_read == self.events_billed + self.events_excepted

    @property
    def conserved(self) -> bool:
        """Every event billing_event holds now is billed or excepted, and nothing more."""
        return self.events_now == self.events_billed + self.events_excepted


def conservation(conn: psycopg.Connection, span: Span) -> list[WindowConservation]:
    """Every rated window of ``span``, in window order."""
    return [
        WindowConservation(
            window=_window(row[0]),
            events_now=int(row[1]),
            events_read=int(row[2]),
            events_billed=int(row[3]),
            events_excepted=int(row[4]),
        )
        for row in conn.execute(load_sql("orchestration_conservation"), span.params())
    ]


@dataclass(frozen=True)
class ReasonTotals:
    """The rating_exception rows of one reason in a span."""

    reason: str
    rollups: int
    event_count: int


def exceptions_by_reason(conn: psycopg.Connection, span: Span) -> dict[str, ReasonTotals]:
    """Per reason, the span's exception rollups and events (the statement's token sums are
    the demo summary's)."""
    return {
        row[0]: ReasonTotals(row[0], int(row[1]), int(row[2]))
        for row in conn.execute(load_sql("select_exceptions_by_reason"), span.params())
    }


@dataclass(frozen=True)
class ExceptionRow:
    """One rating_exception row, as a person needs to see it."""

    window: Window
    auth_id: str
    model_id: str
    service_tier: str
    context_tier: str
    reason: str
    detail: str
    event_count: int


def exception_rows(
    conn: psycopg.Connection, span: Span, reasons: Sequence[str]
) -> list[ExceptionRow]:
    """The rows of ``reasons`` in ``span``, most events first, at most ROWS_LISTED."""
    params = {**span.params(), "reasons": list(reasons), "limit": ROWS_LISTED}
    return [
        ExceptionRow(_window(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]))
        for row in conn.execute(load_sql("orchestration_exception_rows"), params)
    ]


def rated_span(conn: psycopg.Connection) -> Span | None:
    """Every window ever rated, first to last; None when nothing was rated."""
    row = conn.execute(load_sql("orchestration_rated_span")).fetchone()
    if row is None or row[0] is None:
        return None
    return Span(row[0].astimezone(UTC), row[1].astimezone(UTC))


@dataclass(frozen=True)
class ChangedWindow:
    """A rated window whose events changed after its latest rating read them."""

    window: Window
    events_now: int
    max_ingested_at_now: datetime | None
    events_read: int
    log_id: int  # the latest rating's rating_log row, the one compared


@dataclass(frozen=True)
class Ingested:
    """The events a late-events tick examines: ingested after ``since``, up to ``through``."""

    since: datetime
    through: datetime

    def bound(self) -> dict[str, datetime]:
        return {"since": self.since, "through": self.through}


@dataclass(frozen=True)
class LateBeyondLookback:
    """A window older than the lookback whose events differ from what its latest rating
    (rating_log row ``log_id``) read (``events_read`` None: never rated)."""

    window: Window
    events_now: int
    max_ingested_at_now: datetime | None
    events_read: int | None
    rated_at: datetime | None
    log_id: int | None = None


def touched_windows(
    conn: psycopg.Connection, ingested: Ingested, lookback_start: datetime
) -> tuple[list[ChangedWindow], list[LateBeyondLookback]]:
    """The windows the ``ingested`` events fell in, as the late-events sensor sees them: the
    rated ones from ``lookback_start`` on whose (count, max ingested_at) differs from their
    latest rating's, and the ones before it that differ or were never rated. WindowError
    unless ``lookback_start`` is a whole UTC hour: a window is on one side of it."""
    lookback_start = require_hour_aligned_utc(lookback_start, "lookback start")
    params = {**ingested.bound(), "lookback_start": lookback_start, "windowed_from": WINDOWED_FROM}
    changed, beyond = [], []
    for start, in_lookback, now, max_now, read, rated_at, log_id in conn.execute(
        load_sql("orchestration_touched_windows"), params
    ):
        if in_lookback:
            changed.append(
                ChangedWindow(_window(start), int(now), _utc(max_now), int(read), log_id)
            )
        else:
            beyond.append(
                LateBeyondLookback(
                    window=_window(start),
                    events_now=int(now),
                    max_ingested_at_now=_utc(max_now),
                    events_read=None if read is None else int(read),
                    rated_at=_utc(rated_at),
                    log_id=log_id,
                )
            )
    return changed, beyond


@dataclass(frozen=True)
class LatestRating:
    """A rated window's latest rating_log row, as the changed-events sensor compares it
    (``events_digest`` None: logged before revision 0006)."""

    window: Window
    log_id: int
    pricebook_version: str
    events_digest: str | None
    events_read: int


def rotation(
    conn: psycopg.Connection,
    lookback_start: datetime,
    now: datetime,
    after: datetime | None,
    limit: int,
) -> list[LatestRating]:
    """The latest rating of up to ``limit`` rated windows of the lookback: those after
    ``after`` first, then from the lookback's start again."""
    params = {"lookback_start": lookback_start, "now": now, "after": after, "limit": limit}
    return [
        LatestRating(_window(row[0]), int(row[1]), row[2], row[3], int(row[4]))
        for row in conn.execute(load_sql("orchestration_rotation"), params)
    ]


def unrated_hours(conn: psycopg.Connection, span: Span) -> list[Window]:
    """The windows of ``span`` that hold events and were never rated, in order."""
    if span.start >= span.end:
        return []
    return [
        _window(row[0])
        for row in conn.execute(load_sql("orchestration_unrated_hours"), span.params())
    ]


def events_not_begun(conn: psycopg.Connection, not_begun: datetime) -> tuple[int, Window | None]:
    """How many events are dated from ``not_begun`` (the current hour's end) on, in hours a
    window can hold, and the window of the first."""
    bounds = {"not_begun": not_begun, "windowed_until": WINDOWED_UNTIL}
    row = conn.execute(load_sql("orchestration_events_not_begun"), bounds).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    count, first = row
    return int(count), None if first is None else Window.containing(first)


@dataclass(frozen=True)
class LateWindow:
    """A window that a sensor or a close found changed after its latest rating (rating_log
    row ``log_id``) at ``found_at``, that no rating has read since (``events_now``: counted
    now; ``counts_differ``: the count or max(ingested_at) differs from what it read)."""

    window: Window
    events_now: int
    events_read: int
    found_at: datetime
    counts_differ: bool
    pricebook_version: str
    events_digest: str | None


def late_windows(
    conn: psycopg.Connection, lookback_start: datetime, overdue_before: datetime
) -> list[LateWindow]:
    """Every recorded window that no rating read since it was recorded, older than the
    lookback or found before ``overdue_before``, in order (whether its events still differ
    is the caller's to tell)."""
    bounds = {"lookback_start": lookback_start, "overdue_before": overdue_before}
    return [
        LateWindow(_window(row[0]), int(row[1]), int(row[2]), row[3].astimezone(UTC), *row[4:7])
        for row in conn.execute(load_sql("orchestration_late_windows"), bounds)
    ]


def first_invoiced_month(conn: psycopg.Connection) -> datetime | None:
    """The first month holding invoice lines or a close's record of them (None: none)."""
    row = conn.execute(load_sql("orchestration_first_invoiced_month")).fetchone()
    return None if row is None or row[0] is None else row[0].astimezone(UTC)


def logged_rating(conn: psycopg.Connection, run_id: str, window: Window) -> dict[str, Any] | None:
    """The figures ``run_id``'s rating of ``window`` logged, by rating_log's column names."""
    params = {"run_id": run_id, "window_start": window.start}
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(load_sql("select_logged_rating"), params).fetchone()
