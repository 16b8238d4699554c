"""The warehouse schema as Alembic revisions (``migrations/versions``), driven from code.

``upgrade``/``downgrade``/``current`` back ``rating-pipeline db upgrade|downgrade|current``;
each returns one line for a person. Alembic is configured here, with no alembic.ini: the
script location is inside the package and the connection is handed to ``env.py``.
Downgrade goes to base: it drops every table of the project and never ``billing_event``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy.pool import NullPool

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.warehouse.database import connect, database_url, redact_url

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
BASE = "base"


def _config(connection: sqlalchemy.Connection | None = None) -> Config:
    config = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions under {SCRIPT_LOCATION}")
    return head


@contextmanager
def _engine_connection(url: str | None) -> Iterator[sqlalchemy.Connection]:
    """An SQLAlchemy connection (psycopg 3) in a transaction committed on success.

    The engine is given psycopg connections made by ``database.connect``, so any libpq
    connection string works, exactly as for the rest of the warehouse.
    """
    target = url or database_url()

    def create_connection() -> psycopg.Connection:
        return connect(target)

    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=create_connection, poolclass=NullPool
    )
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def revision_of(url: str | None = None) -> str | None:
    """The database's current revision; None when it was never migrated (or is at base)."""
    with _engine_connection(url) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Migrate the warehouse to ``revision`` (by default the head); idempotent."""
    target = url or database_url()
    before = revision_of(target)
    with _engine_connection(target) as connection:
        command.upgrade(_config(connection), revision)
    after = revision_of(target)
    where = redact_url(target)
    named = "(head)" if after == head_revision() else "(not the head)"
    if before == after:
        return f"warehouse already at revision {after} {named} on {where}"
    return f"warehouse upgraded from {before or BASE} to revision {after} {named} on {where}"


OUTPUT_TABLES = (
    "rated_usage", "rating_exception", "rated_usage_archive", "rating_exception_archive",
    "rating_log", "late_window",
)  # fmt: skip
COUNT_ROWS = "SELECT count(*) FROM {table}"
PRESENT_TABLES = "SELECT relname FROM pg_class WHERE relname = ANY(%(tables)s) AND relkind = 'r'"


class DowngradeRefused(RatingPipelineError):
    """Downgrading to base would drop rated data, and the caller did not say to."""


def rated_rows(url: str) -> dict[str, int]:
    """The rows each of the project's tables that exists holds."""
    with psycopg.connect(url) as conn:
        present = conn.execute(PRESENT_TABLES, {"tables": list(OUTPUT_TABLES)}).fetchall()
        return {
            table: int(count)
            for (table,) in present
            for (count,) in conn.execute(sql.SQL(COUNT_ROWS).format(table=sql.Identifier(table)))
        }


def downgrade(url: str | None = None, revision: str = BASE, drop_rated_data: bool = False) -> str:
    """Downgrade to ``revision``: by default ``base``, which drops the project's tables;
    ``billing_event`` is always kept. Raises DowngradeRefused, dropping nothing, when going
    to base would drop rows of the outputs or the log, unless ``drop_rated_data``."""
    target = url or database_url()
    before = revision_of(target)
    held = {table: rows for table, rows in rated_rows(target).items() if rows}
    if revision == BASE and held and not drop_rated_data:
        lost = ", ".join(f"{rows} {table} row{'s' * (rows != 1)}" for table, rows in held.items())
        raise DowngradeRefused(
            f"refusing to downgrade {redact_url(target)}: it would drop {lost}; "
            "rerun with --drop-rated-data to drop them"
        )
    with _engine_connection(target) as connection:
        command.downgrade(_config(connection), revision)
    where = redact_url(target)
    if before is None:
        return f"warehouse already at base on {where}; nothing dropped, billing_event kept"
    if revision != BASE:
        return f"warehouse downgraded from revision {before} to {revision} on {where}"
    return (
        f"warehouse downgraded from revision {before} to base on {where}: "
        "rating tables dropped, billing_event kept"
    )


def current(url: str | None = None) -> str:
    """The warehouse's revision and whether it is the head."""
    target = url or database_url()
    revision = revision_of(target)
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
