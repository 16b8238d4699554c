"""``python -m benchmarks.sensor_tick``: what the sensors' ticks cost on a day of busy hours,
and how long a deleted event takes to be billed again (issue 13).

Loads ``--hours`` hours of ``--events-per-hour`` benchmark events ending at the last closed
hour (the sensors' lookback follows the database's clock), rates them, then times ticks of
``changed_events`` (at the default interval and lookback), ``missed_hours`` and a steady
``late_events`` tick, and one ``all_windows_billed`` evaluation. Last, it deletes an event
from the window the first tick checked (the worst case: a whole rotation away), ticks until
the re-rate is requested, and runs it through Dagster. It prints the figures; it writes
nothing to BENCHMARKS.md. Embedded server of the suite (``.rating/bench-pg``), database
``rating_sensor_bench``, recreated unless ``--reuse-data``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks.data import Batch, generate, write_pricebooks
from benchmarks.measure import Samples, repeat
from rating_pipeline.definitions import defs
from rating_pipeline.orchestration.assets import pricebook, rated_usage, window_usage
from rating_pipeline.orchestration.changed_events import (
    Cursor,
    build_changed_events_sensor,
    interval,
    windows_per_tick,
)
from rating_pipeline.orchestration.checks import RATED_USAGE_CHECKS, all_windows_billed
from rating_pipeline.orchestration.missed_hours import build_missed_hours_sensor
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.orchestration.sensors import (
    MINIMUM_INTERVAL_SECONDS,
    LateEventsCursor,
    build_late_events_sensor,
    lookback,
)
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.settings import state_dir
from rating_pipeline.warehouse import embedded, migrations
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.windows import HOUR, Window

DATABASE = "rating_sensor_bench"
PRINCIPALS = 2_000
DELETE_ONE = (
    "DELETE FROM billing_event WHERE event_id = (SELECT event_id FROM billing_event"
    " WHERE occurred_at >= %(start)s AND occurred_at < %(end)s LIMIT 1)"
)
ASSETS = [pricebook, window_usage, rated_usage, *RATED_USAGE_CHECKS]


@dataclass(frozen=True)
class Setup:
    url: str
    windows: list[Window]
    pricebook_dir: Path

    def resources(self) -> dict[str, object]:
        return {
            "warehouse": WarehouseResource(database_url=self.url),
            "pricebooks": PricebookResource(directory=str(self.pricebook_dir)),
        }


def database_url(reuse: bool) -> str:
    server = embedded.start(
        state_dir() / "bench-pg", database=embedded.MAINTENANCE_DATABASE, stop_at_exit=True
    )
    with psycopg.connect(server, autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        if not reuse:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            return make_conninfo(server, dbname=DATABASE)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    return make_conninfo(server, dbname=DATABASE)


def load_and_rate(args: argparse.Namespace, say: Callable[[str], None]) -> tuple[Setup, Samples]:
    """The day loaded (unless already there) and every hour rated: (setup, rating times)."""
    url = database_url(args.reuse_data)
    migrations.upgrade(url)
    pricebook_dir = write_pricebooks(state_dir() / "bench-pricebooks")
    books = load_pricebooks(pricebook_dir)
    last = Window.containing(datetime.now(UTC)).start
    windows = [Window(last - h * HOUR) for h in range(args.hours, 0, -1)]
    with connect(url) as conn:
        [(count,)] = conn.execute("SELECT count(*) FROM billing_event").fetchall()
        conn.commit()
        if count == 0:
            say(f"loading {args.hours} h x {args.events_per_hour:,} events")
            generate(conn, Batch(windows[0].start, args.hours, args.events_per_hour, PRINCIPALS))
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM (ANALYZE) billing_event")
            conn.execute("CHECKPOINT")
            conn.autocommit = False
        say(f"rating {len(windows)} windows")
        ratings = []
        for window in windows:
            began = time.perf_counter()
            rate_window(conn, window, books, "bench-sensor")
            ratings.append(time.perf_counter() - began)
    return Setup(url, windows, pricebook_dir), Samples(tuple(ratings))


Tick = Callable[[str | None], "dg.SensorExecutionData"]


def ticker(setup: Setup, sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> Tick:
    """A function ticking ``sensor`` once from a cursor, returning the tick's data."""

    def tick(cursor: str | None) -> dg.SensorExecutionData:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources=setup.resources(),
            repository_def=defs.get_repository_def(),
        )
        return sensor.evaluate_tick(context)

    return tick


def check_once(setup: Setup, instance: dg.DagsterInstance) -> None:
    dg.materialize(
        ASSETS,
        selection=dg.AssetSelection.checks(all_windows_billed),
        instance=instance,
        resources=setup.resources(),
    )


def rebilled(setup: Setup, instance: dg.DagsterInstance, say: Callable[[str], None]) -> str:
    """Delete an event just after its window was checked; tick until the request; run it."""
    tick = ticker(setup, build_changed_events_sensor(lookback(), interval()), instance)
    first = tick(None)
    checked = Window(Cursor.parse(first.cursor).after or datetime.now(UTC))
    with psycopg.connect(setup.url) as conn:
        conn.execute(DELETE_ONE, {"start": checked.start, "end": checked.end})
    cursor, ticks = first.cursor, 0
    requests: list[dg.RunRequest] = []
    while not requests:
        data = tick(cursor)
        cursor, ticks, requests = data.cursor, ticks + 1, data.run_requests or []
    say(f"re-rate of {requests[0].partition_key} requested after {ticks} more ticks")
    began = time.perf_counter()
    result = dg.materialize(
        ASSETS, partition_key=requests[0].partition_key, instance=instance,
        resources=setup.resources(), raise_on_error=False,
    )  # fmt: skip
    run_seconds = time.perf_counter() - began
    [rating] = result.asset_materializations_for_node("rated_usage")
    detected = ticks * MINIMUM_INTERVAL_SECONDS
    return (
        f"deleted event in {checked.key} (checked by the first tick): re-rate requested "
        f"{ticks} ticks later (= {detected / 60:.0f} min at one tick a minute), Dagster run "
        f"{run_seconds:.1f} s, events_read {rating.metadata['events_read'].value:,}; "
        f"re-billed within {(detected + run_seconds) / 60:.1f} min of a "
        f"{interval() // timedelta(minutes=1)} min interval"
    )


def line(name: str, samples: Samples) -> str:
    return (
        f"{name}: median {samples.median:.2f} s (min {samples.low:.2f}, "
        f"max {samples.high:.2f}, n={len(samples.values)})"
    )


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> list[str]:
    setup, ratings = load_and_rate(args, say)
    per_tick = windows_per_tick(lookback(), interval())
    report = [line(f"rate_window, each of {len(setup.windows)} windows", ratings)]
    with dg.instance_for_test() as instance:
        changed = ticker(setup, build_changed_events_sensor(lookback(), interval()), instance)
        cursor: list[str | None] = [None]

        def next_tick() -> None:
            cursor[0] = changed(cursor[0]).cursor

        say(f"{args.ticks} changed_events ticks ({per_tick} windows each)")
        rotation = -(-lookback() // HOUR // per_tick)
        report.append(
            line(f"changed_events tick ({per_tick} windows)", repeat(args.ticks, next_tick))
            + f"; a {lookback() // HOUR} h lookback is checked every {rotation} ticks"
        )
        missed = ticker(setup, build_missed_hours_sensor(lookback()), instance)
        report.append(line("missed_hours tick", repeat(args.ticks, lambda: missed(None))))
        late = ticker(setup, build_late_events_sensor(lookback()), instance)
        # As in production: the rescan reads the last 15 minutes of the day's ingestion.
        steady = LateEventsCursor(setup.windows[-1].end).serialize()
        report.append(line("late_events tick, steady", repeat(args.ticks, lambda: late(steady))))
        report.append(
            line(
                "all_windows_billed check, in a run", repeat(3, lambda: check_once(setup, instance))
            )
        )
        say("deleting an event and ticking until its re-rate")
        report.append(rebilled(setup, instance, say))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sensor_tick")
    parser.add_argument("--hours", type=int, default=24, help="busy hours loaded (default 24)")
    parser.add_argument(
        "--events-per-hour", type=int, default=1_000_000, help="events in each (default 1M)"
    )
    parser.add_argument("--ticks", type=int, default=5, help="ticks timed per sensor")
    parser.add_argument(
        "--reuse-data", action="store_true", help="keep rating_sensor_bench's data if loaded"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", module="platformdirs")
    began = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - began:7.1f} s] {text}", file=sys.stderr, flush=True)

    report = measure(args, say)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
