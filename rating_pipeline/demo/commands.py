"""``rating-pipeline demo seed``: synthetic billing events into the warehouse, by COPY."""

from __future__ import annotations

import sys
from datetime import datetime

from rating_pipeline.cli import EXIT_OK
from rating_pipeline.demo.seed import SeedSpec, analyze_billing_event, seed_events
from rating_pipeline.warehouse.close_mark import close_mark
from rating_pipeline.warehouse.database import connect, database_url, redact_url
from rating_pipeline.warehouse.migrations import upgrade
from rating_pipeline.windows import HOUR


def seed_command(start: datetime, hours: int, events_per_hour: int, seed: int) -> int:
    """Migrate the warehouse, replace ``[start, start + hours)`` of seed ``seed``'s events
    with ``events_per_hour`` fresh ones per hour, and print how many and how fast, warning
    of any hour a close has frozen. Stopped by Ctrl-C, it says whether the load had
    committed.

    Raises WindowError for a start that is not hour-aligned UTC, SeedError for bad counts.
    """
    spec = SeedSpec(start=start, hours=hours, events_per_hour=events_per_hour, seed=seed)
    url = database_url()
    upgrade(url)
    committed = False
    try:
        with connect(url) as conn:
            result = seed_events(conn, spec)  # its own transaction, committed
            committed = True
            analyze_billing_event(conn)
            closed_through = close_mark(conn)
            conn.commit()
    except KeyboardInterrupt:
        print(interrupted_seed_line(spec, committed), file=sys.stderr)
        raise
    replaced = f" (replacing {result.deleted:,} earlier ones)" if result.deleted else ""
    print(
        f"loaded {result.events:,} events{replaced} into billing_event on {redact_url(url)}: "
        f"[{spec.start.isoformat()}, {spec.end.isoformat()}), seed {seed}, "
        f"{result.seconds:.1f} s ({result.events_per_second:,.0f} events/s)"
    )
    warning = closed_hours_warning(spec, closed_through)
    if warning:
        print(warning, file=sys.stderr)
    return EXIT_OK


def closed_hours_warning(spec: SeedSpec, closed_through: datetime | None) -> str | None:
    """The warning for seeded hours a close has frozen (contract 10), or None: their
    events changed all the same, and their next rating adjusts the next invoice."""
    if closed_through is None or closed_through <= spec.start:
        return None
    hours = (min(closed_through, spec.end) - spec.start) // HOUR
    which, stands, it = (
        ("1 of the seeded hours is", "its invoice stands", "it")
        if hours == 1
        else (f"{hours} of the seeded hours are", "their invoices stand", "them")
    )
    return (
        f"warning: {which} closed (the periods are closed through "
        f"{closed_through.isoformat()}), from {spec.start.isoformat()}: {stands}, "
        f"and rating {it} again bills what changed as adjustments on the next invoice "
        "(docs/periods.md)"
    )


def interrupted_seed_line(spec: SeedSpec, committed: bool) -> str:
    """What a seed stopped by Ctrl-C (or SIGTERM) left in billing_event."""
    span = f"[{spec.start.isoformat()}, {spec.end.isoformat()})"
    if committed:
        left = (
            f"after its commit: the {spec.events:,} events are loaded; only the table's "
            "planner statistics were not refreshed (autovacuum's ANALYZE will)"
        )
    else:
        left = (
            "before its commit: nothing was loaded, unless the stop came during the commit itself"
        )
    return (
        f"interrupted: the seed of {span}, seed {spec.seed}, was stopped {left}. Running "
        "the same command again replaces the range's events either way"
    )
