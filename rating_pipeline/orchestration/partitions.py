"""Rating windows as Dagster partitions: one hourly, UTC partition per window (contract 2)."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

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


def windows_in(time_window: dg.TimeWindow) -> list[Window]:
    """Every rating window of a run's partition time window (one partition or a range)."""
    return list(windows_between(time_window.start.astimezone(UTC), time_window.end.astimezone(UTC)))


def is_partition(window: Window, now: datetime) -> bool:
    """``window`` is a partition at ``now``: on or after the first, and closed."""
    return window.start >= hourly_windows.start.astimezone(UTC) and window.end <= now
