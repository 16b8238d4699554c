"""Asset checks on ``rated_usage``: SQL audits of the warehouse, never the IO manager.

In a partitioned run a check audits the run's windows (one partition or a range), after
``rated_usage`` reconciled them all; executed on its own, outside any partition, it audits
every window ever rated. Each check reads one REPEATABLE READ snapshot.

- ``cost_reconstructs`` (ERROR, blocking): every row's cost is its tokens times its own
  frozen rates, and each window's billed output adds up to the total its latest rating
  logged.
- ``events_conserved`` (ERROR): every event billing_event holds for a rated window is
  billed or excepted, exactly once.
- ``no_ambiguous_base`` (ERROR, blocking): no rollup was excluded as ``ambiguous_base``
  (contract 5.2: the window is reconciled in full first, then this check fails the run).
- ``all_usage_priced`` (WARN): no ``unpriced`` and no ``invalid_event`` exceptions.
- ``all_windows_billed`` (WARN): no window bills other events than it holds, unseen by the
  sensors or left by them: windows whose events changed after their latest rating
  (``late_window``) older than the lookback, or found longer ago than the changed-events
  interval and not re-rated since; and hours with events never rated. It audits every
  window, whatever the run's partitions.
- ``no_open_adjustments`` (WARN): no closed window was corrected since the last close
  (contract 10, "Seen"): its open adjustments bill on the next invoice until a close stamps
  them. It audits every window, whatever the run's partitions: the UI shows a check's
  latest evaluation, which the next hour's run must not turn green while they are open.
- ``priced_by_current_pricebooks`` (WARN): every rated window's latest rating was priced
  by the version and file the current pricebooks choose for it; a version file edited, or
  a version added with an earlier effective_from, after the rating lists the window until
  it is rated again. It audits every window, whatever the run's partitions.

A closed window's billed output is its frozen rows plus every adjustment of it, stamped and
open (contract 10); an open window has no adjustments.
"""

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg

from rating_pipeline.money import exact_sum
from rating_pipeline.orchestration import changed_events, missed_hours, partitions, queries, sensors
from rating_pipeline.orchestration.assets import load_or_fail, rated_usage
from rating_pipeline.orchestration.metadata import (
    int_column,
    money,
    table,
    text_column,
    usd_text,
)
from rating_pipeline.orchestration.partitions import hourly_windows, windows_in
from rating_pipeline.orchestration.queries import (
    CostAudit,
    CostMismatch,
    ExceptionRow,
    LateWindow,
    LoggedTotalMismatch,
    ReasonTotals,
    Span,
    WindowConservation,
)
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.records import AMBIGUOUS_BASE, INVALID_EVENT, REASONS, UNPRICED
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.warehouse.extract import undated_events
from rating_pipeline.warehouse.periods import (
    OpenAdjustments,
    open_adjustments,
    unrated_hours_before,
)
from rating_pipeline.warehouse.repricing import PricedOtherwise, windows_priced_otherwise
from rating_pipeline.windows import WINDOWED_FROM, WINDOWED_UNTIL, Window

COST_RECONSTRUCTS = "cost_reconstructs"
EVENTS_CONSERVED = "events_conserved"
NO_AMBIGUOUS_BASE = "no_ambiguous_base"
ALL_USAGE_PRICED = "all_usage_priced"
ALL_WINDOWS_BILLED = "all_windows_billed"
NO_OPEN_ADJUSTMENTS = "no_open_adjustments"
PRICED_BY_CURRENT_PRICEBOOKS = "priced_by_current_pricebooks"
NOT_PRICED_REASONS = (UNPRICED, INVALID_EVENT)
WINDOWS_LISTED = 20

COST_MISMATCH_COLUMNS = (
    text_column("window"),
    text_column("auth_id"),
    text_column("model_id"),
    text_column("service_tier"),
    text_column("context_tier"),
    text_column("cost_usd", "as stored, exact"),
    text_column("reconstructed_usd", "each class's tokens x the row's own rate / 1e6, exact"),
)
WINDOW_TOTAL_COLUMNS = (
    text_column("window"),
    text_column(
        "logged_cost_usd", "the total its latest rating_log row recorded, exact ('no rating')"
    ),
    text_column(
        "billed_cost_usd", "its rated_usage rows plus, once closed, its adjustments; exact"
    ),
)
NOT_CONSERVED_COLUMNS = (
    text_column("window"),
    int_column("events_now"),
    int_column("events_read", "by the window's latest rating"),
    int_column("events_billed"),
    int_column("events_excepted"),
    text_column("why"),
)
EXCEPTION_COLUMNS = (
    text_column("window"),
    text_column("auth_id"),
    text_column("model_id"),
    text_column("service_tier", "- for an invalid_event row"),
    text_column("context_tier", "- for an invalid_event row"),
    text_column("reason"),
    int_column("events"),
    text_column("detail"),
)
UNBILLED_COLUMNS = (
    text_column("window"),
    text_column("why", "what it bills against what it holds, and what the sensors do"),
)


def audited_span(context: dg.AssetCheckExecutionContext, conn: psycopg.Connection) -> Span | None:
    """The run's windows; outside a partitioned run, every rated window (None: none yet)."""
    if context.has_partition_key or context.has_partition_key_range:
        return Span.of(windows_in(context.partition_time_window))
    return queries.rated_span(conn)


def _nothing_rated() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, description="No window has been rated yet.")


@dg.asset_check(
    asset=rated_usage,
    name=COST_RECONSTRUCTS,
    blocking=True,
    description=(
        "Every rated_usage row's cost_usd equals the sum over token classes of tokens x its "
        "own frozen rate / 1e6 (no class with tokens lacks a rate), and each window's rows "
        "(in a closed window, with all its adjustments) add up to the total its latest "
        "rating logged."
    ),
)
def cost_reconstructs(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.snapshot() as conn:
        span = audited_span(context, conn)
        if span is None:
            return _nothing_rated()
        audit = queries.cost_audit(conn, span)
        mismatches = queries.cost_mismatches(conn, span) if audit.rows_not_reconstructing else []
        totals = queries.logged_total_mismatches(conn, span)
    return evaluate_cost(span, audit, mismatches, totals)


def evaluate_cost(
    span: Span,
    audit: CostAudit,
    mismatches: list[CostMismatch],
    totals: list[LoggedTotalMismatch],
) -> dg.AssetCheckResult:
    passed = audit.rows_not_reconstructing == 0 and not totals
    checked: dict[str, Any] = {
        "windows": dg.MetadataValue.text(str(span)),
        "rows_audited": dg.MetadataValue.int(audit.rows_audited),
        "rows_not_reconstructing": dg.MetadataValue.int(audit.rows_not_reconstructing),
        "windows_total_not_logged": dg.MetadataValue.int(len(totals)),
        "total_cost_usd": money(audit.total_cost_usd),
    }
    if mismatches:
        checked["rows"] = table(
            COST_MISMATCH_COLUMNS,
            (
                (
                    m.window.key,
                    m.auth_id,
                    m.model_id,
                    m.service_tier,
                    m.context_tier,
                    usd_text(m.cost_usd),
                    "no rate for a class with tokens"
                    if m.reconstructed_cost_usd is None
                    else usd_text(m.reconstructed_cost_usd),
                )
                for m in mismatches
            ),
        )
    if totals:
        checked["window_totals"] = window_totals_table(totals[:WINDOWS_LISTED])
    description = (
        f"Every row of {span} reconstructs ({_plural(audit.rows_audited, 'row')}, "
        f"{usd_text(audit.total_cost_usd)} USD in all), and each window's rows (in a closed "
        "window, with all its adjustments) add up to its latest logged total."
        if passed
        else (
            "Not reconstructing from their own rates and tokens: "
            f"{_plural(audit.rows_not_reconstructing, 'row')} of {span}; not adding up to "
            f"their logged total: {_plural(len(totals), 'window')}: the table was written "
            "outside the rater. Re-materialize the windows; the archive tables keep the rows "
            "they replace."
        )
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=checked,
        description=description,
    )


def window_totals_table(totals: list[LoggedTotalMismatch]) -> dg.TableMetadataValue:
    """Each window off its logged total: logged (``no rating`` when none was), billed."""
    return table(
        WINDOW_TOTAL_COLUMNS,
        (
            (
                t.window.key,
                "no rating" if t.logged_cost_usd is None else usd_text(t.logged_cost_usd),
                usd_text(t.billed_cost_usd),
            )
            for t in totals
        ),
    )


@dg.asset_check(
    asset=rated_usage,
    name=EVENTS_CONSERVED,
    description=(
        "For every rated window: the events billing_event holds equal the events in "
        "rated_usage (in a closed window, with all its adjustments) plus the events in "
        "rating_exception."
    ),
)
def events_conserved(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.snapshot() as conn:
        span = audited_span(context, conn)
        if span is None:
            return _nothing_rated()
        windows = queries.conservation(conn, span)
    return evaluate_conservation(span, windows)


def evaluate_conservation(span: Span, windows: list[WindowConservation]) -> dg.AssetCheckResult:
    broken = [w for w in windows if not w.conserved or not w.output_accounts_for_read]
    # A broken window whose output accounts for what its rating read holds other events now.
    corrupt = [w for w in broken if not w.output_accounts_for_read]
    stale = [w for w in broken if w.output_accounts_for_read]
    checked: dict[str, Any] = {
        "windows": dg.MetadataValue.text(str(span)),
        "windows_audited": dg.MetadataValue.int(len(windows)),
        "events": dg.MetadataValue.int(sum(w.events_now for w in windows)),
        "events_billed": dg.MetadataValue.int(sum(w.events_billed for w in windows)),
        "events_excepted": dg.MetadataValue.int(sum(w.events_excepted for w in windows)),
        "windows_not_conserved": dg.MetadataValue.int(len(broken)),
    }
    if broken:
        checked["not_conserved"] = table(
            NOT_CONSERVED_COLUMNS,
            (
                (
                    w.window.key,
                    w.events_now,
                    w.events_read,
                    w.events_billed,
                    w.events_excepted,
                    "output does not match what the rating read"
                    if not w.output_accounts_for_read
                    else "events changed after the rating (late or deleted)",
                )
                for w in broken[:WINDOWS_LISTED]
            ),
        )
    if not broken:
        description = (
            f"Every event of the {_plural(len(windows), 'rated window')} of {span} is billed "
            "or excepted."
        )
    else:
        description = (
            f"Not conserved: {_plural(len(broken), 'window')} of {span}; {len(stale)} "
            "changed after their rating (within the lookback, late_events re-rates late events and "
            "changed_events deleted or corrected ones; re-materialize older windows), "
            f"{len(corrupt)} hold output that does not "
            "match what their rating read (written outside the rater: re-materialize them)."
        )
    return dg.AssetCheckResult(
        passed=not broken,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=checked,
        description=description,
    )


@dg.asset_check(
    asset=rated_usage,
    name=NO_AMBIGUOUS_BASE,
    blocking=True,
    description=(
        "No rollup was excluded from billing as ambiguous_base: a fine-tune priced from its "
        "events' base_model whose events name more than one base (null counts as one)."
    ),
)
def no_ambiguous_base(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.snapshot() as conn:
        span = audited_span(context, conn)
        if span is None:
            return _nothing_rated()
        totals = queries.exceptions_by_reason(conn, span)
        rows = queries.exception_rows(conn, span, (AMBIGUOUS_BASE,))
    return evaluate_ambiguity(span, totals.get(AMBIGUOUS_BASE), rows)


def evaluate_ambiguity(
    span: Span, totals: ReasonTotals | None, rows: list[ExceptionRow]
) -> dg.AssetCheckResult:
    rollups = totals.rollups if totals else 0
    checked: dict[str, Any] = {
        "windows": dg.MetadataValue.text(str(span)),
        "ambiguous_rollups": dg.MetadataValue.int(rollups),
        "ambiguous_events": dg.MetadataValue.int(totals.event_count if totals else 0),
    }
    if rows:
        checked["rollups"] = _exception_table(rows)
    if rollups == 0:
        description = f"No ambiguous_base rollup in {span}."
    else:
        description = (
            f"{rollups} rollups of {span} were NOT billed: their events name more than one "
            "base_model. Their windows are otherwise rated and committed. Fix the events' "
            "base_model upstream or declare the fine-tune in the pricebook, then re-materialize "
            "the windows."
        )
    return dg.AssetCheckResult(
        passed=rollups == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=checked,
        description=description,
    )


@dg.asset_check(
    asset=rated_usage,
    name=ALL_USAGE_PRICED,
    description=(
        "No usage went unpriced (unknown model, fine-tune without a true base, no "
        "fine_tune_multiplier) and no event was invalid (negative tokens, blank ids)."
    ),
)
def all_usage_priced(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.snapshot() as conn:
        span = audited_span(context, conn)
        if span is None:
            return _nothing_rated()
        totals = queries.exceptions_by_reason(conn, span)
        rows = queries.exception_rows(conn, span, NOT_PRICED_REASONS)
    return evaluate_priced(span, totals, rows)


def evaluate_priced(
    span: Span, totals: dict[str, ReasonTotals], rows: list[ExceptionRow]
) -> dg.AssetCheckResult:
    by_reason = {
        reason: {
            "rollups": totals[reason].rollups if reason in totals else 0,
            "events": totals[reason].event_count if reason in totals else 0,
        }
        for reason in REASONS
    }
    unpriced_events = sum(by_reason[reason]["events"] for reason in NOT_PRICED_REASONS)
    checked: dict[str, Any] = {
        "windows": dg.MetadataValue.text(str(span)),
        "exceptions_by_reason": dg.MetadataValue.json(by_reason),
        "events_not_priced": dg.MetadataValue.int(unpriced_events),
    }
    if rows:
        checked["rollups"] = _exception_table(rows)
    description = (
        f"All usage of {span} is priced."
        if unpriced_events == 0
        else (
            f"{unpriced_events} events of {span} did not bill: "
            + ", ".join(f"{by_reason[reason]['events']} {reason}" for reason in NOT_PRICED_REASONS)
            + ". See rating_exception (reason, detail) for each rollup."
        )
    )
    return dg.AssetCheckResult(
        passed=unpriced_events == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=checked,
        description=description,
    )


def _exception_table(rows: Iterable[ExceptionRow]) -> dg.TableMetadataValue:
    return table(
        EXCEPTION_COLUMNS,
        (
            (
                r.window.key,
                r.auth_id,
                r.model_id,
                r.service_tier,
                r.context_tier,
                r.reason,
                r.event_count,
                r.detail,
            )
            for r in rows
        ),
    )


@dg.asset_check(
    asset=rated_usage,
    name=ALL_WINDOWS_BILLED,
    description=(
        "No window bills other events than it holds, as far as the sensors and closes see: "
        "lists the windows found changed after their latest rating (by the sensors: late "
        "arrivals at any age, corrections and deletions while in the lookback; by a period "
        "close: another count of events in a window it closes) that none re-rates (older "
        "than the lookback, or not re-rated within RATING_CHANGED_EVENT_INTERVAL_MINUTES), "
        "the hours with events that were never rated (missed hours, with the missed_hours "
        "sensor's attempts), the hours before the first window that hold events no rating "
        "read, how many events no window holds (no occurred_at, or one outside the instants "
        "a window can hold), and how many are dated in hours that have not begun. A "
        "correction in place to a window past the lookback is seen by no sensor "
        "(docs/operations.md)."
    ),
)
def all_windows_billed(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    pricebooks: PricebookResource,
) -> dg.AssetCheckResult:
    with warehouse.rolled_back() as conn:  # a digest reads into a scratch temp table
        now = database_clock(conn)
        lookback_start = partitions.lookback_start(now, sensors.lookback())
        within = changed_events.interval()
        recorded = queries.late_windows(conn, lookback_start, now - within)
        books = functools.cache(lambda: load_or_fail(pricebooks, "no window is checked"))
        late = [(w, how) for w in recorded if (how := how_changed(conn, books, w)) is not None]
        never_rated = queries.unrated_hours(conn, missed_hours.missed_span(now))
        before_first = unrated_hours_before(conn, hourly_windows.start.astimezone(UTC))
        undated = undated_events(conn)
        not_begun = queries.events_not_begun(conn, Window.containing(now).end)
    states = never_rated_states(context.instance, never_rated[:WINDOWS_LISTED], lookback_start)
    states |= {w.window: late_state(w, how, lookback_start, within) for w, how in late}
    return evaluate_billed(
        [w for w, _ in late], never_rated, states, before_first, undated, not_begun
    )


def late_state(late: LateWindow, how: str, lookback_start: datetime, within: timedelta) -> str:
    """Why a recorded window bills other events than it holds (``how``: from how_changed):
    older than the lookback, or found changed and not re-rated within the sensors' interval."""
    found = f"{late.events_now} events now, {late.events_read} read by its latest rating{how}"
    if partitions.before_first_partition(late.window):
        first = Window(hourly_windows.start.astimezone(UTC))
        return (
            f"{found}: before the first partition ({first.key}), so no sensor re-rates it: "
            f"{partitions.RATE_BY_HAND}"
        )
    if late.window.start < lookback_start:
        return f"{found}: older than the lookback, not re-rated automatically"
    return (
        f"{found}: found changed {late.found_at.isoformat()} and not re-rated within "
        f"{changed_events.INTERVAL_VARIABLE} ({within // timedelta(minutes=1)}): its re-rates "
        "failed, were given up or still wait, or no sensor runs (see the sensors' ticks and "
        "runs)"
    )


DIGEST_DIFFERS = ", corrected since (its events digest differs)"
NO_VERSION_TO_DIGEST_WITH = (
    ", not digested: no pricebook version covers it any more (restore the one it was rated with)"
)


def how_changed(
    conn: psycopg.Connection, books: Callable[[], Pricebooks], late: LateWindow
) -> str | None:
    """How a recorded window's events still differ from what its latest rating read, for
    its line: "" in count or max(ingested_at); else in their digest (a correction in place;
    only then are the pricebooks read, from ``books()``: the rating's version sets what the
    digest covers). None when they do not. Without a version to digest them with, it stays
    listed."""
    if late.counts_differ:
        return ""
    version = changed_events.version_rated(books(), late.window, late.pricebook_version)
    if version is None:
        return NO_VERSION_TO_DIGEST_WITH
    digest, _ = changed_events.digest_now(conn, late.window, version)
    return DIGEST_DIFFERS if digest != late.events_digest else None


def _attempts_made(runs: int) -> str:
    """Runs beyond the sensor's attempts carry its tags because someone re-executed one."""
    if runs <= missed_hours.MAX_ATTEMPTS:
        return f"{runs} of its {missed_hours.MAX_ATTEMPTS} attempts"
    extra = runs - missed_hours.MAX_ATTEMPTS
    return f"its {missed_hours.MAX_ATTEMPTS} attempts, and {_plural(extra, 're-execution')}"


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def never_rated_states(
    instance: dg.DagsterInstance, windows: list[Window], lookback_start: datetime
) -> dict[Window, str]:
    """What becomes of each hour never rated: a run of it in flight, missed_hours' attempts,
    or nothing automatic (older than the lookback)."""
    running = missed_hours.in_flight(instance, windows)
    made = missed_hours.attempts(instance, windows)
    states = {}
    for w in windows:
        if w in running:
            states[w] = "never rated; a run of it is in flight"
        elif w.start < lookback_start:
            states[w] = (
                "never rated; older than the lookback, so no sensor requests it: materialize it"
            )
        else:
            states[w] = f"never rated (missed_hours made {_attempts_made(made[w])})"
    return states


def evaluate_billed(
    late: list[LateWindow],
    never_rated: list[Window],
    why: dict[Window, str],
    before_first: list[datetime],
    undated: int,
    not_begun: tuple[int, Window | None],
) -> dg.AssetCheckResult:
    """WARN with every window listed (the first WINDOWS_LISTED in a table, each with
    ``why``), the hours before the first window never rated, the events no window holds (no
    occurred_at, or one outside windows.WINDOWED_FROM..WINDOWED_UNTIL), and those dated in
    hours that have not begun, else pass."""
    checked: dict[str, Any] = {
        "late_windows": dg.MetadataValue.int(len(late)),
        "never_rated_hours": dg.MetadataValue.int(len(never_rated)),
        "never_rated_hours_before_first_window": dg.MetadataValue.int(len(before_first)),
        "undated_events": dg.MetadataValue.int(undated),
        "events_in_hours_not_begun": dg.MetadataValue.int(not_begun[0]),
    }
    if why:
        listed = sorted(why.items())[:WINDOWS_LISTED]
        checked["windows"] = table(UNBILLED_COLUMNS, ((w.key, text) for w, text in listed))
    unbilled = len(late) + len(never_rated)
    by_hand = (
        ", and rate by hand those before the first partition (`rating-pipeline rate`)"
        if any(partitions.before_first_partition(w.window) for w in late)
        else ""
    )
    description = (
        "Every hour with events from the first partition on that closed "
        f"{missed_hours.duration_text(missed_hours.MISSED_AFTER)} or more ago is rated (a "
        "later one is the schedule's to rate, then missed_hours'), and no "
        "change was seen to the events of a window older than the lookback after its "
        "rating (no sensor digests windows there: a "
        "changed event count there shows only in events_conserved, executed on its own; a "
        "correction of tokens in place, nowhere)."
        if not unbilled
        else (
            f"Changed after the latest rating and re-rated by no sensor (older than the "
            f"lookback, or not within {changed_events.INTERVAL_VARIABLE}): "
            f"{_plural(len(late), 'window')}; never rated though holding events: "
            f"{_plural(len(never_rated), 'hour')}. Materialize their partitions{by_hand} (in "
            "a closed period, the difference bills as adjustments on the next invoice)."
        )
    )
    unread = unread_events(before_first, undated, not_begun)
    return dg.AssetCheckResult(
        passed=not unbilled and not unread,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=checked,
        description=description + unread,
    )


def unread_events(
    before_first: list[datetime], undated: int, not_begun: tuple[int, Window | None]
) -> str:
    """What no rating reads, each with its way out: hours before the first window, events no
    window holds, events dated in hours that have not begun; "" when there are none."""
    notes = ""
    if before_first:
        first = hourly_windows.start.astimezone(UTC)
        named = ", ".join(Window(h).key for h in before_first[:WINDOWS_LISTED])
        notes += (
            f" {_plural(len(before_first), 'hour')} before the first window ({Window(first).key}) "
            f"hold events no rating read ({named}): no shipped pricebook prices them, so no "
            "partition rates them and every close through them is refused. Rate them with "
            "a version that covers them (`rating-pipeline rate`), or correct them upstream."
        )
    if undated:
        notes += (
            f" {_plural(undated, 'event')} {'has' if undated == 1 else 'have'} no occurred_at, "
            "or one no window holds (before "
            f"{WINDOWED_FROM.date().isoformat()}, from {WINDOWED_UNTIL:%Y-%m-%d %H:%M} UTC, or "
            "infinite): nothing rates them; correct them upstream."
        )
    ahead, first_ahead = not_begun
    if first_ahead is not None:
        notes += (
            f" {ahead} events are dated in hours that have not begun (the first "
            f"{first_ahead.key}): a client's clock ahead? No rating reads them until their "
            "hour, after every close of the hours before it; correct them upstream."
        )
    return notes


OPEN_ADJUSTMENT_COLUMNS = (
    text_column("window"),
    int_column("adjustments", "open rows of rating_adjustment: one per rollup, class and rate"),
    text_column("cost_usd", "their exact cost difference, as text (negative: a credit)"),
    text_column("billed_on", "the invoice month they bill on"),
)


@dg.asset_check(
    asset=rated_usage,
    name=NO_OPEN_ADJUSTMENTS,
    description=(
        "No closed window was corrected since the last close: lists the windows with open "
        "adjustments (billed output + open adjustments = the latest output), their cost and "
        "the invoice month they bill on. The next close stamps them."
    ),
)
def no_open_adjustments(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.snapshot() as conn:
        windows = open_adjustments(conn)
    return evaluate_open_adjustments(windows)


def evaluate_open_adjustments(windows: Sequence[OpenAdjustments]) -> dg.AssetCheckResult:
    """WARN with every window listed (the first WINDOWS_LISTED in a table), else pass."""
    count = sum(w.adjustments for w in windows)
    cost = exact_sum(w.cost_usd for w in windows)
    checked: dict[str, Any] = {
        "windows_with_open_adjustments": dg.MetadataValue.int(len(windows)),
        "open_adjustments": dg.MetadataValue.int(count),
        "open_adjustment_cost_usd": money(cost),
    }
    if windows:
        checked["corrected_windows"] = table(
            OPEN_ADJUSTMENT_COLUMNS,
            (
                (
                    Window(w.window_start.astimezone(UTC)).key,
                    w.adjustments,
                    usd_text(w.cost_usd),
                    f"{w.bill_month:%Y-%m}",
                )
                for w in windows[:WINDOWS_LISTED]
            ),
        )
    months = sorted({f"{w.bill_month:%Y-%m}" for w in windows})
    description = (
        "No window has open adjustments."
        if not windows
        else (
            f"Corrected after their close: {_plural(len(windows), 'closed window')}, with "
            f"{_plural(count, 'open adjustment')} of {usd_text(cost)} USD, billed on the "
            f"invoice of {', '.join(months)}. Their rows stay frozen; the next close stamps them."
        )
    )
    return dg.AssetCheckResult(
        passed=not windows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=checked,
        description=description,
    )


PRICED_OTHERWISE_COLUMNS = (
    text_column("window"),
    text_column("rated_with", "the version, and its file's sha256, of its latest rating"),
    text_column("now_priced_by", "what the current pricebooks choose for it"),
    text_column("period", "open, or closed: rating it again adjusts on the next invoice"),
)


@dg.asset_check(
    asset=rated_usage,
    name=PRICED_BY_CURRENT_PRICEBOOKS,
    description=(
        "Every rated window that read events was last rated with the pricebook version and "
        "file the current pricebooks choose for it: lists the windows a version file edited, "
        "added or removed since their latest rating would price otherwise, billed at the old "
        "prices until they are rated again (in a closed window, the difference then becomes "
        "adjustments on the next invoice)."
    ),
)
def priced_by_current_pricebooks(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    pricebooks: PricebookResource,
) -> dg.AssetCheckResult:
    books = load_or_fail(pricebooks, "no window is checked")
    with warehouse.snapshot() as conn:
        windows = windows_priced_otherwise(conn, books)
    return evaluate_pricebooks(windows)


def _priced_by(version: str, sha256: str) -> str:
    return f"{version} (sha256 {sha256[:12]})"


def evaluate_pricebooks(windows: Sequence[PricedOtherwise]) -> dg.AssetCheckResult:
    """WARN with every window counted (the first WINDOWS_LISTED in a table), else pass."""
    checked: dict[str, Any] = {"windows_priced_otherwise": dg.MetadataValue.int(len(windows))}
    if windows:
        checked["windows"] = table(
            PRICED_OTHERWISE_COLUMNS,
            (
                (
                    w.window.key,
                    _priced_by(w.rated_version, w.rated_sha256),
                    "no version covers it"
                    if w.current is None
                    else _priced_by(w.current.version, w.current.sha256),
                    "closed" if w.closed else "open",
                )
                for w in windows[:WINDOWS_LISTED]
            ),
        )
    return dg.AssetCheckResult(
        passed=not windows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=checked,
        description=repricing_description(windows),
    )


def repricing_description(windows: Sequence[PricedOtherwise]) -> str:
    """What to do about each kind of window the pricebooks would price otherwise."""
    if not windows:
        return "Every rated window was last rated with the pricebooks that price it now."
    closed = sum(w.closed for w in windows)
    uncovered = sum(w.current is None for w in windows)
    said = (
        f"Rated with other pricebooks than today's: {_plural(len(windows), 'window')} "
        f"({len(windows) - closed} open, {closed} closed), billed at the prices of their "
        "latest rating."
    )
    if uncovered < len(windows):
        said += (
            " Rate them again (materialize their partitions): an open window's rows "
            "converge; a closed window's difference becomes adjustments on the next invoice."
        )
    if uncovered:
        said += (
            f" No version covers {_plural(uncovered, 'window')} any more: restore the version "
            "that priced them (no window is rated without one)."
        )
    return said


RATED_USAGE_CHECKS = (
    cost_reconstructs,
    events_conserved,
    no_ambiguous_base,
    all_usage_priced,
    all_windows_billed,
    no_open_adjustments,
    priced_by_current_pricebooks,
)
