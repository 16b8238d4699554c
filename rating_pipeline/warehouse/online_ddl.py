"""DDL on upstream's live ``billing_event`` that never holds up its inserts (docs/warehouse.md).

Revisions call these inside ``op.get_context().autocommit_block()``: each statement commits
on its own, so no lock outlives it. Index names and statements come from the revisions'
own constants; every value is bound.

- ``build_index`` builds ``CREATE INDEX CONCURRENTLY``: inserts go on during the build. A
  failed concurrent build leaves its index INVALID (used by no query, still paid for by
  every insert); the next build of that name drops it and builds it again.
- ``with_lock_timeout`` runs a statement that needs a brief ACCESS EXCLUSIVE lock, waiting
  at most ``LOCK_TIMEOUT`` per attempt (inserts queue behind a waiting ALTER only that
  long), ``LOCK_ATTEMPTS`` times with doubling pauses, then raises ``LockNotGranted``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg
from sqlalchemy import Connection, text

from rating_pipeline.errors import RatingPipelineError

LOCK_TIMEOUT = "2s"
LOCK_ATTEMPTS = 6
FIRST_BACKOFF_SECONDS = 1.0  # a pause, not money (noqa: money-ok)

INDEX_IS_VALID = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"
# A usable index whose first key is the column, whatever its name (upstream's counts).
VALID_INDEX_LEADING_WITH = """
SELECT EXISTS (
    SELECT 1 FROM pg_index AS i
    JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass(:table) AND a.attname = :column AND i.indisvalid
)
"""
DROP_INDEX_CONCURRENTLY = "DROP INDEX CONCURRENTLY IF EXISTS {name}"
ABSENT_COLUMNS = """
SELECT name FROM unnest(CAST(:names AS text[])) AS name
WHERE NOT EXISTS (
    SELECT 1 FROM pg_attribute
    WHERE attrelid = to_regclass(:table) AND attname = name AND NOT attisdropped
)
"""
SET_LOCAL_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %(timeout)s, true)"


class LockNotGranted(RatingPipelineError):
    """A statement on a live table could not get its brief lock; it changed nothing."""


def index_is_valid(bind: Connection, name: str) -> bool | None:
    """True or False for the index ``name``'s ``indisvalid``; None when there is none."""
    return bind.execute(text(INDEX_IS_VALID), {"name": name}).scalar()


def has_valid_index_leading_with(bind: Connection, table: str, column: str) -> bool:
    return bool(
        bind.execute(text(VALID_INDEX_LEADING_WITH), {"table": table, "column": column}).scalar()
    )


def drop_index(bind: Connection, name: str) -> None:
    """``DROP INDEX CONCURRENTLY IF EXISTS``: waits for queries using it, blocks no insert."""
    bind.execute(text(DROP_INDEX_CONCURRENTLY.format(name=name)))


def build_index(bind: Connection, name: str, create_concurrently: str) -> None:
    """Ensure a valid index ``name``: kept if valid, dropped first if a failed build left it
    invalid, built by ``create_concurrently`` (a CREATE INDEX CONCURRENTLY of ``name``)."""
    valid = index_is_valid(bind, name)
    if valid:
        return
    if valid is False:
        drop_index(bind, name)
    bind.execute(text(create_concurrently))


def absent_columns(bind: Connection, table: str, columns: Sequence[str]) -> list[str]:
    """The names in ``columns`` that ``table`` lacks, in their order."""
    rows = bind.execute(text(ABSENT_COLUMNS), {"table": table, "names": list(columns)})
    return [name for (name,) in rows]


def with_lock_timeout(bind: Connection, statement: str, table: str, what: str) -> None:
    """Run ``statement`` (one statement locking ``table``) in a transaction of its own under
    ``lock_timeout``; retry a lock timeout after doubling pauses; after ``LOCK_ATTEMPTS``,
    the statement never having taken effect, raise ``LockNotGranted`` opening with ``what``."""
    driver = _driver(bind)
    pause = FIRST_BACKOFF_SECONDS
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            with driver.transaction():
                driver.execute(SET_LOCAL_LOCK_TIMEOUT, {"timeout": LOCK_TIMEOUT})
                driver.execute(statement)
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == LOCK_ATTEMPTS:
                break
            time.sleep(pause)
            pause *= 2
    raise LockNotGranted(
        f"{what}: {LOCK_ATTEMPTS} attempts under lock_timeout {LOCK_TIMEOUT} each found "
        f"another transaction holding a lock on {table} (see pg_locks and pg_stat_activity); "
        "nothing was changed: run `rating-pipeline db upgrade` again once it has ended"
    )


def _driver(bind: Connection) -> psycopg.Connection:
    """The psycopg connection under ``bind``, in autocommit inside an autocommit block."""
    driver = bind.connection.driver_connection
    if not isinstance(driver, psycopg.Connection) or not driver.autocommit:
        raise RuntimeError("online DDL runs inside op.get_context().autocommit_block()")
    return driver
