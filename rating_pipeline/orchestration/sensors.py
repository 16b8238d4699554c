"""The late-events sensor: re-rate exactly the windows whose events changed after their rating.

Each tick looks only at windows that received an event ingested since the previous tick
(a range scan of the ``ingested_at`` index, re-reading a RESCAN_OVERLAP margin so that
events committed by slow transactions, or landing while a rating was in flight, are not
missed). For each such window that has been rated, it compares ``(count(*),
max(ingested_at))`` of its events now with what its latest rating read
(``rating_log.events_read``, ``rating_log.max_ingested_at``); a difference requests a run
of that partition. The run key ``<partition>:<count>:<max_ingested_at>`` changes exactly
when the window's events do, so a state is requested once however many ticks see it.

Windows older than the lookback (``RATING_LATE_EVENT_LOOKBACK_HOURS``, default 72) are
never re-rated automatically. Those among them that received such events and whose events
now differ from their latest rating's (or that were never rated) are reported in the tick's
log and skip reason, and in the cursor; a window rated since its late events landed is not.
Every rated window found changed, inside the lookback or not, is also recorded in
``late_window``: the ``all_windows_billed`` check lists those older than the lookback until a
rating reads their events (a window whose requested re-rates never committed included).
A database error is not a skip: it raises, and the tick shows the error.
"""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.orchestration import queries
from rating_pipeline.orchestration.jobs import TRIGGER_TAG, rate_windows_job
from rating_pipeline.orchestration.partitions import (
    RATE_BY_HAND,
    hourly_windows,
    is_partition,
    lookback_start,
)
from rating_pipeline.orchestration.queries import ChangedWindow, LateBeyondLookback
from rating_pipeline.orchestration.resources import WarehouseResource
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.warehouse.late_windows import ChangedAfterRating, record_late_windows
from rating_pipeline.windows import HOUR, Window, parse_utc_instant

LOOKBACK_VARIABLE = "RATING_LATE_EVENT_LOOKBACK_HOURS"
DEFAULT_LOOKBACK_HOURS = 72
# Ten years: no one means a longer lookback, and far longer ones overflow a datetime.
MAXIMUM_LOOKBACK_HOURS = 87_600
# Any other whole setting: a year of minutes.
MAXIMUM_SETTING = 525_600
RESCAN_OVERLAP = timedelta(minutes=15)
SENSOR_NAME = "late_events"
# The tags the sensor daemon sets on a run it launches; it drops a request whose run key a
# run of the same sensor has (dagster._daemon.sensor), whatever became of that run.
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
MINIMUM_INTERVAL_SECONDS = 60
REPORTED_WINDOWS = 20


# missed_hours requests an hour MISSED_AFTER (1 h 30) after it closed: a shorter lookback
# holds no such hour at any minute, and a failed scheduled run would stay unbilled.
MINIMUM_LOOKBACK_HOURS = 2


class SensorSettingError(RatingPipelineError, ValueError):
    """A sensor's setting is not a whole number within its bounds."""


def whole_setting(
    variable: str,
    value: str | None,
    default: int,
    unit: str,
    minimum: int = 1,
    maximum: int = MAXIMUM_SETTING,
) -> int:
    """``value`` (else the environment's ``variable``, else ``default``) as a whole number
    from ``minimum`` to ``maximum``; SensorSettingError otherwise."""
    text = os.environ.get(variable) if value is None else value
    if text is None or not text.strip():
        return default
    try:
        number = int(text)
    except ValueError:
        number = minimum - 1
    if not minimum <= number <= maximum:
        raise SensorSettingError(
            f"{variable}={text!r}: expected whole {unit}, {minimum} or more and {maximum} or less"
        )
    return number


def lookback(value: str | None = None) -> timedelta:
    """How far back (from the current hour) windows are re-rated automatically."""
    hours = whole_setting(
        LOOKBACK_VARIABLE,
        value,
        DEFAULT_LOOKBACK_HOURS,
        "hours",
        MINIMUM_LOOKBACK_HOURS,
        MAXIMUM_LOOKBACK_HOURS,
    )
    return timedelta(hours=hours)


@dataclass(frozen=True)
class LateEventsCursor:
    """What a tick hands the next: events ingested up to here were examined, and the
    windows beyond the lookback that the last tick reported, as ``<partition>:<events>``."""

    ingested_through: datetime
    beyond_lookback: tuple[str, ...] = ()

    def serialize(self) -> str:
        return json.dumps(
            {
                "ingested_through": self.ingested_through.isoformat(),
                "beyond_lookback": list(self.beyond_lookback),
            }
        )

    @classmethod
    def parse(cls, text: str | None) -> "LateEventsCursor | None":
        """The cursor a tick stored; None for the first tick (or a cursor reset in the UI)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            through = parse_utc_instant(data["ingested_through"])
            return cls(through, tuple(data.get("beyond_lookback", ())))
        except (ValueError, KeyError, TypeError) as exc:
            raise SensorSettingError(
                f"{SENSOR_NAME} sensor: unreadable cursor {text!r}; reset it in the UI"
            ) from exc


@dataclass(frozen=True)
class LateEventsScan:
    """One tick's findings."""

    now: datetime
    ingested: queries.Ingested
    lookback_start: datetime
    changed: tuple[ChangedWindow, ...]
    beyond_lookback: tuple[LateBeyondLookback, ...]

    @property
    def cursor(self) -> LateEventsCursor:
        reported = tuple(_reported(late) for late in self.beyond_lookback[:REPORTED_WINDOWS])
        return LateEventsCursor(self.ingested.through, reported)


def _reported(late: LateBeyondLookback) -> str:
    return f"{late.window.key}:{late.events_now}"


def scan(
    conn: psycopg.Connection, cursor: LateEventsCursor | None, window_lookback: timedelta
) -> LateEventsScan:
    """Find the rated windows whose events changed since their rating (see the module doc).

    The first tick (no cursor) examines every event ingested since the lookback started;
    a later one, those ingested since the cursor (less RESCAN_OVERLAP), whatever window they
    fell in. A tick examines at most the lookback and an hour of ingestion, what a first
    tick examines: after a longer outage, the ticks catch up a span each.
    """
    now = database_clock(conn)
    since = Window.containing(now).start - window_lookback
    if cursor is not None:
        since = cursor.ingested_through - RESCAN_OVERLAP
    through = min(now, since + window_lookback + HOUR)
    span = queries.Ingested(since, through)
    start = lookback_start(now, window_lookback)
    changed, beyond = queries.touched_windows(conn, span, start)
    return LateEventsScan(now, span, start, tuple(changed), tuple(beyond))


def record_changed(
    warehouse: WarehouseResource, changed: Sequence[ChangedAfterRating], found_at: datetime
) -> None:
    """Record the rated windows a tick found changed, in their own transaction, inside the
    lookback too: one whose requested re-rates never commit leaves the lookback unbilled,
    past every later tick. all_windows_billed lists the recorded windows older than the
    lookback that no rating read since (the never-rated ones it finds itself)."""
    if not changed:
        return
    with warehouse.connect() as conn, conn.transaction():
        record_late_windows(conn, changed, found_at)


def late_windows_found(found: LateEventsScan) -> list[ChangedAfterRating]:
    """The rated windows a late-events tick found changed, inside the lookback or beyond."""
    changed = [
        ChangedAfterRating(w.window, w.events_now, w.events_read, w.log_id) for w in found.changed
    ]
    return changed + [
        ChangedAfterRating(late.window, late.events_now, late.events_read, late.log_id)
        for late in found.beyond_lookback
        if late.log_id is not None and late.events_read is not None
    ]


def run_key(window: ChangedWindow) -> str:
    """Changes exactly when the window's events do."""
    latest = (
        "none" if window.max_ingested_at_now is None else window.max_ingested_at_now.isoformat()
    )
    return f"{window.window.key}:{window.events_now}:{latest}"


def run_request(window: ChangedWindow) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key(window),
        partition_key=window.window.key,
        tags={TRIGGER_TAG: SENSOR_NAME},
    )


def requested_already(
    instance: dg.DagsterInstance, windows: Sequence[ChangedWindow]
) -> dict[str, dg.DagsterRun]:
    """The latest run launched for each of ``windows``' late states, by run key: the
    daemon's own rule for dropping a request as already made."""
    keys = [run_key(window) for window in windows]
    if not keys:
        return {}
    runs = instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: keys, SENSOR_NAME_TAG: SENSOR_NAME}))
    return {run.tags[RUN_KEY_TAG]: run for run in reversed(runs)}  # newest last, so it wins


def _requested_line(window: ChangedWindow, run: dg.DagsterRun) -> str:
    line = (
        f"window {window.window.key}: its late events' re-rate was requested already (run "
        f"{run.run_id[:8]}, {run.status.value})"
    )
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        line += "; changed_events requests it again on the window's turn"
    return line


def _unbilled_state(late: LateBeyondLookback) -> str:
    if late.events_read is None or late.rated_at is None:
        return f"{late.events_now} events, never rated"
    return (
        f"{late.events_now} events now, {late.events_read} read by its latest rating "
        f"(rated_at {late.rated_at.isoformat()})"
    )


def beyond_lookback_lines(found: LateEventsScan) -> list[str]:
    """One line per reported window (at most REPORTED_WINDOWS), then how many more."""
    first = hourly_windows.start.astimezone(UTC)
    lines = [
        f"window {late.window.key}: {_unbilled_state(late)}; older than the lookback "
        f"({found.lookback_start.isoformat()}): not rated automatically; "
        + (
            "materialize its partition to bill them"
            if late.window.start >= first
            else f"it is before the first partition ({Window(first).key}): {RATE_BY_HAND}"
        )
        for late in found.beyond_lookback[:REPORTED_WINDOWS]
    ]
    if len(found.beyond_lookback) > REPORTED_WINDOWS:
        lines.append(f"... and {len(found.beyond_lookback) - REPORTED_WINDOWS} more windows")
    return lines


def evaluate(
    context: dg.SensorEvaluationContext,
    found: LateEventsScan,
    previous: LateEventsCursor | None = None,
    requested: dict[str, dg.DagsterRun] | None = None,
) -> dg.SensorResult:
    """Run requests for the changed windows that are partitions, but for the states
    ``requested`` already; the rest is reported.

    A window beyond the lookback is logged as a WARNING once (the rescan overlap shows it to
    several ticks); a tick's skip message lists all it saw (a tick with requests logs the
    states requested already instead).
    """
    requests, in_hand = [], []
    for window in found.changed:
        if not is_partition(window.window, found.now):
            continue  # before the first pricebook, or not closed yet
        earlier = (requested or {}).get(run_key(window))
        if earlier is not None:
            in_hand.append(_requested_line(window, earlier))
            continue
        context.log.info(
            f"window {window.window.key} changed after its rating: {window.events_read} events "
            f"read, {window.events_now} now (latest ingested_at {window.max_ingested_at_now}); "
            "requesting a re-rate"
        )
        requests.append(run_request(window))
    reported = beyond_lookback_lines(found)
    already = set(previous.beyond_lookback) if previous else set()
    for late, line in zip(found.beyond_lookback[:REPORTED_WINDOWS], reported, strict=False):
        if _reported(late) not in already:
            context.log.warning(line)
    if len(found.beyond_lookback) > REPORTED_WINDOWS:
        context.log.warning(reported[-1])
    if found.ingested.through < found.now:
        context.log.info(
            f"catching up after an outage: events ingested after "
            f"{found.ingested.since.isoformat()} through {found.ingested.through.isoformat()} "
            "examined; the next ticks examine the rest"
        )
    if requests:
        for line in in_hand:  # no skip message to carry them
            context.log.info(line)
        return dg.SensorResult(run_requests=requests, cursor=found.cursor.serialize())
    lookback = f"of the lookback (from {found.lookback_start.isoformat()})"
    summary = (
        f"no re-rate to request: every rated window {lookback} whose events changed after "
        "its rating was requested already"
        if in_hand
        else f"no re-rate to request: no rated window {lookback} received events after its rating"
    )
    summary += f" (events ingested after {found.ingested.since.isoformat()} examined"
    if found.ingested.through < found.now:
        summary += f", through {found.ingested.through.isoformat()}: catching up"
    summary += ")"
    return dg.SensorResult(
        skip_reason=dg.SkipReason("; ".join([summary, *in_hand, *reported])),
        cursor=found.cursor.serialize(),
    )


def build_late_events_sensor(window_lookback: timedelta) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        job=rate_windows_job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Re-rates the windows that received events after their latest rating (late "
            f"events), within a {window_lookback // HOUR} h lookback ({LOOKBACK_VARIABLE}). "
            "Events deleted or corrected in place are changed_events' to find."
        ),
    )
    def late_events(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        previous = LateEventsCursor.parse(context.cursor)
        with warehouse.snapshot() as conn:
            found = scan(conn, previous, window_lookback)
        record_changed(warehouse, late_windows_found(found), found.now)
        return evaluate(
            context, found, previous, requested_already(context.instance, found.changed)
        )

    return late_events
