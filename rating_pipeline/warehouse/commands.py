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
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import psycopg

from rating_pipeline.errors import EXIT_FAILURE, EXIT_OK, RatingPipelineError, first_line, shown
from rating_pipeline.pricebook.loader import PricebookLoadError, load_pricebooks
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


def new_run_id() -> str:
    """The run id of one CLI invocation: ``cli-<uuid4>``."""
    return f"cli-{uuid.uuid4()}"


class WindowRatingFailed(RatingPipelineError):
    """One window's rating failed; the windows before it committed. Whether it committed
    too (the failure came at or after its COMMIT) is what ``what_became_of`` found."""

    def __init__(self, window: Window, before: int, cause: Exception, became: str) -> None:
        reason = first_line(cause)
        super().__init__(
            f"rating window {window.key} failed: {type(cause).__name__}: {reason}"
            f"{refusal_note(cause)}. It {became}; "
            f"the {before} window(s) before it are rated and committed, and re-running the "
            "range is safe"
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


def rate_range_command(start: datetime, end: datetime, pricebook_dir: Path | None) -> int:
    """Rate each window in ``[start, end)``; return the exit code.

    Raises WindowError for bounds that are not whole UTC hours or not in order,
    WindowNotClosed when ``end`` is after the database's clock, and NoPricebookForWindow
    when a window has no version; each before anything is rated.
    """
    run_id = new_run_id()
    ambiguous: list[str] = []
    unbilled = Unbilled()
    windows: list[Window] = []
    rated = 0  # windows of the range committed, in order
    under_way: Window | None = None  # the window being rated, if any
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
            conn.rollback()
            for window in windows:
                under_way = window
                try:
                    rating = rate_window(conn, window, pricebooks, run_id)
                except (psycopg.Error, RatingPipelineError) as exc:
                    report_ambiguous(ambiguous)  # the windows before it are committed
                    ambiguous.clear()  # told: an interrupt from here on does not repeat them
                    became = what_became_of(connect, run_id, window)
                    raise WindowRatingFailed(window, rated, exc, became) from exc
                under_way, rated = None, rated + 1
                ambiguous.extend(ambiguous_lines(rating))
                unbilled.add(rating)
                print(rating_log_lines(rating)[0], flush=True)  # a killed run's log names it
        print(f"rated {len(windows)} window(s), run {run_id}", flush=True)  # before stderr's
    except KeyboardInterrupt:
        report_ambiguous(ambiguous)
        print(interrupted_line(windows, rated, under_way, run_id), file=sys.stderr)
        raise
    report_undated(undated)
    unbilled.report()
    report_ambiguous(ambiguous)
    return EXIT_FAILURE if ambiguous else EXIT_OK


class Unbilled:
    """The events of a range's windows excepted as unpriced or invalid: they leave the exit
    code at 0 (contract 5.2 fails a run for an ambiguous base alone, reported apart), so
    one warning on stderr counts them, by reason."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.windows = 0

    def add(self, rating: WindowRating) -> None:
        excepted = [e for e in rating.exception_rows if e.reason != AMBIGUOUS_BASE]
        for exception in excepted:
            self.events[exception.reason] += exception.event_count
        self.windows += bool(excepted)

    def report(self) -> None:
        if not self.events:
            return
        total = sum(self.events.values())
        reasons = ", ".join(f"{self.events[r]:,} {r}" for r in REASONS if self.events[r])
        print(
            f"warning: {total:,} event{'s' * (total != 1)} of the range did not bill, in "
            f"{self.windows:,} window{'s' * (self.windows != 1)}: {reasons}; rating_exception "
            "holds each rollup with its reason and detail (docs/pricing.md)",
            file=sys.stderr,
        )


def ambiguous_lines(rating: WindowRating) -> list[str]:
    """One line per rollup of ``rating`` excluded as ambiguous_base, for report_ambiguous."""
    return [
        f"{rating.window.key}: auth_id={exception.auth_id!r} model_id={exception.model_id!r} "
        f"service_tier={exception.service_tier!r} "
        f"context_tier={exception.context_tier!r}: {shown(exception.detail)}"
        for exception in rating.ambiguous
    ]


def interrupted_line(
    windows: list[Window], rated: int, under_way: Window | None, run_id: str
) -> str:
    """What an interrupted range committed: the windows before the one under way (which
    the warehouse is asked about), or those through the last one committed."""
    if under_way is not None:
        became = what_became_of(connect, run_id, under_way)
        return (
            f"interrupted: rating window {under_way.key} {became}; the {rated} window(s) before "
            f"it are rated and committed (run {run_id}), and re-running the range is safe"
        )
    if rated == 0:
        return f"interrupted: no window was rated (run {run_id}); re-running the range is safe"
    return (
        f"interrupted: the {rated} window(s) through {windows[rated - 1].key} are rated and "
        f"committed (run {run_id}), and re-running the range is safe"
    )


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
