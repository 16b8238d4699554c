"""The missed-hours sensor: a past hour with events and no rating is requested, a few times.

The schedule asks once per hour (its run key is the partition); a run that failed or never
launched leaves the hour unrated. Attempts are counted from the runs the instance keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.test_utils import create_run_for_test

from rating_pipeline.orchestration.jobs import JOB_NAME, TRIGGER_TAG
from rating_pipeline.orchestration.missed_hours import (
    IN_FLIGHT,
    MAX_ATTEMPTS,
    PARTITION_TAG,
    SENSOR_NAME,
    missed_span,
)
from rating_pipeline.orchestration.partitions import hourly_windows
from rating_pipeline.orchestration.sensors import (
    DEFAULT_LOOKBACK_HOURS,
    LOOKBACK_VARIABLE,
    SensorSettingError,
    lookback,
)
from rating_pipeline.windows import HOUR, Window
from tests.conftest import clear_of_an_hours_end, utc
from tests.factories import BillingEvent
from tests.sensing import (
    REPOSITORY,
    event,
    events_in,
    hours_ago,
    rate,
    requested,
    tick,
)

AddEvents = Callable[[Iterable[BillingEvent]], int]
SENSOR = REPOSITORY.get_sensor_def(SENSOR_NAME)
pytestmark = pytest.mark.usefixtures("an_hour_that_will_not_turn")


def missed_hour() -> Window:
    """Closed at least two hours ago, whatever the minute."""
    return hours_ago(3)


def earlier_run(instance: dg.DagsterInstance, window: Window, status: dg.DagsterRunStatus) -> None:
    """A run of the sensor's for ``window``, as the instance keeps it."""
    tags = {PARTITION_TAG: window.key, TRIGGER_TAG: SENSOR_NAME}
    create_run_for_test(instance, job_name=JOB_NAME, tags=tags, status=status)


def test_a_past_hour_with_events_and_no_rating_is_requested(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(missed_hour(), 2))

    [request] = tick(SENSOR, database_url, instance).run_requests or []

    assert request.partition_key == missed_hour().key
    assert request.tags[TRIGGER_TAG] == SENSOR_NAME


def test_hours_rated_empty_or_beyond_the_lookback_are_not_requested(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    rated, old = hours_ago(4), hours_ago(DEFAULT_LOOKBACK_HOURS + 2)
    add_events([*events_in(rated, 2), *events_in(old, 2)])
    rate(database_url, rated)

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_the_hour_at_the_lookbacks_start_is_requested_and_the_one_before_it_is_not(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """all_windows_billed promises missed_hours' attempts for every hour from the
    lookback's start, and sends the operator to the hour before it."""
    current = Window.containing(clear_of_an_hours_end())
    first = Window(current.start - DEFAULT_LOOKBACK_HOURS * HOUR)
    before = Window(first.start - HOUR)
    add_events([*events_in(first, 1), *events_in(before, 1)])

    assert requested(tick(SENSOR, database_url, instance)) == [first.key]


def test_an_hour_whose_only_event_is_at_its_first_instant_is_requested(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """Windows are half-open: the event is the hour's, which holds events, never rated."""
    add_events([event(missed_hour(), 0, "on-the-hour")])

    assert requested(tick(SENSOR, database_url, instance)) == [missed_hour().key]


def test_an_hour_rated_whose_events_were_all_excepted_is_not_missed(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A rating that billed nothing (an unknown model) still rated the hour: its rating_log
    row says so, and a run more would except the same events again."""
    add_events([event(missed_hour(), 5, "unpriced", model_id="mystery-model")])
    rate(database_url, missed_hour())

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_the_hour_that_just_closed_is_left_to_the_schedule(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(hours_ago(1), 2))

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_a_missed_hour_is_requested_at_most_three_times_then_reported(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(missed_hour(), 2))
    keys = []
    for _ in range(MAX_ATTEMPTS):
        [request] = tick(SENSOR, database_url, instance).run_requests or []
        keys.append(request.run_key)
        earlier_run(instance, missed_hour(), dg.DagsterRunStatus.FAILURE)

    given_up = tick(SENSOR, database_url, instance)

    assert MAX_ATTEMPTS == 3 and len(set(keys)) == 3
    assert given_up.run_requests == []
    assert f"{missed_hour().key}: never rated, requested 3 times" in (given_up.skip_message or "")


@pytest.mark.parametrize(
    "status",
    [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,  # still running until it is canceled
        dg.DagsterRunStatus.SUSPENDED,  # started, waiting without a worker: it resumes
    ],
)
def test_a_missed_hour_whose_run_is_in_flight_is_not_requested_again(
    database_url: str,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    status: dg.DagsterRunStatus,
) -> None:
    add_events(events_in(missed_hour(), 2))
    earlier_run(instance, missed_hour(), status)

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_a_missed_hour_inside_a_range_run_in_flight_is_not_requested_again(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A single-run backfill tags its run with the range it covers, not each partition."""
    add_events(events_in(missed_hour(), 2))
    before, after = Window(missed_hour().start - HOUR), Window(missed_hour().start + HOUR)
    tags = {ASSET_PARTITION_RANGE_START_TAG: before.key, ASSET_PARTITION_RANGE_END_TAG: after.key}
    create_run_for_test(instance, job_name=JOB_NAME, tags=tags, status=dg.DagsterRunStatus.STARTED)

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_a_missed_hour_that_ends_a_range_run_in_flight_is_not_requested_again(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(missed_hour(), 2))
    missed = missed_hour()
    earlier = Window(missed.start - 2 * HOUR)
    tags = {ASSET_PARTITION_RANGE_START_TAG: earlier.key, ASSET_PARTITION_RANGE_END_TAG: missed.key}
    create_run_for_test(instance, job_name=JOB_NAME, tags=tags, status=dg.DagsterRunStatus.STARTED)

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_a_missed_hour_that_starts_a_range_run_in_flight_is_not_requested_again(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(missed_hour(), 2))
    missed = missed_hour()
    later = Window(missed.start + 2 * HOUR)
    tags = {ASSET_PARTITION_RANGE_START_TAG: missed.key, ASSET_PARTITION_RANGE_END_TAG: later.key}
    create_run_for_test(instance, job_name=JOB_NAME, tags=tags, status=dg.DagsterRunStatus.STARTED)

    assert tick(SENSOR, database_url, instance).run_requests == []


def test_a_queued_run_is_in_flight() -> None:
    """With a run queue, a queued run must hold the hour back, or each tick would spend an
    attempt while the first waits (a QUEUED run needs a remote origin to be created here)."""
    assert dg.DagsterRunStatus.QUEUED in IN_FLIGHT


def test_runs_of_the_partition_that_missed_hours_did_not_make_are_not_its_attempts(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """The schedule's failed run (why the hour was missed) and runs by hand leave the
    sensor's three attempts whole."""
    add_events(events_in(missed_hour(), 2))
    for _ in range(MAX_ATTEMPTS):
        create_run_for_test(
            instance,
            job_name=JOB_NAME,
            tags={PARTITION_TAG: missed_hour().key},
            status=dg.DagsterRunStatus.FAILURE,
        )

    [request] = tick(SENSOR, database_url, instance).run_requests or []

    assert request.run_key == f"{missed_hour().key}:missed:1"


def test_an_hour_is_missed_only_once_it_closed_an_hour_and_a_half_ago() -> None:
    """Earlier, the sensor would race the schedule's own run of the hour."""
    assert missed_span(utc(2026, 7, 1, 12, 20)).end == utc(2026, 7, 1, 10)
    assert missed_span(utc(2026, 7, 1, 12, 40)).end == utc(2026, 7, 1, 11)


def test_a_range_run_in_flight_that_ends_before_the_hour_does_not_hold_it_back(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(events_in(missed_hour(), 2))
    earlier = Window(missed_hour().start - 2 * HOUR)
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: earlier.key,
        ASSET_PARTITION_RANGE_END_TAG: Window(missed_hour().start - HOUR).key,
    }
    create_run_for_test(instance, job_name=JOB_NAME, tags=tags, status=dg.DagsterRunStatus.STARTED)

    [request] = tick(SENSOR, database_url, instance).run_requests or []
    assert request.partition_key == missed_hour().key


def test_an_invoice_backfill_in_flight_holds_back_no_hour(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """invoice_lines' range runs carry month keys, which sort around every hour of them."""
    add_events(events_in(missed_hour(), 2))
    month = missed_hour().start.strftime("%Y-%m")
    next_month = (missed_hour().start + 32 * 24 * HOUR).strftime("%Y-%m")  # sorts after every hour
    tags = {ASSET_PARTITION_RANGE_START_TAG: month, ASSET_PARTITION_RANGE_END_TAG: next_month}
    create_run_for_test(
        instance, job_name="invoice_lines_job", tags=tags, status=dg.DagsterRunStatus.STARTED
    )

    [request] = tick(SENSOR, database_url, instance).run_requests or []
    assert request.partition_key == missed_hour().key


def test_a_lookback_too_short_to_hold_a_missed_hour_stops_the_code_location() -> None:
    """An hour is missed once it closed MISSED_AFTER (1 h 30) ago: a 1-hour lookback holds
    none, at any minute, so missed_hours could never request the hour a failed scheduled
    run left unbilled. From 2 hours on, each minute's span holds an hour or will."""
    with pytest.raises(SensorSettingError, match=f"{LOOKBACK_VARIABLE}='1'.*2 or more"):
        lookback("1")
    last_minute = utc(2026, 7, 1, 12, 59)
    for hours in ("2", str(DEFAULT_LOOKBACK_HOURS)):
        span = missed_span(last_minute, Window.containing(last_minute).start - lookback(hours))
        assert span.start < span.end, hours


def test_missed_hours_never_reach_before_the_first_partition_however_long_the_lookback() -> None:
    """An hour before the first partition is no partition: missed_hours must not request it,
    even when the lookback (up to ten years) starts earlier (mutant M6: the span starts at
    the lookback's start)."""
    first = hourly_windows.start.astimezone(UTC)

    span = missed_span(first + 100 * HOUR, since=first - 10 * HOUR)

    assert span.start == first
