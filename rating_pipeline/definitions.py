"""The rating code location: ``defs`` (contract section 9).

Load it with ``dagster dev -m rating_pipeline.definitions`` or, with the invoicing location
(``invoice_definitions.py``), through ``workspace.yaml``.
Settings are read from the environment when the code location loads (docs/operations.md).
"""

from __future__ import annotations

import dagster as dg

from rating_pipeline.orchestration.assets import billing_event, pricebook, rated_usage, window_usage
from rating_pipeline.orchestration.changed_events import build_changed_events_sensor, interval
from rating_pipeline.orchestration.checks import RATED_USAGE_CHECKS
from rating_pipeline.orchestration.jobs import rate_windows_job
from rating_pipeline.orchestration.missed_hours import build_missed_hours_sensor
from rating_pipeline.orchestration.resources import (
    PRICEBOOKS,
    WAREHOUSE,
    pricebooks_from_environment,
    warehouse_from_environment,
)
from rating_pipeline.orchestration.schedules import build_hourly_schedule, grace_minutes
from rating_pipeline.orchestration.sensors import build_late_events_sensor, lookback

# One process per run, no process per step: the steps are thin and the work is SQL, so a
# subprocess per step would only add its start-up time to every run.
defs = dg.Definitions(
    assets=[billing_event, pricebook, window_usage, rated_usage],
    asset_checks=RATED_USAGE_CHECKS,
    jobs=[rate_windows_job],
    schedules=[build_hourly_schedule(grace_minutes())],
    sensors=[
        build_late_events_sensor(lookback()),
        build_changed_events_sensor(lookback(), interval()),
        build_missed_hours_sensor(lookback()),
    ],
    resources={
        WAREHOUSE: warehouse_from_environment(),
        PRICEBOOKS: pricebooks_from_environment(),
    },
    executor=dg.in_process_executor,
)
