"""The changed-events sensor: re-rate a rated window whose events were deleted or corrected.

A deleted event, or one updated in place, leaves no new ``ingested_at``: the late-events
sensor cannot see it. Each tick of this one takes the next few rated windows of the lookback
in rotation, recomputes the events digest their rating would read now (the rating's own
extraction, ``read_window_usage``, with the pricebook version the window was rated with, in
a transaction that is rolled back), and compares it with the digest its latest rating
logged (``rating_log.events_digest``). A difference requests a run of the partition, keyed
by (partition, latest log row, digest now, attempt): one state is requested once per
attempt. A re-rate that failed commits nothing, so the next tick sees the same state: it is
requested again, as attempt 2, then 3, while no run of the partition is in flight, until
MAX_ATTEMPTS runs of it failed or were terminated (counted from the runs the instance keeps,
Dagster's retries of a dead run included); then the tick's skip reason says it gave up.

A changed window is recorded in ``late_window`` too: should no re-rate commit before it
leaves the lookback, the ``all_windows_billed`` check lists it from then on.

Every rated window of the lookback is checked within half of
``RATING_CHANGED_EVENT_INTERVAL_MINUTES`` when the sensor ticks at its minimum interval; the
other half absorbs later ticks and the re-rate's run. The cursor is the last window checked.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from rating_pipeline.orchestration import queries
from rating_pipeline.orchestration.jobs import TRIGGER_TAG, rate_windows_job
from rating_pipeline.orchestration.missed_hours import MAX_ATTEMPTS, PARTITION_TAG, in_flight
from rating_pipeline.orchestration.partitions import is_partition
from rating_pipeline.orchestration.queries import LatestRating
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.orchestration.sensors import (
    LOOKBACK_VARIABLE,
    MINIMUM_INTERVAL_SECONDS,
    ChangedAfterRating,
    SensorSettingError,
    record_late_windows,
    whole_setting,
)
from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.warehouse.engine import RATING_WORK_MEM
from rating_pipeline.warehouse.extract import WindowRead, read_window_usage
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window

SENSOR_NAME = "changed_events"
INTERVAL_VARIABLE = "RATING_CHANGED_EVENT_INTERVAL_MINUTES"
DEFAULT_INTERVAL_MINUTES = 60
# A tick's cost is this many window extractions at most (BENCHMARKS.md: about one rating's).
MAX_WINDOWS_PER_TICK = 6
# The changed state a run was requested for: a failed run of it counts as an attempt.
STATE_TAG = "rating/changed_state"


def interval(value: str | None = None) -> timedelta:
    """Within how long a deleted or corrected event's window is re-rated."""
    minutes = whole_setting(INTERVAL_VARIABLE, value, DEFAULT_INTERVAL_MINUTES, "minutes")
    return timedelta(minutes=minutes)


def windows_per_tick(window_lookback: timedelta, within: timedelta) -> int:
    """How many windows a tick checks so that the lookback's are all checked within half of
    ``within`` at one tick a minimum interval; SensorSettingError above MAX_WINDOWS_PER_TICK."""
    ticks = (within / 2) // timedelta(seconds=MINIMUM_INTERVAL_SECONDS)
    needed = math.ceil(window_lookback / HOUR / ticks) if ticks else math.inf
    if needed > MAX_WINDOWS_PER_TICK:
        raise SensorSettingError(
            f"{INTERVAL_VARIABLE}={within // timedelta(minutes=1)} with {LOOKBACK_VARIABLE}="
            f"{window_lookback // HOUR} needs {needed} windows per tick, more than "
            f"{MAX_WINDOWS_PER_TICK}: lengthen the interval or shorten the lookback"
        )
    return int(needed)


@dataclass(frozen=True)
class DigestCheck:
    """One rated window checked: the digest its latest rating logged, and the one now."""

    rated: LatestRating
    digest_now: str
    events_now: int

    @property
    def window(self) -> Window:
        return self.rated.window

    @property
    def changed(self) -> bool:
        return self.digest_now != self.rated.events_digest

    @property
    def state(self) -> str:
        """The latest rating and the digest now: what a re-rate is requested for."""
        return f"{self.window.key}:{self.rated.log_id}:{self.digest_now}"


@dataclass(frozen=True)
class Rerate:
    """A changed window, and what became of the re-rates requested for its state so far."""

    check: DigestCheck
    failed: int
    in_flight: bool

    @property
    def to_request(self) -> bool:
        return not self.in_flight and self.failed < MAX_ATTEMPTS

    def state(self) -> str:
        key = self.check.window.key
        if self.in_flight:
            return f"{key}: events changed, a run of it is in flight"
        if self.to_request:
            return f"{key}: events changed, requesting attempt {self.failed + 1}"
        return (
            f"{key}: events changed, {self.failed} re-rates failed or were terminated; given "
            "up (read the runs' errors, fix the cause, materialize the partition)"
        )


def failed_attempts(instance: dg.DagsterInstance, check: DigestCheck) -> int:
    """How many runs requested for ``check``'s state failed or were terminated (retries of a
    dead run included: they carry their parent's tags). A terminated run counts: the daemon
    skips a run key any kept run has, so its key must not be requested again."""
    runs = dg.RunsFilter(
        tags={PARTITION_TAG: check.window.key, STATE_TAG: check.state},
        statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
    )
    return instance.get_runs_count(runs)


def rerate(instance: dg.DagsterInstance, check: DigestCheck) -> Rerate:
    running = check.window in in_flight(instance, [check.window])
    return Rerate(check, failed_attempts(instance, check), running)


def version_rated(pricebooks: Pricebooks, window: Window, version_name: str) -> PricebookVersion:
    """The version the window was rated with; the one that would rate it now if it is gone."""
    for version in pricebooks.versions:
        if version.version == version_name:
            return version
    return pricebooks.version_for(window)


def read_now(conn: psycopg.Connection, window: Window, version: PricebookVersion) -> WindowRead:
    """What a rating of ``window`` would read now (its events digest, its count), in a
    savepoint rolled back (the extraction's temp table goes with it)."""
    with conn.transaction(force_rollback=True):
        conn.execute(load_sql("set_rating_planner"), {"work_mem": RATING_WORK_MEM})
        return read_window_usage(conn, window, version)


def check_now(conn: psycopg.Connection, pricebooks: Pricebooks, rated: LatestRating) -> DigestCheck:
    """``rated``'s window as a rating with its version would read it now."""
    read = read_now(
        conn, rated.window, version_rated(pricebooks, rated.window, rated.pricebook_version)
    )
    return DigestCheck(rated, read.events_digest, read.event_count)


def scan(
    conn: psycopg.Connection,
    pricebooks: Pricebooks,
    after: datetime | None,
    window_lookback: timedelta,
    count: int,
) -> tuple[datetime, list[DigestCheck]]:
    """The database's clock and the next ``count`` rated windows after ``after``, checked,
    all in the caller's one snapshot."""
    now = database_clock(conn)
    lookback_start = Window.containing(now).start - window_lookback
    return now, [
        check_now(conn, pricebooks, rated)
        for rated in queries.rotation(conn, lookback_start, now, after, count)
    ]


def parse_cursor(text: str | None) -> datetime | None:
    """The start of the last window the previous tick checked; None: start the rotation."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise SensorSettingError(
            f"{SENSOR_NAME} sensor: unreadable cursor {text!r}; reset it in the UI"
        ) from exc


def run_request(rerate: Rerate) -> dg.RunRequest:
    """Keyed by the latest rating, the digest now and the attempt: a new rating, a new
    change or a failed attempt makes a new key."""
    check = rerate.check
    return dg.RunRequest(
        run_key=f"{check.state}:{rerate.failed + 1}",
        partition_key=check.window.key,
        tags={TRIGGER_TAG: SENSOR_NAME, STATE_TAG: check.state},
    )


def evaluate(
    context: dg.SensorEvaluationContext,
    now: datetime,
    checked: list[DigestCheck],
    previous: datetime | None,
) -> dg.SensorResult:
    """Run requests for the changed windows still to be tried; the cursor moves to the last
    window checked."""
    cursor = checked[-1].window.start if checked else previous
    serialized = None if cursor is None else cursor.isoformat()
    changed = [
        rerate(context.instance, check)
        for check in checked
        if check.changed and is_partition(check.window, now)
    ]
    requests = []
    for change in changed:
        check = change.check
        if change.to_request:
            context.log.info(
                f"window {check.window.key}: events digest {check.digest_now} now, "
                f"{check.rated.events_digest} at its latest rating; {change.state()}"
            )
            requests.append(run_request(change))
        elif not change.in_flight:
            context.log.warning(change.state())
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=serialized)
    unchanged = [check.window.key for check in checked if not check.changed]
    states = [change.state() for change in changed]
    if unchanged or not checked:
        keys = ", ".join(unchanged) or "none rated in the lookback"
        states.append(f"windows checked, events unchanged since rated: {keys}")
    return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(states)), cursor=serialized)


def build_changed_events_sensor(
    window_lookback: timedelta, within: timedelta
) -> dg.SensorDefinition:
    per_tick = windows_per_tick(window_lookback, within)

    @dg.sensor(
        name=SENSOR_NAME,
        job=rate_windows_job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Re-rates a rated window whose events were deleted or corrected in place: "
            f"recomputes {per_tick} windows' events digests a tick, so that every window of "
            f"the {window_lookback // HOUR} h lookback is checked within "
            f"{within // timedelta(minutes=1) // 2} minutes ({INTERVAL_VARIABLE})."
        ),
    )
    def changed_events(
        context: dg.SensorEvaluationContext,
        warehouse: WarehouseResource,
        pricebooks: PricebookResource,
    ) -> dg.SensorResult:
        previous = parse_cursor(context.cursor)
        books = pricebooks.load()
        with warehouse.rolled_back() as conn:
            now, checked = scan(conn, books, previous, window_lookback, per_tick)
        changed = [
            ChangedAfterRating(c.window, c.events_now, c.rated.events_read, c.rated.log_id)
            for c in checked
            if c.changed
        ]
        record_late_windows(warehouse, changed, now)
        return evaluate(context, now, checked, previous)

    return changed_events
