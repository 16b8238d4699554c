"""What the UI shows on each materialization, built from the engine's records (contract 7).

Money is shown as exact decimal text, never as a float metadata value. For the UI's charts
a window's cost also appears as ``cost_micro_usd``, an integer of micro-USD rounded
half-even, for plotting only (the exact amount is the text of ``cost_usd``), and a month's
invoice total, whole cents, as ``amount_micro_usd`` beside the text of ``amount``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg

from rating_pipeline.money import micro_usd
from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import REASONS, RatedRollup, RatingException
from rating_pipeline.warehouse.engine import WindowRating
from rating_pipeline.warehouse.invoices import LinesBuilt
from rating_pipeline.warehouse.outputs import ClassCost, TierCost, WindowTables
from rating_pipeline.warehouse.reconcile import Reconciled
from rating_pipeline.windows import Window

COSTLIEST_ROLLUPS = 5

# Dagster's standard table keys (the fields of its TableMetadataSet, which dagster 1.13 does
# not export): the UI shows them as the asset's table and each partition's row count.
TABLE_NAME = "dagster/table_name"
PARTITION_ROW_COUNT = "dagster/partition_row_count"
# The window's cost in whole micro-USD, rounded half-even, for plotting; exact text in cost_usd.
COST_MICRO_USD = "cost_micro_usd"


def money(amount: Decimal) -> dg.MetadataValue:
    """An amount of USD as exact text (``Decimal`` normalised, never exponent notation)."""
    return dg.MetadataValue.text(usd_text(amount))


def usd_text(amount: Decimal) -> str:
    return format(amount, "f")


def _instant(value: datetime | None) -> dg.MetadataValue:
    return dg.MetadataValue.text("none" if value is None else value.isoformat())


Cell = str | int | None


def text_column(name: str, description: str | None = None) -> dg.TableColumn:
    """A string column: ids, keys, and money as exact decimal text."""
    return dg.TableColumn(name=name, type="string", description=description)


def int_column(name: str, description: str | None = None) -> dg.TableColumn:
    """An integer column: counts and token sums."""
    return dg.TableColumn(name=name, type="int", description=description)


def table(
    columns: Sequence[dg.TableColumn], rows: Iterable[Sequence[Cell]]
) -> dg.TableMetadataValue:
    """A table the UI renders itself: one record per row, its cells keyed by the columns'
    names in order (ValueError if a row has another number of cells). Cells are text,
    integers or None, never floats: money goes in as ``usd_text``."""
    names = [column.name for column in columns]
    records = [dg.TableRecord(dict(zip(names, row, strict=True))) for row in rows]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=list(columns)))


PRICEBOOK_ERROR_COLUMNS = (
    text_column("file"),
    int_column("line"),
    text_column("model"),
    text_column("message"),
)


def pricebook_metadata(version: PricebookVersion) -> dict[str, Any]:
    """The version that prices a window, and the file it came from."""
    return {
        "pricebook_version": dg.MetadataValue.text(version.version),
        "pricebook_sha256": dg.MetadataValue.text(version.sha256),
        "effective_from": dg.MetadataValue.text(version.effective_from.isoformat()),
        "source_file": dg.MetadataValue.path(version.source_file),
        "models": dg.MetadataValue.int(len(version.models)),
    }


def window_usage_metadata(event_count: int) -> dict[str, Any]:
    """How many events billing_event holds for a window."""
    return {"events": dg.MetadataValue.int(event_count)}


def exception_totals_by_reason(exceptions: Iterable[RatingException]) -> dict[str, dict[str, int]]:
    """``{reason: {"rollups": n, "events": n}}`` for every reason, zeros included."""
    totals = {reason: {"rollups": 0, "events": 0} for reason in REASONS}
    for exception in exceptions:
        entry = totals.setdefault(exception.reason, {"rollups": 0, "events": 0})
        entry["rollups"] += 1
        entry["events"] += exception.event_count
    return totals


COSTLIEST_ROLLUP_COLUMNS = (
    text_column("auth_id"),
    text_column("model_id"),
    text_column("service_tier"),
    text_column("context_tier"),
    int_column("events"),
    int_column("input_tokens"),
    int_column("output_tokens"),
    text_column("rate", "how the rate was found: own, declared or event (with its base)"),
    text_column("cost_usd", "exact, as text"),
)


def costliest_rollups_table(rollups: Iterable[RatedRollup]) -> dg.TableMetadataValue:
    """``rollups`` as a table, in the order given (``outputs.costliest_rollups`` ranks them),
    both tiers of each in it."""
    return table(
        COSTLIEST_ROLLUP_COLUMNS,
        (
            (
                r.auth_id,
                r.model_id,
                r.service_tier,
                r.context_tier,
                r.event_count,
                r.input_tokens,
                r.output_tokens,
                r.rate_source
                if r.derivation_base is None
                else f"{r.rate_source} ({r.derivation_base})",
                usd_text(r.cost_usd),
            )
            for r in rollups
        ),
    )


TOKEN_CLASS_COLUMNS = (
    text_column("token_class"),
    int_column("tokens", "billed tokens of the class"),
    text_column(
        "cost_usd", "exact, as text: the class's tokens x its frozen rates / 1,000,000, summed"
    ),
)
TIER_COLUMNS = (
    text_column("service_tier"),
    text_column("context_tier", "long: the prompt was above the model's threshold"),
    int_column("rollups"),
    int_column("events"),
    int_column("tokens", "billed tokens of every class"),
    text_column("cost_usd", "exact, as text"),
)


def cost_by_token_class_table(classes: Iterable[ClassCost]) -> dg.TableMetadataValue:
    """Billed tokens and exact cost per token class (classes with tokens only)."""
    return table(
        TOKEN_CLASS_COLUMNS,
        ((c.token_class, c.tokens, usd_text(c.cost_usd)) for c in classes),
    )


def cost_by_tier_table(tiers: Iterable[TierCost]) -> dg.TableMetadataValue:
    """Rollups, events, tokens and exact cost per (service tier, context tier)."""
    return table(
        TIER_COLUMNS,
        (
            (t.service_tier, t.context_tier, t.rollups, t.events, t.tokens, usd_text(t.cost_usd))
            for t in tiers
        ),
    )


def rating_metadata(rating: WindowRating, tables: WindowTables | None = None) -> dict[str, Any]:
    """Everything the contract surfaces on a rated_usage materialization of one window,
    with the tables of its stored rows (``outputs.window_tables``)."""
    usage, exceptions = rating.usage, rating.exceptions
    tables = tables or WindowTables()
    return {
        "rows_inserted": dg.MetadataValue.int(usage.inserted),
        "rows_updated": dg.MetadataValue.int(usage.updated),
        "rows_deleted": dg.MetadataValue.int(usage.deleted),
        "rows_unchanged": dg.MetadataValue.int(rating.rows_unchanged),
        "exceptions_inserted": dg.MetadataValue.int(exceptions.inserted),
        "exceptions_updated": dg.MetadataValue.int(exceptions.updated),
        "exceptions_deleted": dg.MetadataValue.int(exceptions.deleted),
        "exceptions_unchanged": dg.MetadataValue.int(exceptions.unchanged),
        **adjustment_metadata(rating),
        "events_read": dg.MetadataValue.int(rating.events_read),
        "events_rated": dg.MetadataValue.int(rating.events_rated),
        "events_excepted": dg.MetadataValue.int(rating.events_excepted),
        "rollups": dg.MetadataValue.int(rating.rollup_count),
        "cost_usd": money(rating.total_cost_usd),
        COST_MICRO_USD: dg.MetadataValue.int(micro_usd(rating.total_cost_usd)),
        "exceptions_by_reason": dg.MetadataValue.json(
            exception_totals_by_reason(rating.exception_rows)
        ),
        "pricebook_version": dg.MetadataValue.text(rating.pricebook_version),
        "pricebook_sha256": dg.MetadataValue.text(rating.pricebook_sha256),
        "max_ingested_at": _instant(rating.max_ingested_at),
        "costliest_rollups": costliest_rollups_table(tables.costliest),
        "cost_by_token_class": cost_by_token_class_table(tables.by_token_class),
        "cost_by_tier": cost_by_tier_table(tables.by_tier),
        "adjustments_cost_usd": money(tables.adjustments_cost_usd),
        PARTITION_ROW_COUNT: dg.MetadataValue.int(rating.rated_usage_rows),
    }


def logged_rating_metadata(logged: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    """The metadata of a window whose rating committed though the run lost the answer (a
    lost connection, a run terminated at its COMMIT): the figures its rating_log row holds
    (``queries.logged_rating``), or none if unread."""
    if logged is None:
        said = "its rating committed as the run stopped; rating_log holds its figures"
        return {"committed": dg.MetadataValue.text(f"{said} (run {run_id})")}
    cost = logged["total_cost_usd"]
    counts = {name: value for name, value in logged.items() if isinstance(value, int)}
    return {
        "committed": dg.MetadataValue.text(
            "its rating committed as the run stopped; these figures are its rating_log "
            f"row's (run {run_id})"
        ),
        **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
        "cost_usd": money(cost),
        COST_MICRO_USD: dg.MetadataValue.int(micro_usd(cost)),
        "pricebook_version": dg.MetadataValue.text(logged["pricebook_version"]),
        "pricebook_sha256": dg.MetadataValue.text(logged["pricebook_sha256"]),
        "max_ingested_at": _instant(logged["max_ingested_at"]),
    }


def adjustment_metadata(rating: WindowRating) -> dict[str, Any]:
    """Whether the window is closed, and what the rating did to its open adjustments (all
    zeros in an open window, which has none): contract 10, "Seen"."""
    adjustments = rating.adjustments or Reconciled(0, 0, 0, 0, 0, {})
    return {
        "window_closed": dg.MetadataValue.bool(rating.closed),
        "adjustments_inserted": dg.MetadataValue.int(adjustments.inserted),
        "adjustments_updated": dg.MetadataValue.int(adjustments.updated),
        "adjustments_deleted": dg.MetadataValue.int(adjustments.deleted),
        "adjustments_unchanged": dg.MetadataValue.int(adjustments.unchanged),
        "open_adjustments": dg.MetadataValue.int(adjustments.rows),
        "open_adjustment_cost_usd": money(adjustments.cost_usd),
    }


ACCOUNT_COLUMNS = (
    text_column("account_id"),
    int_column("lines"),
    text_column("amount_exact", "the sum of the lines' exact amounts, as text"),
    text_column("amount", "the invoice total: the sum of the lines rounded half-even to cents"),
    text_column("residual", "amount - amount_exact: within 0.005 USD per line"),
)


def invoice_metadata(built: LinesBuilt) -> dict[str, Any]:
    """What building one month's invoice lines did, its totals, and each account's invoice."""
    accounts = built.accounts
    return {
        "lines_inserted": dg.MetadataValue.int(built.inserted),
        "lines_updated": dg.MetadataValue.int(built.updated),
        "lines_deleted": dg.MetadataValue.int(built.deleted),
        "lines_unchanged": dg.MetadataValue.int(built.unchanged),
        "lines": dg.MetadataValue.int(built.lines),
        "accounts": dg.MetadataValue.int(len(accounts)),
        "amount_exact": money(built.amount_exact),
        "amount": money(built.amount),
        "amount_micro_usd": dg.MetadataValue.int(micro_usd(built.amount)),
        "residual": money(built.residual),
        "frozen": dg.MetadataValue.bool(built.frozen),
        "invoices_differing_from_close": dg.MetadataValue.int(len(built.differing)),
        "by_account": table(
            ACCOUNT_COLUMNS,
            (
                (
                    a.account_id,
                    a.line_count,
                    usd_text(a.amount_exact),
                    usd_text(a.amount),
                    usd_text(a.residual),
                )
                for a in accounts
            ),
        ),
        PARTITION_ROW_COUNT: dg.MetadataValue.int(built.lines),
    }


def windows_label(windows: Sequence[Window]) -> str:
    """``2026-06-15-10:00`` or ``2026-06-15-00:00...2026-06-15-23:00 (24 windows)``."""
    if len(windows) == 1:
        return windows[0].key
    return f"{windows[0].key}...{windows[-1].key} ({len(windows)} windows)"


def version_spans(versions: Mapping[Window, PricebookVersion]) -> list[str]:
    """One line per run of consecutive windows priced by the same version."""
    lines: list[str] = []
    run: list[Window] = []
    current: PricebookVersion | None = None
    for window, version in sorted(versions.items()):
        if current is not None and version is not current:
            lines.append(_span_line(run, current))
            run = []
        run.append(window)
        current = version
    if current is not None:
        lines.append(_span_line(run, current))
    return lines


def _span_line(windows: Sequence[Window], version: PricebookVersion) -> str:
    return (
        f"{windows_label(windows)}: pricebook {version.version} "
        f"({version.source_file}, sha256 {version.sha256[:12]})"
    )
