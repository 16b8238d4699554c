"""``--profile``: where the time of (b) and (c) goes, appended to BENCHMARKS.md.

EXPLAIN (ANALYZE, BUFFERS) of the floor and of the engine's extraction over the hot hour
(as a first run writes it, and as a re-run of unchanged events only digests it), then one
first run and one identical re-run under a sampling profiler (pyinstrument when it is
installed, else cProfile), reduced to the engine's own steps.
"""

from __future__ import annotations

import cProfile
import io
import pstats

import psycopg

from benchmarks.suite import FLOOR_AGGREGATE, SET_SERIAL, SET_WORK_MEM, Bench
from rating_pipeline.warehouse.database import connect
from rating_pipeline.warehouse.engine import RATING_WORK_MEM
from rating_pipeline.warehouse.sqlfiles import load_sql

EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, SETTINGS) "
PROFILE_DEPTH = 40


def _explain(conn: psycopg.Connection, statement: str, params: dict[str, object]) -> str:
    rows = conn.execute(EXPLAIN + statement, params).fetchall()
    conn.rollback()
    return "\n".join(str(row[0]) for row in rows)


def _explain_extraction(
    conn: psycopg.Connection, params: dict[str, object], unchanged: bool
) -> str:
    """The plan of ``fill_window_usage.sql``: writing the sums, or, with ``unchanged``, bound
    to the digest of the window's events as they are, only digesting them."""
    digest = None
    if unchanged:
        conn.execute(load_sql("create_window_usage"))
        filled = conn.execute(load_sql("fill_window_usage"), {**params, "unchanged_digest": None})
        digest = filled.fetchone()[0]  # type: ignore[index]
        conn.rollback()
    conn.execute(load_sql("create_window_usage"))
    return _explain(conn, load_sql("fill_window_usage"), {**params, "unchanged_digest": digest})


def _profiled(bench: Bench, conn: psycopg.Connection, label: str) -> str:
    try:
        from pyinstrument import Profiler
    except ImportError:
        profile = cProfile.Profile()
        profile.enable()
        bench.rate(conn, bench.layout.hot, label)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(PROFILE_DEPTH)
        return out.getvalue()
    profiler = Profiler(interval=0.001)
    profiler.start()
    bench.rate(conn, bench.layout.hot, label)
    profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def profile_appendix(bench: Bench) -> list[str]:
    """Markdown sections: the plans, and the profile of a first run and of a re-run."""
    hot = bench.layout.hot
    params: dict[str, object] = {"start": hot.start, "end": hot.end}
    with connect(bench.url) as conn:
        conn.execute(SET_SERIAL)
        conn.execute(SET_WORK_MEM, {"work_mem": RATING_WORK_MEM})
        conn.commit()
        floor_plan = _explain(conn, FLOOR_AGGREGATE, params)
        extract_plan = _explain_extraction(conn, params, unchanged=False)
        digest_plan = _explain_extraction(conn, params, unchanged=True)
        bench.reset_outputs()
        first = _profiled(bench, conn, "profile-first")
        again = _profiled(bench, conn, "profile-again")
    bench.reset_outputs()
    return [
        "## Profile (`--profile`)",
        "",
        f"### (a) the floor over {hot.key}: EXPLAIN (ANALYZE, BUFFERS)",
        "",
        "```",
        floor_plan,
        "```",
        "",
        "### The engine's extraction (`fill_window_usage.sql`) over the same window, writing",
        "",
        "```",
        extract_plan,
        "```",
        "",
        "### The same statement when the events are unchanged: digested, not written",
        "",
        "```",
        digest_plan,
        "```",
        "",
        "### (b) one first run, profiled",
        "",
        "```",
        first.strip(),
        "```",
        "",
        "### (c) one identical re-run, profiled",
        "",
        "```",
        again.strip(),
        "```",
        "",
    ]
