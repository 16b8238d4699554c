"""The production ``dagster.yaml`` on a live PostgreSQL: an instance from it runs a rating."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from rating_pipeline.orchestration.instance import (
    PRODUCTION_YAML,
    STORAGE_URL_VARIABLE,
    environment,
    local_instance,
    open_instance,
    prepare_dagster_home,
    storage_url,
)
from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE, project_root
from tests.factories import BillingEvent, make_event

AddEvents = Callable[[Iterable[BillingEvent]], int]


def test_production_yaml_keeps_storage_in_postgres_from_an_environment_variable() -> None:
    config = yaml.safe_load(PRODUCTION_YAML.read_text())

    assert config["storage"] == {"postgres": {"postgres_url": {"env": STORAGE_URL_VARIABLE}}}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_an_instance_from_the_production_yaml_runs_a_rating_on_postgres(
    database_url: str,
    add_events: AddEvents,
    storage_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The job's resources read these at run time (whatever the code location loaded with).
    monkeypatch.setenv(DATABASE_URL_VARIABLE, database_url)
    monkeypatch.setenv(PRICEBOOK_DIR_VARIABLE, str(project_root() / "pricebooks"))
    add_events([make_event()])
    local = local_instance(database_url, tmp_path / "dagster_home", storage_database)
    assert (local.home / "dagster.yaml").read_text() == PRODUCTION_YAML.read_text()
    from rating_pipeline.definitions import defs

    with open_instance(local) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        # A run whose process dies is retried (bounded); one that failed on purpose is not.
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 3
        assert not instance.run_retries_retry_on_asset_or_op_failure
        result = defs.resolve_job_def("rate_windows").execute_in_process(
            instance=instance, partition_key="2026-06-15-10:00"
        )
        stored = instance.get_run_by_id(result.run_id)
        materialized = instance.get_latest_materialization_event(dg.AssetKey("rated_usage"))

    assert result.success
    assert stored is not None and stored.status == dg.DagsterRunStatus.SUCCESS
    assert materialized is not None and materialized.asset_materialization is not None
    assert materialized.asset_materialization.partition == "2026-06-15-10:00"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT run_id FROM rated_usage").fetchall() == [(result.run_id,)]


def test_preparing_a_dagster_home_twice_changes_nothing(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "home")
    written = (home / "dagster.yaml").stat().st_mtime_ns

    prepare_dagster_home(tmp_path / "home")

    assert (home / "dagster.yaml").stat().st_mtime_ns == written


def test_preparing_a_dagster_home_replaces_a_stale_dagster_yaml(tmp_path: Path) -> None:
    """A home prepared by an earlier release gets this release's configuration."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage:\n  sqlite:\n    base_dir: history\n")

    prepare_dagster_home(home)

    assert (home / "dagster.yaml").read_text() == PRODUCTION_YAML.read_text()


def test_the_instance_environment_is_undone_when_its_block_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The quickstart opens its instance inside a process that goes on: the warehouse it
    pointed RATING_DATABASE_URL at, and the storage URL, must not outlive the block."""
    monkeypatch.setenv(DATABASE_URL_VARIABLE, "postgresql://before.invalid/warehouse")
    monkeypatch.delenv(STORAGE_URL_VARIABLE, raising=False)
    during = {
        DATABASE_URL_VARIABLE: "postgresql://during.invalid/warehouse",
        STORAGE_URL_VARIABLE: "postgresql+psycopg2://during.invalid/dagster",
    }
    with environment(during):
        assert {name: os.environ[name] for name in during} == during
    assert os.environ[DATABASE_URL_VARIABLE] == "postgresql://before.invalid/warehouse"
    assert STORAGE_URL_VARIABLE not in os.environ


@pytest.mark.parametrize(
    ("warehouse_url", "expected"),
    [
        (
            "postgresql://postgres:@/rating?host=/srv/.rating/pgdata",
            "postgresql+psycopg2://postgres@/dagster?host=%2Fsrv%2F.rating%2Fpgdata",
        ),
        (
            "user=postgres dbname=rating_test_1 host=/tmp/pg port=5432",
            "postgresql+psycopg2://postgres@/dagster?host=%2Ftmp%2Fpg&port=5432",
        ),
        (
            "postgresql://billing:p%40ss@db.internal:6543/warehouse?sslmode=require",
            "postgresql+psycopg2://billing:p%40ss@db.internal:6543/dagster?sslmode=require",
        ),
    ],
)
def test_storage_url_names_the_psycopg2_driver_on_the_same_server(
    warehouse_url: str, expected: str
) -> None:
    assert storage_url(warehouse_url) == expected
