"""The database path agrees with the oracle, example by example and across re-ratings.

The production path (SQL extraction → pricing → reconciled write) must store exactly
what ``oracle.rate_window`` computes from the raw events, whatever happened before:
events added and deleted, pricebooks switched, windows re-rated in any order.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rating_pipeline.pricebook.model import NoPricebookForWindow, Pricebooks, PricebookVersion
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.windows import HOUR, Window
from tests import oracle
from tests.conftest import (
    ONE_PARALLEL_WORKER,
    delete_events,
    insert_events,
    stored_window,
    truncate_all,
)
from tests.factories import BillingEvent
from tests.oracle import OracleRating
from tests.strategies import (
    WINDOW,
    ambiguous_events,
    pricebook_versions,
    priced_events,
    priced_versions,
    window_events,
)

# The strategies' events straddle WINDOW's edges, so its neighbours get events too.
WINDOWS = (Window(WINDOW.start - HOUR), WINDOW, Window(WINDOW.end))
# Every statement a worker can run, run in one.
IN_A_PARALLEL_WORKER = f"{ONE_PARALLEL_WORKER}; SET debug_parallel_query = on"
DATABASE_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(DATABASE_SETTINGS, max_examples=30)
@given(data=st.data())
def test_database_path_agrees_with_oracle(database_url: str, data: st.DataObject) -> None:
    version = data.draw(pricebook_versions(), label="version")
    events = data.draw(window_events(version), label="events")
    truncate_all(database_url)
    insert_events(database_url, events)
    with connect(database_url) as conn:
        result = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)
        conn.rollback()
        rerun = rate_window(conn, WINDOW, Pricebooks((version,)), "run-2")
    expected = oracle.rate_window(WINDOW, version, events)
    assert stored.rollups == expected.rollups
    assert stored.exceptions == expected.exceptions
    assert result.events_read == sum(WINDOW.start <= e.occurred_at < WINDOW.end for e in events)
    assert rerun.rows_written == 0


@settings(DATABASE_SETTINGS, max_examples=20)
@given(data=st.data())
def test_a_window_read_with_a_parallel_worker_agrees_with_the_oracle(
    database_url: str, data: st.DataObject
) -> None:
    """A busy window's events are read with a parallel worker (docs/warehouse.md). Here
    every statement of the rating that a worker can run runs in one, as PostgreSQL's own
    tests force it: the read still puts every event in exactly the oracle's row. (The read
    shared between a worker and the leader: test_warehouse_plans.py.)"""
    version = data.draw(pricebook_versions(), label="version")
    events = data.draw(window_events(version), label="events")
    truncate_all(database_url)
    insert_events(database_url, events)
    with connect(database_url) as conn:
        conn.execute(IN_A_PARALLEL_WORKER)
        conn.commit()
        rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)
    expected = oracle.rate_window(WINDOW, version, events)
    assert stored.rollups == expected.rollups
    assert stored.exceptions == expected.exceptions


@settings(DATABASE_SETTINGS, max_examples=40)
@given(data=st.data())
def test_every_class_tier_and_context_prices_as_the_oracle(
    database_url: str, data: st.DataObject
) -> None:
    """Every valid event prices, so each class's rate, each tier's set and each prompt at,
    below or above its threshold reaches a billed row, where the oracle checks it."""
    events = data.draw(priced_events(), label="events")
    stored, expected = rated_once(
        database_url, data.draw(priced_versions(), label="version"), events
    )
    assert stored == expected
    assert sum(r.event_count for r in stored.rollups) == len(events)


@settings(DATABASE_SETTINGS, max_examples=30)
@given(data=st.data())
def test_the_ambiguity_gate_excludes_exactly_the_pairs_the_oracle_finds_ambiguous(
    database_url: str, data: st.DataObject
) -> None:
    """Contract 5.2, where the other strategies seldom reach it: unlisted fine-tunes of few
    principals, each pair's events carrying one base or several."""
    events = data.draw(ambiguous_events(), label="events")
    stored, expected = rated_once(
        database_url, data.draw(priced_versions(), label="version"), events
    )
    gated = any(row.reason == "ambiguous_base" for row in expected.exceptions)
    event("the gate excluded a rollup" if gated else "no ambiguous pair")
    assert stored == expected


def rated_once(
    url: str, version: PricebookVersion, events: list[BillingEvent]
) -> tuple[OracleRating, OracleRating]:
    """WINDOW rated once from empty tables: what it stored, and what the oracle expects."""
    truncate_all(url)
    insert_events(url, events)
    with connect(url) as conn:
        rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)
    return stored, oracle.rate_window(WINDOW, version, events)


def effective_from(version: PricebookVersion) -> datetime:
    return version.effective_from


class ReratingMachine(RuleBasedStateMachine):
    """Events come and go, the pricebook changes, windows are re-rated in any order.

    Versions come in two names, one in effect from WINDOW's start: each window is rated by
    the latest switched-in version of the name in effect at its start, and a window before
    every switched-in version is refused and left as it was. After every step each rated
    window holds exactly the oracle's output for its latest rating, and a window never
    rated holds nothing.
    """

    event_ids = Bundle("event_ids")

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        truncate_all(url)
        self.conn: psycopg.Connection = connect(url)
        self.events: dict[str, BillingEvent] = {}
        self.versions: dict[str, PricebookVersion] = {}
        self.expected: dict[Window, OracleRating] = {}
        self.ratings = 0
        self.ids = itertools.count()

    @initialize(version=pricebook_versions())
    def choose_pricebook(self, version: PricebookVersion) -> None:
        self.versions[version.version] = version

    def in_effect(self, window: Window) -> PricebookVersion | None:
        """The latest effective_from at or before the window's start, chosen here."""
        eligible = [v for v in self.versions.values() if v.effective_from <= window.start]
        return max(eligible, key=lambda v: v.effective_from, default=None)

    @rule(target=event_ids, data=st.data())
    def add_events(self, data: st.DataObject) -> object:
        version = self.versions[data.draw(st.sampled_from(sorted(self.versions)))]
        drawn = data.draw(window_events(version, max_size=8))
        events = [replace(e, event_id=f"ev-{next(self.ids)}") for e in drawn]
        insert_events(self.url, events)
        self.events.update((e.event_id, e) for e in events)
        return tuple(e.event_id for e in events)

    @rule(ids=consumes(event_ids))
    def delete_events(self, ids: tuple[str, ...]) -> None:
        delete_events(self.url, ids)
        for event_id in ids:
            self.events.pop(event_id, None)

    @rule(version=pricebook_versions())
    def switch_pricebook(self, version: PricebookVersion) -> None:
        self.versions[version.version] = version

    @rule(window=st.sampled_from(WINDOWS))
    def rate(self, window: Window) -> None:
        pricebooks = Pricebooks(tuple(sorted(self.versions.values(), key=effective_from)))
        version = self.in_effect(window)
        if version is None:
            with pytest.raises(NoPricebookForWindow):
                rate_window(self.conn, window, pricebooks, "run-refused")
            self.conn.rollback()
            return
        self.ratings += 1
        rate_window(self.conn, window, pricebooks, f"run-{self.ratings}")
        self.expected[window] = oracle.rate_window(window, version, self.events.values())

    @invariant()
    def tables_hold_the_latest_rating_of_each_window(self) -> None:
        for window in WINDOWS:
            stored = stored_window(self.conn, window)
            expected = self.expected.get(window)
            if expected is None:
                assert (stored.rollups, stored.exceptions) == ((), ())
            else:
                assert stored.rollups == expected.rollups
                assert stored.exceptions == expected.exceptions
        logged = self.conn.execute("SELECT count(*) FROM rating_log").fetchone()
        self.conn.rollback()
        assert logged == (self.ratings,)

    def teardown(self) -> None:
        self.conn.close()


def test_rerating_converges_to_the_latest_run_whatever_happened_before(database_url: str) -> None:
    run_state_machine_as_test(
        # Annotated type[RuleBasedStateMachine]; documented and run as any zero-arg factory.
        lambda: ReratingMachine(database_url),  # type: ignore[arg-type]
        settings=settings(DATABASE_SETTINGS, max_examples=20, stateful_step_count=15),
    )
