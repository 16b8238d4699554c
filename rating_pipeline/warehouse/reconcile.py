"""The reconciled write of one window's output (contract section 7).

One statement per table compares this rating's output with the window's live rows and
applies only the differences, archiving what it replaces: the priced rollups
(``window_output``, from ``price_window.sql``) with ``rated_usage`` in an open window, or
with the open adjustments in a closed one; the exceptions (from ``window_sums`` and
``window_resolution``) with ``rating_exception`` in either. Identical rows are neither
written nor locked. Everything runs in the caller's transaction, under the window's
advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from rating_pipeline.pricebook.model import TOKEN_CLASSES
from rating_pipeline.warehouse.sqlfiles import load_sql


@dataclass(frozen=True)
class Reconciled:
    """What one reconcile did to one table's rows of one window, and the totals of the
    output it converged to (``rows`` of it, their events, tokens and cost)."""

    inserted: int
    updated: int
    deleted: int
    rows: int
    event_count: int
    tokens: dict[str, int]
    cost_usd: Decimal = Decimal(0)

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated

    @property
    def written(self) -> int:
        """Rows inserted, updated or deleted: zero for an identical re-run."""
        return self.inserted + self.updated + self.deleted

    @property
    def amounts(self) -> tuple[int, ...]:
        """(events, then every token class's sum) the output accounts for."""
        return self.event_count, *self.tokens.values()

    def __str__(self) -> str:
        return (
            f"+{self.inserted} inserted, ~{self.updated} updated, "
            f"-{self.deleted} deleted, ={self.unchanged} unchanged"
        )


def reconcile(conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> Reconciled:
    """Run one reconcile statement with ``params`` and return what it did (or one totals
    statement of the same shape, whose counts are zero)."""
    row = conn.execute(load_sql(statement), params).fetchone()
    if row is None:
        raise RuntimeError(f"{statement} returned no counts")
    # Counts and sums of bigint and numeric(30, 0) are whole: int() is exact.
    inserted, updated, deleted, rows, events, *sums = row
    tokens = {c: int(total) for c, total in zip(TOKEN_CLASSES, sums, strict=False)}
    cost = sums[len(TOKEN_CLASSES)] if len(sums) > len(TOKEN_CLASSES) else Decimal(0)
    return Reconciled(
        int(inserted), int(updated), int(deleted), int(rows), int(events), tokens, cost
    )
