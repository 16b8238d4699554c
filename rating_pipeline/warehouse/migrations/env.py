"""Alembic environment: runs revisions on the connection ``migrations.py`` hands over.

Configured in code (``rating_pipeline.warehouse.migrations``), never from an alembic.ini.
Revisions are plain SQL; there is no SQLAlchemy model to autogenerate from.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

# Two `db upgrade`s at once queue on this lock ("MIGR") instead of racing on the DDL;
# it is released with the migration's transaction.
MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(1296651090, 0)")


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through rating_pipeline.warehouse.migrations, "
            "which supplies the connection"
        )
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        connection.execute(MIGRATION_LOCK)
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
