"""End to end as an operator works: ``dagster-webserver`` and ``dagster-daemon`` on the
production instance configuration, a backfill launched through the GraphQL API the UI calls
(``launchPartitionBackfill``), executed by the backfill daemon, rating the warehouse.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from rating_pipeline.windows import HOUR
from tests.factories import WINDOW_START, BillingEvent, make_event
from tests.services import WORKSPACE, Services, wait_for

AddEvents = Callable[[Iterable[BillingEvent]], int]
PARTITIONS = ["2026-06-15-10:00", "2026-06-15-11:00", "2026-06-15-12:00"]
DEADLINE_SECONDS = 300

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs { runId status } }
    ... on PythonError { message }
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload: dict[str, Any] = json.loads(response.read())
    assert "errors" not in payload, payload
    data: dict[str, Any] = payload["data"]
    return data


@pytest.mark.slow
def test_a_backfill_launched_through_the_ui_api_rates_every_window(
    database_url: str, add_events: AddEvents, services: Services
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    minute = timedelta(minutes=1)
    add_events(
        [
            make_event("org-1", "base-large"),
            make_event("org-2", "base-small", occurred_at=WINDOW_START + HOUR + minute),
            make_event("org-3", "base-medium", occurred_at=WINDOW_START + 2 * HOUR + minute),
        ]
    )
    port = free_port()
    services.start("dagster-webserver", *WORKSPACE, "-h", "127.0.0.1", "-p", str(port))
    wait_for("the webserver", lambda: graphql(port, "{ version }"), deadline)

    launched = graphql(
        port,
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [
                    {"path": ["pricebook"]},
                    {"path": ["window_usage"]},
                    {"path": ["rated_usage"]},
                ],
                "partitionNames": PARTITIONS,
                "fromFailure": False,
                "tags": [],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    # The backfill daemon evaluates backfills every 30 s; started now, its first pass finds
    # this one (and its run queue launches the run).
    services.start("dagster-daemon", "run", *WORKSPACE)

    def finished_runs() -> list[dict[str, str]] | None:
        backfill = graphql(port, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        runs = backfill["runs"]
        done = runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        return runs if done else None

    runs = wait_for("the backfill's run", finished_runs, deadline)

    assert [r["status"] for r in runs] == ["SUCCESS"]  # one run for the whole range
    with psycopg.connect(database_url) as conn:
        rated = conn.execute(
            "SELECT window_start, auth_id, run_id FROM rated_usage ORDER BY window_start"
        ).fetchall()
    assert [(start, auth) for start, auth, _ in rated] == [
        (WINDOW_START, "org-1"),
        (WINDOW_START + HOUR, "org-2"),
        (WINDOW_START + 2 * HOUR, "org-3"),
    ]
    assert {run_id for _, _, run_id in rated} == {runs[0]["runId"]}
