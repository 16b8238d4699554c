"""What the cases time: the floors, `rate` as a user runs it, the engine in process, Dagster,
the naive baseline and a child's peak memory; and the proof that a re-run wrote nothing.

Every function takes the run's ``Bench`` and the hours it works on (a ``Span``), and
returns what it measured; none asserts a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from benchmarks import naive
from benchmarks.measure import (
    WalInspector,
    current_lsn,
    peak_rss_child,
    relation_files,
    table_writes,
    wal_bytes,
)
from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE
from rating_pipeline.warehouse.close_mark import month_of, next_month
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import RATING_WORK_MEM, rate_window
from rating_pipeline.warehouse.invoices import LinesBuilt, build_invoice
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import HOUR, Window, windows_between

if TYPE_CHECKING:
    from benchmarks.suite import Bench

SET_SERIAL = "SET max_parallel_workers_per_gather = 0"
SET_WORK_MEM = "SELECT set_config('work_mem', %(work_mem)s, false)"
# The aggregate floor: the sums a rater cannot avoid, serial, at the rating's work_mem.
# Every token class summed, grouped by service tier too (issue 12); the context tier is not
# classified: that work is the product's.
AGGREGATE_FLOOR = """
SELECT auth_id, model_id, base_model, service_tier, count(*), sum(input_tokens),
       sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
       sum(cache_write_1h_tokens), sum(reasoning_tokens), sum(audio_input_tokens),
       sum(audio_output_tokens), sum(image_input_tokens)
FROM billing_event
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY auth_id, model_id, base_model, service_tier
"""
# The same over many hours: one statement, the hour in the key (sessions are in UTC).
HOURLY_AGGREGATE_FLOOR = """
SELECT date_trunc('hour', occurred_at) AS hour, auth_id, model_id, base_model, service_tier,
       count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
       sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(reasoning_tokens),
       sum(audio_input_tokens), sum(audio_output_tokens), sum(image_input_tokens)
FROM billing_event
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY hour, auth_id, model_id, base_model, service_tier
"""
# The write floor: the span's rated_usage rows into an empty copy with its keys and checks,
# created untimed in the same transaction, which is rolled back.
CREATE_WRITE_FLOOR_TABLE = (
    "CREATE TEMP TABLE bench_write_floor (LIKE rated_usage INCLUDING ALL) ON COMMIT DROP"
)
WRITE_FLOOR = """
INSERT INTO bench_write_floor
SELECT * FROM rated_usage WHERE window_start >= %(start)s AND window_start < %(end)s
"""
# The invoice floor: the month's usage lines (one per account, model, tiers, token class and
# rate, the auths mapped through billing_account) from its rated_usage rows, into an empty
# copy of invoice_line (keys, checks), created untimed in the same transaction, rolled back.
CREATE_INVOICE_FLOOR_TABLE = (
    "CREATE TEMP TABLE bench_invoice_floor (LIKE invoice_line INCLUDING ALL) ON COMMIT DROP"
)
INVOICE_FLOOR = """
INSERT INTO bench_invoice_floor
SELECT %(month)s::timestamptz, coalesce(a.account_id, u.auth_id), 'usage', u.model_id,
       u.service_tier, u.context_tier, part.token_class, part.rate, sum(part.tokens),
       (sum(part.tokens) * part.rate * 0.000001)::numeric(50, 12),
       round_half_even((sum(part.tokens) * part.rate * 0.000001)::numeric(50, 12), 2),
       now(), 'bench-invoice-floor'
FROM rated_usage AS u
LEFT JOIN billing_account AS a ON a.auth_id = u.auth_id
CROSS JOIN LATERAL (VALUES
    ('input', u.input_tokens, u.input_rate_per_mtok),
    ('output', u.output_tokens, u.output_rate_per_mtok),
    ('cache_read', u.cache_read_tokens, u.cache_read_rate_per_mtok),
    ('cache_write', u.cache_write_tokens, u.cache_write_rate_per_mtok),
    ('cache_write_1h', u.cache_write_1h_tokens, u.cache_write_1h_rate_per_mtok),
    ('reasoning', u.reasoning_tokens, u.reasoning_rate_per_mtok),
    ('audio_input', u.audio_input_tokens, u.audio_input_rate_per_mtok),
    ('audio_output', u.audio_output_tokens, u.audio_output_rate_per_mtok),
    ('image_input', u.image_input_tokens, u.image_input_rate_per_mtok)
) AS part (token_class, tokens, rate)
WHERE u.window_start >= %(month)s::timestamptz AND u.window_start < %(next_month)s::timestamptz
  AND part.tokens <> 0
GROUP BY 2, 4, 5, 6, 7, 8
"""
INVOICE_TABLES = ("invoice_line",)
INVOICE_ROW_VERSIONS = (
    "SELECT md5(string_agg(ctid::text || ':' || xmin::text || ':' || xmax::text, ','"
    " ORDER BY ctid)) FROM invoice_line WHERE month = %(month)s"
)
EMPTY_INVOICES = "TRUNCATE invoice_line"
# Closes, adjustments, accounts and lines gone: every window open again (a benchmark's
# database only; the product has no reopen).
EMPTY_PERIODS = (
    "TRUNCATE rating_period_close, rating_period_close_total, rating_adjustment,"
    " rating_adjustment_archive, invoice_line, billing_account"
)
INVOICE_FACTS = """
SELECT (SELECT count(*) FROM rated_usage
        WHERE window_start >= %(month)s AND window_start < %(next_month)s),
       (SELECT count(DISTINCT window_start) FROM rated_usage
        WHERE window_start >= %(month)s AND window_start < %(next_month)s),
       (SELECT count(DISTINCT auth_id) FROM rated_usage
        WHERE window_start >= %(month)s AND window_start < %(next_month)s),
       (SELECT count(*) FROM billing_account WHERE auth_id IN (
            SELECT auth_id FROM rated_usage
            WHERE window_start >= %(month)s AND window_start < %(next_month)s)),
       (SELECT count(DISTINCT account_id) FROM billing_account WHERE auth_id IN (
            SELECT auth_id FROM rated_usage
            WHERE window_start >= %(month)s AND window_start < %(next_month)s)),
       (SELECT count(*) FROM rating_adjustment WHERE bill_month = %(month)s),
       (SELECT count(*) FILTER (WHERE kind = 'usage') FROM invoice_line WHERE month = %(month)s),
       (SELECT count(*) FROM invoice_line WHERE month = %(month)s)
"""
VACUUM_INVOICES = "VACUUM (ANALYZE) invoice_line"
EMPTY_OUTPUTS = (
    "TRUNCATE rated_usage, rating_exception, rated_usage_archive, rating_exception_archive,"
    " rating_log"
)
# As an hourly re-run finds them; and no autovacuum working through a first pass's new
# rows on one of the two cores while the next figure is taken.
VACUUM_OUTPUTS = "VACUUM (ANALYZE) rated_usage, rating_exception"
ANALYZE_OUTPUTS = "ANALYZE rated_usage, rating_exception"
VACUUM_PERIOD_OUTPUTS = "VACUUM (ANALYZE) rated_usage, rating_exception, rating_adjustment"
CHECKPOINT = "CHECKPOINT"
OUTPUT_TABLES = ("rated_usage", "rating_exception")
# Every row version of the span in one table: equal digests before and after mean no row
# was written, deleted or even locked (a lock sets xmax).
ROW_VERSIONS = """
SELECT md5(string_agg(ctid::text || ':' || xmin::text || ':' || xmax::text, ',' ORDER BY ctid))
FROM {table} WHERE window_start >= %(start)s AND window_start < %(end)s
"""
# What the ratings of one `rate` call say they wrote.
LOGGED_WRITES = """
SELECT coalesce(sum(rows_inserted + rows_updated + rows_deleted + exceptions_inserted
                    + exceptions_updated + exceptions_deleted), 0)
FROM rating_log WHERE run_id = %(run_id)s
"""
SPAN_FACTS = """
SELECT (SELECT count(*) FROM billing_event
        WHERE occurred_at >= %(start)s AND occurred_at < %(end)s),
       (SELECT count(*) FROM rated_usage
        WHERE window_start >= %(start)s AND window_start < %(end)s),
       (SELECT count(*) FROM rating_exception
        WHERE window_start >= %(start)s AND window_start < %(end)s)
"""
# 1% of a window's events change (every event whose number ends in 00).
CHANGE_ONE_PERCENT = """
UPDATE billing_event SET input_tokens = input_tokens + %(delta)s
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s AND right(event_id, 2) = '00'
"""
RUN_ID_PREFIX = ", run "
STATISTICS_SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Span:
    """The whole hours a case works on: ``[start, end)``."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, window: Window) -> Span:
        return cls(window.start, window.end)

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR

    @property
    def window(self) -> Window:
        """The span's one window; a case spanning several hours has none."""
        if self.hours != 1:
            raise ValueError(f"{self} is {self.hours} hours, not one window")
        return Window(self.start)

    def bound(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end}


@dataclass(frozen=True)
class Taken:
    """One figure: seconds (or the step's unit), what the step proved while taking it, and
    its parts."""

    value: float
    proof: WriteProof | None = None
    parts: tuple[tuple[str, float], ...] = ()  # (part, seconds): where a run's time went


@dataclass(frozen=True)
class WriteProof:
    """What a re-run wrote to the outputs: by its own log, by the tables' statistics
    counters, by the row versions of the span, and in the WAL (None: not readable here)."""

    logged: int
    counted: int
    versions_changed: bool
    wal_records: str | None
    wal_bytes: int

    @property
    def clean(self) -> bool:
        """Nothing written or locked, and the WAL, where readable, agrees."""
        return (
            self.logged == 0
            and self.counted == 0
            and not self.versions_changed
            and self.wal_records in (None, "0 records")
        )

    def describe(self) -> str:
        wal = "WAL not readable here" if self.wal_records is None else self.wal_records
        versions = "CHANGED" if self.versions_changed else "unchanged"
        return (
            f"{self.logged} rows written by its own count, {self.counted} counted written by the "
            f"tables' statistics, row versions {versions}, WAL records on the output tables: {wal}"
        )


def _session(bench: Bench, *, serial: bool = True) -> psycopg.Connection:
    """A connection for the floors: serial plans (unless not ``serial``) at the rating's
    work_mem (the rating also turns sorts off; the floors are plain statements, planned as
    PostgreSQL plans them)."""
    conn = connect(bench.url)
    if serial:
        conn.execute(SET_SERIAL)
    conn.execute(SET_WORK_MEM, {"work_mem": RATING_WORK_MEM})
    conn.commit()
    return conn


def aggregate_floor(bench: Bench, span: Span) -> Taken:
    """The aggregate floor (hourly groups over a span of several hours), every group
    received by the client (not converted to Python objects)."""
    return _aggregate_floor(bench, span, as_rated=False)


def aggregate_floor_as_rated(bench: Bench, span: Span) -> Taken:
    """The aggregate floor at the server's settings (a parallel worker allowed) under the
    rating's own (``set_rating_planner.sql``): whether the floor, too, would gain from the
    worker the rating's read takes."""
    return _aggregate_floor(bench, span, as_rated=True)


def _aggregate_floor(bench: Bench, span: Span, *, as_rated: bool) -> Taken:
    statement = AGGREGATE_FLOOR if span.hours == 1 else HOURLY_AGGREGATE_FLOOR
    with _session(bench, serial=not as_rated) as conn:
        if as_rated:
            conn.execute(load_sql("set_rating_planner"), {"work_mem": RATING_WORK_MEM})
        began = time.perf_counter()
        conn.execute(statement, span.bound())
        seconds = time.perf_counter() - began
        conn.rollback()
    return Taken(seconds)


def write_floor(bench: Bench, span: Span) -> Taken:
    """The span's rated_usage rows inserted into an empty copy of the table, rolled back."""
    with _session(bench) as conn:
        conn.execute(CREATE_WRITE_FLOOR_TABLE)
        began = time.perf_counter()
        conn.execute(WRITE_FLOOR, span.bound())
        seconds = time.perf_counter() - began
        conn.rollback()
    return Taken(seconds)


def invoice_floor(bench: Bench, span: Span) -> Taken:
    """The invoice floor over the span's month, into an empty copy of invoice_line, rolled
    back; at the server's settings, as a build runs."""
    month = month_of(span.start)
    with connect(bench.url) as conn:
        conn.execute(CREATE_INVOICE_FLOOR_TABLE)
        began = time.perf_counter()
        lines = conn.execute(
            INVOICE_FLOOR, {"month": month, "next_month": next_month(month)}
        ).rowcount
        seconds = time.perf_counter() - began
        conn.rollback()
    if lines <= 0:
        raise RuntimeError(f"the invoice floor of {month:%Y-%m} made no line")
    return Taken(seconds)


def _build(bench: Bench, span: Span) -> tuple[float, LinesBuilt]:
    """``build_invoice`` of the span's month, in process, on a connection of its own."""
    with connect(bench.url) as conn:
        began = time.perf_counter()
        built = build_invoice(conn, month_of(span.start), bench.run_id("invoice"))
        return time.perf_counter() - began, built


def build_invoice_lines(bench: Bench, span: Span) -> Taken:
    """The month's lines built (``build_invoice``) into an empty invoice_line."""
    seconds, built = _build(bench, span)
    if not built.inserted or built.updated or built.deleted:
        raise RuntimeError(f"a first build of an empty month wrote {built}")
    return Taken(seconds)


def rebuild_invoice_proved(bench: Bench, span: Span) -> Taken:
    """The month's lines built again, nothing changed, with the proof of what it wrote."""

    def rebuild(probe: psycopg.Connection) -> tuple[float, int]:
        seconds, built = _build(bench, span)
        return seconds, built.written

    versions: list[tuple[Any, dict[str, object]]] = [
        (INVOICE_ROW_VERSIONS, {"month": month_of(span.start)})
    ]
    return proved(bench, INVOICE_TABLES, versions, rebuild)


def invoice_facts(bench: Bench, span: Span) -> str:
    """What the month's invoice is built from, and the lines it holds."""
    month = month_of(span.start)
    with connect(bench.url) as conn:
        row = conn.execute(INVOICE_FACTS, {"month": month, "next_month": next_month(month)})
        rows, hours, auths, mapped, accounts, adjustments, usage, lines = row.fetchone() or [0] * 8
        conn.rollback()
    return (
        f"{rows:,} rated_usage rows in {hours:,} hour(s) of {month:%Y-%m} (no events), "
        f"{auths:,} auths, {mapped:,} of them billed to {accounts:,} accounts, {adjustments:,} "
        f"adjustments billed on the month; {lines:,} invoice lines ({usage:,} usage)"
    )


def empty_periods(bench: Bench, span: Span) -> None:
    bench.execute(EMPTY_PERIODS)


def empty_invoices(bench: Bench, span: Span) -> None:
    bench.execute(EMPTY_INVOICES)


def vacuum_invoices(bench: Bench, span: Span) -> None:
    bench.execute(VACUUM_INVOICES, autocommit=True)


def _instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def rate_command(bench: Bench, span: Span, jobs: int = 1) -> tuple[float, str]:
    """`python -m rating_pipeline rate` over ``span`` with ``--jobs``, as a user runs it: its
    wall time and its run id."""
    env = {
        **os.environ,
        DATABASE_URL_VARIABLE: bench.url,
        PRICEBOOK_DIR_VARIABLE: str(bench.pricebook_dir),
    }
    arguments = ["--from", _instant(span.start), "--to", _instant(span.end), "--jobs", str(jobs)]
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rating_pipeline", "rate", *arguments],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"rate {' '.join(arguments)} exited {done.returncode}: {done.stderr}")
    last = done.stdout.strip().splitlines()[-1]
    return seconds, last.rpartition(RUN_ID_PREFIX)[2]


def rate_span(bench: Bench, span: Span, jobs: int = 1) -> Taken:
    """`rate` over the span, timed."""
    return Taken(rate_command(bench, span, jobs)[0])


def rate_empty(bench: Bench, span: Span, jobs: int = 1) -> Taken:
    """`rate` over the layout's empty hour: what a call costs before any rating."""
    return rate_span(bench, Span.of(bench.layout.empty), jobs)


def rate_span_proved(bench: Bench, span: Span, jobs: int = 1) -> Taken:
    """`rate` over an already rated span, timed, with the proof of what it wrote."""

    def rate(probe: psycopg.Connection) -> tuple[float, int]:
        seconds, run_id = rate_command(bench, span, jobs)
        logged = probe.execute(LOGGED_WRITES, {"run_id": run_id}).fetchone()
        probe.rollback()
        return seconds, int(logged[0]) if logged else -1

    versions = [
        (sql.SQL(ROW_VERSIONS).format(table=sql.Identifier(table)), span.bound())
        for table in OUTPUT_TABLES
    ]
    return proved(bench, OUTPUT_TABLES, versions, rate)


def proved(
    bench: Bench,
    tables: Sequence[str],
    versions: Sequence[tuple[Any, dict[str, object]]],
    act: Callable[[psycopg.Connection], tuple[float, int]],
) -> Taken:
    """``act``'s seconds with the proof of what it wrote to ``tables``: the rows it says it
    wrote (``act`` returns them), the tables' statistics counters, the row versions that
    ``versions`` (statement, parameters) digest, and the WAL records on their files.
    ``act`` gets a probe connection, idle outside a transaction, to read its own log."""
    with connect(bench.url) as probe:
        inspector = WalInspector.find(probe)
        files = set().union(*(relation_files(probe, table) for table in tables))
        digests = _row_versions(probe, versions)
        counters = [table_writes(probe, table) for table in tables]
        lsn = current_lsn(probe)
        seconds, logged = act(probe)
        lsn_after = current_lsn(probe)
        time.sleep(STATISTICS_SETTLE_SECONDS)  # a backend reports its counters on exit
        counted = sum(
            (table_writes(probe, table) - before).total
            for table, before in zip(tables, counters, strict=True)
        )
        records = inspector.records(probe, lsn, lsn_after, files) if inspector else None
        proof = WriteProof(
            logged=logged,
            counted=counted,
            versions_changed=_row_versions(probe, versions) != digests,
            wal_records=records.describe() if records else None,
            wal_bytes=wal_bytes(probe, lsn, lsn_after),
        )
        probe.rollback()
    return Taken(seconds, proof)


def _row_versions(
    conn: psycopg.Connection, versions: Sequence[tuple[Any, dict[str, object]]]
) -> list[str | None]:
    digests = [conn.execute(statement, params).fetchone() for statement, params in versions]
    conn.rollback()
    return [row[0] if row else None for row in digests]


def rate_in_process(bench: Bench, span: Span) -> Taken:
    """The engine's own rating of the span's window (``rate_window``), in this process."""
    with connect(bench.url) as conn:
        began = time.perf_counter()
        rate_window(conn, span.window, bench.pricebooks, bench.run_id("engine"))
        return Taken(time.perf_counter() - began)


def rerate_one_percent_changed(bench: Bench, span: Span) -> Taken:
    """The engine re-rating the span's window after 1% of its events changed (the change,
    untimed, alternates +1 and -1 input token, so two runs restore the events)."""
    bench.changes += 1
    delta = 1 if bench.changes % 2 else -1
    bench.execute(CHANGE_ONE_PERCENT, {"delta": delta, **span.bound()})
    return rate_in_process(bench, span)


def restore_changed_events(bench: Bench, span: Span) -> None:
    """Undo an odd number of 1% changes."""
    if bench.changes % 2:
        bench.changes += 1
        bench.execute(CHANGE_ONE_PERCENT, {"delta": -1, **span.bound()})


def rate_naively(bench: Bench, span: Span) -> Taken:
    """The naive baseline (``benchmarks/naive.py``) over the span's window."""
    naive.prepare(bench.url)
    began = time.perf_counter()
    naive.rate_naively(bench.url, span.window, bench.pricebooks, bench.run_id("naive"))
    return Taken(time.perf_counter() - began)


def peak_memory(window: Callable[[Bench], Window]) -> Callable[[Bench, Span], Taken]:
    """A step: the peak RSS (MiB) of a child process rating ``window``."""

    def measure(bench: Bench, span: Span) -> Taken:
        arguments = [bench.url, str(bench.pricebook_dir), window(bench).key, bench.run_id("rss")]
        return Taken(peak_rss_child(arguments)[0])

    return measure


def empty_outputs(bench: Bench, span: Span) -> None:
    """Every output table emptied: the next rating of the span is a first rating."""
    bench.execute(EMPTY_OUTPUTS)


def vacuum_outputs(bench: Bench, span: Span) -> None:
    bench.execute(VACUUM_OUTPUTS, autocommit=True)


def checkpoint(bench: Bench) -> None:
    """CHECKPOINT where the role may: no figure pays for writing out what a set-up wrote."""
    try:
        bench.execute(CHECKPOINT, autocommit=True)
    except psycopg.Error as exc:
        bench.say(f"no CHECKPOINT ({exc.__class__.__name__}); measuring anyway")


def span_facts(bench: Bench, span: Span) -> tuple[int, int, int]:
    """(events, rated_usage rows, rating_exception rows) of the span as it stands."""
    with connect(bench.url) as conn:
        row = conn.execute(SPAN_FACTS, span.bound()).fetchone()
        conn.rollback()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# What Dagster's single-run backfill policy reads to run a partition range as one run.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def materialize(bench: Bench, span: Span) -> Taken:
    """One in-process Dagster run of the rating code location's assets and checks over the
    span (its partition, or its hours as one range run) on the production instance
    (``Bench.dagster_instance``); its parts are each Dagster step's own seconds."""
    import dagster as dg

    from rating_pipeline.definitions import defs
    from rating_pipeline.orchestration.resources import (
        PRICEBOOKS,
        WAREHOUSE,
        pricebooks_from_environment,
        warehouse_from_environment,
    )

    os.environ[DATABASE_URL_VARIABLE] = bench.url
    os.environ[PRICEBOOK_DIR_VARIABLE] = str(bench.pricebook_dir)
    resources = {WAREHOUSE: warehouse_from_environment(), PRICEBOOKS: pricebooks_from_environment()}
    windows = list(windows_between(span.start, span.end))
    one = len(windows) == 1
    tags = None if one else {RANGE_START_TAG: windows[0].key, RANGE_END_TAG: windows[-1].key}
    began = time.perf_counter()
    result = dg.materialize(
        [*(defs.assets or ()), *(defs.asset_checks or ())],  # type: ignore[list-item]
        run_config=QUIET,
        instance=bench.dagster_instance(),
        resources=resources,
        partition_key=windows[0].key if one else None,
        tags=tags,
        raise_on_error=False,
    )
    seconds = time.perf_counter() - began
    rated = {m.partition for m in result.asset_materializations_for_node("rated_usage")}
    missing = {window.key for window in windows} - rated
    if missing:
        raise RuntimeError(f"Dagster run {result.run_id} did not rate {sorted(missing)[:5]}")
    return Taken(seconds, parts=_step_seconds(result.all_events))


def _step_seconds(events: Sequence[Any]) -> tuple[tuple[str, float], ...]:
    parts = []
    for event in events:
        duration = getattr(event.event_specific_data, "duration_ms", None)
        if event.is_step_success and event.step_key and duration is not None:
            parts.append((str(event.step_key), duration / 1000))
    return tuple(parts)
