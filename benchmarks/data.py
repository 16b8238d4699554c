"""The benchmark's data: a 30-model mix, its pricebook, and the windows it loads by COPY.

Models: 20 true bases and 10 fine-tunes (3 with own rates, 3 declared, 3 unlisted that
price through ``fine_tune_multiplier`` from the base their events carry, and 1 unlisted
without a base, rare, that lands in ``rating_exception`` as unpriced). Popularity falls
off as ``1 / rank^0.8``; principals are Zipf-distributed (exponent 1.1); token counts are
lognormal per model (``rating_pipeline.demo.seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from rating_pipeline.demo.seed import ModelMix, SeedSpec, SyntheticModel, seed_events
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


def _own(model_id: str, rates: tuple[str, str], tokens: tuple[int, int]) -> BenchModel:
    return BenchModel(model_id, OWN, *tokens, rates=rates)


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
    _own("boreal-mini", ("0.25", "1.25"), (700, 200)),
    _own("boreal-large", ("3.00", "15.00"), (2_000, 500)),
    _own("ft:initech:triage", ("0.60", "2.40"), (700, 150)),
    _own("cirrus-flash", ("0.075", "0.30"), (900, 250)),
    _event("ft:wayne:summarize", "cirrus-flash", (4_000, 200)),
    _own("delta-70b", ("0.59", "0.79"), (1_500, 400)),
    _declared("ft:umbrella:med", "boreal-large", "1.4", (2_000, 400)),
    _own("delta-8b", ("0.05", "0.08"), (800, 200)),
    _own("cirrus-pro", ("1.25", "10.00"), (3_000, 800)),
    _own("ft:hooli:search", ("0.30", "1.20"), (500, 80)),
    _event("ft:tyrell:agent", "delta-70b", (1_500, 600)),
    _own("cirrus-lite", ("0.0375", "0.15"), (500, 120)),
    _declared("ft:stark:code", "ember-code", "1.1", (3_000, 1_000)),
    _own("boreal-xl", ("5.00", "15.00"), (2_500, 600)),
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


def benchmark_mix() -> ModelMix:
    """The 30 models of the benchmark's traffic; popularity falls off as 1 / rank^0.8."""
    return ModelMix(
        tuple(
            SyntheticModel(
                model.model_id,
                model.base or model.derived_from,
                UNPRICED_WEIGHT if model.kind == UNPRICED else float(1.0 / (rank**0.8)),
                model.input_median,
                model.output_median,
            )
            for rank, model in enumerate(MODELS, start=1)
        )
    )


def pricebook_yaml() -> str:
    """The benchmark's one pricebook version (contract section 4)."""
    lines = [
        "# Written by the benchmark (benchmarks/data.py). Fine-tunes: 3 own-rate, 3 declared,",
        "# 3 unlisted that price through fine_tune_multiplier, 1 unlisted and unpriced.",
        f'version: "{PRICEBOOK_VERSION}"',
        f'effective_from: "{PRICEBOOK_EFFECTIVE_FROM}"',
        "currency: USD",
        f'fine_tune_multiplier: "{FINE_TUNE_MULTIPLIER}"',
        "models:",
    ]
    for model in MODELS:
        if model.rates is not None:
            lines += [
                f"  {model.model_id}:",
                f'    input_per_mtok: "{model.rates[0]}"',
                f'    output_per_mtok: "{model.rates[1]}"',
            ]
        elif model.kind == DECLARED:
            lines += [
                f"  {model.model_id}:",
                f"    derived_from: {model.derived_from}",
                f'    multiplier: "{model.multiplier}"',
            ]
    return "\n".join(lines) + "\n"


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
        return Window.starting(self.day_start + self.hot_hour_offset * HOUR)

    @property
    def backfill_start(self) -> datetime:
        return self.day_start - self.backfill_hours * HOUR

    @property
    def backfill_end(self) -> datetime:
        return self.day_start

    @property
    def rss_small(self) -> Window:
        return Window.starting(datetime(2026, 6, 20, 10, tzinfo=UTC))

    @property
    def rss_large(self) -> Window:
        return Window.starting(datetime(2026, 6, 20, 11, tzinfo=UTC))

    @property
    def wide(self) -> Window:
        return Window.starting(datetime(2026, 6, 21, 10, tzinfo=UTC))

    @property
    def month_start(self) -> datetime:
        return datetime(2026, 7, 1, tzinfo=UTC)

    @property
    def month_end(self) -> datetime:
        return self.month_start + self.month_hours * HOUR

    @property
    def empty(self) -> Window:
        """A priced hour without events: what a `rate` call costs before any rating."""
        return Window.starting(datetime(2026, 6, 2, tzinfo=UTC))


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
    )


def load_all(conn: psycopg.Connection, scale: Scale) -> Loaded:
    """Load every data set of ``scale`` by COPY (replacing earlier benchmark rows); ANALYZE."""
    mix = benchmark_mix()
    layout = layout_for(scale)
    other_hours = OTHER_DAY_HOURS
    other_events = other_hour_events(scale)
    specs = [
        SeedSpec(layout.backfill_start, scale.backfill_hours, scale.week_hour_events, SEED, mix,
                 scale.principals),
        SeedSpec(layout.day_start, layout.hot_hour_offset, other_events, SEED, mix,
                 scale.principals),
        SeedSpec(layout.hot.start, 1, scale.hot_events, SEED, mix, scale.principals),
        SeedSpec(layout.hot.end, other_hours - layout.hot_hour_offset, other_events, SEED, mix,
                 scale.principals),
        SeedSpec(layout.rss_small.start, 1, scale.rss_small_events, SEED, mix,
                 scale.rss_principals, cover_all_pairs=True),
        SeedSpec(layout.rss_large.start, 1, scale.rss_large_events, SEED, mix,
                 scale.rss_principals, cover_all_pairs=True),
        SeedSpec(layout.wide.start, 1, scale.wide_events, SEED, mix, scale.wide_principals,
                 cover_all_pairs=True),
        SeedSpec(layout.month_start, scale.month_hours, scale.month_hour_events, SEED, mix,
                 scale.principals),
    ]  # fmt: skip
    seconds = 0.0
    events = 0
    for spec in specs:
        result = seed_events(conn, spec)
        conn.commit()
        seconds += result.seconds
        events += result.events
    conn.execute(ANALYZE_EVENTS)
    conn.commit()
    return Loaded(
        events=events,
        seconds=seconds,
        day_events=day_events(scale),
        week_events=scale.backfill_hours * scale.week_hour_events,
        hot_events=scale.hot_events,
    )
