"""DDL on upstream's live ``billing_event`` that never holds up its inserts (docs/warehouse.md).

Revisions call these inside ``op.get_context().autocommit_block()``: each statement commits
on its own, so no lock outlives it. Index names and statements come from the revisions'
own constants; every value is bound. A statement naming what the catalog holds (a
partition, a schema: quoted, it may hold ``:name``, which SQLAlchemy's ``text()`` would read
as a parameter) goes to psycopg without parameters, which then looks for no placeholder.

- ``build_index`` builds ``CREATE INDEX CONCURRENTLY``: inserts go on during the build. A
  failed concurrent build leaves its index INVALID (used by no query, still paid for by
  every insert); the next build of that name drops it and builds it again.
- On a partitioned ``billing_event``, where no index can be built concurrently, an index
  is made ``ON ONLY`` the parent (invalid; a brief SHARE lock, under ``with_lock_timeout``),
  each leaf partition's is built concurrently and attached (a brief lock, the same way;
  sub-partitions alike), and the parent's turns valid once every partition's is attached.
  Partition indexes are named ``rating_idx_<parent index oid>_<partition oid>``; those an
  interrupted build left unattached are dropped first.
- ``with_lock_timeout`` runs a statement that needs a brief ACCESS EXCLUSIVE lock, waiting
  at most ``LOCK_TIMEOUT`` per attempt (inserts queue behind a waiting ALTER only that
  long), ``LOCK_ATTEMPTS`` times with doubling pauses, then raises ``LockNotGranted``.
"""

from __future__ import annotations

import re
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
# A valid btree index of the whole table leading with the column: what a range read of it
# can use (a partial index serves only its predicate's rows, a hash index no range).
VALID_INDEX_LEADING_WITH = """
SELECT EXISTS (
    SELECT 1 FROM pg_index AS i
    JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    JOIN pg_class AS index_class ON index_class.oid = i.indexrelid
    JOIN pg_am AS method ON method.oid = index_class.relam
    WHERE i.indrelid = to_regclass(:table) AND a.attname = :column AND i.indisvalid
      AND i.indpred IS NULL AND method.amname = 'btree'
)
"""
DROP_INDEX_CONCURRENTLY = "DROP INDEX CONCURRENTLY IF EXISTS {name}"
DROP_INDEX = "DROP INDEX IF EXISTS {name}"
RELKIND = "SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"
PARTITIONED_TABLE, PARTITIONED_INDEX = "p", "I"
# The revisions' own CREATE INDEX CONCURRENTLY statements, taken apart for a partitioned
# table: the same definition (columns, predicate) serves the parent and each partition.
CONCURRENT_INDEX = re.compile(
    r"\s*CREATE INDEX CONCURRENTLY (?:IF NOT EXISTS )?(?P<name>\w+)\s+ON (?P<table>\w+)\s+"
    r"(?P<definition>\(.*)",
    re.DOTALL,
)
SCHEMA_OF = """
SELECT quote_ident(n.nspname)
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = :oid
"""
PARTITIONS = """
SELECT c.oid, c.oid::regclass::text, c.relkind, quote_ident(n.nspname)
FROM pg_inherits AS h
JOIN pg_class AS c ON c.oid = h.inhrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE h.inhparent = to_regclass(:table)
ORDER BY c.oid
"""
# Foreign tables anywhere below the table, sub-partitions' included: they take no index.
FOREIGN_PARTITIONS = """
SELECT c.oid::regclass::text
FROM pg_partition_tree(to_regclass(:table)) AS tree JOIN pg_class AS c ON c.oid = tree.relid
WHERE c.relkind = 'f'
ORDER BY c.oid
"""
PARTITION_INDEX_PREFIX = "rating_idx_"
# Partition indexes of ours that no parent index holds: left by an interrupted build.
# Partitioned ones first: dropping one drops the partition indexes attached to it.
UNATTACHED_PARTITION_INDEXES = r"""
SELECT c.oid::regclass::text
FROM pg_class AS c JOIN pg_index AS i ON i.indexrelid = c.oid
WHERE c.relname LIKE 'rating\_idx\_%'
  AND i.indrelid IN (SELECT relid FROM pg_partition_tree(to_regclass(:table)))
  AND NOT EXISTS (SELECT 1 FROM pg_inherits AS h WHERE h.inhrelid = c.oid)
ORDER BY c.relkind = 'I' DESC
"""
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


class UnsupportedTable(RatingPipelineError):
    """billing_event has a shape no index of ours can be built on (foreign partitions)."""


def index_is_valid(bind: Connection, name: str) -> bool | None:
    """True or False for the index ``name``'s ``indisvalid``; None when there is none."""
    return bind.execute(text(INDEX_IS_VALID), {"name": name}).scalar()


def has_valid_index_leading_with(bind: Connection, table: str, column: str) -> bool:
    return bool(
        bind.execute(text(VALID_INDEX_LEADING_WITH), {"table": table, "column": column}).scalar()
    )


def drop_index(bind: Connection, name: str) -> None:
    """``DROP INDEX CONCURRENTLY IF EXISTS``: waits for queries using it, blocks no insert.

    A partitioned index cannot be dropped concurrently: it is dropped, with the partition
    indexes attached to it, under ``with_lock_timeout``.
    """
    if _relkind(bind, name) == PARTITIONED_INDEX:
        with_lock_timeout(bind, DROP_INDEX.format(name=name), name, f"dropping index {name}")
        return
    _driver(bind).execute(DROP_INDEX_CONCURRENTLY.format(name=name))


def build_index(bind: Connection, name: str, create_concurrently: str) -> None:
    """Ensure a valid index ``name``: kept if valid, dropped first if a failed build left it
    invalid, built by ``create_concurrently`` (a CREATE INDEX CONCURRENTLY of ``name``), or
    partition by partition where its table is partitioned."""
    valid = index_is_valid(bind, name)
    if valid:
        return
    if valid is False:
        drop_index(bind, name)
    statement = CONCURRENT_INDEX.fullmatch(create_concurrently)
    if statement is None or statement["name"] != name:
        raise ValueError(f"not a CREATE INDEX CONCURRENTLY of {name}: {create_concurrently}")
    table = statement["table"]
    if _relkind(bind, table) != PARTITIONED_TABLE:
        bind.execute(text(create_concurrently))
        return
    foreign = bind.execute(text(FOREIGN_PARTITIONS), {"table": table}).scalars().all()
    if foreign:
        raise UnsupportedTable(
            f"index {name}: {table} has foreign-table partitions ({', '.join(foreign)}), which "
            "take no index; create the project's indexes on the other partitions by hand"
        )
    for (orphan,) in bind.execute(text(UNATTACHED_PARTITION_INDEXES), {"table": table}).all():
        drop_index(bind, orphan)
    oid = bind.execute(text("SELECT to_regclass(:table)::oid"), {"table": table}).scalar()
    schema = bind.execute(text(SCHEMA_OF), {"oid": oid}).scalar()
    _build_partitioned(bind, name, f"{schema}.{name}", table, statement["definition"])


def _build_partitioned(
    bind: Connection, name: str, qualified: str, table: str, definition: str
) -> None:
    """Index ``name`` (``qualified`` with the schema of ``table``, where PostgreSQL puts it)
    made ON ONLY ``table``, then each partition's built and attached. Making it and each
    attach take brief locks that inserts wait behind: they run under the lock timeout."""
    partitions = bind.execute(text(PARTITIONS), {"table": table}).fetchall()
    with_lock_timeout(
        bind, f"CREATE INDEX {name} ON ONLY {table} {definition}", table, f"indexing {table}"
    )
    parent = bind.execute(text("SELECT to_regclass(:name)::oid"), {"name": qualified}).scalar()
    for partition_oid, partition, kind, schema in partitions:
        child = f"{PARTITION_INDEX_PREFIX}{parent}_{partition_oid}"
        qualified_child = f"{schema}.{child}"
        if kind == PARTITIONED_TABLE:
            _build_partitioned(bind, child, qualified_child, partition, definition)
        else:
            _driver(bind).execute(f"CREATE INDEX CONCURRENTLY {child} ON {partition} {definition}")
        with_lock_timeout(
            bind,
            f"ALTER INDEX {qualified} ATTACH PARTITION {qualified_child}",
            partition,
            f"attaching {child} to {name}",
        )


def _relkind(bind: Connection, name: str) -> str | None:
    kind = bind.execute(text(RELKIND), {"name": name}).scalar()
    return None if kind is None else str(kind)


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
