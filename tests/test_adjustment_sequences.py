"""Closed-window adjustments hold contract 10 through any sequence of corrections and closes.

A state machine adds late events and withdraws events in a closed hour, switches pricebooks
(an input rate up and back, a model leaving and coming back, a batch tier and a long-context
schedule appearing and going), re-rates and closes again, and after every rating checks,
against the oracle: per rollup key billed output (frozen rows + stamped adjustments) + open
adjustments = latest output; per (key, class, rate) the open quantity is exactly latest -
billed (a zero difference has no row); a rollup's event difference rides on one input row,
at the latest output's input rate when it has one; an identical re-run writes nothing.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)

from rating_pipeline.pricebook.model import (
    TOKEN_CLASSES,
    ModelRates,
    Pricebooks,
    PricebookVersion,
)
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import HOUR, Window
from tests import oracle
from tests.conftest import delete_events, insert_events, truncate_all
from tests.factories import WINDOW_START, BillingEvent, Own, derived, make_event, make_version, own

WINDOW = Window(WINDOW_START)
WINDOWS = (WINDOW, Window(WINDOW.end))
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_ids = itertools.count(1)
_versions = itertools.count(1)


def version(large_input: str, small: bool, batch: bool, long_context: bool) -> PricebookVersion:
    models: dict[str, Own | ModelRates | dict[str, str]] = {
        "base-large": own(
            large_input,
            "10",
            cache_read="1.25",
            batch=own("1.25", "5", cache_read="0.5") if batch else None,
            long_context=own("5.00", "15", cache_read="2.5") if long_context else None,
            long_context_above_tokens=200_000 if long_context else None,
        ),
    }
    if small:
        models["base-small"] = own("0.15", "0.60")
        models["ft-large"] = derived("base-large", "1.3333")
    return make_version(models, version=f"v{next(_versions)}")


versions = st.builds(
    version,
    st.sampled_from(["2.50", "3.00", "2.75"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@st.composite
def events(draw: st.DrawFn) -> BillingEvent:
    event = make_event(
        draw(st.sampled_from(["org-1", "org-2", "org-3"])),
        draw(st.sampled_from(["base-large", "base-small", "ft-large"])),
        input_tokens=draw(st.sampled_from([0, 1000, 250_000])),
        output_tokens=draw(st.sampled_from([0, 7])),
        event_id=f"probe-{next(_ids)}",
        occurred_at=draw(st.sampled_from([WINDOW.start, WINDOW.end])) + HOUR / 4,
    )
    return replace(
        event,
        cache_read_tokens=draw(st.sampled_from([0, 0, 9])),
        service_tier=draw(st.sampled_from([None, None, "batch"])),
    )


def unpivot(row: dict) -> dict[str, tuple[Decimal | None, int]]:
    return {c: (row[f"{c}_rate_per_mtok"], row[f"{c}_tokens"]) for c in TOKEN_CLASSES}


def check(
    conn: psycopg.Connection,
    version: PricebookVersion,
    live: list[BillingEvent],
    window: Window = WINDOW,
) -> None:
    latest = oracle.rate_window(window, version, live)
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    frozen = cur.execute(
        "SELECT * FROM rated_usage WHERE window_start = %s", (window.start,)
    ).fetchall()
    adjustments = cur.execute(
        "SELECT * FROM rating_adjustment WHERE window_start = %s", (window.start,)
    ).fetchall()
    conn.rollback()

    def key(r: object) -> tuple:
        get = r.__getitem__ if isinstance(r, dict) else lambda n: getattr(r, n)
        return (get("auth_id"), get("model_id"), get("service_tier"), get("context_tier"))

    # (key, class, rate) -> tokens; key -> events; key -> cost
    want_q: dict[tuple, int] = defaultdict(int)
    want_e: dict[tuple, int] = defaultdict(int)
    want_c: dict[tuple, Decimal] = defaultdict(Decimal)
    latest_input_rate = {}
    for r in latest.rollups:
        want_e[key(r)] += r.event_count
        want_c[key(r)] += r.cost_usd
        latest_input_rate[key(r)] = r.input_rate_per_mtok
        for c in TOKEN_CLASSES:
            if getattr(r, f"{c}_tokens"):
                want_q[(key(r), c, getattr(r, f"{c}_rate_per_mtok"))] += getattr(r, f"{c}_tokens")
    billed_q: dict[tuple, int] = defaultdict(int)
    billed_e: dict[tuple, int] = defaultdict(int)
    billed_c: dict[tuple, Decimal] = defaultdict(Decimal)
    frozen_input_rate = {}
    for row in frozen:
        billed_e[key(row)] += row["event_count"]
        billed_c[key(row)] += row["cost_usd"]
        frozen_input_rate[key(row)] = row["input_rate_per_mtok"]
        for c, (rate, tokens) in unpivot(row).items():
            if tokens:
                billed_q[(key(row), c, rate)] += tokens
    open_q: dict[tuple, int] = defaultdict(int)
    open_e: dict[tuple, int] = defaultdict(int)
    open_c: dict[tuple, Decimal] = defaultdict(Decimal)
    event_rows: dict[tuple, list] = defaultdict(list)
    for a in adjustments:
        assert a["event_count"] != 0 or a["quantity_tokens"] != 0, a
        assert a["event_count"] == 0 or a["token_class"] == "input", a
        assert a["cost_usd"] * 1_000_000 == a["quantity_tokens"] * a["unit_rate_per_mtok"], a
        k = (key(a), a["token_class"], a["unit_rate_per_mtok"])
        if a["invoiced_by"] is None:
            open_q[k] += a["quantity_tokens"]
            open_e[key(a)] += a["event_count"]
            open_c[key(a)] += a["cost_usd"]
            if a["event_count"]:
                event_rows[key(a)].append(a)
        else:
            billed_q[k] += a["quantity_tokens"]
            billed_e[key(a)] += a["event_count"]
            billed_c[key(a)] += a["cost_usd"]
    for k in set(want_q) | set(billed_q) | set(open_q):
        assert open_q.get(k, 0) == want_q.get(k, 0) - billed_q.get(k, 0), (
            k,
            want_q.get(k, 0),
            billed_q.get(k, 0),
            open_q.get(k, 0),
        )
    for k in set(want_e) | set(billed_e) | set(open_e):
        assert open_e.get(k, 0) == want_e.get(k, 0) - billed_e.get(k, 0), (
            "events",
            k,
            want_e.get(k, 0),
            billed_e.get(k, 0),
            open_e.get(k, 0),
        )
        assert open_c.get(k, 0) == want_c.get(k, 0) - billed_c.get(k, 0), ("cost", k)
        rows = event_rows.get(k, [])
        assert len(rows) <= 1, ("events on several rows", k, rows)
        if rows:
            expected_rate = latest_input_rate.get(k, frozen_input_rate.get(k))
            if expected_rate is not None:
                assert rows[0]["unit_rate_per_mtok"] == expected_rate, (
                    "event row rate",
                    k,
                    rows[0],
                    expected_rate,
                )


class AdjustmentMachine(RuleBasedStateMachine):
    event_ids = Bundle("event_ids")

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        truncate_all(url)
        self.conn = connect(url)
        self.events: dict[str, BillingEvent] = {}
        self.version: PricebookVersion | None = None
        self.runs = 0
        self.through = WINDOW.end

    def _rate(self) -> None:
        assert self.version is not None
        for window in WINDOWS:
            self.runs += 1
            rate_window(self.conn, window, Pricebooks((self.version,)), f"run-{self.runs}")
            check(self.conn, self.version, list(self.events.values()), window)
        before = self.conn.execute(
            "SELECT ctid, xmin FROM rating_adjustment ORDER BY adjustment_id"
        ).fetchall()
        self.conn.rollback()
        self.runs += 1
        again = rate_window(self.conn, WINDOW, Pricebooks((self.version,)), f"run-{self.runs}")
        self.runs += 1
        again_next = rate_window(
            self.conn, WINDOWS[1], Pricebooks((self.version,)), f"run-{self.runs}"
        )
        after = self.conn.execute(
            "SELECT ctid, xmin FROM rating_adjustment ORDER BY adjustment_id"
        ).fetchall()
        self.conn.rollback()
        assert again.rows_written == again_next.rows_written == 0 and after == before, (
            "re-run wrote"
        )

    @initialize(target=event_ids, first=st.lists(events(), min_size=1, max_size=4),
                v=versions)  # fmt: skip
    def start_closed(self, first: list[BillingEvent], v: PricebookVersion) -> object:
        insert_events(self.url, first)
        self.events.update({e.event_id: e for e in first})
        self.version = v
        for window in WINDOWS:
            self.runs += 1
            rate_window(self.conn, window, Pricebooks((v,)), f"run-{self.runs}")
        self.through = WINDOWS[1].end
        close_period(self.conn, self.through, "probe")
        return multiple(*(e.event_id for e in first))

    @rule(target=event_ids, event=events())
    def late_event(self, event: BillingEvent) -> str:
        insert_events(self.url, [event])
        self.events[event.event_id] = event
        return event.event_id

    @rule(event_id=consumes(event_ids))
    def withdraw(self, event_id: str) -> None:
        delete_events(self.url, [event_id])
        self.events.pop(event_id, None)

    @rule(v=versions)
    def switch_pricebook(self, v: PricebookVersion) -> None:
        self.version = v

    @rule()
    def rate(self) -> None:
        self._rate()

    @rule()
    def close_again(self) -> None:
        self._rate()  # a close needs every hour with events rated
        self.through += HOUR
        close_period(self.conn, self.through, "probe")

    def teardown(self) -> None:
        self.conn.close()


def test_adjustments_hold_contract_10_through_corrections_and_closes(database_url: str) -> None:
    run_state_machine_as_test(
        lambda: AdjustmentMachine(database_url),  # type: ignore[arg-type]
        settings=settings(SETTINGS, max_examples=20, stateful_step_count=15),
    )
