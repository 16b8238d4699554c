"""The Dagster instance: the production ``dagster.yaml``, and a DAGSTER_HOME that uses it on
the warehouse's own server (the quickstart's embedded PostgreSQL).

Production copies ``dagster.yaml`` into its DAGSTER_HOME and sets DAGSTER_PG_URL. Locally,
``local_instance`` does the same: a ``dagster`` database next to the warehouse database on
the same server, so runs, event logs, schedules, sensors and backfills live in PostgreSQL
exactly as in production, and concurrent runs behave as they will there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict

from rating_pipeline.settings import DATABASE_URL_VARIABLE, state_dir
from rating_pipeline.warehouse import embedded

PRODUCTION_YAML = Path(__file__).resolve().parent / "dagster.yaml"
DAGSTER_HOME_VARIABLE = "DAGSTER_HOME"
STORAGE_URL_VARIABLE = "DAGSTER_PG_URL"
# dagster-postgres runs NOTIFY with a bound value, which psycopg 3's server-side binding
# rejects; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, so the driver is named.
STORAGE_DRIVER = "postgresql+psycopg2"
STORAGE_DATABASE = "dagster"


def default_dagster_home() -> Path:
    """``.rating/dagster_home``: the quickstart's and ``./dev ui``'s Dagster instance."""
    return state_dir() / "dagster_home"


def storage_url(warehouse_url: str, database: str = STORAGE_DATABASE) -> str:
    """The SQLAlchemy URL of ``database`` on the warehouse's server, as DAGSTER_PG_URL wants it.

    ``warehouse_url`` is any libpq connection string (URL or ``key=value``); a unix-socket
    host travels as the ``host`` query parameter.
    """
    params = {key: str(value) for key, value in conninfo_to_dict(warehouse_url).items() if value}
    host = params.pop("host", None)
    port = params.pop("port", None)
    user = params.pop("user", None)
    password = params.pop("password", None)
    params.pop("dbname", None)
    if host is not None and host.startswith("/"):
        params["host"] = host
        if port is not None:
            params["port"] = port
        host, port = None, None
    url = sqlalchemy.URL.create(
        STORAGE_DRIVER,
        username=user,
        password=password,
        host=host,
        port=int(port) if port else None,
        database=database,
        query=params,
    )
    return url.render_as_string(hide_password=False)


def prepare_dagster_home(home: Path) -> Path:
    """``home`` holding the production ``dagster.yaml`` (rewritten only when it differs)."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    text = PRODUCTION_YAML.read_text()
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return home


@dataclass(frozen=True)
class LocalInstance:
    """A DAGSTER_HOME with the production configuration, its storage on a known server."""

    home: Path
    storage_url: str
    warehouse_url: str

    def environment(self) -> dict[str, str]:
        """The variables a Dagster process (``dagster dev``, a run) needs to use it."""
        return {
            DAGSTER_HOME_VARIABLE: str(self.home),
            STORAGE_URL_VARIABLE: self.storage_url,
            DATABASE_URL_VARIABLE: self.warehouse_url,
        }


def local_instance(
    warehouse_url: str, home: Path, storage_database: str = STORAGE_DATABASE
) -> LocalInstance:
    """Prepare ``home`` and create ``storage_database`` on the warehouse's server if absent."""
    embedded.ensure_database(warehouse_url, storage_database)
    return LocalInstance(
        home=prepare_dagster_home(home),
        storage_url=storage_url(warehouse_url, storage_database),
        warehouse_url=warehouse_url,
    )


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process for the duration, then restore what was there."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def open_instance(local: LocalInstance) -> Iterator[dg.DagsterInstance]:
    """The instance of ``local``, with its environment set while it is open."""
    with environment(local.environment()):
        instance = dg.DagsterInstance.from_config(str(local.home))
        try:
            yield instance
        finally:
            instance.dispose()
