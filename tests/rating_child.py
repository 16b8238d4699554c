"""A rating in a child process, for the concurrency tests.

It imports the engine and the test factories only (not the conftest, which brings
Dagster), so a spawned child starts in seconds even on a busy machine.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import psycopg

from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.warehouse.database import connect
from rating_pipeline.windows import Window
from tests.factories import WINDOW_START, make_version, own

WINDOW = Window(WINDOW_START)
TIMEOUT = 120.0  # against a hang only: no test counts on a child being quick


def version_priced(input_rate: str) -> PricebookVersion:
    """The test's pricebook, its base rate set by ``input_rate`` (each run's own prices)."""
    return make_version(
        {"base-large": own(input_rate, "10"), "base-small": own("0.15", "0.60")},
        fine_tune_multiplier="1.5",
    )


def rate_in_child(
    url: str,
    input_rate: str,
    run_id: str,
    pause_after: str | None,
    resume: Path,
    report: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """Rate WINDOW with ``version_priced(input_rate)``; pause after step ``pause_after``
    until ``resume`` exists, reporting the pause and the outcome on ``report``."""
    from rating_pipeline.warehouse import engine

    if pause_after is not None:
        step = getattr(engine, pause_after)

        def pausing(conn: psycopg.Connection, *args: object) -> object:
            outcome = step(conn, *args)
            report.put(("paused", conn.info.backend_pid))
            deadline = time.monotonic() + TIMEOUT
            while not resume.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            return outcome

        setattr(engine, pause_after, pausing)
    with connect(url) as conn:
        result = engine.rate_window(conn, WINDOW, Pricebooks((version_priced(input_rate),)), run_id)
    report.put(("done", str(result.total_cost_usd)))
