"""The reconciled write of one window's output (contract section 7).

The run's rows are staged in temporary tables (engine.stage), then one set-based statement per
table converges the window's live rows to them: rows the run no longer produces are
deleted, changed rows updated, new rows inserted, identical rows left alone (not written,
not locked). Every deleted or updated row is archived with its old values. Everything
here runs inside the caller's transaction, which holds the window's advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

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
