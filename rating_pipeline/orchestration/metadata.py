"""What the UI shows on each materialization, built from the engine's records (contract 7).

Money is shown as exact decimal text, never as a float metadata value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg

from rating_pipeline.orchestration.queries import WindowEvents
from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import REASONS, RatedRollup, RatingException
from rating_pipeline.warehouse.engine import WindowRating
from rating_pipeline.windows import Window

COSTLIEST_ROLLUPS = 5


def money(amount: Decimal) -> dg.MetadataValue:
    """An amount of USD as exact text (``Decimal`` normalised, never exponent notation)."""
    return dg.MetadataValue.text(usd_text(amount))


def usd_text(amount: Decimal) -> str:
    return format(amount, "f")


def _instant(value: datetime | None) -> dg.MetadataValue:
    return dg.MetadataValue.text("none" if value is None else value.isoformat())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are escaped so an id cannot break it."""

    def cell(value: object) -> str:
        text = "" if value is None else str(value)
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or " "

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)


def pricebook_metadata(version: PricebookVersion) -> dict[str, Any]:
    """The version that prices a window, and the file it came from."""
    return {
        "pricebook_version": dg.MetadataValue.text(version.version),
        "pricebook_sha256": dg.MetadataValue.text(version.sha256),
        "effective_from": dg.MetadataValue.text(version.effective_from.isoformat()),
        "source_file": dg.MetadataValue.path(version.source_file),
        "models": dg.MetadataValue.int(len(version.models)),
    }


def window_usage_metadata(events: WindowEvents | None) -> dict[str, Any]:
    """What billing_event holds for a window (all zeros for a window without events)."""
    if events is None:
        counts = {"events": 0, "input_tokens": 0, "output_tokens": 0}
        latest = None
    else:
        counts = {
            "events": events.event_count,
            "input_tokens": events.input_tokens,
            "output_tokens": events.output_tokens,
        }
        latest = events.max_ingested_at
    return {
        **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
        "max_ingested_at": _instant(latest),
    }


def exception_totals_by_reason(exceptions: Iterable[RatingException]) -> dict[str, dict[str, int]]:
    """``{reason: {"rollups": n, "events": n}}`` for every reason, zeros included."""
    totals = {reason: {"rollups": 0, "events": 0} for reason in REASONS}
    for exception in exceptions:
        entry = totals.setdefault(exception.reason, {"rollups": 0, "events": 0})
        entry["rollups"] += 1
        entry["events"] += exception.event_count
    return totals


def costliest_rollups_table(rollups: Iterable[RatedRollup], limit: int = COSTLIEST_ROLLUPS) -> str:
    """The ``limit`` costliest rollups as a Markdown table (ties broken by key)."""
    ranked = sorted(rollups, key=lambda r: (-r.cost_usd, r.auth_id, r.model_id))[:limit]
    return markdown_table(
        ("auth_id", "model_id", "events", "input tokens", "output tokens", "rate", "cost USD"),
        (
            (
                r.auth_id,
                r.model_id,
                r.event_count,
                r.input_tokens,
                r.output_tokens,
                r.rate_source
                if r.derivation_base is None
                else f"{r.rate_source} ({r.derivation_base})",
                usd_text(r.cost_usd),
            )
            for r in ranked
        ),
    )


def rating_metadata(rating: WindowRating, costliest: Iterable[RatedRollup] = ()) -> dict[str, Any]:
    """Everything the contract surfaces on a rated_usage materialization of one window,
    with the table of its ``costliest`` rollups (``outputs.costliest_rollups``)."""
    usage, exceptions = rating.usage, rating.exceptions
    return {
        "rows_inserted": dg.MetadataValue.int(usage.inserted),
        "rows_updated": dg.MetadataValue.int(usage.updated),
        "rows_deleted": dg.MetadataValue.int(usage.deleted),
        "rows_unchanged": dg.MetadataValue.int(usage.unchanged),
        "exceptions_inserted": dg.MetadataValue.int(exceptions.inserted),
        "exceptions_updated": dg.MetadataValue.int(exceptions.updated),
        "exceptions_deleted": dg.MetadataValue.int(exceptions.deleted),
        "exceptions_unchanged": dg.MetadataValue.int(exceptions.unchanged),
        "events_read": dg.MetadataValue.int(rating.events_read),
        "events_rated": dg.MetadataValue.int(rating.events_rated),
        "events_excepted": dg.MetadataValue.int(rating.events_excepted),
        "cost_usd": money(rating.total_cost_usd),
        "exceptions_by_reason": dg.MetadataValue.json(
            exception_totals_by_reason(rating.exception_rows)
        ),
        "pricebook_version": dg.MetadataValue.text(rating.pricebook_version),
        "pricebook_sha256": dg.MetadataValue.text(rating.pricebook_sha256),
        "max_ingested_at": _instant(rating.max_ingested_at),
        "costliest_rollups": dg.MetadataValue.md(costliest_rollups_table(costliest)),
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
