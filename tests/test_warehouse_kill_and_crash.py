"""Re-ratings of a changed window, their client killed or their server crashed at random
points: each leaves the window's old output or its new one, never a mix (contract 7).

A small run of ``benchmarks/kill_and_crash.py`` (BENCHMARKS.md has the full one), on a
PostgreSQL of its own (its own data directory and socket): the session's shared server is
never crashed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.data import write_pricebooks
from benchmarks.kill_and_crash import (
    CRASH,
    DATABASE,
    KILL,
    NEW,
    OLD,
    WINDOW,
    ThrowawayServer,
    converge,
    prepare,
    run_trials,
)
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.warehouse.database import connect
from tests import oracle
from tests.conftest import EVENT_COLUMNS, stored_window
from tests.factories import BillingEvent

EVENTS_IN_WINDOW = (
    f"SELECT {', '.join(EVENT_COLUMNS)}, ingested_at FROM billing_event"
    " WHERE occurred_at >= %(start)s AND occurred_at < %(end)s"
)


def test_rerates_killed_or_crashed_at_random_points_leave_old_or_new_output_never_a_mix(
    tmp_path: Path,
) -> None:
    with ThrowawayServer.started() as server:
        url = server.url(DATABASE)
        pricebook_dir = write_pricebooks(tmp_path / "pricebooks")
        scenario = prepare(url, pricebook_dir, events=3_000)

        # Each trial raises MixedOutput unless it left one of the two outputs whole, its run
        # logged and archived exactly when it left the new one.
        trials = run_trials(scenario, server, kills=5, crashes=2, seed=13)
        converged = converge(scenario)

        with connect(url) as conn:
            stored = stored_window(conn, WINDOW)
            rows = conn.execute(EVENTS_IN_WINDOW, {"start": WINDOW.start, "end": WINDOW.end})
            columns = [*EVENT_COLUMNS, "ingested_at"]
            events = [BillingEvent(**dict(zip(columns, row, strict=True))) for row in rows]

    assert Counter(t.kind for t in trials) == {KILL: 5, CRASH: 2}
    assert {t.outcome for t in trials} <= {OLD, NEW}
    assert converged
    version = load_pricebooks(pricebook_dir).version_for(WINDOW)
    assert stored == oracle.rate_window(WINDOW, version, events)
