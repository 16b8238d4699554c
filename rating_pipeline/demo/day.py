# ruff: noqa: E501 (DEMO_CASES is read across, one row a line)
"""The demo day: 24 hours of ordinary traffic, the hand-made cases, and late events.

Hour volumes follow DIURNAL_PERCENT of the nominal ``events_per_hour``. DEMO_CASES is the
table of hand-made events, one row per group of identical events; rows with the same
``name`` make one case together (an ambiguous rollup needs events with two different
bases). A row's ``count`` events occur a second apart from half past hour ``hour_offset``
of the day and are ingested ``ingest_delay`` after they occur; a field named after a
``billing_event`` column is that column's value on every event of the row. Their ids are
``ev-<seed>-<name>-<row>-<n>``, so re-seeding the day replaces them with the traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain

import psycopg
from psycopg import sql

from rating_pipeline.demo.seed import (
    COLUMN_NAMES,
    Columns,
    Row,
    SeedError,
    SeedSpec,
    auth_id,
    generate_hour,
    hour_tag,
    replace_seeded,
    rows,
    seed_prefix,
)
from rating_pipeline.windows import HOUR, Window

# Late events take ingested_at's default, now(): the time of the inserting transaction.
LATE_COLUMNS = tuple(name for name in COLUMN_NAMES if name != "ingested_at")
INSERT_LATE_EVENT_IF_ABSENT = sql.SQL(
    "INSERT INTO billing_event ({}) VALUES ({}) ON CONFLICT (event_id) DO NOTHING"
).format(
    sql.SQL(", ").join(map(sql.Identifier, LATE_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(LATE_COLUMNS)),
)


@dataclass(frozen=True)
class DemoCase:
    """``count`` identical events that exercise one rule of the contract (``expected``).

    ``service_tier`` None is upstream's NULL: the standard tier. No case writes a 1-hour
    cache (``cache_write_1h_tokens`` 0); the ordinary traffic does.
    """

    name: str
    hour_offset: int
    auth_id: str
    model_id: str
    base_model: str | None
    service_tier: str | None
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    count: int
    ingest_delay: timedelta
    expected: str
    cache_write_1h_tokens: int = 0


PROMPT = timedelta(seconds=2)
STRAGGLING = timedelta(hours=5)
CASE_FIRST_EVENT = timedelta(minutes=30)
CASE_EVENT_SPACING = timedelta(seconds=1)

# Costs in ``expected`` are worked by hand from pricebooks/2026-06-01.yaml: per class, tokens
# x its rate in USD per 1,000,000 tokens; a class unnamed is input or output. The tier, cache
# and long-context cases bill under auth ids of their own, so that each is a rollup of its own.
# fmt: off
DEMO_CASES = (
    #        name                          hour  auth_id             model_id                base_model         tier        input  cache_read  cache_write  output  count  ingest_delay  expected
    DemoCase("straggler",                     2, "org-0001",         "base-medium",          None,              None,         900,          0,           0,    200,     4, STRAGGLING,   "priced normally; ingested_at 5 h after the hour"),
    DemoCase("unpriced_unknown_model",        3, "org-0003",         "mystery-large",        None,              None,       1_500,          0,           0,    500,     4, PROMPT,       "unpriced: unknown model"),
    DemoCase("ambiguous_two_bases",           5, "org-0004",         "ft:initech:summarize", "base-small",      None,       3_000,          0,           0,    150,     3, PROMPT,       "ambiguous_base: base-medium, base-small (with the next row)"),
    DemoCase("ambiguous_two_bases",           5, "org-0004",         "ft:initech:summarize", "base-medium",     None,       3_300,          0,           0,    150,     2, PROMPT,       "ambiguous_base: base-medium, base-small (with the row above)"),
    DemoCase("cached_prefix",                 6, "org-cached",       "base-large",           None,              None,       2_000,          0,      48_000,    500,     1, PROMPT,       "standard, writes the cache: 2,000 x 2.50 + 48,000 cache_write x 3.125 + 500 x 10.00 = $0.16"),
    DemoCase("cached_prefix",                 6, "org-cached",       "base-large",           None,              None,       2_000,     48_000,           0,    500,     3, PROMPT,       "standard, reads it: 2,000 x 2.50 + 48,000 cache_read x 0.25 + 500 x 10.00 = $0.022 each; rollup $0.226"),
    DemoCase("ambiguous_null_base",           9, "org-0002",         "ft:globex:chat",       "base-medium",     None,         700,          0,           0,    350,     3, PROMPT,       "ambiguous_base: base-medium, null (with the next row)"),
    DemoCase("ambiguous_null_base",           9, "org-0002",         "ft:globex:chat",       None,              None,         700,          0,           0,    380,     2, PROMPT,       "ambiguous_base: base-medium, null (with the row above)"),
    DemoCase("batch_request",                11, "org-batch",        "base-medium",          None,              "batch",   20_000,          0,           0,  4_000,     5, PROMPT,       "batch, half price: 20,000 x 0.20 + 4,000 x 0.80 = $0.0072 each; rollup $0.036"),
    DemoCase("unpriced_base_is_fine_tune",   12, "org-0001",         "ft:acme:support-mini", "ft:acme:support", None,         800,          0,           0,    120,     3, PROMPT,       "unpriced: base ft:acme:support is not a true base"),
    DemoCase("priority_request",             13, "org-priority",     "base-medium",          None,              "priority", 1_000,      3_000,           0,    300,     4, PROMPT,       "priority: 1,000 x 0.70 + 3,000 cache_read x 0.175 + 300 x 2.80 = $0.002065 each; rollup $0.00826"),
    DemoCase("unpriced_no_base",             15, "org-0006",         "ft:hooli:search",      None,              None,         600,          0,           0,     90,     2, PROMPT,       "unpriced: fine-tune without a base"),
    DemoCase("long_context_above_threshold", 16, "org-long-context", "base-large",           None,              None,     150_001,     50_000,           0,  1_000,     1, PROMPT,       "long context, prompt 200,001: 150,001 x 5.00 + 50,000 cache_read x 0.50 + 1,000 x 15.00 = $0.790005"),
    DemoCase("long_context_at_threshold",    16, "org-long-context", "base-large",           None,              None,     150_000,     50_000,           0,  1_000,     1, PROMPT,       "standard context, prompt exactly 200,000: 150,000 x 2.50 + 50,000 cache_read x 0.25 + 1,000 x 10.00 = $0.3975"),
    DemoCase("unpriced_cache_in_batch",      18, "org-batch-cached", "base-small",           None,              "batch",      800,      2_000,           0,    100,     2, PROMPT,       "unpriced: no cache_read rate in batch rates of base-small (nothing is inherited)"),
    DemoCase("invalid_event",                20, "org-0003",         "base-small",           None,              None,         -50,          0,           0,     20,     1, PROMPT,       "invalid_event: negative input tokens"),
    DemoCase("invalid_event",                20, "org-0003",         "base-small",           None,              None,          50,          0,           0,    -20,     1, PROMPT,       "invalid_event: negative output tokens"),
    DemoCase("invalid_event",                20, "",                 "base-medium",          None,              None,         400,          0,           0,    100,     1, PROMPT,       "invalid_event: blank auth_id"),
    DemoCase("invalid_event",                20, "   ",              "base-medium",          None,              None,         400,          0,           0,    100,     1, PROMPT,       "invalid_event: whitespace-only auth_id"),
    DemoCase("invalid_event",                20, "org-0005",         "",                     None,              None,         400,          0,           0,    100,     1, PROMPT,       "invalid_event: blank model_id"),
    DemoCase("invalid_event",                20, "org-0005",         "base-medium",          None,              "Batch",      400,          0,           0,    100,     1, PROMPT,       "invalid_event: unknown service_tier (tiers are case-sensitive)"),
)
# fmt: on


# Percent of the nominal hourly volume, hour by hour (UTC): a quiet night, a busy afternoon.
DIURNAL_PERCENT = (
    40, 35, 30, 30, 35, 45, 60, 80, 100, 115, 125, 130,
    130, 135, 140, 140, 135, 125, 110, 95, 80, 65, 55, 45,
)  # fmt: skip
DEMO_EVENTS_PER_HOUR = 2_000
DEMO_PRINCIPALS = 120
# billing_account of the demo: the ordinary principals, by block, belong to three accounts;
# the hand-made cases' principals have no row, so each is an account of its own.
DEMO_ACCOUNTS = (("acct-north", 1, 40), ("acct-south", 41, 80), ("acct-west", 81, 120))
REPLACE_ACCOUNTS = "DELETE FROM billing_account"
INSERT_ACCOUNT = "INSERT INTO billing_account (auth_id, account_id) VALUES (%s, %s)"
LATE_STREAM = 1  # the generator's stream for late events, apart from the hour's own


@dataclass(frozen=True)
class DemoDay:
    """What ``demo_day`` loaded: the ordinary events per hour, and the cases."""

    ordinary_per_hour: tuple[int, ...]
    cases: tuple[DemoCase, ...] = DEMO_CASES

    @property
    def events(self) -> int:
        return sum(self.ordinary_per_hour) + sum(case.count for case in self.cases)


def case_events(start: datetime, seed: int) -> Iterator[Row]:
    """The events of every row of DEMO_CASES (see the module doc), for the demo day
    starting at ``start``, values in COLUMN_NAMES order."""
    for row, case in enumerate(DEMO_CASES):
        for n in range(case.count):
            occurred = start + case.hour_offset * HOUR + CASE_FIRST_EVENT + n * CASE_EVENT_SPACING
            made = {
                "event_id": f"{seed_prefix(seed)}{case.name}-{row}-{n}",
                "occurred_at": occurred,
                "ingested_at": occurred + case.ingest_delay,
            }
            yield tuple(made[c] if c in made else getattr(case, c) for c in COLUMN_NAMES)


def demo_day(
    conn: psycopg.Connection,
    start: datetime,
    seed: int,
    events_per_hour: int = DEMO_EVENTS_PER_HOUR,
) -> DemoDay:
    """Load (replacing) 24 hours of demo traffic from ``start``, hour volumes following
    DIURNAL_PERCENT, with every row of DEMO_CASES; return what was loaded. Same ``start``
    and ``seed``, same rows.

    One transaction (``replace_seeded``). Late arrivals after a rating: ``add_late_events``.
    """
    spec = SeedSpec(start, len(DIURNAL_PERCENT), events_per_hour, seed, DEMO_PRINCIPALS)
    volumes = tuple(events_per_hour * percent // 100 for percent in DIURNAL_PERCENT)
    ordinary = (
        rows(generate_hour(spec, start + offset * HOUR, volume))
        for offset, volume in enumerate(volumes)
    )
    events = chain(chain.from_iterable(ordinary), case_events(start, seed))
    replace_seeded(conn, spec.start, spec.end, seed, events)
    return DemoDay(volumes)


def demo_accounts() -> list[tuple[str, str]]:
    """(auth_id, account_id) of every ordinary demo principal."""
    return [
        (auth_id(index - 1, DEMO_PRINCIPALS), account)
        for account, first, last in DEMO_ACCOUNTS
        for index in range(first, last + 1)
    ]


def load_demo_accounts(conn: psycopg.Connection) -> int:
    """Replace ``billing_account`` with the demo's mapping; return how many rows it holds."""
    accounts = demo_accounts()
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(REPLACE_ACCOUNTS)
        cursor.executemany(INSERT_ACCOUNT, accounts)
    return len(accounts)


def late_events(window_start: datetime, count: int, seed: int) -> Columns:
    """``count`` ordinary demo events of the window starting at ``window_start``, without
    ``ingested_at``; ids ``ev-<seed>-late-<YYYYmmddHH>-<n>``."""
    window = Window(window_start)
    spec = SeedSpec(window.start, 1, count, seed, DEMO_PRINCIPALS)
    columns = generate_hour(spec, window.start, count, stream=LATE_STREAM)
    prefix = f"{seed_prefix(seed)}late-{hour_tag(window.start)}-"
    columns["event_id"] = [f"{prefix}{n}" for n in range(count)]
    del columns["ingested_at"]
    return columns


def add_late_events(conn: psycopg.Connection, window_start: datetime, n: int, seed: int) -> int:
    """Insert ``n`` late events into the window starting at ``window_start``; return how
    many were new.

    They occurred inside the window but are ingested now (the database's ``now()``), i.e.
    after any rating of the window so far: what a late-events sensor must catch. They are
    ordinary priced traffic of the demo mix, so a re-rate changes the window's rollups.
    Idempotent: the same ``(window_start, n, seed)`` inserts nothing the second time
    (``ON CONFLICT (event_id) DO NOTHING``); a larger ``n`` adds the missing ones.
    """
    if n < 0:
        raise SeedError(f"late events: n must be >= 0, not {n}")
    events = list(rows(late_events(window_start, n, seed), LATE_COLUMNS))
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(INSERT_LATE_EVENT_IF_ABSENT, events)
        return max(cursor.rowcount, 0) if events else 0
