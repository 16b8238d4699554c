"""Contract section 9 from a shell: ``dagster asset materialize`` rates one window, or a range."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from rating_pipeline.records import BillingEvent
from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE, project_root
from rating_pipeline.windows import HOUR
from tests.factories import WINDOW_START, make_event

AddEvents = Callable[[Iterable[BillingEvent]], int]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def materialize(database_url: str, dagster_home: Path, *partition_args: str) -> str:
    """Run the CLI with a throwaway DAGSTER_HOME; return its output (raise if it failed)."""
    dagster_home.mkdir()
    env = {
        **os.environ,
        DATABASE_URL_VARIABLE: database_url,
        PRICEBOOK_DIR_VARIABLE: str(project_root() / "pricebooks"),
        "DAGSTER_HOME": str(dagster_home),
    }
    completed = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "rating_pipeline.definitions", "--select", "*",
         *partition_args],
        env=env,
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stderr


def rated_windows(database_url: str) -> list[tuple[object, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT window_start, count(*)::int FROM rated_usage GROUP BY 1 ORDER BY 1"
        ).fetchall()


@pytest.mark.slow
def test_cli_materializes_one_partition_and_rates_that_window(
    database_url: str, add_events: AddEvents, tmp_path: Path
) -> None:
    add_events([make_event("org-1"), make_event("org-2", occurred_at=WINDOW_START + HOUR)])

    materialize(database_url, tmp_path / "home", "--partition", "2026-06-15-10:00")

    assert rated_windows(database_url) == [(WINDOW_START, 1)]


@pytest.mark.slow
def test_cli_materializes_a_partition_range_in_one_run(
    database_url: str, add_events: AddEvents, tmp_path: Path
) -> None:
    add_events(
        [
            make_event("org-1"),
            make_event("org-2", occurred_at=WINDOW_START + HOUR + timedelta(minutes=5)),
            make_event("org-3", occurred_at=WINDOW_START + 3 * HOUR),
        ]
    )

    materialize(
        database_url, tmp_path / "home", "--partition-range", "2026-06-15-10:00...2026-06-15-12:00"
    )

    assert rated_windows(database_url) == [(WINDOW_START, 1), (WINDOW_START + HOUR, 1)]
    with psycopg.connect(database_url) as conn:
        runs = conn.execute("SELECT count(DISTINCT run_id), count(*) FROM rating_log").fetchone()
    assert runs == (1, 3)
