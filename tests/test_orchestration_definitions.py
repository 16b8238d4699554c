"""The code location as a reviewer sees it: a change to the graph changes this snapshot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._serdes import serialize_value

from rating_pipeline import invoice_definitions
from rating_pipeline.definitions import defs
from rating_pipeline.orchestration.assets import pricebook, rated_usage, window_usage
from rating_pipeline.orchestration.checks import RATED_USAGE_CHECKS
from rating_pipeline.orchestration.resources import (
    PricebookResource,
    pricebooks_from_environment,
    warehouse_from_environment,
)
from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE, project_root
from rating_pipeline.warehouse import database
from tests.factories import make_event

WORKSPACE = project_root() / "workspace.yaml"
HOURLY = {
    "type": "HourlyPartitionsDefinition",
    "start": "2026-06-01-00:00",
    "timezone": "UTC",
    "end_offset": 0,
}
MONTHLY = {
    "type": "MonthlyPartitionsDefinition",
    "start": "2026-06",
    "timezone": "UTC",
    "end_offset": 1,
}
EXPECTED = {
    "assets": {
        "billing_event": {
            "deps": [],
            "partitions": None,
            "backfill_policy": None,
            "table_name": "billing_event",
            "external": True,
            "freshness": None,
        },
        "pricebook": {
            "deps": [],
            "partitions": HOURLY,
            "backfill_policy": "single_run",
            "table_name": None,
            "external": False,
            "freshness": None,
        },
        "window_usage": {
            "deps": ["billing_event"],
            "partitions": HOURLY,
            "backfill_policy": "single_run",
            "table_name": None,
            "external": False,
            "freshness": None,
        },
        "rated_usage": {
            "deps": ["billing_event", "pricebook", "window_usage"],
            "partitions": HOURLY,
            "backfill_policy": "single_run",
            "table_name": "rated_usage",
            "external": False,
            "freshness": {"type": "TimeWindowFreshnessPolicy", "fail": "1:30:00", "warn": None},
        },
    },
    "checks": {
        "rated_usage:all_usage_priced": {"blocking": False},
        "rated_usage:all_windows_billed": {"blocking": False},
        "rated_usage:cost_reconstructs": {"blocking": True},
        "rated_usage:events_conserved": {"blocking": False},
        "rated_usage:no_ambiguous_base": {"blocking": True},
        "rated_usage:no_open_adjustments": {"blocking": False},
        "rated_usage:priced_by_current_pricebooks": {"blocking": False},
    },
    "jobs": {
        "rate_windows": {
            "assets": ["pricebook", "rated_usage", "window_usage"],
            "checks": 7,
            "partitions": HOURLY,
        }
    },
    "schedules": {
        "hourly_rating": {
            "cron": "10 * * * *",
            "timezone": "UTC",
            "job": "rate_windows",
            "default_status": "RUNNING",
        }
    },
    "sensors": {
        "changed_events": {
            "job": "rate_windows",
            "minimum_interval_seconds": 60,
            "default_status": "RUNNING",
        },
        "late_events": {
            "job": "rate_windows",
            "minimum_interval_seconds": 60,
            "default_status": "RUNNING",
        },
        "missed_hours": {
            "job": "rate_windows",
            "minimum_interval_seconds": 60,
            "default_status": "RUNNING",
        },
    },
    "resources": ["pricebooks", "warehouse"],
    "executor": "in_process",
}


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict[str, object] | None:
    if partitions_def is None:
        return None
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    return {
        "type": type(partitions_def).__name__,
        "start": partitions_def.start.strftime(partitions_def.fmt),
        "timezone": partitions_def.timezone,
        "end_offset": partitions_def.end_offset,
    }


def _text(value: object) -> str | None:
    """A definition's metadata value as text (a plain str, or a TextMetadataValue)."""
    if isinstance(value, dg.TextMetadataValue):
        return value.value
    return value if isinstance(value, str) else None


def _freshness(policy: dg.FreshnessPolicy | None) -> dict[str, object] | None:
    if policy is None:
        return None
    assert isinstance(policy, TimeWindowFreshnessPolicy), policy
    warn = policy.warn_window
    return {
        "type": type(policy).__name__,
        "fail": str(policy.fail_window.to_timedelta()),
        "warn": None if warn is None else str(warn.to_timedelta()),
    }


def snapshot(definitions: dg.Definitions) -> dict[str, object]:
    repository = definitions.get_repository_def()
    graph = repository.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        policy = node.backfill_policy
        assets[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": policy.policy_type.value.lower() if policy else None,
            "table_name": _text(node.metadata.get("dagster/table_name")),
            "external": not node.is_executable,
            "freshness": _freshness(node.freshness_policy),
        }
    checks = {
        f"{spec.asset_key.to_user_string()}:{spec.name}": {"blocking": spec.blocking}
        for checks_def in definitions.asset_checks or ()
        for spec in checks_def.check_specs
    }
    jobs = {}
    for job in repository.get_all_jobs():
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "checks": len(job.asset_layer.asset_graph.asset_check_keys),
            "partitions": _partitions(job.partitions_def),
        }
    return {
        "assets": assets,
        "checks": dict(sorted(checks.items())),
        "jobs": jobs,
        "schedules": {
            s.name: {
                "cron": s.cron_schedule,
                "timezone": s.execution_timezone,
                "job": s.job_name,
                "default_status": s.default_status.value,
            }
            for s in repository.schedule_defs
        },
        "sensors": {
            s.name: {
                "job": s.job_name,
                "minimum_interval_seconds": s.minimum_interval_seconds,
                "default_status": s.default_status.value,
            }
            for s in repository.sensor_defs
        },
        "resources": sorted(repository.get_top_level_resources()),
        "executor": definitions.executor.name
        if isinstance(definitions.executor, dg.ExecutorDefinition)
        else None,
    }


# The invoicing location: rated_usage is the rating location's asset, seen here as a stub.
INVOICING_EXPECTED = {
    "assets": {
        "invoice_lines": {
            "deps": ["rated_usage"],
            "partitions": MONTHLY,
            "backfill_policy": "single_run",
            "table_name": "invoice_line",
            "external": False,
            "freshness": None,
        },
        "rated_usage": {
            "deps": [],
            "partitions": None,
            "backfill_policy": None,
            "table_name": None,
            "external": True,
            "freshness": None,
        },
    },
    "checks": {"invoice_lines:closed_months_match_their_close": {"blocking": True}},
    "jobs": {},
    "schedules": {},
    "sensors": {},
    "resources": ["warehouse"],
    "executor": "in_process",
}


def test_definitions_snapshot() -> None:
    assert snapshot(defs) == EXPECTED


def test_invoicing_definitions_snapshot() -> None:
    assert snapshot(invoice_definitions.defs) == INVOICING_EXPECTED


@pytest.mark.parametrize("definitions", [defs, invoice_definitions.defs])
def test_definitions_validate_for_dagster(definitions: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(definitions)


@pytest.mark.parametrize(
    "module", ["rating_pipeline.definitions", "rating_pipeline.invoice_definitions"]
)
@pytest.mark.parametrize("selection", ["*", "group:rating", "invoice_lines"])
def test_the_documented_launch_selections_print_no_warning(module: str, selection: str) -> None:
    """`dg launch --assets SELECTION` (README, docs/operations.md) parses its selection after
    loading the code location: nothing on stderr a user cannot act on."""
    parse = f"import {module}, dagster; dagster.AssetSelection.from_string({selection!r})"
    ran = subprocess.run([sys.executable, "-c", parse], capture_output=True, text=True, check=True)
    assert "Warning" not in ran.stderr, ran.stderr


def test_the_workspace_maps_each_invoice_month_to_its_hours_of_rated_usage() -> None:
    """Across the two code locations workspace.yaml loads, June's invoice_lines partition
    depends on June's 720 hourly rated_usage partitions (what the UI's lineage shows)."""
    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget([str(WORKSPACE)])) as workspace,
    ):
        context = workspace.create_request_context()
        assert {
            name: entry.load_error for name, entry in context.get_code_location_entries().items()
        } == {"rating": None, "invoicing": None}
        graph = context.asset_graph
        hours = list(
            graph.get_parent_partition_keys_for_child(
                "2026-06", dg.AssetKey("rated_usage"), dg.AssetKey("invoice_lines")
            ).partitions_subset.get_partition_keys()
        )
    assert len(hours) == 720
    assert (min(hours), max(hours)) == ("2026-06-01-00:00", "2026-06-30-23:00")


def test_database_url_reaches_the_ui_as_a_variable_name_never_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "postgresql://billing:hunter2-secret@db.internal:5432/warehouse"
    monkeypatch.setenv(DATABASE_URL_VARIABLE, secret)
    definitions = dg.Definitions(
        assets=[pricebook, window_usage, rated_usage],
        asset_checks=list(RATED_USAGE_CHECKS),
        resources={"warehouse": warehouse_from_environment(), "pricebooks": PricebookResource()},
    )

    shown = serialize_value(RepositorySnap.from_def(definitions.get_repository_def()))

    assert DATABASE_URL_VARIABLE in shown
    assert "hunter2" not in shown and "db.internal" not in shown


def test_unset_variables_fall_back_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
    monkeypatch.delenv(PRICEBOOK_DIR_VARIABLE, raising=False)

    assert warehouse_from_environment().database_url is None
    assert pricebooks_from_environment().directory == str(project_root() / "pricebooks")


def test_a_set_pricebook_dir_is_the_one_runs_price_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RATING_PRICEBOOK_DIR reaches the run, not only the CLI: a run never prices from the
    shipped pricebooks/ when another directory is configured."""
    directory = tmp_path / "pricebooks"
    directory.mkdir()
    configured = directory / "2026-06-01.yaml"
    configured.write_text((project_root() / "pricebooks" / "2026-06-01.yaml").read_text())
    monkeypatch.setenv(PRICEBOOK_DIR_VARIABLE, str(directory))

    result = dg.materialize(
        [pricebook],
        partition_key="2026-06-15-10:00",
        resources={"pricebooks": pricebooks_from_environment()},
    )

    [materialization] = result.asset_materializations_for_node("pricebook")
    assert materialization.metadata["source_file"].value == str(configured)


def test_a_run_with_the_database_url_unset_uses_the_embedded_default(
    database_url: str, add_events, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server stands in for the embedded one: database_url() falls back to it
    # exactly as it would to .rating/pgdata when RATING_DATABASE_URL is unset.
    monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
    monkeypatch.delenv(PRICEBOOK_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(database, "_embedded_url", lambda: database_url)
    add_events([make_event()])

    result = dg.materialize(
        [pricebook, window_usage, rated_usage],
        partition_key="2026-06-15-10:00",
        resources={
            "warehouse": warehouse_from_environment(),
            "pricebooks": pricebooks_from_environment(),
        },
    )

    [materialization] = result.asset_materializations_for_node("rated_usage")
    assert materialization.metadata["rows_inserted"].value == 1


def test_the_sensors_descriptions_say_their_settings_as_the_docs_do() -> None:
    """The UI showed `closed 1:30:00 ago`, and `checked within 30 minutes
    (RATING_CHANGED_EVENT_INTERVAL_MINUTES)` as if the setting were 30 (it is 60, the
    re-rate's bound). Found by an audit of the UI."""
    described = {sensor.name: sensor.description or "" for sensor in defs.sensors or []}
    assert "once it closed 1 h 30 ago" in described["missed_hours"]
    assert (
        "a change is re-rated within 60 minutes (RATING_CHANGED_EVENT_INTERVAL_MINUTES)"
        in described["changed_events"]
    )
