"""The command line: ``python -m rating_pipeline`` or ``rating-pipeline``.

Only this module turns the project's exceptions into exit codes and one-line messages;
everything it calls raises specific errors and prints nothing of its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

from rating_pipeline.errors import EXIT_FAILURE, EXIT_OK, Terminated, first_line
from rating_pipeline.settings import default_pricebook_dir

# rate --jobs: each job holds a connection of the warehouse's (100 by PostgreSQL's default).
MAX_JOBS = 32


def _utc_instant(text: str) -> datetime:
    """argparse type: an ISO-8601 instant with an explicit UTC offset or ``Z``."""
    from rating_pipeline.windows import WindowError, parse_instant

    try:
        return parse_instant(text)
    except WindowError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {text!r}") from exc


def _jobs(text: str) -> int:
    """argparse type: how many windows ``rate`` rates at once, 1 to MAX_JOBS."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"not a whole number from 1 to {MAX_JOBS}: {text!r}")
    return jobs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rating-pipeline", description="Rate LLM API usage into priced hourly rollups."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_pricebook_commands(commands)

    database = commands.add_parser("db", help="schema migrations (Alembic)")
    database_commands = database.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in (
        ("upgrade", "migrate the warehouse to the latest revision"),
        ("downgrade", "remove the project's tables (never billing_event)"),
        ("current", "print the warehouse's revision"),
    ):
        sub = database_commands.add_parser(action, help=help_text)
        sub.set_defaults(handler=_db)
        if action == "downgrade":
            sub.add_argument(
                "--drop-rated-data",
                action="store_true",
                help="drop the tables even though they hold rated rows (refused otherwise)",
            )

    rate = commands.add_parser("rate", help="rate every hour in [--from, --to)")
    rate.add_argument(
        "--from", dest="start", type=_utc_instant, required=True, metavar="START",
        help="the first hour, a whole UTC hour such as 2026-06-15T10:00:00Z",
    )  # fmt: skip
    rate.add_argument(
        "--to", dest="end", type=_utc_instant, required=True, metavar="END",
        help="the hour after the last, a whole UTC hour, closed by the database's clock",
    )  # fmt: skip
    rate.add_argument(
        "--pricebooks", type=Path, default=None, metavar="DIR",
        help="the pricebook directory (default: RATING_PRICEBOOK_DIR, else pricebooks/)",
    )  # fmt: skip
    rate.add_argument(
        "--jobs", type=_jobs, default=1, metavar="N",
        help="rate up to N windows at once, each on a connection of its own (default 1)",
    )  # fmt: skip
    rate.set_defaults(handler=_rate)

    _add_period_commands(commands)
    _add_demo_commands(commands)
    return parser


def _add_demo_commands(commands: argparse._SubParsersAction) -> None:
    """``demo seed``, ``demo quickstart`` and ``demo ui``."""
    demo = commands.add_parser("demo", help="synthetic data and the quickstart")
    demo_commands = demo.add_subparsers(dest="action", required=True, metavar="ACTION")
    seed = demo_commands.add_parser("seed", help="load synthetic billing events by COPY")
    seed.add_argument(
        "--start", type=_utc_instant, required=True, help="the first hour, UTC, from 1970"
    )
    seed.add_argument("--hours", type=int, default=24, help="hours to load (default 24)")
    seed.add_argument(
        "--events-per-hour", type=int, default=10_000, help="events in each hour (default 10000)"
    )
    seed.add_argument(
        "--seed",
        type=int,
        default=20260615,
        help="random seed >= 0 (default %(default)s): one seed, the same events",
    )
    seed.set_defaults(handler=_demo_seed)
    quickstart = demo_commands.add_parser(
        "quickstart", help="seed a demo day, rate it through Dagster, print a summary"
    )
    quickstart.set_defaults(handler=_demo_quickstart)
    ui = demo_commands.add_parser("ui", help="run `dagster dev` on the embedded database")
    ui.set_defaults(handler=_demo_ui)


def _add_pricebook_commands(commands: argparse._SubParsersAction) -> None:
    """``pricebook validate [DIR]`` and ``pricebook import litellm FILE ...``."""
    pricebook = commands.add_parser("pricebook", help="pricebook tools")
    pricebook_commands = pricebook.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = pricebook_commands.add_parser(
        "validate", help="check every rule of every version; exit 1 with the full error list"
    )
    validate.add_argument("directory", nargs="?", type=Path, default=None)
    validate.set_defaults(handler=_pricebook_validate)
    importer = pricebook_commands.add_parser("import", help="convert another price list")
    sources = importer.add_subparsers(dest="source", required=True, metavar="SOURCE")
    litellm = sources.add_parser(
        "litellm",
        help="LiteLLM's model_prices_and_context_window.json -> one version file; "
        "prints what it could not map and every rate it rounded",
    )
    litellm.add_argument("file", type=Path, metavar="FILE")
    litellm.add_argument("--version", required=True, metavar="V", help="the version's name")
    litellm.add_argument(
        "--effective-from", required=True, metavar="T", help="e.g. 2026-10-01T00:00:00Z"
    )
    litellm.add_argument("--out", type=Path, default=None, metavar="DIR")
    litellm.add_argument(
        "--round",
        action="store_true",
        help="round float noise half-even to 6 places (reported) instead of failing",
    )
    litellm.set_defaults(handler=_pricebook_import_litellm)


def _add_period_commands(commands: argparse._SubParsersAction) -> None:
    """``period close --through T | status`` and ``invoice build | export --month M``."""
    period = commands.add_parser("period", help="closed periods (no reopen)")
    period_commands = period.add_subparsers(dest="action", required=True, metavar="ACTION")
    close = period_commands.add_parser(
        "close", help="close every window that starts before T; build the months it closes"
    )
    close.add_argument("--through", type=_utc_instant, required=True, metavar="T")
    close.add_argument("--by", default=None, help="who closes (default: the OS user)")
    close.add_argument("--note", default=None)
    close.add_argument(
        "--dry-run",
        action="store_true",
        help="say what the close would do (refusals, windows changed since their rating) "
        "and write nothing",
    )
    close.set_defaults(handler=_period_close)
    status = period_commands.add_parser("status", help="the close mark and open adjustments")
    status.set_defaults(handler=_period_status)

    invoice = commands.add_parser("invoice", help="monthly invoice lines")
    invoice_commands = invoice.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = invoice_commands.add_parser("build", help="converge a month's invoice lines")
    build.add_argument("--month", required=True, metavar="YYYY-MM")
    build.set_defaults(handler=_invoice_build)
    export = invoice_commands.add_parser(
        "export",
        help="one CSV per account of a month's built lines; the month's other files in DIR "
        "(YYYY-MM_*.csv) are removed",
    )
    export.add_argument("--month", required=True, metavar="YYYY-MM")
    export.add_argument("--out", type=Path, required=True, metavar="DIR")
    export.set_defaults(handler=_invoice_export)


def _period_close(args: argparse.Namespace) -> int:
    import psycopg

    from rating_pipeline.errors import RatingPipelineError
    from rating_pipeline.warehouse import periods
    from rating_pipeline.warehouse.database import connect, require_schema

    closed_by = _os_user() if args.by is None else args.by
    if args.dry_run:
        with _stopped_says("a dry run writes nothing"), connect() as conn:
            require_schema(conn)
            preview = periods.preview_close(conn, args.through, closed_by)
        print("\n".join(preview.lines()))
        return EXIT_OK
    try:
        with connect() as conn:
            require_schema(conn)
            closed = periods.close_period(conn, args.through, closed_by, args.note, _close_waits)
    except KeyboardInterrupt:
        try:
            with connect() as conn:
                line = periods.where_close_stopped(conn, args.through)
        except (psycopg.Error, RatingPipelineError):
            line = "interrupted; the close may have committed: `period status` says"
        print(line, file=sys.stderr)
        raise
    except psycopg.OperationalError as exc:  # the connection lost, perhaps at the COMMIT
        if not _connection_lost(exc):
            raise
        lost = f"error: {_lost(exc)}"
        try:
            with connect() as conn:
                line = periods.where_close_stopped(conn, args.through, lost)
        except (psycopg.Error, RatingPipelineError):
            line = f"{lost}; the close may have committed: `period status` says"
        print(line, file=sys.stderr)
        return EXIT_FAILURE
    for line in closed.lines():
        print(line)
    return EXIT_OK


def _close_waits(holders: int) -> None:
    sessions = "1 other session" if holders == 1 else f"{holders} other sessions"
    print(
        f"waiting for the periods lock, held by {sessions} (a rating, an invoice build or "
        "export, a dry run): every rating that starts now waits behind this close until it "
        "commits; Ctrl-C stops the close, closing nothing",
        file=sys.stderr,
        flush=True,
    )


def _notes(error: BaseException) -> str:
    """What was added to ``error`` on its way up (``add_note``), for the end of its line."""
    return "".join(f"; {note}" for note in getattr(error, "__notes__", ()))


def _connection_lost(error: Exception) -> bool:
    """A lost connection: class 08 (connection exception), 57P (the server ended the
    session), or no SQLSTATE; not a refusal the session survives (a lock timeout)."""
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def _lost(error: Exception) -> str:
    return f"the connection was lost ({type(error).__name__}: {first_line(error)})"


@contextmanager
def _stopped_says(outcome: str) -> Iterator[None]:
    """Ctrl-C or a lost connection in the block (perhaps at its COMMIT, which may have gone
    through): the person is told ``outcome``. Ctrl-C goes on up (exit 130); a lost
    connection becomes the command's error (exit 1)."""
    import psycopg

    from rating_pipeline.errors import RatingPipelineError

    try:
        yield
    except KeyboardInterrupt:
        print(f"interrupted: {outcome}", file=sys.stderr)
        raise
    except psycopg.OperationalError as exc:
        if not _connection_lost(exc):
            raise
        raise RatingPipelineError(f"{_lost(exc)}: {outcome}") from exc


def _os_user() -> str:
    """Who closes when --by does not say: the OS user. A container may run as a uid with
    no name (no USER or LOGNAME, no passwd entry): then the close is refused, asking."""
    import getpass

    from rating_pipeline.warehouse.periods import CloseRefused

    try:
        return getpass.getuser()
    except (KeyError, OSError) as exc:
        raise CloseRefused(
            "close refused: the OS user has no name to record; say who closes (--by)"
        ) from exc


def _period_status(args: argparse.Namespace) -> int:
    from rating_pipeline.warehouse.database import connect, require_schema
    from rating_pipeline.warehouse.periods import period_status

    with connect() as conn:
        require_schema(conn)
        status = period_status(conn)
    for line in status.lines():
        print(line)
    return EXIT_OK


def _invoice_build(args: argparse.Namespace) -> int:
    from rating_pipeline.warehouse import invoices
    from rating_pipeline.warehouse.database import connect, require_schema

    month = invoices.parse_month(args.month)
    whole_or_not = (
        f"{month:%Y-%m}'s lines were built whole or not at all; building them again converges "
        "(an identical rebuild writes nothing)"
    )
    with _stopped_says(whole_or_not), connect() as conn:
        require_schema(conn)
        built = invoices.build_invoice(conn, month, invoices.new_run_id())
    if built.differing:
        print(f"error: {built}", file=sys.stderr)
        return EXIT_FAILURE
    print(built)
    return EXIT_OK


def _invoice_export(args: argparse.Namespace) -> int:
    from rating_pipeline.warehouse.database import connect, require_schema
    from rating_pipeline.warehouse.invoices import export_invoice, parse_month

    month = parse_month(args.month)
    as_they_stand = (
        f"{args.out} holds {month:%Y-%m}'s files as an earlier export wrote them, or some or all "
        "as this one did: export the month again (nothing in the warehouse changed)"
    )
    with _stopped_says(as_they_stand), connect() as conn:
        require_schema(conn)
        exported = export_invoice(conn, month, args.out)
    for path in exported.written:
        print(path)
    for path in exported.removed:
        print(f"removed {path}: no account of {month:%Y-%m} has this file now")
    print(f"{len(exported.written)} account file(s) for {month:%Y-%m} in {args.out}")
    if exported.draft:
        print(
            f"{month:%Y-%m} is open: these files are its draft, its lines as last built; a "
            f"rating committed since that build reaches them at the next invoice build "
            f"--month {month:%Y-%m}"
        )
    if not exported.written and exported.closed:  # its close built its lines
        print(f"{month:%Y-%m} is wholly closed and has no invoice lines: nothing was billed in it")
    elif not exported.written:
        print(
            f"{month:%Y-%m} has no invoice lines: nothing was billed in it, or its lines are "
            "not built yet (invoice build --month)"
        )
    return EXIT_OK


def _pricebook_validate(args: argparse.Namespace) -> int:
    from rating_pipeline.errors import shown
    from rating_pipeline.pricebook.loader import PricebookLoadError, load_pricebooks

    directory = args.directory or default_pricebook_dir()
    try:
        pricebooks = load_pricebooks(directory)
    except PricebookLoadError as exc:
        for line in exc.report_lines():
            print(line, file=sys.stderr)
        return EXIT_FAILURE
    for version in pricebooks.versions:
        print(
            f"{shown(version.source_file)}: version {version.version} effective "
            f"{version.effective_from.isoformat()} {version.currency}, "
            f"{len(version.models)} models, sha256 {version.sha256[:12]}"
        )
    return EXIT_OK


def _pricebook_import_litellm(args: argparse.Namespace) -> int:
    from rating_pipeline.pricebook.litellm import (
        FloatNoiseError,
        convert_litellm,
        models_dropped,
        write_version,
    )
    from rating_pipeline.pricebook.loader import PricebookLoadError

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        result = convert_litellm(
            text, version=args.version, effective_from=args.effective_from, round_rates=args.round
        )
    except FloatNoiseError as exc:
        return _failed([*exc.report_lines(), f"error: {exc}"])
    if not result.models:
        return _failed(
            [
                *result.report_lines(),
                "error: no model imported (see the lines above); nothing written",
            ]
        )
    try:
        path = write_version(args.out or default_pricebook_dir(), args.version, result.text)
    except OSError as exc:  # --out names a file, or a directory it may not write
        return _failed([*result.report_lines(), f"error: cannot write the version: {exc}"])
    except PricebookLoadError as exc:
        # What the import left out, and why, may be why the version does not load.
        return _failed(
            [
                *result.report_lines(),
                *exc.report_lines(),
                "error: the converted version does not load; nothing written",
            ]
        )
    print(
        f"{path}: {result.models} models imported from {args.file} ({result.entries} chat "
        f"or responses entries; {sum(result.skipped_modes.values())} entries of other modes "
        f"skipped); {len(result.not_imported)} models not imported, {len(result.rounded)} "
        f"rates rounded, {len(result.unmapped)} prices not mapped"
    )
    for line in result.report_lines():
        print(line)
    dropped = models_dropped(path)
    if dropped:
        print(dropped, file=sys.stderr)
    return EXIT_OK


def _failed(lines: list[str]) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_FAILURE


def _db(args: argparse.Namespace) -> int:
    from rating_pipeline.warehouse import migrations

    action: Callable[[], str] = {
        "upgrade": migrations.upgrade,
        "downgrade": lambda: migrations.downgrade(drop_rated_data=args.drop_rated_data),
        "current": migrations.current,
    }[args.action]
    try:
        print(action())
    except KeyboardInterrupt as interrupt:
        print(migrations.where_interrupted(args.action) + _notes(interrupt), file=sys.stderr)
        raise
    refusal = migrations.billing_event_refusal() if args.action == "upgrade" else None
    if refusal is not None:
        print(f"warning: every rating will refuse this billing_event: {refusal}", file=sys.stderr)
    return EXIT_OK


def _rate(args: argparse.Namespace) -> int:
    from rating_pipeline.warehouse.commands import rate_range_command

    return rate_range_command(args.start, args.end, args.pricebooks, args.jobs)


def _demo_seed(args: argparse.Namespace) -> int:
    from rating_pipeline.demo.commands import seed_command

    return seed_command(args.start, args.hours, args.events_per_hour, args.seed)


def _demo_quickstart(args: argparse.Namespace) -> int:
    from rating_pipeline.demo.quickstart import quickstart_command

    return quickstart_command()


def _demo_ui(args: argparse.Namespace) -> int:
    from rating_pipeline.demo.quickstart import ui_command

    return ui_command()


_DRIVER_WARNINGS = logging.NullHandler()


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. Expected failures print one clean line: the
    project's errors, and a statement the warehouse refused (a lock or statement timeout, a
    missing privilege) that no command named more precisely. Ctrl-C exits 130 and SIGTERM
    143, each after the command said what it left done."""
    from rating_pipeline.errors import RatingPipelineError

    args = build_parser().parse_args(argv)
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (None if s is None else cast(TextIO, Report(s)) for s in streams)
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals' only
    on_sigterm = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    # psycopg warns of what it ignored on the way out of a failed or interrupted statement
    # (a rollback it could not send); the command's own line says what became of the work.
    logging.getLogger("psycopg").addHandler(_DRIVER_WARNINGS)
    try:
        return int(args.handler(args))
    except RatingPipelineError as exc:
        print(f"error: {exc}{_notes(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as stop:
        return 143 if isinstance(stop, Terminated) else 130
    except Exception as exc:
        refusal = _warehouse_refusal(exc)
        if refusal is None:
            raise
        print(f"error: {refusal}{_notes(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        logging.getLogger("psycopg").removeHandler(_DRIVER_WARNINGS)
        if in_main_thread:
            signal.signal(signal.SIGTERM, on_sigterm)
        if sys.stdout is not None:
            sys.stdout.flush()  # here, not at exit, where a closed pipe would escape Report
        sys.stdout, sys.stderr = streams


class Report:
    """A standard stream whose reader may go away (``| head``). A command's lines are a
    report of its work, not the work: the first write into the closed pipe points the
    stream at /dev/null, and the command goes on, its exit code its work's."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _warehouse_refusal(exc: Exception) -> str | None:
    """One line for a database error (psycopg's, or SQLAlchemy's around one), else None.
    The server's message never holds the connection's password."""
    import psycopg

    from rating_pipeline.warehouse.database import refusal_note

    cause = exc if isinstance(exc, psycopg.Error) else getattr(exc, "orig", None)
    if not isinstance(cause, psycopg.Error):
        return None
    reason = f"{first_line(cause, '')}{refusal_note(cause)}"
    return f"the warehouse refused a statement: {type(cause).__name__}: {reason}"
