"""The hourly schedule requests the hour that just closed, a grace period after it closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from rating_pipeline.definitions import defs
from rating_pipeline.orchestration.partitions import (
    before_first_partition,
    hourly_windows,
    is_partition,
)
from rating_pipeline.orchestration.schedules import (
    GRACE_VARIABLE,
    ScheduleSettingError,
    build_hourly_schedule,
    grace_minutes,
)
from rating_pipeline.windows import HOUR, Window

REPOSITORY = defs.get_repository_def()


def tick(schedule: dg.ScheduleDefinition, at: datetime) -> dg.RunRequest:
    """The run request of one tick, evaluated as the scheduler daemon does."""
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, repository_def=REPOSITORY
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
    return request


def test_tick_requests_the_hour_that_just_closed() -> None:
    schedule = REPOSITORY.get_schedule_def("hourly_rating")

    request = tick(schedule, datetime(2026, 6, 15, 11, 10, tzinfo=UTC))

    assert request.partition_key == "2026-06-15-10:00"
    assert request.run_key == "2026-06-15-10:00"
    assert schedule.cron_schedule == "10 * * * *"


def test_tick_at_midnight_requests_the_last_hour_of_the_previous_day() -> None:
    request = tick(build_hourly_schedule(0), datetime(2026, 7, 1, 0, 0, tzinfo=UTC))

    assert request.partition_key == "2026-06-30-23:00"


def test_grace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GRACE_VARIABLE, "25")
    assert grace_minutes() == 25
    assert build_hourly_schedule(grace_minutes()).cron_schedule == "25 * * * *"
    monkeypatch.delenv(GRACE_VARIABLE)
    assert grace_minutes() == 10
    assert grace_minutes("   ") == 10  # set but blank: the default, not an error
    assert (grace_minutes("0"), grace_minutes("59")) == (0, 59)  # the hour's first and last


@pytest.mark.parametrize("text", ["60", "-1", "ten", "1.5"])
def test_a_grace_that_is_not_a_minute_of_the_hour_is_refused(text: str) -> None:
    with pytest.raises(ScheduleSettingError, match=GRACE_VARIABLE):
        grace_minutes(text)


def test_the_first_tick_of_history_skips_the_hour_before_the_first_partition() -> None:
    """At the first partition's own hour, the hour that just closed precedes every pricebook:
    there is nothing to rate, and no unknown partition to request."""
    schedule = REPOSITORY.get_schedule_def("hourly_rating")
    first = hourly_windows.start.astimezone(UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=first.replace(minute=10),
            repository_def=REPOSITORY,
        )
        result = schedule.evaluate_tick(context)
    assert result.run_requests == [] and "before the first partition" in (result.skip_message or "")
    # An hour later, the first partition has closed: it is requested, not skipped.
    assert tick(schedule, first.replace(hour=1, minute=10)).partition_key == "2026-06-01-00:00"
    assert is_partition(Window(first), first + HOUR)
    assert not is_partition(Window(first), first + HOUR - timedelta(microseconds=1))
    assert not is_partition(Window(first - HOUR), first + HOUR)
    # the advice for a window no run can rate is not the first partition's (mutation pass)
    assert not before_first_partition(Window(first))
    assert before_first_partition(Window(first - HOUR))
