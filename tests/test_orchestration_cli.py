"""Contract section 9 from a shell: the documented ``dg launch`` commands rate one window, or a
range, run exactly as the README writes them (tests/test_docs.py holds the README to these)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE, project_root
from rating_pipeline.windows import HOUR
from tests.factories import WINDOW_START, BillingEvent, make_event

AddEvents = Callable[[Iterable[BillingEvent]], int]
BIN = Path(sys.executable).parent
ONE_WINDOW = ("dg", "launch", "--assets", "*", "--partition", "2026-06-15-10:00")
A_DAY = (
    "dg",
    "launch",
    "--assets",
    "*",
    "--partition-range",
    "2026-06-15-00:00...2026-06-15-23:00",
)
# The invoicing code location (rating_pipeline/invoice_definitions.py): its own module.
ONE_MONTH = (
    "dg", "launch", "-m", "rating_pipeline.invoice_definitions", "--assets", "invoice_lines",
    "--partition", "2026-06",
)  # fmt: skip
DOCUMENTED = (ONE_WINDOW, A_DAY, ONE_MONTH)


def launch(database_url: str, dagster_home: Path, command: tuple[str, ...]) -> str:
    """Run ``command`` from the project root with a throwaway DAGSTER_HOME, as a user of the
    project's environment does; return its output (raise if it failed)."""
    dagster_home.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(BIN.parent),
        DATABASE_URL_VARIABLE: database_url,
        PRICEBOOK_DIR_VARIABLE: str(project_root() / "pricebooks"),
        "DAGSTER_HOME": str(dagster_home),
    }
    completed = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        env=env,
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stderr


def rated_windows(database_url: str) -> list[tuple[object, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT window_start, count(*)::int FROM rated_usage GROUP BY 1 ORDER BY 1"
        ).fetchall()


@pytest.mark.slow
def test_dg_launch_of_one_partition_rates_that_window(
    database_url: str, add_events: AddEvents, tmp_path: Path
) -> None:
    add_events([make_event("org-1"), make_event("org-2", occurred_at=WINDOW_START + HOUR)])

    output = launch(database_url, tmp_path / "home", ONE_WINDOW)

    assert rated_windows(database_url) == [(WINDOW_START, 1)]
    assert "superseded" not in output


@pytest.mark.slow
def test_dg_launch_of_a_partition_range_rates_it_in_one_run(
    database_url: str, add_events: AddEvents, tmp_path: Path
) -> None:
    add_events(
        [
            make_event("org-1"),
            make_event("org-2", occurred_at=WINDOW_START + HOUR + timedelta(minutes=5)),
            make_event("org-3", occurred_at=WINDOW_START + 3 * HOUR),
        ]
    )

    launch(database_url, tmp_path / "home", A_DAY)

    assert rated_windows(database_url) == [
        (WINDOW_START, 1),
        (WINDOW_START + HOUR, 1),
        (WINDOW_START + 3 * HOUR, 1),
    ]
    with psycopg.connect(database_url) as conn:
        runs = conn.execute("SELECT count(DISTINCT run_id), count(*) FROM rating_log").fetchone()
    assert runs == (1, 24)


@pytest.mark.slow
def test_dg_launch_of_one_month_builds_its_invoice_lines(
    database_url: str, add_events: AddEvents, tmp_path: Path
) -> None:
    add_events([make_event("org-1"), make_event("org-2", occurred_at=WINDOW_START + HOUR)])
    launch(database_url, tmp_path / "home", A_DAY)

    launch(database_url, tmp_path / "again", ONE_MONTH)

    with psycopg.connect(database_url) as conn:
        built = conn.execute(
            "SELECT month, account_id, count(*)::int FROM invoice_line GROUP BY 1, 2 ORDER BY 2"
        ).fetchall()
    june = WINDOW_START.replace(day=1, hour=0)
    assert built == [(june, "org-1", 2), (june, "org-2", 2)]  # input and output lines each
