"""``late_window``: the rated windows found changed after their latest rating, by the
sensors (orchestration/sensors.py, changed_events.py) or by a close (periods.py), and how
a close finds them itself. The ``all_windows_billed`` check lists the recorded windows no
rating read since (docs/operations.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import psycopg

from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window

LATEST_LOG_ID = "SELECT coalesce(max(log_id), 0) FROM rating_log"


class ChangedAfterRating(NamedTuple):
    """A rated window found changed after its latest rating (rating_log row ``log_id``,
    which read ``events_read`` events; ``events_now`` now)."""

    window: Window
    events_now: int
    events_read: int
    log_id: int


def record_late_windows(
    conn: psycopg.Connection, changed: Sequence[ChangedAfterRating], found_at: datetime
) -> None:
    """Record ``changed`` in late_window, in the caller's transaction. A record against an
    older rating than the window's latest is never named or listed."""
    if not changed:
        return
    conn.execute(
        load_sql("record_late_windows"),
        {
            "window_starts": [c.window.start for c in changed],
            "events_now": [c.events_now for c in changed],
            "events_read": [c.events_read for c in changed],
            "log_ids": [c.log_id for c in changed],
            "found_at": found_at,
        },
    )


def latest_log_id(conn: psycopg.Connection) -> int:
    """The latest rating's log_id (0 before any): a later one was committed after this."""
    row = conn.execute(LATEST_LOG_ID).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return int(row[0])


def windows_changed_since_rating(
    conn: psycopg.Connection, start: datetime, through: datetime, rated_after: int = 0
) -> list[ChangedAfterRating]:
    """The rated windows starting in [start, through) whose events now differ in count or
    latest ingested_at from what their latest rating read; with ``rated_after``, only
    windows whose latest rating has a later log_id."""
    bounds = {"start": start, "through": through, "rated_after": rated_after}
    return [
        ChangedAfterRating(Window.starting(window_start), events_now, events_read, log_id)
        for window_start, events_now, events_read, log_id in conn.execute(
            load_sql("select_windows_changed_since_rating"), bounds
        )
    ]
