"""The warehouse schema as Alembic revisions (``migrations/versions``), driven from code.

``upgrade``/``downgrade``/``current`` back ``rating-pipeline db upgrade|downgrade|current``;
each returns one line for a person. Alembic is configured here, with no alembic.ini: the
script location is inside the package and the connection is handed to ``env.py``.
Downgrade goes to base by default: it drops every table of the project and never
``billing_event``; to any revision, it refuses to drop a table that holds rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy
import sqlalchemy.exc
from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy.pool import NullPool

from rating_pipeline.errors import RatingPipelineError, first_line
from rating_pipeline.warehouse.database import (
    CREATED_BY,
    FOUND_TABLES,
    REVISION_SCHEMA,
    UnusableBillingEvent,
    connect,
    database_url,
    redact_url,
    refusal_note,
    require_readable_billing_event,
)

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
BASE = "base"
# The Alembic config attribute that tells a revision's downgrade it may drop rows.
DROP_RATED_DATA = "drop_rated_data"
# The config attribute env.py lists the revisions a command applied in, in order.
APPLIED = "applied"
CURRENT_SCHEMA = "SELECT current_schema()"
BILLING_EVENT_ABSENT = "SELECT to_regclass('billing_event') IS NULL"
# Tables locked against every rating's write until the revision commits.
LOCK_TABLES = "LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"
# Closes and invoice builds read the close mark before they write the other tables: a
# lock of several takes it first, or it would wait for it holding what they need next.
LOCKED_FIRST = ("rating_period_close",)


def _config(
    connection: sqlalchemy.Connection | None = None, drop_rated_data: bool = False
) -> Config:
    config = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    config.attributes[DROP_RATED_DATA] = drop_rated_data
    return config


def head_revision() -> str:
    """The newest revision the package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions under {SCRIPT_LOCATION}")
    return head


@contextmanager
def _engine(url: str | None) -> Iterator[sqlalchemy.Engine]:
    """An SQLAlchemy engine (psycopg 3) over connections made by ``database.connect``, so any
    libpq connection string works, exactly as for the rest of the warehouse."""
    target = url or database_url()

    def create_connection() -> psycopg.Connection:
        return connect(target)

    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=create_connection, poolclass=NullPool
    )
    try:
        yield engine
    finally:
        engine.dispose()


class MigrationFailed(RatingPipelineError):
    """A revision the database refused; the revisions before it stay committed."""


class UnknownRevision(RatingPipelineError):
    """The warehouse is at a revision this release does not ship (a newer release's)."""


def _run(
    url: str,
    alembic_command: Callable[[Config, str], None],
    revision: str,
    drop_rated_data: bool = False,
) -> list[str]:
    """Run an Alembic command on a connection in no transaction: ``env.py`` takes the
    migration lock, then runs each revision in a transaction of its own; return the
    revisions it applied. A revision the database refuses raises MigrationFailed naming it
    and where the warehouse stopped."""
    try:
        with _engine(url) as engine, engine.connect() as connection:
            config = _config(connection, drop_rated_data)
            try:
                alembic_command(config, revision)
            except Exception as exc:
                # Ctrl-C in a statement of an autocommit block (a concurrent index build)
                # invalidates the connection; Alembic's commit at the block's end then
                # raises PendingRollbackError in place of the KeyboardInterrupt.
                interrupt = _interrupted(exc)
                if interrupt is not None:
                    raise type(interrupt)() from None  # Ctrl-C, or SIGTERM (Terminated)
                raise
            return list(config.attributes.get(APPLIED, []))
    except (sqlalchemy.exc.DBAPIError, psycopg.Error) as exc:
        cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
        reason = first_line(cause, "")
        detail = getattr(getattr(cause, "diag", None), "message_detail", None)
        stopped = revision_of(url)
        failed = _next_revision(stopped) if alembic_command is command.upgrade else stopped
        which = f"revision {failed}" if failed else "the migration"
        refusal = _upstream_refusal(url) if alembic_command is command.upgrade else None
        raise MigrationFailed(
            f"{which} failed on {redact_url(url)}: {type(cause).__name__}: {reason}"
            f"{f' ({detail})' if detail else ''}{refusal_note(cause)}; the warehouse is at "
            f"revision {stopped or BASE}, the revisions before it committed"
            f"{f'; upstream billing_event, as it is: {refusal}' if refusal else ''}"
        ) from None


def _interrupted(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt ``exc`` was raised while handling, if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _upstream_refusal(url: str) -> str | None:
    """Why every rating would refuse upstream's billing_event, which may be why a revision
    failed to index it; None when it is usable, absent, or cannot be asked about."""
    try:
        return billing_event_refusal(url)
    except (psycopg.Error, RatingPipelineError):
        return None


def _next_revision(revision: str | None) -> str | None:
    """The revision an upgrade from ``revision`` (None: base) runs next."""
    for step in ScriptDirectory.from_config(_config()).walk_revisions():
        if step.down_revision == revision:
            return step.revision
    return None


def _previous_revision(revision: str) -> str | None:
    """The revision ``revision`` upgrades from (None: base)."""
    down = ScriptDirectory.from_config(_config()).get_revision(revision).down_revision
    assert down is None or isinstance(down, str)  # the history is linear
    return down


def _known_revision(url: str) -> str | None:
    """The database's revision, which this release must ship; None at base."""
    revision = revision_of(url)
    if revision is not None and revision not in _shipped_revisions():
        raise UnknownRevision(
            f"the warehouse on {redact_url(url)} is at schema revision {revision}, which this "
            f"release does not ship (newer, or of another release; its newest is "
            f"{head_revision()}): run the release that migrated it"
        )
    return revision


def _shipped_revisions() -> set[str]:
    return {step.revision for step in ScriptDirectory.from_config(_config()).walk_revisions()}


def version_table_schema(connection: sqlalchemy.Connection) -> str | None:
    """The schema of the warehouse's alembic_version (database.REVISION_SCHEMA), or before
    there is one, the schema its tables are created in."""
    schema = connection.exec_driver_sql(REVISION_SCHEMA).scalar()
    if schema is None:
        schema = connection.exec_driver_sql(CURRENT_SCHEMA).scalar()
    return None if schema is None else str(schema)


def migration_context(connection: sqlalchemy.Connection) -> MigrationContext:
    """Alembic's view of the warehouse's revision, on its own alembic_version."""
    schema = version_table_schema(connection)
    return MigrationContext.configure(connection, opts={"version_table_schema": schema})


# The schema of the warehouse's rating_log and rated_usage as the search path finds them
# (both in one schema), and each alembic_version anywhere in the database (no parameters:
# % is format's own).
TABLES_WITHOUT_REVISION = """
SELECT format('%I', namespace.nspname),
    (SELECT string_agg(format('%I.alembic_version', other.nspname), ', ')
     FROM pg_class AS version JOIN pg_namespace AS other ON other.oid = version.relnamespace
     WHERE version.relname = 'alembic_version' AND version.relkind IN ('r', 'p'))
FROM pg_class AS rating_log JOIN pg_namespace AS namespace
    ON namespace.oid = rating_log.relnamespace
WHERE rating_log.oid = to_regclass('rating_log')
  AND rating_log.relnamespace = (
      SELECT relnamespace FROM pg_class WHERE oid = to_regclass('rated_usage')
  )
"""


def _require_no_tables_without_revision(url: str) -> None:
    """Raise MigrationFailed when the warehouse has no revision but has its tables: an
    upgrade would run every revision again and fail halfway. A release before revisions
    were kept beside the tables stamped an upstream alembic_version on the search path."""
    with connect(url) as conn:
        found = conn.execute(TABLES_WITHOUT_REVISION).fetchone()
    if found is None:
        return
    schema, others = found
    fix = (
        f"an earlier release may have stamped another schema's on the search path ({others}): "
        f"copy the warehouse's row from it into {schema}.alembic_version (version_num "
        "varchar(32) PRIMARY KEY), restore that table's own row, and upgrade again"
        if others
        else f"create {schema}.alembic_version (version_num varchar(32) PRIMARY KEY) holding "
        "the revision its tables are at, and upgrade again"
    )
    raise MigrationFailed(
        f"the warehouse on {redact_url(url)} has its tables ({schema}.rated_usage, "
        f"{schema}.rating_log) but no {schema}.alembic_version, so no revision: upgrading "
        f"would run every revision again; {fix}"
    )


def revision_of(url: str | None = None) -> str | None:
    """The database's current revision; None when it was never migrated (or is at base)."""
    with _engine(url) as engine, engine.begin() as connection:
        return migration_context(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Migrate the warehouse to ``revision`` (by default the head); idempotent. The line
    says what this call applied: none, when another upgrade did the work while this one
    waited for its lock."""
    target = url or database_url()
    if _known_revision(target) is None:  # refuses a newer release's warehouse before any change
        _require_no_tables_without_revision(target)
    applied = _run(target, command.upgrade, revision)
    after = revision_of(target)
    where = redact_url(target)
    named = "(head)" if after == head_revision() else "(not the head)"
    if not applied:
        return f"warehouse already at revision {after} {named} on {where}"
    before = _previous_revision(applied[0])
    return f"warehouse upgraded from {before or BASE} to revision {after} {named} on {where}"


OUTPUT_TABLES = tuple(CREATED_BY)
COUNT_ROWS = "SELECT count(*) FROM {table}"
LOG_ROWS_WITH_CLOSE_FIGURES = """
SELECT count(*) FROM rating_log
WHERE window_closed OR open_adjustment_cost_usd <> 0 OR adjustments_inserted <> 0
    OR adjustments_updated <> 0 OR adjustments_deleted <> 0 OR adjustments_unchanged <> 0
"""
TRUNCATE = "TRUNCATE {tables}"
# A note on what stops a downgrade once --drop-rated-data's emptying has committed.
EMPTIED_FIRST = (
    "--drop-rated-data emptied the rating tables first: every rating, close and invoice line "
    "is gone, and `db upgrade` brings none back"
)


class DowngradeRefused(RatingPipelineError):
    """Downgrading to base would drop rated data, and the caller did not say to."""


def in_lock_order(tables: Iterable[str]) -> list[str]:
    """``tables`` in the order a statement locking several must name them: LOCKED_FIRST
    first, or a close or build in flight deadlocks with it."""
    return sorted(tables, key=lambda table: table not in LOCKED_FIRST)


def lock_tables(bind: sqlalchemy.Connection, tables: Sequence[str]) -> list[str]:
    """Lock those of ``tables`` that exist against every reader and writer until the
    revision's transaction ends, once every transaction writing them has; return them, in
    the order locked (LOCKED_FIRST first). A revision that counts rows before it drops or
    narrows a table counts under this lock, or rows committed while it waited are lost
    unseen."""
    present = in_lock_order(
        table
        for table in tables
        if bind.exec_driver_sql(f"SELECT to_regclass('{table}')").scalar() is not None
    )
    if present:
        bind.exec_driver_sql(LOCK_TABLES.format(tables=", ".join(present)))
    return present


def refuse_to_drop_rows(bind: sqlalchemy.Connection, revision: str, tables: Sequence[str]) -> None:
    """In the downgrade of ``revision``, before it drops ``tables``: raise DowngradeRefused
    while any of them holds a row, unless the downgrade was given --drop-rated-data.
    ``downgrade`` counted them before its first revision, but ratings go on until this
    revision runs (an index build before it takes minutes); from the lock on, none can."""
    config = op.get_context().config
    if config is not None and config.attributes.get(DROP_RATED_DATA):
        return
    present = lock_tables(bind, tables)
    held = [
        f"{count} {table} row{'s' * (count != 1)}"
        for table in present
        for count in [bind.exec_driver_sql(COUNT_ROWS.format(table=table)).scalar()]
        if count
    ]
    if held:
        raise DowngradeRefused(
            f"refusing to undo revision {revision}: it would drop {', '.join(held)}, written "
            f"since the downgrade counted them; the warehouse stays at revision {revision} "
            "(`db upgrade` restores the revisions above it), or rerun with --drop-rated-data"
        )


def rated_rows(
    url: str, tables: Sequence[str] = OUTPUT_TABLES, touched: Sequence[str] = ()
) -> dict[str, int]:
    """The rows each of ``tables`` that exists holds. Raises DowngradeRefused when the name
    of one of ``tables`` or ``touched`` finds a table outside the schema the warehouse was
    migrated in (the project's was dropped by hand, and another schema's of that name is on
    the search path): a revision's DROP or ALTER would change that table."""
    with connect(url) as conn:
        names = list(dict.fromkeys([*tables, *touched]))
        found = conn.execute(FOUND_TABLES, {"tables": names}).fetchall()
        foreign = [qualified for _, qualified, ours in found if not ours]
        if foreign:
            raise DowngradeRefused(
                f"refusing to downgrade {redact_url(url)}: {', '.join(foreign)} is not the "
                "warehouse's own table but has its name on the search path, so the downgrade "
                "would change it; take that schema off the search path first"
            )
        return {
            table: int(count)
            for table, _, _ in found
            if table in tables
            for (count,) in conn.execute(sql.SQL(COUNT_ROWS).format(table=sql.Identifier(table)))
        }


def _log_figures_lost(url: str, undone: list[str], present: list[str]) -> str:
    """What a downgrade undoing 0011 (the closes) loses of rating_log, which it keeps: the
    close and adjustment figures of its rows (0011 drops their columns); "" if none."""
    if "rating_period_close" not in undone or "rating_log" not in present or "rating_log" in undone:
        return ""
    with connect(url) as conn:
        row = conn.execute(LOG_ROWS_WITH_CLOSE_FIGURES).fetchone()
    logged = int(row[0]) if row else 0
    if not logged:
        return ""
    return f", and the close and adjustment figures of {logged} rating_log row{'s' * (logged != 1)}"


def _truncate(url: str, tables: list[str]) -> None:
    """Empty ``tables`` at once: what ``--drop-rated-data`` asked for, before any revision
    is undone, so that no revision's own refusal to lose rows stops a drop to base."""
    with connect(url) as conn:
        names = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
        conn.execute(sql.SQL(TRUNCATE).format(tables=names))


def _found_empty(url: str, tables: list[str]) -> bool:
    """Whether ``tables`` hold no row now: an emptying stopped as it committed may have
    committed all the same. False when the warehouse cannot be asked."""
    try:
        return not any(rated_rows(url, tables).values())
    except Exception:
        return False


def _check_downgrade(url: str, revision: str, emptied: list[str]) -> None:
    """Run the ``check_downgrade(connection)`` of every revision a downgrade to ``revision``
    would undo, before any is undone (each revision commits on its own, so a refusal met
    halfway would leave the revisions above it already undone), as they would find the
    tables once ``emptied`` are: inside a transaction that empties them, rolled back."""
    script = ScriptDirectory.from_config(_config())
    with _engine(url) as engine, engine.connect() as connection, connection.begin() as checks:
        current = migration_context(connection).get_current_revision()
        if emptied:
            names = ", ".join(f'"{table}"' for table in emptied)
            connection.exec_driver_sql(TRUNCATE.format(tables=names))
        try:
            if current is not None:
                for step in script.iterate_revisions(current, revision):
                    check = getattr(step.module, "check_downgrade", None)
                    if check is not None:
                        check(connection)
        finally:
            checks.rollback()


def downgrade(url: str | None = None, revision: str = BASE, drop_rated_data: bool = False) -> str:
    """Downgrade to ``revision``: by default ``base``, which drops the project's tables;
    ``billing_event`` is always kept. Raises DowngradeRefused, dropping nothing, when the
    tables it would drop hold rows, unless ``drop_rated_data``."""
    target = url or database_url()
    before = _known_revision(target)
    if revision != BASE and revision not in _shipped_revisions():
        raise UnknownRevision(
            f"not a revision this release ships: {revision!r} (give {BASE!r} or a revision "
            f"id, {', '.join(sorted(_shipped_revisions()))})"
        )
    if revision != BASE and (before is None or revision > before):
        raise UnknownRevision(
            f"the warehouse on {redact_url(target)} is at revision {before or BASE}: "
            f"{revision} is not earlier, so there is nothing to downgrade to"
        )
    # The tables of the revisions the downgrade undoes (revisions are 4 digits).
    undone = [
        table
        for table, created_by in CREATED_BY.items()
        if before is not None
        and created_by <= before
        and (revision == BASE or revision < created_by)
    ]
    # Every project table the warehouse has: a revision undone may alter any of them.
    present = [t for t, created_by in CREATED_BY.items() if before and created_by <= before]
    dropped = rated_rows(target, undone, touched=present)
    held = {table: rows for table, rows in dropped.items() if rows}
    if held and not drop_rated_data:
        lost = ", ".join(f"{rows} {table} row{'s' * (rows != 1)}" for table, rows in held.items())
        lost += _log_figures_lost(target, undone, present)
        raise DowngradeRefused(
            f"refusing to downgrade {redact_url(target)}: it would drop {lost}; "
            "rerun with --drop-rated-data to drop them"
        )
    emptied = in_lock_order(dropped) if held else []  # empty ones may reference a held one
    _check_downgrade(target, revision, emptied)
    truncated = False
    try:
        if emptied:
            _truncate(target, emptied)
            truncated = True
        _run(target, command.downgrade, revision, drop_rated_data)
    except BaseException as stopped:  # Ctrl-C, a revision's failure or refusal: say so too
        if truncated or (emptied and _found_empty(target, emptied)):
            stopped.add_note(EMPTIED_FIRST)
        raise
    where = redact_url(target)
    if before is None:
        return f"warehouse already at base on {where}; nothing dropped, billing_event kept"
    if revision == before:
        return f"warehouse already at revision {before} on {where}; nothing downgraded"
    if revision != BASE:
        return f"warehouse downgraded from revision {before} to {revision} on {where}"
    return (
        f"warehouse downgraded from revision {before} to base on {where}: "
        "rating tables dropped, billing_event kept"
    )


def billing_event_refusal(url: str | None = None) -> str | None:
    """Why every rating would refuse the warehouse's billing_event (a count that can hold a
    fraction, a zoneless instant: upstream's types, which no revision changes), or None
    (None too when there is no billing_event yet)."""
    with connect(url or database_url()) as conn:
        if conn.execute(BILLING_EVENT_ABSENT).fetchone() == (True,):
            return None
        try:
            require_readable_billing_event(conn)
        except UnusableBillingEvent as exc:
            return str(exc)
    return None


def where_interrupted(action: str) -> str:
    """The line for a ``db`` command stopped by Ctrl-C: each revision commits on its own, so
    the warehouse is at the last one done (an interrupted index build is cleaned up and
    built again by the next run)."""
    target = database_url()
    try:
        revision = revision_of(target) or BASE
    except Exception:  # the interrupt may have left no way to ask: say how to, then
        return "interrupted: `db current` says at which revision the warehouse stopped"
    return (
        f"interrupted: the warehouse on {redact_url(target)} is at revision {revision}, the "
        f"revisions before it committed; `db {action}` again goes on from there"
    )


def current(url: str | None = None) -> str:
    """The warehouse's revision and whether it is the head."""
    target = url or database_url()
    revision = _known_revision(target)
    head = head_revision()
    where = redact_url(target)
    if revision is None:
        return f"warehouse at base (not migrated) on {where}: run `rating-pipeline db upgrade`"
    if revision == head:
        return f"warehouse at revision {revision} (head) on {where}"
    return (
        f"warehouse at revision {revision}, head is {head}, on {where}: "
        "run `rating-pipeline db upgrade`"
    )
