"""Reading a window's events (``extract.read_window_usage``), seen through the rating: the
window is half-open, every problem is flagged, sums are exact beyond bigint, and the events
digest tells every correction apart."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from rating_pipeline import cli
from rating_pipeline.orchestration import queries
from rating_pipeline.pricebook.model import TOKEN_CLASSES, Pricebooks
from rating_pipeline.records import BLANK_CHARACTERS, INVALID_EVENT
from rating_pipeline.warehouse import migrations
from rating_pipeline.warehouse.database import WarehouseConnectionError, connect, database_clock
from rating_pipeline.warehouse.engine import WindowRating, rate_window
from rating_pipeline.warehouse.extract import UnstorablePricebook, read_window_usage
from rating_pipeline.warehouse.late_windows import (
    ChangedAfterRating,
    compare_with_latest_ratings,
    record_late_windows,
)
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window, WindowError
from tests.conftest import database_url_for, insert_events, stored_window
from tests.factories import (
    WINDOW_START,
    BillingEvent,
    make_event,
    make_version,
    own,
    with_tokens,
)

WINDOW = Window(WINDOW_START)
BOOK = Pricebooks((make_version({"base-large": own("2.50", "10.00")}),))
AddEvents = Callable[[Iterable[BillingEvent]], int]


def rate(conn: psycopg.Connection, window: Window = WINDOW) -> WindowRating:
    return rate_window(conn, window, BOOK, "run-1")


def test_extraction_window_is_half_open(conn: psycopg.Connection, add_events: AddEvents) -> None:
    microsecond = timedelta(microseconds=1)
    add_events(
        [
            make_event(occurred_at=WINDOW.start - microsecond, input_tokens=1),
            make_event(occurred_at=WINDOW.start, input_tokens=10),
            make_event(occurred_at=WINDOW.end - microsecond, input_tokens=100),
            make_event(occurred_at=WINDOW.end, input_tokens=1000),
        ]
    )
    assert rate(conn).read.amounts[:2] == (2, 110)
    assert rate(conn, Window(WINDOW.end)).read.amounts[:2] == (1, 1000)


def test_blank_characters_are_exactly_unicodes_white_space() -> None:
    """Every code point of the White_Space property, and nothing else: Python's whitespace
    less the four information separators U+001C..U+001F, which Unicode does not count."""
    whitespace = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert sorted(BLANK_CHARACTERS) == sorted(whitespace - set("\x1c\x1d\x1e\x1f"))


def test_extraction_flags_every_blank_character_and_negative_tokens(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    add_events(
        [
            *(make_event(auth_id=char * 2) for char in BLANK_CHARACTERS),
            make_event(auth_id=BLANK_CHARACTERS, model_id=" "),
            make_event(auth_id="\u00a0\u3000", model_id="\u2028"),  # Unicode White_Space
            make_event(auth_id="org-1", model_id="base\u00a0large\u200b"),  # not blank
            make_event(auth_id="org-2", input_tokens=-1),
            make_event(auth_id="org-3", output_tokens=-1),
            make_event(auth_id="org-4", input_tokens=-1, output_tokens=-2),
            make_event(auth_id="org-4"),
        ]
    )
    rate(conn)
    stored = stored_window(conn, WINDOW)
    invalid = {e.auth_id: e.detail for e in stored.exceptions if e.reason == INVALID_EVENT}
    for char in BLANK_CHARACTERS:
        assert invalid[char * 2] == "blank auth_id"
    assert invalid[BLANK_CHARACTERS] == "blank auth_id, blank model_id"
    assert invalid["\u00a0\u3000"] == "blank auth_id, blank model_id"
    assert len(BLANK_CHARACTERS) == 25  # every code point of Unicode's White_Space property
    assert "org-1" not in invalid
    assert invalid["org-2"] == "negative input_tokens"
    assert invalid["org-3"] == "negative output_tokens"
    assert invalid["org-4"] == "negative input_tokens, negative output_tokens"
    assert [(r.auth_id, r.event_count) for r in stored.rollups] == [("org-4", 1)]


CASE_INSENSITIVE = (
    "CREATE COLLATION case_insensitive "
    "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
)


def test_ids_under_upstreams_case_insensitive_collation_are_told_apart_byte_for_byte(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """Upstream may keep its ids and tiers under a nondeterministic (ICU) collation, where
    org-a equals ORG-A: the rating compares them as the warehouse's own text, byte for byte,
    so two accounts never merge, BASE-LARGE finds no rates, BATCH is no tier, and a fine-tune
    of base-large and BASE-LARGE is ambiguous. Skipped on a server built without ICU, as the
    embedded one is: RATING_TEST_DATABASE_URL points the tests at one with it."""
    try:
        conn.execute(CASE_INSENSITIVE)
    except psycopg.errors.FeatureNotSupported as no_icu:
        pytest.skip(f"this PostgreSQL has no nondeterministic collation: {no_icu}")
    for column in ("auth_id", "model_id", "base_model", "service_tier"):
        conn.execute(
            sql.SQL(
                "ALTER TABLE billing_event ALTER COLUMN {} TYPE text COLLATE case_insensitive"
            ).format(sql.Identifier(column))
        )
    conn.commit()
    batch = replace(make_event("org-tier", input_tokens=7), service_tier="BATCH")
    add_events(
        [
            make_event("org-a", input_tokens=1000, output_tokens=0),
            make_event("ORG-A", input_tokens=2000, output_tokens=0),
            make_event("org-model", "BASE-LARGE"),
            make_event("org-unlisted", "mystery"),
            batch,
            make_event("org-ft", "ft:x", "base-large"),
            make_event("org-ft", "ft:x", "BASE-LARGE"),
        ]
    )

    book = make_version({"base-large": own("2.50", "10.00")}, fine_tune_multiplier="1.5")
    rate_window(conn, WINDOW, Pricebooks((book,)), "run-1")

    stored = stored_window(conn, WINDOW)
    assert sorted((r.auth_id, r.input_tokens) for r in stored.rollups) == [
        ("ORG-A", 2000), ("org-a", 1000)
    ]  # fmt: skip
    assert sorted((e.auth_id, e.reason) for e in stored.exceptions) == [
        ("org-ft", "ambiguous_base"),
        ("org-model", "unpriced"),
        ("org-tier", INVALID_EVENT),
        ("org-unlisted", "unpriced"),
    ]


@pytest.mark.parametrize("column", ["auth_id", "model_id", "base_model", "service_tier"])
def test_every_id_and_tier_the_rating_reads_is_read_in_the_default_collation(column: str) -> None:
    """Where the test above skips (no ICU, as on the embedded server), this holds the one
    statement that reads upstream's ids to reading each byte for byte: without the cast, a
    nondeterministic collation upstream merges org-a and ORG-A into one account (a mutation
    audit found the guard skipped in CI)."""
    statement = load_sql("fill_window_sums")
    assert re.search(rf'\b{column}::text COLLATE "default" AS {column}\b', statement)


def test_extraction_sums_beyond_bigint_exactly(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    biggest = 2**63 - 1
    add_events([make_event(input_tokens=biggest, output_tokens=biggest) for _ in range(3)])
    rate(conn)
    (rollup,) = stored_window(conn, WINDOW).rollups
    assert rollup.input_tokens == rollup.output_tokens == 3 * biggest


def test_extraction_reports_the_latest_ingested_at(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    late = WINDOW.end + timedelta(days=2)
    add_events(
        [
            replace(make_event(), ingested_at=WINDOW.end),
            replace(make_event(model_id="other"), ingested_at=late),
            replace(make_event(model_id="other"), ingested_at=late - timedelta(hours=1)),
            replace(make_event(occurred_at=WINDOW.end), ingested_at=late + timedelta(days=1)),
        ]
    )
    assert rate(conn).max_ingested_at == late
    empty = rate(conn, Window(WINDOW.start - timedelta(hours=5)))
    assert (empty.events_read, empty.max_ingested_at) == (0, None)


def test_the_latest_ingested_at_counts_the_events_that_do_not_bill(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """The late-events sensor compares a window's latest ingested_at with its rating's:
    events excepted as invalid, or merged as a pair of mixed bases, were read as well, and
    the latest of each rollup's must count, or the window looks changed after every rating."""
    late = WINDOW.end + timedelta(days=2)
    last_two = (late - timedelta(hours=1), late)
    next_hour = Window(WINDOW.end)
    add_events(
        [
            replace(make_event(), ingested_at=WINDOW.end),
            *(replace(make_event("org-2", input_tokens=-1), ingested_at=at) for at in last_two),
            replace(make_event(occurred_at=next_hour.start), ingested_at=next_hour.end),
            *(
                replace(
                    make_event("org-2", "ft:x", base, occurred_at=next_hour.start), ingested_at=at
                )
                for base, at in zip(("base-a", "base-b"), last_two, strict=True)
            ),
        ]
    )
    assert rate(conn).max_ingested_at == late
    assert rate(conn, next_hour).max_ingested_at == late


def digests_after(
    conn: psycopg.Connection, corrections: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """WINDOW's events digest as it stands, and after each correction (rolled back)."""
    version = BOOK.version_for(WINDOW)

    def digest_after(correction: str | None = None) -> str:
        with conn.transaction(force_rollback=True):
            if correction is not None:
                conn.execute(correction)
            return read_window_usage(conn, WINDOW, version).events_digest

    return digest_after(), {name: digest_after(fix) for name, fix in corrections.items()}


def test_events_digest_changes_with_every_summed_value_and_only_with_them(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """The digest the changed-events sensor compares: any correction that keeps the
    window's event count and token totals still changes it (whichever class, or the count
    of events of a rollup, or a null where upstream allows one); new ids and ingest times,
    which change no sum, do not."""
    ones, twos = ({f"{c}_tokens": n for c in TOKEN_CLASSES} for n in (1, 2))
    add_events(
        [
            replace(make_event("org-1"), **ones),  # type: ignore[arg-type]
            replace(make_event("org-2"), **twos),  # type: ignore[arg-type]
            *(make_event("org-3", input_tokens=0, output_tokens=0) for _ in range(2)),
        ]
    )
    swapped = "UPDATE billing_event SET {0} = 3 - {0} WHERE auth_id <> 'org-3'"
    same_totals = {
        **{f"{c} swapped between principals": swapped.format(f"{c}_tokens") for c in TOKEN_CLASSES},
        "a token moved to another class": "UPDATE billing_event SET input_tokens = 0, "
        "cache_read_tokens = 2 WHERE auth_id = 'org-1'",
        "a base_model given": "UPDATE billing_event SET base_model = 'base-large' "
        "WHERE auth_id = 'org-1'",
        "a service tier given": "UPDATE billing_event SET service_tier = 'batch' "
        "WHERE auth_id = 'org-1'",
        "an event of no tokens moved to another principal": "UPDATE billing_event "
        "SET auth_id = 'org-1' WHERE event_id = "
        "(SELECT min(event_id) FROM billing_event WHERE auth_id = 'org-3')",
        "a count of 0 made null": "ALTER TABLE billing_event ALTER COLUMN output_tokens "
        "DROP NOT NULL; UPDATE billing_event SET output_tokens = NULL WHERE auth_id = 'org-3'",
    }
    reingested = "UPDATE billing_event SET event_id = event_id || '-again', "
    reingested += "ingested_at = ingested_at + interval '1 day'"
    before, digests = digests_after(conn, {**same_totals, "reingested": reingested})
    assert digests.pop("reingested") == before
    assert before not in digests.values()
    assert len(set(digests.values())) == len(digests)


def test_events_digest_changes_with_each_token_class_and_the_model(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """A correction of one token class alone (each is priced on its own), or of the model,
    changes the digest: the changed-events sensor re-rates only what changes it."""
    add_events(
        [
            make_event(auth_id="org-1", input_tokens=10, output_tokens=1),
            make_event(auth_id="org-2", input_tokens=20, output_tokens=2),
        ]
    )
    corrections = {
        f"{token_class} corrected": f"UPDATE billing_event SET {token_class}_tokens = "
        f"{token_class}_tokens + 1 WHERE auth_id = 'org-1'"
        for token_class in TOKEN_CLASSES
    }
    corrections["the model corrected"] = (
        "UPDATE billing_event SET model_id = 'base-medium' WHERE auth_id = 'org-1'"
    )
    before, digests = digests_after(conn, corrections)
    assert [name for name, digest in digests.items() if digest == before] == []
    assert len(set(digests.values())) == len(digests)


DIGESTED_VERSION = make_version(
    {
        "base-large": own(
            "2.50", "10.00", long_context=own("5.00", "20.00"), long_context_above_tokens=1000
        )
    }
)
NARROW_COUNT_TYPES = (
    "ALTER TABLE billing_event ALTER COLUMN input_tokens TYPE smallint, "
    "ALTER COLUMN output_tokens TYPE integer, ALTER COLUMN reasoning_tokens TYPE numeric(20, 0)"
)
A_NAN_COUNT = "UPDATE billing_event SET reasoning_tokens = 'NaN' WHERE auth_id = 'org-5'"
# What the release of 9fbac75 (2026-12-08) logged for the events below: with bigint counts,
# with narrower types (the same: the sums are numeric either way), and with a 'NaN' count.
LOGGED_DIGEST = "8:8:-2835507996580057213"
LOGGED_DIGEST_WITH_A_NAN = "8:8:1147846199805004120"


@pytest.mark.parametrize(
    ("count_types", "correction", "logged"),
    [
        (None, None, LOGGED_DIGEST),
        (NARROW_COUNT_TYPES, None, LOGGED_DIGEST),
        (NARROW_COUNT_TYPES, A_NAN_COUNT, LOGGED_DIGEST_WITH_A_NAN),
    ],
    ids=["bigint-counts", "smallint-integer-and-numeric-counts", "a-nan-count"],
)
def test_the_events_digest_of_unchanged_events_is_the_one_earlier_releases_logged(
    conn: psycopg.Connection,
    add_events: AddEvents,
    count_types: str | None,
    correction: str | None,
    logged: str,
) -> None:
    """The changed-events sensor compares a window's digest with the one its latest rating
    logged, whatever release logged it: a release that hashed the same events differently
    would have it re-rate every window it looks at."""
    if count_types is not None:
        conn.execute(count_types)
        conn.commit()
    add_events(
        [
            make_event("org-1", input_tokens=1000),
            make_event("org-1", input_tokens=1001),
            replace(make_event("org-2"), service_tier="batch"),
            make_event("org-3", "ft:acme:x", "base-a"),
            make_event("org-3", "ft:acme:x", "base-b"),
            make_event("org-4", input_tokens=-1),
            make_event(" "),
            with_tokens(make_event("org-5"), cache_read_tokens=7, reasoning_tokens=3),
        ]
    )
    with conn.transaction(force_rollback=True):
        if correction is not None:
            conn.execute(correction)
        assert read_window_usage(conn, WINDOW, DIGESTED_VERSION).events_digest == logged


def test_a_client_in_another_encoding_flags_the_blank_characters_both_hold(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    """PGCLIENTENCODING=LATIN1 on a UTF8 warehouse: the no-break space is in both, so an id
    of no-break spaces is still blank, not billed."""
    add_events([make_event(auth_id="\u00a0\u00a0"), make_event(auth_id="org-1")])
    conn.execute("SET client_encoding TO 'LATIN1'")
    conn.commit()
    rating = rate(conn)
    assert rating.events_rated == 1
    assert [(e.auth_id, e.detail) for e in stored_window(conn, WINDOW).exceptions] == [
        ("\u00a0\u00a0", "blank auth_id")
    ]


@pytest.mark.parametrize(
    "other",
    [
        make_event(auth_id="org-2", model_id="\u6a21\u578b-x"),  # an unknown model
        make_event(auth_id="\u7528\u6237-2", model_id="mystery"),  # a principal's
        make_event(auth_id="org-2", model_id="ft:x", base_model="\u6a21\u578b"),  # a base
    ],
    ids=["model_id", "auth_id", "base_model"],
)
def test_a_client_environment_in_another_encoding_still_bills_every_id_of_a_window(
    database_url: str,
    add_events: AddEvents,
    monkeypatch: pytest.MonkeyPatch,
    other: BillingEvent,
) -> None:
    """Contract 3 and 6: one event never stops the rest of its window from billing. With
    PGCLIENTENCODING=LATIN1 on a UTF8 warehouse, an event whose model_id, auth_id or
    base_model LATIN1 cannot hold is still a valid event: connect() speaks UTF8 whatever
    the environment says, so it is billed or explained and the clean events bill."""
    add_events([make_event(auth_id="org-1"), other])
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    with connect(database_url) as conn:
        rating = rate(conn)
    # org-1 bills; the other event is explained in rating_exception (unpriced).
    assert (rating.events_read, rating.events_rated, rating.events_excepted) == (2, 1, 1)


def test_a_warehouse_not_in_utf8_flags_the_blank_characters_its_encoding_holds(
    pg_server_url: str,
) -> None:
    """LATIN1 holds the no-break space (and U+0085), not the ideographic one: those it
    holds are blank there too, and binding one it cannot hold would fail every rating,
    whatever the client's encoding."""
    name = f"rating_latin1_{uuid.uuid4().hex[:12]}"
    admin = "CREATE DATABASE {} TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'"
    with psycopg.connect(pg_server_url, autocommit=True) as server:
        server.execute(sql.SQL(admin).format(sql.Identifier(name)))
    url = database_url_for(pg_server_url, name)
    try:
        migrations.upgrade(url)
        insert_events(url, [make_event(auth_id="\u00a0\u00a0"), make_event(auth_id="org-1")])
        with connect(url) as latin1:
            rating = rate(latin1)
            stored = stored_window(latin1, WINDOW)
        with connect(url) as utf8_client:  # the server never converts one it cannot hold
            utf8_client.execute("SET client_encoding TO 'UTF8'")
            utf8_client.commit()
            assert rate(utf8_client).events_rated == 1
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    assert rating.events_rated == 1
    assert [(e.auth_id, e.detail) for e in stored.exceptions] == [("\u00a0\u00a0", "blank auth_id")]


def test_a_sql_ascii_warehouse_is_refused_in_one_line_before_anything_runs(
    pg_server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQL_ASCII gives text no encoding (psycopg reads it as bytes): an id could not be
    compared or even read as text. Every path connects through database.connect, which
    refuses it naming the encoding, rather than a TypeError deep inside a migration or a
    rating."""
    name = f"rating_sql_ascii_{uuid.uuid4().hex[:12]}"
    admin = "CREATE DATABASE {} TEMPLATE template0 ENCODING 'SQL_ASCII' LOCALE 'C'"
    with psycopg.connect(pg_server_url, autocommit=True) as server:
        server.execute(sql.SQL(admin).format(sql.Identifier(name)))
    url = database_url_for(pg_server_url, name)
    monkeypatch.setenv("RATING_DATABASE_URL", url)
    try:
        with pytest.raises(WarehouseConnectionError, match="SQL_ASCII"):
            connect(url)
        for command in (["db", "upgrade"], ["period", "status"]):
            assert cli.main(command) == 1
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1, err
            assert "SQL_ASCII" in err and "UTF8" in err, err
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_version_a_latin1_warehouse_cannot_spell_is_refused_naming_it_and_what(
    pg_server_url: str,
) -> None:
    """Contract 4: an error says where and what. A version name is any printable text
    (docs/pricebooks.md) and every rated row carries it: a LATIN1 warehouse refuses a name
    it cannot store before reading a window, naming the version, its file and the text,
    never failing every rating of the version with a bare encoding error."""
    name = f"rating_latin1_{uuid.uuid4().hex[:12]}"
    admin = "CREATE DATABASE {} TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'"
    with psycopg.connect(pg_server_url, autocommit=True) as server:
        server.execute(sql.SQL(admin).format(sql.Identifier(name)))
    url = database_url_for(pg_server_url, name)
    version = make_version({"base-large": own("2.50", "10.00")}, version="v1 \u2013 cut")
    try:
        migrations.upgrade(url)
        insert_events(url, [make_event(auth_id="org-1")])
        with connect(url) as latin1, pytest.raises(UnstorablePricebook) as refused:
            rate_window(latin1, WINDOW, Pricebooks((version,)), "run-1")
        assert all(
            part in str(refused.value)
            for part in ("'v1 \u2013 cut'", version.source_file, "LATIN1")
        ), refused.value
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


NO_DATETIME = ["infinity", "-infinity", "10000-01-01 00:00Z", "0044-03-15 00:00Z BC"]


def set_ingested_at(conn: psycopg.Connection, auth_id: str, instant: str) -> None:
    conn.execute(
        "UPDATE billing_event SET ingested_at = %s::timestamptz WHERE auth_id = %s",
        (instant, auth_id),
    )
    conn.commit()


@pytest.mark.parametrize("instant", NO_DATETIME)
def test_an_ingested_at_no_datetime_can_hold_never_holds_back_its_window(
    conn: psycopg.Connection, add_events: AddEvents, instant: str
) -> None:
    """It bills, read as a null ingested_at is (docs/events.md); found by an audit: psycopg
    cannot load it into Python, and the window's rating failed."""
    add_events([replace(make_event("clean"), ingested_at=WINDOW.end), make_event("odd-clock")])
    set_ingested_at(conn, "odd-clock", instant)
    rating = rate(conn)
    assert (rating.events_read, rating.events_rated, rating.max_ingested_at) == (
        2, 2, WINDOW.end,
    )  # fmt: skip
    set_ingested_at(conn, "clean", instant)
    assert rate(conn).max_ingested_at is None


def test_the_late_events_scan_takes_a_lookback_that_starts_on_the_hour(
    conn: psycopg.Connection,
) -> None:
    """A window is on one side of the lookback's start or the other, never across it."""
    now = database_clock(conn)
    with pytest.raises(WindowError, match="lookback start"):
        queries.touched_windows(conn, queries.Ingested(now - HOUR, now), WINDOW.start + HOUR / 2)


@pytest.mark.parametrize("instant", NO_DATETIME)
def test_a_window_with_an_ingested_at_no_datetime_can_hold_is_unchanged_until_it_changes(
    conn: psycopg.Connection, add_events: AddEvents, instant: str
) -> None:
    """The sensors and the close compare a window's latest ingested_at with its rating's
    alike: such a window is not changed after its rating, and a late event changes it."""
    add_events([make_event("clean"), make_event("odd-clock")])
    set_ingested_at(conn, "odd-clock", instant)
    rating = rate(conn)
    lookback_start = WINDOW.start - timedelta(days=1)
    log_id = conn.execute("SELECT max(log_id) FROM rating_log").fetchone()
    assert log_id is not None
    changed_after = ChangedAfterRating(WINDOW, 2, rating.events_read, log_id[0])
    record_late_windows(conn, [changed_after], database_clock(conn))  # as a sensor records
    conn.commit()

    def changed() -> tuple[list[Window], ...]:
        now = database_clock(conn)
        ingested = queries.Ingested(now - timedelta(hours=1), now)
        close = compare_with_latest_ratings(conn, WINDOW.start, WINDOW.end)
        _, beyond = queries.touched_windows(conn, ingested, WINDOW.end)
        in_lookback, _ = queries.touched_windows(conn, ingested, lookback_start)
        listed = queries.late_windows(conn, WINDOW.end, now)
        conn.rollback()
        return (
            [c.window for c in in_lookback],
            [c.window for c in close.changed],
            [c.window for c in beyond],
            [late.window for late in listed if late.counts_differ],
        )

    assert changed() == ([], [], [], [])
    add_events([make_event("late")])
    assert changed() == ([WINDOW], [WINDOW], [WINDOW], [WINDOW])
