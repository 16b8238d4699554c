"""The benchmark cases (a) to (j) of issue 5, measured side by side on one data set."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks import naive
from benchmarks.data import Layout, Loaded, Scale, layout_for, load_all
from benchmarks.measure import (
    Samples,
    WalInspector,
    current_lsn,
    flush_statistics,
    peak_rss_child,
    relation_files,
    repeat,
    table_writes,
    timed,
    wal_bytes,
)
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.settings import DATABASE_URL_VARIABLE, PRICEBOOK_DIR_VARIABLE
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import RATING_WORK_MEM, WindowResult, rate_window
from rating_pipeline.windows import Window, windows_between

SET_SERIAL = "SET max_parallel_workers_per_gather = 0"
# (a), (b) and (c) take at least this many rounds (with --repeat > 1): the goals divide
# their medians, and on this 2-core VM single figures move by a third.
ROUNDS_MIN_RUNS = 5
# The floor runs with the memory a rating gives itself (engine.RATING_WORK_MEM): at the
# server's default 4MB its ~50k groups spill to disk, a cost a rating does not pay.
SET_WORK_MEM = "SELECT set_config('work_mem', %(work_mem)s, false)"
RESET_WORK_MEM = "RESET work_mem"
# (a) the floor: the bare aggregate a rater cannot avoid, serial, every group fetched.
FLOOR_AGGREGATE = """
SELECT auth_id, model_id, base_model, count(*), sum(input_tokens), sum(output_tokens)
FROM billing_event
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY auth_id, model_id, base_model
"""
# (a-write), a reference for (b): the write its output needs, whoever computes it. The
# window's rows of both output tables as a first run left them (vacuumed: reading them sets
# no hint bit), inserted into empty tables shaped like them (primary keys and checks, no
# trigger), created in the same transaction, which is rolled back: nothing stays behind.
WRITE_COPIES = {table: f"bench_{table}_copy" for table in ("rated_usage", "rating_exception")}
CREATE_WRITE_COPY = "CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)"
WRITE_OUTPUT_ROWS = "INSERT INTO {copy} SELECT * FROM {table} WHERE window_start = %(start)s"
TRUNCATE_OUTPUTS = (
    "TRUNCATE rated_usage, rating_exception, rated_usage_archive, rating_exception_archive,"
    " rating_log"
)
DELETE_WINDOW_RATED_USAGE = "DELETE FROM rated_usage WHERE window_start = %(start)s"
DELETE_WINDOW_RATING_EXCEPTION = "DELETE FROM rating_exception WHERE window_start = %(start)s"
VACUUM_OUTPUTS = "VACUUM (ANALYZE) rated_usage, rating_exception"
# After loading: hint bits and the visibility map set, dirty pages written out, so that no
# measurement pays for the load's writeback (a table of billed events is at rest).
VACUUM_EVENTS = "VACUUM (ANALYZE) billing_event"
CHECKPOINT = "CHECKPOINT"
# What any write to the outputs outside a rating does (migration 0004): the next rating of
# every window compares its rows instead of matching its latest rating's inputs.
FORCE_COMPARISON = "UPDATE rated_output_edit SET edits = edits + 1"
OUTPUT_TABLES = ("rated_usage", "rating_exception")
# (d): 1% of a window's events change (every event whose number ends in 00).
CHANGE_ONE_PERCENT = """
UPDATE billing_event SET input_tokens = input_tokens + %(delta)s
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s AND right(event_id, 2) = '00'
"""
# Every row version of a window: equal digests before and after mean no row was written,
# deleted or even locked (a lock sets xmax).
ROW_VERSIONS = """
SELECT count(*), md5(string_agg(ctid::text || ':' || xmin::text || ':' || xmax::text, ','
                                ORDER BY ctid))
FROM {table} WHERE window_start = %(start)s
"""
COUNT_WINDOW_ROWS = "SELECT count(*) FROM {table} WHERE window_start = %(start)s"
RATED_USAGE_COLUMNS = """
SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'rated_usage'
  AND column_name NOT IN ('window_start', 'window_end')
ORDER BY ordinal_position
"""
# (j): history copied from the hot window's rows into earlier windows, `offset + k` hours back.
CLONE_HISTORY = """
INSERT INTO rated_usage (window_start, window_end, {columns})
SELECT window_start - (%(offset)s + k) * interval '1 hour',
       window_end - (%(offset)s + k) * interval '1 hour', {columns}
FROM rated_usage CROSS JOIN generate_series(1, %(windows)s) AS k
WHERE window_start = %(start)s
"""
DELETE_HISTORY = "DELETE FROM rated_usage WHERE window_start < %(before)s"
# Pitfall 2 of the issue, made deterministic: statistics of rated_usage that describe other
# windows, frozen while a window is first written and then re-rated.
AUTOVACUUM_OFF = (
    "ALTER TABLE rated_usage SET (autovacuum_enabled = false);"
    " ALTER TABLE rating_exception SET (autovacuum_enabled = false)"
)
AUTOVACUUM_ON = (
    "ALTER TABLE rated_usage RESET (autovacuum_enabled);"
    " ALTER TABLE rating_exception RESET (autovacuum_enabled)"
)
ANALYZE_OUTPUTS = "ANALYZE rated_usage, rating_exception"
HISTORY_OFFSET_HOURS = 200
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    key: str
    label: str
    samples: Samples
    note: str = ""


@dataclass(frozen=True)
class Goal:
    """One goal of the issue, as a ratio measured in this run."""

    key: str
    target: str
    observed: str
    passed: bool


@dataclass
class Results:
    """Everything one run measured."""

    scale: Scale
    repeat: int
    loaded: Loaded | None = None
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def add(self, key: str, label: str, samples: Samples, note: str = "") -> Samples:
        self.rows.append(Row(key, label, samples, note))
        return samples

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(key)


@dataclass
class Bench:
    """One benchmark run's setting: the database, the data layout, the pricebooks."""

    url: str
    scale: Scale
    repeat: int
    pricebook_dir: Path
    pricebooks: Pricebooks
    say: Callable[[str], None]
    results: Results
    layout: Layout = field(init=False)
    runs: int = 0

    def __post_init__(self) -> None:
        self.layout = layout_for(self.scale)

    def run_id(self, label: str) -> str:
        self.runs += 1
        return f"bench-{label}-{self.runs}-{uuid.uuid4().hex[:8]}"

    def execute(self, statement: str | sql.Composed, params: dict[str, object] | None = None,
                autocommit: bool = False) -> None:  # fmt: skip
        with connect(self.url) as conn:
            conn.autocommit = autocommit
            conn.execute(statement, params)
            if not autocommit:
                conn.commit()

    def reset_outputs(self) -> None:
        self.execute(TRUNCATE_OUTPUTS)

    def delete_window_outputs(self, window: Window) -> None:
        self.execute(DELETE_WINDOW_RATED_USAGE, {"start": window.start})
        self.execute(DELETE_WINDOW_RATING_EXCEPTION, {"start": window.start})

    def rate(self, conn: psycopg.Connection, window: Window, label: str) -> WindowResult:
        return rate_window(conn, window, self.pricebooks, self.run_id(label))

    def change_one_percent(self, window: Window, delta: int) -> None:
        self.execute(CHANGE_ONE_PERCENT, {"delta": delta, "start": window.start, "end": window.end})


def floor(bench: Bench, window: Window) -> Samples:
    """(a): the serial GROUP BY over the window, all groups fetched; one warm-up first."""
    with floor_runner(bench, window) as aggregate:
        return repeat(bench.repeat, aggregate)


@contextmanager
def floor_runner(
    bench: Bench, window: Window, work_mem: str | None = RATING_WORK_MEM
) -> Iterator[Callable[[], None]]:
    """A callable that runs the floor's aggregate once, after one untimed warm-up.

    ``work_mem``: the session's, by default the rating's own; None keeps the server's.
    """
    with connect(bench.url) as conn:
        conn.execute(SET_SERIAL)
        if work_mem is None:
            conn.execute(RESET_WORK_MEM)
        else:
            conn.execute(SET_WORK_MEM, {"work_mem": work_mem})
        conn.commit()

        def aggregate() -> None:
            conn.execute(FLOOR_AGGREGATE, {"start": window.start, "end": window.end}).fetchall()
            conn.commit()

        aggregate()
        yield aggregate


def first_runs(bench: Bench, window: Window, label: str) -> tuple[Samples, WindowResult]:
    """The product rating ``window`` with empty outputs, ``repeat`` times (reset between)."""
    results: list[WindowResult] = []
    with connect(bench.url) as conn:

        def run() -> None:
            results.append(bench.rate(conn, window, label))

        samples = repeat(bench.repeat, run, before=bench.reset_outputs)
    return samples, results[-1]


def case_a_to_d(bench: Bench) -> None:
    """(a), (b) and (c) in rounds of one floor, one first run and one identical re-run.

    The machine's speed drifts over minutes; measured in rounds, the three figures of each
    ratio are taken seconds apart rather than one block after another.
    """
    results = bench.results
    hot = bench.layout.hot
    rounds = max(bench.repeat, ROUNDS_MIN_RUNS) if bench.repeat > 1 else 1
    bench.say(f"(a), (b), (c) over {hot.key}: {rounds} rounds of floor, first run, re-run")
    floors: list[float] = []
    default_floors: list[float] = []
    firsts: list[float] = []
    compared: list[float] = []
    compare_written: list[int] = []
    compare_changed: list[int] = []
    first_results: list[WindowResult] = []
    writes: list[float] = []
    with (
        floor_runner(bench, hot) as aggregate,
        floor_runner(bench, hot, work_mem=None) as default_aggregate,
        connect(bench.url) as conn,
    ):

        def floor_and_first_run() -> None:
            # The two floors take turns at going first, so neither always finds the
            # cache the other warmed.
            if len(floors) % 2 == 0:
                floors.append(timed(aggregate))
                default_floors.append(timed(default_aggregate))
            else:
                default_floors.append(timed(default_aggregate))
                floors.append(timed(aggregate))
            bench.reset_outputs()
            began = time.perf_counter()
            first_results.append(bench.rate(conn, hot, "b"))
            firsts.append(time.perf_counter() - began)
            # As an hourly re-run finds them: vacuumed and analyzed. Right after the first
            # write, autovacuum would work through its 48k new rows on one of the 2 cores
            # while the re-runs are timed.
            bench.execute(VACUUM_OUTPUTS, autocommit=True)
            writes.append(_write_output_copy(conn, hot))
            bench.execute(FORCE_COMPARISON)
            versions_before = [_row_versions(conn, t, hot) for t in OUTPUT_TABLES]
            began = time.perf_counter()
            compare_written.append(bench.rate(conn, hot, "c-compare").rows_written)
            compared.append(time.perf_counter() - began)
            if [_row_versions(conn, t, hot) for t in OUTPUT_TABLES] != versions_before:
                compare_changed.append(len(compared))

        c, c_note, c_clean = identical_reruns(
            bench, hot, before_each=floor_and_first_run, times=rounds
        )
    a = results.add(
        "a", "floor: bare GROUP BY over the hot hour, serial", Samples(tuple(floors)),
        f"work_mem {RATING_WORK_MEM}, as the rating's transaction",
    )  # fmt: skip
    a_default = results.add(
        "a-default", "the same floor at the server's default work_mem (not a goal's base)",
        Samples(tuple(default_floors)), "spills its groups to disk at 4MB",
    )  # fmt: skip
    first = first_results[-1]
    rollups = first.usage_counts.inserted
    exceptions = first.exception_counts.inserted
    results.facts["hot_rollups"] = f"{rollups:,}"
    results.facts["hot_exceptions"] = f"{exceptions:,}"
    b = results.add(
        "b", "product rates the hot hour, first run", Samples(tuple(firsts)),
        f"{rollups:,} rollups + {exceptions:,} exceptions inserted",
    )  # fmt: skip
    write = results.add(
        "a-write", "the write (b) needs: its rows inserted under the outputs' keys (no goal)",
        Samples(tuple(writes)),
        f"{rollups:,} + {exceptions:,} rows into empty copies of the output tables (primary"
        " keys, checks), rolled back",
    )  # fmt: skip
    results.add("c", "identical re-run", c, c_note)
    results.add(
        "c-compare", "identical re-run that compares every row (not a goal)",
        Samples(tuple(compared)),
        "after a write to the outputs outside a rating: the inputs are not matched; "
        f"{max(compare_written)} rows written, row versions "
        + ("unchanged" if not compare_changed else f"CHANGED in runs {compare_changed}"),
    )  # fmt: skip

    bench.say("(d) re-run after 1% of the events changed")
    updated: list[int] = []
    with connect(bench.url) as conn:
        samples = []
        for index in range(bench.repeat):
            bench.change_one_percent(hot, 1 if index % 2 == 0 else -1)
            began = time.perf_counter()
            result = bench.rate(conn, hot, "d")
            samples.append(time.perf_counter() - began)
            updated.append(result.usage_counts.updated)
        if bench.repeat % 2:
            bench.change_one_percent(hot, -1)
            bench.rate(conn, hot, "d-restore")
    d = results.add(
        "d", "re-run after 1% of the hot hour's events changed", Samples(tuple(samples)),
        f"{_span(updated)} rollups updated per run",
    )  # fmt: skip

    results.goals.append(ratio_goal("(b) <= 2.0 x (a) at 1M events", b, a, 2.0))
    c_ratio = c.median / a.median
    results.goals.append(
        Goal(
            "(c) <= 1.3 x (a), zero rows and zero WAL for rated_usage",
            "<= 1.3 x (a); 0 rows; 0 WAL records",
            f"{c_ratio:.2f} x; {c_clean}",
            c_ratio <= 1.3 and c_clean.startswith("0 rows written, 0 WAL"),
        )
    )
    results.facts["d_vs_a"] = f"{d.median / a.median:.2f}"
    results.details.append(
        "(a)-(c) round by round (each ratio of figures taken seconds apart; the goals divide "
        "the medians): (b)/(a) " + _ratios(firsts, floors) + "; (c)/(a) "
        + _ratios(c.values, floors) + "; floors " + ", ".join(f"{f:.3f}" for f in floors)
        + " s. Against the default-work_mem floor (a-default) instead, the ratios of medians"
        f" would be (b) {b.median / a_default.median:.2f} x and (c)"
        f" {c.median / a_default.median:.2f} x. The write alone (a-write) is"
        f" {write.median / a.median:.2f} x (a); (b) less it, round by round: "
        + _ratios([f - w for f, w in zip(firsts, writes, strict=True)], floors) + "."
    )  # fmt: skip


def _write_output_copy(conn: psycopg.Connection, window: Window) -> float:
    """(a-write) once: seconds to insert the window's output rows into empty copies of the
    output tables, created untimed in the same transaction, all rolled back."""
    tables = [
        {"copy": sql.Identifier(copy), "table": sql.Identifier(table)}
        for table, copy in WRITE_COPIES.items()
    ]
    try:
        for names in tables:
            conn.execute(sql.SQL(CREATE_WRITE_COPY).format(**names))
        began = time.perf_counter()
        for names in tables:
            conn.execute(sql.SQL(WRITE_OUTPUT_ROWS).format(**names), {"start": window.start})
        return time.perf_counter() - began
    finally:
        conn.rollback()


def _ratios(numerators: Sequence[float], denominators: Sequence[float]) -> str:
    return ", ".join(f"{n / d:.2f}" for n, d in zip(numerators, denominators, strict=True))


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def ratio_goal(text: str, numerator: Samples, denominator: Samples, limit: float) -> Goal:
    ratio = numerator.median / denominator.median
    return Goal(text, f"<= {limit} x", f"{ratio:.2f} x", ratio <= limit)


def _row_versions(conn: psycopg.Connection, table: str, window: Window) -> tuple[int, str]:
    query = sql.SQL(ROW_VERSIONS).format(table=sql.Identifier(table))
    row = conn.execute(query, {"start": window.start}).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0]), str(row[1])


def identical_reruns(
    bench: Bench,
    window: Window,
    before_each: Callable[[], None] | None = None,
    times: int | None = None,
) -> tuple[Samples, str, str]:
    """(c): re-rate the already-rated window; prove per run that nothing was written.

    ``before_each`` runs (untimed, unprobed) ahead of each re-run; it must leave the window
    rated. ``times``: how many re-runs, ``bench.repeat`` by default.

    Per run: the row versions (ctid, xmin, xmax) of both output tables, their statistics
    counters (rows inserted, updated, deleted), the WAL the run wrote in total (LSN
    difference) and, where the server's WAL is readable here, the WAL records touching the
    output tables' files (pg_waldump).
    """
    samples: list[float] = []
    written: list[int] = []
    changed_versions = 0
    wal_total: list[int] = []
    wal_tables: list[str] = []
    tables = OUTPUT_TABLES
    with connect(bench.url) as probe, connect(bench.url) as conn:
        inspector = WalInspector.find(probe)
        rows = 0
        for _ in range(bench.repeat if times is None else times):
            if before_each is not None:
                before_each()
            files = set().union(*(relation_files(probe, t) for t in tables))
            versions_before = [_row_versions(probe, t, window) for t in tables]
            counters_before = [table_writes(probe, t) for t in tables]
            lsn_before = current_lsn(probe)
            began = time.perf_counter()
            result = bench.rate(conn, window, "c")
            samples.append(time.perf_counter() - began)
            lsn_after = current_lsn(probe)
            flush_statistics(conn)
            time.sleep(0.2)
            counters_after = [table_writes(probe, t) for t in tables]
            versions_after = [_row_versions(probe, t, window) for t in tables]
            delta = [after - before for after, before in zip(counters_after, counters_before,
                                                               strict=True)]  # fmt: skip
            written.append(sum(d.total for d in delta) + result.rows_written)
            changed_versions += sum(
                1 for a, b in zip(versions_before, versions_after, strict=True) if a != b
            )
            rows = versions_after[0][0]
            wal_total.append(wal_bytes(probe, lsn_before, lsn_after))
            if inspector is not None:
                records = inspector.records(probe, lsn_before, lsn_after, files)
                wal_tables.append(records.describe() if records else "unreadable")
    if not wal_tables:
        wal_records = "not measured (WAL not readable here)"
    elif len(set(wal_tables)) == 1:
        wal_records = f"{wal_tables[0]} in each of {len(wal_tables)} runs"
    else:
        wal_records = "; ".join(wal_tables)
    clean_wal = bool(wal_tables) and all(w == "0 records" for w in wal_tables)
    summary = (
        f"{max(written)} rows written, {'0' if clean_wal else 'some'} WAL records for the"
        f" output tables, row versions {'unchanged' if not changed_versions else 'CHANGED'}"
    )
    if not clean_wal:
        summary = summary.replace("some WAL", f"WAL: {wal_records};")
    bench.results.details.append(
        f"(c) per run: WAL written in total {', '.join(f'{w:,}' for w in wal_total)} bytes "
        f"(rating_log row, the temporary tables' catalog entries, commit); WAL records "
        f"touching rated_usage/rating_exception (heap, indexes, TOAST): {wal_records}; "
        f"rows written per statistics counters and run counts: {written}; xmin/xmax/ctid of "
        f"all {rows:,} rows of the window {'unchanged' if not changed_versions else 'CHANGED'}."
    )
    note = f"{max(written)} rows written; WAL for outputs: {wal_records}"
    return Samples(tuple(samples)), note, summary


def case_e(bench: Bench) -> None:
    bench.say("(e) the naive baseline (pandas + Decimal + row-by-row upsert)")
    hot = bench.layout.hot
    written: list[int] = []

    def run() -> None:
        written.append(naive.rate_naively(bench.url, hot, bench.pricebooks, bench.run_id("e")))

    e = repeat(bench.repeat, run, before=lambda: naive.prepare(bench.url))
    bench.results.add(
        "e", "naive: pandas read_sql, groupby, Decimal, upsert per row", e,
        f"{written[-1]:,} rows upserted one statement each",
    )  # fmt: skip
    b = bench.results.row("b").samples
    ratio = e.median / b.median
    bench.results.goals.append(Goal("(e) >= 10 x (b)", ">= 10 x", f"{ratio:.1f} x", ratio >= 10))


def _dagster(bench: Bench) -> tuple[object, object]:
    """The product's assets and checks, and an ephemeral instance, for in-process runs."""
    import dagster as dg

    os.environ[DATABASE_URL_VARIABLE] = bench.url
    os.environ[PRICEBOOK_DIR_VARIABLE] = str(bench.pricebook_dir)
    return dg, dg.DagsterInstance.ephemeral()


def _materialize(
    bench: Bench,
    instance: object,
    windows: list[Window],
    steps: dict[str, list[float]] | None = None,
) -> float:
    """Seconds for one in-process ``materialize()`` of ``windows`` (one run), checks included.

    ``steps`` collects each step's own duration (seconds), by step key.
    """
    import dagster as dg

    from rating_pipeline.orchestration.assets import pricebook, rated_usage, window_usage
    from rating_pipeline.orchestration.checks import RATED_USAGE_CHECKS
    from rating_pipeline.orchestration.resources import (
        PRICEBOOKS,
        WAREHOUSE,
        pricebooks_from_environment,
        warehouse_from_environment,
    )

    assets = [pricebook, window_usage, rated_usage, *RATED_USAGE_CHECKS]
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    resources = {WAREHOUSE: warehouse_from_environment(), PRICEBOOKS: pricebooks_from_environment()}
    assert isinstance(instance, dg.DagsterInstance)
    began = time.perf_counter()
    if len(windows) == 1:
        result = dg.materialize(
            assets, run_config=quiet, instance=instance, resources=resources,
            partition_key=windows[0].key, raise_on_error=False,
        )  # fmt: skip
    else:
        tags = {RANGE_START_TAG: windows[0].key, RANGE_END_TAG: windows[-1].key}
        result = dg.materialize(
            assets, run_config=quiet, instance=instance, resources=resources, tags=tags,
            raise_on_error=False,
        )  # fmt: skip
    seconds = time.perf_counter() - began
    for event in result.all_events:
        if steps is not None and event.is_step_success and event.step_key:
            duration = getattr(event.event_specific_data, "duration_ms", None)
            if duration is not None:
                steps.setdefault(event.step_key, []).append(float(duration) / 1000.0)
    rated = {m.partition for m in result.asset_materializations_for_node("rated_usage")}
    missing = {w.key for w in windows} - rated
    if missing:
        raise RuntimeError(f"Dagster run {result.run_id} did not rate {sorted(missing)[:5]}")
    return seconds


def case_f(bench: Bench) -> None:
    bench.say("(f) the hot hour through Dagster's materialize(), in process")
    hot = bench.layout.hot
    _, instance = _dagster(bench)
    bench.reset_outputs()
    _materialize(bench, instance, [bench.layout.rss_small])  # warm-up: definitions, imports
    samples = []
    steps: dict[str, list[float]] = {}
    for _ in range(bench.repeat):
        bench.reset_outputs()
        samples.append(_materialize(bench, instance, [hot], steps))
    bench.results.details.append(
        "(f) Dagster steps, median seconds per run: "
        + ", ".join(f"{key} {Samples(tuple(v)).median:.2f}" for key, v in sorted(steps.items()))
        + "; the rest of the run is Dagster's own work (run, events, in-process executor)."
    )
    f = bench.results.add(
        "f", "Dagster materialize() of the hot hour, checks included", Samples(tuple(samples)),
        "ephemeral instance, in-process executor; first run (outputs reset)",
    )  # fmt: skip
    b = bench.results.row("b").samples
    overhead = f.median - b.median
    bench.results.goals.append(
        Goal("(f) - (b) <= 3 s", "<= 3 s", f"{overhead:.2f} s", overhead <= 3.0)
    )


def case_g(bench: Bench) -> None:
    layout = bench.layout
    windows = list(windows_between(layout.backfill_start, layout.backfill_end))
    bench.say(f"(g) backfill of {len(windows)} hours: one range run vs single-window runs")
    _, instance = _dagster(bench)
    ranged = []
    steps: dict[str, list[float]] = {}
    for _ in range(bench.repeat):
        bench.reset_outputs()
        ranged.append(_materialize(bench, instance, windows, steps))
    bench.results.details.append(
        "(g) range run's Dagster steps, median seconds per run: "
        + ", ".join(f"{key} {Samples(tuple(v)).median:.2f}" for key, v in sorted(steps.items()))
    )
    sums = []
    with connect(bench.url) as conn:
        for _ in range(bench.repeat):
            bench.reset_outputs()
            total = 0.0
            for window in windows:
                began = time.perf_counter()
                bench.rate(conn, window, "g")
                total += time.perf_counter() - began
            sums.append(total)
    g_range = bench.results.add(
        "g-range", f"backfill, {len(windows)} windows as ONE Dagster run (range)",
        Samples(tuple(ranged)), "single-run backfill policy, checks included",
    )  # fmt: skip
    g_sum = bench.results.add(
        "g-sum", f"sum of the {len(windows)} windows' first runs (b), one by one",
        Samples(tuple(sums)), "engine rate_window per window",
    )  # fmt: skip
    # One pass only: 168 Dagster runs take minutes, and the comparison is not a goal.
    bench.reset_outputs()
    began = time.perf_counter()
    for window in windows:
        _materialize(bench, instance, [window])
    bench.results.add(
        "g-runs", f"{len(windows)} single-partition Dagster runs, one after another",
        Samples((time.perf_counter() - began,)),
        "in-process materialize() per partition, checks included; measured once",
    )  # fmt: skip
    limit = 1.2 * g_sum.median + 15.0
    bench.results.goals.append(
        Goal(
            "(g) range run <= 1.2 x sum of its windows' (b) + 15 s",
            f"<= {limit:.1f} s",
            f"{g_range.median:.1f} s",
            g_range.median <= limit,
        )
    )
    scale = bench.scale
    backfill_events = len(windows) * scale.week_hour_events
    bench.results.facts["backfill_events"] = f"{backfill_events:,}"


def case_h(bench: Bench) -> None:
    bench.say("(h) peak RSS, same rollups, small and large window")
    layout = bench.layout
    measured: dict[str, Samples] = {}
    for key, window, events in (
        ("h-small", layout.rss_small, bench.scale.rss_small_events),
        ("h-large", layout.rss_large, bench.scale.rss_large_events),
    ):
        peaks = []
        for _ in range(bench.repeat):
            bench.delete_window_outputs(window)
            peak, _ = peak_rss_child(
                [bench.url, str(bench.pricebook_dir), window.key, bench.run_id(key)]
            )
            peaks.append(peak)
        rollups = bench.scale.rss_principals * 30
        measured[key] = bench.results.add(
            key, f"peak RSS rating a window of {events:,} events", Samples(tuple(peaks), "MiB"),
            f"{rollups:,} rollups; whole child process (VmHWM)",
        )  # fmt: skip
    growth = measured["h-large"].median - measured["h-small"].median
    bench.results.goals.append(
        Goal("(h) 1M peak <= 10k peak + 64 MiB", "<= +64 MiB", f"{growth:+.1f} MiB", growth <= 64)
    )


def case_i(bench: Bench) -> None:
    wide = bench.layout.wide
    bench.say(f"(i) the wide window {wide.key}")
    i_floor = bench.results.add("i-floor", "floor over the wide window", floor(bench, wide))
    samples, result = first_runs(bench, wide, "i")
    rollups = result.usage_counts.inserted + result.exception_counts.inserted
    bench.results.add(
        "i", f"product rates a window of {rollups:,} rollups, first run", samples,
        f"{bench.scale.wide_events:,} events; {result.usage_counts.inserted:,} billed, "
        f"{result.exception_counts.inserted:,} excepted; {samples.median / i_floor.median:.2f} x "
        "its floor",
    )  # fmt: skip
    bench.results.facts["wide_rollups"] = f"{rollups:,}"


# (d-stale)/(d-fresh) and (j) compare arms that cannot interleave run by run (statistics
# and history cannot come and go between runs): a few more runs per arm steady their
# medians against the machine's drift.
J_MIN_RUNS = 5


def case_stale(bench: Bench) -> None:
    """Pitfall 2: the (d) re-rate right after the window's first write, while rated_usage's
    statistics still describe another window (autovacuum held off so the case is
    deterministic; in production it depends on when autoanalyze last ran), against the same
    re-rates once the statistics describe the window (d-fresh, analyzed after the first
    write). Blocks of each arm alternate stale, fresh, fresh, stale, each from the same start
    (outputs emptied, the window's first write), so that neither the machine's drift nor
    the dead rows a block leaves behind weigh on one arm."""
    hot = bench.layout.hot
    bench.say("(d-stale) re-run with stale statistics on rated_usage, against fresh ones")
    runs = max(bench.repeat, J_MIN_RUNS) if bench.repeat > 1 else 1
    arms = ("stale", "fresh", "fresh", "stale") if runs > 1 else ("stale", "fresh")
    per_block = math.ceil(runs * 2 / len(arms))
    samples: dict[str, list[float]] = {"stale": [], "fresh": []}
    bench.execute(AUTOVACUUM_OFF)
    try:
        with connect(bench.url) as conn:
            for arm in arms:
                bench.reset_outputs()
                if arm == "stale":
                    bench.rate(conn, bench.layout.wide, "stale-other")
                    bench.execute(ANALYZE_OUTPUTS)
                    bench.reset_outputs()
                bench.rate(conn, hot, f"{arm}-first")
                if arm == "fresh":
                    bench.execute(ANALYZE_OUTPUTS)
                block = _rerates(bench, conn, hot, f"d-{arm}", per_block)
                samples[arm].extend(block.values)
    finally:
        bench.execute(AUTOVACUUM_ON)
        bench.execute(ANALYZE_OUTPUTS)
    stale = bench.results.add(
        "d-stale", "(d) right after the first write, rated_usage statistics stale",
        Samples(tuple(samples["stale"])), "statistics from another window, autovacuum held off",
    )  # fmt: skip
    fresh = bench.results.add(
        "d-fresh", "the same re-rates with the statistics analyzed after the first write",
        Samples(tuple(samples["fresh"])),
        "pitfall 2's base; blocks alternate stale, fresh, fresh, stale",
    )  # fmt: skip
    ratio = stale.median / fresh.median
    bench.results.goals.append(
        Goal("pitfall 2: stale statistics, (d-stale) <= 1.5 x (d-fresh)", "<= 1.5 x",
             f"{ratio:.2f} x", ratio <= 1.5)
    )  # fmt: skip
    d = bench.results.row("d").samples
    bench.results.details.append(
        f"Pitfall 2 against (d), measured minutes earlier: (d-stale) {stale.median / d.median:.2f}"
        f" x (d); (d-fresh) {fresh.median / d.median:.2f} x (d)."
    )


def _rerates(
    bench: Bench, conn: psycopg.Connection, window: Window, label: str, runs: int
) -> Samples:
    samples = []
    for index in range(runs):
        bench.change_one_percent(window, 1 if index % 2 == 0 else -1)
        samples.append(timed(lambda: bench.rate(conn, window, label)))
    if runs % 2:
        bench.change_one_percent(window, -1)
        bench.rate(conn, window, f"{label}-restore")
    return Samples(tuple(samples))


def flush_setup_writes(bench: Bench) -> None:
    """CHECKPOINT (where allowed), so that the checkpointer does not write the set-up's
    dirty pages during the runs that follow."""
    try:
        bench.execute(CHECKPOINT, autocommit=True)
    except psycopg.Error as exc:
        bench.say(f"no CHECKPOINT ({exc.__class__.__name__}); measuring anyway")


def case_j(bench: Bench) -> None:
    hot = bench.layout.hot
    bench.say("(j) re-rate with and without history in rated_usage")
    bench.reset_outputs()
    with connect(bench.url) as conn:
        first = bench.rate(conn, hot, "j-first")
        bench.execute(ANALYZE_OUTPUTS)  # both arms plan with fresh statistics (see d-stale)
        flush_setup_writes(bench)
        runs = max(bench.repeat, J_MIN_RUNS) if bench.repeat > 1 else 1
        none = _rerates(bench, conn, hot, "j-none", runs)
        per_window = first.usage_counts.inserted
        windows = max(1, math.ceil(bench.scale.history_rows / max(per_window, 1)))
        with connect(bench.url) as writer:
            columns = [r[0] for r in writer.execute(RATED_USAGE_COLUMNS).fetchall()]
            statement = sql.SQL(CLONE_HISTORY).format(
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns)
            )
            writer.execute(
                statement, {"offset": HISTORY_OFFSET_HOURS, "windows": windows, "start": hot.start}
            )
            writer.commit()
        bench.execute(ANALYZE_OUTPUTS)
        flush_setup_writes(bench)  # 2,000,000 rows of history were just written
        history = windows * per_window
        with_history = _rerates(bench, conn, hot, "j-history", runs)
    bench.execute(DELETE_HISTORY, {"before": bench.layout.backfill_start})
    bench.execute(VACUUM_OUTPUTS, autocommit=True)
    bench.results.add("j-none", "re-rate (1% changed), rated_usage holding one window", none)
    bench.results.add(
        "j-history", f"re-rate (1% changed), {history:,} rows of history in rated_usage",
        with_history, f"history in {windows} other windows",
    )  # fmt: skip
    ratio = with_history.median / none.median
    bench.results.goals.append(
        Goal("(j) history costs <= 1.2 x", "<= 1.2 x", f"{ratio:.2f} x", ratio <= 1.2)
    )


CASES: dict[str, Callable[[Bench], None]] = {
    "abcd": case_a_to_d,
    "e": case_e,
    "f": case_f,
    "g": case_g,
    "h": case_h,
    "i": case_i,
    "stale": case_stale,
    "j": case_j,
}


def settle(bench: Bench) -> None:
    """VACUUM the events, CHECKPOINT (where allowed) and flush the OS's dirty pages."""
    bench.execute(VACUUM_EVENTS, autocommit=True)
    try:
        bench.execute(CHECKPOINT, autocommit=True)
    except psycopg.Error as exc:
        bench.say(f"no CHECKPOINT ({exc.__class__.__name__}); measuring anyway")
    os.sync()


def run(bench: Bench, load: bool = True) -> Results:
    """Load the data (unless told not to), then every case in order; return the results."""
    if load:
        bench.say(f"generating the {bench.scale.name} data set ...")
        with connect(bench.url) as conn:
            bench.results.loaded = load_all(conn, bench.scale)
        loaded = bench.results.loaded
        bench.say(f"loaded {loaded.events:,} events in {loaded.seconds:.1f} s; settling")
        settle(bench)
    bench.reset_outputs()
    bench.execute(VACUUM_OUTPUTS, autocommit=True)
    for case in CASES.values():
        case(bench)
    bench.reset_outputs()
    return bench.results
