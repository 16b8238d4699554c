"""``--profile``: where a rating's time goes, appended to BENCHMARKS.md.

EXPLAIN (ANALYZE, BUFFERS) of the aggregate floor and of the engine's four statements
that touch the rows (``fill_window_sums``, ``price_window``, ``reconcile_rated_usage``,
``reconcile_rating_exception``) over the hot hour, the wide hour and the month's first
hour, in a first rating and in an identical re-run, each in a transaction begun as the
engine begins one, rolled back; then the month rated in process, window by window, with
every statement's time summed."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from benchmarks.runner import Bench
from benchmarks.steps import (
    AGGREGATE_FLOOR,
    SET_SERIAL,
    SET_WORK_MEM,
    Span,
    empty_outputs,
    vacuum_outputs,
)
from rating_pipeline.warehouse.database import SESSION_SETTINGS, connect
from rating_pipeline.warehouse.engine import (
    RATING_WORK_MEM,
    begin_rating,
    rate_window,
    resolve_window,
)
from rating_pipeline.warehouse.extract import resolution_keys, usage_params
from rating_pipeline.warehouse.sqlfiles import load_sql
from rating_pipeline.windows import Window, windows_between

# Per-node timing shows where a statement's time goes, but its clock reads slow down
# nodes in proportion to their rows: the totals compared come from runs without it.
EXPLAIN_TIMED = "EXPLAIN (ANALYZE, BUFFERS) "
EXPLAIN_TOTAL = "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) "
EXECUTION_TIME = re.compile(r"Execution Time: ([0-9.]+) ms")
PLANNING_TIME = re.compile(r"Planning Time: ([0-9.]+) ms")
TOTAL_ROUNDS = 3
FLOOR = "the aggregate floor"
EXPLAINED = ("fill_window_sums", "reconcile_rated_usage", "reconcile_rating_exception")


def _explain(conn: psycopg.Connection, explain: str, statement: str, params: Any) -> str:
    return "\n".join(str(row[0]) for row in conn.execute(explain + statement, params))


def plans(bench: Bench, window: Window, explain: str) -> list[tuple[str, str]]:
    """(statement, plan) of the aggregate floor and of the engine's statements over
    ``window`` against the outputs as they stand; the engine's in one transaction begun as
    a rating begins it, rolled back."""
    bounds = {"start": window.start, "end": window.end}
    with connect(bench.url) as conn:
        conn.execute(SET_SERIAL)
        conn.execute(SET_WORK_MEM, {"work_mem": RATING_WORK_MEM})
        found = [(FLOOR, _explain(conn, explain, AGGREGATE_FLOOR, bounds))]
        conn.rollback()
    version = bench.pricebooks.version_for(window)
    with connect(bench.url) as conn, conn.transaction(force_rollback=True):
        run = begin_rating(conn, window, version, bench.run_id("explain"))
        fill = _explain(conn, explain, load_sql(EXPLAINED[0]), usage_params(conn, window, version))
        found.append((f"`{EXPLAINED[0]}`", fill))
        conn.execute(load_sql("merge_mixed_bases"))
        resolve_window(conn, version, resolution_keys(conn))
        # Prices the rollups into window_output, which the rated_usage reconcile reads.
        found.append(("`price_window`", _explain(conn, explain, load_sql("price_window"), None)))
        for name in EXPLAINED[1:]:
            found.append((f"`{name}`", _explain(conn, explain, load_sql(name), run.bound())))
    return found


@dataclass
class StatementClock:
    """Seconds and calls of every statement run through a ``TimedCursor``, by name."""

    names: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        folder = resources.files("rating_pipeline.warehouse").joinpath("sql")
        for entry in folder.iterdir():
            if entry.name.endswith(".sql"):
                name = entry.name.removesuffix(".sql")
                self.names[load_sql(name)] = name

    def add(self, query: object, seconds: float) -> None:
        text = str(query)
        name = self.names.get(text, " ".join(text.split())[:48])
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1


class TimedCursor(psycopg.Cursor[Any]):
    """A cursor that adds each ``execute``'s round trip to ``clock``."""

    clock = StatementClock()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> TimedCursor:
        began = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)  # type: ignore[return-value]
        finally:
            TimedCursor.clock.add(query, time.perf_counter() - began)


def timed_pass(bench: Bench, windows: list[Window]) -> tuple[float, StatementClock]:
    """Rate ``windows`` one by one in process; the wall time and every statement's time."""
    TimedCursor.clock = StatementClock()
    with psycopg.connect(bench.url, cursor_factory=TimedCursor) as conn:
        conn.execute(SESSION_SETTINGS)
        conn.commit()
        TimedCursor.clock = StatementClock()
        began = time.perf_counter()
        for window in windows:
            rate_window(conn, window, bench.pricebooks, bench.run_id("profile"))
        wall = time.perf_counter() - began
    return wall, TimedCursor.clock


def _clock_table(wall: float, clock: StatementClock, windows: int) -> Iterator[str]:
    yield "| statement | calls | seconds | ms per window | share |"
    yield "|---|---|---|---|---|"
    ranked = sorted(clock.seconds.items(), key=lambda item: -item[1])
    for name, seconds in ranked:
        yield (
            f"| `{name}` | {clock.calls[name]:,} | {seconds:.2f} | "
            f"{1000 * seconds / windows:.1f} | {seconds / wall:.0%} |"
        )
    rest = wall - sum(clock.seconds.values())
    yield (
        f"| everything else (Python, BEGIN/COMMIT, COPY of the resolutions) | | {rest:.2f} | "
        f"{1000 * rest / windows:.1f} | {rest / wall:.0%} |"
    )
    yield f"| **the pass** | | **{wall:.2f}** | {1000 * wall / windows:.1f} | |"


def _milliseconds(plan: str, pattern: re.Pattern[str]) -> float:
    found = pattern.search(plan)
    return float(found.group(1) if found else "nan")  # a timing, not money (noqa: money-ok)


def totals(bench: Bench, window: Window) -> dict[str, tuple[float, float]]:
    """Median (execution, planning) ms of the floor and of each engine statement over
    ``window``, in TOTAL_ROUNDS interleaved rounds."""
    runs: dict[str, list[str]] = {}
    for _ in range(TOTAL_ROUNDS):
        for statement, plan in plans(bench, window, EXPLAIN_TOTAL):
            runs.setdefault(statement, []).append(plan)
    return {
        statement: (
            statistics.median(_milliseconds(plan, EXECUTION_TIME) for plan in found),
            statistics.median(_milliseconds(plan, PLANNING_TIME) for plan in found),
        )
        for statement, found in runs.items()
    }


def hour_section(bench: Bench, name: str, window: Window) -> list[str]:
    """One hour: the server time of the floor and of each engine statement, in a first
    rating and in an identical re-run (found vacuumed, as an hourly re-run finds it), and
    the plans behind them."""
    empty_outputs(bench, Span.of(window))
    first = totals(bench, window), plans(bench, window, EXPLAIN_TIMED)
    with connect(bench.url) as conn:
        rate_window(conn, window, bench.pricebooks, bench.run_id("profile"))
    vacuum_outputs(bench, Span.of(window))
    again = totals(bench, window), plans(bench, window, EXPLAIN_TIMED)
    floor, floor_again = first[0][FLOOR][0], again[0][FLOOR][0]
    lines = [
        f"### {name} ({window.key}): server time per statement, ms (EXPLAIN ANALYZE, TIMING "
        f"OFF, median of {TOTAL_ROUNDS})",
        "",
        "| statement | first rating | x floor | identical re-run | x floor | planning |",
        "|---|---|---|---|---|---|",
    ]
    for statement, (ms, planning) in first[0].items():
        ms_again = again[0][statement][0]
        lines.append(
            f"| {statement} | {ms:.0f} | {ms / floor:.2f} | {ms_again:.0f} | "
            f"{ms_again / floor_again:.2f} | {planning:.1f} |"
        )
    lines += ["", "<details><summary>the plans, timed per node</summary>", ""]
    for label, timed in (("first rating", first[1]), ("identical re-run", again[1])):
        for statement, plan in timed:
            lines += _block(f"{label}: {statement}", plan)
    return [*lines, "</details>", ""]


def _block(title: str, text: str) -> list[str]:
    return [f"#### {title}", "", "```", text.strip(), "```", ""]


def profile_appendix(bench: Bench) -> list[str]:
    """Markdown: the plans over the hot, the wide and a month's hour; the month's statements."""
    bench.say("profile: plans of the hot, the wide and a month's hour; the month's statements")
    lines = ["## Profile (`--profile`)", ""]
    lines += hour_section(bench, "hot hour", bench.layout.hot)
    lines += hour_section(bench, "wide hour", bench.layout.wide)
    month_hour = Window(bench.layout.month_start)
    lines += hour_section(bench, "the month's first hour", month_hour)
    windows = list(windows_between(bench.layout.month_start, bench.layout.month_end))
    empty_outputs(bench, Span.of(bench.layout.hot))
    for label in ("first pass", "identical pass"):
        wall, clock = timed_pass(bench, windows)
        lines += [f"### the month in process, {label}: {len(windows)} windows", ""]
        lines += [*_clock_table(wall, clock, len(windows)), ""]
    empty_outputs(bench, Span.of(bench.layout.hot))
    return lines
