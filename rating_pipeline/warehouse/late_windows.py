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
    """Record ``changed`` (one entry per window) in late_window, in the caller's transaction,
    locking its rows in window order. A record against an older rating than the window's
    latest is never named or listed."""
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


class Compared(NamedTuple):
    """Rated windows compared with their latest ratings: those whose events differ now
    (``changed``), and the log_id of every rating compared."""

    changed: list[ChangedAfterRating]
    log_ids: list[int]


def compare_with_latest_ratings(
    conn: psycopg.Connection,
    start: datetime,
    through: datetime,
    compared_before: Sequence[int] = (),
) -> Compared:
    """Compare each rated window starting in [start, through) with its latest rating, in
    event count and latest ingested_at; skip the windows whose latest rating is one of
    ``compared_before`` (their comparison stands)."""
    bounds = {"start": start, "through": through, "compared_log_ids": list(compared_before)}
    compared = Compared([], [])
    for window_start, events_now, events_read, log_id, changed in conn.execute(
        load_sql("compare_windows_with_latest_ratings"), bounds
    ):
        compared.log_ids.append(log_id)
        if changed:
            window = Window(window_start)
            compared.changed.append(ChangedAfterRating(window, events_now, events_read, log_id))
    return compared
