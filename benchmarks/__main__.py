"""``python -m benchmarks`` (``./dev bench``): run the whole suite, print it, write BENCHMARKS.md.

The database: ``--database-url`` as is (it is filled and emptied: give a disposable one);
else, with ``RATING_DATABASE_URL`` set, a scratch database ``rating_bench`` created on that
server (never the database the URL names) and dropped afterwards; else an embedded
PostgreSQL of its own in ``.rating/bench-pg``, so the demo's data is never touched.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks.data import SCALES, expected_events, write_pricebooks
from benchmarks.profile import profile_appendix
from benchmarks.report import console, kept_by_hand, machine_facts, markdown
from benchmarks.runner import DAGSTER_STORAGE_DATABASE, Bench, Results, run
from benchmarks.suite import CASE_NAMES, CASES
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.settings import configured_database_url, project_root, state_dir
from rating_pipeline.warehouse import embedded, migrations
from rating_pipeline.warehouse.database import connect

BENCH_DATABASE = "rating_bench"
BENCH_DATA_DIR = "bench-pg"
DROP_DATABASE = "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
CREATE_DATABASE = "CREATE DATABASE {name}"
COUNT_EVENTS = "SELECT count(*) FROM billing_event"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark rating against its floors and through Dagster (issue 11).",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds per case (>= 3 for real)"
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=CASE_NAMES,
        default=None,
        help="measure only this case (repeatable); all of them by default",
    )
    parser.add_argument(
        "--output", type=Path, default=project_root() / "BENCHMARKS.md", help="the report"
    )
    parser.add_argument(
        "--database-url", default=None, help="a disposable database to use as is (tests)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="append the plans of the engine's statements and the month's statement times",
    )
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep the benchmark database and its events when they are already loaded",
    )
    return parser


def _admin(server_url: str, statement: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(name=sql.Identifier(name)))


@contextmanager
def bench_database(args: argparse.Namespace, say: Callable[[str], None]) -> Iterator[str]:
    """The URL of the database to benchmark on (see the module doc)."""
    if args.database_url:
        yield args.database_url
        return
    configured = configured_database_url()
    if configured:
        server = configured
        cleanup = True
    else:
        directory = state_dir() / BENCH_DATA_DIR
        say(f"embedded PostgreSQL for the benchmark in {directory}")
        server = embedded.start(
            directory, database=embedded.MAINTENANCE_DATABASE, stop_at_exit=True
        )
        cleanup = False
    url = make_conninfo(server, dbname=BENCH_DATABASE)
    if not args.reuse_data:
        _admin(server, DROP_DATABASE, BENCH_DATABASE)
    with suppress(psycopg.errors.DuplicateDatabase):
        _admin(server, CREATE_DATABASE, BENCH_DATABASE)
    try:
        yield url
    finally:
        if cleanup and not args.reuse_data:
            _admin(server, DROP_DATABASE, BENCH_DATABASE)
            _admin(server, DROP_DATABASE, DAGSTER_STORAGE_DATABASE)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Dagster flags its beta parameters, platformdirs an unset XDG_RUNTIME_DIR: noise here.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", module="platformdirs")
    if args.rounds < 1:
        print("error: --rounds must be >= 1", file=sys.stderr)
        return 2
    scale = SCALES[args.scale]
    began = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - began:7.1f} s] {text}", file=sys.stderr, flush=True)

    with bench_database(args, say) as url:
        migrations.upgrade(url)
        pricebook_dir = write_pricebooks(state_dir() / "bench-pricebooks")
        with connect(url) as conn:
            row = conn.execute(COUNT_EVENTS).fetchone()
            conn.commit()
            machine = machine_facts(conn)
        already = row is not None and int(row[0]) == expected_events(scale)
        bench = Bench(
            url=url,
            scale=scale,
            rounds=args.rounds,
            pricebook_dir=pricebook_dir,
            pricebooks=load_pricebooks(pricebook_dir),
            say=say,
            results=Results(scale=scale, rounds=args.rounds),
        )
        cases = [case for case in CASES if args.case is None or case.name in args.case]
        with bench.closing:
            results = run(bench, cases, load=not (args.reuse_data and already))
        appendix = profile_appendix(bench) if args.profile else []
    elapsed = time.perf_counter() - began
    command = shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])])
    by_hand = kept_by_hand(args.output)
    args.output.write_text(markdown(results, machine, command, elapsed, appendix, by_hand))
    print(console(results))
    print(f"\nwrote {args.output} ({elapsed / 60:.1f} minutes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
