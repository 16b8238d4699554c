"""The one job: rate a set of windows (its partition or partition range), checks included."""

from __future__ import annotations

import dagster as dg

from rating_pipeline.orchestration.assets import pricebook, rated_usage, window_usage

JOB_NAME = "rate_windows"
# Which schedule or sensor asked for a run: every run request carries it.
TRIGGER_TAG = "rating/trigger"

# Selecting the assets selects their checks too; the hourly partitions come with them.
rate_windows_job = dg.define_asset_job(
    name=JOB_NAME,
    selection=dg.AssetSelection.assets(pricebook, window_usage, rated_usage),
    description=(
        "Validate the pricebooks, summarise the windows' events, rate and reconcile each "
        "window in its own transaction, then audit rated_usage."
    ),
)
