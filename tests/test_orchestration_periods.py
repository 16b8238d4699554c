"""Closed windows in Dagster (contract 10): ``rated_usage`` materialized after a close, its
checks, and what its metadata says about open adjustments. Real instance, real database."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from rating_pipeline.orchestration.checks import (
    NO_OPEN_ADJUSTMENTS,
    cost_reconstructs,
    evaluate_open_adjustments,
    events_conserved,
    no_open_adjustments,
)
from rating_pipeline.orchestration.resources import WarehouseResource
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.periods import OpenAdjustments, close_period
from rating_pipeline.windows import HOUR, Window
from tests.conftest import delete_events
from tests.factories import WINDOW_START, BillingEvent, make_event
from tests.test_orchestration_assets import (
    KEY,
    checks,
    materializations,
    materialize,
    records,
    traffic,
)

AddEvents = Callable[[Iterable[BillingEvent]], int]


def close(database_url: str, hours_after_window: int = 1) -> None:
    with connect(database_url) as conn:
        close_period(conn, WINDOW_START + hours_after_window * HOUR, "finance")


def audit(database_url: str, check: dg.AssetChecksDefinition) -> dg.AssetCheckResult:
    """Run a check outside any run: it audits every rated window."""
    context = dg.build_asset_check_context(
        resources={"warehouse": WarehouseResource(database_url=database_url)}
    )
    result = check(context)  # typed object: a definition's __call__ returns anything
    assert isinstance(result, dg.AssetCheckResult), result
    return result


@pytest.fixture
def corrected_after_close(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> list[BillingEvent]:
    """KEY rated, closed, corrected (a late event, a deletion) and re-rated: its rows are
    frozen and its open adjustments carry the difference."""
    events = traffic(0)
    add_events(events)
    assert materialize(database_url, instance=instance).success
    close(database_url)
    add_events([make_event("org-1", "base-large", minutes=40)])
    delete_events(database_url, [events[2].event_id])
    return events


def test_a_closed_windows_billed_output_is_its_rows_plus_every_adjustment_for_the_checks(
    database_url: str,
    reader: psycopg.Connection,
    add_events: AddEvents,
    instance: dg.DagsterInstance,
    corrected_after_close: list[BillingEvent],
) -> None:
    result = materialize(database_url, instance=instance)

    assert result.success
    assert reader.execute("SELECT count(*) FROM rating_adjustment").fetchone() != (0,)
    evaluations = checks(result)
    assert evaluations["cost_reconstructs"].passed, evaluations["cost_reconstructs"].description
    assert evaluations["events_conserved"].passed, evaluations["events_conserved"].description
    # A second close stamps them; a further correction opens more: stamped + open + rows.
    close(database_url, 2)
    add_events([make_event("org-2", "base-small", minutes=45)])
    assert materialize(database_url, instance=instance).success
    stamped = reader.execute(
        "SELECT count(*) FILTER (WHERE invoiced_by IS NULL), count(invoiced_by) "
        "FROM rating_adjustment"
    ).fetchone()
    assert stamped is not None and all(stamped)
    for check in (cost_reconstructs, events_conserved):
        evaluation = audit(database_url, check)
        assert evaluation.passed, evaluation.description
    assert materializations(result, "rated_usage")[KEY]["events_read"] == 4


def test_rated_usage_metadata_says_whether_the_window_is_closed_and_what_it_adjusts(
    database_url: str, instance: dg.DagsterInstance, corrected_after_close: list[BillingEvent]
) -> None:
    before = materializations(materialize(database_url, instance=instance), "rated_usage")[KEY]

    assert before["window_closed"] is True
    # org-1 +1 event (1,000 in x 2.50, 100 out x 10): +0.0035; org-2's only event gone:
    # -(500 x 0.15 + 50 x 0.60) = -0.000105. One row per rollup, class and rate.
    assert (before["adjustments_inserted"], before["open_adjustments"]) == (4, 4)
    assert before["open_adjustment_cost_usd"] == "0.003395000000"
    assert (before["rows_inserted"], before["rows_updated"], before["rows_deleted"]) == (0, 0, 0)
    assert before["cost_usd"] == "0.023750000000"  # the latest output: rows + adjustments
    again = materializations(materialize(database_url, instance=instance), "rated_usage")[KEY]
    assert (again["adjustments_inserted"], again["adjustments_unchanged"]) == (0, 4)


def test_a_closed_windows_tables_and_its_adjustments_add_up_to_its_cost_once_stamped(
    database_url: str, instance: dg.DagsterInstance, corrected_after_close: list[BillingEvent]
) -> None:
    """The tables split the stored rows; in a closed window cost_usd also holds every
    adjustment, and once a close has stamped them none was open: nothing in the UI said
    where the difference was. Found by a review of the Dagster UI."""
    materialize(database_url, instance=instance)
    close(database_url, 2)  # stamps the window's four adjustments

    meta = materializations(materialize(database_url, instance=instance), "rated_usage")[KEY]

    assert (meta["open_adjustments"], meta["open_adjustment_cost_usd"]) == (0, "0")
    assert meta["adjustments_cost_usd"] == "0.003395000000"  # stamped and open
    for table in ("cost_by_token_class", "cost_by_tier"):
        stored = sum(Decimal(row["cost_usd"]) for row in records(meta[table]))
        assert stored + Decimal(meta["adjustments_cost_usd"]) == Decimal(meta["cost_usd"])


def test_an_open_windows_metadata_has_no_adjustments(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    add_events(traffic(0))

    meta = materializations(materialize(database_url, instance=instance), "rated_usage")[KEY]

    assert meta["window_closed"] is False
    assert (meta["open_adjustments"], meta["open_adjustment_cost_usd"]) == (0, "0")
    assert meta["adjustments_inserted"] == meta["adjustments_unchanged"] == 0


def test_no_open_adjustments_warns_listing_each_corrected_window_until_a_close_stamps_them(
    database_url: str, instance: dg.DagsterInstance, corrected_after_close: list[BillingEvent]
) -> None:
    result = materialize(database_url, instance=instance)

    assert result.success  # a WARN: the run goes on
    evaluation = checks(result)[NO_OPEN_ADJUSTMENTS]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["windows_with_open_adjustments"].value == 1
    assert evaluation.metadata["open_adjustments"].value == 4
    assert evaluation.metadata["open_adjustment_cost_usd"].value == "0.003395000000"
    assert records(evaluation.metadata["corrected_windows"]) == [
        {"window": KEY, "adjustments": 4, "cost_usd": "0.003395000000", "billed_on": "2026-06"}
    ]
    assert "billed on the invoice of 2026-06" in (evaluation.description or "")

    close(database_url, 2)

    assert audit(database_url, no_open_adjustments).passed


def test_no_open_adjustments_keeps_warning_in_a_later_run_of_another_window(
    database_url: str, instance: dg.DagsterInstance, corrected_after_close: list[BillingEvent]
) -> None:
    """The UI shows a check's latest evaluation: the next hour's run must not turn it green
    while the corrected window's adjustments are still open (contract 10, "Seen")."""
    assert materialize(database_url, instance=instance).success
    next_hour = Window(WINDOW_START + HOUR).key

    later = checks(materialize(database_url, partition_key=next_hour, instance=instance))

    evaluation = later[NO_OPEN_ADJUSTMENTS]
    assert not evaluation.passed, evaluation.description
    assert [row["window"] for row in records(evaluation.metadata["corrected_windows"])] == [KEY]


def test_a_stamped_adjustments_events_still_count_as_billed_for_conservation(
    database_url: str, add_events: AddEvents, instance: dg.DagsterInstance
) -> None:
    """A late event in a closed window bills as an adjustment; the next close stamps it.
    It is billed output from then on (contract 10): the checks count it, stamped or open."""
    add_events(traffic(0))
    assert materialize(database_url, instance=instance).success
    close(database_url)
    add_events([make_event("org-1", "base-large", minutes=40)])
    assert materialize(database_url, instance=instance).success
    close(database_url, 2)

    for check in (events_conserved, cost_reconstructs):
        evaluation = audit(database_url, check)
        assert evaluation.passed, evaluation.description
    conserved = audit(database_url, events_conserved)
    assert (conserved.metadata["events"].value, conserved.metadata["events_billed"].value) == (5, 5)


def test_open_adjustments_description_names_every_invoice_month_they_bill_on() -> None:
    """Open adjustments of windows closed in two months bill on two invoices: the operator is
    told both months (mutant C13: only the first)."""
    windows = [
        OpenAdjustments(
            datetime(2026, 5, 31, 23, tzinfo=UTC),
            1,
            Decimal("1.5"),
            datetime(2026, 6, 1, tzinfo=UTC),
        ),
        OpenAdjustments(
            datetime(2026, 6, 30, 23, tzinfo=UTC),
            2,
            Decimal("-0.25"),
            datetime(2026, 7, 1, tzinfo=UTC),
        ),
    ]

    result = evaluate_open_adjustments(windows)

    assert not result.passed
    assert "billed on the invoice of 2026-06, 2026-07." in (result.description or "")
    assert result.metadata["open_adjustment_cost_usd"] == dg.MetadataValue.text("1.25")
