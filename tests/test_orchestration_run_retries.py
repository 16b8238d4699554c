"""A run whose process dies is retried, and its window rated, with no hand on it; a run that
failed on purpose is not retried (the shipped dagster.yaml: ``run_retries``, max 3,
``retry_on_asset_or_op_failure: false``).

Every process is the one an operator runs, on the production instance configuration
(storage in PostgreSQL): ``dagster-daemon run`` (the run queue, and the event log consumer
that retries runs), the code server it starts, which starts each run in a process of its
own, and ``dagster job launch``. The test holds the window's lock, so that the run is caught
inside its rating, and kills the run's process with SIGKILL. The code server sees the
process gone and fails the run; the daemon does the rest.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, RETRY_NUMBER_TAG

from rating_pipeline.orchestration.instance import LocalInstance, open_instance
from rating_pipeline.orchestration.jobs import JOB_NAME
from rating_pipeline.orchestration.missed_hours import PARTITION_TAG
from rating_pipeline.warehouse.engine import window_lock_key
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window
from tests.factories import WINDOW_START, BillingEvent, make_event
from tests.services import WORKSPACE, Services, wait_for

AddEvents = Callable[[Iterable[BillingEvent]], int]
DEADLINE_SECONDS = 480
KILLED = Window(WINDOW_START)
AMBIGUOUS = Window(WINDOW_START + HOUR)
KILLED_RUN = "0000000a-0000-4000-8000-00000000dead"
AMBIGUOUS_RUN = "0000000b-0000-4000-8000-0000000000ab"
WAITING_ON_ADVISORY_LOCK = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
RETRYING_DAEMON = "EVENT_LOG_CONSUMER"  # dagster-daemon's thread that retries failed runs
NOT_RETRIED = "Not retrying run since it failed due to an asset or op failure"


def launch(services: Services, run_id: str, window: Window) -> None:
    """Submit a run of the window's partition as an operator does (it joins the run queue)."""
    tags = json.dumps({PARTITION_TAG: window.key})
    services.run("dagster", "job", "launch", *WORKSPACE, "-l", "rating", "-j", JOB_NAME,
                 "--run-id", run_id, "--tags", tags)  # fmt: skip


def run_process(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's process, from the engine event its code server logged."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        if "pid" in metadata:
            return int(str(metadata["pid"].value))
    return None


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.status in FINISHED else None


def finished_retry(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    retries = instance.get_runs(dg.RunsFilter(tags={PARENT_RUN_ID_TAG: run_id}))
    return next((run for run in retries if run.status in FINISHED), None)


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [record.message for record in instance.all_logs(run_id)]


@pytest.mark.slow
def test_a_run_whose_process_dies_is_retried_and_rates_its_window_one_failed_on_purpose_is_not(
    database_url: str, add_events: AddEvents, dagster_home: LocalInstance, services: Services
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    add_events([make_event("org-1", "base-large"), make_event("org-2", "base-small")])
    add_events([
        make_event("org-9", "ft:globex:chat", "base-medium", occurred_at=AMBIGUOUS.start),
        make_event("org-9", "ft:globex:chat", "base-small", occurred_at=AMBIGUOUS.start),
    ])  # fmt: skip
    namespace, window_hour = window_lock_key(KILLED)
    services.start("dagster-daemon", "run", *WORKSPACE)
    with psycopg.connect(database_url) as locker, open_instance(dagster_home) as instance:
        # Held here, the window's lock catches the run inside its rating's transaction.
        locker.execute(
            load_sql("lock_window"), {"namespace": namespace, "window_hour": window_hour}
        )
        launch(services, KILLED_RUN, KILLED)
        launch(services, AMBIGUOUS_RUN, AMBIGUOUS)

        def caught() -> int | None:
            """The run's pid once it waits on the lock, the retrying daemon up (its first
            pass starts from the latest event: a failure before it would go unseen)."""
            row = locker.execute(WAITING_ON_ADVISORY_LOCK).fetchone()
            retrying = RETRYING_DAEMON in instance.get_daemon_heartbeats()
            return run_process(instance, KILLED_RUN) if row == (1,) and retrying else None

        pid = wait_for("the run's process, waiting on the window's lock", caught, deadline)
        os.kill(pid, signal.SIGKILL)
        locker.rollback()

        failed = wait_for(
            "the killed run to fail", lambda: finished(instance, KILLED_RUN), deadline
        )
        retry = wait_for("its retry", lambda: finished_retry(instance, KILLED_RUN), deadline)
        on_purpose = wait_for(
            "the daemon's word on the run that failed on purpose",
            lambda: any(NOT_RETRIED in m for m in messages(instance, AMBIGUOUS_RUN)),
            deadline,
        )
        killed_messages = messages(instance, KILLED_RUN)
        ambiguous_retries = instance.get_runs(
            dg.RunsFilter(tags={PARENT_RUN_ID_TAG: AMBIGUOUS_RUN})
        )
        ambiguous = instance.get_run_by_id(AMBIGUOUS_RUN)

    assert failed.status == dg.DagsterRunStatus.FAILURE
    # The code server saw its run's process gone and failed the run; the daemon retried it.
    died = f"Run execution process for {KILLED_RUN} was terminated by signal 9 (SIGKILL)."
    assert any(died in message for message in killed_messages)
    assert "Retrying the run" in killed_messages
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    assert retry.tags[RETRY_NUMBER_TAG] == "1" and retry.tags[PARTITION_TAG] == KILLED.key
    with psycopg.connect(database_url) as conn:
        logged = conn.execute(
            "SELECT run_id FROM rating_log WHERE window_start = %s", (KILLED.start,)
        ).fetchall()
        billed = conn.execute(
            "SELECT DISTINCT run_id FROM rated_usage WHERE window_start = %s", (KILLED.start,)
        ).fetchall()
    assert logged == [(retry.run_id,)] and billed == [(retry.run_id,)]
    assert on_purpose and ambiguous is not None
    assert ambiguous.status == dg.DagsterRunStatus.FAILURE and ambiguous_retries == []
