"""The benchmark's cases, as a table: what each measures, how, and the goal it is held to.

The goals are issue 11's ("Goals, measured"); the four after them keep issue 5's goals
that still describe the product; the last two are issue 14's. ``benchmarks/README.md``
explains each case.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from psycopg import sql

from benchmarks import invoice_month, steps
from benchmarks.data import Layout
from benchmarks.runner import AT_LEAST, AT_MOST_PLUS, Bench, Case, Goal, Net, Step, warm
from benchmarks.steps import Span
from rating_pipeline.warehouse.close_mark import next_month
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import Window

# Pitfall 2 of issue 5: statistics of rated_usage that describe another window, frozen
# while a window is first written and then re-rated.
AUTOVACUUM_OFF = (
    "ALTER TABLE rated_usage SET (autovacuum_enabled = false);"
    " ALTER TABLE rating_exception SET (autovacuum_enabled = false)"
)
AUTOVACUUM_ON = (
    "ALTER TABLE rated_usage RESET (autovacuum_enabled);"
    " ALTER TABLE rating_exception RESET (autovacuum_enabled)"
)
# History: the hot hour's rows copied into earlier windows, `offset + k` hours back.
RATED_USAGE_COLUMNS = """
SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'rated_usage'
  AND column_name NOT IN ('window_start', 'window_end')
ORDER BY ordinal_position
"""
CLONE_HISTORY = """
INSERT INTO rated_usage (window_start, window_end, {columns})
SELECT window_start - (%(offset)s + k) * interval '1 hour',
       window_end - (%(offset)s + k) * interval '1 hour', {columns}
FROM rated_usage CROSS JOIN generate_series(1, %(windows)s) AS k
WHERE window_start = %(start)s
"""
HISTORY_ROWS = "SELECT count(*) FROM rated_usage WHERE window_start < %(start)s"
DELETE_HISTORY = "DELETE FROM rated_usage WHERE window_start < %(start)s"
HISTORY_OFFSET_HOURS = 200
# The month's `rate --jobs`: the benchmark machine's two cores (docs/warehouse.md).
MONTH_JOBS = 2


def hot(layout: Layout) -> Span:
    return Span.of(layout.hot)


def wide(layout: Layout) -> Span:
    return Span.of(layout.wide)


def month(layout: Layout) -> Span:
    return Span(layout.month_start, layout.month_end)


def week(layout: Layout) -> Span:
    return Span(layout.backfill_start, layout.backfill_end)


def rss_large(layout: Layout) -> Span:
    return Span.of(layout.rss_large)


def invoiced(layout: Layout) -> Span:
    return Span(layout.invoice_month, next_month(layout.invoice_month))


def closable(layout: Layout) -> Span:
    return Span.of(layout.closable)


RATE_EMPTY = Step(
    "rate-empty",
    "`rate` over an hour without events: start-up, pricebooks, connection",
    steps.rate_empty,
)
ENGINE_RATING = Step(
    "engine-rating",
    "the engine's own first rating of the hour (rate_window, in process)",
    steps.rate_in_process,
    prepare=steps.empty_outputs,
)


def rating_case(
    name: str, what: str, span: Callable[[Layout], Span], rounds: int, jobs: int = 1
) -> Case:
    """A first rating and an identical re-run by `rate` (with ``--jobs``), against the
    floors, in rounds."""
    rate = "`rate`" if jobs == 1 else f"`rate --jobs {jobs}`"
    return Case(
        name=name,
        what=what,
        span=span,
        setup=warm,
        min_rounds=rounds,
        steps=(
            Step(
                "aggregate-floor",
                "one serial GROUP BY of the events (count, token sums), at the rating's work_mem",
                steps.aggregate_floor,
            ),
            Step(
                "aggregate-floor-as-rated",
                "the same GROUP BY under the rating's planner settings (a parallel worker "
                "allowed); for comparison, in no goal",
                steps.aggregate_floor_as_rated,
            ),
            Step(
                "rate-empty",
                f"{rate} over an hour without events: start-up, pricebooks, connection",
                functools.partial(steps.rate_empty, jobs=jobs),
            ),
            Step(
                "rate-first",
                f"{rate} over it, outputs empty",
                functools.partial(steps.rate_span, jobs=jobs),
                prepare=steps.empty_outputs,
            ),
            Step(
                "write-floor",
                "its rated_usage rows inserted into an empty copy (keys, checks), rolled back",
                steps.write_floor,
                prepare=steps.vacuum_outputs,
            ),
            Step(
                "rate-identical",
                f"{rate} over it again, nothing changed",
                functools.partial(steps.rate_span_proved, jobs=jobs),
            ),
        ),
        nets=(
            Net(
                "first-rating",
                f"first rating: {rate} less {rate} on an empty hour",
                "rate-first",
                "rate-empty",
            ),
            Net(
                "identical-rerun",
                f"identical re-run: {rate} less {rate} on an empty hour",
                "rate-identical",
                "rate-empty",
            ),
        ),
        goals=(
            Goal(
                "first rating <= 1.5 x (aggregate floor + write floor)",
                "first-rating",
                ("aggregate-floor", "write-floor"),
                1.5,
            ),
            Goal(
                "identical re-run <= 2.0 x aggregate floor, writing and locking nothing",
                "identical-rerun",
                ("aggregate-floor",),
                2.0,
                clean=True,
            ),
        ),
    )


def warm_dagster(bench: Bench, span: Span) -> None:
    """One untimed Dagster run of a small window: definitions loaded, imports done."""
    steps.materialize(bench, Span.of(bench.layout.rss_small))


def without_statistics(bench: Bench, span: Span) -> None:
    bench.execute(AUTOVACUUM_OFF)


def with_statistics(bench: Bench, span: Span) -> None:
    bench.execute(AUTOVACUUM_ON)
    steps.restore_changed_events(bench, span)
    steps.empty_outputs(bench, span)
    bench.execute(steps.ANALYZE_OUTPUTS)


def first_write_stale(bench: Bench, span: Span) -> None:
    """The window's first write, rated_usage's statistics describing another window."""
    steps.empty_outputs(bench, span)
    steps.rate_in_process(bench, Span.of(bench.layout.wide))
    bench.execute(steps.ANALYZE_OUTPUTS)
    steps.empty_outputs(bench, span)
    steps.rate_in_process(bench, span)


def first_write_fresh(bench: Bench, span: Span) -> None:
    """The window's first write, rated_usage analyzed after it."""
    steps.empty_outputs(bench, span)
    steps.rate_in_process(bench, span)
    bench.execute(steps.ANALYZE_OUTPUTS)


def history_present(bench: Bench, span: Span) -> None:
    """``scale.history_rows`` rows of other windows in rated_usage, vacuumed and analyzed."""
    with connect(bench.url) as conn:
        row = conn.execute(HISTORY_ROWS, {"start": span.start}).fetchone()
        if row and row[0]:
            return
        columns = [r[0] for r in conn.execute(RATED_USAGE_COLUMNS).fetchall()]
        rows = conn.execute(steps.SPAN_FACTS, span.bound()).fetchone()
        per_window = max(int(rows[1]) if rows else 1, 1)
        statement = sql.SQL(CLONE_HISTORY).format(
            columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        windows = -(-bench.scale.history_rows // per_window)
        conn.execute(
            statement, {"offset": HISTORY_OFFSET_HOURS, "windows": windows, "start": span.start}
        )
        conn.commit()
    steps.vacuum_outputs(bench, span)  # or autovacuum would, during the runs that follow
    steps.checkpoint(bench)


def history_absent(bench: Bench, span: Span) -> None:
    """rated_usage holding the hot hour's window only, vacuumed and analyzed."""
    with connect(bench.url) as conn:
        deleted = conn.execute(DELETE_HISTORY, {"start": span.start}).rowcount
        conn.commit()
    if deleted:
        steps.vacuum_outputs(bench, span)


def no_history(bench: Bench, span: Span) -> None:
    history_absent(bench, span)
    steps.restore_changed_events(bench, span)
    steps.empty_outputs(bench, span)


def rated_month(bench: Bench, span: Span) -> None:
    """The invoiced month's rated hours, accounts and adjustments, written and vacuumed;
    the floor once, untimed: the rows in the caches."""
    steps.empty_periods(bench, span)
    steps.empty_outputs(bench, span)
    bench.say(f"writing {bench.scale.invoice_hours * bench.scale.invoice_rollups:,} rows of "
              f"rated_usage for {span.start:%Y-%m} ...")  # fmt: skip
    with connect(bench.url) as conn:
        version = bench.pricebooks.version_for(Window(span.start))
        invoice_month.generate(conn, bench.scale, span.start, version)
    steps.checkpoint(bench)
    steps.invoice_floor(bench, span)


def no_rated_month(bench: Bench, span: Span) -> None:
    steps.empty_periods(bench, span)
    steps.empty_outputs(bench, span)


def rated_closable(bench: Bench, span: Span) -> None:
    """The closable hour rated, open; vacuumed and checkpointed."""
    no_close(bench, span)
    steps.rate_in_process(bench, span)
    steps.vacuum_outputs(bench, span)
    steps.checkpoint(bench)


def open_again(bench: Bench, span: Span) -> None:
    """The hour open, its rows converged to its events (untimed), then vacuumed with the
    adjustments, as an hourly re-run finds them. Reopening is the benchmark's alone: it
    deletes the close, which the product never does."""
    steps.empty_periods(bench, span)
    steps.rate_in_process(bench, span)
    bench.execute(steps.VACUUM_PERIOD_OUTPUTS, autocommit=True)


def closed_again(bench: Bench, span: Span) -> None:
    """The hour as ``open_again`` leaves it, then closed through its end: its rows frozen."""
    open_again(bench, span)
    with connect(bench.url) as conn:
        close_period(conn, span.end, closed_by="benchmark")


def no_close(bench: Bench, span: Span) -> None:
    """The hour's events as loaded, no close, no outputs."""
    steps.restore_changed_events(bench, span)
    steps.empty_periods(bench, span)
    steps.empty_outputs(bench, span)


RERATE = "the engine re-rating the hour after 1% of its events changed"

CASES: tuple[Case, ...] = (
    rating_case("hot-hour", "the project's hot hour", hot, rounds=5),
    rating_case("wide-hour", "an hour of about 10 events per rollup", wide, rounds=5),
    rating_case(
        "month",
        "a month of hours, rated by one `rate --jobs 2` call (the machine's 2 cores)",
        month,
        rounds=3,
        jobs=MONTH_JOBS,
    ),
    Case(
        name="dagster-hour",
        what="the hot hour materialized through Dagster, checks included",
        span=hot,
        setup=warm_dagster,
        alternate=True,
        steps=(
            ENGINE_RATING,
            Step(
                "materialize",
                "one Dagster run of the hour's partition, checks included "
                "(in process, the production instance)",
                steps.materialize,
                prepare=steps.empty_outputs,
            ),
        ),
        goals=(
            Goal(
                "materialize <= 1.5 x the engine's own rating",
                "materialize",
                ("engine-rating",),
                1.5,
            ),
        ),
    ),
    Case(
        name="dagster-range",
        what="a week of hours as one Dagster range run, against `rate` over it",
        span=week,
        alternate=True,
        steps=(
            RATE_EMPTY,
            Step(
                "rate-first",
                "`rate` over the week, outputs empty",
                steps.rate_span,
                prepare=steps.empty_outputs,
            ),
            Step(
                "materialize",
                "one Dagster run over the week's partitions (single-run "
                "backfill policy), checks included",
                steps.materialize,
                prepare=steps.empty_outputs,
            ),
        ),
        nets=(
            Net(
                "rate-pass",
                "`rate`'s pass: less `rate` on an empty hour",
                "rate-first",
                "rate-empty",
            ),
        ),
        goals=(Goal("range run <= 1.3 x `rate`'s pass", "materialize", ("rate-pass",), 1.3),),
    ),
    Case(
        name="naive-baseline",
        what="what a user would write instead: pandas, Decimal, an upsert per rollup",
        span=hot,
        alternate=True,
        steps=(
            ENGINE_RATING,
            Step(
                "naive",
                "pandas read_sql of the events, groupby, Decimal pricing, one "
                "upsert per rollup into a copy of rated_usage",
                steps.rate_naively,
            ),
        ),
        goals=(Goal("naive >= 10 x the engine", "naive", ("engine-rating",), 10, AT_LEAST),),
    ),
    Case(
        name="peak-memory",
        what="a child process's peak RSS rating a small and a large window of the same rollups",
        span=rss_large,
        alternate=True,
        steps=(
            Step(
                "rss-small",
                "peak RSS rating the small window (VmHWM)",
                steps.peak_memory(lambda bench: bench.layout.rss_small),
                prepare=steps.empty_outputs,
                unit="MiB",
            ),
            Step(
                "rss-large",
                "peak RSS rating the large window, the same rollups",
                steps.peak_memory(lambda bench: bench.layout.rss_large),
                prepare=steps.empty_outputs,
                unit="MiB",
            ),
        ),
        goals=(
            Goal(
                "peak grows <= 64 MiB from the small to the large window",
                "rss-large",
                ("rss-small",),
                64,
                AT_MOST_PLUS,
            ),
        ),
    ),
    Case(
        name="stale-statistics",
        what="a re-rate right after a first write, rated_usage's statistics describing "
        "another window (autovacuum held off)",
        span=hot,
        setup=without_statistics,
        teardown=with_statistics,
        alternate=True,
        steps=(
            Step(
                "rerate-stale",
                f"{RERATE}, statistics stale",
                steps.rerate_one_percent_changed,
                prepare=first_write_stale,
            ),
            Step(
                "rerate-fresh",
                f"{RERATE}, statistics analyzed after the first write",
                steps.rerate_one_percent_changed,
                prepare=first_write_fresh,
            ),
        ),
        goals=(Goal("stale statistics <= 1.5 x fresh", "rerate-stale", ("rerate-fresh",), 1.5),),
    ),
    Case(
        name="history",
        what="a re-rate with rated_usage holding only its window, and with rows of history",
        span=hot,
        setup=first_write_fresh,
        teardown=no_history,
        alternate=True,
        steps=(
            Step(
                "rerate-alone",
                f"{RERATE}, no other window in rated_usage",
                steps.rerate_one_percent_changed,
                prepare=history_absent,
            ),
            Step(
                "rerate-history",
                f"{RERATE}, history in rated_usage",
                steps.rerate_one_percent_changed,
                prepare=history_present,
            ),
        ),
        goals=(Goal("history costs <= 1.2 x", "rerate-history", ("rerate-alone",), 1.2),),
    ),
    Case(
        name="invoice-month",
        what="a month's invoice lines built from its rated hours, against one INSERT ... SELECT",
        span=invoiced,
        setup=rated_month,
        teardown=no_rated_month,
        facts=steps.invoice_facts,
        steps=(
            Step(
                "invoice-floor",
                "the month's usage lines by one INSERT ... SELECT from its rated_usage rows "
                "(accounts mapped), into an empty copy of invoice_line (keys, checks), rolled "
                "back",
                steps.invoice_floor,
            ),
            Step(
                "build-first",
                "`build_invoice` of the month (usage and adjustment lines), invoice_line empty",
                steps.build_invoice_lines,
                prepare=steps.empty_invoices,
            ),
            Step(
                "build-identical",
                "`build_invoice` again, nothing changed",
                steps.rebuild_invoice_proved,
                prepare=steps.vacuum_invoices,
            ),
        ),
        goals=(
            Goal("first build <= 1.5 x the invoice floor", "build-first", ("invoice-floor",), 1.5),
            Goal(
                "identical rebuild writes nothing, in <= 1.5 x the invoice floor",
                "build-identical",
                ("invoice-floor",),
                1.5,
                clean=True,
            ),
        ),
    ),
    Case(
        name="closed-hour",
        what="one copy of the hot hour re-rated after the same 1% change, open and closed in turn",
        span=closable,
        setup=rated_closable,
        teardown=no_close,
        min_rounds=5,
        alternate=True,
        steps=(
            Step(
                "rerate-open",
                f"{RERATE}, the hour open: its rated_usage rows converge",
                steps.rerate_one_percent_changed,
                prepare=open_again,
            ),
            Step(
                "rerate-closed",
                f"{RERATE}, the hour closed: its open adjustments converge, its rows frozen",
                steps.rerate_one_percent_changed,
                prepare=closed_again,
            ),
        ),
        goals=(
            Goal(
                "closed hour's re-rate <= 1.2 x the open hour's",
                "rerate-closed",
                ("rerate-open",),
                1.2,
            ),
        ),
    ),
)
CASE_NAMES = tuple(case.name for case in CASES)
