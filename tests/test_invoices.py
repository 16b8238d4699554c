"""Invoice lines (contract section 11), on the real database.

A month's lines are its windows' ``rated_usage`` and the adjustments billed on it, one line
per (account, kind, model, tiers, token class, rate) with a non-zero quantity; amount_exact
is exact and amount is it rounded half-even to cents. ``expected_lines`` computes the lines
again in Python from the stored rows, apart from reconcile_invoice_line.sql.
"""

from __future__ import annotations

import csv
import decimal
import errno
import hashlib
import itertools
import os
import re
import stat
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from rating_pipeline import cli
from rating_pipeline.pricebook.model import TOKEN_CLASSES, Pricebooks
from rating_pipeline.warehouse import invoices
from rating_pipeline.warehouse.close_mark import lock_periods
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.invoices import (
    INVOICE_NAMESPACE,
    LOCK_MONTH,
    Exported,
    ExportFailed,
    LinesBuilt,
    MonthTotal,
    build_invoice,
    converge_month_lines,
    export_invoice,
    lock_export,
    mismatches,
    month_totals,
)
from rating_pipeline.warehouse.periods import PeriodClose, close_period
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window
from tests.conftest import delete_events, utc, wait_until_a_lock_is_awaited
from tests.factories import BillingEvent, make_event, make_version, own

AddEvents = Callable[[Iterable[BillingEvent]], int]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=2"
JUNE, JULY, AUGUST = utc(2026, 6, 1), utc(2026, 7, 1), utc(2026, 8, 1)
CENT = Decimal("0.01")
# Exact Decimal arithmetic for the expected amounts: any rounding would be an error.
EXACT = decimal.Context(prec=100, traps=[decimal.Inexact, decimal.Rounded])
WIDE = decimal.Context(prec=100)
RUNS = itertools.count(1)

PRICES = make_version(
    {
        "base-large": own("2.50", "10", cache_read="1.25", batch=own("1.25", "5")),
        "base-small": own("0.15", "0.60"),
        "free": own("0", "0"),
    }
)
# A pricebook correction from 2026-06-20: base-large's input costs 3.00 from then on.
CORRECTED = make_version(
    {
        "base-large": own("3.00", "10", cache_read="1.25", batch=own("1.25", "5")),
        "base-small": own("0.15", "0.60"),
        "free": own("0", "0"),
    },
    version="2026-06-20",
    effective_from=utc(2026, 6, 20),
)
BOTH = Pricebooks((PRICES, CORRECTED))

LINES = """
SELECT account_id, kind, model_id, service_tier, context_tier, token_class,
    unit_rate_per_mtok, quantity_tokens, amount_exact, amount
FROM invoice_line WHERE month = %(month)s
"""
LINE_VERSIONS = "SELECT ctid::text, xmin::text, * FROM invoice_line ORDER BY month, ctid"
USAGE_PARTS = f"""
SELECT auth_id, model_id, service_tier, context_tier,
    {", ".join(f"{c}_tokens, {c}_rate_per_mtok" for c in TOKEN_CLASSES)}
FROM rated_usage WHERE window_start >= %(month)s AND window_start < %(next)s
"""
ADJUSTMENT_PARTS = """
SELECT auth_id, model_id, service_tier, context_tier, token_class, unit_rate_per_mtok,
    quantity_tokens
FROM rating_adjustment WHERE bill_month = %(month)s
"""
CLOSE_TOTALS = """
SELECT month, account_id, close_id, line_count, amount_exact, amount, lines_sha256
FROM rating_period_close_total ORDER BY month, account_id
"""
INVOICE_LINE_COLUMNS = """
SELECT column_name FROM information_schema.columns
WHERE table_name = 'invoice_line' ORDER BY ordinal_position
"""


def at(month: int, day: int, hour: int, minute: int = 5) -> datetime:
    return utc(2026, month, day, hour, minute)


def usage(
    auth_id: str,
    model_id: str,
    occurred_at: datetime,
    input_tokens: int,
    output_tokens: int = 0,
    **more: Any,
) -> BillingEvent:
    """One event; ``more`` sets other token classes or the service tier."""
    event = make_event(
        auth_id, model_id, None, input_tokens, output_tokens, occurred_at=occurred_at
    )
    return replace(event, **more)


def rate(url: str, events: Iterable[BillingEvent], pricebooks: Pricebooks = BOTH) -> None:
    """Rate every window the events fall in (run ids differ per call)."""
    with connect(url) as conn:
        for window in sorted({Window.containing(e.occurred_at) for e in events}):
            rate_window(conn, window, pricebooks, f"run-{next(RUNS)}")


def build(url: str, month: datetime) -> LinesBuilt:
    with connect(url) as conn:
        return build_invoice(conn, month, f"invoice-{next(RUNS)}")


def close(url: str, through: datetime) -> PeriodClose:
    with connect(url) as conn:
        return close_period(conn, through, "finance")


def totals(url: str, month: datetime) -> list[MonthTotal]:
    with connect(url) as conn:
        return month_totals(conn, month)


def lines(reader: psycopg.Connection, month: datetime) -> list[tuple[Any, ...]]:
    return sorted(reader.execute(LINES, {"month": month}).fetchall())


def line(
    account: str, kind: str, model: str, tiers: str, token_class: str, rate_text: str,
    quantity: int, amount_exact: str, amount: str,
) -> tuple[Any, ...]:  # fmt: skip
    """One line as a test writes it: ``tiers`` is "service/context"."""
    service, context = tiers.split("/")
    return (
        account, kind, model, service, context, token_class, Decimal(rate_text),
        Decimal(quantity), Decimal(amount_exact), Decimal(amount),
    )  # fmt: skip


def half_even_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN, context=WIDE)


def expected_lines(reader: psycopg.Connection, month: datetime) -> list[tuple[Any, ...]]:
    """The month's lines computed in Python from rated_usage, rating_adjustment and
    billing_account: the oracle of reconcile_invoice_line.sql."""
    accounts: dict[str, str] = dict(
        reader.execute("SELECT auth_id, account_id FROM billing_account").fetchall()
    )
    next_month = utc(month.year + month.month // 12, month.month % 12 + 1, 1)
    quantities: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
    key: Sequence[Any]  # a usage line's key, an adjustment's columns, a quantity's key
    for auth_id, model_id, service_tier, context_tier, *parts in reader.execute(
        USAGE_PARTS, {"month": month, "next": next_month}
    ):
        account = accounts.get(auth_id, auth_id)
        for token_class, tokens, unit_rate in zip(
            TOKEN_CLASSES, parts[0::2], parts[1::2], strict=True
        ):
            if tokens:
                key = (account, "usage", model_id, service_tier, context_tier, token_class)
                quantities[(*key, unit_rate)] += tokens
    for auth_id, *key, quantity in reader.execute(ADJUSTMENT_PARTS, {"month": month}):
        quantities[(accounts.get(auth_id, auth_id), "adjustment", *key)] += quantity
    expected = []
    for key, quantity in quantities.items():
        if quantity:
            exact = EXACT.divide(EXACT.multiply(quantity, key[-1]), Decimal(10**6))
            expected.append((*key, quantity, exact, half_even_cents(exact)))
    return sorted(expected)


def june_traffic() -> list[BillingEvent]:
    """Two principals, two tiers, three classes, and base-large's input at two rates (the
    correction of 2026-06-20); one event in July."""
    return [
        usage("org-1", "base-large", at(6, 15, 10), 1_000_000, 20_000, cache_read_tokens=400_000),
        usage("org-1", "base-large", at(6, 16, 9), 3_000_000),
        usage("org-1", "base-large", at(6, 15, 10, 10), 500_000, 50_000, service_tier="batch"),
        usage("org-2", "base-small", at(6, 15, 10, 20), 700_000),
        usage("org-1", "base-large", at(6, 21, 8), 2_000_000, 100_000),
        usage("org-1", "base-large", at(7, 2, 0), 9_999),
    ]


@pytest.fixture
def june(database_url: str, add_events: AddEvents) -> list[BillingEvent]:
    """june_traffic(), stored and rated (June and July's windows)."""
    events = june_traffic()
    add_events(events)
    rate(database_url, events)
    return events


JUNE_LINES = [
    line("org-1", "usage", "base-large", "batch/standard", "input", "1.25", 500_000,
         "0.625", "0.62"),
    line("org-1", "usage", "base-large", "batch/standard", "output", "5", 50_000,
         "0.25", "0.25"),
    line("org-1", "usage", "base-large", "standard/standard", "cache_read", "1.25", 400_000,
         "0.5", "0.50"),
    line("org-1", "usage", "base-large", "standard/standard", "input", "2.50", 4_000_000,
         "10", "10.00"),
    line("org-1", "usage", "base-large", "standard/standard", "input", "3.00", 2_000_000,
         "6", "6.00"),
    line("org-1", "usage", "base-large", "standard/standard", "output", "10", 120_000,
         "1.2", "1.20"),
    line("org-2", "usage", "base-small", "standard/standard", "input", "0.15", 700_000,
         "0.105", "0.10"),
]  # fmt: skip


def test_usage_lines_are_one_per_account_model_tiers_class_and_rate_with_nonzero_quantity(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent]
) -> None:
    built = build(database_url, JUNE)

    assert lines(reader, JUNE) == JUNE_LINES == expected_lines(reader, JUNE)
    assert (built.inserted, built.updated, built.deleted, built.lines) == (7, 0, 0, 7)
    assert built.amount_exact == Decimal("18.68") and built.amount == Decimal("18.67")
    assert not built.frozen
    assert reader.execute("SELECT DISTINCT month FROM invoice_line").fetchall() == [(JUNE,)]


# Ties at the half cent round to the even cent, both ways; anything past a tie rounds away.
ROUNDING_CASES = [
    # (auth_id, tokens at 1 USD per million, amount when billed, amount when credited)
    ("tie-to-even-zero", 5_000, "0.00", "0.00"),
    ("tie-up-to-even", 15_000, "0.02", "-0.02"),
    ("tie-down-to-even", 25_000, "0.02", "-0.02"),
    ("tie-up-at-a-dollar", 1_235_000, "1.24", "-1.24"),
    ("tie-down-at-a-dollar", 1_245_000, "1.24", "-1.24"),
    ("just-past-a-tie", 5_001, "0.01", "-0.01"),
    ("just-short-of-a-tie", 4_999, "0.00", "0.00"),
]


ONE_DOLLAR = Pricebooks((make_version({"one-dollar": own("1", "1")}),))


def rate_the_rounding_cases(url: str, add_events: AddEvents) -> list[BillingEvent]:
    """One event per ROUNDING_CASES row on 2026-06-15 10:00, at 1 USD per million, rated."""
    events = [
        usage(auth_id, "one-dollar", at(6, 15, 10), tokens)
        for auth_id, tokens, _, _ in ROUNDING_CASES
    ]
    add_events(events)
    rate(url, events, ONE_DOLLAR)
    return events


def test_amount_is_amount_exact_rounded_half_even_to_cents_on_charges_and_credits(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    events = rate_the_rounding_cases(database_url, add_events)
    close(database_url, JULY)  # builds June's lines
    delete_events(database_url, [e.event_id for e in events])
    rate(database_url, events, ONE_DOLLAR)  # every rollup credited back, on July's invoice
    build(database_url, JULY)

    billed = {row[0]: (row[8], row[9]) for row in lines(reader, JUNE)}
    credited = {row[0]: (row[1], row[8], row[9]) for row in lines(reader, JULY)}
    for auth_id, tokens, charge, credit in ROUNDING_CASES:
        exact = Decimal(tokens) / 10**6
        assert billed[auth_id] == (exact, Decimal(charge)), auth_id
        assert credited[auth_id] == ("adjustment", -exact, Decimal(credit)), auth_id
    assert lines(reader, JULY) == expected_lines(reader, JULY)


SHADOWING_ROUND = """
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.round(value numeric, places integer) RETURNS numeric
    LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.round(value + 0.01, places) $$;
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = shadow, pg_catalog, public',
                   current_database());
END $$;
"""


def test_invoice_amounts_round_half_even_whatever_the_search_path_puts_before_pg_catalog(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """A search_path may list another schema before pg_catalog, with its own round():
    the rater's sessions call PostgreSQL's own functions, so a tie still rounds to even
    (audit: every amount came out a cent higher, and every check passed)."""
    reader.execute(SHADOWING_ROUND)

    rate_the_rounding_cases(database_url, add_events)
    build(database_url, JUNE)

    billed = {row[0]: row[9] for row in lines(reader, JUNE)}
    assert billed == {auth_id: Decimal(charge) for auth_id, _, charge, _ in ROUNDING_CASES}


def decimal_from(digits: int, places: int) -> Decimal:
    """``digits`` x 10^-places, built from text (exact whatever the context's precision)."""
    return Decimal(f"{digits}E-{places}")


amounts = st.one_of(
    # anything: up to 38 digits, up to 30 places, either sign
    st.builds(decimal_from, st.integers(-(10**38), 10**38), st.integers(0, 30)),
    # exact ties at the half cent, with trailing zeros or not
    st.builds(
        lambda cents, zeros: decimal_from((cents * 10 + 5) * 10**zeros, 3 + zeros),
        st.integers(-(10**20), 10**20),
        st.integers(0, 12),
    ),
    # one unit of a far place either side of a tie
    st.builds(
        lambda cents, places, side: (
            decimal_from(cents * 10 + 5, 3) + side * decimal_from(1, places)
        ),
        st.integers(-(10**20), 10**20),
        st.integers(4, 30),
        st.sampled_from((-1, 1)),
    ),
    st.sampled_from([Decimal("0"), Decimal("-0.005"), Decimal("0.005"), Decimal("-0.015")]),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(amounts, min_size=1, max_size=40))
def test_round_half_even_in_sql_agrees_with_python_decimal_quantize(
    reader: psycopg.Connection, values: list[Decimal]
) -> None:
    rounded = reader.execute(
        "SELECT round_half_even(v, 2) FROM unnest(%(values)s::numeric[]) WITH ORDINALITY "
        "AS t (v, i) ORDER BY i",
        {"values": values},
    ).fetchall()
    assert [r for (r,) in rounded] == [half_even_cents(v) for v in values]


def test_identical_rebuild_writes_nothing(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent]
) -> None:
    build(database_url, JUNE)
    before = reader.execute(LINE_VERSIONS).fetchall()

    again = build(database_url, JUNE)

    assert (again.inserted, again.updated, again.deleted, again.written) == (0, 0, 0, 0)
    assert again.lines == len(before) == 7
    assert reader.execute(LINE_VERSIONS).fetchall() == before  # ctid, xmin, built_at, run_id
    assert "+0 inserted, ~0 updated, -0 deleted, =7 unchanged" in str(again)


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
def test_a_build_that_waited_for_another_sees_its_lines_whatever_the_session_isolation(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent], isolation: str
) -> None:
    """Under REPEATABLE READ the statement that waits would take the snapshot: the second
    build would miss the first one's lines and insert them again (a unique violation)."""
    level = isolation.replace(" ", "\\ ")
    second_url = make_conninfo(database_url, options=f"-c default_transaction_isolation={level}")
    built: list[LinesBuilt] = []
    with connect(database_url) as first, first.transaction():
        first.execute(LOCK_MONTH, {"namespace": INVOICE_NAMESPACE, "key": 2026 * 12 + 5})
        converge_month_lines(first, JUNE, "first", utc(2026, 7, 1))
        second = threading.Thread(target=lambda: built.append(build(second_url, JUNE)))
        second.start()
        wait_until_a_lock_is_awaited(reader)
    second.join(timeout=30)

    assert [(b.inserted, b.updated, b.deleted, b.lines) for b in built] == [(0, 0, 0, 7)]


def test_a_rebuild_that_updates_a_line_rounds_its_amount_half_even(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """The update path rounds as the insert path does: 25,000 tokens at 1 USD is a tie."""
    dollar = Pricebooks((make_version({"one-dollar": own("1", "1")}),))
    first = [usage("tie", "one-dollar", at(6, 15, 10), 1_000)]
    add_events(first)
    rate(database_url, first, dollar)
    build(database_url, JUNE)
    more = [usage("tie", "one-dollar", at(6, 15, 10, 20), 24_000)]
    add_events(more)
    rate(database_url, more, dollar)

    rebuilt = build(database_url, JUNE)

    assert rebuilt.updated == 1
    [row] = lines(reader, JUNE)
    assert (row[8], row[9]) == (Decimal("0.025"), Decimal("0.02"))
    assert rebuilt.amount == Decimal("0.02")
    assert lines(reader, JUNE) == expected_lines(reader, JUNE)


def test_a_build_waits_for_a_close_in_flight(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent]
) -> None:
    """A build reads the mark only once no close is in flight (the close holds the periods
    lock exclusively): it never rewrites the lines of a month a close is freezing. Here the
    close in flight records a mark through July without building June's lines: a build that
    waited for it finds June frozen and writes nothing."""
    built: list[LinesBuilt] = []
    with connect(database_url) as closing, closing.transaction():
        lock_periods(closing, exclusive=True)
        builder = threading.Thread(target=lambda: built.append(build(database_url, JUNE)))
        builder.start()
        wait_until_a_lock_is_awaited(reader)
        assert built == []
        closing.execute(
            load_sql("insert_period_close"),
            {"closed_through": JULY, "closed_by": "finance", "note": None},
        )
    builder.join(timeout=30)

    assert [(b.frozen, b.lines) for b in built] == [(True, 0)]
    assert reader.execute("SELECT count(*) FROM invoice_line").fetchone() == (0,)


def test_a_build_does_not_wait_for_a_rating_or_build_holding_the_periods_lock(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent]
) -> None:
    """Ratings and builds hold the periods lock shared: only a close waits for them."""
    impatient = make_conninfo(database_url, options="-c lock_timeout=5s")
    with connect(database_url) as rating, rating.transaction():
        lock_periods(rating, exclusive=False)
        built = build(impatient, JUNE)  # a LockNotAvailable error if it waited

    assert (built.inserted, built.lines) == (7, 7)


def test_rebuild_converges_updating_changed_lines_and_deleting_stale_ones(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, june: list[BillingEvent]
) -> None:
    build(database_url, JUNE)
    before = {row[3:]: row[:2] for row in reader.execute(LINE_VERSIONS).fetchall()}
    late = [
        usage("org-1", "base-large", at(6, 16, 9, 30), 1_000),  # more input at 2.50
        usage("org-3", "base-small", at(6, 16, 9, 31), 10),  # a new account
    ]
    add_events(late)
    delete_events(database_url, [june[3].event_id])  # org-2's only event
    rate(database_url, [*late, june[3]])

    rebuilt = build(database_url, JUNE)

    assert (rebuilt.inserted, rebuilt.updated, rebuilt.deleted) == (1, 1, 1)
    assert lines(reader, JUNE) == expected_lines(reader, JUNE)
    assert {row[0] for row in lines(reader, JUNE)} == {"org-1", "org-3"}
    after = {row[3:]: row[:2] for row in reader.execute(LINE_VERSIONS).fetchall()}
    untouched = [key for key in after if key in before]
    assert len(untouched) == 5  # the six org-1 lines but the changed one
    assert all(after[key] == before[key] for key in untouched)
    stamps = reader.execute(
        "SELECT run_id, count(*), min(built_at), max(built_at) FROM invoice_line "
        "WHERE account_id = 'org-1' GROUP BY run_id ORDER BY 2"
    ).fetchall()
    (_, _, rebuilt_at, _), (_, _, _, first_built_at) = stamps  # 1 line rebuilt, 5 kept
    assert rebuilt_at > first_built_at  # an updated line says when it was built, by whom


def test_billing_account_groups_auth_ids_and_an_unmapped_auth_id_is_its_own_account(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    reader.execute(
        "INSERT INTO billing_account (auth_id, account_id) VALUES ('org-1', 'acme'), "
        "('org-2', 'acme')"
    )
    events = [
        usage("org-1", "base-small", at(6, 15, 10), 100_000),
        usage("org-2", "base-small", at(6, 15, 11), 200_000),
        usage("org-3", "base-small", at(6, 15, 12), 300_000),
    ]
    add_events(events)
    rate(database_url, events)

    build(database_url, JUNE)

    assert lines(reader, JUNE) == [
        line("acme", "usage", "base-small", "standard/standard", "input", "0.15", 300_000,
             "0.045", "0.04"),
        line("org-3", "usage", "base-small", "standard/standard", "input", "0.15", 300_000,
             "0.045", "0.04"),
    ]  # fmt: skip
    assert [(t.account_id, t.line_count) for t in totals(database_url, JUNE)] == [
        ("acme", 1),
        ("org-3", 1),
    ]


def recorded(total: MonthTotal, close_id: int) -> tuple[Any, ...]:
    """What a close records of one month and account (a row of rating_period_close_total)."""
    return (
        total.month, total.account_id, close_id, total.line_count, total.amount_exact,
        total.amount, total.lines_sha256,
    )  # fmt: skip


def test_a_close_after_a_far_past_mark_walks_only_the_months_that_billed(
    database_url: str, june: list[BillingEvent]
) -> None:
    """A first close through year 1 (a typo) is accepted: it closes nothing that billed.
    The next close then wholly closes two millennia of months that hold nothing to record."""
    close(database_url, utc(1, 1, 1, 1))

    closed = close(database_url, JULY)

    assert closed.months_closed == (JUNE,)
    assert closed.lines()[0].endswith("months wholly closed: 2026-06")


def test_a_close_builds_the_month_its_adjustments_bill_on_when_nothing_else_billed(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """Only adjustments bill: the window's events were unpriced when it closed (no rows),
    then a pricebook priced them. The close that wholly closes their month invoices them."""
    events = [usage("org-1", "new-model", at(6, 15, 10), 1_000_000)]
    add_events(events)
    rate(database_url, events)  # unpriced: rating_exception only
    close(database_url, utc(2026, 6, 20))
    priced = make_version({"new-model": own("2", "8")}, version="priced")
    rate(database_url, events, Pricebooks((priced,)))

    closed = close(database_url, JULY)

    assert closed.months_closed == (JUNE,)
    assert lines(reader, JUNE) == [
        line("org-1", "adjustment", "new-model", "standard/standard", "input", "2", 1_000_000,
             "2.000000000000", "2.00"),
    ]  # fmt: skip


def test_a_close_records_the_totals_of_the_lines_of_each_month_it_wholly_closes(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent]
) -> None:
    closed = close(database_url, JULY)

    assert closed.months_closed == (JUNE,)
    assert lines(reader, JUNE) == JUNE_LINES  # built by the close itself
    now = totals(database_url, JUNE)
    assert list(closed.invoices) == now
    assert [(t.account_id, t.line_count, t.amount_exact, t.amount) for t in now] == [
        ("org-1", 6, Decimal("18.575"), Decimal("18.57")),
        ("org-2", 1, Decimal("0.105"), Decimal("0.10")),
    ]
    assert reader.execute(CLOSE_TOTALS).fetchall() == [recorded(t, closed.close_id) for t in now]
    assert lines(reader, JULY) == []  # July is open: the close leaves it to a build


def test_a_wholly_closed_months_lines_never_change_on_build(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, june: list[BillingEvent]
) -> None:
    closed = close(database_url, JULY)
    frozen = reader.execute(LINE_VERSIONS).fetchall()
    recorded_totals = reader.execute(CLOSE_TOTALS).fetchall()
    # After the close: a new mapping, a late event and a re-rate at other prices.
    reader.execute("INSERT INTO billing_account (auth_id, account_id) VALUES ('org-1', 'acme')")
    late = usage("org-1", "base-large", at(6, 15, 10, 40), 5_000)
    add_events([late])
    repriced = Pricebooks(
        (make_version({"base-large": own("9", "9"), "base-small": own("9", "9")}),)
    )
    rate(database_url, [*june[:5], late], repriced)

    rebuilt = build(database_url, JUNE)

    assert rebuilt.frozen and rebuilt.written == 0
    assert str(rebuilt).startswith("2026-06: wholly closed, 7 lines frozen")
    assert reader.execute(LINE_VERSIONS).fetchall() == frozen
    assert reader.execute(CLOSE_TOTALS).fetchall() == recorded_totals
    assert [recorded(t, closed.close_id) for t in totals(database_url, JUNE)] == recorded_totals


def test_a_mapping_change_moves_only_the_lines_of_months_not_wholly_closed(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent]
) -> None:
    close(database_url, JULY)
    june_lines = lines(reader, JUNE)
    reader.execute("INSERT INTO billing_account (auth_id, account_id) VALUES ('org-1', 'acme')")

    build(database_url, JULY)
    build(database_url, JUNE)

    assert lines(reader, JUNE) == june_lines  # still invoiced to org-1
    assert [row[0] for row in lines(reader, JULY)] == ["acme"]
    assert lines(reader, JULY) == expected_lines(reader, JULY)


def test_an_adjustment_after_a_close_bills_on_the_next_invoice_and_stays_there(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, june: list[BillingEvent]
) -> None:
    close(database_url, JULY)
    june_lines = reader.execute(LINE_VERSIONS).fetchall()
    late = usage("org-1", "base-large", at(6, 15, 10, 50), 40_000, 4_000)
    add_events([late])
    rate(database_url, [late])  # a closed window: open adjustments, billed on July

    built = build(database_url, JULY)

    adjustments = [row for row in lines(reader, JULY) if row[1] == "adjustment"]
    assert adjustments == [
        line("org-1", "adjustment", "base-large", "standard/standard", "input", "2.50", 40_000,
             "0.1", "0.10"),
        line("org-1", "adjustment", "base-large", "standard/standard", "output", "10", 4_000,
             "0.04", "0.04"),
    ]  # fmt: skip
    assert lines(reader, JULY) == expected_lines(reader, JULY)
    assert built.lines == 3  # and July's own usage
    assert reader.execute(LINE_VERSIONS).fetchall()[: len(june_lines)] == june_lines
    july_lines = reader.execute(LINE_VERSIONS).fetchall()[len(june_lines) :]

    second = close(database_url, AUGUST)

    assert second.adjustments_stamped == 2 and second.months_closed == (JULY,)
    stamped = reader.execute(
        "SELECT DISTINCT bill_month, invoiced_by FROM rating_adjustment"
    ).fetchall()
    assert stamped == [(JULY, second.close_id)]
    assert reader.execute(LINE_VERSIONS).fetchall()[len(june_lines) :] == july_lines
    assert [recorded(t, second.close_id) for t in totals(database_url, JULY)] == [
        row for row in reader.execute(CLOSE_TOTALS).fetchall() if row[0] == JULY
    ]


def test_adjustments_netting_to_zero_within_an_account_leave_no_line(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """A correction that moves usage between two auth_ids of one account nets to nothing
    on the account's invoice: no zero-quantity adjustment line (contract 11)."""
    reader.execute(
        "INSERT INTO billing_account (auth_id, account_id) VALUES ('org-1', 'acme'), "
        "('org-2', 'acme')"
    )
    moved = usage("org-2", "base-large", at(6, 15, 11), 40_000)
    events = [usage("org-1", "base-large", at(6, 15, 10), 100_000), moved]
    add_events(events)
    rate(database_url, events)
    close(database_url, JULY)
    late = usage("org-1", "base-large", at(6, 15, 10, 50), 40_000)
    add_events([late])
    reader.execute("DELETE FROM billing_event WHERE event_id = %s", (moved.event_id,))
    rate(database_url, [late, moved])  # two closed windows: adjustments, billed on July

    build(database_url, JULY)

    adjusted = reader.execute(
        "SELECT auth_id, token_class, quantity_tokens FROM rating_adjustment"
        " WHERE quantity_tokens <> 0 ORDER BY auth_id"
    ).fetchall()
    assert adjusted == [("org-1", "input", 40_000), ("org-2", "input", -40_000)]
    assert lines(reader, JULY) == expected_lines(reader, JULY) == []


def test_an_invoices_rounding_residual_is_within_half_a_cent_per_line(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """Ten ties that all round down: the residual is exactly the bound, -0.005 per line."""
    models = {f"m{k}": own("1", "1") for k in range(10)}
    events = [
        usage("org-1", f"m{k}", at(6, 15, 10), (20 * k + 5) * 1_000) for k in range(10)
    ]  # 0.005, 0.025, ..., 0.185 USD: each rounds to its even cent, down
    events.append(usage("org-2", "m1", at(6, 15, 10), 12_345_678))  # 12.345678: up 0.004322
    add_events(events)
    rate(database_url, events, Pricebooks((make_version(models),)))

    built = build(database_url, JUNE)

    by_account = {t.account_id: t for t in totals(database_url, JUNE)}
    assert by_account["org-1"].residual == Decimal("-0.05")
    figures: list[MonthTotal | LinesBuilt] = [*by_account.values(), built]
    for total in figures:
        count = total.line_count if isinstance(total, MonthTotal) else total.lines
        assert abs(total.amount - total.amount_exact) <= Decimal("0.005") * count
    assert built.residual == sum(t.residual for t in by_account.values())
    stored = reader.execute(
        "SELECT sum(amount) - sum(amount_exact) FROM invoice_line WHERE month = %s", [JUNE]
    ).fetchone()
    assert stored == (built.residual,)


AMOUNT_EXACT_TEXT = re.compile(r"-?\d+\.\d{12}")
AMOUNT_TEXT = re.compile(r"-?\d+\.\d{2}")


def test_export_writes_one_csv_per_account_with_exact_decimal_text_and_a_total_row(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, tmp_path: Path
) -> None:
    reader.execute("INSERT INTO billing_account (auth_id, account_id) VALUES ('org-9', 'acme/eu')")
    events = [
        usage("org-1", "base-large", at(6, 15, 10), 1_000_001, 33),
        usage("org-1", "base-small", at(6, 15, 10), 1),  # 0.00000015 USD: far below a cent
        usage("org-1", "free", at(6, 15, 10), 100),  # a rate of 0: amount_exact 0
        usage("org-9", "base-small", at(6, 15, 11), 700_000),
    ]
    add_events(events)
    rate(database_url, events)
    build(database_url, JUNE)

    with connect(database_url) as conn:
        written = export_invoice(conn, JUNE, tmp_path / "out").written

    assert [p.name for p in written] == ["2026-06_acme%2Feu.csv", "2026-06_org-1.csv"]
    columns = [name for (name,) in reader.execute(INVOICE_LINE_COLUMNS)]
    stored = {
        (account, model, token_class): (exact, amount)
        for account, model, token_class, exact, amount in reader.execute(
            "SELECT account_id, model_id, token_class, amount_exact::text, amount::text "
            "FROM invoice_line"
        )
    }
    for path in written:
        header, *rows = list(csv.reader(path.read_text().splitlines()))
        assert header == [*columns, "residual"]
        *line_rows, total = [dict(zip(header, row, strict=True)) for row in rows]
        account = line_rows[0]["account_id"]
        assert len(line_rows) == sum(1 for key in stored if key[0] == account)
        for row in line_rows:
            assert AMOUNT_EXACT_TEXT.fullmatch(row["amount_exact"]), row
            assert AMOUNT_TEXT.fullmatch(row["amount"]), row
            key = (row["account_id"], row["model_id"], row["token_class"])
            assert (row["amount_exact"], row["amount"]) == stored[key]
        assert total["kind"] == "total" and total["account_id"] == account
        assert AMOUNT_EXACT_TEXT.fullmatch(total["amount_exact"]), total
        assert Decimal(total["amount_exact"]) == sum(Decimal(r["amount_exact"]) for r in line_rows)
        assert Decimal(total["amount"]) == sum(Decimal(r["amount"]) for r in line_rows)
    org_1 = list(csv.DictReader((tmp_path / "out" / "2026-06_org-1.csv").open()))
    tiny = next(row for row in org_1 if row["model_id"] == "base-small")
    free = next(row for row in org_1 if row["model_id"] == "free")
    assert (tiny["amount_exact"], tiny["amount"]) == ("0.000000150000", "0.00")
    assert (free["amount_exact"], free["amount"]) == ("0.000000000000", "0.00")
    assert org_1[-1]["month"] == tiny["month"] == "2026-06-01T00:00:00+00:00"
    assert org_1[-1]["amount_exact"] == "2.500332650000"  # 2.50000250 + 0.00033 + 0.00000015


def test_export_writes_each_instant_whole_so_a_file_row_matches_its_stored_line(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, tmp_path: Path
) -> None:
    events = [usage("org-1", "base-large", at(6, 15, 10), 1_000)]
    add_events(events)
    rate(database_url, events)
    build(database_url, JUNE)
    reader.execute("UPDATE invoice_line SET built_at = '2026-07-01 09:30:00.123456+00'")
    reader.commit()

    with connect(database_url) as conn:
        (path,) = export_invoice(conn, JUNE, tmp_path).written

    *lines, total = csv.DictReader(path.open())
    assert [(row["month"], row["built_at"]) for row in lines] == [
        ("2026-06-01T00:00:00+00:00", "2026-07-01T09:30:00.123456+00:00")
    ]
    assert (total["month"], total["built_at"]) == ("2026-06-01T00:00:00+00:00", "")


def add_a_line_each(reader: psycopg.Connection, *accounts: str) -> None:
    """One June usage line (1 USD) per account, written directly, committed."""
    for account in accounts:
        reader.execute(
            "INSERT INTO invoice_line VALUES (%s, %s, 'usage', 'm', 'standard', 'standard', "
            "'input', 1, 1000000, 1, 1, now(), 'test')",
            (JUNE, account),
        )
    reader.commit()


def test_an_accounts_lines_split_across_fetches_of_the_cursor_make_one_whole_file(
    reader: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export reads the month an account at a time through a server-side cursor (its
    memory is one account's lines): an account whose lines straddle two fetches is still
    one file with every line and one total, byte for byte what one fetch gives."""
    for account, models in [("acct-a", 3), ("acct-b", 4), ("acct-c", 1)]:
        for model in range(models):
            reader.execute(
                "INSERT INTO invoice_line VALUES (%s, %s, 'usage', %s, 'standard', 'standard', "
                "'input', 1, 1000000, 1, 1, now(), 'test')",
                (JUNE, account, f"m{model}"),
            )
    reader.commit()
    whole = export_invoice(reader, JUNE, tmp_path / "whole")
    monkeypatch.setattr(invoices, "LINES_PER_FETCH", 2)
    fetched_in_twos = export_invoice(reader, JUNE, tmp_path / "twos")

    assert [path.name for path in fetched_in_twos.written] == [
        "2026-06_acct-a.csv",
        "2026-06_acct-b.csv",
        "2026-06_acct-c.csv",
    ]
    for path, same in zip(whole.written, fetched_in_twos.written, strict=True):
        assert path.read_bytes() == same.read_bytes()
    b_rows = (tmp_path / "twos" / "2026-06_acct-b.csv").read_text().splitlines()
    assert len(b_rows) == 1 + 4 + 1 and b_rows[-1].split(",")[2] == "total"


def test_export_names_every_account_a_file_the_filesystem_takes_and_tells_them_apart(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """An account id may be as long as an auth_id (256 characters); percent-encoded, it
    can pass the 255 bytes a file name holds. Long ones keep a prefix and a digest."""
    long_ascii = "a" * 250
    long_kana = "株式会社サンプル・ソフトウェア開発本部第二事業部請求先アカウント"
    just_fits = "b" * 243  # 2026-06_ + 243 + .csv: exactly 255 bytes, kept whole
    accounts = [long_ascii, long_ascii[:-1] + "b", long_kana, "short", just_fits]
    add_a_line_each(reader, *accounts)

    written = export_invoice(reader, JUNE, tmp_path).written

    assert len({path.name for path in written}) == len(accounts) == len(list(tmp_path.iterdir()))
    assert all(len(path.name.encode()) <= 255 for path in written)
    names = {path.name for path in written}
    digest = hashlib.sha256(long_ascii.encode()).hexdigest()
    assert {"2026-06_short.csv", f"2026-06_{just_fits}.csv"} <= names
    assert f"2026-06_{'a' * 96}+sha256-{digest}.csv" in names  # 96 encoded bytes, then the digest
    for path in written:
        *_, total = csv.DictReader(path.open())
        assert total["account_id"] in accounts


def test_export_keeps_every_account_id_whole_in_its_file_whatever_line_break_it_holds(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """An id is any non-blank text: a lone carriage return in it is a line break to every
    CSV reader, so it must be quoted like a line feed, a comma or a quote."""
    accounts = ["cr\rinside", "lf\ninside", "crlf\r\ninside", "comma,inside", 'quote"inside']
    add_a_line_each(reader, *accounts)

    written = export_invoice(reader, JUNE, tmp_path).written

    read_back = []
    for path in written:
        with path.open(newline="") as file:  # as the csv module asks a reader to open it
            line, total = csv.DictReader(file)
        assert (line["kind"], total["kind"]) == ("usage", "total"), path.name
        assert line["account_id"] == total["account_id"]
        read_back.append(line["account_id"])
    assert sorted(read_back) == sorted(accounts)


def test_export_total_row_states_how_far_the_invoice_total_is_from_the_exact_sum(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    for model, exact in (("m-1", "0.004000000000"), ("m-2", "0.004000000000")):
        reader.execute(
            "INSERT INTO invoice_line VALUES (%s, 'acct', 'usage', %s, 'standard', 'standard', "
            "'input', 1, 4000, %s, round_half_even(%s, 2), now(), 'test')",
            (JUNE, model, exact, exact),
        )
    reader.commit()

    [written] = export_invoice(reader, JUNE, tmp_path).written

    *lines, total = csv.DictReader(written.open())
    assert [line["residual"] for line in lines] == ["", ""]
    assert (total["amount_exact"], total["amount"], total["residual"]) == (
        "0.008000000000",
        "0.00",
        "-0.008000000000",
    )


def test_export_total_row_is_the_exact_sum_of_lines_of_more_than_28_digits(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """Python's default decimal context keeps 28 digits and rounds silently."""
    quantity, rate = 2**62, Decimal("999999.999999")
    exact = EXACT.divide(EXACT.multiply(quantity, rate), 1_000_000)  # 31 digits
    for model in ("m-1", "m-2"):
        reader.execute(
            "INSERT INTO invoice_line VALUES (%s, 'acct', 'usage', %s, 'standard', 'standard', "
            "'input', %s, %s, %s, round_half_even(%s, 2), now(), 'test')",
            (JUNE, model, rate, quantity, exact, exact),
        )
    reader.commit()

    [written] = export_invoice(reader, JUNE, tmp_path).written

    *_, total = csv.DictReader(written.open())
    stored = reader.execute("SELECT sum(amount_exact)::text FROM invoice_line").fetchone()
    assert total["kind"] == "total" and (total["amount_exact"],) == stored


def ctrl_c(*args: Any) -> NoReturn:
    """A command's work, interrupted by Ctrl-C (to monkeypatch in)."""
    raise KeyboardInterrupt


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def export_june(capsys: pytest.CaptureFixture[str], out: Path) -> tuple[int, list[str], str]:
    """`invoice export --month 2026-06 --out OUT`, as run_cli runs it."""
    return run_cli(capsys, "invoice", "export", "--month", "2026-06", "--out", str(out))


def test_cli_close_says_when_it_waits_for_the_periods_lock_and_what_waits_behind_it(
    warehouse_env: str,
    june: list[BillingEvent],
    reader: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An export holds the lock shared for as long as it writes: the close's one line says
    it waits, and that ratings starting now wait behind it. Found by an audit at scale."""
    codes: list[int] = []
    close = ["period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance"]
    with connect(warehouse_env) as export, export.transaction():
        lock_periods(export, exclusive=False)
        closer = threading.Thread(target=lambda: codes.append(cli.main(close)))
        closer.start()
        wait_until_a_lock_is_awaited(reader)
    closer.join(timeout=60)
    assert codes == [0]
    assert capsys.readouterr().err == (
        "waiting for the periods lock, held by 1 other session (a rating, an invoice build "
        "or export, a dry run): every rating that starts now waits behind this close until "
        "it commits; Ctrl-C stops the close, closing nothing\n"
    )


def test_cli_builds_closes_reports_and_exports_a_month(
    warehouse_env: str,
    june: list[BillingEvent],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "invoice", "build", "--month", "2026-06")
    assert code == 0
    assert out == [
        "2026-06: invoice_line +7 inserted, ~0 updated, -0 deleted, =0 unchanged; 7 lines, "
        "total 18.67 USD (exact 18.680000000000, residual -0.010000000000)"
    ]

    code, out, _ = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance"
    )
    assert code == 0
    assert out == [
        "close 1: closed through 2026-07-01T00:00:00+00:00 by finance; stamped 0 open "
        "adjustment(s); months wholly closed: 2026-06",
        "  2026-06 org-1: 6 lines, total 18.57 USD (exact 18.575000000000, residual "
        "-0.005000000000)",
        "  2026-06 org-2: 1 lines, total 0.10 USD (exact 0.105000000000, residual -0.005000000000)",
    ]

    code, out, _ = run_cli(capsys, "period", "status")
    assert code == 0
    assert out[0].startswith("closed through 2026-07-01T00:00:00+00:00 (close 1, ")
    assert out[0].endswith(" by finance)")
    assert out[1:] == ["next invoice: 2026-07", "open adjustments: 0 in 0 window(s), 0 USD"]

    code, out, _ = run_cli(capsys, "invoice", "build", "--month", "2026-06")
    assert code == 0
    assert out[0].startswith("2026-06: wholly closed, 7 lines frozen as its close built them")

    code, out, _ = export_june(capsys, tmp_path)
    assert code == 0
    assert out == [
        str(tmp_path / "2026-06_org-1.csv"),
        str(tmp_path / "2026-06_org-2.csv"),
        f"2 account file(s) for 2026-06 in {tmp_path}",
    ]
    *rows, _ = csv.DictReader((tmp_path / "2026-06_org-1.csv").open())
    key = ("model_id", "service_tier", "context_tier", "token_class", "unit_rate_per_mtok")
    assert [tuple(row[k] for k in key) for row in rows] == [
        (*line[2:6], f"{line[6]:.6f}") for line in JUNE_LINES if line[0] == "org-1"
    ]  # key order, rates ascending


def test_a_close_whose_reader_went_away_exits_as_its_close_did(
    warehouse_env: str, june: list[BillingEvent], reader: psycopg.Connection
) -> None:
    """Its lines are a report of what committed: a closed pipe must not read as a failed
    close to a script (``set -o pipefail``)."""
    command = [sys.executable, "-m", "rating_pipeline", "period", "close", "--through",
               "2026-07-01T00:00:00Z", "--by", "finance"]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    err = child.stderr.read().decode()

    assert (child.wait(), err) == (0, "")
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (1,)


def test_a_dry_run_close_says_what_the_close_would_do_and_writes_nothing(
    warehouse_env: str,
    june: list[BillingEvent],
    reader: psycopg.Connection,
    add_events: AddEvents,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A close cannot be undone: ``--dry-run`` makes its refusals and its count of the
    windows' events, and says what it would close and which windows it would freeze though
    their events changed since their rating (so they can be rated first, onto this
    invoice), writing nothing."""
    add_events([usage("org-2", "base-small", at(6, 16, 9, 30), 100_000)])  # after rating
    tables = ("rating_period_close", "late_window", "invoice_line")
    before = [reader.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables]

    code, out, _ = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--dry-run"
    )

    assert code == 0
    assert out == [
        "dry run: a close through 2026-07-01T00:00:00+00:00 may be made now; it would stamp "
        "0 open adjustment(s) (0 USD) and wholly close 2026-06. Nothing was written.",
        "  warning: 1 window(s) it would close changed after their latest rating (found by "
        "the sensors or by the close's count of their events), and no rating read them "
        "since: 2026-06-16-09:00; rate them first to bill the difference on the invoice of "
        "their own month, or after the close as adjustments on the next invoice",
        "  the invoices it would freeze, from the lines as they stand now:",
        "  2026-06 org-1: 6 lines, total 18.57 USD (exact 18.575000000000, residual "
        "-0.005000000000)",
        "  2026-06 org-2: 1 lines, total 0.10 USD (exact 0.105000000000, residual -0.005000000000)",
    ]
    assert [reader.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables] == before

    code, _, err = run_cli(
        capsys, "period", "close", "--through", "2099-01-01T00:00:00Z", "--dry-run"
    )
    assert code != 0 and "lies in the future" in err
    code, _, err = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", " ", "--dry-run"
    )
    assert code != 0 and "closed_by is blank" in err


LOST = psycopg.OperationalError("server closed the connection unexpectedly")
LOST_LINE = (
    "error: the connection was lost (OperationalError: server closed the connection unexpectedly)"
)


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(KeyboardInterrupt(), 130, "interrupted"), (LOST, 1, LOST_LINE)],
    ids=["ctrl-c", "connection lost"],
)
@pytest.mark.parametrize("committed", [False, True], ids=["before its commit", "after it"])
def test_a_stopped_close_says_whether_it_committed(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    committed: bool,
    stop: BaseException,
    code: int,
    said: str,
) -> None:
    """A close is one transaction: stopped by Ctrl-C, or by a connection lost during its
    COMMIT, it committed whole or not at all, and the person is told which (the mark says).
    Before, Ctrl-C exited 130 with nothing on the screen, and a lost connection said "the
    warehouse refused a statement" of a close that had committed (found by an audit)."""

    def stopped(conn: psycopg.Connection, *args: Any) -> PeriodClose:
        if committed:
            close_period(conn, *args)
        raise stop

    monkeypatch.setattr("rating_pipeline.warehouse.periods.close_period", stopped)
    got, out, err = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "bob"
    )
    assert got == code and out == []
    if committed:
        assert err.startswith(
            f"{said} after a close committed: closed through 2026-07-01T00:00:00+00:00 by bob "
            "(close 1, "
        ), err
        assert err.endswith("; `period status`)\n"), err
    else:
        assert err == f"{said}: the close was rolled back, nothing written; no close yet\n"


def test_a_stopped_close_names_the_close_that_committed_meanwhile_not_itself(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bob's close waits for Alice's through the same hour and is interrupted: Alice's
    committed, Bob's never will, and Bob was told "after the close committed". Found by an
    audit of interruptions."""

    def stopped_while_another_commits(conn: psycopg.Connection, *args: Any) -> PeriodClose:
        with connect(warehouse_env) as alices:
            close_period(alices, datetime(2026, 7, 1, tzinfo=UTC), "alice")
        raise KeyboardInterrupt

    monkeypatch.setattr(
        "rating_pipeline.warehouse.periods.close_period", stopped_while_another_commits
    )
    code, _, err = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "bob"
    )
    assert code == 130
    assert err.startswith(
        "interrupted after a close committed: closed through 2026-07-01T00:00:00+00:00 by alice "
    ), err


def test_a_close_whose_connection_is_lost_with_the_warehouse_gone_says_it_may_have_committed(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by a second reading: the fresh connection that reads the mark failed too, and
    its error replaced the close's line."""

    def lost(conn: psycopg.Connection, *args: Any) -> PeriodClose:
        monkeypatch.setenv("RATING_DATABASE_URL", UNREACHABLE)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("rating_pipeline.warehouse.periods.close_period", lost)
    code, out, err = run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z")
    assert code == 1 and out == []
    assert err.startswith("error: the connection was lost (OperationalError: ") and err.endswith(
        "the close may have committed: `period status` says\n"
    ), err


def test_an_interrupted_close_with_the_warehouse_gone_still_says_so_and_exits_130(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by a second reading: Ctrl-C's fresh connection failed too, and exited 1."""

    def interrupted(conn: psycopg.Connection, *args: Any) -> PeriodClose:
        monkeypatch.setenv("RATING_DATABASE_URL", UNREACHABLE)
        raise KeyboardInterrupt

    monkeypatch.setattr("rating_pipeline.warehouse.periods.close_period", interrupted)
    code, _, err = run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z")
    assert (code, err) == (130, "interrupted; the close may have committed: `period status` says\n")


def test_a_close_whose_session_the_server_ends_says_what_became_of_it(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A terminated session is a lost connection, though its error carries an SQLSTATE
    (57P01). Found by a second reading."""

    def terminated(conn: psycopg.Connection, *args: Any) -> PeriodClose:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        raise AssertionError("the session outlived its termination")

    monkeypatch.setattr("rating_pipeline.warehouse.periods.close_period", terminated)
    code, _, err = run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z")
    assert code == 1 and err.startswith("error: the connection was lost (AdminShutdown: ")
    assert err.endswith(": the close was rolled back, nothing written; no close yet\n"), err


def test_a_close_stopped_by_a_lock_timeout_is_a_refusal_not_a_lost_connection(
    warehouse_env: str,
    june: list[BillingEvent],
    reader: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LockNotAvailable is an OperationalError the server answered with. Found by a second
    reading."""
    monkeypatch.setenv(
        "RATING_DATABASE_URL", make_conninfo(warehouse_env, options="-c lock_timeout=300")
    )
    with connect(warehouse_env) as holder, holder.transaction():
        lock_periods(holder, exclusive=False)  # a rating in flight
        code, _, err = run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z")
    assert code == 1 and "connection was lost" not in err
    assert "LockNotAvailable" in err, err


def test_an_interrupted_build_says_that_building_again_converges_and_exits_130(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rating_pipeline.warehouse.invoices.build_invoice", ctrl_c)
    code, out, err = run_cli(capsys, "invoice", "build", "--month", "2026-06")
    assert code == 130 and out == []
    assert err == (
        "interrupted: 2026-06's lines were built whole or not at all; building them again "
        "converges (an identical rebuild writes nothing)\n"
    )


def test_a_build_whose_session_the_server_ends_says_building_again_converges(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lost connection (perhaps at the COMMIT, which may have gone through) was reported
    as a statement the warehouse refused. Found by an audit of interruptions."""

    def terminated(conn: psycopg.Connection, *args: Any) -> LinesBuilt:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        raise AssertionError("the session outlived its termination")

    monkeypatch.setattr("rating_pipeline.warehouse.invoices.build_invoice", terminated)
    code, out, err = run_cli(capsys, "invoice", "build", "--month", "2026-06")
    assert code == 1 and out == []
    assert err.startswith("error: the connection was lost (AdminShutdown: "), err
    assert err.endswith(
        ": 2026-06's lines were built whole or not at all; building them again converges (an "
        "identical rebuild writes nothing)\n"
    ), err


def test_an_interrupted_dry_run_says_it_wrote_nothing(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C exited 130 with nothing on the screen. Found by an audit of interruptions."""
    monkeypatch.setattr("rating_pipeline.warehouse.periods.preview_close", ctrl_c)
    code, out, err = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--dry-run"
    )
    assert (code, out, err) == (130, [], "interrupted: a dry run writes nothing\n")


def test_cli_build_of_a_closed_month_whose_lines_changed_since_its_close_says_so_and_fails(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Contract 11: a wholly closed month is frozen as its close recorded it. Its lines
    written outside the pipeline made `invoice build` print the new total as "frozen as its
    close built them", exit 0. Found by a review of closing and invoicing."""
    run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance")
    with psycopg.connect(warehouse_env) as conn:
        conn.execute("UPDATE invoice_line SET kind = 'adjustment' WHERE account_id = 'org-2'")
    code, out, err = run_cli(capsys, "invoice", "build", "--month", "2026-06")
    assert code == 1 and out == [], out
    (line,) = err.splitlines()
    assert line.startswith("error: 2026-06: wholly closed, but 1 invoice(s) differ"), line
    assert "(org-2: lines_sha256 differ from what close 1 recorded)" in line


# An unmapped auth_id is its own account id, and upstream may put any character in one.
FORGING_ID = "mallory\n  2026-06 org-2: 1 lines, total 999.00 USD\x1b[2K"


def test_who_closed_and_the_note_are_shown_as_their_repr_when_they_do_not_print(
    warehouse_env: str, june: list[BillingEvent], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--by` and `--note` with a line break wrote a forged line into the close report and
    `period status`. Found by a second reading."""
    forged = "ops\nclose 99: closed through 2030-01-01"
    code, out, _ = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", forged,
        "--note", "n\nx",
    )  # fmt: skip
    assert code == 0 and out[0].startswith("close 1: closed through "), out
    assert f"by {forged!r}; stamped" in out[0] and not out[1].startswith("close 99"), out
    code, out, _ = run_cli(capsys, "period", "status")
    assert out[0].endswith(f"by {forged!r}: 'n\\nx')") and out[1].startswith("next invoice"), out


def test_a_report_lists_an_account_id_that_does_not_print_as_its_repr_on_its_own_line(
    warehouse_env: str, add_events: AddEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    """The close report and a closed month's mismatch name account ids on lines of their
    own: an id holding a line break or a terminal escape wrote a line of its choosing into
    the operator's report. Such an id is shown as its repr; one that prints, as it is.
    Found by an audit of invoices."""
    events = [usage(FORGING_ID, "base-small", at(6, 15, 10), 700_000),
              usage("org-2", "base-small", at(6, 15, 10), 700_000)]  # fmt: skip
    add_events(events)
    rate(warehouse_env, events)
    code, out, _ = run_cli(
        capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance"
    )
    assert code == 0
    assert out[1:] == [
        f"  2026-06 {FORGING_ID!r}: 1 lines, total 0.10 USD (exact 0.105000000000, residual "
        "-0.005000000000)",
        "  2026-06 org-2: 1 lines, total 0.10 USD (exact 0.105000000000, residual -0.005000000000)",
    ]
    with psycopg.connect(warehouse_env) as conn:
        conn.execute("UPDATE invoice_line SET kind = 'adjustment'")
    for command in (("build",), ("export", "--out", "unused")):
        code, out, err = run_cli(capsys, "invoice", *command, "--month", "2026-06")
        assert code == 1 and len(err.splitlines()) == 1, err
        assert f"({FORGING_ID!r}: lines_sha256 differ from what close 1 recorded; org-2: " in err


def test_cli_build_of_a_closed_month_that_billed_nothing_says_so(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No close built lines for a closed month before anything billed: nothing was frozen."""
    run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance")
    code, out, _ = run_cli(capsys, "invoice", "build", "--month", "2026-01")
    assert code == 0
    assert out == ["2026-01: wholly closed with nothing billed in it: no lines"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("invoice", "build", "--month", "2026-13"), "not a month: '2026-13'; expected YYYY-MM"),
        (("invoice", "export", "--month", "2026-13", "--out", "x"), "not a month: '2026-13'"),
        (("invoice", "build", "--month", "June"), "not a month: 'June'"),
        (("invoice", "build", "--month", "2026-6"), "not a month: '2026-6'"),
        (("invoice", "build", "--month", "0001-01"), "'0001-01' is outside the years 1000"),
        (("invoice", "build", "--month", "9999-12"), "'9999-12' is outside the years 1000"),
        (("period", "close", "--through", "2026-07-01T00:30:00Z"), "is not on a whole hour"),
        (("period", "close", "--through", "2099-01-01T00:00:00Z"), "lies in the future"),
        (
            ("period", "close", "--through", "2026-07-01T00:00:00Z", "--by", ""),
            "closed_by is blank",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(
    warehouse_env: str,
    reader: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    code, out, err = run_cli(capsys, *argv)

    assert (code, out) == (1, [])
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (0,)
    assert reader.execute("SELECT count(*) FROM invoice_line").fetchone() == (0,)


def test_cli_export_into_a_directory_it_cannot_make_is_one_line_and_exit_1(
    warehouse_env: str, reader: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    add_a_line_each(reader, "acct-a")
    code, out, err = run_cli(
        capsys, "invoice", "export", "--month", "2026-06", "--out", "/proc/nowhere"
    )
    assert (code, out) == (1, [])
    assert err == "error: cannot write invoices into /proc/nowhere: No such file or directory\n"


@pytest.mark.parametrize("with_lines", [True, False], ids=["lines", "no-lines"])
@pytest.mark.parametrize(
    ("out_name", "reason"),
    [("invoices.csv", "it is not a directory"), ("a" * 300, "File name too long")],
    ids=["a-file", "a-name-too-long"],
)
def test_cli_export_into_an_out_it_cannot_use_is_one_line_and_exit_1_lines_or_none(
    warehouse_env: str,
    reader: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    with_lines: bool,
    out_name: str,
    reason: str,
) -> None:
    """A mistyped --out naming a file exited 0 for a month without lines ("0 account
    file(s)"); a name the system refuses to look up (too long, or under a directory that
    cannot be searched) was a traceback. Both fail alike whether or not the month has
    lines. Found by an audit and a second reading."""
    if with_lines:
        add_a_line_each(reader, "acct-a")
    a_file = tmp_path / "invoices.csv"
    a_file.write_text("kept\n")
    code, out, err = export_june(capsys, tmp_path / out_name)
    assert (code, out) == (1, [])
    assert err == f"error: cannot write invoices into {tmp_path / out_name}: {reason}\n"
    assert a_file.read_text() == "kept\n" and list(tmp_path.iterdir()) == [a_file]


def test_cli_close_refuses_a_through_finer_than_a_microsecond_that_datetime_would_drop(
    warehouse_env: str, reader: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    """Just after midnight is not midnight: a close through it is refused, not rounded."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["period", "close", "--through", "2026-07-01T00:00:00.0000001Z", "--by", "x"])
    assert exited.value.code == 2
    assert "finer than a microsecond" in capsys.readouterr().err
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (0,)


def test_cli_close_by_an_os_user_without_a_name_is_one_line_asking_for_by(
    warehouse_env: str,
    reader: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A container runs the CLI as a uid /etc/passwd does not list, without USER or
    LOGNAME: the default closer cannot be named. Like a blank --by, that is one line and
    exit 1 (cli.py: expected failures print one clean line), never a traceback."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(variable, raising=False)

    def no_such_uid(uid: int) -> object:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr("pwd.getpwuid", no_such_uid)

    code, out, err = run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z")

    assert (code, out) == (1, [])
    assert err.startswith("error: ") and err.count("\n") == 1 and "--by" in err, err
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (0,)


@pytest.mark.parametrize(
    ("argv", "holder"),
    [
        (("period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance"), False),
        (("invoice", "build", "--month", "2026-06"), True),
    ],
    ids=["close-behind-a-rating", "build-behind-a-close"],
)
def test_cli_close_or_build_that_gives_up_waiting_for_the_periods_lock_is_one_line(
    database_url: str,
    reader: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    holder: bool,
) -> None:
    """A close waits for the ratings and builds in flight, a build for a close in flight
    (docs/periods.md). Where the warehouse's role has a lock_timeout, as production roles
    often do, giving up that wait is an expected failure: one `error:` line that says it
    gave up waiting for the lock (cli.py: expected failures print one clean line), never a
    psycopg traceback; a close first says that it waits. Nothing was written either way:
    the close is one transaction."""
    impatient = make_conninfo(database_url, options="-c lock_timeout=200ms")
    monkeypatch.setenv("RATING_DATABASE_URL", impatient)
    with connect(database_url) as in_flight, in_flight.transaction():
        lock_periods(in_flight, exclusive=holder)
        code, out, err = run_cli(capsys, *argv)

    *first, last = err.splitlines()
    assert (code, out) == (1, [])
    assert last.startswith("error: ") and "lock" in last, err
    assert [line.split(",")[0] for line in first] == (
        [] if holder else ["waiting for the periods lock"]
    )
    assert reader.execute("SELECT count(*) FROM rating_period_close").fetchone() == (0,)


def test_cli_export_of_a_month_without_lines_exits_0_and_says_why(
    warehouse_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = export_june(capsys, tmp_path)
    assert (code, err) == (0, "")
    assert out[0] == f"0 account file(s) for 2026-06 in {tmp_path}"
    assert out[1].startswith("2026-06 has no invoice lines")


def test_cli_export_of_a_wholly_closed_month_without_lines_says_nothing_was_billed(
    warehouse_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A close builds the lines of every month it wholly closes: such a month without lines
    billed nothing, and "its lines are not built yet (invoice build)" cannot be why. Found
    by an audit of invoices."""
    assert (
        run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "x")[0] == 0
    )
    code, out, err = export_june(capsys, tmp_path)
    assert (code, err) == (0, "")
    assert out[1:] == [
        "2026-06 is wholly closed and has no invoice lines: nothing was billed in it"
    ]


def test_export_of_a_wholly_closed_month_without_lines_beside_its_files_does_not_say_build(
    warehouse_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Such a month billed nothing (its close built its lines): "`invoice build` it first"
    cannot be the way out. Found by a second reading."""
    assert (
        run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "x")[0] == 0
    )
    (tmp_path / "2026-06_acct-a.csv").write_text("an invoice of another warehouse\n")
    code, _, err = export_june(capsys, tmp_path)
    assert code == 1 and "invoice build" not in err, err
    assert err.endswith(
        "nothing written or removed. The month is wholly closed and billed nothing: they are "
        "no invoice of this warehouse (remove them)\n"
    ), err


def test_cli_export_names_each_file_it_removed(
    warehouse_env: str,
    reader: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: the month's files no account has now are removed and named."""
    add_a_line_each(reader, "acct-a")
    stale = tmp_path / "2026-06_acct-gone.csv"
    stale.write_text("an invoice no longer\n")

    code, out, err = export_june(capsys, tmp_path)

    assert (code, err) == (0, "")
    assert out[:3] == [
        str(tmp_path / "2026-06_acct-a.csv"),
        f"removed {stale}: no account of 2026-06 has this file now",
        f"1 account file(s) for 2026-06 in {tmp_path}",
    ]
    assert len(out) == 4 and out[3].startswith("2026-06 is open: these files are its draft")
    assert not stale.exists()


def test_cli_export_of_an_open_month_says_its_files_are_the_draft_as_last_built(
    warehouse_env: str,
    reader: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An export reads the built lines: of an open month, a rating since its build is not
    in them. Said each time, so no one sends a stale draft. (No time: a line's built_at is
    when a build last changed it, and a rating is stamped before it commits.)"""
    add_a_line_each(reader, "acct-a")

    code, out, _ = export_june(capsys, tmp_path)

    assert code == 0
    assert out[-1] == (
        "2026-06 is open: these files are its draft, its lines as last built; a rating "
        "committed since that build reaches them at the next invoice build --month 2026-06"
    )


def test_a_close_converges_every_month_it_wholly_closes_even_one_whose_usage_is_gone(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """June's lines were built, then its only event deleted and re-rated away: June has
    lines but no rated_usage, and the first close, through August, must still converge it
    (else stale lines would be frozen, billed forever and recorded by no close)."""
    gone = usage("org-1", "base-small", at(6, 15, 10), 100_000)
    stays = usage("org-2", "base-small", at(7, 15, 10), 200_000)
    add_events([gone, stays])
    rate(database_url, [gone, stays])
    build(database_url, JUNE)
    delete_events(database_url, [gone.event_id])
    rate(database_url, [gone])

    closed = close(database_url, AUGUST)

    assert closed.months_closed == (JUNE, JULY)
    assert lines(reader, JUNE) == [] == expected_lines(reader, JUNE)
    assert [(t.month, t.account_id) for t in closed.invoices] == [(JULY, "org-2")]


def test_export_removes_the_month_files_of_accounts_without_lines_and_keeps_the_rest(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """A re-export leaves exactly the month's invoices in the directory: the file of an
    account whose lines went (an open month's mapping moved) would read as an invoice."""
    add_a_line_each(reader, "acct-a", "acct-b")
    first = export_invoice(reader, JUNE, tmp_path)
    other_month = tmp_path / "2026-07_acct-b.csv"
    other_month.write_text("July's invoice\n")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept\n")
    reader.execute("DELETE FROM invoice_line WHERE account_id = 'acct-b'")
    reader.commit()

    again = export_invoice(reader, JUNE, tmp_path)

    assert [p.name for p in first.written] == ["2026-06_acct-a.csv", "2026-06_acct-b.csv"]
    assert [p.name for p in again.written] == ["2026-06_acct-a.csv"]
    assert [p.name for p in again.removed] == ["2026-06_acct-b.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-06_acct-a.csv",
        "2026-07_acct-b.csv",
        "notes.txt",
    ]
    assert other_month.read_text() == "July's invoice\n"


def test_export_file_names_never_collide_even_with_an_id_shaped_like_a_digest_name(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """A short account id may spell out another's prefix-and-digest name: the digest form
    holds a character percent-encoding never leaves, so the two files stay apart."""
    long_id = "a" * 250
    digest = hashlib.sha256(long_id.encode()).hexdigest()
    lookalikes = [long_id, f"{'a' * 96}...sha256-{digest}", f"{'a' * 96}+sha256-{digest}"]
    add_a_line_each(reader, *lookalikes)

    written = export_invoice(reader, JUNE, tmp_path).written

    assert len(set(written)) == len(lookalikes) == len(list(tmp_path.iterdir()))


def test_export_file_names_differ_where_case_is_ignored_as_on_macos_and_windows(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """ORG-A and org-a are two accounts; on a case-insensitive filesystem (APFS, NTFS,
    SMB) their plain names are one file, and the second rename replaced the first's
    invoice, reported as written. Ids that differ only in case take the digest form.
    Found by an audit."""
    accounts = ["ORG-A", "org-a", "Org-A", "org-b"]
    add_a_line_each(reader, *accounts)

    written = export_invoice(reader, JUNE, tmp_path).written

    assert len({path.name.casefold() for path in written}) == len(accounts)
    assert "2026-06_org-b.csv" in {path.name for path in written}  # no twin: kept plain
    for path in written:
        *_, total = csv.DictReader(path.open(newline=""))
        assert total["account_id"] in accounts


def test_a_written_file_the_directory_lists_under_another_name_is_not_swept_as_stale(
    reader: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case-insensitive filesystem may keep an earlier file's spelling (ORG-A.csv) when
    the export renames org-a's over it: a sweep by name removed the invoice just written.
    Simulated with a second name of the same file."""
    add_a_line_each(reader, "org-a")
    rename_into_place = invoices._rename_into_place

    def renamed_then_listed_twice(pending: list[tuple[Path, Path]]) -> None:
        rename_into_place(pending)
        for _, path in pending:
            os.link(path, path.with_name(path.name.upper().replace(".CSV", ".csv")))

    monkeypatch.setattr(invoices, "_rename_into_place", renamed_then_listed_twice)
    exported = export_invoice(reader, JUNE, tmp_path)

    assert exported.removed == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-06_ORG-A.csv", "2026-06_org-a.csv"]


def test_export_of_a_month_without_lines_refuses_while_files_of_it_stand(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """No lines at all is an export before `invoice build`, or against another database,
    more often than a month whose every line went: it removes nothing. But a file left from
    an earlier export is an invoice the warehouse no longer holds (found by an audit: a
    correction withdrawn to nothing left a 5 USD invoice standing), so it is an error that
    names it, not a quiet success."""
    add_a_line_each(reader, "acct-a")
    export_invoice(reader, JUNE, tmp_path)
    reader.execute("DELETE FROM invoice_line")
    reader.commit()

    with pytest.raises(ExportFailed, match=r"2026-06 has no invoice lines, but .* holds "
                       r"1 file of it from an earlier export: 2026-06_acct-a\.csv"):  # fmt: skip
        export_invoice(reader, JUNE, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["2026-06_acct-a.csv"]
    (tmp_path / "2026-06_acct-a.csv").unlink()
    assert export_invoice(reader, JUNE, tmp_path) == Exported((), ())


def test_a_refusal_over_thousands_of_standing_files_names_ten_and_counts_the_rest(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """Its one line named every file: hundreds of KB for 3,052 files. Found by an audit."""
    for n in range(12):
        (tmp_path / f"2026-06_acct-{n:02}.csv").write_text("kept\n")
    with pytest.raises(ExportFailed) as refused:
        export_invoice(reader, JUNE, tmp_path)
    named = ", ".join(f"2026-06_acct-{n:02}.csv" for n in range(10))
    assert f"holds 12 files of it from an earlier export: {named}, and 2 more; " in str(
        refused.value
    )
    assert len(list(tmp_path.iterdir())) == 12


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_an_export_that_waited_for_another_of_its_month_writes_the_lines_built_meanwhile(
    database_url: str, reader: psycopg.Connection, tmp_path: Path, isolation: str
) -> None:
    """Exports of one month serialize, the later one reading the lines once it runs: never
    one export sweeping the other's partial files, nor removing a file the other just wrote
    from lines it read before they were built. So under any default isolation of the
    session: under REPEATABLE READ the statement that waits for the lock would take the
    snapshot, as for builds, closes and ratings."""
    add_a_line_each(reader, "acct-old")
    level = isolation.replace(" ", "\\ ")
    later_url = make_conninfo(database_url, options=f"-c default_transaction_isolation={level}")
    exported: list[Exported] = []
    with connect(database_url) as earlier, earlier.transaction():
        lock_export(earlier, JUNE)
        later = threading.Thread(
            target=lambda: exported.append(export_in_own_connection(later_url, tmp_path))
        )
        later.start()
        wait_until_a_lock_is_awaited(reader)
        add_a_line_each(reader, "acct-new")
    later.join(timeout=30)

    assert [sorted(p.name for p in e.written) for e in exported] == [
        ["2026-06_acct-new.csv", "2026-06_acct-old.csv"]
    ]


def test_an_export_waits_for_a_close_in_flight_and_writes_the_lines_it_froze(
    database_url: str,
    reader: psycopg.Connection,
    june: list[BillingEvent],
    add_events: AddEvents,
    tmp_path: Path,
) -> None:
    """Contract 11: a wholly closed month's invoices are what its close recorded. An export
    read the month's stale draft while a close in flight rebuilt the lines it then froze,
    and wrote that draft after the close committed. Found by an audit of concurrency."""
    build(database_url, JUNE)  # a draft of June
    late = [usage("org-2", "base-small", at(6, 15, 10, 40), 9_000_000)]
    add_events(late)
    rate(database_url, late)  # the draft is stale now
    exported: list[Exported] = []
    with connect(database_url) as blocker, blocker.transaction():
        # A real close, held in flight once it has rebuilt June's lines: it waits to record
        # their totals.
        blocker.execute("LOCK TABLE rating_period_close_total IN ACCESS EXCLUSIVE MODE")
        closer = threading.Thread(target=lambda: close(database_url, JULY))
        closer.start()
        wait_until_a_lock_is_awaited(reader, "relation")
        exporter = threading.Thread(
            target=lambda: exported.append(export_in_own_connection(database_url, tmp_path))
        )
        exporter.start()
        wait_until_a_lock_is_awaited(reader)
    closer.join(timeout=30)
    exporter.join(timeout=30)

    (org_2,) = [t for t in totals(database_url, JUNE) if t.account_id == "org-2"]
    total_row = (tmp_path / "2026-06_org-2.csv").read_text().splitlines()[-1]
    assert f",{org_2.amount_exact:f}," in total_row, total_row


def test_an_export_of_a_closed_month_whose_lines_differ_from_its_close_writes_nothing(
    database_url: str, reader: psycopg.Connection, june: list[BillingEvent], tmp_path: Path
) -> None:
    """Contract 11: a wholly closed month's invoices are what its close recorded. `invoice
    build` refused such a month, yet its export wrote the changed amounts (and removed the
    file of an account whose lines went). Found by running the runbooks as written."""
    close(database_url, JULY)
    export_invoice(reader, JUNE, tmp_path)
    issued = {p.name: p.read_text() for p in tmp_path.iterdir()}
    reader.execute(
        "UPDATE invoice_line SET quantity_tokens = quantity_tokens + 1000000,"
        " amount_exact = amount_exact + unit_rate_per_mtok,"
        " amount = round_half_even(amount_exact + unit_rate_per_mtok, 2)"
        " WHERE month = %s AND account_id = 'org-1' AND token_class = 'output'",
        (JUNE,),
    )
    reader.execute("DELETE FROM invoice_line WHERE month = %s AND account_id = 'org-2'", (JUNE,))
    reader.commit()

    with pytest.raises(ExportFailed, match=r"2026-06 is wholly closed, but 2 invoice\(s\) differ"):
        export_invoice(reader, JUNE, tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == issued


def test_an_export_of_a_month_without_lines_creates_no_directory(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    assert export_invoice(reader, JUNE, tmp_path / "new") == Exported((), ())
    assert not (tmp_path / "new").exists()


def export_in_own_connection(database_url: str, out: Path) -> Exported:
    with connect(database_url) as conn:
        return export_invoice(conn, JUNE, out)


def exported_then_remapped(
    url: str, reader: psycopg.Connection, capsys: pytest.CaptureFixture[str], out: Path
) -> dict[str, bytes]:
    """June built and exported into ``out``, then built again with org-1's lines moved to
    acme's invoice; the exported files, by name."""
    build(url, JUNE)
    assert run_cli(capsys, "invoice", "export", "--month", "2026-06", "--out", str(out))[0] == 0
    exported = {path.name: path.read_bytes() for path in out.iterdir()}
    reader.execute("INSERT INTO billing_account (auth_id, account_id) VALUES ('org-1', 'acme')")
    build(url, JUNE)
    return exported


def test_an_export_stopped_while_writing_leaves_the_previous_export_whole_and_says_so(
    warehouse_env: str,
    june: list[BillingEvent],
    reader: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each file was renamed into place as soon as written: stopped after the first, the
    directory held the new file of an account beside the old file of the account its
    lines had moved from, the same usage in two invoices, and the command said nothing.
    Every file is now written and synced first, and only then are all renamed into place.
    Found by an audit of interruptions."""
    before = exported_then_remapped(warehouse_env, reader, capsys, tmp_path)
    synced = 0

    def interrupted_at_the_second(descriptor: int) -> None:
        nonlocal synced
        synced += 1
        if synced == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("rating_pipeline.warehouse.invoices.os.fsync", interrupted_at_the_second)
    code, out, err = export_june(capsys, tmp_path)

    assert code == 130 and out == []
    assert err == (
        f"interrupted: {tmp_path} holds 2026-06's files as an earlier export wrote them, or "
        "some or all as this one did: export the month again (nothing in the warehouse "
        "changed)\n"
    )
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_an_account_whose_file_cannot_be_written_is_named_in_one_line(
    reader: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its file's name is settled only once every account's is written (case twins take
    the digest form): the line named a plain name the file would not have had. Found by a
    second reading."""
    add_a_line_each(reader, "ORG-A", "org-a")
    write_synced = invoices._write_synced

    def no_space_for_the_second(rows: Iterable[list[object]], path: Path) -> None:
        if any(tmp_path.iterdir()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_synced(rows, path)

    monkeypatch.setattr(invoices, "_write_synced", no_space_for_the_second)
    with pytest.raises(ExportFailed) as refused:
        export_invoice(reader, JUNE, tmp_path)

    assert str(refused.value) == (
        f"cannot write the invoice of org-a into {tmp_path}: No space left on device; "
        "no file of 2026-06 was replaced"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_cannot_rename_a_file_into_place_says_which_in_one_line(
    warehouse_env: str,
    june: list[BillingEvent],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A directory where an account's file goes: the rename failed with a traceback,
    leaving the files written aside behind. Found by a second reading."""
    build(warehouse_env, JUNE)
    (tmp_path / "2026-06_org-2.csv").mkdir()
    code, out, err = export_june(capsys, tmp_path)
    assert code == 1 and out == []
    assert err == (
        f"error: cannot replace {tmp_path / '2026-06_org-2.csv'}: Is a directory; 1 of the "
        "month's 2 files replaced before it: export the month again once it can be\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "2026-06_org-1.csv",
        "2026-06_org-2.csv",
    ]


def test_an_export_stopped_during_its_renames_leaves_no_file_aside(
    warehouse_env: str,
    june: list[BillingEvent],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C (or SIGTERM) after the first rename left every file not yet renamed aside, a
    whole hidden invoice each, until the next export (found by an audit)."""
    build(warehouse_env, JUNE)
    real_replace = Path.replace
    renamed = 0

    def interrupted_after_the_first(self: Path, target: Path) -> Path:
        nonlocal renamed
        renamed += 1
        if renamed == 2:
            raise KeyboardInterrupt
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", interrupted_after_the_first)
    code, _, _ = export_june(capsys, tmp_path)

    assert code == 130
    assert sorted(path.name for path in tmp_path.iterdir()) == ["2026-06_org-1.csv"]


@pytest.mark.parametrize("refusal", [errno.EINVAL, errno.ENOTSUP], ids=["EINVAL", "ENOTSUP"])
def test_an_export_onto_a_filesystem_that_cannot_sync_a_directory_completes(
    warehouse_env: str,
    june: list[BillingEvent],
    reader: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    refusal: int,
) -> None:
    """Some network and FUSE filesystems refuse fsync on a directory (EINVAL, or ENOTSUP):
    the export ended in a traceback after its renames, the moved account's old file left in
    place (found by a second reading; ENOTSUP untested, found by a mutation pass). Files are
    still synced one by one."""
    exported_then_remapped(warehouse_env, reader, capsys, tmp_path)
    real_fsync = os.fsync

    def refused_on_directories(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(refusal, os.strerror(refusal))
        real_fsync(descriptor)

    monkeypatch.setattr("rating_pipeline.warehouse.invoices.os.fsync", refused_on_directories)
    code, _, err = export_june(capsys, tmp_path)

    assert (code, err) == (0, "")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "2026-06_acme.csv",
        "2026-06_org-2.csv",
    ]


def test_an_export_whose_session_ends_while_writing_replaces_nothing(
    warehouse_env: str,
    june: list[BillingEvent],
    reader: psycopg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its session gone, so is its export lock: it went on writing, renaming and sweeping
    while another export could hold the lock (and have its files swept). It now asks the
    warehouse before it renames anything. Found by an audit of interruptions."""
    before = exported_then_remapped(warehouse_env, reader, capsys, tmp_path)
    real_fsync = os.fsync

    def terminated_while_syncing(descriptor: int) -> None:
        reader.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        real_fsync(descriptor)

    monkeypatch.setattr("rating_pipeline.warehouse.invoices.os.fsync", terminated_while_syncing)
    code, out, err = export_june(capsys, tmp_path)

    assert code == 1 and out == []
    assert err.startswith("error: the connection was lost (AdminShutdown: "), err
    assert err.endswith(": export the month again (nothing in the warehouse changed)\n"), err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_export_removes_only_files_and_sweeps_its_own_partial_files(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """A directory named like a month's file is not an invoice; a partial file a killed
    export left is the month's, and goes; so does a dangling link named like an invoice
    (its target went: nothing else would ever remove it)."""
    add_a_line_each(reader, "acct-a")
    (tmp_path / "2026-06_a-directory.csv").mkdir()
    (tmp_path / "2026-06_zz-stale.csv").write_text("stale\n")
    (tmp_path / "2026-06_zz-dangling.csv").symlink_to(tmp_path / "gone.csv")
    (tmp_path / ".2026-06_0123abcd.partial").write_text("half an invoice")

    exported = export_invoice(reader, JUNE, tmp_path)

    assert [p.name for p in exported.removed] == ["2026-06_zz-dangling.csv", "2026-06_zz-stale.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-06_a-directory.csv",
        "2026-06_acct-a.csv",
    ]


def test_the_first_and_last_hours_of_a_month_are_on_that_months_invoice_only(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    events = [
        usage("org-1", "base-large", at(6, 30, 23, 59), 1_000_000),
        usage("org-1", "base-large", at(7, 1, 0, 0), 2_000_000),
    ]
    add_events(events)
    rate(database_url, events)
    for month in (JUNE, JULY, AUGUST):
        build(database_url, month)

    lines = reader.execute(
        "SELECT month, quantity_tokens FROM invoice_line WHERE token_class = 'input' ORDER BY month"
    ).fetchall()
    assert lines == [(JUNE, 1_000_000), (JULY, 2_000_000)]


def test_each_token_class_is_billed_at_its_own_rate(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """Every class at a rate of its own, so a line priced at another class's rate shows."""
    rates = {c: str(k + 1) for k, c in enumerate(TOKEN_CLASSES)}  # input 1, ..., image_input 9
    pricebooks = Pricebooks(
        (make_version({"m": own(rates["input"], rates["output"], by_class={
            c: r for c, r in rates.items() if c not in ("input", "output")
        })}),)
    )  # fmt: skip
    tokens = {f"{c}_tokens": 1_000 * (k + 1) for k, c in enumerate(TOKEN_CLASSES)}
    event = usage("org-1", "m", at(6, 15, 10), **tokens)
    add_events([event])
    rate(database_url, [event], pricebooks)

    build(database_url, JUNE)

    assert lines(reader, JUNE) == expected_lines(reader, JUNE)
    assert {row[5]: (row[6], row[7]) for row in lines(reader, JUNE)} == {
        c: (Decimal(rates[c]), 1_000 * (k + 1)) for k, c in enumerate(TOKEN_CLASSES)
    }


def test_a_rebuild_keeps_a_usage_line_and_an_adjustment_line_of_the_same_key_apart(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, june: list[BillingEvent]
) -> None:
    """July holds a usage line and an adjustment line alike in all but kind; a rebuild after
    July's usage changed updates the usage line only."""
    close(database_url, JULY)
    late = usage("org-1", "base-large", at(6, 21, 8, 30), 40_000)  # adjustment: 3.00, input
    july = usage("org-1", "base-large", at(7, 2, 0, 30), 1_000)  # usage: 3.00, input
    add_events([late])
    rate(database_url, [late])
    build(database_url, JULY)
    add_events([july])
    rate(database_url, [july])

    rebuilt = build(database_url, JULY)

    assert (rebuilt.inserted, rebuilt.updated, rebuilt.deleted) == (0, 1, 0)
    assert lines(reader, JULY) == expected_lines(reader, JULY) == [
        line("org-1", "adjustment", "base-large", "standard/standard", "input", "3", 40_000,
             "0.12", "0.12"),
        line("org-1", "usage", "base-large", "standard/standard", "input", "3", 10_999,
             "0.032997", "0.03"),
    ]  # fmt: skip
    assert build(database_url, JULY).written == 0


def test_an_adjustment_is_on_its_bill_months_invoice_and_no_later_ones(
    database_url: str, reader: psycopg.Connection, add_events: AddEvents, june: list[BillingEvent]
) -> None:
    close(database_url, JULY)
    late = usage("org-1", "base-large", at(6, 15, 10, 50), 40_000)
    add_events([late])
    rate(database_url, [late])  # billed on July
    close(database_url, AUGUST)  # stamps it; it stays on July's invoice

    build(database_url, AUGUST)

    assert lines(reader, AUGUST) == expected_lines(reader, AUGUST) == []
    assert [row[1] for row in lines(reader, JULY)] == ["adjustment", "usage"]


@pytest.mark.parametrize(
    "change",
    [
        "kind = 'adjustment'",
        "model_id = 'n'",
        "service_tier = 'batch'",
        "context_tier = 'long'",
        "token_class = 'output'",
        "unit_rate_per_mtok = 2, quantity_tokens = 500000",  # the same amounts
    ],
)
def test_the_sha256_a_close_records_changes_with_any_key_column_of_a_line(
    reader: psycopg.Connection, change: str
) -> None:
    """Line count and totals alike, only the sha256 tells a closed month's line changed."""
    add_a_line_each(reader, "acct")
    [before] = month_totals(reader, JUNE)
    with reader.transaction(force_rollback=True):
        reader.execute(f"UPDATE invoice_line SET {change}")
        [after] = month_totals(reader, JUNE)

    assert (after.line_count, after.amount_exact, after.amount) == (
        before.line_count, before.amount_exact, before.amount,
    )  # fmt: skip
    assert after.lines_sha256 != before.lines_sha256


def test_the_sha256_a_close_records_changes_with_the_quantity_of_a_free_line(
    reader: psycopg.Connection,
) -> None:
    """A line at rate 0 (free cache reads) costs 0 whatever its quantity, so the amount's
    constraint allows another quantity: only the sha256 tells the invoice changed."""
    reader.execute(
        "INSERT INTO invoice_line VALUES (%s, 'acct', 'usage', 'm', 'standard', 'standard', "
        "'cache_read', 0, 4000, 0, 0, now(), 'test')",
        (JUNE,),
    )
    reader.commit()
    [before] = month_totals(reader, JUNE)
    with reader.transaction(force_rollback=True):
        reader.execute("UPDATE invoice_line SET quantity_tokens = 5")
        [after] = month_totals(reader, JUNE)

    assert (after.line_count, after.amount_exact) == (before.line_count, before.amount_exact)
    assert after.lines_sha256 != before.lines_sha256


def test_lines_of_an_account_the_close_recorded_nothing_for_are_a_mismatch() -> None:
    now = MonthTotal(JUNE, "org-9", 1, Decimal("1.5"), Decimal("1.50"), "0" * 64)
    (found,) = mismatches([JUNE], {JUNE: [now]}, [])
    assert (found.account_id, found.recorded, found.why) == (
        "org-9", None, "lines the close recorded nothing for"
    )  # fmt: skip


def test_a_closed_month_whose_lines_moved_to_an_account_it_never_invoiced_is_refused(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Contract 11: build and export both name the invoice, and the export writes nothing."""
    run_cli(capsys, "period", "close", "--through", "2026-07-01T00:00:00Z", "--by", "finance")
    with psycopg.connect(warehouse_env) as conn:
        conn.execute("UPDATE invoice_line SET account_id = 'org-9' WHERE account_id = 'org-2'")

    code, out, err = run_cli(capsys, "invoice", "build", "--month", "2026-06")
    assert (code, out) == (1, [])
    assert "2 invoice(s) differ" in err and "org-9: lines the close recorded nothing for" in err

    code, out, err = run_cli(
        capsys, "invoice", "export", "--month", "2026-06", "--out", str(tmp_path / "out")
    )
    assert code == 1 and "org-9: lines the close recorded nothing for" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command",
    [
        ("period", "close", "--through", "2026-07-01T00:00:00Z"),
        # a dry run that would write nothing answered that the close may be made; found by
        # an audit
        ("period", "close", "--through", "2026-06-15T11:00:00Z", "--dry-run"),
        ("invoice", "build", "--month", "2026-06"),
        ("rate", "--from", "2026-06-30T23:00:00Z", "--to", "2026-07-01T00:00:00Z"),
    ],
)
def test_a_command_pointed_at_a_read_only_session_says_so_and_where_to_go(
    warehouse_env: str,
    june: list[BillingEvent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
) -> None:
    """A standby, or a role with default_transaction_read_only: the server's own message
    names a statement (`cannot execute SELECT`), not the cause."""
    monkeypatch.setenv(
        "RATING_DATABASE_URL",
        make_conninfo(warehouse_env, options="-c default_transaction_read_only=on"),
    )
    code, _, err = run_cli(capsys, *command)
    assert code == 1
    assert "the session is read-only" in err and "the primary" in err, err


def test_a_zero_residual_is_written_as_plain_decimal_text(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """An invoice whose total equals its exact sum: `0.000000000000`, never `0E-12`. Only
    a non-zero residual was pinned. Found by a mutation pass."""
    add_a_line_each(reader, "acct-a")
    [written] = export_invoice(reader, JUNE, tmp_path).written
    *_, total = csv.DictReader(written.open(newline=""))
    assert total["residual"] == "0.000000000000"


def test_an_export_through_a_session_in_another_time_zone_writes_instants_in_utc(
    reader: psycopg.Connection, tmp_path: Path
) -> None:
    """connect() sets UTC, but export_invoice takes any connection: its instants are UTC
    text whatever the session's zone. Found by a mutation pass."""
    add_a_line_each(reader, "acct-a")
    reader.execute("SET TIME ZONE 'Asia/Kathmandu'")
    [written] = export_invoice(reader, JUNE, tmp_path).written
    line, total = csv.DictReader(written.open(newline=""))
    assert line["month"] == total["month"] == "2026-06-01T00:00:00+00:00"
    assert line["built_at"].endswith("+00:00")


def test_a_closed_months_sha256_is_in_key_order_whatever_order_the_lines_are_stored_in(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Two lines that differ only in their rate, stored rate-descending: the sha256 a close
    records is of the lines in key order, rate included, so reordering the table
    (CLUSTER, a dump and restore, another plan) leaves the closed month as recorded."""
    database = reader.info.dbname
    for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
        reader.execute(f'ALTER DATABASE "{database}" SET {setting} = off')  # another plan
    corrected = [usage("org-1", "base-large", at(6, 21, 8), 2_000_000)]  # input at 3.00
    add_events(corrected)
    rate(database_url, corrected)
    build(database_url, JUNE)
    earlier = [usage("org-1", "base-large", at(6, 15, 10), 1_000_000)]  # input at 2.50
    add_events(earlier)
    rate(database_url, earlier)
    build(database_url, JUNE)  # the 2.50 line is stored after the 3.00 one
    close(database_url, JULY)
    reader.execute("CLUSTER invoice_line USING invoice_line_pkey")  # now rate-ascending

    rebuilt = build(database_url, JUNE)

    assert rebuilt.frozen
    assert rebuilt.differing == ()


def test_building_a_month_leaves_the_lines_of_later_months_as_they_are(
    database_url: str,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """A build converges its own month's lines only: July's, built first, stay when June is
    built after them."""
    events = [
        usage("org-1", "base-large", at(6, 15, 10), 1_000_000),
        usage("org-1", "base-large", at(7, 2, 0), 9_999),
    ]
    add_events(events)
    rate(database_url, events)
    build(database_url, JULY)
    july = lines(reader, JULY)

    built = build(database_url, JUNE)

    assert (built.inserted, built.deleted) == (1, 0)
    assert lines(reader, JULY) == july
