"""The reconciled write of one window's output (contract section 7).

One set-based statement per table prices the window's rollups (``window_rollup`` joined to
the rules' answers in ``window_resolution``), compares them with the window's live rows and
applies only the differences: rows the run no longer produces are deleted, changed rows
updated, new rows inserted, identical rows left alone (not written, not locked). Every
deleted or updated row is archived with its old values. Nothing but the differences is
materialized, so an identical re-run costs one comparison. Everything here runs inside
the caller's transaction, which holds the window's advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import INVALID_EVENT, PROBLEM_BITS
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window


@dataclass(frozen=True)
class ReconcileCounts:
    """What one reconcile did to one table's rows of one window."""

    inserted: int
    updated: int
    deleted: int
    unchanged: int

    @property
    def written(self) -> int:
        """Rows inserted, updated or deleted: zero for an identical re-run."""
        return self.inserted + self.updated + self.deleted

    def __str__(self) -> str:
        return (
            f"+{self.inserted} inserted, ~{self.updated} updated, "
            f"-{self.deleted} deleted, ={self.unchanged} unchanged"
        )


@dataclass(frozen=True)
class OutputTotals:
    """What one table's output for one window accounts for (the conservation check)."""

    rows: int
    event_count: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal = Decimal(0)

    @property
    def amounts(self) -> tuple[int, int, int]:
        """(events, input tokens, output tokens)."""
        return self.event_count, self.input_tokens, self.output_tokens


@dataclass(frozen=True)
class Reconciled:
    """The counts of one reconcile and the totals of the output it converged to."""

    counts: ReconcileCounts
    totals: OutputTotals


def _reconcile(conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> Reconciled:
    row = conn.execute(load_sql(statement), params).fetchone()
    if row is None:
        raise RuntimeError(f"{statement} returned no counts")
    inserted, updated, deleted, rows, events, input_tokens, output_tokens = (
        int(value) for value in row[:7]
    )
    return Reconciled(
        counts=ReconcileCounts(
            inserted=inserted,
            updated=updated,
            deleted=deleted,
            unchanged=rows - inserted - updated,
        ),
        # Sums of bigint and numeric(30, 0) are whole: int() is exact.
        totals=OutputTotals(rows, events, input_tokens, output_tokens, *row[7:8]),
    )


def output_values(window: Window, version: PricebookVersion) -> dict[str, Any]:
    """Every value the reconcile statements bind that lands in an output row.

    With ``window_usage`` and ``window_resolution`` these determine the output entirely;
    ``fingerprint.input_context`` digests them. (rated_at and run_id, bound too, record
    the change, not a value, and are never compared.)
    """
    return {
        "window_start": window.start,
        "window_end": window.end,
        "pricebook_version": version.version,
        "pricebook_sha256": version.sha256,
        **{f"problem_{bit}": name for bit, name in PROBLEM_BITS.items()},
        "invalid_event": INVALID_EVENT,
    }


def _bound(
    window: Window, version: PricebookVersion, rated_at: datetime, run_id: str
) -> dict[str, Any]:
    return {**output_values(window, version), "rated_at": rated_at, "run_id": run_id}


def reconcile_rated_usage(
    conn: psycopg.Connection,
    window: Window,
    version: PricebookVersion,
    rated_at: datetime,
    run_id: str,
) -> Reconciled:
    """Converge ``rated_usage`` for ``window`` to the priced rollups; totals carry the cost."""
    return _reconcile(conn, "reconcile_rated_usage", _bound(window, version, rated_at, run_id))


def reconcile_rating_exception(
    conn: psycopg.Connection,
    window: Window,
    version: PricebookVersion,
    rated_at: datetime,
    run_id: str,
) -> Reconciled:
    """Converge ``rating_exception`` for ``window`` to the excluded and invalid usage."""
    params = _bound(window, version, rated_at, run_id)
    return _reconcile(conn, "reconcile_rating_exception", params)
