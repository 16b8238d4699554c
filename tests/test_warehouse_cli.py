"""``rating-pipeline rate --from START --to END``: bounds, pricebook errors, output, exit codes."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from rating_pipeline import cli
from rating_pipeline.pricebook.model import TOKEN_CLASSES
from rating_pipeline.warehouse import commands, engine, migrations
from tests.conftest import clear_of_an_hours_end, delete_events
from tests.factories import WINDOW_START, BillingEvent, make_event

PRICEBOOK = """\
version: "2026-06-01"
effective_from: "2026-06-01T00:00:00Z"
currency: USD
fine_tune_multiplier: "1.5"
models:
  base-large:
    input_per_mtok: "2.50"
    output_per_mtok: "10.00"
  base-small:
    input_per_mtok: "0.15"
    output_per_mtok: "0.60"
"""
BROKEN = """\
version: "2026-07-01"
effective_from: "2026-07-01T00:30:00Z"
currency: USD
models:
  base-large:
    input_per_mtok: "2.50"
    output_per_mtok: "10.00"
    input_per_mtok: "1.00"
  typo-model:
    input_per_mtk: "1"
    output_per_mtok: "1"
"""

START = "2026-06-15T10:00:00Z"
END = "2026-06-15T12:00:00Z"


@pytest.fixture
def pricebook_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pricebooks"
    directory.mkdir()
    (directory / "2026-06-01.yaml").write_text(PRICEBOOK)
    return directory


def _rate(*args: str) -> int:
    return cli.main(["rate", *args])


def _unbilled_line(events: str, by_reason: str) -> str:
    """rate's warning of the events of one window that did not bill."""
    return (
        f"warning: {events} of the range did not bill, in 1 window: {by_reason}; "
        "rating_exception holds each rollup with its reason and detail (docs/pricing.md)"
    )


def _raise_in_eleven(monkeypatch: pytest.MonkeyPatch, raised: BaseException) -> None:
    """``rate``'s rate_window, but the rating of 2026-06-15-11:00 raises ``raised`` first."""
    rate_for_real = commands.rate_window

    def rate_window(conn, window, *args):  # type: ignore[no-untyped-def]
        if window.key == "2026-06-15-11:00":
            raise raised
        return rate_for_real(conn, window, *args)

    monkeypatch.setattr(commands, "rate_window", rate_window)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        # ``table`` is one of this module's literal table names, never input.
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        count = row.fetchone()
    assert count is not None
    return int(count[0])


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-06-15T10:30:00Z", END, "is not on a whole hour"),
        (START, "2026-06-15T11:00:01Z", "is not on a whole hour"),
        ("2026-06-15T10:00:00+02:00", END, "is not UTC"),
        (END, START, "is not before end"),
        (START, START, "is not before end"),
    ],
)
def test_rate_rejects_unaligned_or_unordered_bounds_in_one_line(
    warehouse_env: str,
    pricebook_dir: Path,
    capsys: pytest.CaptureFixture[str],
    start: str,
    end: str,
    message: str,
) -> None:
    assert _rate("--from", start, "--to", end, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert _count(warehouse_env, "rating_log") == 0


@pytest.mark.parametrize(
    "end",
    [
        None,  # the hour after the current one, read when the test runs
        "9999-12-31T23:00:00Z",  # a typo: refused at once, not after listing 70M windows
    ],
    ids=["next-hour", "year-9999"],
)
def test_rate_refuses_a_range_reaching_an_hour_not_closed_yet_and_rates_nothing(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str], end: str | None
) -> None:
    """Its events are still arriving, as the Dagster asset says of such a range."""
    end = end or f"{datetime.now(UTC) + timedelta(hours=2):%Y-%m-%dT%H:00:00Z}"
    assert _rate("--from", START, "--to", end, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "has not closed yet" in captured.err and "nothing is rated" in captured.err
    assert _count(warehouse_env, "rating_log") == 0


def test_rate_refuses_a_range_ending_as_the_current_hour_ends_and_rates_nothing(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The current hour is still open until its very end: a range up to its end waits."""
    hour = clear_of_an_hours_end().replace(minute=0, second=0, microsecond=0)
    start, end = (f"{t:%Y-%m-%dT%H:00:00Z}" for t in (hour, hour + timedelta(hours=1)))
    assert _rate("--from", start, "--to", end, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "has not closed yet" in captured.err
    assert _count(warehouse_env, "rating_log") == 0


@pytest.mark.parametrize("missing", ["--from", "--to"])
def test_rate_without_both_bounds_is_a_usage_error(
    missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bounds = {"--from": START, "--to": END}
    del bounds[missing]
    with pytest.raises(SystemExit) as exited:
        _rate(*(arg for pair in bounds.items() for arg in pair))
    assert exited.value.code == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("alteration", "message"),
    [
        ("DROP COLUMN base_model", "billing_event has no base_model column"),
        ("DROP COLUMN ingested_at", "billing_event has no ingested_at column"),
        (
            "ALTER COLUMN cache_read_tokens TYPE numeric(12, 2)",
            "billing_event.cache_read_tokens is numeric(12,2): a token count must be whole",
        ),
        (
            "ALTER COLUMN reasoning_tokens TYPE double precision",
            "billing_event.reasoning_tokens is double precision: a token count must be whole",
        ),
        (  # the wall clock of whichever session wrote it: 02:30 UTC from New York is 22:30
            "ALTER COLUMN occurred_at TYPE timestamp",
            "billing_event.occurred_at is timestamp without time zone: an event's time must "
            "be an instant",
        ),
        (
            "ALTER COLUMN occurred_at TYPE date",
            "billing_event.occurred_at is date: an event's time must be an instant",
        ),
    ],
)
def test_rate_refuses_an_upstream_billing_event_it_cannot_read_in_one_line(
    warehouse_env: str,
    pricebook_dir: Path,
    capsys: pytest.CaptureFixture[str],
    alteration: str,
    message: str,
) -> None:
    """Upstream owns billing_event (contract 3): a column the rater reads that is missing,
    a count that can hold a fraction, or a time that is no instant, is named before any
    window is rated."""
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(f"ALTER TABLE billing_event {alteration}")
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err and "nothing rated" in captured.err
    assert _count(warehouse_env, "rating_log") == 0


def test_rate_reads_token_counts_kept_in_any_whole_number_type(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An integer type or numeric(p, 0), as the refusal above says: upstream may keep a
    count in a narrower type than the contract's bigint."""
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(
            "ALTER TABLE billing_event ALTER COLUMN input_tokens TYPE smallint, "
            "ALTER COLUMN output_tokens TYPE integer, "
            "ALTER COLUMN reasoning_tokens TYPE numeric(20, 0)"
        )
    add_events([make_event()])
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    assert capsys.readouterr().err == ""
    assert _count(warehouse_env, "rated_usage") == 1


MAKE_COUNTS_NUMERIC = (
    "ALTER TABLE billing_event ALTER COLUMN input_tokens TYPE numeric(20, 0), "
    "ALTER COLUMN output_tokens TYPE numeric(20, 0)"
)
EXCEPTIONS = (
    "SELECT reason, detail, event_count, input_tokens, output_tokens FROM rating_exception "
    'ORDER BY detail COLLATE "C"'
)
LOGGED_CHANGES = (
    "SELECT rows_inserted + rows_updated + rows_deleted, exceptions_inserted "
    "+ exceptions_updated + exceptions_deleted FROM rating_log ORDER BY log_id"
)


def test_an_event_with_a_nan_count_is_an_invalid_event_and_the_rest_of_its_window_bills(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Contract 3 and 6: numeric(p, 0) holds 'NaN', which passes every comparison a count
    is checked with (NaN >= 0 in PostgreSQL) and is no number of tokens. The event is an
    invalid_event naming the class, its other counts excepted with it, and the rest of
    the window bills; a re-run writes nothing. Before, the whole window stopped, and in a
    range every window after it. Found by a review of upstream's types."""
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(MAKE_COUNTS_NUMERIC)
    add_events(
        [
            make_event(event_id="clean"),
            make_event("org-2", input_tokens=7, output_tokens=30, event_id="nan"),
            make_event("org-2", input_tokens=-5, output_tokens=40, event_id="nan-negative"),
            make_event("org-3", occurred_at=WINDOW_START + timedelta(hours=1)),
        ]
    )
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(
            "UPDATE billing_event SET input_tokens = 'NaN' WHERE event_id = 'nan';"
            "UPDATE billing_event SET output_tokens = 'NaN' WHERE event_id = 'nan-negative'"
        )
    for _ in range(2):
        assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    assert (
        capsys.readouterr().err.splitlines() == [_unbilled_line("2 events", "2 invalid_event")] * 2
    )
    with psycopg.connect(warehouse_env) as conn:
        excepted = conn.execute(EXCEPTIONS).fetchall()
        billed = conn.execute("SELECT auth_id, event_count FROM rated_usage ORDER BY 1").fetchall()
        changes = conn.execute(LOGGED_CHANGES).fetchall()
    assert excepted == [
        ("invalid_event", "negative input_tokens, NaN input_tokens, NaN output_tokens", 2, -5, 30)
    ]
    assert billed == [("org-1", 1), ("org-3", 1)]
    assert changes[2:] == [(0, 0), (0, 0)]  # the second run changed nothing


@pytest.mark.parametrize("token_class", TOKEN_CLASSES)
def test_a_nan_count_of_any_class_alone_is_an_invalid_event_and_the_rest_bills(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    token_class: str,
) -> None:
    """The test above puts NaN in input and output together: a mutation audit found that a
    NaN in any other class, or in output alone, could slip past the statement's checks
    unseen and stop the window (`cannot convert NaN to integer`)."""
    column = f"{token_class}_tokens"
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE billing_event ALTER COLUMN {} TYPE numeric(20, 0)").format(
                sql.Identifier(column)
            )
        )
    add_events([make_event(event_id="clean"), make_event("org-2", event_id="nan")])
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(
            sql.SQL("UPDATE billing_event SET {} = 'NaN' WHERE event_id = 'nan'").format(
                sql.Identifier(column)
            )
        )

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0

    assert capsys.readouterr().err.splitlines() == [_unbilled_line("1 event", "1 invalid_event")]
    with psycopg.connect(warehouse_env) as conn:
        excepted = conn.execute("SELECT reason, detail FROM rating_exception").fetchall()
        billed = conn.execute("SELECT auth_id FROM rated_usage").fetchall()
    assert (excepted, billed) == ([("invalid_event", f"NaN {column}")], [("org-1",)])


def test_rate_reads_token_counts_kept_in_a_domain_over_a_whole_number_type(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/events.md: counts are read "in any integer type or numeric(p, 0) with p at most
    20". Upstream often keeps counts in a domain over bigint (with its own CHECK): its values
    are bigints, the rating's SQL reads them as such, and refusing the table would stop
    every rating of a warehouse that can be rated."""
    with psycopg.connect(warehouse_env) as conn:
        conn.execute("CREATE DOMAIN token_count AS bigint CHECK (VALUE >= 0)")
        conn.execute("CREATE DOMAIN cache_count AS numeric(20, 0)")
        conn.execute(
            "ALTER TABLE billing_event ALTER COLUMN input_tokens TYPE token_count, "
            "ALTER COLUMN cache_read_tokens TYPE cache_count"
        )
    add_events([make_event()])
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    assert capsys.readouterr().err == ""
    assert _count(warehouse_env, "rated_usage") == 1
    with psycopg.connect(warehouse_env) as conn:  # a domain over a domain over a fraction
        conn.execute("CREATE DOMAIN cents AS numeric(12, 2)")
        conn.execute("CREATE DOMAIN reasoning_count AS cents")
        conn.execute("ALTER TABLE billing_event ALTER COLUMN reasoning_tokens TYPE reasoning_count")
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    assert "billing_event.reasoning_tokens is reasoning_count" in capsys.readouterr().err


@pytest.mark.parametrize(
    "table", ["billing_event", "rated_usage", "rating_exception", "rating_log"]
)
def test_rate_on_a_migrated_warehouse_missing_a_table_names_it_in_one_line(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    """At this release's revision, but a table dropped by hand: one line naming it, not a
    missing relation in the middle of a window."""
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(table)))
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert f"has no {table} table" in captured.err and "db upgrade" in captured.err


def test_rate_from_a_start_no_version_covers_is_refused_before_listing_its_windows(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the start (year 1) is refused at once, not after listing 17M windows."""
    assert _rate("--from", "0001-01-01T00:00Z", "--to", END, "--pricebooks", str(pricebook_dir))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no pricebook version covers window [0001-01-01T00:00" in err
    assert _count(warehouse_env, "rating_log") == 0


def test_rate_from_a_start_no_version_covers_never_lists_the_range(
    warehouse_env: str,
    pricebook_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refusal comes from the start's own window: the range's windows are never listed."""

    def never(*bounds: datetime) -> Any:
        raise AssertionError("the range's windows were listed")

    monkeypatch.setattr(commands, "windows_between", never)
    assert _rate("--from", "0001-01-01T00:00Z", "--to", END, "--pricebooks", str(pricebook_dir))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no pricebook version covers window [0001-01-01T00:00" in err


def test_rate_up_to_the_start_of_the_current_hour_rates_the_hour_just_closed(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal of an open hour says "rate up to <its start> at most": that bound is
    accepted, the hour before it has closed."""
    (pricebook_dir / "2000-01-01.yaml").write_text(
        PRICEBOOK.replace("2026-06-01", "2000-01-01")
    )  # whatever the clock says, a version covers the last closed hour
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = (f"{t:%Y-%m-%dT%H:00:00Z}" for t in (hour - timedelta(hours=1), hour))
    assert _rate("--from", start, "--to", end, "--pricebooks", str(pricebook_dir)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines()[-1].startswith("rated 1 window(s), run cli-")
    assert _count(warehouse_env, "rating_log") == 1


def test_rate_refuses_a_bound_finer_than_a_microsecond_that_datetime_would_drop(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _rate("--from", "2026-06-15T10:00:00.0000001Z", "--to", END)
    assert "finer than a microsecond" in capsys.readouterr().err
    assert _count(warehouse_env, "rating_log") == 0


def test_rate_with_pricebook_errors_rates_nothing_and_prints_every_error(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (pricebook_dir / "2026-07-01.yaml").write_text(BROKEN)
    add_events([make_event()])
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if "2026-07-01.yaml:" in line]
    # the unaligned instant, the duplicated key, the missing rate, the unknown key: all of them
    assert len(errors) == 4, captured.err
    assert "effective_from" in errors[0] and "duplicated key" in errors[1]
    assert "input_per_mtk" in errors[3]
    assert captured.err.splitlines()[-1].startswith("nothing rated: 4 pricebook error(s)")
    assert _count(warehouse_env, "rating_log") == 0


def test_rate_with_a_window_before_the_first_version_rates_nothing(
    warehouse_env: str, pricebook_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _rate(
        "--from", "2026-05-31T23:00:00Z", "--to", "2026-06-01T02:00:00Z",
        "--pricebooks", str(pricebook_dir),
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no pricebook version covers window" in err
    assert _count(warehouse_env, "rating_log") == 0


def test_rate_prints_one_line_per_window_and_exits_zero(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_events(
        [
            make_event("org-1", "base-large", input_tokens=1_000_000, output_tokens=0),
            make_event("org-1", "base-small", occurred_at=WINDOW_START + timedelta(hours=1)),
        ]
    )
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("2026-06-15-10:00 pricebook 2026-06-01: rated_usage +1 inserted")
    assert lines[0].endswith("cost 2.500000000000 USD")
    assert lines[1].startswith("2026-06-15-11:00 ")
    assert lines[2].startswith("rated 2 window(s), run cli-")
    assert _count(warehouse_env, "rated_usage") == 2

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    again = capsys.readouterr().out.splitlines()
    assert "+0 inserted, ~0 updated, -0 deleted, =1 unchanged" in again[0]


def _rate_command(pricebook_dir: Path) -> list[str]:
    """``rate`` over START..END in a process of its own, as a shell runs it."""
    return [sys.executable, "-m", "rating_pipeline", "rate", "--from", START, "--to", END,
            "--pricebooks", str(pricebook_dir)]  # fmt: skip


def _one_event_in_each_of_two_hours() -> list[BillingEvent]:
    return [make_event("org-1", "base-large", occurred_at=WINDOW_START + timedelta(hours=h))
            for h in range(2)]  # fmt: skip


def _two_hours_and_an_undated_event(
    url: str, add_events: Callable[[Iterable[BillingEvent]], int]
) -> None:
    """An event in each hour of the range, and one no window holds: rate warns of it."""
    add_events(_one_event_in_each_of_two_hours())
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at) VALUES ('undated', 'org-1', 'base-large', 1, 1, "
            "'infinity')"
        )


def test_a_range_whose_reader_goes_away_still_rates_every_window(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """``rate ... | head -1``: the lines are a report; the rating is what was asked for.
    The first print into the closed pipe raised BrokenPipeError mid-range, a traceback."""
    add_events(_one_event_in_each_of_two_hours())
    command = _rate_command(pricebook_dir)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the first line
    err = child.stderr.read().decode()
    code = child.wait()

    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 0
    assert _count(warehouse_env, "rating_log") == 2


def test_a_range_whose_stdout_and_stderr_reader_goes_away_keeps_its_exit_code(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """``rate ... 2>&1 | head``: the warning of an undated event met the closed pipe too,
    and turned a clean rating into exit 1."""
    _two_hours_and_an_undated_event(warehouse_env, add_events)
    command = _rate_command(pricebook_dir)
    read, write = os.pipe()
    child = subprocess.Popen(command, stdout=write, stderr=write)
    os.close(write)
    os.close(read)  # the reader of both is gone

    assert child.wait() == 0
    assert _count(warehouse_env, "rating_log") == 2


def test_a_range_with_stdout_closed_from_the_start_rates_and_exits_zero(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """``rate ... >&-`` (a cron line, say): Python has no sys.stdout at all."""
    add_events([make_event("org-1", "base-large")])
    command = ["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "rating_pipeline", "rate",
               "--from", START, "--to", END, "--pricebooks", str(pricebook_dir)]  # fmt: skip
    done = subprocess.run(command, stderr=subprocess.PIPE, check=False)

    assert (done.returncode, done.stderr.decode()) == (0, "")
    assert _count(warehouse_env, "rating_log") == 2


def _buffered() -> dict[str, str]:
    """The environment with Python's stdout block-buffered into a file or pipe, as it is
    unless PYTHONUNBUFFERED says otherwise (this machine sets it)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_a_range_logged_to_one_file_names_each_window_as_it_commits(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    tmp_path: Path,
) -> None:
    """``rate ... > log 2>&1`` (cron): each window's line is flushed as it commits, so the
    log of a killed run names what committed, and the warning follows the rated line."""
    _two_hours_and_an_undated_event(warehouse_env, add_events)
    log = tmp_path / "rate.log"
    with log.open("wb") as out:
        command = _rate_command(pricebook_dir)
        assert subprocess.call(command, stdout=out, stderr=out, env=_buffered()) == 0

    lines = log.read_text().splitlines()
    assert [line[:16] for line in lines[:2]] == ["2026-06-15-10:00", "2026-06-15-11:00"]
    assert lines[2].startswith("rated 2 window(s)") and lines[3].startswith("warning: ")


def test_ctrl_c_after_the_reader_went_away_exits_130_without_a_traceback(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Ctrl-C on ``rate ... | tee log`` ends tee too: the exit flush of what main left in
    stdout's buffer met the closed pipe outside the wrapper (exit 120, 'Exception
    ignored')."""
    add_events(_one_event_in_each_of_two_hours())
    script = (
        "import sys\n"
        "from rating_pipeline.warehouse import commands\n"
        "real, calls = commands.rate_window, []\n"
        "def rate_window(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        raise KeyboardInterrupt\n"
        "    return real(*a, **k)\n"
        "commands.rate_window = rate_window\n"
        "from rating_pipeline.cli import main\n"
        "print('a line left in the buffer')\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    read, write = os.pipe()
    command = [sys.executable, "-c", script, "rate", "--from", START, "--to", END,
               "--pricebooks", str(pricebook_dir)]  # fmt: skip
    child = subprocess.Popen(command, stdout=write, stderr=subprocess.PIPE, env=_buffered())
    os.close(write)
    os.close(read)
    _, err = child.communicate()

    assert child.returncode == 130, err.decode()
    assert "interrupted: rating window 2026-06-15-11:00" in err.decode()
    assert "Exception ignored" not in err.decode() and "Traceback" not in err.decode()


def test_an_interrupted_range_says_one_line_whatever_psycopg_ignored_on_the_way_out(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """Ctrl-C mid-statement: psycopg's own warnings about the rollback it then skipped
    ("error ignored in rollback ...: another command is already in progress") reached
    stderr through logging's last resort, above the command's one line. Found by an audit
    of the docs (about 1 Ctrl-C in 20)."""
    add_events(_one_event_in_each_of_two_hours())
    script = (
        "import logging, sys\n"
        "from rating_pipeline.warehouse import commands\n"
        "def rate_window(*a, **k):\n"
        "    logging.getLogger('psycopg').warning(\n"
        "        'error ignored in rollback of x: another command is already in progress')\n"
        "    raise KeyboardInterrupt\n"
        "commands.rate_window = rate_window\n"
        "from rating_pipeline.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", script, "rate", "--from", START, "--to", END,
               "--pricebooks", str(pricebook_dir)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)

    assert done.returncode == 130, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("interrupted: "), done.stderr


def test_rate_warns_of_events_no_window_holds_since_no_rating_bills_or_excepts_them(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An event dated infinity (or null, or out of range) is in no window: ``rate`` says so
    on stderr whatever its range, as the Dagster check does; the range rates as ever."""
    add_events([make_event("org-1", "base-large")])
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    assert capsys.readouterr().err == ""
    with psycopg.connect(warehouse_env) as conn:
        conn.execute(
            "INSERT INTO billing_event (event_id, auth_id, model_id, input_tokens, "
            "output_tokens, occurred_at) VALUES ('undated', 'org-1', 'base-large', 1, 1, "
            "'infinity')"
        )

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0

    captured = capsys.readouterr()
    assert "=1 unchanged" in captured.out
    assert captured.err.splitlines() == [
        "warning: 1 event in billing_event has an occurred_at no window holds (null, "
        "infinite, before 0001-01-01 or from 9999-12-31 23:00 UTC): no rating reads, bills "
        "or excepts it; correct it upstream (docs/events.md)"
    ]


def test_rate_warns_of_events_that_did_not_bill_since_its_exit_code_does_not(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unpriced and invalid events leave the exit code at 0 (contract 5.2 fails a run for an
    ambiguous base alone), so a CLI user who reads only the exit code and stderr must still
    hear of them: one warning after the ``rated`` line counts them by reason. Found by an
    outside tour: a version that dropped every model rated a window to nothing, exit 0."""
    later = WINDOW_START + timedelta(hours=1)
    add_events(
        [
            make_event("org-1", "base-large"),
            make_event("org-1", "mystery"),
            make_event("org-2", "mystery", occurred_at=later),
            make_event("org-2", "base-large", input_tokens=-5, occurred_at=later),
        ]
    )
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0

    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith("rated 2 window(s), run cli-")
    assert captured.err.splitlines() == [
        "warning: 3 events of the range did not bill, in 2 windows: 2 unpriced, 1 "
        "invalid_event; rating_exception holds each rollup with its reason and detail "
        "(docs/pricing.md)"
    ]
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    assert "3 events of the range did not bill" in capsys.readouterr().err  # every run says it


def test_rate_prints_the_run_id_its_rating_log_rows_carry(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The run named on the last line is the one to look up in rating_log and the archive."""
    add_events([make_event("org-1", "base-large")])
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    run_id = capsys.readouterr().out.splitlines()[-1].rsplit(" ", 1)[1]
    with psycopg.connect(warehouse_env) as conn:
        logged = conn.execute("SELECT DISTINCT run_id FROM rating_log").fetchall()
    assert logged == [(run_id,)]


def test_rate_line_of_a_window_that_lost_a_rollup_counts_the_deletion(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A re-rate whose events vanished prints the window's counts line, -1 deleted, not the
    line naming the deleted row (that goes to the log)."""
    gone = make_event("org-2", "base-small")
    add_events([make_event("org-1", "base-large"), gone])
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    capsys.readouterr()
    delete_events(warehouse_env, [gone.event_id])

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        "2026-06-15-10:00 pricebook 2026-06-01: rated_usage +0 inserted, ~0 updated, "
        "-1 deleted, =1 unchanged;"
    )
    assert _count(warehouse_env, "rated_usage") == 1


@pytest.mark.parametrize("tiers", [("standard",), ("batch", "standard")], ids=["one", "two"])
def test_rate_exits_nonzero_naming_ambiguous_rollups_after_reconciling_the_window(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    tiers: tuple[str, ...],
) -> None:
    """One rollup not billed is as much a failure as two (contract 5.2)."""
    mixed = [
        dataclasses.replace(make_event("org-1", "ft:mixed", base), service_tier=tier)
        for tier in tiers
        for base in ("base-large", "base-small")
    ]
    add_events(
        [
            make_event("org-1", "base-large"),
            *mixed,
            make_event("org-2", "base-small", occurred_at=WINDOW_START + timedelta(hours=1)),
        ]
    )
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    # both windows rated, and the run named: its rating_log rows are the record
    assert len(captured.out.splitlines()) == 3
    assert captured.out.splitlines()[-1].startswith("rated 2 window(s), run cli-")
    assert f"{len(tiers)} rollup(s) not billed, ambiguous_base" in captured.err
    # each rollup by its whole key: the pair's rollups differ only in their tiers
    named = "2026-06-15-10:00: auth_id='org-1' model_id='ft:mixed'"
    for tier in tiers:
        assert f"{named} service_tier='{tier}' context_tier='standard'" in captured.err
    assert _count(warehouse_env, "rated_usage") == 2  # the clean rollups bill
    assert _count(warehouse_env, "rating_exception") == len(tiers)


def test_an_ambiguous_rollups_bases_cannot_break_or_forge_its_line(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The detail names upstream's base_model values, which JSON leaves unescaped past
    U+001F: a U+2028 or U+0085 in one broke the line, a U+202E turned it around. Found by
    an audit."""
    hostile = "base-\u2028fake line\x85\u202e"
    add_events([make_event("org-1", "ft:mixed", base) for base in ("base-large", hostile)])
    assert (
        _rate("--from", START, "--to", "2026-06-15T11:00:00Z", "--pricebooks", str(pricebook_dir))
        == 1
    )
    err = capsys.readouterr().err
    assert not any(character in err for character in "\u2028\x85\u202e")
    assert "auth_id='org-1' model_id='ft:mixed'" in err


def test_a_range_failing_after_an_ambiguous_window_still_names_its_ambiguous_rollups(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Contract 5.2: the CLI exits non-zero and names the rollups. 10:00 commits with an
    ambiguous rollup, 11:00 fails: the failure alone left 10:00's rollup unnamed, and a
    re-run of 11:00 alone exits 0. Found by a review of the entry points."""
    add_events(
        [
            make_event("org-1", "ft:mixed", "base-large"),
            make_event("org-1", "ft:mixed", "base-small"),
            make_event("org-2", occurred_at=WINDOW_START + timedelta(hours=1)),
        ]
    )
    converge = engine.converge

    def failing_second_window(conn: psycopg.Connection, run: engine.RatingRun, read: Any) -> Any:
        if run.window.start != WINDOW_START:
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        return converge(conn, run, read)

    monkeypatch.setattr(engine, "converge", failing_second_window)
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    err = capsys.readouterr().err
    assert "1 rollup(s) not billed, ambiguous_base" in err
    assert "2026-06-15-10:00: auth_id='org-1' model_id='ft:mixed'" in err
    assert err.splitlines()[-1].startswith("error: rating window 2026-06-15-11:00 failed")


def test_an_interrupted_range_says_what_it_committed_and_exits_130(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C in 11:00's rating: 10:00 is committed with an ambiguous rollup. The command
    said nothing; it now says what is committed and names the rollup. Found by a review of
    the command line."""
    add_events(
        [
            make_event("org-1", "ft:mixed", "base-large"),
            make_event("org-1", "ft:mixed", "base-small"),
        ]
    )
    _raise_in_eleven(monkeypatch, KeyboardInterrupt())

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 130
    err = capsys.readouterr().err
    assert "2026-06-15-10:00: auth_id='org-1' model_id='ft:mixed'" in err
    assert err.splitlines()[-1].startswith(
        "interrupted: rating window 2026-06-15-11:00 was rolled back; the 1 window(s) before "
        "it are rated and committed (run cli-"
    ), err
    assert _count(warehouse_env, "rating_log") == 1


def test_a_range_interrupted_while_its_pricebooks_load_says_none_was_rated(
    warehouse_env: str,
    pricebook_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C before the first window (here while a large price list validates) exited 130
    saying nothing, where the docs promise a line. Found by an audit of the docs."""

    def interrupted(directory: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "load_pricebooks", interrupted)

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 130
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: no window was rated (run cli-"), err
    assert _count(warehouse_env, "rating_log") == 0


@pytest.mark.parametrize(
    ("stop", "code", "last_line"),
    [
        (KeyboardInterrupt, 130, "interrupted: rating window 2026-06-15-10:00 committed all the "),
        (
            psycopg.OperationalError("server closed the connection unexpectedly"),
            1,
            "error: rating window 2026-06-15-10:00 failed: OperationalError: server closed the "
            "connection unexpectedly. It committed all the same",
        ),
    ],
)
def test_a_range_stopped_after_a_windows_commit_says_it_committed(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop: BaseException,
    code: int,
    last_line: str,
) -> None:
    """Ctrl-C, or a connection lost, as the window's COMMIT went through (here right after
    it): the command said the window was rolled back. Found by an audit of concurrency."""
    add_events([make_event("org-1")])

    def stopped_after_the_commit(line: object, *args: object) -> None:
        raise stop

    monkeypatch.setattr(engine.logger, "info", stopped_after_the_commit)

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == code
    assert capsys.readouterr().err.splitlines()[-1].startswith(last_line)
    assert _count(warehouse_env, "rating_log") == 1


@pytest.mark.parametrize(
    ("stopped_at", "last_line"),
    [
        ("2026-06-15-11:00", "interrupted: the 2 window(s) through 2026-06-15-11:00 are rated"),
        (None, "interrupted: no window was rated (run cli-"),
    ],
)
def test_ctrl_c_between_windows_or_before_the_first_says_what_is_committed(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stopped_at: str | None,
    last_line: str,
) -> None:
    """Ctrl-C while a committed window's line is printed (a reader that stalls, `| less`),
    or while the checks before the first window wait on a lock: the command exited 130
    saying nothing, the committed window never named. Found by an audit of interruptions."""
    add_events(
        [make_event("org-1"), make_event("org-1", occurred_at=WINDOW_START + timedelta(hours=1))]
    )
    print_lines_for_real = commands.rating_log_lines

    def stopped_printing(rating):  # type: ignore[no-untyped-def]
        if rating.window.key == stopped_at:
            raise KeyboardInterrupt
        return print_lines_for_real(rating)

    def stopped_waiting(conn):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "rating_log_lines", stopped_printing)
    if stopped_at is None:
        monkeypatch.setattr(commands, "undated_events", stopped_waiting)

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 130
    assert capsys.readouterr().err.splitlines()[-1].startswith(last_line)
    assert _count(warehouse_env, "rating_log") == (2 if stopped_at else 0)


def test_sigterm_during_a_range_says_what_is_committed_and_exits_143(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM is what `timeout`, `docker stop`, systemd and a cancelled CI job send: the
    command died at once, saying nothing of the windows it had committed. It now says what
    Ctrl-C says, and exits 143 (128 + SIGTERM). Found by an audit of interruptions."""
    add_events(
        [make_event("org-1"), make_event("org-1", occurred_at=WINDOW_START + timedelta(hours=1))]
    )
    rate_for_real = commands.rate_window

    def terminated_at_eleven(conn, window, *args):  # type: ignore[no-untyped-def]
        if window.key == "2026-06-15-11:00":
            os.kill(os.getpid(), signal.SIGTERM)
        return rate_for_real(conn, window, *args)

    monkeypatch.setattr(commands, "rate_window", terminated_at_eleven)
    before = signal.getsignal(signal.SIGTERM)

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 143
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith(
            "interrupted: rating window 2026-06-15-11:00 was rolled back; the 1 window(s) before "
            "it are rated and committed (run cli-"
        )
    )
    assert signal.getsignal(signal.SIGTERM) is before  # restored for whoever called main


UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=2"


@pytest.mark.parametrize(("stop", "code"), [(KeyboardInterrupt, 130), (ConnectionError, 1)])
def test_a_range_stopped_with_the_warehouse_gone_still_names_the_window(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop: type[BaseException],
    code: int,
) -> None:
    """The server gone, the fresh connection that asks what became of the window fails as
    well: the window's line still comes, saying it may have committed. Found by a second
    reading of the change that asks."""
    add_events([make_event("org-1")])

    def gone(*args: object) -> None:
        monkeypatch.setenv("RATING_DATABASE_URL", UNREACHABLE)
        if stop is KeyboardInterrupt:
            raise KeyboardInterrupt
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(commands, "rate_window", gone)

    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == code
    last = capsys.readouterr().err.splitlines()[-1]
    assert "rating window 2026-06-15-10:00" in last and "may have committed" in last, last


def test_rate_on_an_unmigrated_database_says_to_upgrade(
    empty_database_url: str,
    pricebook_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RATING_DATABASE_URL", empty_database_url)
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rating-pipeline db upgrade" in err


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        (["rate", "--from", START, "--to", END], "rating-pipeline db upgrade"),
        (["period", "status"], "rating-pipeline db upgrade"),
        (["invoice", "build", "--month", "2026-06"], "rating-pipeline db upgrade"),
    ],
)
def test_commands_on_a_partly_migrated_database_say_to_upgrade(
    empty_database_url: str,
    pricebook_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    needs: str,
) -> None:
    """A warehouse left at an older revision (an upgrade given up on a lock) has the rating
    tables but not every one a command needs: one line, not a missing relation."""
    migrations.upgrade(empty_database_url, "0010")
    monkeypatch.setenv("RATING_DATABASE_URL", empty_database_url)
    monkeypatch.setenv("RATING_PRICEBOOK_DIR", str(pricebook_dir))
    assert cli.main(command) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "revision 0010" in err and needs in err, err


def test_rate_on_a_database_of_a_newer_release_refuses(
    database_url: str,
    pricebook_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    monkeypatch.setenv("RATING_DATABASE_URL", database_url)
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "revision 9999" in err and "newer" in err, err


@pytest.mark.parametrize(
    ("failure", "named"),
    [
        (
            psycopg.errors.ProgramLimitExceeded("index row size 6432 exceeds maximum 2704"),
            "ProgramLimitExceeded: index row size 6432",
        ),
        # The engine's own refusal (contract 6) is reported like a database error.
        (engine.ConservationError("window 2026-06-15-11:00: read (1,)"), "ConservationError:"),
    ],
    ids=["database", "engine"],
)
def test_a_window_that_fails_to_rate_is_one_line_naming_it_and_its_cause(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    named: str,
) -> None:
    """The window, the cause, and how many windows before it committed."""
    add_events(
        [
            make_event("org-1", "base-large"),
            make_event("org-1", "base-large", occurred_at=WINDOW_START + timedelta(hours=1)),
        ]
    )
    converge = engine.converge

    def failing_second_window(conn: psycopg.Connection, run: engine.RatingRun, read: Any) -> Any:
        if run.window.start != WINDOW_START:
            raise failure
        return converge(conn, run, read)

    monkeypatch.setattr(engine, "converge", failing_second_window)
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: rating window 2026-06-15-11:00 failed: {named}")
    assert "1 window(s) before it" in line
    assert _count(warehouse_env, "rated_usage") == 1


def test_a_nan_events_counts_in_every_other_class_are_excepted_with_it(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
) -> None:
    """docs/events.md: a NaN count's event is excepted whole, its other counts with it and
    the NaN summed as nothing. The tests gave it input and output only: an optional class's
    sum could go missing from the exception row unseen. Found by a mutation pass."""
    columns = [f"{token_class}_tokens" for token_class in TOKEN_CLASSES]
    with psycopg.connect(warehouse_env) as conn:
        for column in columns:
            conn.execute(
                sql.SQL("ALTER TABLE billing_event ALTER COLUMN {} TYPE numeric(20, 0)").format(
                    sql.Identifier(column)
                )
            )
    add_events([make_event(event_id="clean"), make_event("org-2", event_id="nan")])
    counts = {column: 10 * (n + 1) for n, column in enumerate(columns)}
    with psycopg.connect(warehouse_env) as conn:
        for column, count in counts.items():
            conn.execute(
                sql.SQL("UPDATE billing_event SET {} = %s WHERE event_id = 'nan'").format(
                    sql.Identifier(column)
                ),
                (count,),
            )
        conn.execute("UPDATE billing_event SET input_tokens = 'NaN' WHERE event_id = 'nan'")
    assert _rate("--from", START, "--to", END, "--pricebooks", str(pricebook_dir)) == 0
    with psycopg.connect(warehouse_env) as conn:
        row = conn.execute(
            sql.SQL("SELECT {} FROM rating_exception").format(
                sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        ).fetchone()
    assert row is not None
    assert dict(zip(columns, map(int, row), strict=True)) == {**counts, "input_tokens": 0}


FOUR_HOURS_END = "2026-06-15T14:00:00Z"
COMMITTED_BEFORE_AND_AFTER = re.compile(
    r"the (\d+) window\(s\) before (?:it|the first of them) are rated and committed"
    r"(?:, with (\d+) after it)?"
)


def _an_event_in_each_of_four_hours() -> list[BillingEvent]:
    return [make_event(f"org-{h}", occurred_at=WINDOW_START + timedelta(hours=h, minutes=5))
            for h in range(4)]  # fmt: skip


def _rated_windows(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT window_start FROM rating_log ORDER BY 1").fetchall()
    return [f"{start.astimezone(UTC):%Y-%m-%d-%H:%M}" for (start,) in rows]


def _committed_by_its_line(line: str) -> int:
    """How many windows an error or interrupted line says committed."""
    before, after = COMMITTED_BEFORE_AND_AFTER.search(line).groups()  # type: ignore[union-attr]
    return int(before) + int(after or 0) + line.count("committed all the same")


def test_rate_with_two_jobs_rates_every_window_once_and_as_one_job_does(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--jobs 2: each window rated once, in its own transaction, its line printed as it
    commits; a run with one job then finds every row as it would have written it."""
    add_events(_an_event_in_each_of_four_hours())
    rate = ("--from", START, "--to", FOUR_HOURS_END, "--pricebooks", str(pricebook_dir))

    assert _rate(*rate, "--jobs", "2") == 0

    lines = capsys.readouterr().out.splitlines()
    assert sorted(line[:16] for line in lines[:4]) == _rated_windows(warehouse_env)
    assert len(set(_rated_windows(warehouse_env))) == 4
    assert lines[4].startswith("rated 4 window(s), run cli-")
    assert _rate(*rate) == 0
    again = capsys.readouterr().out.splitlines()
    assert all("+0 inserted, ~0 updated, -0 deleted, =1 unchanged" in line for line in again[:4])


def test_a_window_failing_among_two_jobs_says_which_windows_committed(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failed window is rolled back and no window starts after it; those the other job
    had under way end, and the error counts every window committed, before it and after."""
    add_events(_an_event_in_each_of_four_hours())
    converge = engine.converge

    def failing_eleven(conn: psycopg.Connection, run: engine.RatingRun, read: Any) -> Any:
        if run.window.key == "2026-06-15-11:00":
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        return converge(conn, run, read)

    monkeypatch.setattr(engine, "converge", failing_eleven)
    rate = ("--from", START, "--to", FOUR_HOURS_END, "--pricebooks", str(pricebook_dir))

    assert _rate(*rate, "--jobs", "2") == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: rating window 2026-06-15-11:00 failed: QueryCanceled")
    assert "It was rolled back" in line
    rated = _rated_windows(warehouse_env)
    assert "2026-06-15-10:00" in rated and "2026-06-15-11:00" not in rated
    assert _committed_by_its_line(line) == len(rated), (line, rated)


@pytest.mark.parametrize("cancel_fails", [False, True])
def test_ctrl_c_among_two_jobs_says_what_committed_as_the_warehouse_holds_it(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cancel_fails: bool,
) -> None:
    """Ctrl-C heard while another job rates: its statements are cancelled until it ends,
    and the one line counts what committed as rating_log holds it, every committed
    window's line printed. A cancel that fails (the warehouse restarting) changes none of
    it: it replaced the interrupt and its line. Found by a second reading."""
    add_events(_an_event_in_each_of_four_hours())
    if cancel_fails:

        def cancel_fails_too(self: psycopg.Connection, *, timeout: float = 30.0) -> None:
            raise psycopg.OperationalError("cancellation failed: connection refused")

        monkeypatch.setattr(psycopg.Connection, "cancel_safe", cancel_fails_too)
    _raise_in_eleven(monkeypatch, KeyboardInterrupt())
    rate = ("--from", START, "--to", FOUR_HOURS_END, "--pricebooks", str(pricebook_dir))

    assert _rate(*rate, "--jobs", "2") == 130

    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("interrupted: ") and "2026-06-15-11:00 was rolled back" in line
    rated = _rated_windows(warehouse_env)
    assert "2026-06-15-11:00" not in rated
    assert _committed_by_its_line(line) == len(rated), (line, rated)
    assert sorted(out[:16] for out in captured.out.splitlines()) == rated


def test_ctrl_c_after_a_failed_window_names_it_with_its_cause(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10:00 fails while 11:00 still rates, then Ctrl-C: the line said only what 11:00
    became, and counted what committed as if 10:00 had. Found by a second reading."""
    add_events(_an_event_in_each_of_four_hours())

    def failed_then_interrupted(conn, window, *args):  # type: ignore[no-untyped-def]
        if window.key == "2026-06-15-10:00":
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        time.sleep(0.5)  # the range hears of 10:00 first
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "rate_window", failed_then_interrupted)
    rate = ("--from", START, "--to", FOUR_HOURS_END, "--pricebooks", str(pricebook_dir))

    assert _rate(*rate, "--jobs", "2") == 130

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "interrupted: rating window 2026-06-15-10:00 failed (QueryCanceled: canceling "
        "statement due to statement timeout) and rolled back; rating window 2026-06-15-11:00 "
        "was rolled back; the 0 window(s) before the first of them are rated and committed "
        "(run cli-"
    ), line
    assert _rated_windows(warehouse_env) == []


def test_a_bug_in_one_job_is_raised_once_the_other_jobs_have_ended_and_said_so(
    warehouse_env: str,
    pricebook_dir: Path,
    add_events: Callable[[Iterable[BillingEvent]], int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception the rating does not expect (a bug) is raised as it came, traceback and
    all; the other job's windows that committed meanwhile print their lines first. It
    escaped at once, leaving them unnamed. Found by a second reading."""
    add_events(_an_event_in_each_of_four_hours())
    _raise_in_eleven(monkeypatch, ZeroDivisionError("a bug"))
    rate = ("--from", START, "--to", FOUR_HOURS_END, "--pricebooks", str(pricebook_dir))

    with pytest.raises(ZeroDivisionError, match="a bug"):
        _rate(*rate, "--jobs", "2")

    printed = sorted(line[:16] for line in capsys.readouterr().out.splitlines())
    assert printed == _rated_windows(warehouse_env)
    assert "2026-06-15-10:00" in printed and "2026-06-15-11:00" not in printed


@pytest.mark.parametrize("jobs", ["0", "-1", "33", "two", "1.5"])
def test_rate_refuses_a_number_of_jobs_it_cannot_run_as_a_usage_error(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _rate("--from", START, "--to", END, "--jobs", jobs)
    assert exited.value.code == 2
    assert f"--jobs: not a whole number from 1 to 32: {jobs!r}" in capsys.readouterr().err
