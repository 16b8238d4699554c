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
MAX_ATTEMPTS runs of it ended (counted from the runs the instance keeps, Dagster's retries
of a dead run included); then the tick's skip reason says it gave up. A run that succeeded
counts too: its rating made a new state, so seeing its state again means that rating is
gone (a warehouse restored from before it), and the daemon skips a key any kept run has.

A changed window is recorded in ``late_window`` too: should no re-rate commit before it
leaves the lookback, the ``all_windows_billed`` check lists it from then on.

Every rated window of the lookback is checked within half of
``RATING_CHANGED_EVENT_INTERVAL_MINUTES`` when the sensor ticks at its minimum interval; the
other half absorbs later ticks and the re-rate's run. A window is checked once more when it
has left the lookback (a correction made after the rotation's last pass over it would
otherwise go unseen): changed, it is recorded, not re-rated. The cursor is the last window
of the rotation checked and the start of the windows still to be checked on leaving.
"""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
import psycopg

from rating_pipeline.orchestration import partitions, queries
from rating_pipeline.orchestration.jobs import TRIGGER_TAG, rate_windows_job
from rating_pipeline.orchestration.missed_hours import MAX_ATTEMPTS, PARTITION_TAG, in_flight
from rating_pipeline.orchestration.partitions import is_partition
from rating_pipeline.orchestration.queries import LatestRating
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.orchestration.sensors import (
    LOOKBACK_VARIABLE,
    MINIMUM_INTERVAL_SECONDS,
    SensorSettingError,
    record_changed,
    whole_setting,
)
from rating_pipeline.pricebook.model import NoPricebookForWindow, Pricebooks, PricebookVersion
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.warehouse.engine import RATING_WORK_MEM
from rating_pipeline.warehouse.extract import read_window_usage
from rating_pipeline.warehouse.late_windows import ChangedAfterRating
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window, parse_utc_instant

SENSOR_NAME = "changed_events"
INTERVAL_VARIABLE = "RATING_CHANGED_EVENT_INTERVAL_MINUTES"
DEFAULT_INTERVAL_MINUTES = 60
# A tick's cost is this many window extractions at most (BENCHMARKS.md: about one rating's)
# in its rotation, and as many for windows leaving the lookback (one an hour, more after
# the sensor was stopped).
MAX_WINDOWS_PER_TICK = 6
# The changed state a run was requested for: an ended run of it counts as an attempt.
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
    attempts: int
    in_flight: bool

    @property
    def to_request(self) -> bool:
        return not self.in_flight and self.attempts < MAX_ATTEMPTS

    def state(self) -> str:
        key = self.check.window.key
        if self.in_flight:
            return f"{key}: events changed, a run of it is in flight"
        if self.to_request:
            return f"{key}: events changed, requesting attempt {self.attempts + 1}"
        return (
            f"{key}: events changed, {self.attempts} re-rates of it ended and left it so "
            "(failed, terminated, or their ratings lost); given up (read the runs' errors, "
            "fix the cause, materialize the partition)"
        )


def attempts_made(instance: dg.DagsterInstance, check: DigestCheck) -> int:
    """How many runs requested for ``check``'s state ended (retries of a dead run included:
    they carry their parent's tags), whatever their end: the daemon skips a run key any
    kept run has, so none of their keys may be requested again. One that succeeded made a
    new state: seen again, its rating is gone (a warehouse restored from before it), or it
    committed while this tick read the warehouse (a second run then changes no row)."""
    runs = dg.RunsFilter(
        tags={PARTITION_TAG: check.window.key, STATE_TAG: check.state},
        statuses=[
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED,
            dg.DagsterRunStatus.SUCCESS,
        ],
    )
    return instance.get_runs_count(runs)


def rerate(instance: dg.DagsterInstance, check: DigestCheck) -> Rerate:
    running = check.window in in_flight(instance, [check.window])
    return Rerate(check, attempts_made(instance, check), running)


def version_rated(
    pricebooks: Pricebooks, window: Window, version_name: str
) -> PricebookVersion | None:
    """The version the window was rated with; the one that would rate it now if it is gone;
    None when none covers it any more (no rating can read it then either)."""
    for version in pricebooks.versions:
        if version.version == version_name:
            return version
    try:
        return pricebooks.version_for(window)
    except NoPricebookForWindow:
        return None


def digest_now(
    conn: psycopg.Connection, window: Window, version: PricebookVersion
) -> tuple[str, int]:
    """The events digest and count a rating of ``window`` would read now, in a savepoint
    rolled back (the extraction's temp table goes with it)."""
    with conn.transaction(force_rollback=True):
        conn.execute(load_sql("set_rating_planner"), {"work_mem": RATING_WORK_MEM})
        read = read_window_usage(conn, window, version)
    return read.events_digest, read.event_count


def check_now(
    conn: psycopg.Connection, pricebooks: Pricebooks, rated: LatestRating
) -> DigestCheck | None:
    """``rated``'s window as a rating with its version would read it now; None when no
    version covers it any more."""
    version = version_rated(pricebooks, rated.window, rated.pricebook_version)
    if version is None:
        return None
    return DigestCheck(rated, *digest_now(conn, rated.window, version))


def uncovered_line(rated: LatestRating) -> str:
    """What a tick says of a rated window no pricebook version covers any more."""
    return (
        f"{rated.window.key}: no pricebook version covers it any more (it was rated with "
        f"{rated.pricebook_version!r}): its events cannot be checked, nor the window re-rated, "
        "until that version is back in the pricebooks (priced_by_current_pricebooks lists it; "
        "recorded, all_windows_billed lists it until its events are told apart)"
    )


@dataclass(frozen=True)
class Cursor:
    """Where the rotation is (``after``: the last window it checked; None: from the start),
    and from which window those that left the lookback are still to be checked once more
    (None: from the lookback's start at the next tick)."""

    after: datetime | None = None
    leaving_from: datetime | None = None

    def serialized(self) -> str:
        return json.dumps({"after": _iso(self.after), "leaving_from": _iso(self.leaving_from)})

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        """A cursor from ``serialized``, or from before leaving windows were checked (the
        last window checked alone)."""
        if not text:
            return cls()
        try:
            if not text.startswith("{"):
                return cls(after=_instant(text))
            fields = json.loads(text)
            return cls(_instant(fields["after"]), _instant(fields["leaving_from"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SensorSettingError(
                f"{SENSOR_NAME} sensor: unreadable cursor {text!r}; reset it in the UI"
            ) from exc


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat()


def _instant(text: str | None) -> datetime | None:
    return None if text is None else parse_utc_instant(text)


@dataclass(frozen=True)
class Scan:
    """One tick's checks, in one snapshot: the lookback's windows next in rotation, and the
    windows that left the lookback since they were last checked; and those of either that no
    pricebook version covers any more, unchecked."""

    now: datetime
    rotation: list[DigestCheck]
    leaving: list[DigestCheck]
    cursor: Cursor
    uncovered: list[LatestRating]


def scan(
    conn: psycopg.Connection,
    pricebooks: Pricebooks,
    previous: Cursor,
    window_lookback: timedelta,
    count: int,
) -> Scan:
    """The database's clock, the next ``count`` rated windows of the rotation, and up to
    ``count`` rated windows that left the lookback since ``previous``, all checked."""
    now = database_clock(conn)
    # Not clamped at the first partition: a window rated by hand before it is digested as
    # any other of the lookback, to be reported and recorded (no run can rate it).
    lookback_start = Window.containing(now).start - window_lookback
    rotation = queries.rotation(conn, lookback_start, now, previous.after, count)
    # Past the lookback's start only when the lookback was lengthened since: the windows
    # between are inside it again, and are checked once more when they leave it.
    leaving_from = min(previous.leaving_from or lookback_start, lookback_start)
    # Windows of [leaving_from, lookback_start), whole: rotation() reads [start, end).
    leaving = queries.rotation(conn, leaving_from, lookback_start, None, count)
    if len(leaving) == count:  # maybe more: the next tick goes on from here
        leaving_from = leaving[-1].window.end
    else:
        leaving_from = max(leaving_from, lookback_start)
    after = rotation[-1].window.start if rotation else previous.after
    checked = {rated: check_now(conn, pricebooks, rated) for rated in [*rotation, *leaving]}
    return Scan(
        now,
        [check for rated in rotation if (check := checked[rated]) is not None],
        [check for rated in leaving if (check := checked[rated]) is not None],
        Cursor(after, leaving_from),
        [rated for rated, check in checked.items() if check is None],
    )


def run_request(rerate: Rerate) -> dg.RunRequest:
    """Keyed by the latest rating, the digest now and the attempt: a new rating, a new
    change or an ended attempt makes a new key."""
    check = rerate.check
    return dg.RunRequest(
        run_key=f"{check.state}:{rerate.attempts + 1}",
        partition_key=check.window.key,
        tags={TRIGGER_TAG: SENSOR_NAME, STATE_TAG: check.state},
    )


def evaluate(context: dg.SensorEvaluationContext, found: Scan) -> dg.SensorResult:
    """Run requests for the changed windows of the lookback still to be tried; a warning
    for each changed window that left it (recorded: all_windows_billed lists it), and for
    each that no pricebook version covers any more."""
    serialized = found.cursor.serialized()
    changed = [
        rerate(context.instance, check)
        for check in found.rotation
        if check.changed and is_partition(check.window, found.now)
    ]
    warnings = [
        f"{check.window.key}: events changed since its latest rating, found as it left the "
        "lookback: no sensor re-rates it now; all_windows_billed lists it until a rating "
        f"reads its events ({_way_out(check.window)})"
        for check in found.leaving
        if check.changed
    ]
    warnings += [
        f"{check.window.key}: events changed since its latest rating; no sensor re-rates a "
        "window before the first partition: all_windows_billed lists it until a rating "
        f"reads its events ({_way_out(check.window)})"
        for check in found.rotation
        if check.changed and partitions.before_first_partition(check.window)
    ]
    warnings += [uncovered_line(rated) for rated in found.uncovered]
    for line in warnings:
        context.log.warning(line)
    requests = []
    for change in changed:
        check = change.check
        if change.to_request:
            context.log.info(
                f"{change.state()}: events digest {check.digest_now} now, "
                f"{check.rated.events_digest} at its latest rating"
            )
            requests.append(run_request(change))
        elif not change.in_flight:
            context.log.warning(change.state())
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=serialized)
    unchanged = [check.window.key for check in found.rotation if not check.changed]
    states = [*warnings, *(change.state() for change in changed)]
    if unchanged or not found.rotation:
        keys = ", ".join(unchanged) or "none rated in the lookback"
        states.append(f"windows checked, events unchanged since rated: {keys}")
    return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(states)), cursor=serialized)


def _way_out(window: Window) -> str:
    if partitions.before_first_partition(window):
        return partitions.RATE_BY_HAND
    return "materialize the partition"


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
            f"recomputes {per_tick} windows' events digests a tick, so that a change is "
            f"re-rated within {within // timedelta(minutes=1)} minutes ({INTERVAL_VARIABLE}): "
            f"every window of the {window_lookback // HOUR} h lookback is checked within half "
            "of that, and each once more as it leaves the lookback (changed then, it is "
            "recorded for all_windows_billed, not re-rated)."
        ),
    )
    def changed_events(
        context: dg.SensorEvaluationContext,
        warehouse: WarehouseResource,
        pricebooks: PricebookResource,
    ) -> dg.SensorResult:
        previous = Cursor.parse(context.cursor)
        books = pricebooks.load()
        with warehouse.rolled_back() as conn:
            found = scan(conn, books, previous, window_lookback, per_tick)
        changed = [
            ChangedAfterRating(c.window, c.events_now, c.rated.events_read, c.rated.log_id)
            for c in (*found.rotation, *found.leaving)
            if c.changed
        ]
        # Unchecked, so recorded: all_windows_billed counts its events again at each
        # evaluation, and digests them once a version covers it, here or past the lookback.
        changed += [
            ChangedAfterRating(r.window, r.events_read, r.events_read, r.log_id)
            for r in found.uncovered
        ]
        record_changed(warehouse, changed, found.now)
        return evaluate(context, found)

    return changed_events
