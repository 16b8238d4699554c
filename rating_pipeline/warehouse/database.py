"""Where the warehouse is and how to connect to it (contract section 8).

``RATING_DATABASE_URL`` (any libpq connection string) when set; otherwise the embedded
PostgreSQL under ``.rating/``. URLs may hold a password: show them only through
``redact_url``.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from rating_pipeline.errors import RatingPipelineError, first_line, shown
from rating_pipeline.pricebook.model import TOKEN_CLASSES
from rating_pipeline.settings import configured_database_url
from rating_pipeline.warehouse.sqlfiles import load_sql

APPLICATION_NAME = "rating_pipeline"
TOKEN_COLUMNS = [f"{token_class}_tokens" for token_class in TOKEN_CLASSES]
REQUIRED_TABLES = ("billing_event", "rated_usage", "rating_exception", "rating_log")
# The project's tables, each with the revision that creates it: a downgrade below that
# revision drops the table and its rows.
CREATED_BY = {
    "rated_usage": "0002", "rating_exception": "0002", "rated_usage_archive": "0002",
    "rating_exception_archive": "0002", "rating_log": "0002", "late_window": "0010",
    "invoice_line": "0011", "billing_account": "0011", "rating_adjustment_archive": "0011",
    "rating_adjustment": "0011", "rating_period_close_total": "0011",
    "rating_period_close": "0011",
}  # fmt: skip
# Timestamps in UTC and in ISO style, the one psycopg reads, whatever the server's, the
# database's or the role's defaults.
SESSION_SETTINGS = "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO'"
# PostgreSQL's own functions and operators first, whatever the path: a path that lists
# pg_catalog after another schema lets a round() there change every invoice amount. Left
# out of the path, pg_catalog is searched first; the tables are still found (and created)
# where the path says.
BUILT_INS_FIRST = """
SELECT set_config(
    'search_path', coalesce(string_agg(quote_ident(name), ', ' ORDER BY n), ''), false
)
FROM unnest(current_schemas(false)) WITH ORDINALITY AS listed (name, n)
WHERE name <> 'pg_catalog'
HAVING 'pg_catalog' = ANY (current_schemas(false))
"""
MIGRATION_VERSIONS = Path(__file__).parent / "migrations" / "versions"
# The schema holding the warehouse's alembic_version (Alembic's table: one row, the
# revision), if any: the one its tables are created in (the first of the search path that
# exists) or, for a role whose path starts elsewhere, the one its rating_log is found in.
# Never one further along the path: upstream may migrate its own schema with Alembic too.
REVISION_SCHEMA = """
SELECT name
FROM (
    SELECT 1, current_schema()
    UNION ALL
    SELECT 2, nspname FROM pg_namespace
    WHERE oid = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass('rating_log'))
) AS candidate (rank, name)
WHERE to_regclass(quote_ident(name) || '.alembic_version') IS NOT NULL
ORDER BY rank
LIMIT 1
"""
SCHEMA_REVISION = "SELECT version_num FROM {schema}.alembic_version"
# Each of the tables named, as a bare name finds it (the search path: a revision's DROP
# finds it so), qualified, and whether it is in the schema the warehouse was migrated in.
FOUND_TABLES = f"""
SELECT name, format('%%I.%%I', namespace.nspname, found.relname),
    found.relnamespace IS NOT DISTINCT FROM (
        SELECT oid FROM pg_namespace WHERE nspname = ({REVISION_SCHEMA})
    )
FROM unnest(%(tables)s::text[]) AS name
JOIN pg_class AS found ON found.oid = to_regclass(name)
JOIN pg_namespace AS namespace ON namespace.oid = found.relnamespace
"""
# The widest numeric(p, 0) a count may have: the outputs' numeric(30, 0) sums then hold
# any rollup of fewer than ten billion events.
MAX_COUNT_PRECISION = 20
# Each of %(columns)s of billing_event with its declared type (shown) and, followed through
# any domain, its base type (type_id, type_mod).
COLUMN_BASE_TYPES = """
WITH RECURSIVE column_type (attnum, attname, shown, type_id, type_mod) AS (
    SELECT attnum, attname, format_type(atttypid, atttypmod), atttypid, atttypmod
    FROM pg_attribute
    WHERE attrelid = to_regclass('billing_event') AND attname = ANY(%(columns)s::text[])
      AND NOT attisdropped
    UNION ALL
    SELECT column_type.attnum, column_type.attname, column_type.shown, typbasetype, typtypmod
    FROM column_type JOIN pg_type ON pg_type.oid = column_type.type_id
    WHERE typtype = 'd'
)
"""
# Token columns no rating can take: a type that can hold a fraction (or a float; 2.5 tokens
# have no price), or a count wider than MAX_COUNT_PRECISION digits. Integer types and
# numeric(p, 0) are whole; numeric's scale is (typmod - 4) & 65535, its precision
# (typmod - 4) >> 16.
UNRATEABLE_TOKEN_COLUMNS = (
    COLUMN_BASE_TYPES
    + """
SELECT attname, shown
FROM column_type JOIN pg_type ON pg_type.oid = column_type.type_id
WHERE typtype <> 'd'
  AND type_id NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
  AND NOT (type_id = 'numeric'::regtype AND type_mod >= 4 AND (type_mod - 4) & 65535 = 0
           AND (type_mod - 4) >> 16 <= %(max_precision)s)
ORDER BY attnum
"""
)
# Time columns no rating can read as instants: anything but timestamptz. A timestamp
# without time zone holds the wall clock of whichever session wrote it, so no reader knows
# its hour; a date or a text is no instant at all.
INSTANT_COLUMNS = ["occurred_at", "ingested_at"]
UNRATEABLE_TIME_COLUMNS = (
    COLUMN_BASE_TYPES
    + """
SELECT attname, shown
FROM column_type JOIN pg_type ON pg_type.oid = column_type.type_id
WHERE typtype <> 'd' AND type_id <> 'timestamptz'::regtype
ORDER BY attnum
"""
)
# The columns of billing_event the rater reads (contract 3): event_id only keys the table.
READ_EVENT_COLUMNS = (
    "auth_id", "model_id", "base_model", *TOKEN_COLUMNS, "service_tier", "occurred_at",
    "ingested_at",
)  # fmt: skip
MISSING_EVENT_COLUMNS = """
SELECT name FROM unnest(%(columns)s::text[]) WITH ORDINALITY AS wanted (name, position)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_attribute
    WHERE attrelid = to_regclass('billing_event') AND attname = name AND NOT attisdropped
)
ORDER BY position
"""
MISSING_TABLES = (
    "SELECT name FROM unnest(%(names)s::text[]) AS name WHERE to_regclass(name) IS NULL"
)


UNPARSEABLE_URL = (
    "cannot connect to the warehouse: RATING_DATABASE_URL is not a valid libpq connection "
    "string (in a URL, percent-encode any %, @, / or : in the password)"
)


AMBIGUOUS_URL = (
    "cannot connect to the warehouse: RATING_DATABASE_URL holds an @ or / where libpq may "
    "read part of a password as the host or database (percent-encode any @ or / in the user "
    "name, password or database name: %40, %2F)"
)
URL_SCHEMES = ("postgresql://", "postgres://")


class WarehouseConnectionError(RatingPipelineError):
    """The warehouse database cannot be reached."""


class UnusableBillingEvent(RatingPipelineError):
    """Upstream's billing_event lacks a column the rater reads, or has a token column of a
    type that can hold a fraction."""


class SchemaNotMigrated(RatingPipelineError):
    """The warehouse is not at this release's schema revision (not migrated, partly, or by a
    newer release), or lacks a table rating needs."""


READ_ONLY_SESSION = (
    "the session is read-only (a standby, or default_transaction_read_only set for the role "
    "or database?): point RATING_DATABASE_URL at the primary"
)


def refusal_note(cause: BaseException | None) -> str:
    """What a refusal's server message leaves out of its cause, for the end of its line."""
    if isinstance(cause, psycopg.errors.ReadOnlySqlTransaction):
        return f"; {READ_ONLY_SESSION}"
    return ""


@functools.cache
def _embedded_url() -> str:
    from rating_pipeline.warehouse import embedded

    return embedded.start()


def database_url() -> str:
    """``RATING_DATABASE_URL``, or the embedded database's URL (starting it if needed)."""
    return configured_database_url() or _embedded_url()


def has_unescaped_delimiter(url: str) -> bool:
    """``url`` is a URL where libpq may read part of a password as the host, port, database
    or a parameter. libpq ends the credentials at the first ``@`` or ``/``, whichever comes
    first: an ``@`` left in the host part means the password held one. A URL without
    credentials is refused where a ``/`` in a password would make it one: an ``@`` in its
    path (libpq cannot tell it from an ``@`` in a database name, which is written ``%40``),
    or a port that is not a number (``user:pass/word``; libpq could not use it anyway)."""
    if not url.startswith(URL_SCHEMES):
        return False
    rest = url.partition("://")[2]
    ends = [i for i in (rest.find("@"), rest.find("/")) if i >= 0]
    end = min(ends, default=len(rest))
    if rest[end : end + 1] == "@":
        host = re.split("[/?]", rest[end + 1 :], maxsplit=1)[0]
        return "@" in host
    hosts = re.split("[/?]", rest, maxsplit=1)[0]
    return "@" in rest[end:].partition("?")[0] or any(
        not re.fullmatch("[0-9]*", _port(host)) for host in hosts.split(",")
    )


def _port(host: str) -> str:
    """The port written after ``host`` (``db:5432``, ``[::1]:5432``), or ""."""
    if host.startswith("["):
        host = host.partition("]")[2]
    return host.rpartition(":")[2] if ":" in host else ""


def redact_url(url: str) -> str:
    """``url`` fit for a log line or a message: every secret libpq takes (those it marks
    for hiding: a password, a key's passphrase, an OAuth client secret) replaced by ``***``."""
    if has_unescaped_delimiter(url):
        return "<connection string with an unescaped @ or />"
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable connection string>"
    for key in secret_parameters() & params.keys():
        if params[key]:
            params[key] = "***"
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})


def secret_parameters() -> frozenset[str]:
    """The connection parameters the linked libpq displays as ``*``: its secrets."""
    secrets = {o.keyword.decode() for o in pq.Conninfo.get_defaults() if o.dispchar == b"*"}
    return frozenset(secrets | {"password"})


def connect(url: str | None = None) -> psycopg.Connection:
    """A new psycopg 3 connection to the warehouse (session time zone UTC, DateStyle ISO,
    autocommit off).

    The caller closes it.
    """
    target = url or database_url()
    try:
        conninfo_to_dict(target)
    except psycopg.ProgrammingError:
        # psycopg's message quotes the token it could not read: it may be the password.
        raise WarehouseConnectionError(UNPARSEABLE_URL) from None
    if has_unescaped_delimiter(target):
        raise WarehouseConnectionError(AMBIGUOUS_URL)
    try:
        # UTF8 whatever PGCLIENTENCODING or the URL says: every server encoding converts
        # to it, so no id upstream stored can fail a window on its way to the rater.
        conn = psycopg.connect(
            target, autocommit=False, application_name=APPLICATION_NAME, client_encoding="UTF8"
        )
        conn.execute(SESSION_SETTINGS)
        conn.execute(BUILT_INS_FIRST)
        conn.commit()
    except psycopg.OperationalError as exc:
        reason = first_line(exc, type(exc).__name__)
        raise WarehouseConnectionError(
            f"cannot connect to the warehouse {redact_url(target)}: {reason}"
        ) from exc
    if conn.info.parameter_status("server_encoding") == "SQL_ASCII":
        conn.close()
        raise WarehouseConnectionError(
            f"the warehouse {redact_url(target)} is a SQL_ASCII database, whose text has no "
            "encoding, so no id can be read as text: use a database created with ENCODING "
            "'UTF8' (or another real encoding)"
        )
    return conn


def shipped_revision() -> str:
    """The newest schema revision this release ships (the Alembic head), read from the
    revision files' names (``0012_….py``) without importing Alembic."""
    return max(path.name[:4] for path in MIGRATION_VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def require_schema(conn: psycopg.Connection) -> None:
    """Raise SchemaNotMigrated unless the warehouse is at this release's schema revision,
    every table rating needs exists, and the project's tables are found in the warehouse's
    own schema."""
    was_idle = conn.info.transaction_status == TransactionStatus.IDLE
    revision = None
    schema = _scalar(conn, REVISION_SCHEMA)
    if schema is not None:
        query = sql.SQL(SCHEMA_REVISION).format(schema=sql.Identifier(schema))
        revision = _scalar(conn, query)
    missing = [row[0] for row in conn.execute(MISSING_TABLES, {"names": list(REQUIRED_TABLES)})]
    found = conn.execute(FOUND_TABLES, {"tables": list(CREATED_BY)}).fetchall()
    elsewhere = sorted(qualified for _, qualified, in_warehouse in found if not in_warehouse)
    if was_idle:
        conn.rollback()
    shipped = shipped_revision()
    if revision is not None and revision > shipped:
        raise SchemaNotMigrated(
            f"the warehouse is at schema revision {revision}, newer than this release's "
            f"{shipped}: run the release that migrated it"
        )
    if revision != shipped:
        at = "is not migrated" if revision is None else f"is at schema revision {revision}"
        raise SchemaNotMigrated(
            f"the warehouse {at}, this release needs {shipped}: run `rating-pipeline db upgrade`"
        )
    if missing:
        raise SchemaNotMigrated(
            f"the warehouse has no {', '.join(missing)} table: run `rating-pipeline db upgrade`"
        )
    if elsewhere:
        raise SchemaNotMigrated(
            f"the search path finds {', '.join(map(shown, elsewhere))} before the warehouse's "
            f"own in schema {shown(schema or '')}: every statement would read and write "
            "there; put the warehouse's schema first on the search path, or rename that table"
        )


def require_readable_billing_event(conn: psycopg.Connection) -> None:
    """Raise UnusableBillingEvent, before anything is rated, naming every way upstream's
    billing_event is unusable: a token count in a type that can hold a fraction (2.5 tokens
    have no price) or more than MAX_COUNT_PRECISION digits, occurred_at or ingested_at in a
    type other than timestamptz, a column the rater reads missing."""
    was_idle = conn.info.transaction_status == TransactionStatus.IDLE
    missing = conn.execute(MISSING_EVENT_COLUMNS, {"columns": list(READ_EVENT_COLUMNS)}).fetchall()
    unrateable = conn.execute(
        UNRATEABLE_TOKEN_COLUMNS,
        {"columns": TOKEN_COLUMNS, "max_precision": MAX_COUNT_PRECISION},
    ).fetchall()
    zoneless = conn.execute(UNRATEABLE_TIME_COLUMNS, {"columns": INSTANT_COLUMNS}).fetchall()
    if was_idle:
        conn.rollback()
    problems = []
    if unrateable:
        columns = ", ".join(f"billing_event.{name} is {kind}" for name, kind in unrateable)
        problems.append(
            f"{columns}: a token count must be whole and at most {MAX_COUNT_PRECISION} "
            f"digits (an integer type or numeric(p, 0) with p <= {MAX_COUNT_PRECISION})"
        )
    if zoneless:
        columns = ", ".join(f"billing_event.{name} is {kind}" for name, kind in zoneless)
        problems.append(
            f"{columns}: an event's time must be an instant, timestamp with time zone "
            "(contract 3): without its zone no reader knows which hour it falls in"
        )
    if missing:
        names = ", ".join(name for (name,) in missing)
        problems.append(
            f"billing_event has no {names} column{'s' * (len(missing) > 1)} (contract 3; "
            "`rating-pipeline db upgrade` adds only the token classes and service_tier)"
        )
    if problems:
        raise UnusableBillingEvent("; ".join(problems) + ": nothing rated")


def database_clock(conn: psycopg.Connection) -> datetime:
    """The database's current time: the clock that stamps ``ingested_at``, and so the one
    that says whether a window has closed."""
    row = conn.execute(load_sql("select_database_clock")).fetchone()
    if row is None:
        raise RuntimeError("select_database_clock returned no row")
    instant: datetime = row[0]
    return instant.astimezone(UTC)


def _scalar(conn: psycopg.Connection, query: str | sql.Composed) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]
