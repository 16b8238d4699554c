"""Helpers for the sensor and check tests: recent windows, events in them, ratings, ticks.

Windows here are recent hours, because the sensors' lookback is relative to the database's
clock; they are rated directly by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from rating_pipeline.definitions import defs
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.settings import project_root
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.windows import HOUR, Window
from tests.factories import BillingEvent, make_event

REPOSITORY = defs.get_repository_def()
PRICEBOOK_DIR = project_root() / "pricebooks"
PRICEBOOKS = load_pricebooks(PRICEBOOK_DIR)


def current_window() -> Window:
    """The hour the clock is in now, read at each call: a suite collected in one hour runs
    on into the next, so no test counts hours from its module's import."""
    return Window.containing(datetime.now(UTC))


def hours_ago(hours: int) -> Window:
    """The window that started ``hours`` hours before the current one."""
    return Window(current_window().start - hours * HOUR)


def event(
    window: Window,
    minute: int,
    event_id: str,
    auth_id: str = "org-7",
    model_id: str = "base-small",
    ingested_at: datetime | None = None,
) -> BillingEvent:
    """One priced event ``minute`` into ``window``; ``ingested_at`` None: the database's now()."""
    occurred_at = window.start + timedelta(minutes=minute)
    made = make_event(auth_id, model_id, occurred_at=occurred_at, event_id=event_id)
    return replace(made, ingested_at=ingested_at)


def events_in(
    window: Window, count: int, *, ingested_at: datetime | None = None
) -> list[BillingEvent]:
    """``count`` events of two principals, ids ``<window key>-<n>``."""
    return [
        event(window, n + 1, f"{window.key}-{n}", f"org-{n % 2}", "base-large", ingested_at)
        for n in range(count)
    ]


def rate(database_url: str, *windows: Window) -> None:
    with connect(database_url) as conn:
        for window in windows:
            rate_window(conn, window, PRICEBOOKS, "test-sensor")


def rated_then_late(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
    window: Window,
    late_id: str = "late-old",
) -> None:
    """``window`` rated with its two events (ingested as it closed), then one more event,
    ``late_id``, ingested now: a window billed as before its late event."""
    add_events(events_in(window, 2, ingested_at=window.end))
    rate(database_url, window)
    add_events([event(window, 40, late_id)])


def tick(
    sensor: dg.SensorDefinition,
    database_url: str,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
    pricebook_dir: Path = PRICEBOOK_DIR,
) -> dg.SensorExecutionData:
    """Evaluate one tick of ``sensor`` as the daemon does."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=REPOSITORY,
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "pricebooks": PricebookResource(directory=str(pricebook_dir)),
        },
    )
    return sensor.evaluate_tick(context)


def requested(data: dg.SensorExecutionData) -> list[str]:
    """The partitions a tick asked to run."""
    return [r.partition_key or "" for r in data.run_requests or []]
