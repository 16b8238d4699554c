"""The asset graph (contract sections 1 and 7): ``pricebook`` and ``window_usage`` feed
``rated_usage``, every asset hourly-partitioned by rating window; ``billing_event``, the
upstream-owned input table, is an external asset both read.

Extraction, pricing and the reconciled write of a window are ONE transaction in the engine
(``rate_window``), so they are one asset, ``rated_usage``. The two upstream assets are
cheap and pass no data: ``pricebook`` validates every version and resolves the version of
each window before anything is rated; ``window_usage`` summarises each window's events.
Every asset reads its run's partition time window, so one partition and a range (a
single-run backfill) take the same path; each window keeps its own transaction.
"""

import warnings
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg
import psycopg

from rating_pipeline.errors import RatingPipelineError, first_named, shown
from rating_pipeline.orchestration import metadata, queries
from rating_pipeline.orchestration.partitions import hourly_windows, windows_in
from rating_pipeline.orchestration.resources import PricebookResource, WarehouseResource
from rating_pipeline.pricebook.loader import PricebookLoadError
from rating_pipeline.pricebook.model import NoPricebookForWindow, Pricebooks, PricebookVersion
from rating_pipeline.warehouse.database import (
    database_clock,
    require_readable_billing_event,
    require_schema,
)
from rating_pipeline.warehouse.engine import (
    COMMITTED_ALL_THE_SAME,
    ROLLED_BACK,
    rate_window,
    rating_log_lines,
    what_became_of,
)
from rating_pipeline.warehouse.outputs import window_tables
from rating_pipeline.windows import HOUR, Window

# Marked beta in Dagster 1.13, each a warning that nobody can act on: BackfillPolicy on every
# load, and `include_sources` on every `dg launch --assets '*'` (or 'group:...') as Dagster
# parses the selection after loading the code location.
for beta_parameter in ("backfill_policy", "include_sources"):
    warnings.filterwarnings(
        "ignore", message=f"Parameter `{beta_parameter}`", category=dg.BetaWarning
    )

GROUP = "rating"
# A backfill of any length is one run: Dagster's fixed cost per run is paid once,
# and `dg launch --partition-range` needs this policy.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# How many ambiguous rollups a failed range's message names.
ROLLUPS_NAMED = 10


# rated_usage is late when no window has been rated for an hour plus LATE_AFTER: the hourly
# schedule rates one window an hour, so two ratings are an hour apart unless one is late
# (whatever RATING_SCHEDULE_GRACE_MINUTES is). Dagster 1.13 judges freshness on the asset's
# latest materialization of any partition, not per partition (docs/operations.md).
LATE_AFTER = timedelta(minutes=30)
RATED_USAGE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=HOUR + LATE_AFTER)

# The upstream table, owned by the serving layer: the pipeline reads it and never writes it.
# An external asset (Dagster neither materializes nor observes it) so that the lineage
# starts where the money does.
billing_event = dg.AssetSpec(
    "billing_event",
    group_name=GROUP,
    kinds={"postgres"},
    metadata={metadata.TABLE_NAME: "billing_event"},
    description=(
        "Upstream-owned: one row per served request, written by the serving layer (contract "
        "section 3). The pipeline only reads it (by occurred_at window; ingested_at for late "
        "events) and never materializes, observes or alters it."
    ),
)


def run_windows(context: dg.AssetExecutionContext) -> list[Window]:
    """The rating windows of the run: its partition, or every partition of its range."""
    return windows_in(context.partition_time_window)


def require_closed(conn: psycopg.Connection, windows: Sequence[Window]) -> None:
    """A Failure, before anything is read, if a window has not closed by the database's
    clock (the one that stamps ingested_at): a range's end can reach the hour still open,
    which a single key cannot (it is no partition yet), and its events are still arriving."""
    now = database_clock(conn)
    conn.rollback()
    still_open = [window for window in windows if window.end > now]
    if still_open:
        raise dg.Failure(
            description=(
                f"window {still_open[0].key} has not closed yet (it ends at "
                f"{still_open[0].end.isoformat()}, by the database's clock): nothing is "
                "rated; launch the run again once it has (a run the schedule made is not "
                "made again: missed_hours rates the hour 1 h 30 after it closes)"
            ),
            allow_retries=False,
        )


def load_or_fail(resource: PricebookResource, outcome: str) -> Pricebooks:
    """The validated pricebooks, or a Failure that lists every pricebook error (file, line,
    model); ``outcome`` says what the step then does not do."""
    try:
        return resource.load()
    except PricebookLoadError as exc:
        raise dg.Failure(
            description=(
                f"the pricebooks in {resource.directory} do not load "
                f"({len(exc.errors)} error(s)); {outcome}:\n" + "\n".join(exc.report_lines())
            ),
            metadata={
                "errors": metadata.table(
                    metadata.PRICEBOOK_ERROR_COLUMNS,
                    ((e.file, e.line, e.model, e.message) for e in exc.errors),
                )
            },
            allow_retries=False,
        ) from exc


def resolve_versions(
    resource: PricebookResource, windows: Sequence[Window]
) -> tuple[Pricebooks, dict[Window, PricebookVersion]]:
    """The validated pricebooks and the version of each window, or a Failure that lists
    every pricebook error (file, line, model) and rates nothing."""
    pricebooks = load_or_fail(resource, "nothing is rated")
    try:
        versions = {window: pricebooks.version_for(window) for window in windows}
    except NoPricebookForWindow as exc:
        raise dg.Failure(description=f"{exc}; nothing is rated", allow_retries=False) from exc
    return pricebooks, versions


def failed_window(
    windows: Sequence[Window],
    done: int,
    error: Exception,
    ambiguous: Sequence[str] = (),
    *,
    committed: bool = False,
    became: str = ROLLED_BACK,
) -> str:
    """Which window failed, and what the windows committed hold: the rollups they excluded
    as ambiguous_base too, which no check of the failed run names. ``committed``: the
    window's rating committed, and reading its UI tables after it failed; ``became``: what
    ``engine.what_became_of`` found of a rating that failed."""
    failure = f"{type(error).__name__}: {error}"
    rated = done + 1 if committed or became == COMMITTED_ALL_THE_SAME else done
    if committed:
        where = (
            f"reading the UI tables of window {windows[done].key} failed: {failure}. Its "
            f"rating was committed: the {rated} window(s) through it"
        )
    elif rated > done:
        where = (
            f"rating window {windows[done].key} failed: {failure}. It {became}; the {rated} "
            "window(s) through it"
        )
    elif done == 0:
        nothing = (
            "nothing of this run was rated"
            if became == ROLLED_BACK
            else "no window of this run before it was rated"
        )
        return f"rating window {windows[0].key} failed: {failure}. It {became}; {nothing}."
    else:
        where = (
            f"rating window {windows[done].key} failed: {failure}. It {became}; the "
            f"{done} window(s) before it"
        )
    held = ""
    if ambiguous:
        held = (
            f" They hold {len(ambiguous)} rollup(s) excluded as ambiguous_base, not billed "
            "(window auth_id model_id service_tier context_tier: "
            f"{first_named(ambiguous, ROLLUPS_NAMED, '; ')}); the "
            "no_ambiguous_base check of a run over them names them again."
        )
    return (
        f"{where} ({metadata.windows_label(windows[:rated])}) are rated and committed (see "
        f"rating_log).{held} Re-running the same range is safe: already-rated windows "
        "converge without writing."
    )


@dg.asset(
    partitions_def=hourly_windows,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"yaml"},
    description=(
        "The pricebook version of each window. Fails, listing every error, when any version "
        "file breaks a rule of contract section 4 or no version covers a window."
    ),
)
def pricebook(
    context: dg.AssetExecutionContext, pricebooks: PricebookResource
) -> dg.MaterializeResult:
    _, versions = resolve_versions(pricebooks, run_windows(context))
    for line in metadata.version_spans(versions):
        context.log.info(line)
    for window, version in versions.items():
        context.add_asset_metadata(metadata.pricebook_metadata(version), partition_key=window.key)
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=hourly_windows,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"postgres"},
    deps=[billing_event],
    description=(
        "How many events billing_event holds for each window: what the rater will read. "
        "One index count per window; the tokens, per class and tier, are rated_usage's."
    ),
)
def window_usage(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    windows = run_windows(context)
    with warehouse.connect() as conn:
        require_schema(conn)
        require_closed(conn, windows)
        counts = queries.window_event_counts(conn, queries.Span.of(windows))
    for window in windows:
        context.add_asset_metadata(
            metadata.window_usage_metadata(counts.get(window, 0)), partition_key=window.key
        )
    return dg.MaterializeResult()


def logged_metadata(
    warehouse: WarehouseResource, run: dg.DagsterRun, window: Window
) -> dict[str, Any]:
    """The materialization metadata of a window whose rating committed though the run lost
    the answer, from its rating_log row; without it if the warehouse cannot be read now."""
    try:
        with warehouse.connect() as conn:
            logged = queries.logged_rating(conn, run.run_id, window)
    except (psycopg.Error, RatingPipelineError):
        logged = None
    return metadata.logged_rating_metadata(logged, run.run_id)


@dg.asset(
    partitions_def=hourly_windows,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"postgres"},
    deps=[billing_event, pricebook, window_usage],
    metadata={metadata.TABLE_NAME: "rated_usage"},
    freshness_policy=RATED_USAGE_FRESHNESS,
    description=(
        "Priced hourly rollups, one row per (window, auth_id, model_id, service tier, context "
        "tier), and the rating_exception rows of what did not bill. Each window is extracted, "
        "priced and reconciled in one transaction: re-materializing converges to the latest "
        "run's output. Per window: cost_usd is the exact total as text; cost_micro_usd is that "
        "total in micro-USD rounded half-even, for plotting only; cost_by_token_class and "
        "cost_by_tier split the stored rows' exact cost by token class and by tier. In a "
        "closed window the rows are frozen and cost_usd is theirs plus adjustments_cost_usd, "
        "every adjustment of the window, stamped and open."
    ),
)
def rated_usage(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    pricebooks: PricebookResource,
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
    windows = run_windows(context)
    resolved, _ = resolve_versions(pricebooks, windows)
    committed: dict[str, dict[str, Any]] = {}
    ambiguous: list[str] = []
    try:
        with warehouse.connect() as conn:
            require_schema(conn)
            require_readable_billing_event(conn)
            require_closed(conn, windows)
            for done, window in enumerate(windows):
                try:
                    rating = rate_window(conn, window, resolved, context.run.run_id)
                except BaseException as exc:  # a terminated run too: its COMMIT may be through
                    became = what_became_of(warehouse.connect, context.run.run_id, window)
                    if became == COMMITTED_ALL_THE_SAME:
                        committed[window.key] = logged_metadata(warehouse, context.run, window)
                    if not isinstance(exc, Exception):
                        raise
                    failure = failed_window(windows, done, exc, ambiguous, became=became)
                    raise dg.Failure(description=failure) from exc
                committed[window.key] = metadata.rating_metadata(rating)
                ambiguous += [
                    f"{window.key} {shown(e.auth_id)} {shown(e.model_id)} {e.service_tier} "
                    f"{e.context_tier}"
                    for e in rating.ambiguous
                ]
                # One entry: Dagster stores each as an event, at a connection apiece.
                context.log.info("\n".join(rating_log_lines(rating)))
                # After the commit: the UI's tables are no part of the rating's transaction.
                try:
                    tables = window_tables(conn, window, metadata.COSTLIEST_ROLLUPS)
                    conn.commit()
                except Exception as exc:
                    failure = failed_window(windows, done, exc, ambiguous, committed=True)
                    raise dg.Failure(description=failure) from exc
                committed[window.key] = metadata.rating_metadata(rating, tables)
    except GeneratorExit:
        raise
    except BaseException:
        # Whatever stopped the run (a failed window, a terminated run), the windows before
        # it stay committed: the UI must show their new rows, not an earlier run's.
        for key, window_metadata in committed.items():
            yield dg.AssetMaterialization(
                context.asset_key, partition=key, metadata=window_metadata
            )
        raise
    for key, window_metadata in committed.items():
        context.add_asset_metadata(window_metadata, partition_key=key)
    yield dg.MaterializeResult()
