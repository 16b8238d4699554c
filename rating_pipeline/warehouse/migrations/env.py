"""Alembic environment: runs revisions on the connection ``migrations.py`` hands over.

Configured in code (``rating_pipeline.warehouse.migrations``), never from an alembic.ini.
Revisions are plain SQL; there is no SQLAlchemy model to autogenerate from. Each revision
runs in a transaction of its own (the index builds on ``billing_event`` step outside it:
docs/warehouse.md), all of them under one session-level advisory lock.
"""

from __future__ import annotations

import time

from alembic import context
from alembic.runtime.migration import MigrationInfo
from sqlalchemy import Connection, text

from rating_pipeline.warehouse.migrations import APPLIED, version_table_schema

# Two `db upgrade`s at once queue on this lock ("MIGR"), held by the session from before
# the first revision to after the last, across their commits. It is polled, never waited
# for inside a statement: a waiting statement holds a snapshot, and a concurrent index
# build of the upgrade holding the lock would wait for that snapshot in turn: a deadlock.
TRY_MIGRATION_LOCK = text("SELECT pg_try_advisory_lock(1296651090, 0)")
RELEASE_MIGRATION_LOCK = text("SELECT pg_advisory_unlock(1296651090, 0)")
LOCK_POLL_SECONDS = 0.5  # a pause, not money (noqa: money-ok)


def take_migration_lock(connection: Connection) -> None:
    """Return holding the lock, having been in no transaction while waiting for it."""
    connection.execution_options(isolation_level="AUTOCOMMIT")
    while not connection.execute(TRY_MIGRATION_LOCK).scalar():
        time.sleep(LOCK_POLL_SECONDS)
    connection.commit()
    connection.execution_options(isolation_level=connection.default_isolation_level)


def record_applied(*, step: MigrationInfo, **_: object) -> None:
    """Note each revision this command applied, for the line ``migrations.py`` prints: an
    upgrade that waited for another's lock may find the work done."""
    context.config.attributes.setdefault(APPLIED, []).append(step.up_revision_id)


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through rating_pipeline.warehouse.migrations, "
            "which supplies the connection"
        )
    take_migration_lock(connection)
    schema = version_table_schema(connection)
    connection.commit()
    try:
        context.configure(
            connection=connection,
            version_table_schema=schema,
            target_metadata=None,
            transactional_ddl=True,
            transaction_per_migration=True,
            on_version_apply=record_applied,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if not connection.invalidated:  # else the session, and its lock, are gone
            connection.rollback()
            connection.execute(RELEASE_MIGRATION_LOCK)
            connection.commit()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
