"""The missed-hours sensor: a past hour of the lookback with events and no rating is rated.

The schedule asks for each hour once (its run key is the partition key), and the other
sensors compare windows with their latest rating: an hour whose scheduled run failed or
never launched would stay unbilled. An hour is missed once it closed more than MISSED_AFTER
ago (the schedule rates it by then; the same 1 h 30 as rated_usage's freshness) and holds
events but no rating_log row. Each tick requests a run of every missed hour of the lookback
that has no run in flight, until MAX_ATTEMPTS runs of this sensor exist for it (counted
from the runs the instance keeps, retries of a dead run included); then the
``all_windows_billed`` check reports it.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from rating_pipeline.orchestration import queries
from rating_pipeline.orchestration.assets import LATE_AFTER
from rating_pipeline.orchestration.jobs import TRIGGER_TAG, rate_windows_job
from rating_pipeline.orchestration.partitions import hourly_windows
from rating_pipeline.orchestration.queries import Span
from rating_pipeline.orchestration.resources import WarehouseResource
from rating_pipeline.orchestration.sensors import MINIMUM_INTERVAL_SECONDS
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.windows import HOUR, Window, WindowError

SENSOR_NAME = "missed_hours"
MAX_ATTEMPTS = 3
MISSED_AFTER = HOUR + LATE_AFTER
PARTITION_TAG = "dagster/partition"  # Dagster's own tags: on a partition's runs,
RANGE_START_TAG = "dagster/asset_partition_range_start"  # and on a range run's
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Every status of a run not finished, as Dagster counts them: a suspended run resumes.
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUSPENDED,
    dg.DagsterRunStatus.CANCELING,
)


def missed_span(now: datetime, since: datetime | None = None) -> Span:
    """The hours from ``since`` (None: the first partition) that closed MISSED_AFTER or more
    before ``now``."""
    first = hourly_windows.start.astimezone(UTC)
    return Span(max(since or first, first), Window.containing(now - MISSED_AFTER).start)


def attempts(instance: dg.DagsterInstance, windows: Sequence[Window]) -> dict[Window, int]:
    """How many runs this sensor has made for each of ``windows``, whatever became of them."""
    if not windows:
        return {}
    tags = {PARTITION_TAG: [w.key for w in windows], TRIGGER_TAG: SENSOR_NAME}
    made = Counter(
        run.tags.get(PARTITION_TAG) for run in instance.get_runs(dg.RunsFilter(tags=tags))
    )
    return {w: made[w.key] for w in windows}


def in_flight(instance: dg.DagsterInstance, windows: Sequence[Window]) -> set[Window]:
    """Those of ``windows`` whose partition a queued or running run rates, whoever asked for
    it: a run of that partition, or a range run (a single-run backfill) whose range holds it."""
    if not windows:
        return set()
    runs = instance.get_runs(dg.RunsFilter(statuses=list(IN_FLIGHT)))
    return {
        w
        for w in windows
        if any(run.tags.get(PARTITION_TAG) == w.key or _range_holds(run.tags, w) for run in runs)
    }


def _range_holds(tags: Mapping[str, str], window: Window) -> bool:
    """A range run's tags name hourly partitions from the first to the last, ``window``
    among them. Another asset's range (an invoice backfill's months) holds no hour."""
    try:
        first = Window.from_key(tags[RANGE_START_TAG])
        last = Window.from_key(tags[RANGE_END_TAG])
    except (KeyError, WindowError):
        return False
    return first <= window <= last


@dataclass(frozen=True)
class MissedHour:
    """A missed hour, and what the sensor does about it this tick."""

    window: Window
    attempts: int
    in_flight: bool

    @property
    def to_request(self) -> bool:
        return not self.in_flight and self.attempts < MAX_ATTEMPTS

    def state(self) -> str:
        if self.in_flight:
            return f"{self.window.key}: never rated, a run is in flight"
        if self.to_request:
            return f"{self.window.key}: never rated, requesting attempt {self.attempts + 1}"
        return (
            f"{self.window.key}: never rated, requested {self.attempts} times; given up "
            "(the all_windows_billed check lists it)"
        )


def missed_hours_now(
    instance: dg.DagsterInstance, warehouse: WarehouseResource, window_lookback: timedelta
) -> list[MissedHour]:
    """Every missed hour of the lookback, with its attempts so far."""
    with warehouse.snapshot() as conn:
        now = database_clock(conn)
        since = Window.containing(now).start - window_lookback
        windows = queries.unrated_hours(conn, missed_span(now, since))
    made, running = attempts(instance, windows), in_flight(instance, windows)
    return [MissedHour(w, made[w], w in running) for w in windows]


def evaluate(context: dg.SensorEvaluationContext, missed: list[MissedHour]) -> dg.SensorResult:
    """A run request per missed hour still to be tried, keyed by its attempt."""
    requests = [
        dg.RunRequest(
            run_key=f"{hour.window.key}:missed:{hour.attempts + 1}",
            partition_key=hour.window.key,
            tags={TRIGGER_TAG: SENSOR_NAME},
        )
        for hour in missed
        if hour.to_request
    ]
    for hour in missed:
        if hour.to_request:
            context.log.info(hour.state())
    if requests:
        return dg.SensorResult(run_requests=requests)
    states = "; ".join(hour.state() for hour in missed)
    return dg.SensorResult(skip_reason=dg.SkipReason(states or "no missed hour in the lookback"))


def duration_text(span: timedelta) -> str:
    """``1 h 30`` for 90 minutes, ``2 h`` for two hours."""
    hours, minutes = divmod(span // timedelta(minutes=1), 60)
    return f"{hours} h {minutes:02}" if minutes else f"{hours} h"


def build_missed_hours_sensor(window_lookback: timedelta) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        job=rate_windows_job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Rates an hour of the lookback that holds events but was never rated, once it "
            f"closed {duration_text(MISSED_AFTER)} ago: at most {MAX_ATTEMPTS} runs per "
            "hour, then the "
            "all_windows_billed check reports it."
        ),
    )
    def missed_hours(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        return evaluate(context, missed_hours_now(context.instance, warehouse, window_lookback))

    return missed_hours
