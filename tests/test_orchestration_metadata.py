"""What the UI shows: exact money text, tables the UI renders, failures that say where."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import pytest

from rating_pipeline.money import micro_usd
from rating_pipeline.orchestration.assets import failed_window
from rating_pipeline.orchestration.metadata import (
    COSTLIEST_ROLLUP_COLUMNS,
    adjustment_metadata,
    cost_by_tier_table,
    cost_by_token_class_table,
    costliest_rollups_table,
    exception_totals_by_reason,
    int_column,
    invoice_metadata,
    pricebook_metadata,
    rating_metadata,
    table,
    text_column,
    usd_text,
    version_spans,
)
from rating_pipeline.records import (
    AMBIGUOUS_BASE,
    INVALID_EVENT,
    RATE_EVENT,
    RATE_OWN,
    UNPRICED,
    RatedRollup,
    RatingException,
)
from rating_pipeline.warehouse.engine import WindowRating
from rating_pipeline.warehouse.extract import WindowRead
from rating_pipeline.warehouse.invoices import LinesBuilt
from rating_pipeline.warehouse.outputs import ClassCost, TierCost
from rating_pipeline.warehouse.reconcile import Reconciled
from rating_pipeline.windows import HOUR, Window
from tests.factories import WINDOW_START, make_version, own

WINDOW = Window(WINDOW_START)


def rollup(auth_id: str, model_id: str, cost: str, base: str | None = None) -> RatedRollup:
    return RatedRollup(
        window_start=WINDOW.start,
        window_end=WINDOW.end,
        auth_id=auth_id,
        model_id=model_id,
        event_count=1,
        input_tokens=10,
        output_tokens=0,
        rate_source=RATE_OWN if base is None else RATE_EVENT,
        derivation_base=base,
        multiplier=None if base is None else Decimal("1.5"),
        input_rate_per_mtok=Decimal("1"),
        output_rate_per_mtok=Decimal("1"),
        cost_usd=Decimal(cost),
        pricebook_version="2026-06-01",
        pricebook_sha256="0" * 64,
    )


def test_money_text_is_exact_and_never_exponent_notation() -> None:
    assert usd_text(Decimal("0.000000000001")) == "0.000000000001"
    assert usd_text(Decimal("1E+3")) == "1000"
    assert usd_text(Decimal("12.632840120000")) == "12.632840120000"


@pytest.mark.parametrize(
    ("amount", "plotted"),
    [
        ("0.0000005", 0),  # a tie rounds to the even neighbour
        ("0.0000015", 2),
        ("0.0000025", 2),
        ("0.000000500000000001", 1),  # past the tie: up
        ("0.020355000000", 20_355),
        ("202.048848780000", 202_048_849),
        ("0", 0),
        ("123456789012345678.123456499999", 123_456_789_012_345_678_123_456),
    ],
)
def test_cost_micro_usd_rounds_half_even_to_a_whole_number(amount: str, plotted: int) -> None:
    assert micro_usd(Decimal(amount)) == plotted


def test_cost_micro_usd_takes_only_decimals() -> None:
    with pytest.raises(TypeError):
        micro_usd(0.5)  # type: ignore[arg-type]


def test_a_table_keys_each_cell_by_its_column_and_keeps_ids_as_they_are() -> None:
    value = table(
        (text_column("auth_id"), text_column("model_id"), int_column("events")),
        [("org|1", "line\nbreak", 3), ("", None, 0)],
    )

    assert isinstance(value, dg.TableMetadataValue)
    assert [column.name for column in value.schema.columns] == ["auth_id", "model_id", "events"]
    assert [column.type for column in value.schema.columns] == ["string", "string", "int"]
    assert [record.data for record in value.records] == [
        {"auth_id": "org|1", "model_id": "line\nbreak", "events": 3},
        {"auth_id": "", "model_id": None, "events": 0},
    ]


def test_a_row_with_another_number_of_cells_is_an_error() -> None:
    with pytest.raises(ValueError):
        table((text_column("auth_id"), text_column("model_id")), [("org-1",)])


def test_costliest_rollups_table_names_both_tiers_in_the_order_given() -> None:
    """Two rollups of one auth and model in two tiers are two rows the table tells apart."""
    batch = replace(rollup("org-a", "ft:x", "0.5", base="base-large"), service_tier="batch")
    value = costliest_rollups_table(
        [batch, rollup("org-a", "ft:x", "0.5", base="base-large"), rollup("org-b", "x", "0.5")]
    )

    assert [tuple(record.data.values()) for record in value.records] == [
        ("org-a", "ft:x", "batch", "standard", 1, 10, 0, "event (base-large)", "0.5"),
        ("org-a", "ft:x", "standard", "standard", 1, 10, 0, "event (base-large)", "0.5"),
        ("org-b", "x", "standard", "standard", 1, 10, 0, "own", "0.5"),
    ]


def test_money_in_a_table_is_exact_text_in_a_string_column() -> None:
    value = costliest_rollups_table([rollup("org-a", "base-small", "0.000000000001")])

    [cost] = [column for column in value.schema.columns if column.name == "cost_usd"]
    assert cost.type == "string" and cost.type == COSTLIEST_ROLLUP_COLUMNS[-1].type
    assert value.records[0].data["cost_usd"] == "0.000000000001"


def test_cost_by_token_class_is_a_table_of_tokens_and_exact_money_text() -> None:
    value = cost_by_token_class_table(
        [
            ClassCost("input", 2_000, Decimal("0.005000000000")),
            ClassCost("cache_read", 48_000, Decimal("0.000000000001")),
        ]
    )

    assert [(c.name, c.type) for c in value.schema.columns] == [
        ("token_class", "string"),
        ("tokens", "int"),
        ("cost_usd", "string"),
    ]
    assert [record.data for record in value.records] == [
        {"token_class": "input", "tokens": 2_000, "cost_usd": "0.005000000000"},
        {"token_class": "cache_read", "tokens": 48_000, "cost_usd": "0.000000000001"},
    ]


def test_cost_by_tier_is_a_table_keyed_by_service_and_context_tier() -> None:
    value = cost_by_tier_table(
        [
            TierCost("standard", "long", 1, 1, 201_001, Decimal("0.790005000000")),
            TierCost("batch", "standard", 2, 5, 120_000, Decimal("1E-12")),
        ]
    )

    [cost] = [column for column in value.schema.columns if column.name == "cost_usd"]
    assert cost.type == "string"
    assert [tuple(record.data.values()) for record in value.records] == [
        ("standard", "long", 1, 1, 201_001, "0.790005000000"),
        ("batch", "standard", 2, 5, 120_000, "0.000000000001"),
    ]


def test_a_failed_window_names_the_committed_windows_before_it() -> None:
    windows = [Window(WINDOW_START + n * HOUR) for n in range(4)]

    message = failed_window(windows, 2, TimeoutError("statement timeout"))

    assert message.startswith(
        "rating window 2026-06-15-12:00 failed: TimeoutError: statement timeout. It was rolled back"
    )
    assert "before it (2026-06-15-10:00...2026-06-15-11:00 (2 windows)) are rated and" in message
    assert "nothing of this run was rated" in failed_window(windows, 0, TimeoutError("x"))


def test_a_failed_window_that_may_have_committed_is_not_said_committed() -> None:
    """When the warehouse cannot be asked what became of the failed rating, the window is
    neither counted among those rated and committed nor said to be one of them."""
    windows = [Window(WINDOW_START + n * HOUR) for n in range(4)]
    unknown = "may have committed (the warehouse cannot be asked: rating_log says, run abc)"

    after_two = failed_window(windows, 2, OSError("server closed"), became=unknown)
    first = failed_window(windows, 0, OSError("server closed"), became=unknown)

    assert f"It {unknown}; the 2 window(s) before it (2026-06-15-10:00...2026-06-15-11:00 " in (
        after_two
    )
    assert "through it" not in after_two
    assert first == (
        f"rating window 2026-06-15-10:00 failed: OSError: server closed. It {unknown}; no "
        "window of this run before it was rated."
    )


def excepted(reason: str, events: int) -> RatingException:
    return RatingException(
        window_start=WINDOW.start,
        window_end=WINDOW.end,
        auth_id="org-a",
        model_id="m",
        reason=reason,
        detail="",
        event_count=events,
        input_tokens=0,
        output_tokens=0,
        pricebook_version="2026-06-01",
    )


def test_exceptions_by_reason_count_rollups_and_their_events_for_every_reason() -> None:
    totals = exception_totals_by_reason(
        [excepted(UNPRICED, 3), excepted(UNPRICED, 4), excepted(INVALID_EVENT, 2)]
    )

    assert totals == {
        UNPRICED: {"rollups": 2, "events": 7},
        AMBIGUOUS_BASE: {"rollups": 0, "events": 0},
        INVALID_EVENT: {"rollups": 1, "events": 2},
    }


def test_open_adjustments_are_the_windows_open_rows_not_this_runs_writes() -> None:
    nothing = Reconciled(0, 0, 0, 0, 0, {})
    rating = WindowRating(
        window=WINDOW,
        run_id="run-2",
        rated_at=WINDOW.end,
        pricebook_version="2026-06-01",
        pricebook_sha256="0" * 64,
        read=WindowRead("digest", 0, {}, None, ()),
        usage=nothing,
        exceptions=nothing,
        exception_rows=(),
        adjustments=Reconciled(1, 2, 0, 5, 3, {}, Decimal("-0.003500000000")),
    )

    meta = adjustment_metadata(rating)

    assert meta["window_closed"].value is True
    assert meta["open_adjustments"].value == 5  # 1 inserted, 2 updated, 2 unchanged
    assert meta["adjustments_unchanged"].value == 2
    assert meta["open_adjustment_cost_usd"].value == "-0.003500000000"


def test_every_reconcile_count_is_surfaced_under_its_own_key() -> None:
    """Contract 7: inserted, updated, deleted and unchanged of both tables on the
    materialization, each its own figure; the plotted cost is rounded half-even."""
    ingested = datetime(2026, 6, 15, 10, 59, tzinfo=UTC)
    rating = WindowRating(
        window=WINDOW,
        run_id="run-1",
        rated_at=WINDOW.end,
        pricebook_version="2026-06-01",
        pricebook_sha256="0" * 64,
        read=WindowRead("digest", 12, {}, ingested, ()),
        usage=Reconciled(1, 2, 3, 7, 10, {}, Decimal("0.000001500000")),  # 4 unchanged
        exceptions=Reconciled(5, 6, 7, 19, 2, {}),  # 8 unchanged
        exception_rows=(),
    )

    meta = {key: value.value for key, value in rating_metadata(rating).items()}

    rows = ("inserted", "updated", "deleted", "unchanged")
    assert [meta[f"rows_{count}"] for count in rows] == [1, 2, 3, 4]
    assert [meta[f"exceptions_{count}"] for count in rows] == [5, 6, 7, 8]
    assert (meta["events_read"], meta["events_rated"], meta["events_excepted"]) == (12, 10, 2)
    assert (meta["rollups"], meta["dagster/partition_row_count"]) == (7, 7)
    assert meta["cost_usd"] == "0.000001500000"
    assert meta["cost_micro_usd"] == 2  # 1.5 micro-USD, half-even: 2, not truncated to 1
    assert meta["max_ingested_at"] == "2026-06-15T10:59:00+00:00"


def test_an_invoice_months_row_count_is_its_lines_after_the_build_not_its_writes() -> None:
    built = LinesBuilt(
        WINDOW_START.replace(day=1, hour=0), 1, 2, 3, 10, Decimal("1.004"), Decimal("1.00")
    )

    meta = {key: value.value for key, value in invoice_metadata(built).items()}

    assert [meta[f"lines_{n}"] for n in ("inserted", "updated", "deleted", "unchanged")] == [
        1,
        2,
        3,
        7,
    ]
    assert (meta["lines"], meta["dagster/partition_row_count"]) == (10, 10)
    assert (meta["amount_exact"], meta["amount"], meta["residual"]) == ("1.004", "1.00", "-0.004")
    assert meta["amount_micro_usd"] == 1_000_000  # the invoice total, for the UI's chart


def test_a_pricebook_partition_shows_its_version_file_and_model_count() -> None:
    version = make_version({"m-1": own("1", "2"), "m-2": own("3", "4"), "m-3": own("5", "6")})

    meta = {key: value.value for key, value in pricebook_metadata(version).items()}

    assert meta["pricebook_version"] == "2026-06-01"
    assert meta["effective_from"] == "2026-06-01T00:00:00+00:00"
    assert meta["pricebook_sha256"] == version.sha256
    assert meta["models"] == 3


def test_version_spans_name_every_run_of_windows_and_its_version_the_last_one_too() -> None:
    june = make_version({"m": own("1", "2")})
    july = make_version({"m": own("2", "2")}, version="2026-07-01")
    windows = [Window(WINDOW_START + n * HOUR) for n in range(3)]

    lines = version_spans({windows[0]: june, windows[1]: june, windows[2]: july})

    assert len(lines) == 2
    assert lines[0].startswith(
        "2026-06-15-10:00...2026-06-15-11:00 (2 windows): pricebook 2026-06-01 ("
    )
    assert lines[1].startswith("2026-06-15-12:00: pricebook 2026-07-01 (")
