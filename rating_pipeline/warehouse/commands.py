"""``rating-pipeline rate --from START --to END``: rate every hour in [START, END).

Nothing is rated unless everything can be: the bounds are whole UTC hours in order, every
window has closed by the database's clock, the pricebooks load without a single error, and
a version covers every window. Each window is then rated in its own transaction. Windows
with ``ambiguous_base`` rollups are still reconciled in full (their clean rollups bill);
the command names those rollups and exits non-zero once every window is done (contract
5.2). Events no window holds (an occurred_at null, infinite or out of range) are counted
on stderr, whatever the range: no rating reads them; so are the range's events excepted as
unpriced or invalid, which leave the exit code at 0.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from rating_pipeline.errors import EXIT_FAILURE, EXIT_OK, RatingPipelineError, first_line, shown
from rating_pipeline.pricebook.loader import PricebookLoadError, load_pricebooks
from rating_pipeline.pricebook.model import Pricebooks
from rating_pipeline.records import AMBIGUOUS_BASE, REASONS
from rating_pipeline.settings import default_pricebook_dir
from rating_pipeline.warehouse.database import (
    connect,
    database_clock,
    refusal_note,
    require_readable_billing_event,
    require_schema,
)
from rating_pipeline.warehouse.engine import (
    WindowRating,
    rate_window,
    rating_log_lines,
    what_became_of,
)
from rating_pipeline.warehouse.extract import undated_events
from rating_pipeline.windows import (
    WINDOWED_FROM,
    WINDOWED_UNTIL,
    Window,
    require_span,
    windows_between,
)

T = TypeVar("T")
# How often Ctrl-C cancels again the statements of ratings still under way (--jobs), and
# how long one cancel may take.
CANCEL_AGAIN_AFTER_SECONDS = 0.05  # a pause, not money (noqa: money-ok)
CANCEL_TIMEOUT_SECONDS = 1.0  # a pause, not money (noqa: money-ok)


def new_run_id() -> str:
    """The run id of one CLI invocation: ``cli-<uuid4>``."""
    return f"cli-{uuid.uuid4()}"


class WindowRatingFailed(RatingPipelineError):
    """One window's rating failed; the windows before it committed, and ``after`` of those
    after it, which other jobs had under way. Whether it committed too (the failure came at
    or after its COMMIT) is what ``what_became_of`` found."""

    def __init__(
        self,
        window: Window,
        before: int,
        cause: Exception,
        became: str,
        after: int = 0,
        also: str = "",
    ) -> None:
        reason = first_line(cause)
        super().__init__(
            f"rating window {window.key} failed: {type(cause).__name__}: {reason}"
            f"{refusal_note(cause)}. It {became}; "
            f"the {before} window(s) before it are rated and committed{_after(after)}{also}, "
            "and re-running the range is safe"
        )


class WindowNotClosed(RatingPipelineError):
    """A window of the range has not ended by the database's clock."""


def require_closed(conn: psycopg.Connection, end: datetime) -> None:
    """WindowNotClosed unless every window before ``end`` has ended by the database's clock
    (the one that stamps ingested_at): a window still open is still receiving events."""
    now = database_clock(conn)
    conn.rollback()
    if end > now:
        last = Window.containing(now)
        raise WindowNotClosed(
            f"window {last.key} has not closed yet (it ends at {last.end.isoformat()}) and the "
            f"range runs to {end.isoformat()}: nothing is rated; rate up to "
            f"{last.start.isoformat()} at most"
        )


def rate_range_command(
    start: datetime, end: datetime, pricebook_dir: Path | None, jobs: int = 1
) -> int:
    """Rate each window in ``[start, end)``, up to ``jobs`` at once; return the exit code.

    Raises WindowError for bounds that are not whole UTC hours or not in order,
    WindowNotClosed when ``end`` is after the database's clock, and NoPricebookForWindow
    when a window has no version; each before anything is rated.
    """
    run = RangeRun(run_id=new_run_id(), jobs=jobs)
    try:
        start, end = require_span(start, end)
        directory = pricebook_dir or default_pricebook_dir()
        try:
            pricebooks = load_pricebooks(directory)
        except PricebookLoadError as exc:
            for line in exc.report_lines():
                print(line, file=sys.stderr)
            print(
                f"nothing rated: {len(exc.errors)} pricebook error(s) in {directory}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        with connect() as conn:
            require_schema(conn)
            require_readable_billing_event(conn)
            require_closed(conn, end)
            pricebooks.version_for(Window(start))  # a typo'd start fails before listing
            windows = list(windows_between(start, end))
            for window in windows:
                pricebooks.version_for(window)
            undated = undated_events(conn)  # counted first: a failure here rates nothing
        run.rate(windows, pricebooks)
        print(f"rated {len(windows)} window(s), run {run.run_id}", flush=True)  # before stderr's
    except KeyboardInterrupt:
        report_ambiguous(run.ambiguous)
        print(run.interrupted_line(), file=sys.stderr)
        raise
    report_undated(undated)
    run.report_unbilled()
    report_ambiguous(run.ambiguous)
    return EXIT_FAILURE if run.ambiguous else EXIT_OK


@dataclass
class RangeRun:
    """One ``rate`` call's ratings, up to ``jobs`` windows at once, each worker on a
    connection of its own: the windows committed and those an interrupt stopped, the
    ambiguous rollups to name, and the events excepted as unpriced or invalid (which leave
    the exit code at 0: contract 5.2 fails a run for an ambiguous base alone, named
    apart)."""

    run_id: str
    jobs: int = 1
    committed: list[Window] = field(default_factory=list)
    failed: dict[Window, Exception] = field(default_factory=dict)
    stopped: list[Window] = field(default_factory=list)  # under way when it was interrupted
    ambiguous: list[str] = field(default_factory=list)
    unbilled: Counter[str] = field(default_factory=Counter)
    unbilled_windows: int = 0

    def rate(self, windows: list[Window], pricebooks: Pricebooks) -> None:
        """Rate ``windows`` in order, up to ``jobs`` at once, printing each window's line as
        it commits. A failed window stops the range: no window starts after it, those under
        way end, then WindowRatingFailed names the earliest failed window. Ctrl-C cancels
        the statements under way and waits for them before it goes on."""
        local = threading.local()
        opened: list[psycopg.Connection] = []

        def rate_one(window: Window) -> WindowRating:
            if not hasattr(local, "conn"):
                local.conn = connect()
                opened.append(local.conn)
            return rate_window(local.conn, window, pricebooks, self.run_id)

        waiting = iter(windows)
        running: dict[Future[WindowRating], Window] = {}
        pool = ThreadPoolExecutor(self.jobs, "rate") if self.jobs > 1 else InCallerThread()

        def start_next() -> None:
            window = next(waiting, None)
            if window is not None and not self.failed:
                running[pool.submit(rate_one, window)] = window

        try:
            for _ in range(self.jobs):
                start_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:  # all of them first: a failure among them stops the range
                    self._ended(running.pop(future), future)
                for _ in done:
                    start_next()
        except KeyboardInterrupt:
            self._interrupted(running, opened, pool)
            raise
        finally:
            pool.shutdown(wait=True)
            for conn in opened:
                conn.close()
        if self.failed:
            self._fail()

    def _ended(self, window: Window, future: Future[WindowRating]) -> None:
        try:
            rating = future.result()
        except Exception as exc:  # a bug's too: raised once every job has ended (_fail)
            self.failed[window] = exc
            return
        except KeyboardInterrupt:  # heard inside its rating
            self.stopped.append(window)
            raise
        self._committed(window, rating)

    def _committed(self, window: Window, rating: WindowRating) -> None:
        self.committed.append(window)
        self.ambiguous.extend(ambiguous_lines(rating))
        excepted = [e for e in rating.exception_rows if e.reason != AMBIGUOUS_BASE]
        for exception in excepted:
            self.unbilled[exception.reason] += exception.event_count
        self.unbilled_windows += bool(excepted)
        print(rating_log_lines(rating)[0], flush=True)  # a killed run's log names it

    def _interrupted(
        self,
        running: dict[Future[WindowRating], Window],
        opened: list[psycopg.Connection],
        pool: Executor,
    ) -> None:
        """After Ctrl-C: cancel what has not begun, and the statements of the ratings under
        way until each has ended (one between two statements may yet commit), then report
        those that committed as any other. Until then every window under way counts as
        stopped (its line asks the warehouse), so that a second Ctrl-C loses none; so does a
        window that failed before the interrupt."""
        self.stopped += [*running.values(), *self.failed]
        for future in running:
            future.cancel()
        while not all(future.done() for future in running):
            for conn in list(opened):
                with suppress(psycopg.Error):  # the warehouse gone: what_became_of says so
                    conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
            wait(running, timeout=CANCEL_AGAIN_AFTER_SECONDS)
        pool.shutdown(wait=True)
        for future, window in running.items():
            if future.cancelled():
                self.stopped.remove(window)
            elif future.exception() is None:
                self.stopped.remove(window)
                self._committed(window, future.result())
        self.stopped.sort()

    def _fail(self) -> None:
        """Raise for the earliest failed window (every job has ended): WindowRatingFailed,
        also naming any later window that failed, or a bug's own exception, as it came."""
        report_ambiguous(self.ambiguous)  # the windows before it are committed
        self.ambiguous.clear()  # told: an interrupt from here on does not repeat them
        window, *later = sorted(self.failed)
        cause = self.failed[window]
        if not isinstance(cause, psycopg.Error | RatingPipelineError):
            raise cause
        became = what_became_of(connect, self.run_id, window)
        before = sum(w < window for w in self.committed)
        also = "".join(f"; rating window {w.key} failed too and {self._became(w)}" for w in later)
        raise WindowRatingFailed(window, before, cause, became, len(self.committed) - before, also)

    def interrupted_line(self) -> str:
        """What an interrupted range committed: the windows before the first one under way
        (each under way is asked about), or those committed so far."""
        if self.stopped:
            states = "; ".join(self._stopped_state(w) for w in self.stopped)
            first = self.stopped[0]
            before = sum(w < first for w in self.committed)
            after = _after(len(self.committed) - before)
            it = "it" if len(self.stopped) == 1 else "the first of them"
            return (
                f"interrupted: {states}; the {before} window(s) before {it} are rated and "
                f"committed{after} (run {self.run_id}), and re-running the range is safe"
            )
        if not self.committed:
            return (
                f"interrupted: no window was rated (run {self.run_id}); re-running the range "
                "is safe"
            )
        return (
            f"interrupted: the {len(self.committed)} window(s) through {max(self.committed).key} "
            f"are rated and committed (run {self.run_id}), and re-running the range is safe"
        )

    def _stopped_state(self, window: Window) -> str:
        if window not in self.failed:
            return f"rating window {window.key} {what_became_of(connect, self.run_id, window)}"
        cause = self.failed[window]
        return (
            f"rating window {window.key} failed ({type(cause).__name__}: {first_line(cause)}) "
            f"and {self._became(window)}"
        )

    def _became(self, window: Window) -> str:
        """What became of a failed window, after "failed ... and": "rolled back", ..."""
        return what_became_of(connect, self.run_id, window).removeprefix("was ")

    def report_unbilled(self) -> None:
        """One warning on stderr counting the range's unpriced and invalid events."""
        if not self.unbilled:
            return
        total = sum(self.unbilled.values())
        reasons = ", ".join(f"{self.unbilled[r]:,} {r}" for r in REASONS if self.unbilled[r])
        windows = self.unbilled_windows
        print(
            f"warning: {total:,} event{'s' * (total != 1)} of the range did not bill, in "
            f"{windows:,} window{'s' * (windows != 1)}: {reasons}; rating_exception holds each "
            "rollup with its reason and detail (docs/pricing.md)",
            file=sys.stderr,
        )


class InCallerThread(Executor):
    """One job: each call runs at once, in the calling thread, so that ``rate`` without
    ``--jobs`` rates as it always has: Ctrl-C lands inside the rating, whose statement
    psycopg cancels."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # KeyboardInterrupt too: the range reads it from here
            future.set_exception(exc)
        return future


def _after(committed_after: int) -> str:
    return f", with {committed_after} after it" if committed_after else ""


def ambiguous_lines(rating: WindowRating) -> list[str]:
    """One line per rollup of ``rating`` excluded as ambiguous_base, for report_ambiguous."""
    return [
        f"{rating.window.key}: auth_id={exception.auth_id!r} model_id={exception.model_id!r} "
        f"service_tier={exception.service_tier!r} "
        f"context_tier={exception.context_tier!r}: {shown(exception.detail)}"
        for exception in rating.ambiguous
    ]


def report_undated(undated: int) -> None:
    """Count on stderr the events no window holds, whatever the range: no rating reads them,
    so nothing else would say they went unbilled (contract 6)."""
    if not undated:
        return
    events = (
        "1 event in billing_event has"
        if undated == 1
        else f"{undated:,} events in billing_event have"
    )
    it = "it" if undated == 1 else "them"
    print(
        f"warning: {events} an occurred_at no window holds (null, infinite, before "
        f"{WINDOWED_FROM.date().isoformat()} or from {WINDOWED_UNTIL:%Y-%m-%d %H:%M} UTC): "
        f"no rating reads, bills or excepts {it}; correct {it} upstream (docs/events.md)",
        file=sys.stderr,
    )


def report_ambiguous(ambiguous: list[str]) -> None:
    """Name on stderr the committed rollups excluded as ambiguous_base (contract 5.2)."""
    if not ambiguous:
        return
    print(
        f"error: {len(ambiguous)} rollup(s) not billed, ambiguous_base "
        "(their windows are otherwise rated):",
        file=sys.stderr,
    )
    for line in ambiguous:
        print(f"  {line}", file=sys.stderr)
