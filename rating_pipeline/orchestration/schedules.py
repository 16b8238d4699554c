"""The hourly schedule: a few minutes after each hour closes, rate the hour that just closed."""

import os
from datetime import datetime

import dagster as dg

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.orchestration.jobs import TRIGGER_TAG, rate_windows_job
from rating_pipeline.orchestration.partitions import hourly_windows
from rating_pipeline.windows import HOUR, Window

GRACE_VARIABLE = "RATING_SCHEDULE_GRACE_MINUTES"
DEFAULT_GRACE_MINUTES = 10
SCHEDULE_NAME = "hourly_rating"


class ScheduleSettingError(RatingPipelineError, ValueError):
    """RATING_SCHEDULE_GRACE_MINUTES is not a whole number of minutes in 0..59."""


def grace_minutes(value: str | None = None) -> int:
    """The minutes after the hour at which the schedule fires (``RATING_SCHEDULE_GRACE_MINUTES``).

    The grace lets events of the closed hour finish arriving; what still arrives later is
    the late-events sensor's business.
    """
    text = os.environ.get(GRACE_VARIABLE) if value is None else value
    if text is None or not text.strip():
        return DEFAULT_GRACE_MINUTES
    try:
        minutes = int(text)
    except ValueError:
        minutes = -1
    if not 0 <= minutes <= 59:
        raise ScheduleSettingError(
            f"{GRACE_VARIABLE}={text!r}: expected whole minutes after the hour, 0 to 59"
        )
    return minutes


def closed_window(tick: datetime) -> Window:
    """The window that closed last at ``tick``: the hour before the one ``tick`` falls in."""
    return Window(Window.containing(tick).start - HOUR)


def build_hourly_schedule(minutes_after_hour: int) -> dg.ScheduleDefinition:
    """At ``HH:minutes_after_hour`` UTC, request the partition of window ``HH-1:00``.

    The run key is the partition key: a tick that is retried never rates the window twice.
    """

    @dg.schedule(
        name=SCHEDULE_NAME,
        cron_schedule=f"{minutes_after_hour} * * * *",
        execution_timezone="UTC",
        job=rate_windows_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every hour at minute {minutes_after_hour} (UTC, {GRACE_VARIABLE}), rate the hour "
            "that just closed."
        ),
    )
    def hourly_rating(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        window = closed_window(context.scheduled_execution_time)
        if window.start < hourly_windows.start:
            return dg.SkipReason(f"{window.key} is before the first partition: nothing to rate")
        return dg.RunRequest(
            run_key=window.key, partition_key=window.key, tags={TRIGGER_TAG: SCHEDULE_NAME}
        )

    return hourly_rating
