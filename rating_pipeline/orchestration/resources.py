"""The warehouse and the pricebooks as Dagster resources (contract section 8).

Both are configured from the environment through ``dg.EnvVar``, so the run config the UI
shows holds the variable's name, never its value. An ``EnvVar`` whose variable is unset
fails every run at config resolution, so an unset variable is not wrapped at all: the
field keeps its default, which means the embedded database (``database_url`` None) or the
project's ``pricebooks/`` directory.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg

from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.settings import (
    DATABASE_URL_VARIABLE,
    PRICEBOOK_DIR_VARIABLE,
    project_root,
)
from rating_pipeline.warehouse import database

WAREHOUSE = "warehouse"
PRICEBOOKS = "pricebooks"


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse holding ``billing_event`` and the rating outputs.

    ``database_url`` None means ``RATING_DATABASE_URL`` as the run sees it, else the
    embedded PostgreSQL under ``.rating/``.
    """

    database_url: str | None = None

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A new connection (autocommit off), closed on exit; the caller owns transactions."""
        conn = database.connect(self.database_url)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[psycopg.Connection]:
        """A read-only REPEATABLE READ transaction: every statement sees the same state."""
        with self.connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                yield conn

    @contextmanager
    def rolled_back(self) -> Iterator[psycopg.Connection]:
        """A REPEATABLE READ transaction that is always rolled back: one snapshot for reads
        that need scratch temp tables (a read-only transaction refuses to create them)."""
        with self.connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction(force_rollback=True):
                yield conn


class PricebookResource(dg.ConfigurableResource):
    """The directory of pricebook versions (``RATING_PRICEBOOK_DIR``, else ``pricebooks/``)."""

    directory: str = str(project_root() / "pricebooks")

    def load(self) -> Pricebooks:
        """Every version, validated; PricebookLoadError lists every violation."""
        return load_pricebooks(Path(self.directory))


def warehouse_from_environment() -> WarehouseResource:
    """The warehouse as the environment configures it; unset means embedded."""
    if os.environ.get(DATABASE_URL_VARIABLE):
        return WarehouseResource(database_url=dg.EnvVar(DATABASE_URL_VARIABLE))
    return WarehouseResource()


def pricebooks_from_environment() -> PricebookResource:
    """The pricebook directory as the environment configures it; unset means ``pricebooks/``."""
    if os.environ.get(PRICEBOOK_DIR_VARIABLE):
        return PricebookResource(directory=dg.EnvVar(PRICEBOOK_DIR_VARIABLE))
    return PricebookResource()
