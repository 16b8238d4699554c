"""The asset graph on a live PostgreSQL: ``dg.materialize`` of one partition and of a range,
with the real resources, the real pricebooks and the real checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from rating_pipeline.orchestration import assets, queries
from rating_pipeline.orchestration.assets import pricebook, rated_usage, window_usage
from rating_pipeline.orchestration.checks import (
    ALL_USAGE_PRICED,
    ALL_WINDOWS_BILLED,
    COST_RECONSTRUCTS,
    EVENTS_CONSERVED,
    NO_AMBIGUOUS_BASE,
    NO_OPEN_ADJUSTMENTS,
    PRICED_BY_CURRENT_PRICEBOOKS,
    RATED_USAGE_CHECKS,
    cost_reconstructs,
    evaluate_cost,
    events_conserved,
)
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.records import AMBIGUOUS_BASE, UNPRICED
from rating_pipeline.settings import project_root
from rating_pipeline.windows import HOUR, Window
from tests.conftest import clear_of_an_hours_end, delete_events
from tests.factories import WINDOW_START, BillingEvent, make_event, with_tokens

AddEvents = Callable[[Iterable[BillingEvent]], int]
MINUTE = timedelta(minutes=1)
CONSERVED_FIGURES = ("windows_audited", "events", "events_billed", "events_excepted")
ASSETS = [pricebook, window_usage, rated_usage, *RATED_USAGE_CHECKS]
KEY = "2026-06-15-10:00"
RANGE = ("2026-06-15-10:00", "2026-06-15-12:00")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": RANGE[0],
    "dagster/asset_partition_range_end": RANGE[1],
}
PRICEBOOK_DIR = project_root() / "pricebooks"


def materialize(
    database_url: str,
    *,
    partition_key: str | None = KEY,
    tags: dict[str, str] | None = None,
    pricebook_dir: Path = PRICEBOOK_DIR,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "pricebooks": PricebookResource(directory=str(pricebook_dir)),
        },
        raise_on_error=False,
    )


def materializations(result: dg.ExecuteInProcessResult, node: str) -> dict[str, dict]:
    """Partition key -> raw metadata values of the node's materializations."""
    return {
        m.partition: {name: value.value for name, value in m.metadata.items()}
        for m in result.asset_materializations_for_node(node)
        if m.partition is not None
    }


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def records(value: object) -> list[dict]:
    """A table metadata value's rows, as the UI shows them (``value`` as a check's metadata
    holds it, or its ``.value``, the same object)."""
    assert isinstance(value, dg.TableMetadataValue), value
    return [dict(record.data) for record in value.records]


def audit(database_url: str, check: dg.AssetChecksDefinition) -> dg.AssetCheckResult:
    """Run a check outside any run: it audits every rated window."""
    context = dg.build_asset_check_context(
        resources={"warehouse": WarehouseResource(database_url=database_url)}
    )
    result = check(context)  # typed object: a definition's __call__ returns anything
    assert isinstance(result, dg.AssetCheckResult), result
    return result


def rows(reader: psycopg.Connection, statement: str) -> list[tuple]:
    return reader.execute(statement).fetchall()


def traffic(hour_offset: int = 0) -> list[BillingEvent]:
    """Three priced rollups of the demo pricebook in the window ``hour_offset`` after 10:00."""
    start = WINDOW_START + hour_offset * HOUR
    spec = [
        ("org-1", "base-large", 1_000, 100, 1),
        ("org-1", "base-large", 3_000, 300, 2),
        ("org-2", "base-small", 500, 50, 3),
        ("org-3", "ft:acme:legal", 2_000, 0, 59),
    ]
    return [
        make_event(auth, model, input_tokens=tokens_in, output_tokens=tokens_out,
                   occurred_at=start + timedelta(minutes=minute))
        for auth, model, tokens_in, tokens_out, minute in spec
    ]  # fmt: skip


def test_materializing_one_partition_rates_that_window_only(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    add_events([*traffic(0), *traffic(1)])

    result = materialize(database_url)

    assert result.success
    assert rows(reader, "SELECT DISTINCT window_start FROM rated_usage") == [(WINDOW_START,)]
    meta = materializations(result, "rated_usage")[KEY]
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (3, 0, 0)
    assert (meta["events_read"], meta["events_rated"], meta["events_excepted"]) == (4, 4, 0)
    assert meta["dagster/partition_row_count"] == 3  # the window's rated_usage rows
    # 1000+3000 in x 2.50 + 400 out x 10 = 0.014; 500 x 0.15 + 50 x 0.60 = 0.000105;
    # 2000 x 3.125 (2.50 x 1.25) = 0.00625
    assert meta["cost_usd"] == "0.020355000000"
    assert (meta["cost_micro_usd"], meta["rollups"]) == (20_355, 3)  # plotted; exact above
    assert Decimal(meta["cost_usd"]) == rows(reader, "SELECT sum(cost_usd) FROM rated_usage")[0][0]
    assert meta["pricebook_version"] == "2026-06-01"
    assert meta["exceptions_by_reason"][AMBIGUOUS_BASE] == {"rollups": 0, "events": 0}
    costliest = records(meta["costliest_rollups"])
    assert (costliest[0]["auth_id"], costliest[0]["model_id"]) == ("org-1", "base-large")
    assert costliest[0]["cost_usd"] == "0.014000000000"
    assert materializations(result, "window_usage")[KEY]["events"] == 4
    assert materializations(result, "pricebook")[KEY]["pricebook_version"] == "2026-06-01"
    evaluations = checks(result)
    assert set(evaluations) == {
        COST_RECONSTRUCTS,
        EVENTS_CONSERVED,
        NO_AMBIGUOUS_BASE,
        ALL_USAGE_PRICED,
        ALL_WINDOWS_BILLED,
        NO_OPEN_ADJUSTMENTS,
        PRICED_BY_CURRENT_PRICEBOOKS,
    }
    assert all(e.passed for name, e in evaluations.items() if name != ALL_WINDOWS_BILLED)
    # 11:00 holds events and was not rated: the WARN check names it, the run succeeds.
    unbilled = evaluations[ALL_WINDOWS_BILLED]
    assert not unbilled.passed and unbilled.severity == dg.AssetCheckSeverity.WARN
    assert records(unbilled.metadata["windows"])[0]["window"] == "2026-06-15-11:00"


def classed_traffic() -> list[BillingEvent]:
    """One rollup per tier and context of the shipped pricebook, with cached tokens."""
    return [
        # 2,000 x 2.50 + 48,000 cache read x 0.25 + 500 x 10.00 = 0.022
        replace(make_event("org-1", "base-large", None, 2_000, 500), cache_read_tokens=48_000),
        # batch: 1,000 x 1.25 + 10,000 cache write x 1.5625 + 100 x 5.00 = 0.017375
        replace(
            make_event("org-1", "base-large", None, 1_000, 100),
            cache_write_tokens=10_000,
            service_tier="batch",
        ),
        # priority: 1,000 x 0.70 + 3,000 cache read x 0.175 + 300 x 2.80 = 0.002065
        replace(
            make_event("org-2", "base-medium", None, 1_000, 300),
            cache_read_tokens=3_000,
            service_tier="priority",
        ),
        # long context, prompt 200,001: 150,001 x 5.00 + 50,000 x 0.50 + 1,000 x 15.00 = 0.790005
        replace(make_event("org-3", "base-large", None, 150_001, 1_000), cache_read_tokens=50_000),
    ]


def test_cost_by_token_class_and_by_tier_add_up_exactly_to_the_windows_cost(
    database_url: str, add_events: AddEvents
) -> None:
    add_events(classed_traffic())

    result = materialize(database_url)

    assert result.success
    assert all(evaluation.passed for evaluation in checks(result).values())
    meta = materializations(result, "rated_usage")[KEY]
    assert meta["cost_usd"] == "0.831445000000"
    by_class = records(meta["cost_by_token_class"])
    assert by_class == [
        {"token_class": "input", "tokens": 154_001, "cost_usd": "0.756955000000"},
        {"token_class": "output", "tokens": 1_900, "cost_usd": "0.021340000000"},
        {"token_class": "cache_read", "tokens": 101_000, "cost_usd": "0.037525000000"},
        {"token_class": "cache_write", "tokens": 10_000, "cost_usd": "0.015625000000"},
    ]
    by_tier = records(meta["cost_by_tier"])
    assert [tuple(row.values()) for row in by_tier] == [
        ("standard", "standard", 1, 1, 50_500, "0.022000000000"),
        ("standard", "long", 1, 1, 201_001, "0.790005000000"),
        ("batch", "standard", 1, 1, 11_100, "0.017375000000"),
        ("priority", "standard", 1, 1, 4_300, "0.002065000000"),
    ]
    for table in (by_class, by_tier):
        assert sum(Decimal(row["cost_usd"]) for row in table) == Decimal(meta["cost_usd"])


def test_money_metadata_is_text_never_float(database_url: str, add_events: AddEvents) -> None:
    add_events(traffic(0))

    result = materialize(database_url)

    [materialization] = result.asset_materializations_for_node("rated_usage")
    assert isinstance(materialization.metadata["cost_usd"], dg.TextMetadataValue)
    for figure in ("events_read", "rollups", "cost_micro_usd", "dagster/partition_row_count"):
        assert isinstance(materialization.metadata[figure], dg.IntMetadataValue)
    assert not any(isinstance(v, dg.FloatMetadataValue) for v in materialization.metadata.values())


def test_materializing_a_range_rates_every_window_in_its_own_transaction(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    add_events([*traffic(0), *traffic(2)[:1]])  # 11:00 has no events

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert result.success
    logged = rows(
        reader, "SELECT window_start, run_id, events_read FROM rating_log ORDER BY window_start"
    )
    assert [(start, events) for start, _, events in logged] == [
        (WINDOW_START, 4),
        (WINDOW_START + HOUR, 0),
        (WINDOW_START + 2 * HOUR, 1),
    ]
    assert {run_id for _, run_id, _ in logged} == {result.run_id}
    rated = materializations(result, "rated_usage")
    assert {key: meta["events_read"] for key, meta in rated.items()} == {
        "2026-06-15-10:00": 4,
        "2026-06-15-11:00": 0,
        "2026-06-15-12:00": 1,
    }
    assert {
        key: meta["events"] for key, meta in materializations(result, "window_usage").items()
    } == {
        "2026-06-15-10:00": 4,
        "2026-06-15-11:00": 0,
        "2026-06-15-12:00": 1,
    }


def test_range_run_shows_each_window_the_tables_of_its_own_rows(
    database_url: str, add_events: AddEvents
) -> None:
    add_events([*traffic(0), *traffic(2)[:1], *classed_traffic()[1:2]])  # 11:00 has no events

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert result.success
    rated = materializations(result, "rated_usage")
    ten, eleven, noon = (rated[f"2026-06-15-{hour}:00"] for hour in (10, 11, 12))
    assert [(r["auth_id"], r["cost_usd"]) for r in records(ten["costliest_rollups"])] == [
        ("org-1", "0.017375000000"),  # the batch rollup of classed_traffic, at 10:00
        ("org-1", "0.014000000000"),
        ("org-3", "0.006250000000"),
        ("org-2", "0.000105000000"),
    ]
    assert [records(eleven[table]) for table in ("costliest_rollups", "cost_by_token_class")] == [
        [],
        [],
    ]
    # 12:00: 1,000 in x 2.50 + 100 out x 10.00 = 0.0035
    assert [(r["auth_id"], r["cost_usd"]) for r in records(noon["costliest_rollups"])] == [
        ("org-1", "0.003500000000")
    ]
    assert [tuple(row.values()) for row in records(noon["cost_by_tier"])] == [
        ("standard", "standard", 1, 1, 1_100, "0.003500000000")
    ]
    for meta in (ten, eleven, noon):
        for table in ("cost_by_token_class", "cost_by_tier"):
            costs = [Decimal(row["cost_usd"]) for row in records(meta[table])]
            assert sum(costs, Decimal(0)) == Decimal(meta["cost_usd"])


def test_a_partitions_tables_leave_out_the_rows_of_the_next_window_already_rated(
    database_url: str, add_events: AddEvents
) -> None:
    """Hour-scoped (contract 7): 11:00 rated first, then 10:00 alone; 10:00's tables
    still show its own rows only."""
    add_events([*traffic(0), *traffic(1)])
    assert materialize(database_url, partition_key="2026-06-15-11:00").success

    result = materialize(database_url)

    assert result.success
    meta = materializations(result, "rated_usage")[KEY]
    for table in ("cost_by_token_class", "cost_by_tier"):
        costs = [Decimal(row["cost_usd"]) for row in records(meta[table])]
        assert sum(costs, Decimal(0)) == Decimal(meta["cost_usd"]), table
    assert sum(row["rollups"] for row in records(meta["cost_by_tier"])) == meta["rollups"]


def fail_at_noon(monkeypatch: pytest.MonkeyPatch) -> None:
    """The range's 12:00 window fails as a lock timeout would; the others rate for real."""
    rate_for_real = assets.rate_window

    def failing_at_noon(conn, window, *args):  # type: ignore[no-untyped-def]
        if window.key == RANGE[1]:
            raise TimeoutError("canceling statement due to lock timeout")
        return rate_for_real(conn, window, *args)

    monkeypatch.setattr(assets, "rate_window", failing_at_noon)


def test_a_range_run_that_fails_records_the_windows_it_committed_before_the_failure(
    database_url: str, add_events: AddEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10:00 and 11:00 are rated and committed before 12:00 fails: the UI must show their
    new counts and cost, not the materializations of an earlier run."""
    add_events([*traffic(0), *traffic(1), *traffic(2)])
    fail_at_noon(monkeypatch)

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert not result.success
    rated = materializations(result, "rated_usage")
    assert sorted(rated) == ["2026-06-15-10:00", "2026-06-15-11:00"]
    assert all(meta["rows_inserted"] > 0 for meta in rated.values())


def test_a_range_run_that_fails_names_the_ambiguous_rollups_of_the_windows_it_committed(
    database_url: str, add_events: AddEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract 5.2, fail loud: 10:00 commits an ambiguous_base rollup, 12:00 fails, and no
    check runs after a failed asset; a re-run of 12:00 alone would pass them all. The
    failure names the rollups. Found by a review of the entry points."""
    add_events(
        [
            *traffic(0),
            make_event("org-9", "ft:globex:chat", "base-medium", minutes=10),
            make_event("org-9", "ft:globex:chat", "base-small", minutes=11),
            make_event("org-9\nok", "ft:globex:chat", "base-medium", minutes=12),
            make_event("org-9\nok", "ft:globex:chat", "base-small", minutes=13),
            *traffic(2),
        ]
    )
    fail_at_noon(monkeypatch)

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and "2 rollup(s) excluded as ambiguous_base" in str(
        failure.description
    )
    assert "2026-06-15-10:00 org-9 ft:globex:chat standard standard" in str(failure.description)
    # An id that does not print is shown as its repr (an upstream id may hold anything).
    assert "2026-06-15-10:00 'org-9\\nok' ft:globex:chat standard" in str(failure.description)


def test_a_range_that_reaches_the_open_hour_rates_nothing(
    database_url: str, reader: psycopg.Connection
) -> None:
    """A single partition key of the open hour is no partition yet; a range's end must not
    smuggle it in: its events are still arriving, and the schedule rates it once closed."""
    now = Window.containing(clear_of_an_hours_end())
    tags = {
        "dagster/asset_partition_range_start": Window(now.start - HOUR).key,
        "dagster/asset_partition_range_end": now.key,
    }

    result = materialize(database_url, partition_key=None, tags=tags)

    assert not result.success
    assert materializations(result, "rated_usage") == {}
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(0,)]
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and f"{now.key} has not closed" in failure.message


def test_pricebook_asset_names_the_version_of_each_window(database_url: str) -> None:
    tags = {
        "dagster/asset_partition_range_start": "2026-08-31-23:00",
        "dagster/asset_partition_range_end": "2026-09-01-00:00",
    }

    result = materialize(database_url, partition_key=None, tags=tags)

    assert result.success
    versions = {
        key: (meta["pricebook_version"], meta["source_file"])
        for key, meta in materializations(result, "pricebook").items()
    }
    assert versions == {
        "2026-08-31-23:00": ("2026-06-01", str(PRICEBOOK_DIR / "2026-06-01.yaml")),
        "2026-09-01-00:00": ("2026-09-01", str(PRICEBOOK_DIR / "2026-09-01.yaml")),
    }


def test_rematerializing_converges_without_writing(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    add_events(traffic(0))
    first = materialize(database_url)
    state = rows(
        reader, "SELECT auth_id, model_id, xmin::text, rated_at FROM rated_usage ORDER BY 1, 2"
    )

    again = materialize(database_url)

    meta = materializations(again, "rated_usage")[KEY]
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 0, 0)
    assert meta["rows_unchanged"] == 3
    assert meta["cost_usd"] == materializations(first, "rated_usage")[KEY]["cost_usd"]
    assert (
        rows(
            reader, "SELECT auth_id, model_id, xmin::text, rated_at FROM rated_usage ORDER BY 1, 2"
        )
        == state
    )


def test_rerate_reports_deleted_rows_and_logs_them_at_info(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    events = traffic(0)
    add_events(events)
    instance = dg.DagsterInstance.ephemeral()
    materialize(database_url, instance=instance)
    delete_events(database_url, [events[2].event_id])  # org-2's only event

    result = materialize(database_url, instance=instance)

    meta = materializations(result, "rated_usage")[KEY]
    assert (meta["rows_deleted"], meta["rows_unchanged"]) == (1, 2)
    info = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == 20 and "deleted" in entry.user_message
    ]
    assert any("rated_usage row auth_id='org-2' model_id='base-small'" in line for line in info)
    assert rows(reader, "SELECT auth_id FROM rated_usage_archive") == [("org-2",)]


def test_a_windows_rating_is_one_log_entry_however_many_rows_it_deleted(
    database_url: str, add_events: AddEvents
) -> None:
    # Dagster stores each log entry as an event (a connection and an insert on its
    # PostgreSQL storage): a line per deleted row would cost a range re-rate that deletes
    # rows in every window up to 51 of them a window.
    events = traffic(0)
    add_events(events)
    instance = dg.DagsterInstance.ephemeral()
    materialize(database_url, instance=instance)
    delete_events(database_url, [events[2].event_id, events[3].event_id])  # org-2, org-3

    result = materialize(database_url, instance=instance)

    ratings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == 20 and entry.user_message.startswith(f"{KEY} pricebook ")
    ]
    assert len(ratings) == 1
    deleted = [line for line in ratings[0].splitlines() if "deleted rated_usage row" in line]
    assert [line.split("auth_id=")[1][:7] for line in deleted] == ["'org-2'", "'org-3'"]


def test_ambiguous_rollup_reconciles_the_window_then_fails_the_blocking_check(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    add_events(
        [
            *traffic(0),
            make_event("org-9", "ft:globex:chat", "base-medium", minutes=10),
            make_event("org-9", "ft:globex:chat", "base-small", minutes=11),
            make_event("org-5", "mystery-model", minutes=12),  # unpriced: not this check's
        ]
    )

    result = materialize(database_url)

    assert not result.success
    assert rows(reader, "SELECT count(*) FROM rated_usage") == [(3,)]
    assert rows(reader, "SELECT auth_id, reason FROM rating_exception ORDER BY 1") == [
        ("org-5", UNPRICED),
        ("org-9", AMBIGUOUS_BASE),
    ]
    assert materializations(result, "rated_usage")[KEY]["events_excepted"] == 3
    evaluation = checks(result)[NO_AMBIGUOUS_BASE]
    assert not evaluation.passed and evaluation.blocking
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["ambiguous_rollups"].value == 1
    assert evaluation.metadata["ambiguous_events"].value == 2
    [ambiguous] = records(evaluation.metadata["rollups"].value)
    assert (ambiguous["auth_id"], ambiguous["model_id"], ambiguous["events"]) == (
        "org-9",
        "ft:globex:chat",
        2,
    )
    failed = {e.step_key for e in result.all_events if e.is_step_failure}
    assert failed == {f"rated_usage_{NO_AMBIGUOUS_BASE}"}


def test_unpriced_usage_warns_without_failing_the_run(
    database_url: str, add_events: AddEvents
) -> None:
    add_events(
        [
            *traffic(0),
            make_event("org-5", "mystery-model", minutes=20),
            make_event("org-6", "mystery-model", minutes=21),
            make_event("org-6", "mystery-model", minutes=22),
        ]
    )

    result = materialize(database_url)

    assert result.success
    evaluation = checks(result)[ALL_USAGE_PRICED]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    # Events, not rollups: two rollups hold the three events that did not bill.
    assert evaluation.metadata["events_not_priced"].value == 3
    by_reason = evaluation.metadata["exceptions_by_reason"].value
    assert isinstance(by_reason, Mapping), by_reason
    assert by_reason[UNPRICED] == {
        "rollups": 2,
        "events": 3,
    }
    # The rollups a billing engineer looks at first: most events first, keyed by both tiers.
    listed = records(evaluation.metadata["rollups"])
    assert [(r["auth_id"], r["service_tier"], r["context_tier"], r["events"]) for r in listed] == [
        ("org-6", "standard", "standard", 2),
        ("org-5", "standard", "standard", 1),
    ]
    assert checks(result)[NO_AMBIGUOUS_BASE].passed
    conserved = checks(result)[EVENTS_CONSERVED]
    assert conserved.passed, conserved.description
    assert [conserved.metadata[figure].value for figure in CONSERVED_FIGURES] == [1, 7, 4, 3]


def test_invalid_events_alone_fail_all_usage_priced(
    database_url: str, add_events: AddEvents
) -> None:
    """An invalid_event bills nothing, as an unpriced one does: it warns the same way."""
    add_events([*traffic(0), make_event("org-5", "base-large", None, -1, minutes=20)])

    evaluation = checks(materialize(database_url))[ALL_USAGE_PRICED]

    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["events_not_priced"].value == 1


def test_cost_check_fails_when_a_windows_rows_no_longer_add_up_to_its_logged_total(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    """A rollup deleted outside the rater leaves every remaining row reconstructing: the
    window's total against its rating_log row is what catches it."""
    add_events(traffic(0))
    assert materialize(database_url).success
    reader.execute("DELETE FROM rated_usage WHERE auth_id = 'org-2'")

    evaluation = audit(database_url, cost_reconstructs)

    assert evaluation.metadata["rows_not_reconstructing"].value == 0
    assert evaluation.metadata["windows_total_not_logged"].value == 1
    assert not evaluation.passed


def test_cost_check_fails_on_rows_in_a_window_no_rating_logged(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    """Rows copied outside the rater into an hour never rated reconstruct row by row, and
    no rating_log row stands behind them: the window's total against its latest rating
    (none) catches them, or they would be invoiced. Found by a review of the checks."""
    add_events(traffic(0))
    assert materialize(database_url).success
    reader.execute(
        "CREATE TEMP TABLE forged AS SELECT * FROM rated_usage WHERE auth_id = 'org-1'; "
        "UPDATE forged SET window_start = window_start + interval '1 hour', "
        "window_end = window_end + interval '1 hour'; "
        "INSERT INTO rated_usage SELECT * FROM forged"
    )

    evaluation = audit(database_url, cost_reconstructs)

    assert evaluation.metadata["windows_total_not_logged"].value == 1
    [total] = records(evaluation.metadata["window_totals"].value)
    assert total["window"] == "2026-06-15-11:00" and total["logged_cost_usd"] == "no rating"
    assert not evaluation.passed


def test_broken_pricebooks_fail_with_every_error_and_rate_nothing(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection, tmp_path: Path
) -> None:
    add_events(traffic(0))
    (tmp_path / "2026-06-01.yaml").write_text(
        'version: "2026-06-01"\n'
        'effective_from: "2026-06-01T00:00:00Z"\n'
        "currency: USD\n"
        "models:\n"
        "  base-large:\n"
        '    input_per_mtok: "2.50"\n'
        "  base-small:\n"
        '    input_per_mtok: "0.15"\n'
        '    output_per_mtok: "0.60"\n'
        '    ouptut_per_mtok: "0.60"\n'
    )

    result = materialize(database_url, pricebook_dir=tmp_path)

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "pricebook"
    failure_data = failure.step_failure_data.user_failure_data
    assert failure_data is not None and failure_data.description is not None
    message = failure_data.description
    assert "base-large" in message and "ouptut_per_mtok" in message
    errors = records(failure_data.metadata["errors"])
    assert {(e["line"], e["model"]) for e in errors} >= {(5, "base-large"), (10, "base-small")}
    assert all(e["file"].endswith("2026-06-01.yaml") for e in errors)
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(0,)]
    assert rows(reader, "SELECT count(*) FROM rated_usage") == [(0,)]


def test_cost_check_fails_on_a_row_that_does_not_reconstruct(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    add_events(traffic(0))
    assert materialize(database_url).success
    reader.execute("ALTER TABLE rated_usage DROP CONSTRAINT rated_usage_cost_reconstructs")
    reader.execute(
        "UPDATE rated_usage SET cost_usd = cost_usd + 0.000000000001 WHERE auth_id = 'org-2'"
    )

    evaluation = audit(database_url, cost_reconstructs)

    assert not evaluation.passed
    assert evaluation.metadata["rows_not_reconstructing"].value == 1
    assert evaluation.metadata["windows_total_not_logged"].value == 1
    assert records(evaluation.metadata["rows"].value) == [
        {
            "window": "2026-06-15-10:00",
            "auth_id": "org-2",
            "model_id": "base-small",
            "service_tier": "standard",
            "context_tier": "standard",
            "cost_usd": "0.000105000001",
            "reconstructed_usd": "0.000105000000",
        }
    ]


def test_cost_check_counts_one_row_and_one_window_in_the_singular() -> None:
    """The UI reads the description as a sentence: "1 row", never "1 rows"."""
    window = Window(WINDOW_START)
    span = queries.Span.of([window])
    one_bad = queries.CostAudit(rows_audited=1, rows_not_reconstructing=1,
                                total_cost_usd=Decimal("1"))  # fmt: skip
    off_total = queries.LoggedTotalMismatch(window, Decimal("2"), Decimal("1"))

    failed = evaluate_cost(span, one_bad, [], [off_total]).description or ""
    passed = evaluate_cost(span, replace(one_bad, rows_not_reconstructing=0), [], [])

    assert "1 row of" in failed and "1 window:" in failed
    assert "1 rows" not in failed and "1 windows" not in failed
    assert "(1 row, 1 USD in all)" in (passed.description or "")
    assert "1 rows" not in (passed.description or "")


def test_cost_check_reconstructs_every_token_class(
    database_url: str, add_events: AddEvents
) -> None:
    """A correct row with tokens of any class the rater prices (1-hour cache writes,
    reasoning, audio, images) must not fail the blocking check: every class counts."""
    add_events(
        [
            # 1,000 x 2.50 + 10 x 10 + 5,000 cache read x 0.25 = 0.00385
            replace(make_event("org-1", "base-large", None, 1_000, 10), cache_read_tokens=5_000),
            # 1,000 x 2.50 + 100 x 10 + 7 x 3.125 + 11 1-hour cache write x 5 = 0.003576875
            replace(make_event("org-2", "base-large"), cache_write_tokens=7,
                    cache_write_1h_tokens=11),
            # 1,000 x 0.15 + 100 x 0.60 + 13 reasoning x 3.50 + 17 audio x 1 + 19 image x 0.15
            # = 0.00027535
            replace(make_event("org-3", "base-flash"), reasoning_tokens=13,
                    audio_input_tokens=17, image_input_tokens=19),
            # 1,000 x 0.15 + 100 x 0.60 + 23 audio in x 10 + 29 audio out x 20 = 0.00102
            replace(make_event("org-4", "base-small"), audio_input_tokens=23,
                    audio_output_tokens=29),
            # A request of no tokens: a row that costs 0, audited like any other.
            make_event("org-5", "embed-small", None, 0, 0),
        ]
    )  # fmt: skip
    assert materialize(database_url).success

    evaluation = audit(database_url, cost_reconstructs)

    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["rows_audited"].value == 5
    assert evaluation.metadata["rows_not_reconstructing"].value == 0
    assert evaluation.metadata["total_cost_usd"].value == "0.008722225000"


def test_cost_check_finds_a_tampered_row_among_rows_with_every_token_class(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    add_events(classed_traffic())
    assert materialize(database_url).success
    reader.execute("ALTER TABLE rated_usage DROP CONSTRAINT rated_usage_cost_reconstructs")
    reader.execute(
        "UPDATE rated_usage SET cost_usd = cost_usd + 0.000000000001 WHERE auth_id = 'org-2'"
    )

    evaluation = audit(database_url, cost_reconstructs)

    assert not evaluation.passed
    assert evaluation.metadata["rows_not_reconstructing"].value == 1  # of 4, all with classes
    assert records(evaluation.metadata["rows"].value) == [
        {
            "window": "2026-06-15-10:00",
            "auth_id": "org-2",
            "model_id": "base-medium",
            "service_tier": "priority",
            "context_tier": "standard",
            "cost_usd": "0.002065000001",
            "reconstructed_usd": "0.002065000000",
        }
    ]


def test_conservation_check_flags_events_that_arrived_after_the_rating(
    database_url: str, add_events: AddEvents
) -> None:
    add_events(traffic(0))
    assert materialize(database_url).success
    add_events([make_event("org-1", "base-large", minutes=30)])

    evaluation = audit(database_url, events_conserved)

    assert not evaluation.passed
    assert "1 changed after" in (evaluation.description or "")
    # The events held now, not those the rating read: the figure a billing engineer compares.
    assert [evaluation.metadata[figure].value for figure in CONSERVED_FIGURES] == [1, 5, 4, 0]
    assert evaluation.metadata["windows_not_conserved"].value == 1
    assert records(evaluation.metadata["not_conserved"].value) == [
        {
            "window": "2026-06-15-10:00",
            "events_now": 5,
            "events_read": 4,
            "events_billed": 4,
            "events_excepted": 0,
            "why": "events changed after the rating (late or deleted)",
        }
    ]


# Each optional token class, on a model of the shipped pricebook that has a rate for it.
OPTIONAL_CLASS_MODELS = [
    ("cache_read", "base-large"),
    ("cache_write", "base-large"),
    ("cache_write_1h", "base-large"),
    ("reasoning", "base-flash"),
    ("audio_input", "base-flash"),
    ("audio_output", "base-small"),
    ("image_input", "base-flash"),
]


@pytest.mark.parametrize(("token_class", "model"), OPTIONAL_CLASS_MODELS)
def test_cost_check_fails_on_a_row_with_tokens_and_no_rate(
    database_url: str,
    add_events: AddEvents,
    reader: psycopg.Connection,
    token_class: str,
    model: str,
) -> None:
    """A class with tokens and no frozen rate cannot reconstruct, even where the other
    classes add up to the row's cost: coalescing the missing product to 0 must not pass,
    whichever class it is."""
    event = with_tokens(
        make_event("org-1", model, None, 1_000, 10), **{f"{token_class}_tokens": 5_000}
    )
    add_events([event])
    assert materialize(database_url).success
    reader.execute("ALTER TABLE rated_usage DROP CONSTRAINT rated_usage_priced_classes_have_rates")
    reader.execute(
        f"UPDATE rated_usage SET {token_class}_rate_per_mtok = NULL, cost_usd = cost_usd"
        f" - {token_class}_tokens * {token_class}_rate_per_mtok * 0.000001"
    )

    evaluation = audit(database_url, cost_reconstructs)

    assert not evaluation.passed
    assert evaluation.metadata["rows_not_reconstructing"].value == 1
    [row] = records(evaluation.metadata["rows"].value)
    assert row["auth_id"] == "org-1"
    assert row["reconstructed_usd"] == "no rate for a class with tokens"


OUTSIDE_THE_RATER = [
    pytest.param(
        "UPDATE rated_usage SET input_rate_per_mtok = input_rate_per_mtok * 2",
        (3, 0),
        None,
        id="every row's frozen rate changed, its cost and the window's total as logged",
    ),
    pytest.param(
        "DELETE FROM rated_usage",
        (0, 1),
        "output does not match what the rating read",
        id="every row of the window deleted",
    ),
    pytest.param(
        "DELETE FROM rated_usage WHERE auth_id = 'org-2'; "
        "DELETE FROM billing_event WHERE auth_id = 'org-2'",
        (0, 1),
        "output does not match what the rating read",
        id="a row deleted with its events",
    ),
]


@pytest.mark.parametrize(("tampering", "not_reconstructing", "why"), OUTSIDE_THE_RATER)
def test_the_error_checks_fail_on_rated_usage_written_outside_the_rater(
    database_url: str,
    add_events: AddEvents,
    reader: psycopg.Connection,
    tampering: str,
    not_reconstructing: tuple[int, int],
    why: str | None,
) -> None:
    """Either half of cost_reconstructs fails it on its own (a row, a window's total), a
    window with no rows left is still audited, and a window whose events went with its rows
    still bills other than its rating read: ERROR, whatever the other figures say."""
    add_events(traffic(0))
    assert materialize(database_url).success
    reader.execute("ALTER TABLE rated_usage DROP CONSTRAINT rated_usage_cost_reconstructs")
    reader.execute(tampering)

    cost = audit(database_url, cost_reconstructs)
    conserved = audit(database_url, events_conserved)

    assert not cost.passed and cost.severity == dg.AssetCheckSeverity.ERROR
    assert (
        cost.metadata["rows_not_reconstructing"].value,
        cost.metadata["windows_total_not_logged"].value,
    ) == not_reconstructing
    if why is None:
        assert conserved.passed, conserved.description
    else:
        assert not conserved.passed and conserved.severity == dg.AssetCheckSeverity.ERROR
        [window] = records(conserved.metadata["not_conserved"])
        assert (window["window"], window["why"]) == (KEY, why)
        assert "1 hold output that does not match" in (conserved.description or "")


def ambiguous(window_start: datetime) -> list[BillingEvent]:
    """A fine-tune whose two events name two bases: an ambiguous_base rollup."""
    return [
        make_event("org-9", "ft:globex:chat", base, occurred_at=window_start + minute * MINUTE)
        for base, minute in (("base-medium", 10), ("base-small", 11))
    ]


def test_a_range_runs_checks_audit_every_window_of_the_range_and_no_other(
    database_url: str, add_events: AddEvents
) -> None:
    """The blocking check fails on the range's last window, and on no window outside it."""
    nine, noon = WINDOW_START - HOUR, WINDOW_START + 2 * HOUR
    add_events([*traffic(0), *ambiguous(nine), *ambiguous(noon)])
    assert not materialize(database_url, partition_key=Window(nine).key).success

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert not result.success
    evaluations = checks(result)
    evaluation = evaluations[NO_AMBIGUOUS_BASE]
    assert not evaluation.passed
    assert [r["window"] for r in records(evaluation.metadata["rollups"])] == [RANGE[1]]
    for name in (COST_RECONSTRUCTS, EVENTS_CONSERVED, NO_AMBIGUOUS_BASE, ALL_USAGE_PRICED):
        assert evaluations[name].metadata["windows"].value == f"{RANGE[0]}...{RANGE[1]}"
    assert evaluations[EVENTS_CONSERVED].metadata["windows_audited"].value == 3


def test_a_partitions_checks_audit_its_window_and_not_the_next_hour(
    database_url: str, add_events: AddEvents
) -> None:
    """The window predicate is half-open: the next hour's rows and its ambiguous rollup are
    the next hour's run's to report, never this partition's to fail."""
    next_hour = WINDOW_START + HOUR
    add_events([*traffic(0), *traffic(1), *ambiguous(next_hour)])
    assert not materialize(database_url, partition_key=Window(next_hour).key).success

    result = materialize(database_url)

    assert result.success
    evaluations = checks(result)
    assert evaluations[NO_AMBIGUOUS_BASE].passed
    assert evaluations[NO_AMBIGUOUS_BASE].metadata["windows"].value == KEY
    assert "rollups" not in evaluations[NO_AMBIGUOUS_BASE].metadata  # no next-hour rollup
    cost = evaluations[COST_RECONSTRUCTS]
    assert cost.metadata["rows_audited"].value == 3
    assert cost.metadata["total_cost_usd"].value == "0.020355000000"
    assert evaluations[EVENTS_CONSERVED].metadata["windows_audited"].value == 1


def test_a_window_holds_its_events_from_its_first_instant_up_to_not_including_its_end(
    database_url: str, add_events: AddEvents
) -> None:
    """An event at 10:00:00 is the 10:00 window's; one at 11:00:00 the next window's: the
    count window_usage reports and the one events_conserved compares agree with the rating."""
    at_the_start = make_event("org-1", "base-large", occurred_at=WINDOW_START)
    next_window = [
        make_event("org-2", "base-small", occurred_at=WINDOW_START + HOUR) for _ in range(2)
    ]
    add_events([at_the_start, *traffic(0), *next_window])

    result = materialize(database_url)

    assert materializations(result, "rated_usage")[KEY]["events_read"] == 5
    assert materializations(result, "window_usage")[KEY]["events"] == 5
    conserved = checks(result)[EVENTS_CONSERVED]
    assert conserved.passed, conserved.description
    assert conserved.metadata["events"].value == 5


def test_a_range_runs_conservation_counts_each_window_its_own_billed_and_excepted_events(
    database_url: str, add_events: AddEvents
) -> None:
    """Every window of the range bills and excepts events: each is matched with its own
    output, never with another window's (contract 6, per rated window)."""
    noon = WINDOW_START + 2 * HOUR
    add_events(
        [
            *traffic(0),
            make_event("org-5", "mystery-model", minutes=20),
            *traffic(2)[:1],
            make_event("org-6", "mystery-model", occurred_at=noon + 20 * MINUTE),
            make_event("org-6", "mystery-model", occurred_at=noon + 21 * MINUTE),
        ]
    )

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert result.success
    conserved = checks(result)[EVENTS_CONSERVED]
    assert conserved.passed, conserved.description
    assert [conserved.metadata[figure].value for figure in CONSERVED_FIGURES] == [3, 8, 5, 3]
    assert conserved.metadata["windows_not_conserved"].value == 0


def test_rated_usage_alone_over_a_range_that_reaches_the_open_hour_rates_nothing(
    database_url: str, reader: psycopg.Connection
) -> None:
    """Materializing rated_usage without window_usage (the UI lets one select it alone)
    must refuse the open hour itself, before it rates any window of the range."""
    now = Window.containing(clear_of_an_hours_end())
    tags = {
        "dagster/asset_partition_range_start": Window(now.start - HOUR).key,
        "dagster/asset_partition_range_end": now.key,
    }

    result = dg.materialize(
        ASSETS,
        selection=[rated_usage.key],
        tags=tags,
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "pricebooks": PricebookResource(directory=str(PRICEBOOK_DIR)),
        },
        raise_on_error=False,
    )

    assert not result.success
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(0,)]
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "rated_usage"
    error = failure.step_failure_data.error
    assert error is not None and f"{now.key} has not closed" in error.message


def test_a_window_committed_before_its_tables_fail_still_records_its_materialization(
    database_url: str,
    add_events: AddEvents,
    reader: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """11:00's rating commits, then reading its UI tables fails: its new rows bill, so the
    UI must show its materialization (with the rating's figures), not an earlier run's."""
    add_events([*traffic(0), *traffic(1), *traffic(2)])
    tables_for_real = assets.window_tables

    def failing_at_eleven(conn, window, *args):  # type: ignore[no-untyped-def]
        if window.key == "2026-06-15-11:00":
            raise TimeoutError("canceling statement due to statement timeout")
        return tables_for_real(conn, window, *args)

    monkeypatch.setattr(assets, "window_tables", failing_at_eleven)

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert not result.success
    rated = materializations(result, "rated_usage")
    assert sorted(rated) == ["2026-06-15-10:00", "2026-06-15-11:00"]
    assert rated["2026-06-15-11:00"]["rows_inserted"] == 3
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(2,)]
    # The failure says what is committed, as a failed rating's does. Found by a review of
    # the Dagster layer: it was the bare TimeoutError.
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    assert (
        "Failure: reading the UI tables of window 2026-06-15-11:00 failed: TimeoutError: "
        "canceling statement due to statement timeout. Its rating was committed: the 2 "
        "window(s) through it (2026-06-15-10:00...2026-06-15-11:00 (2 windows)) are rated and "
        "committed"
    ) in error.message


def test_a_window_whose_connection_is_lost_at_its_commit_is_said_to_have_committed(
    database_url: str,
    add_events: AddEvents,
    reader: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """11:00's COMMIT goes through and its answer is lost (here: the error comes right
    after it): the failure said the window was rolled back, as the CLI did. It asks, as the
    CLI does now, and says the window committed."""
    add_events([*traffic(0), *traffic(1), *traffic(2)])
    rate_for_real = assets.rate_window

    def lost_after_eleven_commits(conn, window, *args):  # type: ignore[no-untyped-def]
        rating = rate_for_real(conn, window, *args)
        if window.key == "2026-06-15-11:00":
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return rating

    monkeypatch.setattr(assets, "rate_window", lost_after_eleven_commits)

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert not result.success
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(2,)]
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    assert (
        "rating window 2026-06-15-11:00 failed: OperationalError: server closed the connection "
        "unexpectedly. It committed all the same (the failure came at or after its COMMIT); "
        "the 2 window(s) through it (2026-06-15-10:00...2026-06-15-11:00 (2 windows)) are "
        "rated and committed"
    ) in error.message
    # Committed, so the UI shows the partition materialized by this run, with the counts
    # its rating_log row holds (contract 7: the counts are surfaced on the materialization).
    recorded = materializations(result, "rated_usage")
    assert set(recorded) == {"2026-06-15-10:00", "2026-06-15-11:00"}
    logged = rows(
        reader,
        "SELECT rows_inserted, rows_unchanged, total_cost_usd FROM rating_log "
        "WHERE window_start = '2026-06-15 11:00Z'",
    )
    eleven = recorded["2026-06-15-11:00"]
    assert [
        (eleven["rows_inserted"], eleven["rows_unchanged"], Decimal(eleven["cost_usd"]))
    ] == logged
    assert eleven["committed"] == (
        "its rating committed as the run stopped; these figures are its rating_log row's "
        f"(run {result.run_id})"
    )


def test_a_window_committed_as_its_run_was_terminated_is_recorded_materialized(
    database_url: str,
    add_events: AddEvents,
    reader: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Terminating a run from the UI raises DagsterExecutionInterruptedError, no Exception:
    a window whose COMMIT it came at was neither asked about nor recorded."""
    add_events([*traffic(0), *traffic(1), *traffic(2)])
    rate_for_real = assets.rate_window

    def terminated_after_eleven_commits(conn, window, *args):  # type: ignore[no-untyped-def]
        rating = rate_for_real(conn, window, *args)
        if window.key == "2026-06-15-11:00":
            raise DagsterExecutionInterruptedError()
        return rating

    monkeypatch.setattr(assets, "rate_window", terminated_after_eleven_commits)

    result = materialize(database_url, partition_key=None, tags=RANGE_TAGS)

    assert not result.success
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(2,)]
    assert set(materializations(result, "rated_usage")) == {"2026-06-15-10:00", "2026-06-15-11:00"}


def test_rated_usage_refuses_a_billing_event_whose_token_column_can_hold_a_fraction(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    """2.5 tokens have no price (docs/events.md): the asset names the column and rates
    nothing, before it reads any window."""
    reader.execute("ALTER TABLE billing_event ALTER COLUMN cache_read_tokens TYPE numeric(12, 2)")
    add_events(traffic(0))

    result = materialize(database_url)

    assert not result.success
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(0,)]
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "rated_usage"
    error = failure.step_failure_data.error
    assert error is not None
    assert "billing_event.cache_read_tokens is numeric(12,2)" in error.to_string()


def test_cost_check_lists_every_window_off_its_logged_total_and_a_spans_own_rows_only(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection
) -> None:
    """Three windows tampered outside the rater: the check's window_totals names each one,
    and a partition's rows table lists its own rows, never the next hour's."""
    add_events([*traffic(0), *traffic(1), *traffic(2)])
    assert materialize(database_url, partition_key=None, tags=RANGE_TAGS).success
    reader.execute("ALTER TABLE rated_usage DROP CONSTRAINT rated_usage_cost_reconstructs")
    reader.execute(
        "UPDATE rated_usage SET cost_usd = cost_usd + 0.000000000001 WHERE auth_id = 'org-2'"
    )

    evaluation = audit(database_url, cost_reconstructs)
    ten = queries.cost_mismatches(reader, queries.Span.of([Window(WINDOW_START)]))

    assert evaluation.metadata["windows_total_not_logged"].value == 3
    assert [t["window"] for t in records(evaluation.metadata["window_totals"].value)] == [
        "2026-06-15-10:00",
        "2026-06-15-11:00",
        "2026-06-15-12:00",
    ]
    assert [(m.window.key, m.auth_id) for m in ten] == [(KEY, "org-2")]


def test_a_window_no_pricebook_version_covers_fails_naming_it_and_rates_nothing(
    database_url: str, add_events: AddEvents, reader: psycopg.Connection, tmp_path: Path
) -> None:
    add_events(traffic(0))
    (tmp_path / "2026-06-15.yaml").write_text(
        'version: "2026-06-15"\n'
        'effective_from: "2026-06-15T11:00:00Z"\n'
        "currency: USD\n"
        "models:\n"
        "  base-large:\n"
        '    input_per_mtok: "2.50"\n'
        '    output_per_mtok: "10.00"\n'
    )

    result = materialize(database_url, pricebook_dir=tmp_path)

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "pricebook"
    failure_data = failure.step_failure_data.user_failure_data
    assert failure_data is not None and failure_data.description is not None
    message = failure_data.description
    assert "covers window [2026-06-15T10:00:00+00:00" in message
    assert message.endswith("; nothing is rated")
    assert rows(reader, "SELECT count(*) FROM rating_log") == [(0,)]
