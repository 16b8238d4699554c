"""The database path prices in SQL and keeps only the rules in Python (contract 5, 6, 7).

Its stored output and its logged totals equal the oracle's,
and its Python work grows with the distinct (model, bases) of a window, never with rollups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating_pipeline import cli, pricing
from rating_pipeline.pricebook.model import (
    CONTEXT_TIERS,
    SERVICE_TIERS,
    TOKEN_CLASSES,
    Pricebooks,
    PricebookVersion,
)
from rating_pipeline.records import AMBIGUOUS_BASE, ID_PREFIX_LENGTH, INVALID_EVENT, UNPRICED
from rating_pipeline.warehouse import engine, migrations
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.extract import parse_bases_key
from rating_pipeline.warehouse.outputs import (
    ClassCost,
    TierCost,
    cost_by_tier,
    cost_by_token_class,
    costliest_rollups,
)
from rating_pipeline.windows import Window, WindowError
from tests import oracle
from tests.conftest import delete_events, insert_events, stored_window, truncate_all
from tests.factories import BillingEvent, derived, make_event, make_version, own, with_tokens
from tests.strategies import WINDOW, pricebook_versions

AddEvents = Callable[[Iterable[BillingEvent]], int]
# Ids that break naive rendering or ordering: escapes, controls, locale-vs-code-point order,
# combining marks and characters outside the BMP.
NASTY_IDS = (
    "org-1",
    "Zeta",
    "alpha",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "cr\rhere",
    "\\N",
    "é",
    "e\u0301",
    "emoji-\U0001f600",
    "",
    " \t",
    "x",
    "x\x01",  # sorts before "x" followed by a TAB: key order is code point order
)
NASTY_BASES = (None, "base-a", "base-b", "b\\a\ts\ne-\U0001f600", "")
DATABASE_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def nasty_events(draw: st.DrawFn, version: PricebookVersion) -> list[BillingEvent]:
    model_ids = (*version.models, "ft:unlisted", "mystery", "", "ft:\U0001f600\\x")
    return [
        make_event(
            draw(st.sampled_from(NASTY_IDS)),
            draw(st.sampled_from(model_ids)),
            draw(st.sampled_from(NASTY_BASES)),
            draw(st.one_of(st.integers(-2, 10**6), st.just(2**62))),
            draw(st.one_of(st.integers(-2, 10**6), st.just(2**62))),
            event_id=f"ev-{n}",
        )
        for n in range(draw(st.integers(0, 30)))
    ]


@settings(DATABASE_SETTINGS, max_examples=25)
@given(data=st.data())
def test_stored_rows_and_logged_totals_equal_the_oracle_whatever_the_ids(
    database_url: str, data: st.DataObject
) -> None:
    version = data.draw(pricebook_versions(), label="version")
    events = data.draw(nasty_events(version), label="events")
    truncate_all(database_url)
    insert_events(database_url, events)
    with connect(database_url) as conn:
        result = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)
        logged = conn.execute(
            "SELECT events_read, events_rated, total_cost_usd FROM rating_log"
        ).fetchone()
        conn.rollback()
    expected = oracle.rate_window(WINDOW, version, events)
    assert stored == expected
    events_rated = sum(r.event_count for r in expected.rollups)
    assert logged == (expected.events_read, events_rated, expected.total_cost_usd)
    assert result.exception_rows == expected.exceptions
    assert result.rollup_count == len(expected.rollups)
    assert result.total_cost_usd == expected.total_cost_usd


def test_bases_key_keeps_null_as_a_value(conn: psycopg.Connection, add_events: AddEvents) -> None:
    version = make_version({"base-a": own("1", "2")}, fine_tune_multiplier="1.5")
    events = [
        make_event("org-1", "ft:x", None),
        make_event("org-1", "ft:x", "base-a"),
        make_event("org-2", "ft:x", None),
    ]
    add_events(events)
    result = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
    details = [(e.auth_id, e.reason, e.detail) for e in result.exception_rows]
    assert details == [
        ("org-1", AMBIGUOUS_BASE, 'distinct base_model values: ["base-a", null]'),
        ("org-2", "unpriced", "fine-tune without a base: its events carry no base_model"),
    ]
    assert parse_bases_key('["base-a", null]') == frozenset({"base-a", None})
    assert result.exception_rows == oracle.rate_window(WINDOW, version, events).exceptions


@pytest.mark.parametrize(
    "loss",
    [
        "DELETE FROM window_resolution",  # the rollups' answers go missing
        "UPDATE window_sums SET input_tokens = input_tokens - 1",  # tokens, not their events
    ],
)
def test_conservation_failure_rolls_back_every_write(
    database_url: str, reader: psycopg.Connection, monkeypatch: Any, loss: str
) -> None:
    """Conservation holds events and every class's tokens (contract 6)."""
    insert_events(database_url, [make_event("org-1"), make_event("org-2")])
    version = make_version({"base-large": own("2.5", "10")})
    resolve_window = engine.resolve_window

    def losing_resolve_window(conn: psycopg.Connection, *args: Any) -> Any:
        rows = resolve_window(conn, *args)
        conn.execute(loss)
        return rows

    monkeypatch.setattr(engine, "resolve_window", losing_resolve_window)
    with connect(database_url) as conn, pytest.raises(engine.ConservationError, match="read"):
        rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
    written = reader.execute(
        "SELECT (SELECT count(*) FROM rated_usage), (SELECT count(*) FROM rating_exception),"
        " (SELECT count(*) FROM rating_log)"
    ).fetchone()
    assert written == (0, 0, 0)


class CountingCursor(psycopg.Cursor[Any]):
    """A cursor that counts the rows it hands to Python."""

    fetched = 0

    def fetchone(self) -> Any:
        row = super().fetchone()
        CountingCursor.fetched += row is not None
        return row

    def fetchmany(self, size: int = 0) -> list[Any]:
        rows = super().fetchmany(size)
        CountingCursor.fetched += len(rows)
        return rows

    def fetchall(self) -> list[Any]:
        rows = super().fetchall()
        CountingCursor.fetched += len(rows)
        return rows

    def __next__(self) -> Any:
        row = super().__next__()
        CountingCursor.fetched += 1
        return row


def _principals(count: int) -> list[BillingEvent]:
    events = []
    for n in range(count):
        events += [
            make_event(f"org-{n}", "base-large", None),
            make_event(f"org-{n}", "base-large", "base-small"),
            make_event(f"org-{n}", "ft:tuned", "base-large"),
            make_event(f"org-{n}", "ft:mixed", "base-large" if n % 2 else "base-small"),
            make_event(f"org-{n}", "mystery", None, input_tokens=-1),
        ]
    return events


def test_rerate_does_python_work_per_distinct_model_and_bases_not_per_rollup(
    database_url: str, monkeypatch: Any
) -> None:
    version = make_version(
        {"base-large": own("2.5", "10"), "base-small": own("0.15", "0.6")},
        fine_tune_multiplier="1.5",
    )
    calls: list[tuple[str, frozenset[str | None]]] = []
    resolve = pricing.resolve

    def counting_resolve(
        version: PricebookVersion, model_id: str, bases: frozenset[str | None]
    ) -> pricing.Priced | pricing.Excluded:
        calls.append((model_id, bases))
        return resolve(version, model_id, bases)

    monkeypatch.setattr(pricing, "resolve", counting_resolve)
    fetched: dict[int, Sequence[int]] = {}
    for principals in (3, 300):
        truncate_all(database_url)
        events = _principals(principals)
        insert_events(database_url, events)
        with connect(database_url) as conn:
            conn.cursor_factory = CountingCursor
            per_run = []
            bases: dict[tuple[str, str], set[str | None]] = {}
            for event in events:
                if event.input_tokens >= 0 and event.output_tokens >= 0:
                    bases.setdefault((event.auth_id, event.model_id), set()).add(event.base_model)
            distinct = {(model_id, frozenset(seen)) for (_, model_id), seen in bases.items()}
            for run in ("run-1", "run-2"):
                calls.clear()
                CountingCursor.fetched = 0
                result = rate_window(conn, WINDOW, Pricebooks((version,)), run)
                per_run.append(CountingCursor.fetched)
                assert sorted(calls, key=repr) == sorted(distinct, key=repr)
                assert run == "run-1" or result.rows_written == 0
            assert result.rollup_count == 3 * principals
        fetched[principals] = per_run
    # Only the invalid-event exceptions (one per principal) are read back in full.
    assert fetched[300][0] - fetched[3][0] == fetched[300][1] - fetched[3][1] == 300 - 3


def test_largest_rollups_are_the_costliest_with_ties_broken_by_code_point(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    version = make_version({"base-large": own("2.5", "10"), "base-small": own("0.15", "0.6")})
    events = [
        make_event(auth_id, model_id, None, tokens, tokens)
        for auth_id, model_id, tokens in [
            ("org-b", "base-large", 100),
            ("org-a", "base-large", 100),  # ties org-b: code point order decides
            ("Org-c", "base-large", 100),  # "O" sorts before "o" by code point
            ("org-d", "base-small", 10**6),
            ("org-e", "base-small", 1),
            ("org-f", "base-large", 7),
            ("org-g", "base-large", 100_000),
            # 0.375 USD each: the key decides, auth_id before model_id
            ("org-h", "base-small", 500_000),
            ("org-i", "base-large", 30_000),
        ]
    ]
    add_events(events)
    rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
    expected = sorted(
        oracle.rate_window(WINDOW, version, events).rollups,
        key=lambda r: (-r.cost_usd, r.auth_id, r.model_id),
    )[:6]  # cut between org-a and org-b, tied
    assert [r.auth_id for r in expected] == ["org-g", "org-d", "org-h", "org-i", "Org-c", "org-a"]
    assert costliest_rollups(conn, WINDOW, 6) == tuple(expected)
    assert costliest_rollups(conn, WINDOW, 3) == tuple(expected[:3])  # org-h, not org-i


def test_rollup_bases_come_from_the_snapshot_the_usage_was_summed_in(
    database_url: str, add_events: AddEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = make_version({"base-a": own("1", "2")}, fine_tune_multiplier="1.5")
    events = [
        make_event("org-1", "ft:x", "base-a", event_id="ev-a1"),
        make_event("org-1", "ft:x", "base-a", event_id="ev-a2"),
        make_event("org-1", "ft:x", None, event_id="ev-null"),
    ]
    add_events(events)
    read_window_usage = engine.read_window_usage

    def summed_then_changed_upstream(conn: psycopg.Connection, *args: Any) -> Any:
        read = read_window_usage(conn, *args)
        # Committed after the sums were read: this rating must not see it.
        delete_events(database_url, ["ev-null"])
        return read

    monkeypatch.setattr(engine, "read_window_usage", summed_then_changed_upstream)
    with connect(database_url) as conn:
        result = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)
    expected = oracle.rate_window(WINDOW, version, events)
    assert [(e.reason, e.event_count) for e in result.ambiguous] == [(AMBIGUOUS_BASE, 3)]
    assert stored.rollups == expected.rollups
    assert stored.exceptions == expected.exceptions


# --- upstream's own billing_event may allow nulls (contract 3: "assume nothing more") ---

NULLABLE_UPSTREAM_TABLE = """
CREATE TABLE billing_event (
    event_id text PRIMARY KEY,
    auth_id text,
    model_id text,
    base_model text,
    input_tokens bigint,
    output_tokens bigint,
    cache_read_tokens bigint,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz
)
"""


def upstream_warehouse(url: str, create_table: str, insert_events: str) -> None:
    """Upstream's own billing_event (``create_table``), migrated, with ``insert_events``
    (bound: ``%(at)s``, WINDOW's start)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(create_table)
    migrations.upgrade(url)
    with psycopg.connect(url) as writer:
        writer.execute(insert_events, {"at": WINDOW.start.isoformat()})


def test_an_upstream_null_is_an_invalid_event_and_the_rest_of_its_window_bills(
    empty_database_url: str,
) -> None:
    """Upstream's table may leave ids, token counts and ingested_at nullable. A null token
    count is never guessed to be 0, and a null id is blank: each such event is excepted
    as invalid_event, conservation holds, and the window's clean events bill."""
    url = empty_database_url
    upstream_warehouse(
        url,
        NULLABLE_UPSTREAM_TABLE,
        "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
        "output_tokens, cache_read_tokens, occurred_at, ingested_at) VALUES "
        "('clean', 'acme', 'base-large', 10, 1, 0, %(at)s, now()),"
        "('null-input', 'acme', 'base-large', NULL, 1, 0, %(at)s, now()),"
        "('null-cache-read', 'beta', 'base-large', 5, 1, NULL, %(at)s, now()),"
        "('null-auth', NULL, 'base-large', 10, 1, 0, %(at)s, now()),"
        "('null-model', 'gamma', NULL, 10, 1, 0, %(at)s, now()),"
        "('never-stamped', 'delta', 'base-large', 3, 2, 0, %(at)s, NULL)",
    )
    version = make_version({"base-large": own("2.50", "10.00", cache_read="0.25")})
    with connect(url) as conn:
        rating = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)

    assert [(r.auth_id, r.event_count, r.input_tokens) for r in stored.rollups] == [
        ("acme", 1, 10),
        ("delta", 1, 3),
    ]
    assert [
        (e.auth_id, e.model_id, e.reason, e.detail, e.event_count) for e in stored.exceptions
    ] == [
        ("", "base-large", "invalid_event", "blank auth_id", 1),
        ("acme", "base-large", "invalid_event", "null input_tokens", 1),
        ("beta", "base-large", "invalid_event", "null cache_read_tokens", 1),
        ("gamma", "", "invalid_event", "blank model_id", 1),
    ]
    assert rating.events_read == 6 == stored.events_read


EVERY_CLASS_NULLABLE_TABLE = f"""
CREATE TABLE billing_event (
    event_id text PRIMARY KEY,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    base_model text,
    {", ".join(f"{c}_tokens bigint" for c in TOKEN_CLASSES)},
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz
)
"""


def test_a_null_count_in_any_class_is_an_invalid_event_and_the_window_bills(
    empty_database_url: str,
) -> None:
    """Every class, not only input and cache_read: one event per class with that count
    null, each excepted under its own auth_id; the clean event bills."""
    columns = ", ".join(f"{c}_tokens" for c in TOKEN_CLASSES)
    rows = [f"('clean', 'clean', 'm', {', '.join('1' for _ in TOKEN_CLASSES)}, %(at)s, now())"]
    rows += [
        f"('{c}', '{c}', 'm', {', '.join('NULL' if o == c else '1' for o in TOKEN_CLASSES)},"
        " %(at)s, now())"
        for c in TOKEN_CLASSES
    ]
    upstream_warehouse(
        empty_database_url,
        EVERY_CLASS_NULLABLE_TABLE,
        f"INSERT INTO billing_event (event_id, auth_id, model_id, {columns}, occurred_at, "
        f"ingested_at) VALUES {', '.join(rows)}",
    )
    rates = {c: "1" for c in TOKEN_CLASSES if c not in ("input", "output")}
    version = make_version({"m": own("1", "1", by_class=rates)})
    with connect(empty_database_url) as conn:
        rating = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)

    assert [(r.auth_id, r.event_count) for r in stored.rollups] == [("clean", 1)]
    assert sorted((e.auth_id, e.reason, e.detail, e.event_count) for e in stored.exceptions) == [
        (c, "invalid_event", f"null {c}_tokens", 1) for c in sorted(TOKEN_CLASSES)
    ]
    assert rating.events_read == 1 + len(TOKEN_CLASSES) == stored.events_read


@pytest.mark.parametrize("report", [cost_by_token_class, cost_by_tier])
def test_reports_over_a_span_reject_bounds_that_are_not_whole_utc_hours(
    database_url: str, report: Callable[..., Any]
) -> None:
    """Contract 2: every path that takes window bounds rejects other bounds, reports too;
    half an hour of a window's rows is no figure anyone should read."""
    start = WINDOW.start
    with connect(database_url) as conn:
        assert report(conn, start, WINDOW.end) == ()
        for bounds in (
            (start + timedelta(minutes=30), WINDOW.end),
            (start, WINDOW.end + timedelta(minutes=15)),
            (start.replace(tzinfo=None), WINDOW.end),
            (WINDOW.end, start),
        ):
            with pytest.raises(WindowError):
                report(conn, *bounds)


def test_reports_over_a_span_count_every_class_of_its_windows_only_in_promised_order(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """cost_by_token_class and cost_by_tier cover [start, end): the window that starts at
    end is another window's figure. A tier's tokens are every class's; classes come in
    TOKEN_CLASSES order, tiers in the contract's, rows in key order (code point)."""
    extra = {
        c: str(k) for k, c in enumerate(TOKEN_CLASSES, start=1) if c not in ("input", "output")
    }
    version = make_version(
        {
            "m": own(
                "1", "2", batch=own("0.5", "1"), long_context=own("3", "4"),
                long_context_above_tokens=1_000, by_class=extra,
            )
        }
    )  # fmt: skip
    every_class = {f"{c}_tokens": 10 * k for k, c in enumerate(TOKEN_CLASSES, start=1)}
    events = [
        with_tokens(make_event("org-1", "m", None, 0, 0), **every_class),
        replace(make_event("org-1", "m", None, 500, 10), service_tier="batch"),
        make_event("org-1", "m", None, 5_000, 10),  # a prompt above 1,000 tokens: long
    ]
    next_hour = with_tokens(make_event("org-1", "m", None, 0, 0), **every_class)
    next_hour = replace(next_hour, occurred_at=WINDOW.end + timedelta(minutes=5))
    add_events([*events, next_hour])
    for window in (WINDOW, Window(WINDOW.end)):
        rate_window(conn, window, Pricebooks((version,)), "run-1")
    rollups = oracle.rate_window(WINDOW, version, events).rollups

    assert stored_window(conn, WINDOW).rollups == rollups
    assert [(r.service_tier, r.context_tier) for r in rollups] == [
        ("batch", "standard"),
        ("standard", "long"),
        ("standard", "standard"),
    ]
    by_class = [
        ClassCost(
            c,
            sum(getattr(r, f"{c}_tokens") for r in rollups),
            sum(
                (getattr(r, f"{c}_tokens") * getattr(r, f"{c}_rate_per_mtok") / 10**6
                 for r in rollups if getattr(r, f"{c}_tokens")),
                Decimal(0),
            ),
        )
        for c in TOKEN_CLASSES
    ]  # fmt: skip
    assert cost_by_token_class(conn, WINDOW.start, WINDOW.end) == tuple(by_class)
    by_tier = [
        TierCost(
            r.service_tier,
            r.context_tier,
            1,
            r.event_count,
            sum(getattr(r, f"{c}_tokens") for c in TOKEN_CLASSES),
            r.cost_usd,
        )
        for r in sorted(
            rollups,
            key=lambda r: (
                SERVICE_TIERS.index(r.service_tier),
                CONTEXT_TIERS.index(r.context_tier),
            ),
        )
    ]
    assert cost_by_tier(conn, WINDOW.start, WINDOW.end) == tuple(by_tier)


UPSTREAM_TYPES_TABLE = """
CREATE TYPE tier_t AS ENUM ('standard', 'batch', 'Priority');
CREATE TABLE billing_event (
    event_id text PRIMARY KEY,
    auth_id bigint NOT NULL,
    model_id varchar(64) NOT NULL,
    base_model varchar(64),
    input_tokens integer NOT NULL,
    output_tokens integer NOT NULL,
    reasoning_tokens numeric(20, 0) NOT NULL DEFAULT 0,
    service_tier tier_t,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
)
"""


def test_upstream_column_types_other_than_the_contracts_are_read_as_their_text_and_integers(
    empty_database_url: str,
) -> None:
    """Upstream may key principals by number, keep tiers in an enum and counts in any
    integer type: ids and tiers are read as their text, and an enum value that is no
    tier of the contract is an invalid_event, as a text one would be."""
    url = empty_database_url
    upstream_warehouse(
        url,
        UPSTREAM_TYPES_TABLE,
        "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
        "output_tokens, reasoning_tokens, service_tier, occurred_at) VALUES "
        "('a', 42, 'base-large', 10, 1, 0, 'batch', %(at)s),"
        "('b', 42, 'base-large', 10, 1, 0, NULL, %(at)s),"
        "('c', 7, 'base-large', 10, 1, 0, 'Priority', %(at)s)",
    )
    version = make_version({"base-large": own("2.50", "10.00", batch=own("1.25", "5.00"))})
    with connect(url) as conn:
        rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
        stored = stored_window(conn, WINDOW)

    assert [(r.auth_id, r.service_tier, r.event_count) for r in stored.rollups] == [
        ("42", "batch", 1),
        ("42", "standard", 1),
    ]
    assert [(e.auth_id, e.reason, e.detail) for e in stored.exceptions] == [
        ("7", "invalid_event", "unknown service_tier")
    ]


@pytest.mark.parametrize("column_type", ["numeric", "numeric(21,0)"])
def test_a_token_column_that_can_hold_a_fraction_or_too_wide_a_count_stops_rating_naming_it(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    column_type: str,
) -> None:
    """A count of 2.5 tokens has no price, and one of 10^30 overflows the outputs' sums,
    stopping its whole window (contract 3: one bad row never holds back its window): the
    rater says which column can hold one, before it reads any window, rather than failing
    each window on the cost constraint or a numeric overflow."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(NULLABLE_UPSTREAM_TABLE)
        admin.execute(
            f"ALTER TABLE billing_event ADD COLUMN reasoning_tokens {column_type} DEFAULT 0"
        )
    migrations.upgrade(url)
    monkeypatch.setenv("RATING_DATABASE_URL", url)
    code = cli.main(["rate", "--from", WINDOW.start.isoformat(), "--to", WINDOW.end.isoformat()])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"billing_event.reasoning_tokens is {column_type}" in err, err


# --- what mutation testing of the statements showed no test held ---------------------------

OPTIONAL_CLASSES = tuple(c for c in TOKEN_CLASSES if c not in ("input", "output"))


def _rated_as_the_oracle_rates(
    conn: psycopg.Connection, version: PricebookVersion, events: list[BillingEvent]
) -> engine.WindowRating:
    rating = rate_window(conn, WINDOW, Pricebooks((version,)), "run-1")
    stored = stored_window(conn, WINDOW)
    conn.rollback()
    assert stored == oracle.rate_window(WINDOW, version, events)
    return rating


def test_a_tokenless_event_of_an_unpriced_model_is_excepted_and_its_window_bills(
    conn: psycopg.Connection, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """An excluded rollup without tokens passes every per-class rate test: only its reason
    keeps it out of the output, or it lands in both tables and the window cannot rate."""
    events = [make_event("org-1", "base-large"),
              make_event("org-1", "mystery-model", input_tokens=0, output_tokens=0)]  # fmt: skip
    add_events(events)

    rating = _rated_as_the_oracle_rates(
        conn, make_version({"base-large": own("2.50", "10")}), events
    )

    assert rating.usage.event_count == 1
    assert [(e.model_id, e.reason) for e in rating.exception_rows] == [("mystery-model", UNPRICED)]


def test_a_mixed_bases_pair_bills_every_class_of_its_events(
    conn: psycopg.Connection, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    rates = dict.fromkeys(OPTIONAL_CLASSES, "1")
    version = make_version({
        "base-a": own("1", "2", by_class=rates),
        "base-b": own("1", "2", by_class=rates),
        "ft:listed": derived("base-a", "2"),
    })  # fmt: skip
    counts = {f"{c}_tokens": 10 * (n + 1) for n, c in enumerate(OPTIONAL_CLASSES)}  # all differ
    events = [with_tokens(make_event("org-1", "ft:listed", base), **counts)
              for base in ("base-a", "base-b")]  # fmt: skip
    add_events(events)

    rating = _rated_as_the_oracle_rates(conn, version, events)

    assert {c: rating.usage.tokens[c] for c in OPTIONAL_CLASSES} == {
        c: 2 * counts[f"{c}_tokens"] for c in OPTIONAL_CLASSES
    }


def test_an_invalid_exception_names_the_problems_of_all_its_events(
    conn: psycopg.Connection, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """Problems of one (auth_id, model_id) come from rows of several tiers and counts."""
    events = [replace(make_event("org-1", "base-large"), service_tier="gold"),
              make_event("org-1", "base-large", input_tokens=-1)]  # fmt: skip
    add_events(events)

    rating = _rated_as_the_oracle_rates(
        conn, make_version({"base-large": own("2.50", "10")}), events
    )

    assert [(e.reason, e.detail, e.event_count) for e in rating.exception_rows] == [
        (INVALID_EVENT, "unknown service_tier, negative input_tokens", 2)
    ]


def test_two_long_auth_ids_with_one_prefix_are_two_exception_rows(
    conn: psycopg.Connection, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    shared = "acct-" + "a" * (300 + ID_PREFIX_LENGTH)  # over MAX_ID_LENGTH; one prefix
    events = [make_event(shared + "-first", "base-large"),
              make_event(shared + "-second", "base-large")]  # fmt: skip
    add_events(events)

    rating = _rated_as_the_oracle_rates(
        conn, make_version({"base-large": own("2.50", "10")}), events
    )

    assert [e.event_count for e in rating.exception_rows] == [1, 1]
    assert len({e.auth_id for e in rating.exception_rows}) == 2
