"""Re-rating reconciles (contract section 7), on a real PostgreSQL.

Each test rates a window, changes its events or its prices, rates it again and looks at
what the tables, their archives and the rating log hold.
"""

from __future__ import annotations

import decimal
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from rating_pipeline.money import RATE_LIMIT, RATE_QUANTUM
from rating_pipeline.pricebook.model import (
    TOKEN_CLASSES,
    NoPricebookForWindow,
    Pricebooks,
    PricebookVersion,
)
from rating_pipeline.records import (
    AMBIGUOUS_BASE,
    INVALID_EVENT,
    RATE_EVENT,
    UNPRICED,
    RatedRollup,
)
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import (
    DELETIONS_LOGGED,
    ConnectionInTransaction,
    rate_window,
    rate_window_in_transaction,
)
from rating_pipeline.windows import HOUR, Window
from tests import oracle
from tests.conftest import delete_events, stored_window
from tests.factories import WINDOW_START, BillingEvent, derived, make_event, make_version, own

WINDOW = Window(WINDOW_START)
VERSION = make_version(
    {
        "base-large": own("2.50", "10.00"),
        "base-small": own("0.15", "0.60"),
        "ft:acme:legal": derived("base-large", "1.25"),
    },
    fine_tune_multiplier="1.5",
)
PRICEBOOKS = Pricebooks((VERSION,))
REPRICED = make_version(
    {
        "base-large": own("3.00", "12.00"),
        "base-small": own("0.15", "0.60"),
        "ft:acme:legal": derived("base-large", "1.25"),
    },
    fine_tune_multiplier="1.5",
)
REPRICED_BOOKS = Pricebooks((REPRICED,))

AddEvents = Callable[[Iterable[BillingEvent]], int]

ROW_STATE = """
SELECT auth_id, model_id, xmin::text, xmax::text, rated_at, run_id
FROM rated_usage WHERE window_start = %(start)s ORDER BY auth_id, model_id
"""
EXCEPTION_STATE = """
SELECT auth_id, model_id, reason, xmin::text, xmax::text, rated_at, run_id
FROM rating_exception WHERE window_start = %(start)s ORDER BY auth_id, model_id, reason
"""
ARCHIVE = """
SELECT auth_id, model_id, change, cost_usd, event_count, run_id, superseded_by_run_id
FROM rated_usage_archive ORDER BY archive_id
"""
EXCEPTION_ARCHIVE = """
SELECT auth_id, model_id, reason, change, superseded_by_run_id
FROM rating_exception_archive ORDER BY archive_id
"""
XACT_WRITES = """
SELECT relname, n_tup_ins + n_tup_upd + n_tup_del
FROM pg_stat_xact_user_tables
WHERE relname IN ('rated_usage', 'rating_exception', 'rated_usage_archive',
                  'rating_exception_archive')
"""


def _state(reader: psycopg.Connection, window: Window = WINDOW) -> list[tuple[object, ...]]:
    return reader.execute(ROW_STATE, {"start": window.start}).fetchall()


def _exception_state(
    reader: psycopg.Connection, window: Window = WINDOW
) -> list[tuple[object, ...]]:
    return reader.execute(EXCEPTION_STATE, {"start": window.start}).fetchall()


def _assert_window_matches_oracle(
    conn: psycopg.Connection,
    window: Window,
    version: PricebookVersion,
    events: Iterable[BillingEvent],
) -> None:
    expected = oracle.rate_window(window, version, events)
    stored = stored_window(conn, window)
    conn.rollback()
    assert stored == expected


def _stored_rollups(conn: psycopg.Connection) -> tuple[RatedRollup, ...]:
    """WINDOW's stored rollups, in key order (the connection is left idle)."""
    rollups = stored_window(conn, WINDOW).rollups
    conn.rollback()
    return rollups


def test_rerate_deletes_rollup_that_became_ambiguous_and_archives_it(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    clean = [make_event("org-1", "ft:new", "base-large") for _ in range(3)]
    add_events(clean)
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    first_rollups = _stored_rollups(conn)
    assert [(r.model_id, r.rate_source) for r in first_rollups] == [("ft:new", RATE_EVENT)]

    other_base = make_event("org-1", "ft:new", "base-small")
    add_events([other_base])
    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    assert (second.usage.deleted, second.usage.inserted) == (1, 0)
    assert (second.exceptions.inserted, second.exceptions.deleted) == (1, 0)
    assert second.deleted_rows == (
        "rated_usage row auth_id='org-1' model_id='ft:new' tiers=standard/standard",
    )
    assert [(e.auth_id, e.model_id, e.event_count) for e in second.ambiguous] == [
        ("org-1", "ft:new", 4)
    ]
    assert _state(reader) == []
    archive = reader.execute(ARCHIVE).fetchall()
    assert archive == [
        ("org-1", "ft:new", "deleted", first_rollups[0].cost_usd, 3, "run-1", "run-2")
    ]
    reasons = reader.execute("SELECT reason FROM rating_exception").fetchall()
    assert reasons == [(AMBIGUOUS_BASE,)]
    _assert_window_matches_oracle(conn, WINDOW, VERSION, [*clean, other_base])


def test_rerate_deletes_superseded_row_while_updating_co_window_survivor(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: AddEvents,
    database_url: str,
) -> None:
    survivor = make_event("org-1", "base-large", input_tokens=1000, output_tokens=10)
    superseded = make_event("org-2", "base-large")
    add_events([survivor, superseded])
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    first_rollups = _stored_rollups(conn)
    old_survivor_cost = next(r.cost_usd for r in first_rollups if r.auth_id == "org-1")

    delete_events(database_url, [superseded.event_id])
    more = make_event("org-1", "base-large", input_tokens=500, output_tokens=5)
    add_events([more])
    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    counts = second.usage
    assert (counts.inserted, counts.updated, counts.deleted, counts.unchanged) == (0, 1, 1, 0)
    rows = _state(reader)
    assert [(auth, model, run_id) for auth, model, _, _, _, run_id in rows] == [
        ("org-1", "base-large", "run-2")
    ]
    archive = reader.execute(ARCHIVE).fetchall()
    assert sorted(archive) == sorted(
        [
            ("org-1", "base-large", "updated", old_survivor_cost, 1, "run-1", "run-2"),
            (
                "org-2",
                "base-large",
                "deleted",
                next(r.cost_usd for r in first_rollups if r.auth_id == "org-2"),
                1,
                "run-1",
                "run-2",
            ),
        ]
    )
    _assert_window_matches_oracle(conn, WINDOW, VERSION, [survivor, more])


def test_rerate_deletes_rollup_whose_events_vanished(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents, database_url: str
) -> None:
    events = [make_event("org-1", "base-large"), make_event("org-2", "base-small")]
    add_events(events)
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")

    delete_events(database_url, [events[1].event_id])
    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")
    assert (second.usage.deleted, second.usage.unchanged) == (1, 1)
    assert [row[:2] for row in _state(reader)] == [("org-1", "base-large")]

    delete_events(database_url, [events[0].event_id])
    third = rate_window(conn, WINDOW, PRICEBOOKS, "run-3")
    assert third.usage.deleted == 1
    assert third.events_read == 0
    assert _state(reader) == []
    changes = reader.execute("SELECT change, count(*) FROM rated_usage_archive GROUP BY 1")
    assert changes.fetchall() == [("deleted", 2)]


def test_rerate_moves_a_corrected_event_to_its_new_tier_and_context_row(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents, database_url: str
) -> None:
    """Upstream corrects an event's tier and prompt: its old rollup key goes (archived) and
    the new one comes, in the same rating, priced by the new key's rate set."""
    batch = own("1.25", "5", long_context=own("2.50", "7.50"))
    model = own("2.50", "10.00", batch=batch, long_context_above_tokens=200_000)
    books = Pricebooks((make_version({"base-large": model}),))
    corrected = make_event("org-1", "base-large", input_tokens=1_000, output_tokens=100)
    add_events([corrected, make_event("org-2", "base-large")])
    rate_window(conn, WINDOW, books, "run-1")
    with psycopg.connect(database_url) as upstream:
        upstream.execute(
            "UPDATE billing_event SET service_tier = 'batch', input_tokens = 250000 "
            "WHERE event_id = %s",
            (corrected.event_id,),
        )

    second = rate_window(conn, WINDOW, books, "run-2")

    assert (second.usage.inserted, second.usage.deleted, second.usage.unchanged) == (1, 1, 1)
    rows = reader.execute(
        "SELECT auth_id, service_tier, context_tier, cost_usd FROM rated_usage ORDER BY 1"
    ).fetchall()
    assert [row[:3] for row in rows] == [
        ("org-1", "batch", "long"),
        ("org-2", "standard", "standard"),
    ]
    assert rows[0][3] == (250_000 * Decimal("2.50") + 100 * Decimal("7.50")) / 10**6
    archived = "SELECT service_tier, context_tier, change, run_id FROM rated_usage_archive"
    assert reader.execute(archived).fetchall() == [("standard", "standard", "deleted", "run-1")]


def test_identical_rerun_writes_nothing_and_locks_nothing(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: AddEvents,
    database_url: str,
) -> None:
    add_events(
        [
            make_event("org-1", "base-large"),
            make_event("org-2", "ft:acme:legal"),
            make_event("org-3", "ft:tuned", "base-small"),
            make_event("org-4", "mystery-model"),
            make_event("", "base-large"),
            make_event("org-5", "ft:amb", "base-large"),
            make_event("org-5", "ft:amb", None),
        ]
    )
    first = rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    rows_before, exceptions_before = _state(reader), _exception_state(reader)
    assert len(rows_before) == 3 and len(exceptions_before) == 3
    assert all(xmax == "0" for _, _, _, xmax, _, _ in rows_before)

    # Committed through the public entry point: xmin, xmax, rated_at, run_id all unchanged.
    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")
    assert second.rows_written == 0
    assert second.usage.unchanged == 3 and second.exceptions.unchanged == 3
    assert _state(reader) == rows_before
    assert _exception_state(reader) == exceptions_before
    assert reader.execute("SELECT count(*) FROM rated_usage_archive").fetchone() == (0,)
    assert reader.execute("SELECT count(*) FROM rating_exception_archive").fetchone() == (0,)

    # From inside a re-run's transaction: no tuple written, and no row locked (a lock would
    # make NOWAIT fail). A new backend, as pg_stat_xact_* also counts a backend's earlier,
    # not yet flushed transactions. (The probe's own locks leave an xmax: it comes last.)
    with connect(database_url) as fresh, fresh.transaction():
        third = rate_window_in_transaction(fresh, WINDOW, VERSION, "run-3")
        writes: dict[str, int] = dict(fresh.execute(XACT_WRITES).fetchall())
        assert writes and all(count == 0 for count in writes.values()), writes
        locked = reader.execute("SELECT auth_id FROM rated_usage FOR UPDATE NOWAIT").fetchall()
        assert len(locked) == len(rows_before)
        reader.execute("SELECT auth_id FROM rating_exception FOR UPDATE NOWAIT")
    assert third.rows_written == 0 and third.total_cost_usd == first.total_cost_usd


def test_rollups_that_differ_only_in_service_tier_reconcile_each_to_its_own_row(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """The tier is part of the rollup's key (contract 6): matched without it, the standard
    and batch rows of one (auth, model) would be rewritten with each other's values."""
    book = Pricebooks((make_version({"base-large": own("2.50", "10.00", batch=own("1.25", "5"))}),))
    add_events([make_event("org-1", "base-large"),
                replace(make_event("org-1", "base-large"), service_tier="batch")])  # fmt: skip
    state = "SELECT service_tier, cost_usd, xmin::text FROM rated_usage ORDER BY service_tier"
    rate_window(conn, WINDOW, book, "run-1")
    before = reader.execute(state).fetchall()

    again = rate_window(conn, WINDOW, book, "run-2")

    assert again.rows_written == 0
    assert reader.execute(state).fetchall() == before
    assert [tier for tier, _, _ in before] == ["batch", "standard"]


def test_scoped_rerate_leaves_adjacent_windows_untouched(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    before, after = Window(WINDOW.start - HOUR), Window(WINDOW.end)
    at_start = make_event("org-1", "base-large", occurred_at=WINDOW.start)
    at_end = make_event("org-1", "base-large", occurred_at=WINDOW.end, input_tokens=7)
    last_instant = make_event(
        "org-1", "base-large", occurred_at=WINDOW.start - timedelta(microseconds=1)
    )
    add_events([at_start, at_end, last_instant])
    for window in (before, WINDOW, after):
        rate_window(conn, window, PRICEBOOKS, "run-1")
    counts = {
        window: stored_window(conn, window).rollups[0].event_count for window in (before, after)
    }
    conn.rollback()
    assert counts == {before: 1, after: 1}
    assert stored_window(conn, WINDOW).rollups[0].input_tokens == at_start.input_tokens
    conn.rollback()
    neighbours_before = {window: _state(reader, window) for window in (before, after)}

    add_events([make_event("org-2", "base-large"), make_event("org-1", "base-large")])
    result = rate_window(conn, WINDOW, REPRICED_BOOKS, "run-2")
    assert (result.usage.updated, result.usage.inserted) == (1, 1)
    assert {window: _state(reader, window) for window in (before, after)} == neighbours_before


def test_rerate_with_new_prices_updates_rows_and_archives_old_values(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    events = [make_event("org-1", "base-large"), make_event("org-1", "base-small")]
    add_events(events)
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    first_rollups = _stored_rollups(conn)
    second = rate_window(conn, WINDOW, REPRICED_BOOKS, "run-2")
    counts = second.usage
    # base-small's price did not change, but the version's sha256 did: every row moves.
    assert (counts.updated, counts.unchanged) == (2, 0)
    archived = reader.execute(
        "SELECT model_id, cost_usd, pricebook_sha256, run_id FROM rated_usage_archive "
        "ORDER BY model_id"
    ).fetchall()
    assert archived == [(r.model_id, r.cost_usd, VERSION.sha256, "run-1") for r in first_rollups]
    _assert_window_matches_oracle(conn, WINDOW, REPRICED, events)


@pytest.mark.parametrize("token_class", TOKEN_CLASSES[2:])  # input and output move the cost
def test_rerate_refreezes_every_class_rate_even_of_a_class_without_tokens(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents, token_class: str
) -> None:
    """The same version and file read otherwise (a release that resolves a rate anew): a
    rate frozen on the row changes though its class has no tokens and no cost moves, so
    the row is rewritten. Found by mutation testing: a reconcile comparing every rate but
    one passed every test."""
    add_events([make_event("org-1", "base-large")])

    def version(rate: str) -> Pricebooks:
        models = make_version({"base-large": own("2.50", "10.00", by_class={token_class: rate})})
        return Pricebooks((replace(VERSION, models=models.models),))  # VERSION's name and sha

    rate_window(conn, WINDOW, version("1"), "run-1")
    again = rate_window(conn, WINDOW, version("2"), "run-2")

    assert (again.usage.updated, again.usage.unchanged) == (1, 0)
    stored = reader.execute(
        f"SELECT {token_class}_rate_per_mtok, pricebook_sha256 FROM rated_usage"
    ).fetchall()
    assert stored == [(Decimal("2"), VERSION.sha256)]


def test_invalid_events_and_unpriced_models_are_excepted_and_conserved(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    events = [
        make_event("org-1", "base-large", input_tokens=100, output_tokens=20),
        make_event("org-1", "base-large", input_tokens=-5, output_tokens=20),
        make_event(" \t\n\r\f\v", "base-large", input_tokens=3, output_tokens=4),
        make_event("org-2", "\v", input_tokens=1, output_tokens=-9),
        make_event("org-2", "mystery-model", input_tokens=50, output_tokens=60),
        make_event("org-2", "ft:orphan", None, input_tokens=70, output_tokens=80),
        make_event("org-3", "ft:tuned", "ft:acme:legal", input_tokens=1, output_tokens=1),
    ]
    add_events(events)
    result = rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    reasons = sorted((e.auth_id, e.model_id, e.reason) for e in result.exception_rows)
    assert reasons == [
        (" \t\n\r\f\v", "base-large", INVALID_EVENT),
        ("org-1", "base-large", INVALID_EVENT),
        ("org-2", "\v", INVALID_EVENT),
        ("org-2", "ft:orphan", UNPRICED),
        ("org-2", "mystery-model", UNPRICED),
        ("org-3", "ft:tuned", UNPRICED),
    ]
    totals = reader.execute(
        """
        SELECT
            (SELECT count(*) FROM billing_event),
            (SELECT sum(input_tokens) FROM billing_event),
            (SELECT sum(output_tokens) FROM billing_event),
            (SELECT sum(event_count) FROM rated_usage)
                + (SELECT sum(event_count) FROM rating_exception),
            (SELECT sum(input_tokens) FROM rated_usage)
                + (SELECT sum(input_tokens) FROM rating_exception),
            (SELECT sum(output_tokens) FROM rated_usage)
                + (SELECT sum(output_tokens) FROM rating_exception)
        """
    ).fetchone()
    assert totals is not None
    assert totals[:3] == totals[3:]
    log = reader.execute(
        "SELECT events_read, events_rated, events_excepted FROM rating_log"
    ).fetchone()
    assert log == (len(events), 1, len(events) - 1)
    _assert_window_matches_oracle(conn, WINDOW, VERSION, events)


STRANGE_IDS = [
    "o'brien",
    'say "hi"; DROP TABLE rated_usage; --',
    "back\\slash\\N",
    "tab\there",
    "new\nline\r\n",
    "ünïcødé 日本語 🚀",
    "\\.",
    "percent %s %(x)s",
]


def test_ids_with_quotes_tabs_newlines_and_unicode_pass_through_verbatim(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    events = [make_event(auth_id, "base-large") for auth_id in STRANGE_IDS]
    events += [make_event("org-1", f"ft:{text}", "base-large") for text in STRANGE_IDS]
    events += [make_event("org-1", "mystery " + text) for text in STRANGE_IDS]
    add_events(events)
    result = rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    stored_auth_ids = {
        row[0]
        for row in reader.execute(
            "SELECT auth_id FROM rated_usage WHERE model_id = 'base-large'"
        ).fetchall()
    }
    assert stored_auth_ids == set(STRANGE_IDS)
    stored_models = {row[0] for row in reader.execute("SELECT model_id FROM rated_usage")}
    assert {f"ft:{text}" for text in STRANGE_IDS} <= stored_models
    unpriced = {row[0] for row in reader.execute("SELECT model_id FROM rating_exception")}
    assert unpriced == {"mystery " + text for text in STRANGE_IDS}
    _assert_window_matches_oracle(conn, WINDOW, VERSION, events)
    assert rate_window(conn, WINDOW, PRICEBOOKS, "run-2").rows_written == 0
    assert result.events_read == len(events)


def test_rating_log_records_every_run_with_counts_totals_digest_and_latest_ingest(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    ingested = WINDOW.end + timedelta(minutes=7)
    add_events(
        [
            replace(make_event("org-1", "base-large"), ingested_at=ingested),
            make_event("org-1", "mystery"),
        ]
    )
    first = rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    rate_window(conn, WINDOW, PRICEBOOKS, "run-2")
    rows = reader.execute(
        """
        SELECT run_id, pricebook_version, pricebook_sha256, rows_inserted, rows_updated,
               rows_deleted, rows_unchanged, exceptions_inserted, exceptions_unchanged,
               events_read, events_rated, events_excepted, total_cost_usd, events_digest
        FROM rating_log ORDER BY log_id
        """
    ).fetchall()
    cost, digest = first.total_cost_usd, first.read.events_digest
    assert rows == [
        ("run-1", VERSION.version, VERSION.sha256, 1, 0, 0, 0, 1, 0, 2, 1, 1, cost, digest),
        ("run-2", VERSION.version, VERSION.sha256, 0, 0, 0, 1, 0, 1, 2, 1, 1, cost, digest),
    ]
    latest = reader.execute("SELECT max(ingested_at) FROM billing_event").fetchone()
    assert latest is not None
    assert first.max_ingested_at == latest[0]
    logged = reader.execute("SELECT DISTINCT max_ingested_at FROM rating_log").fetchall()
    assert logged == [(latest[0],)]


def test_window_without_pricebook_raises_before_writing(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    early = Window(VERSION.effective_from - HOUR)
    add_events([make_event("org-1", "base-large", occurred_at=early.start)])
    with pytest.raises(NoPricebookForWindow):
        rate_window(conn, early, PRICEBOOKS, "run-1")
    assert reader.execute("SELECT count(*) FROM rating_log").fetchone() == (0,)
    assert reader.execute("SELECT count(*) FROM rated_usage").fetchone() == (0,)


def test_rate_window_refuses_a_connection_inside_a_transaction(conn: psycopg.Connection) -> None:
    conn.execute("SELECT 1")
    with pytest.raises(ConnectionInTransaction):
        rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    conn.rollback()


def test_counts_and_each_deletion_are_logged_at_info(
    conn: psycopg.Connection,
    add_events: AddEvents,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = make_event("org-9", "base-small")
    add_events([make_event("org-1", "base-large"), gone])
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    delete_events(database_url, [gone.event_id])
    with caplog.at_level(logging.INFO, logger="rating_pipeline"):
        rate_window(conn, WINDOW, PRICEBOOKS, "run-2")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        "rated_usage +0 inserted, ~0 updated, -1 deleted, =1 unchanged" in m for m in messages
    )
    assert any(
        "deleted rated_usage row auth_id='org-9' model_id='base-small'" in m for m in messages
    )


@pytest.mark.parametrize("unnamed, more", [(1, "1 more row"), (2, "2 more rows")])
def test_a_rerate_names_its_first_deletions_in_the_log_and_counts_the_rest(
    conn: psycopg.Connection,
    add_events: AddEvents,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    unnamed: int,
    more: str,
) -> None:
    gone = [make_event(f"org-{n:02}", "base-small") for n in range(DELETIONS_LOGGED + unnamed)]
    add_events([make_event("org-kept", "base-large"), *gone])
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    delete_events(database_url, [event.event_id for event in gone])
    with caplog.at_level(logging.INFO, logger="rating_pipeline"):
        rating = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    assert len(rating.deleted_rows) == DELETIONS_LOGGED + unnamed
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    named = [m for m in messages if ": run run-2 deleted rated_usage row auth_id=" in m]
    assert len(named) == DELETIONS_LOGGED
    assert messages[-1] == f"{WINDOW.key}: run run-2 deleted {more} (archived)"


def test_cost_check_refuses_a_row_whose_cost_does_not_reconstruct(
    reader: psycopg.Connection,
) -> None:
    insert = """
    INSERT INTO rated_usage (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, event_count,
        input_tokens, output_tokens, rate_source, derivation_base, multiplier,
        input_rate_per_mtok, output_rate_per_mtok, cost_usd, pricebook_version,
        pricebook_sha256, rated_at, run_id
    ) VALUES (
        %(start)s, %(end)s, 'org-1', 'base-large', 'standard', 'standard', 1, %(input)s,
        %(output)s, 'own', NULL, NULL, %(input_rate)s, %(output_rate)s, %(cost)s, 'v', 'sha',
        now(), 'run'
    )
    """
    big = 10**25 + 7
    rate = Decimal("999999.999999")
    # typeshed types localcontext's traps as a dict only; like Context's, a list is documented.
    with decimal.localcontext(prec=100, traps=[decimal.Inexact]):  # type: ignore[arg-type]
        exact = (big * rate + big * rate).scaleb(-6)
    params = {
        "start": WINDOW.start,
        "end": WINDOW.end,
        "input": big,
        "output": big,
        "input_rate": rate,
        "output_rate": rate,
    }
    with reader.transaction():
        reader.execute(insert, {**params, "cost": exact})  # exact: accepted
        reader.execute("DELETE FROM rated_usage")
    with pytest.raises(psycopg.errors.CheckViolation, match="rated_usage_cost_reconstructs"):
        reader.execute(insert, {**params, "cost": exact + Decimal("0.000000000001")})


def test_the_costliest_rollup_rated_usage_can_hold_has_a_cost_it_can_hold(
    reader: psycopg.Connection,
) -> None:
    """Every class at the largest sum a row holds (numeric(30, 0)), each at the largest
    rate a pricebook may give: its cost still fits numeric(50, 12), so no window fails
    on a rollup's cost, whatever its events."""
    columns = [f"{c}_tokens" for c in TOKEN_CLASSES] + [f"{c}_rate_per_mtok" for c in TOKEN_CLASSES]
    tokens = 10**30 - 1
    rate = RATE_LIMIT - RATE_QUANTUM
    with decimal.localcontext(prec=100, traps=[decimal.Inexact]):  # type: ignore[arg-type]
        cost = (tokens * rate * len(TOKEN_CLASSES)).scaleb(-6)
    insert = f"""
    INSERT INTO rated_usage (
        window_start, window_end, auth_id, model_id, service_tier, context_tier, event_count,
        {", ".join(columns)}, rate_source, cost_usd, pricebook_version, pricebook_sha256,
        rated_at, run_id
    ) VALUES (
        %(start)s, %(end)s, 'org-1', 'base-large', 'standard', 'standard', 1,
        {", ".join(["%(tokens)s"] * len(TOKEN_CLASSES) + ["%(rate)s"] * len(TOKEN_CLASSES))},
        'own', %(cost)s, 'v', 'sha', now(), 'run'
    )
    """
    with reader.transaction():
        reader.execute(
            insert,
            {
                "start": WINDOW.start,
                "end": WINDOW.end,
                "tokens": tokens,
                "rate": rate,
                "cost": cost,
            },
        )
        stored = reader.execute("SELECT cost_usd FROM rated_usage").fetchone()
        reader.execute("DELETE FROM rated_usage")
    assert stored == (cost,)


def test_a_rate_the_database_would_round_is_refused_before_anything_is_written(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    add_events([make_event("a", "base-large")])
    unvalidated = make_version({"base-large": own("2.5000001", "10")})  # bypasses the loader
    with pytest.raises(decimal.Inexact):
        rate_window(conn, WINDOW, Pricebooks((unvalidated,)), "run-1")
    assert reader.execute("SELECT count(*) FROM rated_usage").fetchone() == (0,)
    assert reader.execute("SELECT count(*) FROM rating_log").fetchone() == (0,)


def test_rerate_updates_a_row_whose_event_count_alone_changed(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """An event without tokens changes no sum and no cost, only the row's event count."""
    events = [make_event("org-1", "base-large")]
    add_events(events)
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    events.append(make_event("org-1", "base-large", input_tokens=0, output_tokens=0))
    add_events(events[1:])

    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    assert (second.usage.updated, second.usage.unchanged) == (1, 0)
    assert [r.event_count for r in _stored_rollups(conn)] == [2]
    _assert_window_matches_oracle(conn, WINDOW, VERSION, events)


def test_rerate_updates_a_row_whose_derivation_base_alone_changed(
    conn: psycopg.Connection, add_events: AddEvents, database_url: str
) -> None:
    """Path 3: the base comes from the events, so the same version can derive a fine-tune
    from another base at the very same rates."""
    version = make_version(
        {"base-a": own("1", "2"), "base-b": own("1", "2")}, fine_tune_multiplier="1.5"
    )
    books = Pricebooks((version,))
    from_a, from_b = make_event("org-1", "ft:x", "base-a"), make_event("org-1", "ft:x", "base-b")
    add_events([from_a])
    rate_window(conn, WINDOW, books, "run-1")
    delete_events(database_url, [from_a.event_id])
    add_events([from_b])

    second = rate_window(conn, WINDOW, books, "run-2")

    assert second.usage.updated == 1
    assert [r.derivation_base for r in _stored_rollups(conn)] == ["base-b"]
    _assert_window_matches_oracle(conn, WINDOW, version, [from_b])


def test_rerate_freezes_the_latest_rate_of_every_class_even_one_without_tokens(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    classes = ("cache_read", "cache_write", "cache_write_1h", "reasoning", "audio_input",
               "audio_output", "image_input")  # fmt: skip
    before = make_version(
        {"base-large": own("2.50", "10.00", by_class=dict.fromkeys(classes, "1"))}
    )
    after = make_version({"base-large": own("3.00", "12.00", by_class=dict.fromkeys(classes, "2"))})
    events = [make_event("org-1", "base-large")]
    add_events(events)
    rate_window(conn, WINDOW, Pricebooks((before,)), "run-1")

    second = rate_window(conn, WINDOW, Pricebooks((after,)), "run-2")

    assert second.usage.updated == 1
    _assert_window_matches_oracle(conn, WINDOW, after, events)


def test_rerate_updates_an_exception_whose_detail_alone_changed(
    conn: psycopg.Connection, add_events: AddEvents, database_url: str
) -> None:
    """Same key, events and tokens; another problem: the detail must follow."""
    unknown_tier = replace(make_event("org-1", "base-large"), service_tier="gold")
    long_base = make_event("org-1", "base-large", "b" * 257)
    add_events([unknown_tier])
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    delete_events(database_url, [unknown_tier.event_id])
    add_events([long_base])

    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    assert second.exceptions.updated == 1
    assert [(e.reason, e.detail) for e in second.exception_rows] == [
        (INVALID_EVENT, "base_model longer than 256 characters")
    ]
    _assert_window_matches_oracle(conn, WINDOW, VERSION, [long_base])


def test_rerate_under_another_version_stamps_it_on_otherwise_unchanged_exceptions(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """An invalid event's detail names no version: only pricebook_version changes."""
    renamed = make_version(
        {"base-large": own("2.50", "10.00")}, version="2026-06-02", fine_tune_multiplier="1.5"
    )
    events = [make_event("org-1", "base-large", input_tokens=-1)]
    add_events(events)
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")

    second = rate_window(conn, WINDOW, Pricebooks((renamed,)), "run-2")

    assert second.exceptions.updated == 1
    assert [e.pricebook_version for e in second.exception_rows] == ["2026-06-02"]
    _assert_window_matches_oracle(conn, WINDOW, renamed, events)


def test_rerate_turns_an_unpriced_exception_that_became_ambiguous_into_ambiguous_base(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents
) -> None:
    """Same rollup key, another reason: the old row goes (archived), the new one comes, and
    the rating reports the ambiguity (contract 5.2)."""
    events = [make_event("org-1", "ft:x", "base-unknown")]
    add_events(events)
    first = rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    assert [e.reason for e in first.exception_rows] == [UNPRICED]
    events.append(make_event("org-1", "ft:x", "base-large"))
    add_events(events[1:])

    second = rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    assert (second.exceptions.inserted, second.exceptions.deleted) == (1, 1)
    assert [(e.model_id, e.event_count) for e in second.ambiguous] == [("ft:x", 2)]
    assert reader.execute(EXCEPTION_ARCHIVE).fetchall() == [
        ("org-1", "ft:x", UNPRICED, "deleted", "run-2")
    ]
    _assert_window_matches_oracle(conn, WINDOW, VERSION, events)


def test_rating_log_counts_the_rollups_a_rerate_deleted(
    conn: psycopg.Connection, reader: psycopg.Connection, add_events: AddEvents, database_url: str
) -> None:
    gone = make_event("org-9", "base-small")
    add_events([make_event("org-1", "base-large"), gone])
    rate_window(conn, WINDOW, PRICEBOOKS, "run-1")
    delete_events(database_url, [gone.event_id])

    rate_window(conn, WINDOW, PRICEBOOKS, "run-2")

    logged = reader.execute(
        "SELECT rows_inserted, rows_updated, rows_deleted, rows_unchanged, exceptions_deleted"
        " FROM rating_log WHERE run_id = 'run-2'"
    ).fetchall()
    assert logged == [(0, 0, 1, 1, 0)]


def test_a_rating_names_only_the_rows_it_deleted_though_its_run_id_rated_the_window_before(
    conn: psycopg.Connection, add_events: AddEvents, database_url: str
) -> None:
    """A run id may rate the same window twice (a retried backfill): each rating names its
    own deletions, told apart by its instant."""
    first_gone, second_gone = make_event("org-1", "base-large"), make_event("org-2", "base-small")
    add_events([first_gone, second_gone, make_event("org-3", "base-large")])
    rate_window(conn, WINDOW, PRICEBOOKS, "backfill")
    delete_events(database_url, [first_gone.event_id])
    first = rate_window(conn, WINDOW, PRICEBOOKS, "backfill")
    delete_events(database_url, [second_gone.event_id])

    second = rate_window(conn, WINDOW, PRICEBOOKS, "backfill")

    assert first.deleted_rows == (
        "rated_usage row auth_id='org-1' model_id='base-large' tiers=standard/standard",
    )
    assert second.deleted_rows == (
        "rated_usage row auth_id='org-2' model_id='base-small' tiers=standard/standard",
    )


def test_the_archive_holds_the_old_values_of_the_context_tier_that_changed(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """One principal bills in both context tiers; each re-rate changes one of them."""
    books = Pricebooks((make_version({"base-large": own(
        "2.50", "10.00", long_context=own("5.00", "20.00"), long_context_above_tokens=10_000
    )}),))  # fmt: skip
    add_events([make_event("org-1", "base-large", input_tokens=1_000),
                make_event("org-1", "base-large", input_tokens=50_000)])  # fmt: skip
    rate_window(conn, WINDOW, books, "run-1")
    add_events([make_event("org-1", "base-large", input_tokens=2_000)])
    rate_window(conn, WINDOW, books, "run-2")  # standard: 2 events
    add_events([make_event("org-1", "base-large", input_tokens=60_000)])
    rate_window(conn, WINDOW, books, "run-3")  # long: 2 events

    archived = (
        "SELECT context_tier, event_count, run_id FROM rated_usage_archive ORDER BY archive_id"
    )
    assert reader.execute(archived).fetchall() == [("standard", 1, "run-1"), ("long", 1, "run-1")]


def test_rating_log_counts_an_updated_exception_as_updated_not_deleted(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    books = Pricebooks((make_version({"base-large": own("2.50", "10.00")}),))
    add_events([make_event("org-1", "base-large"), make_event("org-1", "mystery")])
    rate_window(conn, WINDOW, books, "run-1")
    add_events([make_event("org-1", "mystery")])  # the unpriced rollup grows

    assert rate_window(conn, WINDOW, books, "run-2").exceptions.updated == 1
    logged = reader.execute(
        "SELECT exceptions_inserted, exceptions_updated, exceptions_deleted, "
        "exceptions_unchanged FROM rating_log WHERE run_id = 'run-2'"
    ).fetchone()
    assert logged == (0, 1, 0, 0)


def test_rerate_refreezes_a_multiplier_that_changed_alone(
    conn: psycopg.Connection,
    reader: psycopg.Connection,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Base 2.50/10 x 2 equals base 5/20 x 1: the rates stay, the explanation changes."""
    first = make_version({"base-large": own("2.50", "10.00"), "ft:x": derived("base-large", "2")})
    later = make_version({"base-large": own("5.00", "20.00"), "ft:x": derived("base-large", "1")})
    add_events([make_event("org-1", "ft:x", "base-large")])
    rate_window(conn, WINDOW, Pricebooks((first,)), "run-1")

    again = rate_window(conn, WINDOW, Pricebooks((replace(first, models=later.models),)), "run-2")

    assert (again.usage.updated, again.usage.unchanged) == (1, 0)
    stored = reader.execute(
        "SELECT multiplier, input_rate_per_mtok FROM rated_usage WHERE model_id = 'ft:x'"
    ).fetchall()
    assert stored == [(Decimal(1), Decimal(5))]
