"""Fixtures on a real PostgreSQL: never a mock.

The server is the embedded PostgreSQL in ``.rating/test-pg`` (apart from the user's
``.rating/pgdata``; fsync off, its data is disposable), or the server of
``RATING_TEST_DATABASE_URL`` when set (its role must be allowed to CREATE DATABASE).
Once per session a template database is migrated to head; every test that asks for
``database_url`` gets a fresh database copied from it, dropped afterwards, so tests are
isolated and child processes can connect to the same database by URL.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from rating_pipeline.orchestration.instance import LocalInstance, local_instance
from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.records import RatedRollup
from rating_pipeline.settings import (
    DATABASE_URL_VARIABLE,
    PRICEBOOK_DIR_VARIABLE,
    TEST_DATABASE_URL_VARIABLE,
    project_root,
    state_dir,
)
from rating_pipeline.warehouse import embedded
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.outputs import record_from_row, stored_exceptions
from rating_pipeline.windows import Window
from tests import oracle
from tests.factories import WINDOW_START, BillingEvent
from tests.oracle import OracleRating
from tests.services import Services

# The test cluster's data is disposable: durability traded for speed, here only.
TEST_SERVER_SETTINGS: tuple[embedded.Setting, ...] = (
    *(s for s in embedded.SERVER_SETTINGS if s.name != "max_parallel_workers"),
    # A worker free for every xdist process at once: a test that reads a window with a
    # worker asserts that one was launched.
    embedded.Setting("max_parallel_workers", "6", "ALTER SYSTEM SET max_parallel_workers = 6"),
    embedded.Setting("fsync", "off", "ALTER SYSTEM SET fsync = off"),
    embedded.Setting("synchronous_commit", "off", "ALTER SYSTEM SET synchronous_commit = off"),
    embedded.Setting("full_page_writes", "off", "ALTER SYSTEM SET full_page_writes = off"),
)
# The embedded server's one parallel worker per query, whatever the server the tests run on.
ONE_PARALLEL_WORKER = "SET max_parallel_workers_per_gather = 1"
# One window's rated_usage rows in key order (code point), a column per RatedRollup field.
SELECT_WINDOW_RATED_USAGE = sql.SQL(
    "SELECT {columns} FROM rated_usage WHERE window_start = %(window_start)s"
    ' ORDER BY auth_id COLLATE "C", model_id COLLATE "C", service_tier COLLATE "C",'
    ' context_tier COLLATE "C"'
).format(columns=sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(RatedRollup)))
CREATE_FROM_TEMPLATE = "CREATE DATABASE {name} TEMPLATE {template}"
CREATE_EMPTY = "CREATE DATABASE {name}"
# Some session of this database waits for a lock of a type (an advisory lock: a close for
# a rating, a build for a build); other tests' databases, on the same server, are not
# looked at.
WAITING_FOR_A_LOCK = """
SELECT count(*) FROM pg_locks
WHERE locktype = %(locktype)s AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
LOCK_WAIT_GUARD_SECONDS = 30.0  # only against a hang: no assertion on elapsed time
DROP_DATABASE = "DROP DATABASE IF EXISTS {name} WITH (FORCE)"

EVENT_COLUMNS = (
    "event_id", "auth_id", "model_id", "base_model", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
    "audio_input_tokens", "audio_output_tokens", "image_input_tokens", "service_tier",
    "occurred_at",
)  # fmt: skip
COPY_EVENTS = f"COPY billing_event ({', '.join(EVENT_COLUMNS)}, ingested_at) FROM STDIN"
COPY_EVENTS_INGESTED_NOW = f"COPY billing_event ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
DELETE_EVENTS = "DELETE FROM billing_event WHERE event_id = ANY(%(ids)s)"
TRUNCATE_ALL = (
    "TRUNCATE billing_event, rated_usage, rating_exception, rated_usage_archive, "
    "rating_exception_archive, rating_log, late_window, invoice_line, billing_account, "
    "rating_adjustment_archive, rating_adjustment, rating_period_close_total, "
    "rating_period_close"
)


def database_url_for(server_url: str, name: str) -> str:
    """``server_url`` pointed at database ``name``."""
    return make_conninfo(server_url, dbname=name)


def _admin(server_url: str, statement: str, **names: str) -> None:
    query = sql.SQL(statement).format(**{key: sql.Identifier(v) for key, v in names.items()})
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(query)


def insert_events(url: str, events: Iterable[BillingEvent]) -> int:
    """COPY ``events`` into billing_event; ``ingested_at`` None takes the column default."""
    events = list(events)
    stamped = [e for e in events if e.ingested_at is not None]
    defaulted_events = [e for e in events if e.ingested_at is None]
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(COPY_EVENTS) as copy:
            for e in stamped:
                copy.write_row([getattr(e, c) for c in EVENT_COLUMNS] + [e.ingested_at])
        with cursor.copy(COPY_EVENTS_INGESTED_NOW) as copy:
            for e in defaulted_events:
                copy.write_row([getattr(e, c) for c in EVENT_COLUMNS])
    return len(stamped) + len(defaulted_events)


def delete_events(url: str, event_ids: Iterable[str]) -> int:
    """Delete billing events by id; return how many went."""
    with psycopg.connect(url) as conn:
        return conn.execute(DELETE_EVENTS, {"ids": list(event_ids)}).rowcount


def truncate_all(url: str) -> None:
    """Empty the input and every output table (property tests reuse one database)."""
    with psycopg.connect(url) as conn:
        conn.execute(TRUNCATE_ALL)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A maintenance URL of the test server (database ``postgres``)."""
    configured = os.environ.get(TEST_DATABASE_URL_VARIABLE)
    if configured:
        yield configured
        return
    yield embedded.start(
        state_dir() / "test-pg",
        database=embedded.MAINTENANCE_DATABASE,
        settings=TEST_SERVER_SETTINGS,
        stop_at_exit=True,
    )


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """The name of a database migrated to head once per session, to copy per test."""
    from rating_pipeline.warehouse import migrations

    name = f"rating_test_template_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, CREATE_EMPTY, name=name)
    try:
        migrations.upgrade(database_url_for(pg_server_url, name))
        yield name
    finally:
        _admin(pg_server_url, DROP_DATABASE, name=name)


def _fresh_database(pg_server_url: str, template: str) -> str:
    name = f"rating_test_{uuid.uuid4().hex[:16]}"
    _admin(pg_server_url, CREATE_FROM_TEMPLATE, name=name, template=template)
    return name


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """The URL of a fresh, migrated, empty warehouse database for this test only."""
    name = _fresh_database(pg_server_url, template_database)
    try:
        yield database_url_for(pg_server_url, name)
    finally:
        _admin(pg_server_url, DROP_DATABASE, name=name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """The URL of a fresh database with no schema at all (for migration tests)."""
    name = f"rating_test_{uuid.uuid4().hex[:16]}"
    _admin(pg_server_url, CREATE_EMPTY, name=name)
    try:
        yield database_url_for(pg_server_url, name)
    finally:
        _admin(pg_server_url, DROP_DATABASE, name=name)


@pytest.fixture
def warehouse_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``database_url``, also exported as RATING_DATABASE_URL for code that reads it."""
    monkeypatch.setenv(DATABASE_URL_VARIABLE, database_url)
    return database_url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection to this test's database through the warehouse's own ``connect``."""
    from rating_pipeline.warehouse.database import connect

    connection = connect(database_url)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def reader(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection (UTC) for looking at this test's database from outside."""
    connection = psycopg.connect(database_url, autocommit=True)
    connection.execute("SET TIME ZONE 'UTC'")
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def add_events(database_url: str) -> Callable[[Iterable[BillingEvent]], int]:
    """``add_events(events)`` COPYs events into this test's database."""
    return lambda events: insert_events(database_url, list(events))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """``utc(2026, 6, 15, 10)``: an aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def stored_rollups(conn: psycopg.Connection, window: Window) -> tuple[RatedRollup, ...]:
    """The window's ``rated_usage`` rows in key order, as of the caller's snapshot."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(SELECT_WINDOW_RATED_USAGE, {"window_start": window.start})
        return tuple(record_from_row(RatedRollup, row) for row in rows)


def stored_window(conn: psycopg.Connection, window: Window) -> OracleRating:
    """The window's stored rows, in the shape the oracle returns, to compare them whole."""
    return OracleRating(stored_rollups(conn, window), stored_exceptions(conn, window))


@pytest.fixture
def rate_events(database_url: str) -> Callable[..., OracleRating]:
    """Rate the events given with the version given, in WINDOW_START's window of a database
    holding nothing else, through the production path; return the stored rows, checked
    first to be exactly what the oracle computes from the same events."""

    def rating(version: PricebookVersion, *events: BillingEvent) -> OracleRating:
        window = Window(WINDOW_START)
        truncate_all(database_url)
        insert_events(database_url, events)
        with connect(database_url) as conn:
            rate_window(conn, window, Pricebooks((version,)), "run-1")
            stored = stored_window(conn, window)
        assert stored == oracle.rate_window(window, version, events)
        return stored

    return rating


def clear_of_an_hours_end(lag: timedelta = timedelta(0)) -> datetime:
    """Now, once ``now - lag`` is at least a minute before the end of its hour (waiting for
    the next hour when it is not): a test that places events on an hour counted from now
    must not see that hour turn before its check has run."""
    now = datetime.now(UTC)
    left = Window.containing(now - lag).end - (now - lag)
    if left < timedelta(minutes=1):
        time.sleep(left.total_seconds() + 1)
        now = datetime.now(UTC)
    return now


@pytest.fixture
def an_hour_that_will_not_turn() -> None:
    """For tests that count windows from the current hour: they start at least a minute
    before it ends, and the longest of them takes seconds."""
    clear_of_an_hours_end()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """An ephemeral Dagster instance (sensor ticks, check runs)."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def storage_database(pg_server_url: str) -> Iterator[str]:
    """The name of a database for Dagster's storage on the test server, dropped afterwards."""
    name = f"rating_test_dagster_{uuid.uuid4().hex[:12]}"
    yield name
    _admin(pg_server_url, DROP_DATABASE, name=name)


@pytest.fixture
def dagster_home(database_url: str, storage_database: str, tmp_path: Path) -> LocalInstance:
    """A DAGSTER_HOME with the production dagster.yaml, its storage in ``storage_database``."""
    return local_instance(database_url, tmp_path / "dagster_home", storage_database)


@pytest.fixture
def services(dagster_home: LocalInstance, tmp_path: Path) -> Iterator[Services]:
    """Dagster processes on ``dagster_home``, rating this test's database with the shipped
    pricebooks; stopped at the end."""
    pricebooks = {PRICEBOOK_DIR_VARIABLE: str(project_root() / "pricebooks")}
    started = Services({**os.environ, **dagster_home.environment(), **pricebooks}, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def wait_until_a_lock_is_awaited(reader: psycopg.Connection, locktype: str = "advisory") -> None:
    """Return once some session waits for a lock of ``locktype`` (pg_locks' names:
    ``advisory``, ``relation``...); fail after a long guard."""
    deadline = time.monotonic() + LOCK_WAIT_GUARD_SECONDS
    while reader.execute(WAITING_FOR_A_LOCK, {"locktype": locktype}).fetchone() == (0,):
        reader.rollback()
        if time.monotonic() > deadline:
            pytest.fail(f"no session ever waited for a lock of type {locktype}")
        time.sleep(0.01)
    reader.rollback()
