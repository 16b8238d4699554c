"""Closed periods and adjustments (contract section 10), on the real database.

A closed window's rated_usage rows never change again; rating it reconciles its open
adjustments so that, per rollup key, billed output + open adjustments = the latest output,
which the oracle computes independently from the events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from rating_pipeline.orchestration import queries
from rating_pipeline.orchestration.metadata import rating_metadata
from rating_pipeline.pricebook.model import TOKEN_CLASSES, Pricebooks, PricebookVersion
from rating_pipeline.warehouse import engine, periods
from rating_pipeline.warehouse.close_mark import begin_read_committed, lock_periods
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import WindowRating, rate_window
from rating_pipeline.warehouse.late_windows import ChangedAfterRating, Compared, record_late_windows
from rating_pipeline.warehouse.periods import (
    CURRENT_HOUR,
    CloseRefused,
    PeriodClose,
    close_period,
    period_status,
    preview_close,
)
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window
from tests import oracle
from tests.conftest import (
    LOCK_WAIT_GUARD_SECONDS,
    delete_events,
    insert_events,
    utc,
    wait_until_a_lock_is_awaited,
)
from tests.factories import WINDOW_START, BillingEvent, make_event, make_version, own, with_tokens

WINDOW = Window(WINDOW_START)
AFTER_WINDOW = WINDOW_START + HOUR
Key = tuple[str, str, str, str]
Amounts = tuple[int, ...]  # events, then every class's tokens

ROW_VERSIONS = "SELECT ctid, xmin, * FROM rated_usage ORDER BY auth_id, model_id"
OPEN_ADJUSTMENTS = """
SELECT auth_id, model_id, token_class, unit_rate_per_mtok, event_count, quantity_tokens,
    cost_usd
FROM rating_adjustment WHERE invoiced_by IS NULL
ORDER BY auth_id, model_id, token_class, unit_rate_per_mtok
"""
LATEST_LOG_IDS = "SELECT max(log_id) FROM rating_log GROUP BY window_start ORDER BY window_start"
ADJUSTMENT_VERSIONS = "SELECT ctid, xmin FROM rating_adjustment ORDER BY adjustment_id"
BILLED_PER_KEY = f"""
SELECT auth_id, model_id, service_tier, context_tier, sum(event_count),
    {", ".join(f"sum({c}_tokens)" for c in TOKEN_CLASSES)}, sum(cost_usd)
FROM (
    SELECT auth_id, model_id, service_tier, context_tier, event_count,
        {", ".join(f"{c}_tokens" for c in TOKEN_CLASSES)}, cost_usd
    FROM rated_usage WHERE window_start = %(start)s
    UNION ALL
    SELECT auth_id, model_id, service_tier, context_tier, event_count,
        {", ".join(f"CASE WHEN token_class = '{c}' THEN quantity_tokens ELSE 0 END" for c in TOKEN_CLASSES)},
        cost_usd
    FROM rating_adjustment WHERE window_start = %(start)s
) AS billed
GROUP BY 1, 2, 3, 4
HAVING sum(event_count) <> 0 OR sum(cost_usd) <> 0
"""  # noqa: E501


def priced(input_rate: str = "2.50") -> PricebookVersion:
    return make_version(
        {
            "base-large": own(input_rate, "10", cache_read="1.25"),
            "base-small": own("0.15", "0.60"),
        }
    )


def rate(url: str, version: PricebookVersion, run_id: str) -> WindowRating:
    with connect(url) as conn:
        return rate_window(conn, WINDOW, Pricebooks((version,)), run_id)


def close(url: str, through: object = AFTER_WINDOW, by: str = "finance") -> PeriodClose:
    with connect(url) as conn:
        return close_period(conn, through, by)  # type: ignore[arg-type]


def billed_and_adjusted(conn: psycopg.Connection) -> dict[Key, tuple[Amounts, Decimal]]:
    """Per rollup key: the frozen rows plus every adjustment, stamped or open."""
    return {
        tuple(row[:4]): (tuple(int(v) for v in row[4:-1]), row[-1])
        for row in conn.execute(BILLED_PER_KEY, {"start": WINDOW.start})
    }  # type: ignore[misc]


def latest_per_key(
    version: PricebookVersion, events: Iterable[BillingEvent]
) -> dict[Key, tuple[Amounts, Decimal]]:
    """The oracle's latest output for the events, per rollup key."""
    rating = oracle.rate_window(WINDOW, version, list(events))
    return {
        (r.auth_id, r.model_id, r.service_tier, r.context_tier): (
            (r.event_count, *(getattr(r, f"{c}_tokens") for c in TOKEN_CLASSES)),
            r.cost_usd,
        )
        for r in rating.rollups
    }


@pytest.fixture
def closed_window(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> list[BillingEvent]:
    """WINDOW's events, rated and then closed; returns the events."""
    events = [
        make_event("org-1", "base-large", input_tokens=1000, output_tokens=200),
        make_event("org-1", "base-large", input_tokens=3000, output_tokens=10),
        make_event("org-2", "base-small", input_tokens=500, output_tokens=50),
    ]
    add_events(events)
    rate(database_url, priced(), "run-1")
    close(database_url)
    return events


def test_closed_window_rows_never_change_and_adjustments_make_up_the_latest_output(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    frozen = reader.execute(ROW_VERSIONS).fetchall()
    late = [
        make_event("org-1", "base-large", input_tokens=700, output_tokens=7),
        replace(make_event("org-3", "base-large"), cache_read_tokens=4000),
    ]
    add_events(late)
    delete_events(database_url, [closed_window[2].event_id])

    rating = rate(database_url, priced(), "run-2")

    assert reader.execute(ROW_VERSIONS).fetchall() == frozen
    assert rating.usage.written == 0 and rating.adjustments is not None
    assert rating.adjustments.inserted == len(reader.execute(OPEN_ADJUSTMENTS).fetchall())
    latest = latest_per_key(priced(), [*closed_window[:2], *late])
    assert billed_and_adjusted(reader) == latest
    assert rating.total_cost_usd == sum((cost for _, cost in latest.values()), Decimal(0))


def test_a_closed_windows_unchanged_rows_are_its_frozen_rows_not_its_latest_rollups(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    """The latest output has a rollup more (a new principal), billed by an adjustment; the
    window's rated_usage still holds its 2 frozen rows, all of them unchanged."""
    add_events([make_event("org-new", "base-large")])

    rating = rate(database_url, priced(), "run-2")

    assert rating.rollup_count == 3  # the latest output's rollups
    assert (rating.rows_unchanged, rating.rated_usage_rows) == (2, 2)
    metadata = rating_metadata(rating)
    assert metadata["rows_unchanged"].value == 2
    assert metadata["dagster/partition_row_count"].value == 2
    logged = reader.execute(
        "SELECT rows_inserted, rows_updated, rows_deleted, rows_unchanged FROM rating_log "
        "WHERE run_id = 'run-2'"
    ).fetchone()
    assert logged == (0, 0, 0, 2)


def test_identical_rerate_of_closed_window_writes_no_adjustment(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    add_events([make_event("org-1", "base-large", input_tokens=1)])
    rate(database_url, priced(), "run-2")
    before = reader.execute(ADJUSTMENT_VERSIONS).fetchall()

    again = rate(database_url, priced(), "run-3")

    assert again.rows_written == 0
    assert again.adjustments is not None and again.adjustments.unchanged == len(before) > 0
    assert reader.execute(ADJUSTMENT_VERSIONS).fetchall() == before


def test_identical_rerate_of_closed_window_locks_no_adjustment_frozen_row_or_exception(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    """Contract 10: the rules of section 7 hold for open adjustments, so an identical re-run
    neither writes nor locks them (a lock would make NOWAIT fail from another session)."""
    add_events([make_event("org-1", "base-large", input_tokens=1), make_event("org-3", "nope")])
    rate(database_url, priced("3.00"), "run-2")

    with connect(database_url) as conn, conn.transaction():
        again = engine.rate_window_in_transaction(conn, WINDOW, priced("3.00"), "run-3")
        assert again.rows_written == 0 and again.adjustments is not None
        for table in ("rating_adjustment", "rated_usage", "rating_exception"):
            locked = reader.execute(f"SELECT 1 FROM {table} FOR UPDATE NOWAIT").fetchall()
            assert locked, table


def test_rate_correction_reverses_billed_quantity_at_billed_rate_and_charges_latest(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    rate(database_url, priced("3.00"), "run-2")

    assert reader.execute(OPEN_ADJUSTMENTS).fetchall() == [
        ("org-1", "base-large", "input", Decimal("2.500000"), 0, -4000, Decimal("-0.01")),
        ("org-1", "base-large", "input", Decimal("3.000000"), 0, 4000, Decimal("0.012")),
    ]
    assert billed_and_adjusted(reader) == latest_per_key(priced("3.00"), closed_window)


def test_open_adjustments_carry_the_pricebook_version_of_the_latest_rating(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    """Same quantities and costs under another version: the open rows are updated to name
    it (contract 10 and 7: every row carries the version and sha256 that rated it)."""
    rate(database_url, priced("3.00"), "run-2")
    reissued = replace(priced("3.00"), version="2026-06-02", sha256="f" * 64)

    again = rate(database_url, reissued, "run-3")

    assert again.adjustments is not None and again.adjustments.updated == 2
    assert reader.execute(
        "SELECT DISTINCT pricebook_version, pricebook_sha256, run_id FROM rating_adjustment"
    ).fetchall() == [("2026-06-02", "f" * 64, "run-3")]
    assert billed_and_adjusted(reader) == latest_per_key(reissued, closed_window)


def test_a_late_event_without_tokens_in_a_closed_window_adjusts_its_event_count(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    """Contract 10: billed output + open adjustments = latest output in event count too. A
    change of the count alone was in no test (a mutation audit: the statement's comparison
    without event_count, or adjustments kept only where tokens moved, went unseen)."""
    late = make_event("org-1", "base-large", input_tokens=0, output_tokens=0)
    add_events([late])

    rate(database_url, priced(), "run-2")

    assert billed_and_adjusted(reader) == latest_per_key(priced(), [*closed_window, late])


def test_a_late_event_in_every_class_of_a_closed_window_is_adjusted_class_by_class(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Each class at its own rate and quantity: the rating's check of billed + adjusted
    against the latest output holds class by class, and the rating commits."""
    rates = {c: str(k + 1) for k, c in enumerate(TOKEN_CLASSES)}
    version = make_version({"m": own(rates["input"], rates["output"], by_class={
        c: r for c, r in rates.items() if c not in ("input", "output")
    })})  # fmt: skip

    def every_class(minutes: int) -> BillingEvent:
        tokens = {f"{c}_tokens": minutes * (k + 1) for k, c in enumerate(TOKEN_CLASSES)}
        return with_tokens(make_event("org-1", "m", minutes=minutes), **tokens)

    add_events([every_class(5)])
    rate(database_url, version, "run-1")
    close(database_url)
    late = every_class(7)
    add_events([late])

    rate(database_url, version, "run-2")

    adjusted = reader.execute(
        "SELECT token_class, quantity_tokens FROM rating_adjustment ORDER BY token_class"
    ).fetchall()
    assert adjusted == sorted((c, 7 * (k + 1)) for k, c in enumerate(TOKEN_CLASSES))
    assert billed_and_adjusted(reader) == latest_per_key(version, [every_class(5), late])


def test_a_close_records_when_it_was_made(database_url: str, reader: psycopg.Connection) -> None:
    [(before,)] = reader.execute("SELECT clock_timestamp()").fetchall()
    closed = close(database_url)
    [(after,)] = reader.execute("SELECT clock_timestamp()").fetchall()
    assert before <= closed.closed_at <= after
    assert reader.execute("SELECT closed_at FROM rating_period_close").fetchall() == [
        (closed.closed_at,)
    ]


def test_rate_change_on_a_class_without_tokens_is_a_zero_difference_with_no_row(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Events are a rollup's, not a rate's: a new input rate over no input tokens moves no
    quantity and no cost, so nothing is adjusted (contract 10: a zero difference has no
    row), and the events stay where they were billed."""
    add_events([replace(make_event("org-1", "base-large", input_tokens=0), cache_read_tokens=9)])
    rate(database_url, priced(), "run-1")
    close(database_url)

    rating = rate(database_url, priced("2.75"), "run-2")

    assert reader.execute(OPEN_ADJUSTMENTS).fetchall() == []
    assert rating.rows_written == 0


def test_rerate_back_to_billed_output_deletes_open_adjustments_into_archive(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    rate(database_url, priced("3.00"), "run-2")
    back = rate(database_url, priced(), "run-3")

    assert back.adjustments is not None and back.adjustments.deleted == 2
    assert reader.execute(OPEN_ADJUSTMENTS).fetchall() == []
    archived = reader.execute(
        "SELECT change, superseded_by_run_id, count(*) FROM rating_adjustment_archive GROUP BY 1, 2"
    ).fetchall()
    assert archived == [("deleted", "run-3", 2)]


def test_close_stamps_open_adjustments_and_later_corrections_add_to_them(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    rate(database_url, priced("3.00"), "run-2")
    second = close(database_url, AFTER_WINDOW + HOUR)
    assert second.adjustments_stamped == 2
    stamped = reader.execute(
        "SELECT adjustment_id, xmin FROM rating_adjustment ORDER BY 1"
    ).fetchall()
    late = make_event("org-2", "base-small", input_tokens=90, output_tokens=9)
    add_events([late])

    rate(database_url, priced("2.75"), "run-3")

    assert (
        reader.execute(
            "SELECT adjustment_id, xmin FROM rating_adjustment WHERE invoiced_by IS NOT NULL "
            "ORDER BY 1"
        ).fetchall()
        == stamped
    )
    assert billed_and_adjusted(reader) == latest_per_key(priced("2.75"), [*closed_window, late])
    # A later close stamps only what is open: what an earlier close stamped keeps its close.
    open_now = reader.execute(
        "SELECT count(*) FROM rating_adjustment WHERE invoiced_by IS NULL"
    ).fetchone()
    third = close(database_url, AFTER_WINDOW + 2 * HOUR)
    assert open_now is not None and third.adjustments_stamped == open_now[0] > 0
    first_ids = [adjustment_id for adjustment_id, _ in stamped]
    kept = reader.execute(
        "SELECT DISTINCT invoiced_by FROM rating_adjustment WHERE adjustment_id = ANY(%s)",
        (first_ids,),
    ).fetchall()
    assert kept == [(second.close_id,)]


def test_a_late_event_at_a_new_rate_rides_on_the_latest_rates_input_row(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    add_events([make_event("org-1", "base-large", input_tokens=1000, output_tokens=0)])
    rate(database_url, priced(), "run-1")
    close(database_url)
    add_events([make_event("org-1", "base-large", input_tokens=500, output_tokens=0)])

    rate(database_url, priced("3.00"), "run-2")

    assert reader.execute(OPEN_ADJUSTMENTS).fetchall() == [
        ("org-1", "base-large", "input", Decimal("2.500000"), 0, -1000, Decimal("-0.0025")),
        ("org-1", "base-large", "input", Decimal("3.000000"), 1, 1500, Decimal("0.0045")),
    ]


def test_a_correction_a_later_close_stamped_leaves_nothing_open_when_rated_again(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    add_events([make_event("org-1", "base-large", input_tokens=70, output_tokens=7)])
    rate(database_url, priced(), "run-2")
    close(database_url, AFTER_WINDOW + HOUR)

    again = rate(database_url, priced(), "run-3")

    assert again.rows_written == 0
    assert reader.execute(OPEN_ADJUSTMENTS).fetchall() == []


def tamper_after_adjustments(monkeypatch: pytest.MonkeyPatch, statement: str) -> None:
    """Run ``statement`` right after each reconcile of the open adjustments, in the
    rating's transaction: a defect in that reconcile, for the check after it to catch."""
    reconcile = engine.reconcile

    def tampered(conn: psycopg.Connection, name: str, params: object) -> object:
        done = reconcile(conn, name, params)  # type: ignore[arg-type]
        if name == "reconcile_rating_adjustment":
            conn.execute(statement)  # type: ignore[arg-type]
        return done

    monkeypatch.setattr(engine, "reconcile", tampered)


def test_a_closed_rating_whose_adjustments_miss_the_cost_is_rolled_back(
    database_url: str,
    reader: psycopg.Connection,
    closed_window: list[BillingEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Conservation in a closed window holds cost too: adjustments right in events and
    tokens but charged at another rate (each row consistent with its own rate) fail the
    rating, and nothing is written."""
    tamper_after_adjustments(
        monkeypatch,
        "UPDATE rating_adjustment SET unit_rate_per_mtok = unit_rate_per_mtok + 1, "
        "cost_usd = quantity_tokens * (unit_rate_per_mtok + 1) * 0.000001 "
        "WHERE invoiced_by IS NULL AND quantity_tokens > 0",
    )
    with pytest.raises(engine.ConservationError, match="billed output plus adjustments"):
        rate(database_url, priced("3.00"), "run-2")
    assert reader.execute("SELECT count(*) FROM rating_adjustment").fetchone() == (0,)


def test_a_closed_rating_whose_adjustments_balance_only_in_total_is_rolled_back(
    database_url: str,
    reader: psycopg.Connection,
    closed_window: list[BillingEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Contract 10 holds per rollup key: an adjustment booked to another key leaves the
    window's totals right and two keys wrong, and fails the rating; nothing is written."""
    tamper_after_adjustments(
        monkeypatch,
        "UPDATE rating_adjustment SET auth_id = 'org-2', model_id = 'base-small' "
        "WHERE invoiced_by IS NULL AND quantity_tokens > 0",
    )
    with pytest.raises(engine.ConservationError, match="billed output plus adjustments"):
        rate(database_url, priced("3.00"), "run-2")
    assert reader.execute("SELECT count(*) FROM rating_adjustment").fetchone() == (0,)


@pytest.mark.parametrize("token_class", [c for c in TOKEN_CLASSES if c != "input"])
def test_a_correction_of_any_single_class_rate_in_a_closed_window_is_adjusted(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    token_class: str,
) -> None:
    """Only that class's rate changes: its billed quantity is reversed at the billed rate
    and charged at the latest. Found by mutation testing: a reconcile that compared every
    rate but one would have refused this correction for ever (ConservationError)."""
    events = [with_tokens(make_event("org-1", "base-large"), **{f"{token_class}_tokens": 1000})]
    add_events(events)

    def version(rate: str) -> PricebookVersion:
        rates = {c: "1" for c in TOKEN_CLASSES if c not in ("input", "output")}
        return make_version(
            {"base-large": own("2.50", "10", by_class={**rates, token_class: rate})}
        )

    rate(database_url, version("3"), "run-1")
    close(database_url)
    corrected = rate(database_url, version("4"), "run-2")

    assert corrected.adjustments is not None and corrected.adjustments.inserted == 2
    assert billed_and_adjusted(reader) == latest_per_key(version("4"), events)


def test_a_rollup_back_at_its_billed_output_reverses_what_a_close_stamped(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    """Its output equals its frozen row again, yet it is not settled: the stamped
    adjustments billed a correction that no longer holds, so open ones reverse them."""
    rate(database_url, priced("3.00"), "run-2")
    close(database_url, AFTER_WINDOW + HOUR)

    back = rate(database_url, priced(), "run-3")

    assert back.adjustments is not None and back.adjustments.inserted == 2
    assert reader.execute(OPEN_ADJUSTMENTS).fetchall() == [
        ("org-1", "base-large", "input", Decimal("2.500000"), 0, 4000, Decimal("0.01")),
        ("org-1", "base-large", "input", Decimal("3.000000"), 0, -4000, Decimal("-0.012")),
    ]
    assert billed_and_adjusted(reader) == latest_per_key(priced(), closed_window)


def test_exceptions_keep_converging_in_a_closed_window_and_conservation_holds(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    add_events([make_event("org-9", "no-such-model"), make_event("", "base-large")])

    rating = rate(database_url, priced(), "run-2")

    reasons = reader.execute(
        "SELECT reason, event_count FROM rating_exception ORDER BY reason"
    ).fetchall()
    assert reasons == [("invalid_event", 1), ("unpriced", 1)]
    billed = sum(amounts[0] for amounts, _ in billed_and_adjusted(reader).values())
    assert rating.events_read == 5 == billed + rating.events_excepted


def test_a_closed_rollup_that_becomes_unpriced_is_reversed_whole(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    without_small = make_version({"base-large": own("2.50", "10", cache_read="1.25")})

    rate(database_url, without_small, "run-2")

    reversal = [row for row in reader.execute(OPEN_ADJUSTMENTS) if row[0] == "org-2"]
    assert reversal == [
        ("org-2", "base-small", "input", Decimal("0.150000"), -1, -500, Decimal("-0.000075")),
        ("org-2", "base-small", "output", Decimal("0.600000"), 0, -50, Decimal("-0.00003")),
    ]
    assert ("org-2", "base-small", "standard", "standard") not in billed_and_adjusted(reader)


def test_a_close_names_the_windows_the_sensors_found_changed_that_no_rating_read_since(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """A window the sensors recorded changed after its latest rating, and not rated since,
    is closed with its old rows: the close says so, so that its correction is not a
    surprise on the next invoice. One rated again since is not named."""
    later = Window(AFTER_WINDOW)
    add_events(
        [
            make_event("org-1", "base-large"),
            make_event("org-1", "base-large", occurred_at=later.start),
        ]
    )
    pricebooks = Pricebooks((priced(),))
    with connect(database_url) as conn:
        for window in (WINDOW, later):
            rate_window(conn, window, pricebooks, "run-1")
        log_ids = [log_id for (log_id,) in conn.execute(LATEST_LOG_IDS)]
        conn.execute(  # what the sensors record of a window they find changed
            load_sql("record_late_windows"),
            {
                "window_starts": [WINDOW.start, later.start],
                "events_now": [2, 2],
                "events_read": [1, 1],
                "log_ids": log_ids,
                "found_at": utc(2026, 6, 15, 12, 5),
            },
        )
        conn.commit()
        rate_window(conn, later, pricebooks, "run-2")

    closed = close(database_url, through=later.end)

    assert closed.changed_not_rated == (WINDOW.start,)
    assert closed.lines()[1] == (
        "  warning: 1 window(s) closed here changed after their latest rating (found by the "
        "sensors or by the close's count of their events), and no rating read them since: "
        "2026-06-15-10:00; rating them now bills any difference as adjustments on the next "
        "invoice"
    )


def test_a_close_and_its_dry_run_count_the_events_of_its_hours_that_bill_nothing(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """Month-end: usage excepted in the hours a close freezes bills on no invoice unless a
    re-rate prices it (as adjustments), so the close and its dry run say how much there is,
    per reason, before and as it freezes them."""
    add_events(
        [
            make_event("org-1", "base-large"),
            make_event("org-1", "mystery-model"),
            make_event("org-2", "mystery-model"),
            make_event("org-3", "base-small", input_tokens=-1),
        ]
    )
    rate(database_url, priced(), "run-1")
    counted = (
        "3 events that bill nothing (rating_exception: 1 invalid_event in 1 rollup, "
        "2 unpriced in 2 rollups)"
    )

    with connect(database_url) as conn:
        preview = preview_close(conn, AFTER_WINDOW, "finance")
    closed = close(database_url)

    assert (
        f"  note: the hours it would close hold {counted}; priced or corrected and rated "
        "again before the close, they bill on their own month's invoice; after it, as "
        "adjustments on the next"
    ) in preview.lines()
    assert (
        f"  note: the hours closed here hold {counted}; priced or corrected and rated again, "
        "they bill as adjustments on the next invoice"
    ) in closed.lines()


def test_a_close_notes_only_the_events_that_bill_nothing_in_the_hours_it_closes(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """An earlier close noted its hours' unpriced usage already: the next close's note
    counts its own hours, not every closed hour since the first."""
    later = Window(AFTER_WINDOW + HOUR)
    add_events([make_event("org-1", "mystery-model"),
                make_event("org-1", "base-large", occurred_at=later.start)])  # fmt: skip
    rate(database_url, priced(), "run-1")
    assert close(database_url).unbilled != ()
    with connect(database_url) as conn:
        rate_window(conn, later, Pricebooks((priced(),)), "run-2")

    second = close(database_url, through=later.end)

    assert second.unbilled == ()
    assert not any("bill nothing" in line for line in second.lines())


def test_open_adjustments_are_listed_in_window_order_whatever_the_plan(
    database_url: str, reader: psycopg.Connection
) -> None:
    """``period status`` lists windows by time; without its ORDER BY, the order is the
    plan's (here, with index scans and sorts off, the table's)."""
    hours = [Window(WINDOW_START + HOUR * n) for n in range(6)]
    insert_events(database_url, [make_event("org-1", occurred_at=w.start) for w in hours])
    with connect(database_url) as conn:
        for window in hours:
            rate_window(conn, window, Pricebooks((priced(),)), "run-1")
    close(database_url, through=hours[-1].end)
    insert_events(database_url, [make_event("org-2", occurred_at=w.start) for w in hours])
    with connect(database_url) as conn:
        for window in reversed(hours):  # written last to first
            rate_window(conn, window, Pricebooks((priced(),)), "run-2")

    for setting in ("enable_indexscan", "enable_bitmapscan", "enable_sort"):
        reader.execute(f"SET {setting} = off")
    listed = [found.window_start for found in periods.open_adjustments(reader)]

    assert listed == [w.start for w in hours]


def test_a_rollup_billed_by_adjustments_alone_reverses_its_events_at_its_lowest_input_rate(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Its events ride on one input row (docs/periods.md): with no output and no frozen
    row left, that of the lowest rate its stamped adjustments billed, so that which row
    carries them does not depend on the plan."""
    add_events([make_event("org-1", input_tokens=1000, output_tokens=100)])
    rate(database_url, priced(), "run-1")
    close(database_url)
    late = make_event("org-2", input_tokens=400, output_tokens=40)
    add_events([late])
    rate(database_url, priced(), "run-2")  # org-2 billed at 2.50, by an adjustment
    close(database_url, through=AFTER_WINDOW + HOUR)
    rate(database_url, priced("3.00"), "run-3")  # and re-priced at 3.00
    close(database_url, through=AFTER_WINDOW + 2 * HOUR)
    delete_events(database_url, [late.event_id])

    rate(database_url, priced("3.00"), "run-4")

    open_input_rows = reader.execute(
        "SELECT unit_rate_per_mtok, event_count, quantity_tokens FROM rating_adjustment "
        "WHERE invoiced_by IS NULL AND auth_id = 'org-2' AND token_class = 'input' ORDER BY 1"
    ).fetchall()
    assert open_input_rows == [(Decimal("2.50"), -1, 0), (Decimal("3.00"), 0, -400)]


def test_a_window_found_again_against_the_same_rating_keeps_its_first_found_at(
    reader: psycopg.Connection,
) -> None:
    """late_window's found_at says since when a window waits for its rating: a later tick
    that finds it again (more events, same rating) must not move it."""
    first, again = utc(2026, 6, 16, 9), utc(2026, 6, 16, 12)
    with reader.transaction():
        record_late_windows(reader, [ChangedAfterRating(WINDOW, 3, 2, 7)], first)
        record_late_windows(reader, [ChangedAfterRating(WINDOW, 4, 2, 7)], again)

    found = reader.execute("SELECT events_now, found_at FROM late_window").fetchall()

    assert found == [(4, first)]


def test_a_close_counts_its_windows_events_and_names_those_changed_that_no_sensor_saw(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """With no sensor running (a cron of ``rate``), a late event, a deleted one and one
    moved by UPDATE into another window change what a close would freeze: the close counts
    each window's events against its latest rating, names the changed ones, and records
    them in late_window, where all_windows_billed lists them until a rating reads them."""
    hours = [Window(WINDOW_START + HOUR * n) for n in range(4)]
    moved, deleted = make_event("org-1", "base-large"), make_event("org-2", "base-small")
    add_events(
        [
            moved,
            deleted,
            *(make_event("org-1", "base-large", occurred_at=w.start) for w in hours[1:]),
        ]
    )
    pricebooks = Pricebooks((priced(),))
    with connect(database_url) as conn:
        for window in hours:
            rate_window(conn, window, pricebooks, "run-1")
    add_events([make_event("org-3", "base-large", occurred_at=hours[1].start)])  # late
    reader.execute(
        "UPDATE billing_event SET occurred_at = %s WHERE event_id = %s",
        (hours[2].start, moved.event_id),
    )
    delete_events(database_url, [deleted.event_id])
    with connect(database_url) as conn:  # rated again since: not named
        rate_window(conn, hours[2], pricebooks, "run-2")

    closed = close(database_url, through=hours[-1].end)

    assert closed.changed_not_rated == (hours[0].start, hours[1].start)
    recorded = reader.execute(
        "SELECT window_start, events_now, events_read FROM late_window ORDER BY 1"
    ).fetchall()
    assert recorded == [(hours[0].start, 0, 2), (hours[1].start, 2, 1)]


def test_a_rating_that_commits_between_the_close_count_and_its_lock_hides_no_change(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """The close counts before taking its lock. A rating in flight that read the events
    before one was deleted, and commits after the count, is the window's latest rating when
    the close freezes it: the close counts that window again under its lock, and names it,
    though another window's rating took a later log_id and committed before the count."""
    later = Window(AFTER_WINDOW)
    kept, deleted = make_event("org-1"), make_event("org-2")
    add_events([kept, deleted, make_event("org-3", occurred_at=later.start)])
    rate(database_url, priced(), "run-1")
    closed: list[PeriodClose] = []
    with connect(database_url) as rating, rating.transaction():
        engine.rate_window_in_transaction(rating, WINDOW, priced(), "run-2")  # reads both
        with connect(database_url) as conn:
            rate_window(conn, later, Pricebooks((priced(),)), "run-3")
        delete_events(database_url, [deleted.event_id])
        closer = threading.Thread(
            target=lambda: closed.append(close(database_url, later.end)), daemon=True
        )
        closer.start()  # counts 1 event against run-1's 2, then waits for run-2's lock
        wait_until_a_lock_is_awaited(reader)
    closer.join(LOCK_WAIT_GUARD_SECONDS)
    assert not closer.is_alive(), "the close never finished"

    assert closed[0].changed_not_rated == (WINDOW.start,)
    run_2 = reader.execute("SELECT log_id FROM rating_log WHERE run_id = 'run-2'").fetchone()
    assert reader.execute("SELECT events_now, events_read, log_id FROM late_window").fetchall() == [
        (1, 2, run_2[0] if run_2 else None)
    ]


def test_a_close_records_the_windows_it_found_changed_in_one_statement_in_window_order(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sensors record theirs in window order, in one statement: a close recording what
    its count found, then what its recount found, took late_window's row locks in another
    order and could deadlock with a tick. Found by an audit of the locks."""
    later = Window(AFTER_WINDOW)
    gone_later = make_event("org-4", occurred_at=later.start)
    kept, deleted = make_event("org-1"), make_event("org-2")
    add_events([kept, deleted, make_event("org-3", occurred_at=later.start), gone_later])
    rate(database_url, priced(), "run-1")
    recorded: list[list[datetime]] = []
    record = periods.record_late_windows

    def spied(
        conn: psycopg.Connection, changed: Sequence[ChangedAfterRating], at: datetime
    ) -> None:
        recorded.append([c.window.start for c in changed])
        record(conn, changed, at)

    monkeypatch.setattr(periods, "record_late_windows", spied)
    with connect(database_url) as rating, rating.transaction():
        engine.rate_window_in_transaction(rating, WINDOW, priced(), "run-2")  # reads both
        with connect(database_url) as conn:
            rate_window(conn, later, Pricebooks((priced(),)), "run-3")
        delete_events(database_url, [deleted.event_id, gone_later.event_id])
        closer = threading.Thread(target=lambda: close(database_url, later.end), daemon=True)
        closer.start()  # counts both windows changed, then waits for run-2's lock
        wait_until_a_lock_is_awaited(reader)
    closer.join(LOCK_WAIT_GUARD_SECONDS)
    assert not closer.is_alive(), "the close never finished"

    assert recorded == [[WINDOW.start, later.start]]


@pytest.mark.parametrize(
    ("through", "reason"),
    [
        (AFTER_WINDOW + timedelta(minutes=30), "is not on a whole hour"),
        # A second or a microsecond past an hour would close that hour's window too.
        (AFTER_WINDOW + HOUR + timedelta(seconds=1), "is not on a whole hour"),
        (AFTER_WINDOW + HOUR + timedelta(microseconds=1), "is not on a whole hour"),
        (AFTER_WINDOW.replace(tzinfo=None), "has no timezone"),
        # The same instant, written at +02:00: bounds are UTC (contract 2), as for `rate`.
        (AFTER_WINDOW.astimezone(timezone(timedelta(hours=2))), "is not UTC"),
        (AFTER_WINDOW - HOUR, "not after the current mark"),
        (AFTER_WINDOW, "not after the current mark"),
        (utc(2099, 1, 1), "lies in the future"),
    ],
)
def test_close_refused_writes_nothing(
    database_url: str,
    reader: psycopg.Connection,
    closed_window: list[BillingEvent],
    through: object,
    reason: str,
) -> None:
    with pytest.raises(CloseRefused, match=reason):
        close(database_url, through)
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (1,)


@pytest.mark.parametrize("by", ["", "   "])
def test_a_close_by_nobody_is_refused(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent], by: str
) -> None:
    """closed_by is the audit trail of an act that cannot be undone: a blank one (an unset
    variable in a script) is refused, never replaced by whoever runs the process."""
    with pytest.raises(CloseRefused, match="who closes"):
        close(database_url, AFTER_WINDOW + HOUR, by=by)
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (1,)


@pytest.mark.usefixtures("an_hour_that_will_not_turn")
@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_a_close_through_the_start_of_the_current_hour_is_accepted_and_no_later(
    database_url: str, zone: str
) -> None:
    """Contract 10: T is not after the start of the current hour; T equal to it is fine (a
    month-end close run just after midnight). The hour is an instant: a caller's own
    connection in another time zone neither lets the next hour through nor holds this one
    back."""
    with psycopg.connect(database_url, options=f"-c TimeZone={zone}") as conn:
        row = conn.execute(CURRENT_HOUR).fetchone()
        conn.rollback()
        assert row is not None
        through = row[0].astimezone(UTC)
        with pytest.raises(CloseRefused, match="lies in the future"):
            close_period(conn, through + HOUR, "finance")
        closed = close_period(conn, through, "finance")
    assert closed.closed_through == through


@pytest.mark.parametrize("rated_before", [True, False], ids=["after-a-close", "first-event"])
def test_an_event_at_the_close_instant_does_not_hold_the_close_back(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    rated_before: bool,
) -> None:
    """An event at exactly T belongs to hour T, which a close through T leaves open:
    whether an earlier hour holds events or the event at T is the only one there is."""
    if rated_before:
        add_events([make_event("org-1", "base-large")])
        rate(database_url, priced(), "run-1")
        close(database_url)
    through = AFTER_WINDOW + HOUR
    add_events([make_event("org-1", "base-large", occurred_at=through)])

    close(database_url, through)

    closes = 2 if rated_before else 1
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (closes,)


def test_the_window_starting_at_the_close_mark_is_open_and_rates_into_rated_usage(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    """A close through T closes the windows that start before T: hour T stays open."""
    at_mark = Window(AFTER_WINDOW)
    add_events([make_event("org-1", "base-large", occurred_at=AFTER_WINDOW)])
    with connect(database_url) as conn:
        rating = rate_window(conn, at_mark, Pricebooks((priced(),)), "run-2")

    assert (rating.closed, rating.usage.inserted) == (False, 1)
    stored = reader.execute(
        "SELECT count(*) FROM rated_usage WHERE window_start = %(start)s",
        {"start": at_mark.start},
    ).fetchone()
    assert stored == (1,)
    assert reader.execute("SELECT count(*) FROM rating_adjustment").fetchone() == (0,)


@pytest.mark.parametrize("hours", [1, 20, 21])
def test_close_past_unrated_hours_is_refused_naming_the_first_20_and_counting_the_rest(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
    hours: int,
) -> None:
    """Every unrated hour counts, consecutive ones too (docs/periods.md: the message
    names the first 20 and a count), and the close writes nothing."""
    first = AFTER_WINDOW + 2 * HOUR  # 13:00; 12:00 holds no event
    add_events(
        [make_event(occurred_at=first + k * HOUR + timedelta(minutes=1)) for k in range(hours)]
    )
    with pytest.raises(CloseRefused) as refused:
        close(database_url, first + (hours + 1) * HOUR)
    named = ", ".join(f"{first + k * HOUR:%Y-%m-%dT%H:%MZ}" for k in range(min(hours, 20)))
    more = f" and {hours - 20} more" if hours > 20 else ""
    assert f" {hours} hour(s) before " in str(refused.value)
    assert f"never rated: {named}{more}; rate them first" in str(refused.value)
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (1,)
    assert reader.execute("SELECT count(*) FROM invoice_line").fetchone() == (0,)


def test_an_unrated_event_in_the_last_hour_before_the_close_holds_it_back(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """The hour just before T is closed by it: an unrated event in its last minute, the
    only event there is, refuses the close."""
    add_events([make_event(occurred_at=AFTER_WINDOW - timedelta(minutes=1))])
    with pytest.raises(CloseRefused, match=r"1 hour\(s\) .* never rated: 2026-06-15T10:00Z;"):
        close(database_url, AFTER_WINDOW)
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (0,)


def test_an_unrated_event_at_the_close_instant_itself_is_the_next_periods(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """An event stamped exactly T (a second-precision client clock) is in the hour from T,
    which a close through T leaves open, after a rated hour as before none. Found by a
    mutation pass."""
    add_events([make_event("org-1", "base-large")])
    rate(database_url, priced(), "run-1")
    add_events([make_event("org-2", "base-large", occurred_at=AFTER_WINDOW)])

    assert close(database_url, AFTER_WINDOW).closed_through == AFTER_WINDOW
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (1,)


UNWINDOWED_INSTANTS = ("-infinity", "0044-03-15 12:00:00+00 BC", "infinity")


def test_close_passes_over_events_no_window_can_hold(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    """An occurred_at of -infinity, before year 1 or infinite names no hour to rate: the
    close neither refuses forever nor loops (all_windows_billed counts these events)."""
    for index, instant in enumerate(UNWINDOWED_INSTANTS):
        reader.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at) VALUES (%s, 'org-1', 'base-large', 1, 1, %s)",
            (f"unwindowed-{index}", instant),
        )
    reader.commit()
    with connect(database_url) as conn:
        conn.execute("SET statement_timeout = '20s'")
        conn.commit()
        close_period(conn, AFTER_WINDOW + HOUR, "finance")
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (2,)


def test_close_waits_for_a_rating_in_flight(
    database_url: str, closed_window: list[BillingEvent]
) -> None:
    with connect(database_url) as rating, rating.transaction():
        lock_periods(rating, exclusive=False)
        with connect(database_url) as closing:
            closing.execute("SET lock_timeout = '200ms'")
            closing.commit()
            with pytest.raises(Exception, match="lock timeout"):
                close_period(closing, AFTER_WINDOW + HOUR, "finance")


def test_a_close_that_must_wait_for_the_periods_lock_says_so_before_it_waits(
    database_url: str, reader: psycopg.Connection, closed_window: list[BillingEvent]
) -> None:
    """While a close waits, every rating that starts waits behind it (PostgreSQL grants
    lock requests in order): an export or a large build holding the lock shared stalled
    the hourly ratings with no word from the close. Found by an audit at scale."""
    said: list[int] = []

    def close_through(through: datetime) -> None:
        with connect(database_url) as closing:
            close_period(closing, through, "finance", None, said.append)

    another_database = make_conninfo(database_url, dbname="postgres")
    with (
        connect(another_database) as elsewhere,
        elsewhere.transaction(),
        connect(database_url) as export,
        export.transaction(),
    ):
        lock_periods(elsewhere, exclusive=False)  # another warehouse of the server: not counted
        lock_periods(export, exclusive=False)
        closer = threading.Thread(target=close_through, args=(AFTER_WINDOW + HOUR,))
        closer.start()
        wait_until_a_lock_is_awaited(reader)
        assert said == [1]  # said before it waited, naming the one holder
    closer.join(timeout=30)
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (2,)
    close_through(AFTER_WINDOW + 2 * HOUR)  # the lock free: it says nothing
    assert said == [1]


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_a_close_that_waited_for_a_rating_stamps_what_it_wrote_whatever_the_session_isolation(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
    isolation: str,
) -> None:
    """A rating of the closed window writes open adjustments while a close waits for it;
    the close must see them (contract 10: it stamps every open adjustment), even where the
    session's default isolation would take its snapshot before the wait."""
    add_events([make_event("org-1", "base-large", minutes=40)])
    level = isolation.replace(" ", "\\ ")
    closing_url = make_conninfo(database_url, options=f"-c default_transaction_isolation={level}")
    closed: list[object] = []
    with connect(database_url) as rating:
        with rating.transaction():
            engine.rate_window_in_transaction(rating, WINDOW, priced(), "late")
            closer = threading.Thread(
                target=lambda: closed.append(close(closing_url, AFTER_WINDOW + HOUR))
            )
            closer.start()
            wait_until_a_lock_is_awaited(reader)
        closer.join(timeout=30)

    assert len(closed) == 1
    open_left = reader.execute("SELECT count(*) FROM rating_adjustment WHERE invoiced_by IS NULL")
    assert open_left.fetchone() == (0,)
    assert reader.execute("SELECT count(*) FROM rating_adjustment").fetchone() != (0,)


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_a_rating_that_waited_for_a_close_treats_its_window_as_closed_whatever_the_isolation(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    isolation: str,
) -> None:
    """The mirror of the test above: a rating that starts while a close is in flight waits
    for it, then must see its mark (contract 10: a closed window's rows never change again),
    even where the session's default isolation would take its snapshot before the wait.
    Its log row and adjustments are stamped after the close (contract 6: rated_at is when
    the values changed; found by an audit of concurrency: stamped at the window's lock,
    they predated the close)."""
    add_events([make_event("org-1", "base-large", input_tokens=1000, output_tokens=10)])
    rate(database_url, priced(), "run-1")
    frozen = reader.execute(ROW_VERSIONS).fetchall()
    add_events([make_event("org-1", "base-large", minutes=40)])
    level = isolation.replace(" ", "\\ ")
    rating_url = make_conninfo(database_url, options=f"-c default_transaction_isolation={level}")
    rated: list[WindowRating] = []
    with connect(database_url) as closing:
        with closing.transaction():  # a close in flight, as close_period runs one
            begin_read_committed(closing)
            lock_periods(closing, exclusive=True)
            rater = threading.Thread(
                target=lambda: rated.append(rate(rating_url, priced(), "late"))
            )
            rater.start()
            wait_until_a_lock_is_awaited(reader)
            closing.execute(
                load_sql("insert_period_close"),
                {"closed_through": AFTER_WINDOW, "closed_by": "finance", "note": None},
            )
        rater.join(timeout=30)

    assert len(rated) == 1 and rated[0].closed
    assert reader.execute(ROW_VERSIONS).fetchall() == frozen
    assert reader.execute(
        "SELECT bool_and(log.rated_at > close.closed_at AND adjustment.rated_at > close.closed_at)"
        " FROM rating_log AS log, rating_period_close AS close, rating_adjustment AS adjustment"
        " WHERE log.run_id = 'late'"
    ).fetchone() == (True,)
    assert reader.execute("SELECT sum(event_count) FROM rating_adjustment").fetchone() == (1,)


def test_after_a_second_close_the_mark_and_status_are_the_latest_closes(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    """The mark is the latest close's T: a window only the second close closed is frozen,
    a close through it again is refused, and status reports the second close."""
    later = Window(AFTER_WINDOW)
    add_events([make_event("org-1", "base-large", occurred_at=AFTER_WINDOW + timedelta(minutes=5))])
    with connect(database_url) as conn:
        rate_window(conn, later, Pricebooks((priced(),)), "run-2")
    close(database_url, AFTER_WINDOW + HOUR)
    frozen = reader.execute(ROW_VERSIONS).fetchall()
    add_events(
        [make_event("org-1", "base-large", occurred_at=AFTER_WINDOW + timedelta(minutes=40))]
    )

    with connect(database_url) as conn:
        rating = rate_window(conn, later, Pricebooks((priced(),)), "run-3")
        lines = period_status(conn).lines()

    assert rating.closed and reader.execute(ROW_VERSIONS).fetchall() == frozen
    assert lines[0].startswith("closed through 2026-06-15T12:00:00+00:00 (close 2,")
    with pytest.raises(CloseRefused, match="not after the current mark 2026-06-15T12:00"):
        close(database_url, AFTER_WINDOW + HOUR)


def test_period_status_reports_mark_and_open_adjustments(
    database_url: str, closed_window: list[BillingEvent]
) -> None:
    rate(database_url, priced("3.00"), "run-2")
    with connect(database_url) as conn:
        lines = period_status(conn).lines()
    assert lines[0].startswith("closed through 2026-06-15T11:00:00+00:00 (close 1,")
    assert lines[1] == "next invoice: 2026-06"
    assert lines[2] == "open adjustments: 2 in 1 window(s), 0.002000000000 USD"
    assert lines[3] == "  2026-06-15T10:00Z: 2 adjustment(s), 0.002000000000 USD, billed on 2026-06"


def test_period_status_lists_no_adjustment_a_close_stamped(
    database_url: str, closed_window: list[BillingEvent]
) -> None:
    """Stamped adjustments are billed output: status lists only the open ones."""
    rate(database_url, priced("3.00"), "run-2")
    close(database_url, AFTER_WINDOW + HOUR)
    with connect(database_url) as conn:
        lines = period_status(conn).lines()
    assert lines[0].startswith("closed through 2026-06-15T12:00:00+00:00 (close 2,")
    assert lines[2:] == ["open adjustments: 0 in 0 window(s), 0 USD"]


def test_period_status_reads_mark_and_adjustments_in_one_snapshot(
    database_url: str,
    closed_window: list[BillingEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A close that commits while status reads must not show the old mark without the
    adjustments it had open: they were stamped, but the status says they bill next."""
    rate(database_url, priced("3.00"), "run-2")
    read_open = periods.open_adjustments

    def close_first(*args: object) -> object:
        close(database_url, AFTER_WINDOW + HOUR)
        return read_open(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(periods, "open_adjustments", close_first)
    with connect(database_url) as conn:
        lines = period_status(conn).lines()
    assert lines[0].startswith("closed through 2026-06-15T11:00:00+00:00 (close 1,")
    assert lines[2] == "open adjustments: 2 in 1 window(s), 0.002000000000 USD"


def test_a_failed_rating_of_a_closed_window_leaves_its_adjustments_as_they_were(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rate(database_url, priced("3.00"), "run-2")
    before = reader.execute("SELECT ctid, xmin, * FROM rating_adjustment ORDER BY 1").fetchall()
    add_events([make_event("org-1", "base-large", input_tokens=5)])

    def crash(*args: object) -> None:
        raise RuntimeError("crash after the adjustments were reconciled")

    monkeypatch.setattr("rating_pipeline.warehouse.engine.log_rating", crash)
    with pytest.raises(RuntimeError, match="crash after"):
        rate(database_url, priced("3.25"), "run-3")

    after = reader.execute("SELECT ctid, xmin, * FROM rating_adjustment ORDER BY 1").fetchall()
    assert after == before
    assert reader.execute("SELECT count(*) FROM rating_adjustment_archive").fetchone() == (0,)


def test_rate_command_on_a_closed_window_reports_its_open_adjustments(
    warehouse_env: str,
    closed_window: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rating_pipeline import cli

    with connect(warehouse_env) as conn:
        frozen = conn.execute(ROW_VERSIONS).fetchall()
    pricebooks = Path(__file__).resolve().parent.parent / "pricebooks"

    assert cli.main(["rate", "--from", "2026-06-15T10:00Z", "--to", "2026-06-15T11:00Z",
                     "--pricebooks", str(pricebooks)]) == 0  # fmt: skip

    line = capsys.readouterr().out.splitlines()[0]
    assert "closed (through 2026-06-15T11:00:00+00:00): rated_usage frozen" in line
    assert "open costing" in line
    with connect(warehouse_env) as conn:
        assert conn.execute(ROW_VERSIONS).fetchall() == frozen


def test_period_status_lists_the_open_adjustments_of_every_window_even_before_1970(
    database_url: str,
) -> None:
    """Contract 10: ``period status`` prints the open adjustments, of any window: a window
    before 1970 (an upstream clock at the epoch's edge, priced by a version from that hour)
    is one the no_open_adjustments check sees. Found by a review of the ledger."""
    hour = utc(1969, 12, 31, 19)
    version = make_version(
        {"base-small": own("0.15", "0.60")}, version="1969-12-31", effective_from=hour
    )
    late = make_event("org-1", "base-small", None, 1_000_000, 0, occurred_at=hour + HOUR / 2)
    insert_events(database_url, [late])
    with connect(database_url) as conn:
        rate_window(conn, Window(hour), Pricebooks((version,)), "run-1")
        periods.close_period(conn, utc(2026, 6, 1), "review")
    delete_events(database_url, [late.event_id])
    with connect(database_url) as conn:
        rate_window(conn, Window(hour), Pricebooks((version,)), "run-2")
        listed = [w.window_start for w in period_status(conn).open_adjustments]
    assert listed == [hour]


def test_a_close_names_only_the_changed_windows_it_closes_itself(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """A window an earlier close froze while changed and unrated is that close's news: a
    later close (or its dry run) must not announce it again as closed here."""
    first, second = WINDOW, Window(WINDOW_START + HOUR)
    add_events([make_event("org-1", "base-large", occurred_at=first.start)])
    with connect(database_url) as conn:
        rate_window(conn, first, Pricebooks((priced(),)), "run-1")
    add_events([make_event("org-2", "base-large", occurred_at=first.start)])  # late, unrated

    assert close(database_url, through=first.end).changed_not_rated == (first.start,)
    with connect(database_url) as conn:
        assert preview_close(conn, second.end, "finance").changed_not_rated == ()
    assert close(database_url, through=second.end).changed_not_rated == ()


def test_rating_log_records_a_closed_windows_adjustment_counts_and_open_cost(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    add_events([make_event("org-1", "base-large", input_tokens=10, output_tokens=1)])
    first = rate(database_url, priced(), "run-2")  # a late event: new adjustments
    add_events([make_event("org-1", "base-large", input_tokens=10, output_tokens=1)])
    second = rate(database_url, priced(), "run-3")  # another: the same rows grow

    assert first.adjustments is not None and second.adjustments is not None
    a, b = first.adjustments, second.adjustments
    assert (a.inserted, a.updated, b.inserted, b.updated) == (2, 0, 0, 2)
    logged = reader.execute(
        "SELECT run_id, adjustments_inserted, adjustments_updated, adjustments_deleted, "
        "adjustments_unchanged, open_adjustment_cost_usd FROM rating_log "
        "WHERE run_id IN ('run-2', 'run-3') ORDER BY log_id"
    ).fetchall()
    assert logged == [
        ("run-2", a.inserted, a.updated, a.deleted, a.unchanged, a.cost_usd),
        ("run-3", b.inserted, b.updated, b.deleted, b.unchanged, b.cost_usd),
    ]
    open_cost = reader.execute(
        "SELECT sum(cost_usd) FROM rating_adjustment WHERE invoiced_by IS NULL"
    ).fetchone()
    assert open_cost == (b.cost_usd,) and b.cost_usd != 0


def test_a_closed_windows_rollup_count_counts_a_principals_second_model(
    database_url: str,
    add_events: Callable[[Iterable[BillingEvent]], int],
    closed_window: list[BillingEvent],
) -> None:
    add_events([make_event("org-1", "base-small")])  # org-1 had base-large only

    rating = rate(database_url, priced(), "run-2")

    assert rating.rollup_count == 3
    assert rating_metadata(rating)["rollups"].value == 3
    assert (rating.rows_unchanged, rating.rated_usage_rows) == (2, 2)


def test_an_unrated_hour_just_after_a_span_is_not_the_spans(
    reader: psycopg.Connection, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """The current hour, say: the schedule rates it once it is over."""
    add_events([make_event("org-1", "base-large"),
                make_event("org-1", "base-large", occurred_at=WINDOW.end)])  # fmt: skip

    assert queries.unrated_hours(reader, queries.Span(WINDOW.start, WINDOW.end)) == [WINDOW]


def test_a_close_names_a_window_whose_deleted_event_was_replaced_by_a_late_one(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """With no sensor running, an event deleted and another ingested late into the same
    window keep its count: the close still tells them apart by max(ingested_at), names the
    window it freezes as changed and records it (mutant L3: count alone)."""
    window = Window(WINDOW_START)
    kept, deleted = make_event("org-1", "base-large"), make_event("org-2", "base-small")
    add_events([kept, deleted])
    pricebooks = Pricebooks((priced(),))
    with connect(database_url) as conn:
        rate_window(conn, window, pricebooks, "run-1")
    delete_events(database_url, [deleted.event_id])
    add_events([make_event("org-3", "base-large", occurred_at=window.start)])  # late

    closed = close(database_url, through=window.end)

    assert closed.changed_not_rated == (window.start,)
    assert reader.execute(
        "SELECT window_start, events_now, events_read FROM late_window"
    ).fetchall() == [(window.start, 2, 2)]


def test_a_close_records_in_late_window_only_changed_windows_it_closes_itself(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """A window an earlier close froze, that changed since its latest rating, is not the
    next close's to count or record: the close counts [mark, through) (docs/periods.md,
    docs/operations.md), so late_window gets no row for it."""
    hours = [Window(WINDOW_START + HOUR * n) for n in range(2)]
    add_events([make_event("org-1", "base-large", occurred_at=w.start) for w in hours])
    pricebooks = Pricebooks((priced(),))
    with connect(database_url) as conn:
        for window in hours:
            rate_window(conn, window, pricebooks, "run-1")
    close(database_url, through=hours[0].end)
    add_events([make_event("org-2", "base-large", occurred_at=hours[0].start)])  # late

    closed = close(database_url, through=hours[1].end)

    assert closed.changed_not_rated == ()
    recorded = reader.execute("SELECT window_start FROM late_window ORDER BY 1").fetchall()
    assert recorded == []


def test_an_unrated_event_at_the_very_start_of_an_hour_after_a_rated_one_holds_the_close_back(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """The hour after a rated one holds one unrated event, stamped exactly at its start: a
    close through that hour's end is refused naming it."""
    later = Window(WINDOW_START + HOUR)
    add_events([make_event("org-1", "base-large")])
    with connect(database_url) as conn:
        rate_window(conn, Window(WINDOW_START), Pricebooks((priced(),)), "run-1")
    add_events([make_event("org-2", "base-large", occurred_at=later.start)])  # never rated

    with pytest.raises(CloseRefused, match=r"never rated: 2026-06-15T11:00Z"):
        close(database_url, through=later.end)
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (0,)


def test_a_close_does_not_name_a_changed_window_starting_at_its_through(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """The window starting at T stays open under a close through T: a sensor's record of it
    is not the close's to name."""
    window, later = Window(WINDOW_START), Window(WINDOW_START + HOUR)
    add_events([make_event("org-1", "base-large", occurred_at=w.start) for w in (window, later)])
    with connect(database_url) as conn:
        for w in (window, later):
            rate_window(conn, w, Pricebooks((priced(),)), "run-1")
        log_ids = [log_id for (log_id,) in conn.execute(LATEST_LOG_IDS)]
        conn.execute(  # what the sensors record of the later window found changed
            load_sql("record_late_windows"),
            {"window_starts": [later.start], "events_now": [2], "events_read": [1],
             "log_ids": log_ids[1:], "found_at": later.end},
        )  # fmt: skip
        conn.commit()

    closed = close(database_url, through=later.start)

    assert closed.changed_not_rated == ()


def test_a_close_notes_no_unbilled_events_of_the_window_starting_at_its_through(
    database_url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """Unpriced usage of the window starting at T is the next period's: a close through T
    does not count it among the events of its hours that bill nothing."""
    window, later = Window(WINDOW_START), Window(WINDOW_START + HOUR)
    add_events([make_event("org-1", "base-large"),
                make_event("org-1", "mystery-model", occurred_at=later.start)])  # fmt: skip
    with connect(database_url) as conn:
        for w in (window, later):
            rate_window(conn, w, Pricebooks((priced(),)), "run-1")

    closed = close(database_url, through=later.start)

    assert closed.unbilled == ()


def test_under_its_lock_a_close_counts_again_only_the_windows_rated_since_its_count(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The count's comparison stands for every window whose latest rating it compared: the
    recount under the exclusive lock reads only windows rated since (docs/periods.md), so a
    late event landing between the count and the lock is left to the sensors, not counted
    again while every rating waits."""
    window = Window(WINDOW_START)
    add_events([make_event("org-1", "base-large")])
    with connect(database_url) as conn:
        rate_window(conn, window, Pricebooks((priced(),)), "run-1")
    counting = periods.count_changed_windows

    def count_then_a_late_event(conn: psycopg.Connection, through: datetime) -> Compared:
        counted = counting(conn, through)
        add_events([make_event("org-2", "base-large")])  # after the count, before the lock
        return counted

    monkeypatch.setattr(periods, "count_changed_windows", count_then_a_late_event)

    closed = close(database_url, through=window.end)

    recorded = reader.execute("SELECT window_start FROM late_window").fetchall()
    assert closed.changed_not_rated == ()
    assert recorded == []
