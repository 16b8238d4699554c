"""``rating-pipeline demo seed``: synthetic billing events into the warehouse, by COPY."""

from __future__ import annotations

from datetime import datetime

from rating_pipeline.cli import EXIT_OK
from rating_pipeline.demo.seed import SeedSpec, seed_events
from rating_pipeline.warehouse.database import connect, database_url, redact_url
from rating_pipeline.warehouse.migrations import upgrade

ANALYZE_BILLING_EVENT = "ANALYZE billing_event"


def seed_command(start: datetime, hours: int, events_per_hour: int, seed: int) -> int:
    """Migrate the warehouse, replace ``[start, start + hours)`` of seed ``seed``'s events
    with ``events_per_hour`` fresh ones per hour, and print how many and how fast.

    Raises WindowError for a start that is not hour-aligned UTC, SeedError for bad counts.
    """
    spec = SeedSpec(start=start, hours=hours, events_per_hour=events_per_hour, seed=seed)
    url = database_url()
    upgrade(url)
    with connect(url) as conn:
        result = seed_events(conn, spec)
        conn.commit()
        conn.execute(ANALYZE_BILLING_EVENT)
        conn.commit()
    replaced = f" (replacing {result.deleted:,} earlier ones)" if result.deleted else ""
    print(
        f"loaded {result.events:,} events{replaced} into billing_event on {redact_url(url)}: "
        f"[{spec.start.isoformat()}, {spec.end.isoformat()}), seed {seed}, "
        f"{result.seconds:.1f} s ({result.events_per_second:,.0f} events/s)"
    )
    return EXIT_OK
