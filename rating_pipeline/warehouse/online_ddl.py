"""DDL on upstream's live ``billing_event`` that never holds up its inserts (docs/warehouse.md).

Revisions call these inside ``op.get_context().autocommit_block()``: each statement commits
on its own, so no lock outlives it. Index names and statements come from the revisions'
own constants; every value is bound.

- ``build_index`` builds ``CREATE INDEX CONCURRENTLY``: inserts go on during the build. A
  failed concurrent build leaves its index INVALID (used by no query, still paid for by
  every insert); the next build of that name drops it and builds it again.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

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
