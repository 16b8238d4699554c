"""The reconciled write of one window's output (contract section 7).

The run's rows are COPYed into temporary staging tables, then one set-based statement per
table converges the window's live rows to them: rows the run no longer produces are
deleted, changed rows updated, new rows inserted, identical rows left alone (not written,
not locked). Every deleted or updated row is archived with its old values. Everything
here runs inside the caller's transaction, which holds the window's advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from rating_pipeline.records import RatedRollup, RatingException, WindowRating
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


# Binary COPY: each value travels as its exact binary form (no text escaping at all), in
# the column order of sql/copy_staged_*.sql.
STAGED_RATED_USAGE_TYPES = (
    "timestamptz", "timestamptz", "text", "text", "int8", "numeric", "numeric", "text",
    "text", "numeric", "numeric", "numeric", "numeric", "text", "text",
)  # fmt: skip
STAGED_RATING_EXCEPTION_TYPES = (
    "timestamptz", "timestamptz", "text", "text", "text", "text", "int8", "numeric",
    "numeric", "text",
)  # fmt: skip


def _rollup_row(rollup: RatedRollup) -> tuple[object, ...]:
    return (
        rollup.window_start,
        rollup.window_end,
        rollup.auth_id,
        rollup.model_id,
        rollup.event_count,
        rollup.input_tokens,
        rollup.output_tokens,
        rollup.rate_source,
        rollup.derivation_base,
        rollup.multiplier,
        rollup.input_rate_per_mtok,
        rollup.output_rate_per_mtok,
        rollup.cost_usd,
        rollup.pricebook_version,
        rollup.pricebook_sha256,
    )


def _exception_row(exception: RatingException) -> tuple[object, ...]:
    return (
        exception.window_start,
        exception.window_end,
        exception.auth_id,
        exception.model_id,
        exception.reason,
        exception.detail,
        exception.event_count,
        exception.input_tokens,
        exception.output_tokens,
        exception.pricebook_version,
    )


def stage(conn: psycopg.Connection, rating: WindowRating) -> None:
    """COPY the rating's rows into ``staged_rated_usage``/``staged_rating_exception``.

    Binary COPY through psycopg, no statement per row. The staging tables are temporary,
    keyed like the live tables, analyzed, and dropped at commit (or rollback).
    """
    starts = {r.window_start for r in rating.rollups} | {e.window_start for e in rating.exceptions}
    if starts - {rating.window.start}:
        raise ValueError(f"rows of windows {sorted(starts)} staged for window {rating.window}")
    with conn.cursor() as cursor:
        cursor.execute(load_sql("create_staged_rated_usage"))
        cursor.execute(load_sql("create_staged_rating_exception"))
        with cursor.copy(load_sql("copy_staged_rated_usage")) as copy:
            copy.set_types(STAGED_RATED_USAGE_TYPES)
            for rollup in rating.rollups:
                copy.write_row(_rollup_row(rollup))
        with cursor.copy(load_sql("copy_staged_rating_exception")) as copy:
            copy.set_types(STAGED_RATING_EXCEPTION_TYPES)
            for exception in rating.exceptions:
                copy.write_row(_exception_row(exception))
        cursor.execute(load_sql("analyze_staged"))


def _reconcile(
    conn: psycopg.Connection, statement: str, window: Window, rated_at: datetime, run_id: str
) -> ReconcileCounts:
    row = conn.execute(
        load_sql(statement),
        {"window_start": window.start, "rated_at": rated_at, "run_id": run_id},
    ).fetchone()
    if row is None:
        raise RuntimeError(f"{statement} returned no counts")
    inserted, updated, deleted, staged = (int(value) for value in row)
    return ReconcileCounts(
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        unchanged=staged - inserted - updated,
    )


def reconcile_rated_usage(
    conn: psycopg.Connection, window: Window, rated_at: datetime, run_id: str
) -> ReconcileCounts:
    """Converge ``rated_usage`` for ``window`` to ``staged_rated_usage``."""
    return _reconcile(conn, "reconcile_rated_usage", window, rated_at, run_id)


def reconcile_rating_exception(
    conn: psycopg.Connection, window: Window, rated_at: datetime, run_id: str
) -> ReconcileCounts:
    """Converge ``rating_exception`` for ``window`` to ``staged_rating_exception``."""
    return _reconcile(conn, "reconcile_rating_exception", window, rated_at, run_id)
