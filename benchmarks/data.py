"""The benchmark's data: a 30-model mix, its pricebook, and the windows it loads.

Models: 20 true bases and 10 fine-tunes (3 with own rates, 3 declared, 3 unlisted that
price through ``fine_tune_multiplier`` from the base their events carry, and 1 unlisted
without a base, rare, that lands in ``rating_exception`` as unpriced). Popularity falls
off as ``1 / rank^0.8``; principals are Zipf-distributed (exponent 1.1); token counts are
lognormal around each model's medians (sigma 1).

The server generates the events: one ``INSERT ... SELECT`` over ``generate_series`` per
data set, millions of rows a statement, no row crossing the wire. Its randomness is
``hashint8extended(key, salt)``, the key made of the event's hour and number, one salt per
draw: an hour's events depend only on SEED, the hour and its volume, never on the range
loaded (the closable hour draws as the hot hour does: its events again, an hour of its own).
Draws index small lookup tables bound as arrays ("urns"): a table of principals in which
principal ``p`` fills a share of the slots equal to its Zipf probability, one of models by
popularity, and one of lognormal quantiles (per mille) for token counts and ingest delays.
Event ids are ``ev-<SEED>-<YYYYmmddHH>-<n>``, ``n`` zero-padded (so 1% of an hour's ids end
in ``00``), in the order of ``occurred_at``.
"""

from __future__ import annotations

import math
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from statistics import NormalDist
from time import perf_counter

import psycopg

from rating_pipeline.windows import HOUR, Window

SEED = 20260615
PRICEBOOK_VERSION = "bench-2026-06-01"
PRICEBOOK_EFFECTIVE_FROM = "2026-06-01T00:00:00Z"
FINE_TUNE_MULTIPLIER = "1.5"
ANALYZE_EVENTS = "ANALYZE billing_event"

OWN = "own"
DECLARED = "declared"
EVENT = "event"
UNPRICED = "unpriced"


@dataclass(frozen=True)
class BenchModel:
    """One model of the benchmark: how it is priced, and its traffic's median tokens.

    ``kind`` OWN: ``rates`` (input, output) per 1M; DECLARED: ``derived_from`` x
    ``multiplier``; EVENT: unlisted, its events carry ``base``; UNPRICED: unlisted, no base.
    """

    model_id: str
    kind: str
    input_median: int
    output_median: int
    rates: tuple[str, str] | None = None
    derived_from: str | None = None
    multiplier: str | None = None
    base: str | None = None
    long_context: bool = False  # OWN only: priced above LONG_CONTEXT_FACTOR x input_median


def _own(
    model_id: str, rates: tuple[str, str], tokens: tuple[int, int], long_context: bool = False
) -> BenchModel:
    return BenchModel(model_id, OWN, *tokens, rates=rates, long_context=long_context)


def _declared(model_id: str, base: str, multiplier: str, tokens: tuple[int, int]) -> BenchModel:
    return BenchModel(model_id, DECLARED, *tokens, derived_from=base, multiplier=multiplier)


def _event(model_id: str, base: str, tokens: tuple[int, int]) -> BenchModel:
    return BenchModel(model_id, EVENT, *tokens, base=base)


# Most popular first; USD per 1,000,000 tokens; (input, output) medians.
MODELS: tuple[BenchModel, ...] = (
    _own("atlas-medium", ("0.40", "1.60"), (1_200, 300)),
    _own("atlas-small", ("0.15", "0.60"), (600, 150)),
    _own("ft:acme:support", ("3.75", "15.00"), (900, 250)),
    _own("atlas-large", ("2.50", "10.00"), (1_800, 450)),
    _event("ft:globex:chat", "atlas-medium", (800, 400)),
    _own("atlas-embed", ("0.02", "0"), (400, 0)),
    _declared("ft:acme:legal", "atlas-large", "1.25", (3_500, 700)),
    _own("boreal-mini", ("0.25", "1.25"), (700, 200), long_context=True),
    _own("boreal-large", ("3.00", "15.00"), (2_000, 500), long_context=True),
    _own("ft:initech:triage", ("0.60", "2.40"), (700, 150)),
    _own("cirrus-flash", ("0.075", "0.30"), (900, 250), long_context=True),
    _event("ft:wayne:summarize", "cirrus-flash", (4_000, 200)),
    _own("delta-70b", ("0.59", "0.79"), (1_500, 400)),
    _declared("ft:umbrella:med", "boreal-large", "1.4", (2_000, 400)),
    _own("delta-8b", ("0.05", "0.08"), (800, 200)),
    _own("cirrus-pro", ("1.25", "10.00"), (3_000, 800), long_context=True),
    _own("ft:hooli:search", ("0.30", "1.20"), (500, 80)),
    _event("ft:tyrell:agent", "delta-70b", (1_500, 600)),
    _own("cirrus-lite", ("0.0375", "0.15"), (500, 120), long_context=True),
    _declared("ft:stark:code", "ember-code", "1.1", (3_000, 1_000)),
    _own("boreal-xl", ("5.00", "15.00"), (2_500, 600), long_context=True),
    _own("ember-code", ("0.90", "0.90"), (3_500, 900)),
    _own("ember-chat", ("0.20", "0.20"), (1_000, 300)),
    _own("delta-405b", ("2.70", "2.70"), (2_200, 500)),
    _own("fjord-reason", ("1.10", "4.40"), (2_800, 2_000)),
    _own("fjord-base", ("0.35", "0.35"), (1_100, 280)),
    _own("geyser-rerank", ("0.05", "0"), (1_600, 0)),
    _own("geyser-embed-l", ("0.13", "0"), (300, 0)),
    _own("halo-vision", ("1.50", "6.00"), (1_900, 350)),
    # Rare, and unpriced: an unlisted fine-tune whose events name no base.
    BenchModel("ft:cyberdyne:beta", UNPRICED, 600, 200),
)
UNPRICED_WEIGHT = 0.05


# The long-context models are priced as Anthropic and Google price theirs: a prompt above
# the threshold priced wholly at 2 x input and cache reads and 1.5 x output, in batch too.
# Thresholds are LONG_CONTEXT_FACTOR x the model's median input (this data's token counts
# are small): a few percent of those models' events are long, most with a cached prefix
# (their prompt three times their input).
LONG_CONTEXT_FACTOR = 16


def _rate_lines(rates: tuple[str, ...], indent: str) -> list[str]:
    """A rate set: input, output, and cache reads at a tenth of input (exact: 6 places)."""
    cache_read = (Decimal(rates[0]) / 10).quantize(Decimal("0.000001"))
    return [
        f'{indent}input_per_mtok: "{rates[0]}"',
        f'{indent}output_per_mtok: "{rates[1]}"',
        f'{indent}cache_read_per_mtok: "{cache_read}"',
    ]


def pricebook_yaml() -> str:
    """The benchmark's one pricebook version (contract section 4)."""
    lines = [
        "# Written by the benchmark (benchmarks/data.py). Fine-tunes: 3 own-rate, 3 declared,",
        "# 3 unlisted that price through fine_tune_multiplier, 1 unlisted and unpriced. Every",
        "# own-rate model prices cache reads and has a batch tier at half its rates; six price",
        "# prompts above a threshold at long-context rates.",
        f'version: "{PRICEBOOK_VERSION}"',
        f'effective_from: "{PRICEBOOK_EFFECTIVE_FROM}"',
        "currency: USD",
        f'fine_tune_multiplier: "{FINE_TUNE_MULTIPLIER}"',
        "models:",
    ]
    for model in MODELS:
        if model.rates is not None:
            lines.append(f"  {model.model_id}:")
            if model.long_context:
                threshold = LONG_CONTEXT_FACTOR * model.input_median
                lines.append(f"    long_context_above_tokens: {threshold}")
            lines += _rate_set_lines(model, model.rates, "    ")
            batch = tuple(str(Decimal(r) / 2) for r in model.rates)
            lines += ["    batch:", *_rate_set_lines(model, batch, "      ")]
        elif model.kind == DECLARED:
            lines += [
                f"  {model.model_id}:",
                f"    derived_from: {model.derived_from}",
                f'    multiplier: "{model.multiplier}"',
            ]
    return "\n".join(lines) + "\n"


def _rate_set_lines(model: BenchModel, rates: tuple[str, ...], indent: str) -> list[str]:
    """A tier's rate set, and its long_context set when the model has one."""
    lines = _rate_lines(rates, indent)
    if model.long_context:
        long_rates = (str(Decimal(rates[0]) * 2), str(Decimal(rates[1]) * Decimal("1.5")))
        lines += [f"{indent}long_context:", *_rate_lines(long_rates, indent + "  ")]
    return lines


def write_pricebooks(directory: Path) -> Path:
    """Write the benchmark's pricebook into ``directory`` (created); return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{PRICEBOOK_VERSION}.yaml").write_text(pricebook_yaml())
    return directory


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run. ``full`` is the issue's; ``tiny`` keeps the smoke test fast."""

    name: str
    hot_events: int  # the hot hour (a) to (f)
    day_events: int  # the 24-hour day the hot hour sits in, hot hour included
    week_hour_events: int  # each hour of the week before the day (the Dagster range run)
    backfill_hours: int  # that week's hours
    principals: int
    rss_small_events: int  # (h)
    rss_large_events: int  # (h)
    rss_principals: int  # (h): rss_principals x 30 rollups in both windows
    wide_events: int  # (i)
    wide_principals: int  # (i): wide_principals x 30 rollups
    history_rows: int  # (j)
    month_hours: int  # the month rated by one `rate` call
    month_hour_events: int  # each of its hours
    invoice_hours: int  # the invoiced month's rated hours, written straight into rated_usage
    invoice_rollups: int  # rated_usage rows in each of them


SCALES = {
    "full": Scale(
        name="full",
        hot_events=1_000_000,
        day_events=10_000_000,
        week_hour_events=20_000,
        backfill_hours=168,
        principals=2_000,
        rss_small_events=10_000,
        rss_large_events=1_000_000,
        rss_principals=100,
        wide_events=1_000_000,
        wide_principals=3_334,
        history_rows=2_000_000,
        month_hours=720,
        month_hour_events=5_000,
        invoice_hours=720,
        invoice_rollups=10_000,
    ),
    "tiny": Scale(
        name="tiny",
        hot_events=3_000,
        day_events=3_000 + 23 * 200,
        week_hour_events=40,
        backfill_hours=30,
        principals=50,
        rss_small_events=400,
        rss_large_events=4_000,
        rss_principals=10,
        wide_events=4_000,
        wide_principals=60,
        history_rows=20_000,
        month_hours=6,
        month_hour_events=50,
        invoice_hours=6,
        invoice_rollups=40,
    ),
}


@dataclass(frozen=True)
class Layout:
    """Where each data set lives in time. The backfill week ends where the day starts."""

    day_start: datetime
    hot_hour_offset: int
    backfill_hours: int
    month_hours: int = 0

    @property
    def hot(self) -> Window:
        return Window(self.day_start + self.hot_hour_offset * HOUR)

    @property
    def backfill_start(self) -> datetime:
        return self.day_start - self.backfill_hours * HOUR

    @property
    def backfill_end(self) -> datetime:
        return self.day_start

    @property
    def rss_small(self) -> Window:
        return Window(datetime(2026, 6, 20, 10, tzinfo=UTC))

    @property
    def rss_large(self) -> Window:
        return Window(datetime(2026, 6, 20, 11, tzinfo=UTC))

    @property
    def wide(self) -> Window:
        return Window(datetime(2026, 6, 21, 10, tzinfo=UTC))

    @property
    def month_start(self) -> datetime:
        return datetime(2026, 7, 1, tzinfo=UTC)

    @property
    def month_end(self) -> datetime:
        return self.month_start + self.month_hours * HOUR

    @property
    def closable(self) -> Window:
        """A copy of the hot hour's events before every other data set: a close through its
        end closes it alone."""
        return Window(datetime(2026, 6, 1, 10, tzinfo=UTC))

    @property
    def invoice_month(self) -> datetime:
        """The invoiced month (September: 720 hours), its rated_usage rows generated."""
        return datetime(2026, 9, 1, tzinfo=UTC)

    @property
    def empty(self) -> Window:
        """A priced hour without events: what a `rate` call costs before any rating."""
        return Window(datetime(2026, 6, 2, tzinfo=UTC))


LAYOUT = Layout(day_start=datetime(2026, 6, 15, tzinfo=UTC), hot_hour_offset=10, backfill_hours=0)


def layout_for(scale: Scale) -> Layout:
    return Layout(LAYOUT.day_start, LAYOUT.hot_hour_offset, scale.backfill_hours, scale.month_hours)


@dataclass(frozen=True)
class Loaded:
    """What ``load_all`` put into billing_event, and how long it took."""

    events: int
    seconds: float
    day_events: int
    week_events: int
    hot_events: int


OTHER_DAY_HOURS = 23


def other_hour_events(scale: Scale) -> int:
    """Events in each of the day's 23 hours besides the hot one."""
    return (scale.day_events - scale.hot_events) // OTHER_DAY_HOURS


def day_events(scale: Scale) -> int:
    """Events in the day, hot hour included (``day_events`` up to rounding)."""
    return other_hour_events(scale) * OTHER_DAY_HOURS + scale.hot_events


def expected_events(scale: Scale) -> int:
    """Every event ``load_all`` loads for ``scale``."""
    week = scale.backfill_hours * scale.week_hour_events
    return (
        week
        + day_events(scale)
        + scale.rss_small_events
        + scale.rss_large_events
        + (scale.wide_events)
        + scale.month_hours * scale.month_hour_events
        + scale.hot_events  # the closable hour
    )


# billing_event's columns and how the server makes each from a drawn event (``drawn`` in
# GENERATE_EVENTS). A new column is one line here.
GENERATED_COLUMNS = (
    ("event_id", "%(prefix)s || to_char(hour_start AT TIME ZONE 'UTC', 'YYYYMMDDHH24') || '-'"
                 " || lpad(n::text, %(id_width)s, '0')"),
    ("auth_id", "'org-' || lpad(principal::text, %(auth_width)s, '0')"),
    ("model_id", "(%(model_ids)s::text[])[model]"),
    ("base_model", "(%(base_models)s::text[])[model]"),
    ("input_tokens", "(%(input_medians)s::int8[])[model] * input_spread / 1000"),
    ("output_tokens", "(%(output_medians)s::int8[])[model] * output_spread / 1000"),
    # Issue 12's traffic: 40% of events read a cached prefix twice their input's size, 15%
    # are batch (cache_slot and tier_slot are uniform over 0..1023).
    ("cache_read_tokens", "CASE WHEN cache_slot < 410"
                          " THEN (%(input_medians)s::int8[])[model] * input_spread / 500"
                          " ELSE 0 END"),
    ("service_tier", "CASE WHEN tier_slot < 154 THEN 'batch' END"),
    ("occurred_at", "occurred_at"),
    ("ingested_at", "occurred_at + greatest(%(min_delay_us)s, %(median_delay_us)s"
                    " * delay_spread / 1000) * interval '1 microsecond'"),
)  # fmt: skip
# Parameters: the range [start, end) of whole hours, events per hour, the seed, the urns,
# and pairs (> 0: event n < pairs is pair n of principal x model, so every pair is present).
# Each draw hashes the event's key (its hour, or draws_from when set, and its number) with
# its own salt; occurred_at lies in the n-th of the hour's `events` equal slots, so ids
# follow time.
GENERATE_EVENTS = """
WITH event AS (
    SELECT hour_start, n,
           (extract(epoch FROM coalesce(%(draws_from)s::timestamptz, hour_start))::int8 / 3600)
               * 4294967296 + n AS key
    FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour',
                         interval '1 hour') AS hour_start
    CROSS JOIN LATERAL generate_series(0::int8, %(events)s - 1) AS n
), hashed AS (
    SELECT hour_start, n,
           hashint8extended(key, %(seed)s * 8) & 65535 AS principal_slot,
           hashint8extended(key, %(seed)s * 8 + 1) & 65535 AS model_slot,
           hashint8extended(key, %(seed)s * 8 + 2) & 1023 AS input_slot,
           hashint8extended(key, %(seed)s * 8 + 3) & 1023 AS output_slot,
           hashint8extended(key, %(seed)s * 8 + 4) & 1023 AS delay_slot,
           hashint8extended(key, %(seed)s * 8 + 5) & 4294967295 AS jitter,
           hashint8extended(key, %(seed)s * 8 + 6) & 1023 AS cache_slot,
           hashint8extended(key, %(seed)s * 8 + 7) & 1023 AS tier_slot
    FROM event
), drawn AS (
    SELECT hour_start, n,
           CASE WHEN n < %(pairs)s THEN n / %(model_count)s + 1
                ELSE (%(principal_urn)s::int4[])[1 + principal_slot] END AS principal,
           CASE WHEN n < %(pairs)s THEN mod(n, %(model_count)s) + 1
                ELSE (%(model_urn)s::int4[])[1 + model_slot] END AS model,
           (%(spread)s::int8[])[1 + input_slot] AS input_spread,
           (%(spread)s::int8[])[1 + output_slot] AS output_spread,
           (%(spread)s::int8[])[1 + delay_slot] AS delay_spread,
           cache_slot, tier_slot,
           hour_start + (n * %(slot_us)s + mod(jitter, %(slot_us)s)) * interval '1 microsecond'
               AS occurred_at
    FROM hashed
)
INSERT INTO billing_event ({columns})
SELECT {expressions} FROM drawn
""".format(
    columns=", ".join(name for name, _ in GENERATED_COLUMNS),
    expressions=",\n       ".join(expression for _, expression in GENERATED_COLUMNS),
)
DELETE_RANGE = (
    "DELETE FROM billing_event WHERE occurred_at >= %(start)s AND occurred_at < %(end)s"
    " AND starts_with(event_id, %(prefix)s)"
)
URN_SLOTS = 65_536  # the `& 65535` of GENERATE_EVENTS
SPREAD_SLOTS = 1_024  # its `& 1023`
ZIPF_EXPONENT = 1.1
TOKEN_SIGMA = 1.0
MEDIAN_DELAY_US = 1_200_000
MIN_DELAY_US = 50_000
MICROS_PER_HOUR = 3_600_000_000
ID_DIGITS = 7


def urn(weights: Sequence[float], slots: int = URN_SLOTS) -> list[int]:
    """Values 1..len(weights) (SQL subscripts), each in a share of ``slots`` equal to its
    share of the weights (the slot's midpoint falls in the value's interval of the CDF)."""
    total = sum(weights)
    bounds = list(accumulate(weight / total for weight in weights))
    last = len(weights) - 1
    return [min(bisect(bounds, (slot + 0.5) / slots), last) + 1 for slot in range(slots)]


def spread(sigma: float = TOKEN_SIGMA, slots: int = SPREAD_SLOTS) -> list[int]:
    """Per-mille multipliers at the quantiles of a lognormal of median 1: a value drawn
    uniformly from them is lognormal(0, sigma) up to the table's resolution."""
    normal = NormalDist()
    return [round(1000 * math.exp(sigma * normal.inv_cdf((s + 0.5) / slots))) for s in range(slots)]


def model_weights() -> list[float]:
    """Popularity 1 / rank^0.8 in MODELS' order; the unpriced model's is UNPRICED_WEIGHT."""
    return [
        UNPRICED_WEIGHT if model.kind == UNPRICED else 1.0 / rank**0.8
        for rank, model in enumerate(MODELS, start=1)
    ]


@dataclass(frozen=True)
class Batch:
    """``events`` events in each of ``hours`` hours from ``start``, from ``principals``
    auth ids; ``all_pairs``: every (principal, model) pair in every hour."""

    start: datetime
    hours: int
    events: int
    principals: int
    all_pairs: bool = False
    draws_from: datetime | None = None  # every hour draws as this hour does: copies of it

    def parameters(self) -> dict[str, object]:
        """GENERATE_EVENTS's parameters for this batch."""
        pairs = self.principals * len(MODELS) if self.all_pairs else 0
        if not pairs <= self.events <= 10**ID_DIGITS:
            raise ValueError(f"{self}: needs {pairs:,} to {10**ID_DIGITS:,} events per hour")
        return {
            "start": self.start,
            "end": self.start + self.hours * HOUR,
            "events": self.events,
            "pairs": pairs,
            "seed": SEED,
            "prefix": f"ev-{SEED}-",
            "id_width": ID_DIGITS,
            "auth_width": max(4, len(str(self.principals))),
            "slot_us": MICROS_PER_HOUR // max(self.events, 1),
            "principal_urn": urn([rank**-ZIPF_EXPONENT for rank in range(1, self.principals + 1)]),
            "model_urn": urn(model_weights()),
            "model_count": len(MODELS),
            "model_ids": [model.model_id for model in MODELS],
            "base_models": [model.base or model.derived_from for model in MODELS],
            "input_medians": [model.input_median for model in MODELS],
            "output_medians": [model.output_median for model in MODELS],
            "spread": spread(),
            "min_delay_us": MIN_DELAY_US,
            "median_delay_us": MEDIAN_DELAY_US,
            "draws_from": self.draws_from,
        }


def generate(conn: psycopg.Connection, batch: Batch) -> int:
    """Replace the benchmark's events in ``batch``'s hours with generated ones, in one
    transaction (the caller commits); return how many were generated."""
    parameters = batch.parameters()
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(DELETE_RANGE, parameters)
        return cursor.execute(GENERATE_EVENTS, parameters).rowcount


def batches(scale: Scale) -> list[Batch]:
    """Every data set of ``scale``: the week, the day around the hot hour, (h) and (i)."""
    layout = layout_for(scale)
    other = other_hour_events(scale)
    after_hot = OTHER_DAY_HOURS - layout.hot_hour_offset
    return [
        Batch(
            layout.backfill_start, scale.backfill_hours, scale.week_hour_events, scale.principals
        ),
        Batch(layout.day_start, layout.hot_hour_offset, other, scale.principals),
        Batch(layout.hot.start, 1, scale.hot_events, scale.principals),
        Batch(layout.hot.end, after_hot, other, scale.principals),
        Batch(layout.rss_small.start, 1, scale.rss_small_events, scale.rss_principals, True),
        Batch(layout.rss_large.start, 1, scale.rss_large_events, scale.rss_principals, True),
        Batch(layout.wide.start, 1, scale.wide_events, scale.wide_principals, True),
        Batch(layout.month_start, scale.month_hours, scale.month_hour_events, scale.principals),
        Batch(
            layout.closable.start,
            1,
            scale.hot_events,
            scale.principals,
            draws_from=layout.hot.start,
        ),
    ]


def load_all(conn: psycopg.Connection, scale: Scale) -> Loaded:
    """Generate every data set of ``scale`` (replacing earlier benchmark rows); ANALYZE."""
    began = perf_counter()
    events = 0
    for batch in batches(scale):
        events += generate(conn, batch)
        conn.commit()
    seconds = perf_counter() - began
    conn.execute(ANALYZE_EVENTS)
    conn.commit()
    return Loaded(
        events=events,
        seconds=seconds,
        day_events=day_events(scale),
        week_events=scale.backfill_hours * scale.week_hour_events,
        hot_events=scale.hot_events,
    )
