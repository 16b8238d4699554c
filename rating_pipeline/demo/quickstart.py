"""``./dev demo`` and ``./dev ui``: a demo day rated through Dagster, and the UI on it.

The quickstart, on a fresh clone or for the tenth time (it converges):
1. starts the embedded PostgreSQL under ``.rating/`` and migrates the warehouse;
2. prepares ``.rating/dagster_home`` with the production ``dagster.yaml``, its storage a
   ``dagster`` database on the same server;
3. loads the demo day (``demo.day.demo_day``: 24 hours of traffic with cached, batch,
   priority, flex and long-context requests, and one of each case the rater must price
   or explain), replacing any earlier load of it;
4. rates the 24 windows in ONE Dagster run (a partition range, as a backfill would),
   whose blocking ``no_ambiguous_base`` check fails after every window is reconciled;
5. lands late events in one window, finds the changed window as the late-events sensor
   does, and re-rates it in its own run;
6. closes the demo day's month (``period close``), which builds and freezes its invoice;
7. lands a late correction in a closed hour and re-rates it: its rows stay as invoiced and
   the difference becomes adjustments, billed on the next month's invoice;
8. builds both months' invoices in one Dagster run of the invoicing location (``invoice_lines``:
   June as its close froze it, nothing written; July with the adjustments), so that the UI
   shows the invoices the demo prints;
9. prints the summary, both months' invoices per account, and how to open the UI.

Each run starts from an empty ledger (the project's tables, never ``billing_event``): a
close cannot be undone, and the demo's story begins before its close. So it refuses,
changing nothing, when events outside the demo day precede its close (``demo seed`` can
put them there): their hours would hold the close back, their ratings emptied; and when
the ledger holds what it did not make and no re-rate rebuilds (a close by anyone else, an
account mapping other than its own): the embedded default may be a warehouse in use.

It always uses the embedded database (it writes synthetic events, so it never touches the
warehouse RATING_DATABASE_URL names) and the shipped ``pricebooks/`` the demo day is made for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import dagster as dg

from rating_pipeline.demo.day import (
    DemoDay,
    add_late_events,
    demo_accounts,
    demo_day,
    load_demo_accounts,
)
from rating_pipeline.demo.seed import analyze_billing_event
from rating_pipeline.demo.summary import invoices_summary, summarize
from rating_pipeline.errors import EXIT_OK, RatingPipelineError, Terminated, shown
from rating_pipeline.orchestration import queries
from rating_pipeline.orchestration.checks import NO_AMBIGUOUS_BASE
from rating_pipeline.orchestration.instance import (
    LocalInstance,
    default_dagster_home,
    environment,
    local_instance,
    open_instance,
)
from rating_pipeline.orchestration.jobs import JOB_NAME, TRIGGER_TAG
from rating_pipeline.orchestration.partitions import month_key
from rating_pipeline.orchestration.sensors import SENSOR_NAME
from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE, project_root
from rating_pipeline.warehouse import embedded, migrations
from rating_pipeline.warehouse.close_mark import month_of
from rating_pipeline.warehouse.database import connect, database_clock
from rating_pipeline.warehouse.periods import close_period, period_status
from rating_pipeline.windows import HOUR, WINDOWED_FROM, Window

DEMO_START = datetime(2026, 6, 15, tzinfo=UTC)
DEMO_HOURS = 24
DEMO_SEED = 20260615
# The demo day is made for the shipped pricebooks, whatever RATING_PRICEBOOK_DIR says.
SHIPPED_PRICEBOOKS = project_root() / "pricebooks"
LATE_WINDOW = Window(DEMO_START + 10 * HOUR)
LATE_EVENTS = 40
CLOSE_THROUGH = datetime(2026, 7, 1, tzinfo=UTC)  # wholly closes the demo day's month
CLOSED_BY = "demo"
CLOSE_NOTE = "the demo day's month"
CORRECTION_WINDOW = Window(DEMO_START + 14 * HOUR)
CORRECTION_EVENTS = 25
NEXT_INVOICE = CLOSE_THROUGH  # the month an adjustment made after the close bills on
INVOICE_MONTHS = (month_of(DEMO_START), NEXT_INVOICE)
RESET_LEDGER = (
    f"TRUNCATE {', '.join(migrations.in_lock_order(migrations.OUTPUT_TABLES))} RESTART IDENTITY"
)
UI_HOST = "127.0.0.1"
UI_PORT_VARIABLE = "RATING_UI_PORT"
DEFAULT_UI_PORT = 3000
# Run tags Dagster reads a partition range from (dagster._core.storage.tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Hours before the demo's close, outside the demo day, that hold events a close would need
# rated: the ledger is emptied first, so no rating of them survives to the close.
OTHER_HOURS_BEFORE_CLOSE = """
SELECT date_trunc('hour', occurred_at, 'UTC') AS hour, count(*)
FROM billing_event
WHERE occurred_at >= %(windowed_from)s AND occurred_at < %(close_through)s
  AND NOT (occurred_at >= %(day_start)s AND occurred_at < %(day_end)s)
GROUP BY 1
ORDER BY 1
"""
# What the demo would empty that it did not make and no re-rate rebuilds: closes (and
# what they froze) by others, account mappings other than its own.
LEDGER_NOT_THE_DEMOS = """
SELECT
    (SELECT array_agg(closed_through ORDER BY closed_through) FROM rating_period_close
     WHERE (closed_by, closed_through, note) IS DISTINCT FROM
         (%(closed_by)s, %(close_through)s::timestamptz, %(close_note)s)),
    (SELECT array_agg(auth_id || ' -> ' || account_id ORDER BY auth_id COLLATE "C")
     FROM billing_account
     WHERE (auth_id, account_id) NOT IN (
         SELECT * FROM unnest(%(auth_ids)s::text[], %(account_ids)s::text[])))
"""
# The run's events go to the instance (the UI shows them); the terminal gets the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class QuickstartError(RatingPipelineError):
    """A quickstart run failed for a reason other than the one the demo day provokes."""


@dataclass(frozen=True)
class RunOutcome:
    """What one Dagster run of the quickstart did."""

    run_id: str
    label: str
    success: bool
    windows_rated: tuple[str, ...]
    failed_checks: tuple[str, ...]
    warning_checks: tuple[str, ...]
    failed_steps: tuple[str, ...]

    def line(self) -> str:
        status = "SUCCESS" if self.success else "FAILURE"
        failed = f"; failed checks: {', '.join(self.failed_checks)}" if self.failed_checks else ""
        warned = f"; warnings: {', '.join(self.warning_checks)}" if self.warning_checks else ""
        return (
            f"Dagster run {self.run_id} ({JOB_NAME}, {self.label}): {status}, "
            f"{len(self.windows_rated)} window(s) rated{failed}{warned}"
        )


def _outcome(result: dg.ExecuteInProcessResult, label: str) -> RunOutcome:
    rated = sorted(
        {
            m.partition
            for m in result.asset_materializations_for_node("rated_usage")
            if m.partition is not None
        }
    )
    failures = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_steps = sorted(
        {event.step_key for event in result.all_events if event.is_step_failure and event.step_key}
    )
    return RunOutcome(
        run_id=result.run_id,
        label=label,
        success=result.success,
        windows_rated=tuple(rated),
        failed_checks=tuple(
            sorted(e.check_name for e in failures if e.severity == dg.AssetCheckSeverity.ERROR)
        ),
        warning_checks=tuple(
            sorted(e.check_name for e in failures if e.severity == dg.AssetCheckSeverity.WARN)
        ),
        failed_steps=tuple(failed_steps),
    )


def rate_through_dagster(
    instance: dg.DagsterInstance,
    windows: list[Window],
    tags: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Run the ``rate_windows`` job on ``instance`` for ``windows`` (consecutive), in process.

    One window is a partition run; several are one partition-range run, as a single-run
    backfill launches it. The run, its logs and its check results land in the instance.
    """
    from rating_pipeline.definitions import defs

    job = defs.resolve_job_def(JOB_NAME)
    label = windows[0].key if len(windows) == 1 else f"{windows[0].key}...{windows[-1].key}"
    run_tags = dict(tags or {})
    if len(windows) == 1:
        result = job.execute_in_process(
            run_config=QUIET,
            instance=instance,
            partition_key=windows[0].key,
            tags=run_tags,
            raise_on_error=False,
        )
    else:
        run_tags.update({RANGE_START_TAG: windows[0].key, RANGE_END_TAG: windows[-1].key})
        result = job.execute_in_process(
            run_config=QUIET, instance=instance, tags=run_tags, raise_on_error=False
        )
    return _outcome(result, label)


def require_expected(
    outcome: RunOutcome, windows: list[Window], allowed_failures: set[str]
) -> None:
    """The run rated every window, and nothing failed but the checks in ``allowed_failures``."""
    missing = sorted({w.key for w in windows} - set(outcome.windows_rated))
    unexpected = sorted(set(outcome.failed_checks) - allowed_failures)
    check_steps = {f"rated_usage_{name}" for name in outcome.failed_checks}
    broken_steps = sorted(set(outcome.failed_steps) - check_steps)
    if missing or unexpected or broken_steps:
        raise QuickstartError(
            f"Dagster run {outcome.run_id} failed: windows not rated {missing or 'none'}, "
            f"failed checks {unexpected or 'none'}, failed steps {broken_steps or 'none'}; "
            "open the run in the UI (./dev ui) for its logs"
        )


def require_only_the_demo_before_its_close(warehouse_url: str) -> None:
    """Raise QuickstartError, changing nothing, when events outside the demo day precede
    its close: the close would refuse their hours as never rated, after the ledger (their
    ratings with it) was emptied."""
    bounds = {
        "windowed_from": WINDOWED_FROM,
        "close_through": CLOSE_THROUGH,
        "day_start": DEMO_START,
        "day_end": DEMO_START + DEMO_HOURS * HOUR,
    }
    with connect(warehouse_url) as conn:
        hours = conn.execute(OTHER_HOURS_BEFORE_CLOSE, bounds).fetchall()
        conn.rollback()
    if hours:
        named = ", ".join(f"{Window(hour).key} ({count})" for hour, count in hours[:5])
        more = f" and {len(hours) - 5} more hours" if len(hours) > 5 else ""
        raise QuickstartError(
            f"the demo's warehouse holds events outside the demo day before its close "
            f"through {CLOSE_THROUGH:%Y-%m-%d}: {named}{more}; the demo empties the ledger "
            "and closes June, which those hours would hold back; nothing was changed: delete "
            "them from billing_event, or remove .rating/pgdata to start over"
        )


def require_only_the_demos_ledger(warehouse_url: str) -> None:
    """Raise QuickstartError, changing nothing, when the ledger holds what the demo would
    empty, did not make, and no re-rate rebuilds: a close by anyone else (a close is never
    undone, contract 10), an account mapping other than the demo's. Ratings of other
    windows (the UI's schedule makes them) are emptied: re-rating rebuilds them."""
    accounts = demo_accounts()
    params = {
        "closed_by": CLOSED_BY,
        "close_through": CLOSE_THROUGH,
        "close_note": CLOSE_NOTE,
        "auth_ids": [auth_id for auth_id, _ in accounts],
        "account_ids": [account_id for _, account_id in accounts],
    }
    with connect(warehouse_url) as conn:
        row = conn.execute(LEDGER_NOT_THE_DEMOS, params).fetchone()
        conn.rollback()
    closed, mapped = row if row is not None else (None, None)
    found = []
    if closed:
        through = closed[-1].astimezone(UTC)
        found.append(f"{len(closed)} close(s) not the demo's (through {through:%Y-%m-%d})")
    if mapped:
        more = ", ..." if len(mapped) > 1 else ""
        found.append(f"{len(mapped)} account mapping(s) not the demo's ({shown(mapped[0])}{more})")
    if found:
        raise QuickstartError(
            f"the demo's warehouse (the embedded default) holds what the demo would empty "
            f"and did not make: {'; '.join(found)}; a close is never undone, so nothing was "
            "changed: run the demo on a fresh clone, or remove .rating/pgdata once nothing "
            "in it is needed"
        )


def load_demo_day(warehouse_url: str) -> DemoDay:
    """An empty ledger, the demo day's events and the demo's billing accounts."""
    with connect(warehouse_url) as conn:
        conn.execute(RESET_LEDGER)
        conn.commit()
        load_demo_accounts(conn)
        day = demo_day(conn, DEMO_START, DEMO_SEED)
        conn.commit()
        analyze_billing_event(conn)
        conn.commit()
    return day


def loaded_lines(day: DemoDay) -> list[str]:
    """What the demo day holds: its events, and each row of its hand-made cases."""
    return [
        f"Loaded the demo day {DEMO_START:%Y-%m-%d}: {day.events:,} events in billing_event, "
        "among them these hand-made cases:",
        *(
            f"  {Window(DEMO_START + case.hour_offset * HOUR).key}  {case.name}, "
            f"{case.count} event(s): {case.expected}"
            for case in day.cases
        ),
    ]


def land_late_events(warehouse_url: str) -> list[queries.ChangedWindow]:
    """Insert the late events (ingested now) and find the rated windows they changed, with
    the query the late-events sensor runs (its lookback widened to the demo day)."""
    with connect(warehouse_url) as conn:
        before = database_clock(conn)
        conn.commit()
        add_late_events(conn, LATE_WINDOW.start, LATE_EVENTS, DEMO_SEED)
        conn.commit()
        after = database_clock(conn)
        changed, _ = queries.touched_windows(conn, queries.Ingested(before, after), DEMO_START)
        conn.rollback()
    return changed


def quickstart(warehouse_url: str, dagster_home: Path, out: TextIO = sys.stdout) -> int:
    """Steps 1-9 of the module doc against ``warehouse_url``, the Dagster instance in
    ``dagster_home``; raises QuickstartError when a run fails unexpectedly."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    windows = [Window(DEMO_START + offset * HOUR) for offset in range(DEMO_HOURS)]
    say(migrations.upgrade(warehouse_url))
    require_only_the_demo_before_its_close(warehouse_url)
    require_only_the_demos_ledger(warehouse_url)
    local = local_instance(warehouse_url, dagster_home)
    say(f"Dagster instance: DAGSTER_HOME={local.home} (runs and event log in PostgreSQL)")
    for line in loaded_lines(load_demo_day(warehouse_url)):
        say(line)
    with (
        environment({PRICEBOOK_DIR_VARIABLE: str(SHIPPED_PRICEBOOKS)}),
        open_instance(local) as instance,
    ):
        rate_demo_day(instance, windows, say)
        rerate_late_windows(instance, warehouse_url, say)
        close_demo_month(warehouse_url, say)
        correct_closed_hour(instance, warehouse_url, say)
        build_invoices_through_dagster(instance, say)
    say()
    with connect(warehouse_url) as conn:
        say(summarize(conn, DEMO_START, DEMO_START + DEMO_HOURS * HOUR).rstrip())
        say()
        say(invoices_summary(conn, list(INVOICE_MONTHS)).rstrip())
        conn.rollback()
    say()
    say("Open the Dagster UI on this same data:  ./dev ui")
    say(f"  then http://{UI_HOST}:{ui_port()}  (Runs: the runs above; Assets > rated_usage:")
    say("  each window's counts, cost, cost by token class and by tier, costliest rollups,")
    say("  and the checks' results; Assets > invoice_lines: each month's invoice per account)")
    return EXIT_OK


def rate_demo_day(
    instance: dg.DagsterInstance, windows: list[Window], say: Callable[[str], None]
) -> None:
    """Step 4: rate the day in one run; only the ambiguity gate may fail it."""
    say("")
    say(f"Rating {len(windows)} windows through Dagster in one run (a partition range) ...")
    first = rate_through_dagster(instance, windows)
    say(first.line())
    require_expected(first, windows, {NO_AMBIGUOUS_BASE})
    if NO_AMBIGUOUS_BASE in first.failed_checks:
        say(
            f"  As the contract requires (5.2): every window was reconciled, then the "
            f"blocking check {NO_AMBIGUOUS_BASE} failed the run. The ambiguous rollups are "
            "in rating_exception, not billed (see Exceptions below)."
        )


def rerate_late_windows(
    instance: dg.DagsterInstance, warehouse_url: str, say: Callable[[str], None]
) -> None:
    """Step 5: late events land; each window the sensor's query finds is re-rated."""
    changed = land_late_events(warehouse_url)
    say("")
    say(
        f"{LATE_EVENTS} late events landed in {LATE_WINDOW.key} after it was rated; "
        f"the {SENSOR_NAME} sensor's query finds {len(changed)} changed window(s):"
    )
    for window in changed:
        say(
            f"  {window.window.key}: rated with {window.events_read:,} events, "
            f"{window.events_now:,} now"
        )
        outcome = rate_through_dagster(instance, [window.window], {TRIGGER_TAG: SENSOR_NAME})
        say(f"  {outcome.line()}")
        require_expected(outcome, [window.window], {NO_AMBIGUOUS_BASE})


def close_demo_month(warehouse_url: str, say: Callable[[str], None]) -> None:
    """Step 6: close through the end of the demo day's month; its invoice is frozen."""
    with connect(warehouse_url) as conn:
        closed = close_period(conn, CLOSE_THROUGH, CLOSED_BY, CLOSE_NOTE)
    say("")
    say(f"Closing the period through {CLOSE_THROUGH.isoformat()} (rating-pipeline period close):")
    for line in closed.lines():
        say(f"  {line}")


def correct_closed_hour(
    instance: dg.DagsterInstance, warehouse_url: str, say: Callable[[str], None]
) -> None:
    """Step 7: late events in a closed hour; its re-rate adjusts, the next invoice bills it."""
    with connect(warehouse_url) as conn:
        add_late_events(conn, CORRECTION_WINDOW.start, CORRECTION_EVENTS, DEMO_SEED)
        conn.commit()
    say("")
    say(
        f"{CORRECTION_EVENTS} late events landed in the closed hour {CORRECTION_WINDOW.key}; "
        "re-rating it leaves its invoiced rows as they are and adjusts:"
    )
    outcome = rate_through_dagster(instance, [CORRECTION_WINDOW], {TRIGGER_TAG: "demo"})
    say(f"  {outcome.line()}")
    require_expected(outcome, [CORRECTION_WINDOW], {NO_AMBIGUOUS_BASE})
    with connect(warehouse_url) as conn:
        for line in period_status(conn).lines():
            say(f"  {line}")
        conn.rollback()


def build_invoices_through_dagster(
    instance: dg.DagsterInstance, say: Callable[[str], None]
) -> None:
    """Step 8: ``invoice_lines`` for both months in one run of the invoicing location, as
    a backfill of two partitions would: June stays as its close froze it, July converges.
    Prints each month's build as the asset logs it."""
    from rating_pipeline.invoice_definitions import defs

    first, last = (month_key(month) for month in INVOICE_MONTHS)
    say("")
    say(f"Building both invoices through Dagster (invoice_lines {first}...{last}, one run) ...")
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        run_config=QUIET,
        instance=instance,
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
        raise_on_error=False,
    )
    months = sorted(
        {str(m.partition) for m in result.asset_materializations_for_node("invoice_lines")}
    )
    failed = sorted(e.check_name for e in result.get_asset_check_evaluations() if not e.passed)
    status = "SUCCESS" if result.success else "FAILURE"
    checks = f"; failed checks: {', '.join(failed)}" if failed else ""
    say(
        f"  Dagster run {result.run_id} ({job.name}, {first}...{last}): {status}, "
        f"{len(months)} month(s) materialized{checks}"
    )
    for record in instance.all_logs(result.run_id):
        if record.dagster_event is None and record.step_key == "invoice_lines":
            say(f"    {record.user_message}")
    if not result.success or months != [first, last]:
        raise QuickstartError(
            f"Dagster run {result.run_id} failed: months materialized {months or 'none'} of "
            f"{first} and {last}, failed checks {failed or 'none'}; open the run in the UI "
            "(./dev ui) for its logs"
        )


def embedded_warehouse() -> str:
    """The embedded warehouse's URL (started if needed), noting an ignored RATING_DATABASE_URL."""
    if os.environ.get(DATABASE_URL_VARIABLE):
        print(
            f"{DATABASE_URL_VARIABLE} is set; the demo uses the embedded database under .rating/ "
            "anyway and leaves that warehouse alone."
        )
    return embedded.start()


def quickstart_command() -> int:
    """``rating-pipeline demo quickstart`` (``./dev demo``). Stopped by Ctrl-C, it says how
    to go on."""
    try:
        return quickstart(embedded_warehouse(), default_dagster_home())
    except KeyboardInterrupt:
        print(
            "interrupted: the demo stopped part way, every step it finished committed; "
            "`./dev demo` again converges (it empties its ledger and loads the day afresh)",
            file=sys.stderr,
        )
        raise


def ui_port() -> int:
    text = os.environ.get(UI_PORT_VARIABLE, "")
    if not text.strip():
        return DEFAULT_UI_PORT
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise QuickstartError(f"{UI_PORT_VARIABLE}={text!r}: expected a TCP port number")
    return int(text)


def dagster_dev_command(port: int) -> list[str]:
    """``dagster dev`` on the project's workspace, listening on 127.0.0.1 only."""
    return [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        str(project_root() / "workspace.yaml"),
        "-h",
        UI_HOST,
        "-p",
        str(port),
    ]


# `dagster dev` warns on every start that `dg dev` supersedes it; `dg dev` serves dg
# projects, not the two code locations of workspace.yaml (docs/operations.md).
DEV_SUPERSEDED = "ignore:Function `dev_command` is superseded"


def ui_environment(local: LocalInstance) -> dict[str, str]:
    warnings = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), DEV_SUPERSEDED]))
    return {**os.environ, **local.environment(), "PYTHONWARNINGS": warnings}


def ui_command() -> int:
    """``rating-pipeline demo ui`` (``./dev ui``): ``dagster dev`` on the quickstart's data."""
    warehouse_url = embedded_warehouse()
    migrations.upgrade(warehouse_url)
    local = local_instance(warehouse_url, default_dagster_home())
    port = ui_port()
    print(
        f"Dagster UI on http://{UI_HOST}:{port} (DAGSTER_HOME={local.home}, the embedded "
        "warehouse); Ctrl-C stops it.",
        flush=True,
    )
    env, cwd = ui_environment(local), project_root()
    with subprocess.Popen(dagster_dev_command(port), env=env, cwd=cwd) as dev:
        try:
            return dev.wait()
        except KeyboardInterrupt as stop:
            # Ctrl-C reached dagster dev from the terminal too; SIGTERM came to this process
            # alone: pass it on, so that dagster dev stops its webserver and daemon.
            if isinstance(stop, Terminated):
                dev.terminate()
            dev.wait()
            raise
