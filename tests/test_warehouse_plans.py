"""Pitfalls of the rating's query plans, caught as plans rather than as timings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.warehouse import engine, reconcile
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.extract import usage_params
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window
from tests.conftest import ONE_PARALLEL_WORKER
from tests.factories import WINDOW_START, BillingEvent, Own, make_event, make_version, own

WINDOW = Window(WINDOW_START)
BOOKS = Pricebooks((make_version({"base-large": own("2.50", "10.00")}),))
REPRICED = Pricebooks((make_version({"base-large": own("3.00", "10.00")}),))
ROLLUPS = 3000
# Planner costs under which a test-sized window is planned as a busy one is: starting a
# worker and scanning a few pages no longer outweigh the worker's share of the events.
PLANNED_AS_A_BUSY_WINDOW = (
    f"{ONE_PARALLEL_WORKER}; SET parallel_setup_cost = 0; SET min_parallel_index_scan_size = 0; "
    "SET min_parallel_table_scan_size = 0"
)
NEGATIVE_COUNTS_INDEX = "billing_event_negative_tokens_idx"  # revision 0012's partial index
WINDOW_SUMS_ROWS = "SELECT * FROM window_sums ORDER BY 1, 2, 3, 4, 5, 6"
KEEP_STATISTICS_STALE = (
    "ALTER TABLE rated_usage SET (autovacuum_enabled = false)",
    "ALTER TABLE rating_exception SET (autovacuum_enabled = false)",
    "ANALYZE rated_usage",  # statistics of an empty table, as before a window's first write
    "ANALYZE rating_exception",
)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _quadratic_joins(plan: dict[str, Any]) -> list[str]:
    """Nested loops that compare every outer row with every inner row (a Join Filter)."""
    return [
        f"{node['Node Type']}: {node['Join Filter']}"
        for node in _nodes(plan)
        if node["Node Type"] == "Nested Loop" and "Join Filter" in node
    ]


def _read(
    database_url: str, version: PricebookVersion, session: str | None = None, *, run: bool = False
) -> tuple[dict[str, Any], list[Any]]:
    """The plan of WINDOW's read (``fill_window_sums``), planned as a rating plans it after
    ``session``'s own settings, rolled back; if ``run``, also run, with the rows it wrote."""
    with psycopg.connect(database_url) as conn:
        if session is not None:
            conn.execute(session)
            conn.commit()
        with conn.transaction(force_rollback=True):
            engine.begin_rating(conn, WINDOW, version, "read")
            explain = f"EXPLAIN ({'ANALYZE, ' if run else ''}FORMAT JSON) "
            row = conn.execute(
                explain + load_sql("fill_window_sums"), usage_params(conn, WINDOW, version)
            ).fetchone()
            assert row is not None
            rows = list(conn.execute(WINDOW_SUMS_ROWS)) if run else []
    return row[0][0]["Plan"], rows


def _fill_plan(
    database_url: str, books: Pricebooks = BOOKS, session: str | None = None
) -> dict[str, Any]:
    """The plan of WINDOW's read, planned as a rating plans it (after ``session``'s)."""
    return _read(database_url, books.version_for(WINDOW), session)[0]


def _plans_of_rerate(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    history_rollups: int,
) -> tuple[list[dict[str, Any]], int]:
    """Rate WINDOW once (its first write), then re-rate it at new prices; return the plans
    of the re-rate's two reconcile statements, planned with statistics that are stale."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        for statement in KEEP_STATISTICS_STALE:
            admin.execute(statement)
    earlier = Window(WINDOW.start - 5 * (WINDOW.end - WINDOW.start))
    add_events(
        make_event(f"org-{n:05d}", "base-large", occurred_at=earlier.start)
        for n in range(history_rollups)
    )
    add_events(make_event(f"org-{n:05d}", "base-large", "", 10, 1) for n in range(ROLLUPS))
    add_events(make_event(f"org-{n:05d}", "mystery", "", 10, 1) for n in range(ROLLUPS))
    with psycopg.connect(database_url) as conn:
        if history_rollups:
            rate_window(conn, earlier, BOOKS, "history")
            with conn.transaction():
                conn.execute("ANALYZE rated_usage")
                conn.execute("ANALYZE rating_exception")
        rate_window(conn, WINDOW, BOOKS, "first-write")

        plans: list[dict[str, Any]] = []
        original = engine.reconcile

        def explain_then_reconcile(
            conn: psycopg.Connection, statement: str, params: dict[str, Any]
        ) -> Any:
            explain = "EXPLAIN (FORMAT JSON) " + reconcile.load_sql(statement)
            row = conn.execute(explain, params).fetchone()
            assert row is not None
            plans.append(row[0][0]["Plan"])
            return original(conn, statement, params)

        monkeypatch.setattr(engine, "reconcile", explain_then_reconcile)
        result = rate_window(conn, WINDOW, REPRICED, "re-rate")
    return plans, result.usage.updated


@pytest.mark.parametrize(
    "history_rollups",
    [0, 40_000],
    ids=["first-window-of-an-empty-table", "new-window-beside-a-larger-history"],
)
def test_rerate_right_after_a_first_write_plans_no_quadratic_join(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    history_rollups: int,
) -> None:
    plans, updated = _plans_of_rerate(database_url, add_events, monkeypatch, history_rollups)
    assert updated == ROLLUPS
    assert len(plans) == 2
    assert [join for plan in plans for join in _quadratic_joins(plan)] == []


def test_window_events_are_grouped_by_hash_whatever_the_planner_expects(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The planner's estimate of a window's groups can be far too high (on the bench's hot
    hour 634k for 71k), and sorting the events to group them then looks cheaper than
    hashing: it took 2.6 x the aggregate floor instead of 1.1 x. Here a small work_mem
    and statistics that call every auth_id distinct bring the same choice at test scale."""
    monkeypatch.setattr(engine, "RATING_WORK_MEM", "64kB")
    add_events(make_event(f"org-{n % 700:03d}", minutes=n % 60) for n in range(7_000))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("ALTER TABLE billing_event ALTER COLUMN auth_id SET (n_distinct = -1)")
        admin.execute("ANALYZE billing_event")
    nodes = list(_nodes(_fill_plan(database_url)))
    assert [n["Node Type"] for n in nodes if n["Node Type"] == "Sort"] == []
    assert any(n.get("Strategy") == "Hashed" for n in nodes)


def _gathered_scans(plan: dict[str, Any]) -> list[str]:
    """The scans of billing_event that a Gather shares with its workers."""
    return [
        scan.get("Index Name", scan["Node Type"])
        for gather in _nodes(plan)
        if gather["Node Type"] == "Gather"
        for scan in _nodes(gather)
        if scan.get("Relation Name") == "billing_event"
    ]


def test_a_busy_windows_events_are_read_with_a_parallel_worker(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """The read is the rating's one statement that spends CPU on every event (its checks and
    classification): a worker taking a share of the window's events made a busy hour's
    rating markedly faster on 2 cores (BENCHMARKS.md). The read writes only the table it
    creates (CREATE TABLE AS), the one write PostgreSQL plans in parallel (an INSERT is
    never), and the rating prices the rows a worker passes at nothing, else the planner
    refuses. A window too small to pay for a worker is read serially."""
    add_events(make_event(f"org-{n % 700:03d}", minutes=n % 60) for n in range(7_000))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("ANALYZE billing_event")
    busy = _gathered_scans(_fill_plan(database_url, session=PLANNED_AS_A_BUSY_WINDOW))
    assert [scan for scan in busy if scan != NEGATIVE_COUNTS_INDEX], busy  # the valid events'
    assert _gathered_scans(_fill_plan(database_url, session=ONE_PARALLEL_WORKER)) == []


def test_a_window_read_with_a_worker_sums_what_a_serial_read_sums(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """The worker and the leader each take a share of the events and the leader sums them
    all: each event is summed once, in the same rows as a serial read, whatever the event
    (valid or not, batch or standard, above or at its model's threshold, a fine-tune of
    several bases)."""
    add_events(
        replace(
            make_event(
                f"org-{n % 307:03d}",
                ("base-large", "mystery", "ft:acme:x")[n % 3],
                f"base-{n % 2}" if n % 3 == 2 else None,
                input_tokens=(1000, 1001, -1, 5)[n % 4],
                minutes=n % 60,
            ),
            service_tier=("standard", "batch", None)[n % 5 % 3],
        )
        for n in range(7_000)
    )
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("ANALYZE billing_event")
    long_context = own("5.00", "20.00")
    version = make_version(
        {"base-large": own("2.50", "10.00", long_context=long_context,
                           long_context_above_tokens=1000)}
    )  # fmt: skip
    shared_plan, shared = _read(database_url, version, PLANNED_AS_A_BUSY_WINDOW, run=True)
    serial_plan, serial = _read(database_url, version, ONE_PARALLEL_WORKER, run=True)
    gathers = [node for node in _nodes(shared_plan) if node["Node Type"] == "Gather"]
    launched = [node["Workers Launched"] for node in gathers]
    assert gathers and launched == [1] * len(gathers), f"workers launched: {launched}"
    assert _gathered_scans(serial_plan) == []
    assert len(shared) > 2_000
    assert shared == serial


def _with_thresholds(prefix: str) -> dict[str, Own]:
    """2,000 models of own rates, each with a long-context threshold of its own."""
    long_context = own("5.00", "20.00")
    return {
        f"{prefix}-{n:04d}": own("2.50", "10.00", long_context=long_context,
                                 long_context_above_tokens=100_000 + n)
        for n in range(2_000)
    }  # fmt: skip


def _hash_conditions(database_url: str, version: PricebookVersion) -> list[str]:
    """The hash joins of the fill statement's plan under ``version``, statistics fresh."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("ANALYZE billing_event")
    plan = _fill_plan(database_url, Pricebooks((version,)))
    return [node["Hash Cond"] for node in _nodes(plan) if node["Node Type"] == "Hash Join"]


def test_each_event_finds_its_models_threshold_by_hash_however_many_models_have_one(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """A version can list thousands of models with a long-context threshold (LiteLLM's
    map): an event looks its model's up in a hash of them, not along an array, which took
    10 x the aggregate floor with 2,000 models."""
    add_events(make_event(f"org-{n % 70:02d}", model_id=f"model-{n:04d}") for n in range(700))
    joins = _hash_conditions(database_url, make_version(_with_thresholds("model")))
    assert any("listed.model_id" in condition for condition in joins), joins


def test_each_fine_tune_event_finds_its_bases_threshold_by_hash_however_many_bases_have_one(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Unlisted fine-tunes take the threshold of their event's base (fine_tune_multiplier):
    found in a hash of the true bases that have one, not along an array of them, which
    took 6 x the aggregate floor with 2,000 bases."""
    add_events(
        make_event(f"org-{n % 70:02d}", model_id=f"ft:acme:{n % 7}", base_model=f"base-{n:04d}")
        for n in range(700)
    )
    version = make_version(_with_thresholds("base"), fine_tune_multiplier="1.5")
    joins = _hash_conditions(database_url, version)
    assert any("bases.base_model" in condition for condition in joins), joins


def test_events_with_a_bad_count_are_found_through_the_partial_index_not_a_second_scan(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Invalid counts (negative, or null in an upstream table that allows it) are summed
    apart from the valid events; the index of revision 0012 finds them, so the window's
    events are scanned once, not twice."""
    add_events(make_event(f"org-{n % 700:03d}", minutes=n % 60) for n in range(7_000))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("ANALYZE billing_event")
    scans = [
        node.get("Index Name", node["Node Type"])
        for node in _nodes(_fill_plan(database_url))
        if node.get("Relation Name") == "billing_event"
    ]
    assert len(scans) == 2 and scans.count(NEGATIVE_COUNTS_INDEX) == 1, scans
