"""The invoice in Dagster (contract 11): ``invoice_lines``, one partition per UTC calendar
month, downstream of the hourly ``rated_usage``, and its blocking check.

Materializing a month calls ``invoices.build_invoice``: it converges the month's lines, or,
for a wholly closed month, writes nothing and reports the lines its close froze. The check
``closed_months_match_their_close`` holds every wholly closed month's lines to what its
close recorded in ``rating_period_close_total``.
"""

import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import dagster as dg
import psycopg

from rating_pipeline.orchestration import metadata, queries
from rating_pipeline.orchestration.assets import BACKFILL_POLICY, rated_usage
from rating_pipeline.orchestration.metadata import int_column, table, text_column, usd_text
from rating_pipeline.orchestration.partitions import (
    invoice_months,
    month_key,
    months_between,
    months_in,
)
from rating_pipeline.orchestration.resources import WarehouseResource
from rating_pipeline.warehouse.close_mark import close_mark, next_month, wholly_closed
from rating_pipeline.warehouse.database import require_schema
from rating_pipeline.warehouse.invoices import (
    Mismatch,
    MonthTotal,
    build_invoice,
    mismatches,
    month_totals,
    recorded_totals,
)

GROUP = "invoicing"
CLOSED_MONTHS_MATCH_THEIR_CLOSE = "closed_months_match_their_close"
MISMATCHES_LISTED = 20

# A month maps to every hour it holds, so the UI shows which windows feed which invoice. The
# month in progress holds hours that are no partitions of rated_usage yet: allowed, or a
# backfill that targets that month fails ("depends on non-existent partitions"). The
# parameter is marked beta in Dagster 1.13: a warning on every load that nobody can act on.
warnings.filterwarnings(
    "ignore", message="Parameter `allow_nonexistent_upstream_partitions`", category=dg.BetaWarning
)
HOURS_OF_THE_MONTH = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)


@dg.asset(
    partitions_def=invoice_months,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"postgres"},
    deps=[dg.AssetDep(rated_usage, partition_mapping=HOURS_OF_THE_MONTH)],
    metadata={metadata.TABLE_NAME: "invoice_line"},
    description=(
        "One month's invoice lines per account: its windows' rated_usage and the adjustments "
        "billed on it, one line per (kind, model, tiers, token class, rate) with amount_exact "
        "exact and amount rounded half-even to cents. Re-materializing converges the month; "
        "a wholly closed month is frozen as its close built it, and nothing is written."
    ),
)
def invoice_lines(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
    months = months_in(context.partition_time_window)
    committed: dict[str, dict[str, Any]] = {}
    try:
        with warehouse.connect() as conn:
            require_schema(conn)
            for done, month in enumerate(months):
                try:
                    built = build_invoice(conn, month, context.run.run_id)
                except Exception as exc:
                    raise dg.Failure(description=failed_month(months, done, exc)) from exc
                (context.log.error if built.differing else context.log.info)(str(built))
                committed[month_key(month)] = metadata.invoice_metadata(built)
    except GeneratorExit:
        raise
    except BaseException:
        # As rated_usage does: the months built before the failure stay committed, and the
        # UI must show their new lines, not an earlier run's.
        for key, month_metadata in committed.items():
            yield dg.AssetMaterialization(context.asset_key, partition=key, metadata=month_metadata)
        raise
    for key, month_metadata in committed.items():
        context.add_asset_metadata(month_metadata, partition_key=key)
    yield dg.MaterializeResult()


def failed_month(months: Sequence[datetime], done: int, error: Exception) -> str:
    """Which month's build failed, and that the months before it are built and committed."""
    where = f"building the invoice lines of {month_key(months[done])} failed: "
    where += f"{type(error).__name__}: {error}. It was rolled back"
    if done == 0:
        return f"{where}; nothing of this run was built."
    before = ", ".join(month_key(month) for month in months[:done])
    return (
        f"{where}; the months before it ({before}) are built and committed. Re-running the "
        "same range is safe: a built month converges without writing."
    )


def closed_months(
    context: dg.AssetCheckExecutionContext, conn: psycopg.Connection
) -> list[datetime]:
    """The wholly closed months to audit: the run's, or every one with lines or a record."""
    mark = close_mark(conn)
    if context.has_partition_key or context.has_partition_key_range:
        months = months_in(context.partition_time_window)
    else:
        first = queries.first_invoiced_month(conn)
        months = [] if first is None or mark is None else months_between(first, mark)
    return [month for month in months if wholly_closed(month, mark)]


MISMATCH_COLUMNS = (
    text_column("month"),
    text_column("account_id"),
    int_column("recorded_lines", "as its close recorded"),
    int_column("lines", "now"),
    text_column("recorded_amount", "the invoice total its close recorded"),
    text_column("amount", "the invoice total now"),
    text_column("recorded_amount_exact", "the exact sum its close recorded"),
    text_column("amount_exact", "the exact sum now"),
    text_column("why"),
)


@dg.asset_check(
    asset=invoice_lines,
    name=CLOSED_MONTHS_MATCH_THEIR_CLOSE,
    blocking=True,
    description=(
        "Every wholly closed month's lines, per account, are what its close recorded in "
        "rating_period_close_total: line count, amount_exact, amount and the sha256 of the "
        "lines; no account has lines its close recorded nothing for."
    ),
)
def closed_months_match_their_close(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.snapshot() as conn:
        months = closed_months(context, conn)
        now = {month: month_totals(conn, month) for month in months}
        recorded = recorded_totals(conn, months[0], next_month(months[-1])) if months else []
    return evaluate_closed_months(months, now, mismatches(months, now, recorded))


def evaluate_closed_months(
    months: Sequence[datetime],
    now: Mapping[datetime, Sequence[MonthTotal]],
    found: Sequence[Mismatch],
) -> dg.AssetCheckResult:
    checked: dict[str, Any] = {
        "months_audited": dg.MetadataValue.int(len(months)),
        "invoices_audited": dg.MetadataValue.int(sum(len(t) for t in now.values())),
        "invoices_not_matching": dg.MetadataValue.int(len(found)),
    }
    if months:
        first, last = month_key(months[0]), month_key(months[-1])
        checked["months"] = dg.MetadataValue.text(first if first == last else f"{first}...{last}")
    if found:
        checked["mismatches"] = table(
            MISMATCH_COLUMNS,
            (
                (
                    month_key(m.month),
                    m.account_id,
                    m.recorded.line_count if m.recorded else None,
                    m.now.line_count if m.now else None,
                    usd_text(m.recorded.amount) if m.recorded else None,
                    usd_text(m.now.amount) if m.now else None,
                    usd_text(m.recorded.amount_exact) if m.recorded else None,
                    usd_text(m.now.amount_exact) if m.now else None,
                    m.why,
                )
                for m in found[:MISMATCHES_LISTED]
            ),
        )
    if not months:
        description = "No month of the run is wholly closed: nothing is frozen yet."
    elif not found:
        description = (
            f"The lines of the {len(months)} wholly closed month(s) are what their closes recorded."
        )
    else:
        description = (
            f"{len(found)} invoice(s) of wholly closed months differ from what their close "
            "recorded. Neither a build nor a close rewrites a closed month, so its lines were "
            "written outside them: what was invoiced is what the close recorded (and "
            "exported); find the write before anything is billed from these lines."
        )
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=checked,
        description=description,
    )


INVOICE_CHECKS = (closed_months_match_their_close,)
