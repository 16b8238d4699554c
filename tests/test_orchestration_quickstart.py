"""``./dev demo``: the demo day rated through Dagster on a PostgreSQL-backed instance; twice
in a row it converges to the same billed rows."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import psycopg
import pytest

from rating_pipeline import cli
from rating_pipeline.demo import quickstart as quickstart_module
from rating_pipeline.demo.day import demo_day
from rating_pipeline.demo.quickstart import (
    DEMO_HOURS,
    DEMO_SEED,
    DEMO_START,
    LATE_EVENTS,
    LATE_WINDOW,
    RESET_LEDGER,
    QuickstartError,
    RunOutcome,
    quickstart,
    require_expected,
    require_only_the_demos_ledger,
    ui_environment,
)
from rating_pipeline.orchestration.checks import NO_AMBIGUOUS_BASE
from rating_pipeline.orchestration.instance import LocalInstance, local_instance, open_instance
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.records import AMBIGUOUS_BASE, INVALID_EVENT, UNPRICED
from rating_pipeline.settings import project_root
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import HOUR, Window
from tests.conftest import insert_events
from tests.factories import make_event

BILLED = """
SELECT window_start, auth_id, model_id, service_tier, context_tier, event_count, cost_usd,
       pricebook_version
FROM rated_usage ORDER BY window_start, auth_id, model_id, service_tier, context_tier
"""
# Per reason: the rollups excepted (window, auth, model: its rows may be split by tier), events.
EXCEPTED = """
SELECT reason, count(DISTINCT (window_start, auth_id, model_id))::int, sum(event_count)::int
FROM rating_exception GROUP BY reason ORDER BY reason
"""
OPERATIONS = (project_root() / "docs" / "operations.md").read_text()
INVOICE_LINES = (
    "SELECT to_char(month AT TIME ZONE 'UTC', 'YYYY-MM'), count(*)::int FROM invoice_line "
    "GROUP BY 1"
)


def invoice_lines_shown(database_url: str, home: Path, storage_database: str) -> dict[str, Any]:
    """Per month: the line count the latest invoice_lines materialization shows."""
    shown = {}
    with open_instance(local_instance(database_url, home, storage_database)) as instance:
        for month in ("2026-06", "2026-07"):
            latest = dg.AssetRecordsFilter(dg.AssetKey("invoice_lines"), asset_partitions=[month])
            for record in instance.fetch_materializations(latest, limit=1).records:
                materialization = record.asset_materialization
                assert materialization is not None
                shown[month] = materialization.metadata["lines"].value
    return shown


def test_the_demo_day_is_the_one_docs_operations_describes(conn: psycopg.Connection) -> None:
    """What the docs say ``./dev demo`` loads, and where its late events land, is what the
    quickstart does (its own report is worded from the same constants)."""
    day = demo_day(conn, DEMO_START, DEMO_SEED)

    assert conn.execute("SELECT count(*) FROM billing_event").fetchone() == (day.events,)
    assert f"loads the demo day {DEMO_START:%Y-%m-%d} ({day.events:,} events:" in OPERATIONS
    assert f"lands {LATE_EVENTS} late events in `{LATE_WINDOW.key}`" in OPERATIONS


def test_the_quickstarts_reset_locks_the_close_mark_first() -> None:
    """Its TRUNCATE named rating_period_close last, as the downgrade's did: a close, build
    or rating in flight, which reads the mark first, could deadlock with it. Found by a
    second reading."""
    assert RESET_LEDGER.startswith("TRUNCATE rating_period_close, ")


def test_a_run_that_left_a_window_unrated_stops_the_quickstart() -> None:
    """The blocking check may fail the day's run (it fails after every window is
    reconciled); a window the run did not rate may not pass for rated."""
    windows = [Window(DEMO_START + offset * HOUR) for offset in range(2)]
    outcome = RunOutcome(
        run_id="run-1",
        label="the day",
        success=False,
        windows_rated=(windows[0].key,),
        failed_checks=(NO_AMBIGUOUS_BASE,),
        warning_checks=(),
        failed_steps=(f"rated_usage_{NO_AMBIGUOUS_BASE}",),
    )
    require_expected(outcome, windows[:1], {NO_AMBIGUOUS_BASE})

    with pytest.raises(QuickstartError, match=f"windows not rated \\['{windows[1].key}'\\]"):
        require_expected(outcome, windows, {NO_AMBIGUOUS_BASE})


@pytest.mark.slow
def test_quickstart_rates_the_demo_day_through_dagster_and_converges_when_rerun(
    database_url: str,
    storage_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "dagster_home"
    monkeypatch.setattr(
        "rating_pipeline.demo.quickstart.local_instance",
        lambda url, path: local_instance(url, path, storage_database),
    )
    first_output = io.StringIO()

    assert quickstart(database_url, home, first_output) == 0

    report = first_output.getvalue()
    assert f"Rating {DEMO_HOURS} windows through Dagster in one run" in report
    assert "24 window(s) rated; failed checks: no_ambiguous_base" in report
    assert f"{LATE_EVENTS} late events landed in {LATE_WINDOW.key}" in report
    assert "Cost per hour" in report and "Top 10 principals by cost" in report
    assert "Tokens and cost per class" in report
    assert "Cost per service tier and context" in report
    assert "close 1: closed through 2026-07-01T00:00:00+00:00 by demo" in report
    june = report.split("Invoice 2026-06 (closed, frozen), per account")[1]
    assert june.split("\n")[3].startswith("acct-north")
    july = report.split("Invoice 2026-07 (open), per account")[1]
    assert "acct-" in july.split("\n")[3]
    assert "./dev ui" in report
    with psycopg.connect(database_url) as conn:
        billed = conn.execute(BILLED).fetchall()
        excepted = dict((r, (n, e)) for r, n, e in conn.execute(EXCEPTED).fetchall())
        windows = conn.execute("SELECT count(DISTINCT window_start) FROM rating_log").fetchone()
        invoice_lines: dict[str, Any] = dict(conn.execute(INVOICE_LINES).fetchall())
    assert windows == (DEMO_HOURS,)
    assert {AMBIGUOUS_BASE, UNPRICED, INVALID_EVENT} <= set(excepted)
    assert excepted[AMBIGUOUS_BASE][0] == 2
    # The invoices it prints are invoice_lines materializations the UI shows.
    assert "Building both invoices through Dagster (invoice_lines 2026-06...2026-07" in report
    assert "2026-06: wholly closed, 201 lines frozen as its close built them" in report
    assert invoice_lines_shown(database_url, home, storage_database) == invoice_lines

    assert quickstart(database_url, home, io.StringIO()) == 0

    with psycopg.connect(database_url) as conn:
        assert conn.execute(BILLED).fetchall() == billed
    with open_instance(local_instance(database_url, home, storage_database)) as instance:
        # per quickstart: the day, the late window, the correction of a closed hour, the invoices
        assert len(instance.get_run_records()) == 8
    assert billed[0][0] == DEMO_START


@pytest.mark.slow
def test_quickstart_refuses_other_events_before_its_close_before_emptying_the_ledger(
    database_url: str,
    storage_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An hour of June outside the demo day holds events, and was rated, as the close
    refusal advises ("rate them first"). The quickstart empties the ledger, so that rating
    would be gone when it closes June: it refuses, naming the hour, before it has emptied
    anything; never rate the day, wipe the ledger, then stop at the close with advice that
    no re-run can follow."""
    monkeypatch.setattr(
        "rating_pipeline.demo.quickstart.local_instance",
        lambda url, path: local_instance(url, path, storage_database),
    )
    other = Window(DEMO_START + DEMO_HOURS * HOUR)  # 2026-06-16-00:00
    at = other.start + HOUR / 2
    insert_events(
        database_url, [make_event("org-trial", "base-medium", None, 10, 1, occurred_at=at)]
    )
    with connect(database_url) as conn:
        rate_window(conn, other, load_pricebooks(project_root() / "pricebooks"), "test-trial")
        conn.commit()

    with pytest.raises(QuickstartError, match=r"2026-06-16-00:00 \(1\)"):
        quickstart(database_url, tmp_path / "dagster_home", io.StringIO())
    with psycopg.connect(database_url) as conn:
        trial = conn.execute("SELECT count(*) FROM rated_usage WHERE auth_id = 'org-trial'")
        assert trial.fetchone() == (1,), "refused after emptying the ledger"


LEDGER_COUNTS = """
SELECT (SELECT count(*) FROM rated_usage), (SELECT count(*) FROM rating_period_close),
       (SELECT count(*) FROM invoice_line), (SELECT count(*) FROM billing_account)
"""


def test_quickstart_refuses_a_warehouse_whose_closes_and_accounts_it_did_not_make(
    database_url: str, storage_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract 10, no reopen: the demo empties the ledger of the embedded default, which may
    be a warehouse in use. An hour of August rated, closed by finance and invoiced, and an
    account mapped: the quickstart refuses, naming both, before it changes anything."""
    monkeypatch.setattr(
        "rating_pipeline.demo.quickstart.local_instance",
        lambda url, path: local_instance(url, path, storage_database),
    )
    hour = Window(DEMO_START.replace(month=8, day=10))
    insert_events(database_url, [make_event("org-1", "base-medium", None, 10, 1,
                                            occurred_at=hour.start)])  # fmt: skip
    with connect(database_url) as conn:
        conn.execute("INSERT INTO billing_account VALUES ('org-1', 'acct-1')")
        conn.commit()
        rate_window(conn, hour, load_pricebooks(project_root() / "pricebooks"), "test-real")
        close_period(conn, hour.start.replace(month=9, day=1, hour=0), "finance")
    with psycopg.connect(database_url) as conn:
        before = conn.execute(LEDGER_COUNTS).fetchone()
    assert before is not None and before[0] == before[1] == 1 and before[2] > 0

    with pytest.raises(QuickstartError, match=r"through 2026-09-01.*org-1 -> acct-1"):
        quickstart(database_url, tmp_path / "dagster_home", io.StringIO())

    with psycopg.connect(database_url) as conn:
        assert conn.execute(LEDGER_COUNTS).fetchone() == before


def test_an_account_mapping_that_does_not_print_is_quoted_in_the_quickstarts_refusal(
    database_url: str,
) -> None:
    """The refusal names a mapping it found; an auth_id from upstream may hold a line break
    or a terminal escape, which must not write a line of the error of its own."""
    with connect(database_url) as conn:
        conn.execute("INSERT INTO billing_account VALUES ('org-1\nerror: x\x1b[2K', 'acct-1')")
        conn.commit()

    with pytest.raises(QuickstartError) as refused:
        require_only_the_demos_ledger(database_url)

    message = str(refused.value)
    assert "\n" not in message and "\x1b" not in message
    assert repr("org-1\nerror: x\x1b[2K -> acct-1") in message


def test_quickstart_refuses_a_close_it_did_not_make_by_a_user_named_as_it_signs(
    database_url: str,
) -> None:
    """`period close --by demo` (or an OS user named demo) is a real close: the demo tells
    its own by what it closes and notes too, or it would empty a real ledger. Found by an
    audit of the closes."""
    hour = Window(DEMO_START.replace(month=11, day=10))
    insert_events(database_url, [make_event("org-1", occurred_at=hour.start)])
    with connect(database_url) as conn:
        rate_window(conn, hour, load_pricebooks(project_root() / "pricebooks"), "test-real")
        close_period(conn, hour.start.replace(month=12, day=1, hour=0), "demo")

    with pytest.raises(QuickstartError, match=r"through 2026-12-01"):
        require_only_the_demos_ledger(database_url)


# A stand-in for `dagster dev`: says it is up, then records the signal that stops it.
FAKE_DAGSTER_DEV = """
import pathlib, signal, sys, time
stopped = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (stopped.write_text("SIGTERM"), sys.exit(0)))
stopped.with_suffix(".up").write_text("up")
time.sleep(60)
"""


def test_sigterm_to_the_ui_command_is_passed_on_to_dagster_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stop` or systemd sends SIGTERM to `rating-pipeline demo ui` alone, which now
    hears it as Ctrl-C (cli.main): `dagster dev` must be told to stop too, not killed nor
    left running with its webserver and daemon, and the command exits 143 once it has."""
    stopped = tmp_path / "stopped"
    monkeypatch.setattr(quickstart_module, "embedded_warehouse", lambda: "unused")
    monkeypatch.setattr(quickstart_module.migrations, "upgrade", lambda url: None)
    monkeypatch.setattr(
        quickstart_module, "local_instance", lambda url, home: SimpleNamespace(home=home)
    )
    monkeypatch.setattr(quickstart_module, "ui_environment", lambda local: {})
    fake = [sys.executable, "-c", FAKE_DAGSTER_DEV, str(stopped)]
    monkeypatch.setattr(quickstart_module, "dagster_dev_command", lambda port: fake)

    def terminate_once_it_is_up() -> None:
        deadline = time.monotonic() + 30
        while not stopped.with_suffix(".up").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_it_is_up, daemon=True).start()

    assert cli.main(["demo", "ui"]) == 143
    assert stopped.read_text() == "SIGTERM"


def test_a_quickstart_stopped_by_ctrl_c_says_that_running_it_again_converges(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def stopped(url: str, home: Path) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(quickstart_module, "embedded_warehouse", lambda: "unused")
    monkeypatch.setattr(quickstart_module, "quickstart", stopped)

    assert cli.main(["demo", "quickstart"]) == 130
    assert "./dev demo` again" in capsys.readouterr().err


SUPERSEDED_DEV = """
from dagster._annotations import superseded

@superseded(additional_warn_text="Use 'dg dev' instead.", emit_runtime_warning=True)
def dev_command() -> None:
    pass

dev_command()
"""


def test_the_ui_command_keeps_dagster_devs_supersession_warning_off_its_first_line(
    tmp_path: Path,
) -> None:
    """`./dev ui` opened with `SupersessionWarning: Function `dev_command` is superseded
    ... Use 'dg dev' instead.` on every start; `dg dev` cannot serve the two code locations
    of workspace.yaml (docs/operations.md). Dagster's own decorator, warning as `dagster
    dev` does, is silent under the command's environment and only there. Found by an audit
    of the UI."""
    local = LocalInstance(tmp_path, "postgresql:///dagster", "postgresql:///rating")
    run = [sys.executable, "-c", SUPERSEDED_DEV]
    as_is = subprocess.run(run, capture_output=True, text=True, check=True)
    under_ui = subprocess.run(
        run, capture_output=True, text=True, check=True, env=ui_environment(local)
    )
    assert "SupersessionWarning" in as_is.stderr
    assert under_ui.stderr == ""
