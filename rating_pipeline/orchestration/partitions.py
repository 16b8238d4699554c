"""Rating windows and invoice months as Dagster partitions: one hourly, UTC partition per
window (contract 2), one monthly, UTC partition per invoice month (contract 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from rating_pipeline.warehouse.close_mark import month_of, next_month
from rating_pipeline.windows import PARTITION_KEY_FORMAT, Window, windows_between

# The first window: the first pricebook version's effective_from (pricebooks/2026-06-01.yaml).
# A window before it has no price, so it is no partition either.
FIRST_WINDOW_KEY = "2026-06-01-00:00"

# end_offset=0: the newest partition is the last hour that has closed, never the open one.
hourly_windows = dg.HourlyPartitionsDefinition(
    start_date=FIRST_WINDOW_KEY,
    timezone="UTC",
    fmt=PARTITION_KEY_FORMAT,
    end_offset=0,
)

# A month's key is how `rating-pipeline invoice build --month` takes it: 2026-06.
MONTH_KEY_FORMAT = "%Y-%m"
# From the month of the first window. end_offset=1: the newest partition is the month in
# progress, whose lines are a draft (rebuilt by each materialization of its partition, and
# by each close) until a close wholly closes it; adjustments made now bill on it, or on the
# month holding the close mark.
invoice_months = dg.MonthlyPartitionsDefinition(
    start_date=hourly_windows.start.strftime(MONTH_KEY_FORMAT),
    fmt=MONTH_KEY_FORMAT,
    timezone="UTC",
    end_offset=1,
)


def windows_in(time_window: dg.TimeWindow) -> list[Window]:
    """Every rating window of a run's partition time window (one partition or a range)."""
    return list(windows_between(time_window.start.astimezone(UTC), time_window.end.astimezone(UTC)))


def months_in(time_window: dg.TimeWindow) -> list[datetime]:
    """The first instant of every UTC month of a run's partition time window."""
    return months_between(time_window.start, time_window.end)


def months_between(start: datetime, end: datetime) -> list[datetime]:
    """The first instant of every UTC month that starts before ``end``, from ``start``'s."""
    month = month_of(start)
    months = []
    while month < end:
        months.append(month)
        month = next_month(month)
    return months


def month_key(month: datetime) -> str:
    """The partition key of the month starting at ``month``."""
    return month.strftime(MONTH_KEY_FORMAT)


def is_partition(window: Window, now: datetime) -> bool:
    """``window`` is a partition at ``now``: on or after the first, and closed."""
    return window.start >= hourly_windows.start.astimezone(UTC) and window.end <= now


# What an operator does with a window before the first partition, which no run can rate.
RATE_BY_HAND = "rate it with `rating-pipeline rate` and a pricebook version that covers it"


def before_first_partition(window: Window) -> bool:
    return window.start < hourly_windows.start.astimezone(UTC)


def lookback_start(now: datetime, window_lookback: timedelta) -> datetime:
    """The first window the sensors re-rate at ``now``: ``window_lookback`` before the
    current hour, never before the first partition (a window there has no partition to run,
    so it is older than the lookback however long the lookback is; changed_events still
    digests the ones of its lookback, to report and record them)."""
    since = Window.containing(now).start - window_lookback
    return max(since, hourly_windows.start.astimezone(UTC))
