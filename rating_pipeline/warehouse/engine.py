"""Rating one window end to end, in one transaction (contract sections 6, 7 and 10).

``rate_window_in_transaction`` is five steps: begin (READ COMMITTED, the window's advisory
lock, the periods lock shared, the instant and the close mark), read the window's usage
(summed in SQL), converge the outputs to this rating's output (the rules resolve each
distinct model and bases in Python; SQL prices the rollups once, then reconciles an open
window's ``rated_usage``, or a closed window's open adjustments, and ``rating_exception``;
conservation is checked), log the rating, and summarize it. A crash anywhere rolls it all
back: the window stays as it was. docs/warehouse.md and docs/periods.md tell why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from rating_pipeline import pricing
from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.money import exact_rate
from rating_pipeline.pricebook.model import (
    CONTEXT_TIERS,
    LONG,
    SERVICE_TIERS,
    STANDARD,
    TOKEN_CLASSES,
    Pricebooks,
    PricebookVersion,
)
from rating_pipeline.records import (
    AMBIGUOUS_BASE,
    ID_PREFIX_LENGTH,
    INVALID_EVENT,
    MAX_ID_LENGTH,
    PROBLEMS,
    UNPRICED,
    RatingException,
)
from rating_pipeline.warehouse.close_mark import (
    begin_read_committed,
    close_mark,
    lock_periods,
    month_of,
    window_closed,
)
from rating_pipeline.warehouse.database import database_clock
from rating_pipeline.warehouse.extract import (
    WindowRead,
    parse_bases_key,
    read_window_usage,
    require_storable,
)
from rating_pipeline.warehouse.outputs import stored_exceptions
from rating_pipeline.warehouse.reconcile import Reconciled, reconcile
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window

logger = logging.getLogger("rating_pipeline")

# Advisory lock keys: (LOCK_NAMESPACE, hours since the epoch of the window's start).
LOCK_NAMESPACE = 0x52415445  # "RATE"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RATING_LOGGED = "SELECT 1 FROM rating_log WHERE run_id = %(run_id)s AND window_start = %(start)s"
ROLLED_BACK = "was rolled back"
COMMITTED_ALL_THE_SAME = "committed all the same (the failure came at or after its COMMIT)"
RATING_WORK_MEM = "64MB"
# At most this many deleted rows are named one by one in the log.
DELETIONS_LOGGED = 50
# Binary COPY of window_resolution, in its column order (sql/create_window_resolution.sql).
RESOLUTION_TYPES = ("text",) * 6 + ("numeric",) * (1 + len(TOKEN_CLASSES)) + ("text",) * 3


class ConservationError(RatingPipelineError):
    """The output does not account for every event read: the rating is rolled back."""


class ConnectionInTransaction(RatingPipelineError):
    """rate_window was handed a connection inside an open transaction."""


@dataclass(frozen=True)
class RatingRun:
    """One rating of one window: what every row it writes is stamped with, and the close
    mark it rates under (``closed_through``: every window starting before it is closed)."""

    window: Window
    version: PricebookVersion
    run_id: str
    rated_at: datetime
    closed_through: datetime | None = None

    @property
    def closed(self) -> bool:
        """The window is closed: its rated_usage rows are frozen (contract 10)."""
        return window_closed(self.window.start, self.closed_through)

    @property
    def bill_month(self) -> datetime | None:
        """Where an adjustment made now is billed: the earliest month not wholly closed."""
        return None if self.closed_through is None else month_of(self.closed_through)

    def bound(self) -> dict[str, Any]:
        """The values the reconcile statements bind."""
        return {
            "bill_month": self.bill_month,
            "window_start": self.window.start,
            "window_end": self.window.end,
            "pricebook_version": self.version.version,
            "pricebook_sha256": self.version.sha256,
            "rated_at": self.rated_at,
            "run_id": self.run_id,
            "unpriced": UNPRICED,
            "invalid_event": INVALID_EVENT,
            "problem_names": list(PROBLEMS),
            "max_id_length": MAX_ID_LENGTH,
            "id_prefix_length": ID_PREFIX_LENGTH,
        }


@dataclass(frozen=True)
class WindowRating:
    """The outcome of one committed rating of one window.

    ``usage`` and ``exceptions`` say what the reconcile did to ``rated_usage`` and
    ``rating_exception``, with the totals of this rating's output; ``exception_rows`` is
    every exception row now stored (they are few); ``deleted_rows`` names each row the
    rating deleted (kept in the archive). In a closed window ``usage`` writes nothing (its
    rows are frozen) and ``adjustments`` says what the reconcile did to the window's open
    adjustments, with their totals after it.
    """

    window: Window
    run_id: str
    rated_at: datetime
    pricebook_version: str
    pricebook_sha256: str
    read: WindowRead
    usage: Reconciled
    exceptions: Reconciled
    exception_rows: tuple[RatingException, ...]
    deleted_rows: tuple[str, ...] = ()
    closed_through: datetime | None = None
    adjustments: Reconciled | None = None
    frozen_rows: int | None = None

    @property
    def closed(self) -> bool:
        return self.adjustments is not None

    @property
    def events_read(self) -> int:
        return self.read.event_count

    @property
    def events_rated(self) -> int:
        return self.usage.event_count

    @property
    def events_excepted(self) -> int:
        return self.exceptions.event_count

    @property
    def rollup_count(self) -> int:
        """The rollups of this rating's output (in a closed window, not its stored rows)."""
        return self.usage.rows

    @property
    def rated_usage_rows(self) -> int:
        """The window's rated_usage rows after the rating: a closed window's frozen ones."""
        return self.usage.rows if self.frozen_rows is None else self.frozen_rows

    @property
    def rows_unchanged(self) -> int:
        return rows_unchanged(self.usage, self.frozen_rows)

    @property
    def total_cost_usd(self) -> Decimal:
        return self.usage.cost_usd

    @property
    def max_ingested_at(self) -> datetime | None:
        return self.read.max_ingested_at

    @property
    def rows_written(self) -> int:
        """Rows inserted, updated or deleted in the outputs (zero for an identical re-run)."""
        adjusted = self.adjustments.written if self.adjustments else 0
        return self.usage.written + self.exceptions.written + adjusted

    @property
    def ambiguous(self) -> tuple[RatingException, ...]:
        """The rollups excluded as ``ambiguous_base``: the run must fail loud (contract 5.2)."""
        return tuple(e for e in self.exception_rows if e.reason == AMBIGUOUS_BASE)


def rows_unchanged(usage: Reconciled, frozen_rows: int | None) -> int:
    """rated_usage rows a rating left as they were: in a closed window (``frozen_rows``),
    all of them, whatever its latest output holds."""
    return usage.unchanged if frozen_rows is None else frozen_rows


def what_became_of(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]], run_id: str, window: Window
) -> str:
    """What became of ``run_id``'s rating of ``window`` that failed or was interrupted,
    asked on a fresh connection from ``connect``: a failure during its COMMIT (a lost
    connection, Ctrl-C) leaves the connection that sent it without an answer. Its
    rating_log row commits with it."""
    try:
        with connect() as fresh:
            logged = fresh.execute(RATING_LOGGED, {"run_id": run_id, "start": window.start})
            committed = logged.fetchone() is not None
    except (psycopg.Error, RatingPipelineError):  # the warehouse gone too
        return f"may have committed (the warehouse cannot be asked: rating_log says, run {run_id})"
    return COMMITTED_ALL_THE_SAME if committed else ROLLED_BACK


def window_lock_key(window: Window) -> tuple[int, int]:
    """The advisory lock (two int4 keys) that serializes ratings of ``window``."""
    return LOCK_NAMESPACE, (window.start - EPOCH) // HOUR


def rate_window(
    conn: psycopg.Connection, window: Window, pricebooks: Pricebooks, run_id: str
) -> WindowRating:
    """Rate ``window`` and converge its rows to this rating's output, in one transaction.

    Raises NoPricebookForWindow before touching the database when no version covers the
    window, and UnstorablePricebook when the version holds text the warehouse cannot store.
    ``conn`` must not be inside a transaction: this function owns one and commits it.
    Ratings of the same window serialize on an advisory lock.
    """
    version = pricebooks.version_for(window)
    require_storable(conn, version)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ConnectionInTransaction(
            f"rating window {window.key} needs a connection outside any transaction"
        )
    with conn.transaction():
        rating = rate_window_in_transaction(conn, window, version, run_id)
    for line in rating_log_lines(rating):
        logger.info(line)
    return rating


def rate_window_in_transaction(
    conn: psycopg.Connection, window: Window, version: PricebookVersion, run_id: str
) -> WindowRating:
    """Every step of ``rate_window`` but the commit, in the caller's transaction, which
    must have run no statement yet (tests use this to look at it from inside)."""
    run = begin_rating(conn, window, version, run_id)
    read = read_window_usage(conn, window, version)
    converged = converge(conn, run, read)
    log_rating(conn, run, read, converged)
    return summarize(conn, run, read, converged)


def begin_rating(
    conn: psycopg.Connection, window: Window, version: PricebookVersion, run_id: str
) -> RatingRun:
    """Take the window's lock, then the periods lock, so every later statement sees the
    latest committed state, including that of a rating or close this one waited for; the
    rating is stamped once it holds both."""
    begin_read_committed(conn)
    namespace, window_hour = window_lock_key(window)
    conn.execute(load_sql("lock_window"), {"namespace": namespace, "window_hour": window_hour})
    conn.execute(load_sql("set_rating_planner"), {"work_mem": RATING_WORK_MEM})
    lock_periods(conn, exclusive=False)
    granted = database_clock(conn)  # rated_at of every row the rating writes
    return RatingRun(window, version, run_id, rated_at=granted, closed_through=close_mark(conn))


def rate_set_words(service_tier: str, context_tier: str) -> str:
    """How a detail names a rate set: ``standard``, ``batch``, ``batch long-context``."""
    words = [service_tier] if service_tier != STANDARD or context_tier == STANDARD else []
    words += ["long-context"] if context_tier == LONG else []
    return " ".join(words)


def resolution_rows(
    version: PricebookVersion, model_id: str, bases_key: str
) -> list[tuple[Any, ...]]:
    """The rows of ``window_resolution`` for one key: ``pricing.resolve``'s answer for each
    service and context tier."""
    outcome = pricing.resolve(version, model_id, parse_bases_key(bases_key))
    return [
        resolution_row(outcome, (model_id, bases_key, service_tier, context_tier))
        for service_tier in SERVICE_TIERS
        for context_tier in CONTEXT_TIERS
    ]


def resolution_row(
    outcome: pricing.Priced | pricing.Excluded, key: tuple[str, str, str, str]
) -> tuple[Any, ...]:
    """The rate set that prices one key's tier and context, or why nothing does: the rules'
    reason, or an absent rate set (never a fallback to another tier or context)."""
    model_id, _, service_tier, context_tier = key
    words = rate_set_words(service_tier, context_tier)
    rate_set = None
    if isinstance(outcome, pricing.Priced):
        rate_set = outcome.rates.rate_set(service_tier, context_tier)
    if rate_set is None:
        reason, detail = (
            (outcome.reason, outcome.detail)
            if isinstance(outcome, pricing.Excluded)
            else (UNPRICED, f"no {words} rates for {model_id}")
        )
        return (*key, None, None, None, *[None] * len(TOKEN_CLASSES), None, reason, detail)
    assert isinstance(outcome, pricing.Priced)
    rates = [rate_set.rate(c) for c in TOKEN_CLASSES]
    return (
        *key, outcome.rate_source, outcome.derivation_base, outcome.multiplier,
        *(None if rate is None else exact_rate(rate) for rate in rates),
        f"{words} rates of {model_id}", None, None,
    )  # fmt: skip


def resolve_window(
    conn: psycopg.Connection, version: PricebookVersion, keys: Sequence[tuple[str, str]]
) -> None:
    """Answer the rules once per (model_id, bases_key) of the window's rollups, into the
    temp table ``window_resolution`` (dropped at commit or rollback)."""
    rows = [row for key in keys for row in resolution_rows(version, *key)]
    with conn.cursor() as cursor:
        cursor.execute(load_sql("create_window_resolution"))
        with cursor.copy(load_sql("copy_window_resolution")) as copy:
            copy.set_types(RESOLUTION_TYPES)
            for row in rows:
                copy.write_row(row)


@dataclass(frozen=True)
class Converged:
    """What ``converge`` did: ``usage`` (in a closed window, the output's totals and no
    writes), ``exceptions``, and in a closed window the open ``adjustments`` and the count
    of its ``frozen_rows``."""

    usage: Reconciled
    exceptions: Reconciled
    adjustments: Reconciled | None
    frozen_rows: int | None = None


def converge(conn: psycopg.Connection, run: RatingRun, read: WindowRead) -> Converged:
    """Converge the window's outputs to this rating's output: an open window's
    ``rated_usage``, or a closed window's open adjustments (its rows stay frozen), and
    ``rating_exception`` either way. Raises ConservationError, rolling everything back,
    unless every event and token read lands in exactly one rollup or exception (contract 6)
    and, in a closed window, billed output plus adjustments equals the output per rollup key
    (contract 10)."""
    resolve_window(conn, run.version, read.keys)
    conn.execute(load_sql("price_window"))
    adjustments, frozen_rows = None, None
    if run.closed:
        adjustments = reconcile(conn, "reconcile_rating_adjustment", run.bound())
        frozen_rows = _count(conn, "count_window_rated_usage", run.bound())
        usage = reconcile(conn, "select_window_output_totals", {})
        require_balanced_keys(conn, run)
    else:
        usage = reconcile(conn, "reconcile_rated_usage", run.bound())
    exceptions = reconcile(conn, "reconcile_rating_exception", run.bound())
    produced = tuple(u + e for u, e in zip(usage.amounts, exceptions.amounts, strict=True))
    if produced != read.amounts:
        raise ConservationError(
            f"window {run.window.key}: read (events, then tokens of {', '.join(TOKEN_CLASSES)}) "
            f"{read.amounts} but the output accounts for {produced}; nothing was written"
        )
    return Converged(usage, exceptions, adjustments, frozen_rows)


def require_balanced_keys(conn: psycopg.Connection, run: RatingRun) -> None:
    """Raise ConservationError unless, per rollup key of the closed window, its frozen rows
    plus all its adjustments equal its latest output in events, every class and cost."""
    unbalanced = conn.execute(load_sql("select_unbalanced_rollup_keys"), run.bound()).fetchall()
    if unbalanced:
        named = "; ".join(
            f"auth_id={auth_id!r} model_id={model_id!r} tiers={tier}/{context}"
            for _, auth_id, model_id, tier, context in unbalanced
        )
        raise ConservationError(
            f"closed window {run.window.key}: billed output plus adjustments differ from "
            f"the output for {unbalanced[0][0]} rollup key(s), among them {named}; "
            "nothing was written"
        )


def log_rating(
    conn: psycopg.Connection, run: RatingRun, read: WindowRead, converged: Converged
) -> None:
    """Append the rating's row to ``rating_log`` (contract 6, Audit). Its total is the
    output's cost: in a closed window, billed output plus open adjustments."""
    usage, exceptions = converged.usage, converged.exceptions
    adjustments = converged.adjustments or Reconciled(0, 0, 0, 0, 0, {})
    conn.execute(
        load_sql("insert_rating_log"),
        {
            **run.bound(),
            "rows_inserted": usage.inserted,
            "rows_updated": usage.updated,
            "rows_deleted": usage.deleted,
            "rows_unchanged": rows_unchanged(usage, converged.frozen_rows),
            "exceptions_inserted": exceptions.inserted,
            "exceptions_updated": exceptions.updated,
            "exceptions_deleted": exceptions.deleted,
            "exceptions_unchanged": exceptions.unchanged,
            "events_read": read.event_count,
            "events_rated": usage.event_count,
            "events_excepted": exceptions.event_count,
            "total_cost_usd": usage.cost_usd,
            "max_ingested_at": read.max_ingested_at,
            "events_digest": read.events_digest,
            "window_closed": run.closed,
            "adjustments_inserted": adjustments.inserted,
            "adjustments_updated": adjustments.updated,
            "adjustments_deleted": adjustments.deleted,
            "adjustments_unchanged": adjustments.unchanged,
            "open_adjustment_cost_usd": adjustments.cost_usd,
        },
    )


def summarize(
    conn: psycopg.Connection, run: RatingRun, read: WindowRead, converged: Converged
) -> WindowRating:
    """The rating's outcome, with the window's exception rows and the rows it deleted."""
    usage, exceptions = converged.usage, converged.exceptions
    return WindowRating(
        window=run.window,
        run_id=run.run_id,
        rated_at=run.rated_at,
        pricebook_version=run.version.version,
        pricebook_sha256=run.version.sha256,
        read=read,
        usage=usage,
        exceptions=exceptions,
        exception_rows=stored_exceptions(conn, run.window),
        deleted_rows=deleted_rows(conn, run, usage.deleted, exceptions.deleted),
        closed_through=run.closed_through if run.closed else None,
        adjustments=converged.adjustments,
        frozen_rows=converged.frozen_rows,
    )


def _count(conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> int:
    row = conn.execute(load_sql(statement), params).fetchone()
    return int(row[0]) if row else 0


def deleted_rows(
    conn: psycopg.Connection, run: RatingRun, rollups: int, exceptions: int
) -> tuple[str, ...]:
    """Each row this rating deleted, named (read back from the archives)."""
    keys = {"window_start": run.window.start, "run_id": run.run_id, "rated_at": run.rated_at}
    named: list[str] = []
    if rollups:
        named.extend(
            f"rated_usage row auth_id={auth_id!r} model_id={model_id!r} tiers={tier}/{context}"
            for auth_id, model_id, tier, context in conn.execute(
                load_sql("select_deleted_rated_usage"), keys
            )
        )
    if exceptions:
        named.extend(
            f"rating_exception row auth_id={auth_id!r} model_id={model_id!r} "
            f"tiers={tier}/{context} reason={reason}"
            for auth_id, model_id, tier, context, reason in conn.execute(
                load_sql("select_deleted_rating_exception"), keys
            )
        )
    return tuple(named)


def rating_log_lines(rating: WindowRating) -> list[str]:
    """The lines one committed rating is reported by, to the log, the CLI and Dagster
    alike: its counts and cost, then each row it deleted (up to DELETIONS_LOGGED)."""
    window = rating.window.key
    usage = f"rated_usage {rating.usage}"
    if rating.adjustments is not None and rating.closed_through is not None:
        usage = (
            f"closed (through {rating.closed_through.isoformat()}): rated_usage frozen; "
            f"rating_adjustment {rating.adjustments}, {rating.adjustments.rows} open costing "
            f"{rating.adjustments.cost_usd:f} USD"
        )
    lines = [
        f"{window} pricebook {rating.pricebook_version}: {usage}; "
        f"rating_exception {rating.exceptions}; events {rating.events_read} "
        f"(rated {rating.events_rated}, excepted {rating.events_excepted}); "
        f"cost {rating.total_cost_usd:f} USD"
    ]
    deleted = rating.deleted_rows
    lines.extend(
        f"{window}: run {rating.run_id} deleted {row} (archived)"
        for row in deleted[:DELETIONS_LOGGED]
    )
    unnamed = len(deleted) - DELETIONS_LOGGED
    if unnamed > 0:
        rows = "row" if unnamed == 1 else "rows"
        lines.append(f"{window}: run {rating.run_id} deleted {unnamed} more {rows} (archived)")
    return lines
