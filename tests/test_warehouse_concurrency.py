"""Ratings of one window from several processes, and ratings that die mid-transaction.

Child processes (spawned, so they share nothing with the test but the database URL) run
the real ``rate_window``; a child can be told to pause inside its transaction, after a
given step, holding the window's lock, so that the test can line up a competitor or kill it.
A child reports through a queue and is resumed by a file appearing: no lock is shared with
a process the test may kill.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path

import psycopg
import pytest

from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import WindowRating, rate_window
from tests import oracle
from tests.conftest import delete_events, insert_events, stored_window
from tests.factories import BillingEvent, make_event
from tests.rating_child import TIMEOUT, WINDOW, rate_in_child, version_priced

SPAWN = multiprocessing.get_context("spawn")

# Other test sessions may share the server: count only this database's advisory locks.
WAITING_ON_ADVISORY_LOCK = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# Window locks only: a rating also holds the periods lock, shared.
ADVISORY_LOCKS_HELD = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# The visible version of every row: its values and the transaction that wrote it. (xmax is
# left out: an aborted delete or update leaves its xid there, harmlessly.)
ROW_STATE = """
SELECT 'usage', auth_id, model_id, xmin::text, cost_usd::text, rated_at, run_id
FROM rated_usage
UNION ALL
SELECT 'exception', auth_id, model_id || '/' || reason, xmin::text, detail, rated_at, run_id
FROM rating_exception
ORDER BY 1, 2, 3
"""


@dataclass
class Child:
    """A rating running in another process."""

    process: BaseProcess
    report: multiprocessing.Queue  # type: ignore[type-arg]
    resume_file: Path

    def next_report(self) -> tuple[str, object]:
        kind, value = self.report.get(timeout=TIMEOUT)
        return kind, value

    def resume(self) -> None:
        self.resume_file.touch()

    def stop(self) -> None:
        self.resume()
        self.process.join(TIMEOUT)
        self.process.kill()
        self.process.join(TIMEOUT)


def _start(
    url: str, input_rate: str, run_id: str, directory: Path, pause_after: str | None = None
) -> Child:
    report = SPAWN.Queue()
    resume_file = directory / f"resume-{run_id}"
    process = SPAWN.Process(
        target=rate_in_child, args=(url, input_rate, run_id, pause_after, resume_file, report)
    )
    process.start()
    return Child(process, report, resume_file)


def _wait_for(reader: psycopg.Connection, query: str, expected: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        row = reader.execute(query).fetchone()
        if row is not None and row[0] == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {query.strip()} = {expected}")


def _events() -> list[BillingEvent]:
    return [
        make_event("org-1", "base-large"),
        make_event("org-2", "base-large"),
        make_event("org-2", "base-small"),
        make_event("org-3", "ft:tuned", "base-large"),
        make_event("org-4", "mystery"),
    ]


def test_concurrent_ratings_of_one_window_serialize_to_one_runs_output(
    tmp_path: Path,
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    events = _events()
    add_events(events)
    first = _start(database_url, "2.50", "run-a", tmp_path, pause_after="resolve_window")
    second: Child | None = None
    try:
        assert first.next_report()[0] == "paused"
        second = _start(database_url, "4.00", "run-b", tmp_path)
        # run-b is queued on run-a's window lock, having written nothing.
        _wait_for(reader, WAITING_ON_ADVISORY_LOCK, 1)
        assert reader.execute("SELECT count(*) FROM rated_usage").fetchone() == (0,)
        first.resume()
        assert first.next_report()[0] == "done"
        assert second.next_report()[0] == "done"
        first.process.join(TIMEOUT)
        second.process.join(TIMEOUT)
        assert (first.process.exitcode, second.process.exitcode) == (0, 0)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # The later run's output, whole: every row priced by run-b, none of run-a's left.
    expected = oracle.rate_window(WINDOW, version_priced("4.00"), events)
    with connect(database_url) as conn:
        stored = stored_window(conn, WINDOW)
    assert stored.rollups == expected.rollups
    assert stored.exceptions == expected.exceptions
    run_ids = reader.execute("SELECT DISTINCT run_id FROM rated_usage").fetchall()
    assert run_ids == [("run-b",)]
    log = reader.execute(
        "SELECT run_id, rows_inserted, rows_updated FROM rating_log ORDER BY log_id"
    ).fetchall()
    assert log == [("run-a", 4, 0), ("run-b", 0, 4)]


PAIRS = 20
CORRECT_TOKENS = "UPDATE billing_event SET input_tokens = %s WHERE event_id = %s"
# What the events of the pairs test are drawn from: priced, derived, unpriced and invalid.
DRAWS = [("base-large", None), ("base-small", None), ("ft:tuned", "base-large"),
         ("mystery", None)]  # fmt: skip


def _drawn_event(rng: random.Random) -> BillingEvent:
    model_id, base = rng.choice(DRAWS)
    tokens = rng.choice([rng.randrange(1, 5_000), rng.randrange(1, 5_000), -1])
    return make_event(
        f"org-{rng.randrange(6)}", model_id, base, tokens, rng.randrange(0, 900),
        minutes=rng.randrange(60),
    )  # fmt: skip


def _change_events(url: str, events: list[BillingEvent], rng: random.Random) -> list[BillingEvent]:
    """Delete one event, correct one in place and add two: ``events`` as they are now."""
    gone, corrected = rng.sample(range(len(events)), 2)
    tokens = events[corrected].input_tokens + 1
    delete_events(url, [events[gone].event_id])
    with psycopg.connect(url) as conn:
        conn.execute(CORRECT_TOKENS, (tokens, events[corrected].event_id))
    events[corrected] = replace(events[corrected], input_tokens=tokens)
    added = [_drawn_event(rng), _drawn_event(rng)]
    insert_events(url, added)
    return [e for n, e in enumerate(events) if n != gone] + added


def _rate_at_once(url: str, version: PricebookVersion, run_ids: list[str]) -> list[WindowRating]:
    """Rate WINDOW once per run id, each in its own thread and connection, released together."""
    barrier = threading.Barrier(len(run_ids))

    def rating(run_id: str) -> WindowRating:
        with connect(url) as conn:
            barrier.wait(TIMEOUT)
            return rate_window(conn, WINDOW, Pricebooks((version,)), run_id)

    with ThreadPoolExecutor(len(run_ids)) as pool:
        return list(pool.map(rating, run_ids))


def test_pairs_of_ratings_of_one_window_started_at_once_store_the_oracles_output(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    rng = random.Random(13)
    version = version_priced("2.50")
    events = [_drawn_event(rng) for _ in range(40)]
    add_events(events)

    for pair in range(PAIRS):
        if pair:
            events = _change_events(database_url, events, rng)
        ratings = _rate_at_once(database_url, version, [f"pair-{pair}-a", f"pair-{pair}-b"])

        with connect(database_url) as conn:
            stored = stored_window(conn, WINDOW)
        assert stored == oracle.rate_window(WINDOW, version, events), f"pair {pair}"
        # Serialized: whichever ran second found the first's output and wrote nothing.
        written = sorted(r.rows_written for r in ratings)
        assert written[0] == 0 and written[1] > 0, f"pair {pair}: {written}"
        assert {r.total_cost_usd for r in ratings} == {stored.total_cost_usd}


@pytest.mark.parametrize("kill", ["client-sigkill", "pg-terminate-backend"])
@pytest.mark.parametrize("pause_after", ["resolve_window", "converge", "log_rating"])
def test_rating_killed_mid_transaction_leaves_window_as_it_was_and_next_run_converges(
    tmp_path: Path,
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    kill: str,
    pause_after: str,
) -> None:
    events = _events()
    add_events(events)
    with connect(database_url) as conn:
        rate_window(conn, WINDOW, Pricebooks((version_priced("2.50"),)), "run-1")
    before = reader.execute(ROW_STATE).fetchall()
    delete_events(database_url, [events[0].event_id])
    add_events([make_event("org-5", "base-small")])

    child = _start(database_url, "4.00", "run-2", tmp_path, pause_after)
    try:
        kind, backend_pid = child.next_report()
        assert kind == "paused"
        assert reader.execute(ADVISORY_LOCKS_HELD).fetchone() == (1,)
        if kill == "client-sigkill":
            child.process.kill()
        else:
            reader.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
            child.resume()
        child.process.join(TIMEOUT)
        assert child.process.exitcode not in (None, 0)
    finally:
        child.stop()

    _wait_for(reader, ADVISORY_LOCKS_HELD, 0)
    assert reader.execute(ROW_STATE).fetchall() == before
    assert reader.execute("SELECT run_id FROM rating_log").fetchall() == [("run-1",)]
    assert reader.execute("SELECT count(*) FROM rated_usage_archive").fetchone() == (0,)

    with connect(database_url) as conn:
        result = rate_window(conn, WINDOW, Pricebooks((version_priced("4.00"),)), "run-3")
        stored = stored_window(conn, WINDOW)
    everything = reader.execute(
        "SELECT event_id, auth_id, model_id, base_model, input_tokens, output_tokens, "
        "occurred_at FROM billing_event"
    ).fetchall()
    current = [BillingEvent(*row) for row in everything]
    expected = oracle.rate_window(WINDOW, version_priced("4.00"), current)
    assert stored.rollups == expected.rollups
    assert stored.exceptions == expected.exceptions
    assert result.total_cost_usd == expected.total_cost_usd
