"""Rating one window end to end, in one transaction (contract sections 6 and 7).

lock → extract (SQL) → price (``pricing.price_window``) → stage (COPY) → reconcile both
tables → append the rating log. The transaction runs at READ COMMITTED and takes the
window's advisory lock before anything else, so every later statement sees the latest
committed state, including that of a rating it waited for. A crash anywhere rolls it all
back: the window stays as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from psycopg.pq import TransactionStatus

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.pricing import price_window
from rating_pipeline.records import AMBIGUOUS_BASE, RatedRollup, RatingException, WindowRating
from rating_pipeline.warehouse.extract import WindowUsage, extract_window_usage
from rating_pipeline.warehouse.reconcile import (
    ReconcileCounts,
    reconcile_rated_usage,
    reconcile_rating_exception,
    stage,
)
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window

logger = logging.getLogger("rating_pipeline")

# Advisory lock keys: (LOCK_NAMESPACE, hours since the epoch of the window's start).
LOCK_NAMESPACE = 0x52415445  # "RATE"
SET_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
# The instant the lock was granted: rated_at of every row this run writes.
LOCK_GRANTED_AT = "SELECT clock_timestamp()"
# At most this many deleted rows are named one by one in the log.
DELETIONS_LOGGED = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ConservationError(RatingPipelineError):
    """Pricing's output does not account for every event read: nothing was written."""


class ConnectionInTransaction(RatingPipelineError):
    """rate_window was handed a connection inside an open transaction."""


@dataclass(frozen=True)
class WindowResult:
    """The outcome of one committed rating of one window."""

    rating: WindowRating
    run_id: str
    usage_counts: ReconcileCounts
    exception_counts: ReconcileCounts
    max_ingested_at: datetime | None
    rated_at: datetime
    deleted_rollups: tuple[tuple[str, str], ...] = ()
    deleted_exceptions: tuple[tuple[str, str, str], ...] = ()

    @property
    def window(self) -> Window:
        return self.rating.window

    @property
    def checksum(self) -> str:
        return self.rating.checksum

    @property
    def ambiguous(self) -> tuple[RatingException, ...]:
        """The rollups excluded as ``ambiguous_base``: the run must fail loud (contract 5.2)."""
        return tuple(e for e in self.rating.exceptions if e.reason == AMBIGUOUS_BASE)

    @property
    def total_cost_usd(self) -> Decimal:
        return self.rating.total_cost_usd

    @property
    def rows_written(self) -> int:
        """Rows inserted, updated or deleted in both tables (zero for an identical re-run)."""
        return self.usage_counts.written + self.exception_counts.written


def window_lock_key(window: Window) -> tuple[int, int]:
    """The advisory lock (two int4 keys) that serializes ratings of ``window``."""
    return LOCK_NAMESPACE, (window.start - EPOCH) // HOUR


def check_conservation(usage: WindowUsage, rating: WindowRating) -> None:
    """Every event and token read lands in exactly one rollup or exception (contract 6)."""
    rows: list[RatedRollup | RatingException] = [*rating.rollups, *rating.exceptions]
    produced = (
        sum(row.event_count for row in rows),
        sum(row.input_tokens for row in rows),
        sum(row.output_tokens for row in rows),
    )
    read = (usage.event_count, usage.input_tokens, usage.output_tokens)
    if produced != read:
        raise ConservationError(
            f"window {usage.window.key}: read (events, input, output tokens) {read} "
            f"but pricing accounted for {produced}; nothing was written"
        )


def rate_window(
    conn: psycopg.Connection, window: Window, pricebooks: Pricebooks, run_id: str
) -> WindowResult:
    """Rate ``window`` and converge its rows to this run's output, in one transaction.

    Raises NoPricebookForWindow before touching the database when no version covers the
    window. ``conn`` must not be inside a transaction: this function owns one and commits
    it. Ratings of the same window serialize on an advisory lock.
    """
    version = pricebooks.version_for(window)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ConnectionInTransaction(
            f"rating window {window.key} needs a connection outside any transaction"
        )
    with conn.transaction():
        result = rate_window_in_transaction(conn, window, version, run_id)
    log_result(result)
    return result


def rate_window_in_transaction(
    conn: psycopg.Connection, window: Window, version: PricebookVersion, run_id: str
) -> WindowResult:
    """Every step of ``rate_window`` except the commit.

    The caller's transaction must have run no statement yet (the isolation level and the
    lock come first); committing or rolling back is the caller's. Tests use this to look
    at the transaction from inside.
    """
    conn.execute(SET_READ_COMMITTED)
    namespace, window_hour = window_lock_key(window)
    conn.execute(load_sql("lock_window"), {"namespace": namespace, "window_hour": window_hour})
    granted = conn.execute(LOCK_GRANTED_AT).fetchone()
    assert granted is not None
    rated_at: datetime = granted[0]

    usage = extract_window_usage(conn, window)
    rating = price_window(window, version, usage.groups)
    check_conservation(usage, rating)

    stage(conn, rating)
    usage_counts = reconcile_rated_usage(conn, window, rated_at, run_id)
    exception_counts = reconcile_rating_exception(conn, window, rated_at, run_id)
    conn.execute(
        load_sql("insert_rating_log"),
        {
            "run_id": run_id,
            "window_start": window.start,
            "window_end": window.end,
            "pricebook_version": rating.pricebook_version,
            "pricebook_sha256": rating.pricebook_sha256,
            "rows_inserted": usage_counts.inserted,
            "rows_updated": usage_counts.updated,
            "rows_deleted": usage_counts.deleted,
            "rows_unchanged": usage_counts.unchanged,
            "exceptions_inserted": exception_counts.inserted,
            "exceptions_updated": exception_counts.updated,
            "exceptions_deleted": exception_counts.deleted,
            "exceptions_unchanged": exception_counts.unchanged,
            "events_read": usage.event_count,
            "events_rated": rating.events_rated,
            "events_excepted": rating.events_excepted,
            "total_cost_usd": rating.total_cost_usd,
            "output_checksum": rating.checksum,
            "max_ingested_at": usage.max_ingested_at,
            "rated_at": rated_at,
        },
    )
    keys = {"window_start": window.start, "run_id": run_id}
    deleted_rollups: tuple[tuple[str, str], ...] = ()
    if usage_counts.deleted:
        deleted_rollups = tuple(
            (auth_id, model_id)
            for auth_id, model_id, *_ in conn.execute(load_sql("select_deleted_rated_usage"), keys)
        )
    deleted_exceptions: tuple[tuple[str, str, str], ...] = ()
    if exception_counts.deleted:
        deleted_exceptions = tuple(
            (auth_id, model_id, reason)
            for auth_id, model_id, reason, *_ in conn.execute(
                load_sql("select_deleted_rating_exception"), keys
            )
        )
    return WindowResult(
        rating=rating,
        run_id=run_id,
        usage_counts=usage_counts,
        exception_counts=exception_counts,
        max_ingested_at=usage.max_ingested_at,
        rated_at=rated_at,
        deleted_rollups=deleted_rollups,
        deleted_exceptions=deleted_exceptions,
    )


def log_result(result: WindowResult) -> None:
    """INFO: the counts of a committed rating, and each row it deleted (up to a cap)."""
    rating = result.rating
    logger.info(
        "rated window %s (pricebook %s, run %s): rated_usage %s; rating_exception %s; "
        "events read %d, rated %d, excepted %d; cost %s USD",
        result.window.key,
        rating.pricebook_version,
        result.run_id,
        result.usage_counts,
        result.exception_counts,
        rating.events_read,
        rating.events_rated,
        rating.events_excepted,
        rating.total_cost_usd,
    )
    deletions = [
        f"rated_usage row auth_id={auth_id!r} model_id={model_id!r}"
        for auth_id, model_id in result.deleted_rollups
    ] + [
        f"rating_exception row auth_id={auth_id!r} model_id={model_id!r} reason={reason}"
        for auth_id, model_id, reason in result.deleted_exceptions
    ]
    for deletion in deletions[:DELETIONS_LOGGED]:
        logger.info(
            "window %s: run %s deleted %s (archived)", result.window.key, result.run_id, deletion
        )
    if len(deletions) > DELETIONS_LOGGED:
        logger.info(
            "window %s: run %s deleted %d more rows (archived)",
            result.window.key,
            result.run_id,
            len(deletions) - DELETIONS_LOGGED,
        )
