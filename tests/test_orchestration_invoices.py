"""``invoice_lines`` and its blocking check on a live PostgreSQL: ``dg.materialize`` of a
month with the real resources, after its windows were rated and, some of them, closed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from rating_pipeline.orchestration import invoices as orchestration_invoices
from rating_pipeline.orchestration.invoices import (
    CLOSED_MONTHS_MATCH_THEIR_CLOSE,
    HOURS_OF_THE_MONTH,
    INVOICE_CHECKS,
    closed_months_match_their_close,
    invoice_lines,
)
from rating_pipeline.orchestration.partitions import hourly_windows, invoice_months
from rating_pipeline.orchestration.resources import WarehouseResource
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import HOUR, Window
from tests.conftest import insert_events, utc
from tests.factories import BillingEvent, make_event
from tests.sensing import PRICEBOOKS
from tests.test_orchestration_assets import checks, materializations, records

AddEvents = Callable[[Iterable[BillingEvent]], int]
JUNE, JULY = "2026-06", "2026-07"


def build(database_url: str, month: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [invoice_lines, *INVOICE_CHECKS],
        partition_key=month,
        instance=instance,
        resources={"warehouse": WarehouseResource(database_url=database_url)},
        raise_on_error=False,
    )


def rate(database_url: str, events: Iterable[BillingEvent]) -> None:
    """Rate the events' windows with the shipped pricebooks (the engine, as a run does)."""
    with connect(database_url) as conn:
        for window in sorted({Window.containing(e.occurred_at) for e in events}):
            rate_window(conn, window, PRICEBOOKS, "run-1")


def audit(database_url: str) -> dg.AssetCheckResult:
    """The closed-month check outside any run: every wholly closed month."""
    context = dg.build_asset_check_context(
        resources={"warehouse": WarehouseResource(database_url=database_url)}
    )
    result = closed_months_match_their_close(context)  # typed object: __call__ returns anything
    assert isinstance(result, dg.AssetCheckResult), result
    return result


@pytest.fixture
def june(database_url: str, add_events: AddEvents) -> list[BillingEvent]:
    """Two accounts' usage on 2026-06-15, rated."""
    start = utc(2026, 6, 15, 10)
    events = [
        make_event("org-1", "base-large", None, 100_000, 20_000, occurred_at=start),
        make_event("org-1", "base-large", None, 50_000, 0, occurred_at=start + 3 * HOUR),
        make_event("org-2", "base-small", None, 100_000, 25_000, occurred_at=start),
    ]
    add_events(events)
    rate(database_url, events)
    return events


def close_june(database_url: str) -> None:
    with connect(database_url) as conn:
        close_period(conn, utc(2026, 7, 1), "finance")


def close_june_and_build_july(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """June closed, and July rated and built: a month closed before one still open."""
    close_june(database_url)
    july = [make_event("org-3", occurred_at=utc(2026, 7, 2, 1))]
    add_events(july)
    rate(database_url, july)
    assert build(database_url, JULY, instance).success


def test_a_month_maps_to_every_hour_it_holds() -> None:
    assert invoice_lines.get_partition_mapping(dg.AssetKey("rated_usage")) == HOURS_OF_THE_MONTH
    june = invoice_months.empty_subset().with_partition_keys([JUNE])
    hours = list(
        HOURS_OF_THE_MONTH.get_upstream_mapped_partitions_result_for_partitions(
            june, invoice_months, hourly_windows
        ).partitions_subset.get_partition_keys()
    )
    assert (len(hours), hours[0], hours[-1]) == (720, "2026-06-01-00:00", "2026-06-30-23:00")
    an_hour = hourly_windows.empty_subset().with_partition_keys(["2026-06-15-10:00"])
    downstream = HOURS_OF_THE_MONTH.get_downstream_partitions_for_partitions(
        an_hour, hourly_windows, invoice_months
    )
    assert list(downstream.get_partition_keys()) == [JUNE]
    # The month in progress is a partition; its hours not yet rated-able are no error.
    last = invoice_months.get_last_partition_key()
    assert last is not None
    newest = invoice_months.empty_subset().with_partition_keys([last])
    mapped = HOURS_OF_THE_MONTH.get_upstream_mapped_partitions_result_for_partitions(
        newest, invoice_months, hourly_windows
    )
    assert mapped.required_but_nonexistent_subset.is_empty


def test_materializing_a_month_builds_its_lines_and_reports_them_per_account(
    database_url: str,
    reader: psycopg.Connection,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
) -> None:
    result = build(database_url, JUNE, instance)

    assert result.success
    meta = materializations(result, "invoice_lines")[JUNE]
    # org-1: 150,000 in x 2.50 = 0.375 -> 0.38 (a tie, to the even cent) and 20,000 out x
    # 10 = 0.20; org-2: 100,000 in x 0.15 = 0.015 -> 0.02 and 25,000 out x 0.60, the same
    assert (meta["lines_inserted"], meta["lines_updated"], meta["lines_deleted"]) == (4, 0, 0)
    assert (meta["lines"], meta["accounts"], meta["dagster/partition_row_count"]) == (4, 2, 4)
    assert (meta["amount_exact"], meta["amount"]) == ("0.605000000000", "0.62")
    assert meta["residual"] == "0.015000000000"
    assert meta["frozen"] is False
    assert records(meta["by_account"]) == [
        {"account_id": "org-1", "lines": 2, "amount_exact": "0.575000000000",
         "amount": "0.58", "residual": "0.005000000000"},
        {"account_id": "org-2", "lines": 2, "amount_exact": "0.030000000000",
         "amount": "0.04", "residual": "0.010000000000"},
    ]  # fmt: skip
    [materialization] = result.asset_materializations_for_node("invoice_lines")
    assert isinstance(materialization.metadata["amount"], dg.TextMetadataValue)
    assert not any(isinstance(v, dg.FloatMetadataValue) for v in materialization.metadata.values())
    assert reader.execute("SELECT count(*), min(run_id) FROM invoice_line").fetchone() == (
        4,
        result.run_id,
    )
    evaluation = checks(result)[CLOSED_MONTHS_MATCH_THEIR_CLOSE]
    assert evaluation.passed and "No month of the run is wholly closed" in (
        evaluation.description or ""
    )

    again = build(database_url, JUNE, instance)

    meta = materializations(again, "invoice_lines")[JUNE]
    assert (meta["lines_inserted"], meta["lines_updated"], meta["lines_deleted"]) == (0, 0, 0)
    assert meta["lines_unchanged"] == 4
    assert reader.execute("SELECT DISTINCT run_id FROM invoice_line").fetchall() == [
        (result.run_id,)
    ]


def test_a_wholly_closed_month_materializes_frozen_and_matches_its_close(
    database_url: str,
    reader: psycopg.Connection,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
) -> None:
    close_june(database_url)
    frozen = reader.execute("SELECT ctid, xmin, * FROM invoice_line ORDER BY ctid").fetchall()
    reader.execute("INSERT INTO billing_account (auth_id, account_id) VALUES ('org-1', 'acme')")

    result = build(database_url, JUNE, instance)

    assert result.success
    meta = materializations(result, "invoice_lines")[JUNE]
    assert meta["frozen"] is True and meta["lines"] == 4 and meta["lines_unchanged"] == 4
    assert (meta["lines_inserted"], meta["lines_updated"], meta["lines_deleted"]) == (0, 0, 0)
    assert [r["account_id"] for r in records(meta["by_account"])] == ["org-1", "org-2"]
    assert reader.execute("SELECT ctid, xmin, * FROM invoice_line ORDER BY ctid").fetchall() == (
        frozen
    )
    evaluation = checks(result)[CLOSED_MONTHS_MATCH_THEIR_CLOSE]
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["months_audited"].value == 1
    assert evaluation.metadata["invoices_audited"].value == 2


TAMPERING = [
    pytest.param(
        "UPDATE invoice_line SET quantity_tokens = quantity_tokens + 1000000, "
        "amount_exact = amount_exact + 0.6, amount = amount + 0.6 "
        "WHERE account_id = 'org-2' AND token_class = 'output'",
        [("org-2", 2, 2, "amount_exact, amount, lines_sha256 differ from what close 1 recorded")],
        id="a line changed",
    ),
    pytest.param(
        "UPDATE invoice_line SET account_id = 'acme' WHERE account_id = 'org-1'",
        [
            ("acme", None, 2, "lines the close recorded nothing for"),
            ("org-1", 2, None, "close 1 recorded lines; there are none"),
        ],
        id="lines moved to another account",
    ),
    pytest.param(
        "UPDATE invoice_line SET kind = 'adjustment' WHERE account_id = 'org-2'",
        [("org-2", 2, 2, "lines_sha256 differ from what close 1 recorded")],
        id="usage relabelled as an adjustment",
    ),
    pytest.param(
        "DELETE FROM invoice_line WHERE account_id = 'org-1' AND token_class = 'output'",
        [
            (
                "org-1",
                2,
                1,
                "line count, amount_exact, amount, lines_sha256 differ from what close 1 recorded",
            )
        ],
        id="a line deleted",
    ),
    pytest.param(
        "UPDATE invoice_line SET quantity_tokens = quantity_tokens * 2, "
        "unit_rate_per_mtok = unit_rate_per_mtok / 2 "
        "WHERE account_id = 'org-2' AND token_class = 'output'",
        [("org-2", 2, 2, "lines_sha256 differ from what close 1 recorded")],
        id="quantity and rate changed, amounts as they were",
    ),
    pytest.param(
        "DELETE FROM invoice_line",
        [
            ("org-1", 2, None, "close 1 recorded lines; there are none"),
            ("org-2", 2, None, "close 1 recorded lines; there are none"),
        ],
        id="every line of the month deleted",
    ),
]


def test_a_months_accounts_table_is_of_the_lines_its_totals_are_of(
    database_url: str,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-account table was read after the build committed, with no lock: a rating and
    build of the month landing in between showed in it and not in the totals (found by an
    audit). Both are now read in the build's own transaction."""
    real = orchestration_invoices.build_invoice

    def then_another_build_lands(conn: psycopg.Connection, month, run_id):  # type: ignore[no-untyped-def]
        built = real(conn, month, run_id)
        late = [make_event("org-9", "base-large", None, 1_000_000, 0, occurred_at=utc(2026, 6, 20))]
        insert_events(database_url, late)
        rate(database_url, late)
        with connect(database_url) as other:
            real(other, month, "another-run")
        return built

    monkeypatch.setattr(orchestration_invoices, "build_invoice", then_another_build_lands)
    result = build(database_url, JUNE, instance)

    meta = materializations(result, "invoice_lines")[JUNE]
    accounts = records(meta["by_account"])
    assert [a["account_id"] for a in accounts] == ["org-1", "org-2"]
    assert sum(Decimal(a["amount"]) for a in accounts) == Decimal(meta["amount"])


def test_the_mismatches_table_shows_the_exact_amounts_where_only_they_differ(
    database_url: str,
    reader: psycopg.Connection,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
) -> None:
    """A tampered line whose rounded amount stayed the same showed the same numbers twice
    and named amount_exact as the difference without showing it. Found by an audit."""
    close_june(database_url)
    reader.execute(
        "UPDATE invoice_line SET quantity_tokens = quantity_tokens + 1, "
        "amount_exact = amount_exact + 0.0000006 "
        "WHERE account_id = 'org-2' AND token_class = 'output'"
    )

    (row,) = records(audit(database_url).metadata["mismatches"])

    assert row["recorded_amount"] == row["amount"]
    assert Decimal(row["amount_exact"]) - Decimal(row["recorded_amount_exact"]) == Decimal(
        "0.0000006"
    )


@pytest.mark.parametrize(("tampering", "found"), TAMPERING)
def test_the_blocking_check_fails_when_a_closed_months_lines_differ_from_its_close(
    database_url: str,
    reader: psycopg.Connection,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
    tampering: str,
    found: list[tuple[object, ...]],
) -> None:
    close_june(database_url)
    reader.execute(tampering)  # outside build_invoice and close_period: nothing else writes

    result = build(database_url, JUNE, instance)
    unpartitioned = audit(database_url)

    assert not result.success
    evaluation = checks(result)[CLOSED_MONTHS_MATCH_THEIR_CLOSE]
    assert not evaluation.passed and evaluation.blocking
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    for checked in (evaluation, unpartitioned):
        assert [
            (r["account_id"], r["recorded_lines"], r["lines"], r["why"])
            for r in records(checked.metadata["mismatches"])
        ] == found
        assert checked.metadata["invoices_not_matching"].value == len(found)
    failed = {e.step_key for e in result.all_events if e.is_step_failure}
    assert failed == {f"invoice_lines_{CLOSED_MONTHS_MATCH_THEIR_CLOSE}"}
    # The step wrote nothing and says so; its materialization must not pass the altered
    # lines off as what the close built (found by an audit).
    meta = materializations(result, "invoice_lines")[JUNE]
    assert meta["invoices_differing_from_close"] == len(found)


def test_the_check_outside_a_run_audits_every_wholly_closed_month_and_no_open_one(
    database_url: str,
    reader: psycopg.Connection,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
) -> None:
    assert audit(database_url).metadata["months_audited"].value == 0  # nothing closed
    close_june_and_build_july(database_url, add_events, instance)
    # An open month's lines may change: the check does not look at them.
    reader.execute("UPDATE invoice_line SET account_id = 'acme' WHERE month = '2026-07-01'")

    evaluation = audit(database_url)

    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["months_audited"].value == 1
    assert evaluation.metadata["months"].value == JUNE


def build_june_and_july(
    database_url: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """One run of invoice_lines over June and July, as a backfill of the two runs it."""
    return dg.materialize(
        [invoice_lines, *INVOICE_CHECKS],
        tags={
            "dagster/asset_partition_range_start": JUNE,
            "dagster/asset_partition_range_end": JULY,
        },
        instance=instance,
        resources={"warehouse": WarehouseResource(database_url=database_url)},
        raise_on_error=False,
    )


def test_a_range_of_months_builds_each_month_in_its_own_transaction(
    database_url: str,
    reader: psycopg.Connection,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
) -> None:
    """A backfill of several months is one run (single-run policy): each month's build
    starts outside any transaction, after the month before it committed."""
    july = [make_event("org-3", occurred_at=utc(2026, 7, 2, 1))]
    add_events(july)
    rate(database_url, july)

    result = build_june_and_july(database_url, instance)

    assert result.success
    built = materializations(result, "invoice_lines")
    assert {month: meta["lines"] for month, meta in built.items()} == {JUNE: 4, JULY: 2}
    assert reader.execute(
        "SELECT to_char(month, 'YYYY-MM'), count(*) FROM invoice_line GROUP BY 1 ORDER BY 1"
    ).fetchall() == [(JUNE, 4), (JULY, 2)]


def test_a_range_run_that_fails_records_the_months_it_committed_before_the_failure(
    database_url: str,
    reader: psycopg.Connection,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """June's lines are built and committed before July's build fails (a statement
    timeout, a terminated backfill): June's new lines are what export and a close read,
    so the UI must show June's materialization with its figures, not an earlier run's (as
    rated_usage does for the windows it committed), and the failure names the month."""
    july = [make_event("org-3", occurred_at=utc(2026, 7, 2, 1))]
    add_events(july)
    rate(database_url, july)
    build_for_real = orchestration_invoices.build_invoice

    def failing_in_july(conn, month, run_id):  # type: ignore[no-untyped-def]
        if month == utc(2026, 7, 1):
            raise TimeoutError("canceling statement due to statement timeout")
        return build_for_real(conn, month, run_id)

    monkeypatch.setattr(orchestration_invoices, "build_invoice", failing_in_july)

    result = build_june_and_july(database_url, instance)

    assert not result.success
    assert reader.execute(
        "SELECT to_char(month, 'YYYY-MM'), count(*) FROM invoice_line GROUP BY 1"
    ).fetchall() == [(JUNE, 4)]
    built = materializations(result, "invoice_lines")
    assert sorted(built) == [JUNE]
    assert built[JUNE]["lines_inserted"] == 4 and built[JUNE]["amount"] == "0.62"
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and JULY in failure.message


def test_a_closed_month_whose_lines_were_all_deleted_fails_the_check_though_later_months_hold_lines(
    database_url: str,
    reader: psycopg.Connection,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    june: list[BillingEvent],
) -> None:
    """Outside a run, closed_months_match_their_close starts at the first month holding lines
    OR a close's record: June's invoice deleted outside the pipeline, with July built since,
    is still audited and fails (mutant Q17: greatest() starts at July and passes)."""
    close_june_and_build_july(database_url, add_events, instance)
    reader.execute("DELETE FROM invoice_line WHERE month = '2026-06-01'")

    evaluation = audit(database_url)

    assert not evaluation.passed
    assert evaluation.metadata["months_audited"].value == 1
    assert evaluation.metadata["invoices_not_matching"].value == 2
