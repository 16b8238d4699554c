"""Rating one window end to end, in one transaction (contract sections 6 and 7).

lock → the digest of everything the output depends on but the events (fingerprint.py) →
the window's latest rating from the log → one statement sums and digests the window's
events, and writes them into a temp table unless they are the ones that rating read with
everything else unchanged: then its counts, totals and checksum carry, and nothing else
runs. Otherwise each distinct (model, bases) is resolved by ``pricing.resolve`` (the rules,
in Python), one statement per table prices (exact numeric arithmetic), compares with the
live rows and writes only the differences, then conservation is checked and the checksum
computed (SQL) → append the rating log.
Nothing per rollup crosses into Python: only the resolution keys (a handful per window),
the totals and the exceptions (few).

The transaction runs at READ COMMITTED and takes the window's advisory lock before anything
else, so every later statement sees the latest committed state, including that of a rating
it waited for. A crash anywhere rolls it all back: the window stays as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from psycopg.pq import TransactionStatus

from rating_pipeline import pricing
from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.money import exact_rate
from rating_pipeline.pricebook.model import Pricebooks, PricebookVersion
from rating_pipeline.records import (
    AMBIGUOUS_BASE,
    RatingException,
    canonical_fields,
)
from rating_pipeline.warehouse.extract import (
    WindowRead,
    create_window_usage,
    merge_mixed_bases,
    parse_bases_key,
    resolution_keys,
)
from rating_pipeline.warehouse.fingerprint import input_context, input_fingerprint
from rating_pipeline.warehouse.outputs import exception_from_row
from rating_pipeline.warehouse.reconcile import (
    OutputTotals,
    ReconcileCounts,
    reconcile_rated_usage,
    reconcile_rating_exception,
)
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window

logger = logging.getLogger("rating_pipeline")

# Advisory lock keys: (LOCK_NAMESPACE, hours since the epoch of the window's start).
LOCK_NAMESPACE = 0x52415445  # "RATE"
SET_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
# The instant the lock was granted: rated_at of every row this run writes.
LOCK_GRANTED_AT = "SELECT clock_timestamp()"
# work_mem of the rating transaction: room for a window's groups and its checksum's sort
# in memory (tens of MB for ~50k rollups) instead of spilling them to disk.
RATING_WORK_MEM = "64MB"
# At most this many deleted rows are named one by one in the log.
DELETIONS_LOGGED = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Binary COPY of window_resolution, in the column order of sql/copy_window_resolution.sql.
RESOLUTION_TYPES = (
    "text", "text", "text", "text", "numeric", "numeric", "numeric", "text", "text", "text",
    "text",
)  # fmt: skip


class ConservationError(RatingPipelineError):
    """The output does not account for every event read: the rating is rolled back."""


class ConnectionInTransaction(RatingPipelineError):
    """rate_window was handed a connection inside an open transaction."""


@dataclass(frozen=True)
class WindowSummary:
    """What one rating of one window produced, without its rollups (they stay in SQL).

    ``exceptions`` is every exception row, in key order (they are few).
    """

    window: Window
    pricebook_version: str
    pricebook_sha256: str
    events_rated: int
    events_excepted: int
    rollup_count: int
    total_cost_usd: Decimal
    checksum: str
    exceptions: tuple[RatingException, ...]

    @property
    def events_read(self) -> int:
        return self.events_rated + self.events_excepted


@dataclass(frozen=True)
class WindowResult:
    """The outcome of one committed rating of one window."""

    rating: WindowSummary
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


def resolution_row(version: PricebookVersion, model_id: str, bases_key: str) -> tuple[object, ...]:
    """One row of ``window_resolution``: ``pricing.resolve``'s answer for one key."""
    outcome = pricing.resolve(version, model_id, parse_bases_key(bases_key))
    if isinstance(outcome, pricing.Priced):
        rates = (
            outcome.rate_source,
            outcome.derivation_base,
            outcome.multiplier,
            exact_rate(outcome.rate.input_per_mtok),
            exact_rate(outcome.rate.output_per_mtok),
        )
        return (
            model_id, bases_key, *rates, None, None,
            canonical_fields(model_id), canonical_fields(*rates),
        )  # fmt: skip
    return (
        model_id, bases_key, None, None, None, None, None, outcome.reason, outcome.detail,
        None, None,
    )  # fmt: skip


def resolve_window(
    conn: psycopg.Connection, version: PricebookVersion, keys: Sequence[tuple[str, str]]
) -> tuple[tuple[object, ...], ...]:
    """Answer the rules for each (model_id, bases_key) of the window's rollups, into the
    temp table ``window_resolution`` (dropped at commit or rollback); return its rows.

    The rules run once per key, in Python (``pricing.resolve``); their answers are COPYed
    into ``window_resolution``, which the reconcile statements join back to the rollups in
    SQL, where the cost is computed exactly.
    """
    rows = tuple(resolution_row(version, model_id, bases_key) for model_id, bases_key in keys)
    with conn.cursor() as cursor:
        cursor.execute(load_sql("create_window_resolution"))
        with cursor.copy(load_sql("copy_window_resolution")) as copy:
            copy.set_types(RESOLUTION_TYPES)
            for row in rows:
                copy.write_row(row)
    return rows


def check_conservation(
    window: Window, read: WindowRead, rated: OutputTotals, excepted: OutputTotals
) -> None:
    """Every event and token read lands in exactly one rollup or exception (contract 6).

    Raises ConservationError otherwise; raised inside the rating's transaction, it rolls
    back everything the rating wrote.
    """
    produced = tuple(r + e for r, e in zip(rated.amounts, excepted.amounts, strict=True))
    if produced != read.amounts:
        raise ConservationError(
            f"window {window.key}: read (events, input, output tokens) {read.amounts} "
            f"but the output accounts for {produced}; nothing was written"
        )


def checksum_headers(window: Window, version: PricebookVersion) -> dict[str, str]:
    """What the reference renderer contributes to the window's checksum: its header lines
    (the rollups', whole; the exceptions', but for their pricebook_version)."""
    return {
        "rollup_header": canonical_fields(
            "rollup", window.start, window.end, version.version, version.sha256
        ),
        "exception_prefix": canonical_fields("exception", window.start, window.end, ""),
    }


def window_checksum(conn: psycopg.Connection, window: Window, version: PricebookVersion) -> str:
    """``records.output_checksum`` of the window's rows as this rating leaves them.

    Every line is rendered in SQL, from this rating's output; the header lines, which
    carry what the window's rows share, are rendered here by the reference renderer.
    """
    computed = conn.execute(
        load_sql("window_output_checksum"),
        {"window_start": window.start, **checksum_headers(window, version)},
    ).fetchone()
    assert computed is not None
    return str(computed[0])


@dataclass(frozen=True)
class Converged:
    """Where one rating left its window's rows: the counts, the totals and the checksum."""

    usage_counts: ReconcileCounts
    exception_counts: ReconcileCounts
    events_rated: int
    events_excepted: int
    rollup_count: int
    total_cost_usd: Decimal
    checksum: str


@dataclass(frozen=True)
class LatestRating:
    """The window's latest rating, as the log recorded it: what it was fed and what it left."""

    input_fingerprint: str | None
    events_digest: str | None
    output_edits_seen: int | None
    events_read: int
    left: Converged

    def unchanged_digest(self, context: str, edits_seen: int) -> str | None:
        """The events digest under which this rating's output would be that one's, if any.

        That is the one it logged, provided everything else its output depends on is the
        same (``context``: its fingerprint is the one this context gives with that digest)
        and no statement outside a rating has written the outputs since it began (the edit
        counter, migration 0004, is still where it saw it). None otherwise.
        """
        if self.events_digest is None or self.output_edits_seen != edits_seen:
            return None
        if self.input_fingerprint != input_fingerprint(context, self.events_digest):
            return None
        return self.events_digest


def latest_rating(conn: psycopg.Connection, window: Window) -> LatestRating | None:
    """The window's latest rating from the rating log, or None if it was never rated."""
    row = conn.execute(load_sql("select_latest_rating"), {"window_start": window.start}).fetchone()
    if row is None:
        return None
    fingerprint, digest, edits, read, rollups, exceptions, rated, excepted, cost, checksum = row
    return LatestRating(
        input_fingerprint=fingerprint,
        events_digest=digest,
        output_edits_seen=edits,
        events_read=int(read),
        left=Converged(
            usage_counts=ReconcileCounts(inserted=0, updated=0, deleted=0, unchanged=int(rollups)),
            exception_counts=ReconcileCounts(
                inserted=0, updated=0, deleted=0, unchanged=int(exceptions)
            ),
            events_rated=int(rated),
            events_excepted=int(excepted),
            rollup_count=int(rollups),
            total_cost_usd=cost,
            checksum=str(checksum),
        ),
    )


def converge_window(
    conn: psycopg.Connection,
    window: Window,
    version: PricebookVersion,
    rated_at: datetime,
    run_id: str,
    read: WindowRead,
) -> Converged:
    """Compare the window's rows with this rating's output and write the differences, check
    conservation, and take the checksum of the rows as they are left."""
    rated = reconcile_rated_usage(conn, window, version, rated_at, run_id)
    excepted = reconcile_rating_exception(conn, window, version, rated_at, run_id)
    check_conservation(window, read, rated.totals, excepted.totals)
    return Converged(
        usage_counts=rated.counts,
        exception_counts=excepted.counts,
        events_rated=rated.totals.event_count,
        events_excepted=excepted.totals.event_count,
        rollup_count=rated.totals.rows,
        total_cost_usd=rated.totals.cost_usd,
        checksum=window_checksum(conn, window, version),
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
    conn.execute(load_sql("set_work_mem"), {"work_mem": RATING_WORK_MEM})
    conn.execute(load_sql("mark_rating"))
    edits_row = conn.execute(load_sql("select_output_edits")).fetchone()
    assert edits_row is not None
    edits_seen = int(edits_row[0])

    context = input_context(conn, window, version, checksum_headers(window, version))
    latest = latest_rating(conn, window)
    unchanged_digest = None if latest is None else latest.unchanged_digest(context, edits_seen)
    read = create_window_usage(conn, window, unchanged_digest)
    fingerprint = input_fingerprint(context, read.events_digest)
    if latest is not None and not read.written:
        # The events are the ones the latest rating read, and nothing else changed: the
        # rows already are this rating's output. Nothing is compared, written or locked.
        if read.event_count != latest.events_read:  # the digest counts them: never
            raise ConservationError(
                f"window {window.key}: the events digest matched the latest rating's but "
                f"{read.event_count} events were read, not {latest.events_read}"
            )
        converged = latest.left
    else:
        if read.multi_base_rollups:
            merge_mixed_bases(conn)
        resolve_window(conn, version, resolution_keys(conn))
        converged = converge_window(conn, window, version, rated_at, run_id, read)
    usage_counts, exception_counts = converged.usage_counts, converged.exception_counts
    conn.execute(
        load_sql("insert_rating_log"),
        {
            "run_id": run_id,
            "window_start": window.start,
            "window_end": window.end,
            "pricebook_version": version.version,
            "pricebook_sha256": version.sha256,
            "rows_inserted": usage_counts.inserted,
            "rows_updated": usage_counts.updated,
            "rows_deleted": usage_counts.deleted,
            "rows_unchanged": usage_counts.unchanged,
            "exceptions_inserted": exception_counts.inserted,
            "exceptions_updated": exception_counts.updated,
            "exceptions_deleted": exception_counts.deleted,
            "exceptions_unchanged": exception_counts.unchanged,
            "events_read": read.event_count,
            "events_rated": converged.events_rated,
            "events_excepted": converged.events_excepted,
            "total_cost_usd": converged.total_cost_usd,
            "output_checksum": converged.checksum,
            "max_ingested_at": read.max_ingested_at,
            "rated_at": rated_at,
            "output_edits_seen": edits_seen,
            "input_fingerprint": fingerprint,
            "events_digest": read.events_digest,
        },
    )
    bounds = {"window_start": window.start}
    summary = WindowSummary(
        window=window,
        pricebook_version=version.version,
        pricebook_sha256=version.sha256,
        events_rated=converged.events_rated,
        events_excepted=converged.events_excepted,
        rollup_count=converged.rollup_count,
        total_cost_usd=converged.total_cost_usd,
        checksum=converged.checksum,
        exceptions=tuple(
            exception_from_row(row)
            for row in conn.execute(load_sql("select_window_rating_exception"), bounds)
        ),
    )
    keys = {"window_start": window.start, "run_id": run_id, "rated_at": rated_at}
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
        rating=summary,
        run_id=run_id,
        usage_counts=usage_counts,
        exception_counts=exception_counts,
        max_ingested_at=read.max_ingested_at,
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
