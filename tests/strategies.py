"""Hypothesis strategies for pricebook versions and one window's events, edges weighted in.

Shared by the pure property tests and the database property tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from rating_pipeline.pricebook.model import ModelRates, PricebookVersion
from rating_pipeline.windows import Window
from tests.factories import WINDOW_START, BillingEvent, derived, make_version, schedule
from tests.oracle import CLASSES, TIERS, derives_a_zero

# The contract's names, written here rather than taken from production, so that a tier or
# class production lost would still be generated.
TOKEN_CLASSES, SERVICE_TIERS = tuple(CLASSES), tuple(TIERS)
STANDARD, LONG = "standard", "long"
CONTEXT_TIERS = (STANDARD, LONG)

WINDOW = Window(WINDOW_START)
TRUE_BASES = ("base-a", "base-b", "base-c")
# U+001C is whitespace to Python's str.isspace but not Unicode White_Space; U+200B is a
# format character: neither is blank. 256 characters outside the BMP is the longest valid id.
AUTH_IDS = ("org-1", "org-2", "o'brien; DROP TABLE x;--", "ünïcode\\tab\there", "a" * 256,
            "\x1c", "\u200b", "\U0001f600" * 256)  # fmt: skip
# Two long ids with one 183-character prefix: their shortened keys must still differ.
INVALID_AUTH_IDS = ("", " \t", "\u00a0\u3000", "\x85\u2028", "a" * 257, "p" * 183 + "q" * 74,
                    "p" * 183 + "r" * 9000)  # fmt: skip
INVALID_TIERS = ("Batch", "", "standard ", "\u00a0flex")
# Thresholds and token counts meet: a prompt exactly at its threshold is standard context.
THRESHOLDS = (1, 100, 1000, 2**62)
OPTIONAL_CLASSES = TOKEN_CLASSES[2:]
# Unlisted ids at and over the 256-character limit, blank ones, a fine-tune prefix in caps.
UNLISTED_MODELS = ("mystery", "ft:unlisted:1", "ft:unlisted:2", "", "ft:", "\u2029", "FT:x",
                   "ft:" + "m" * 253, "ft:" + "m" * 254, "z" * 257)  # fmt: skip
STRAY_BASES = ("nowhere", "alias-x", "ft:own:0", "ft:decl:0", "", "base-a ", "b" * 257)
# The versions pricebook_versions names: one long in effect, one from WINDOW's start.
VERSION_EFFECTIVE = {"2026-06-01": datetime(2026, 6, 1, tzinfo=UTC), "2026-06-15": WINDOW_START}

rates = st.one_of(
    st.just("0"),
    st.just("0.000001"),
    st.integers(0, 10**9).map(lambda micros: str(Decimal(micros).scaleb(-6))),
    st.integers(0, 10**12).map(lambda micros: str(Decimal(micros).scaleb(-6))),
)
multipliers = st.one_of(
    st.sampled_from(
        [
            "0.000001",
            "0.0000004",
            "0.1",
            "0.5",
            "1",
            "1.25",
            "1.5",
            "3",
            "0.1000000000000000055511151231257827",
        ]
    ),
    st.integers(1, 10**6).map(lambda n: str(Decimal(n).scaleb(-4))),
)
# Counts at, below and above every threshold, weighted in.
near_thresholds = st.sampled_from((0, 1, 99, 100, 101, 999, 1000, 1001))
token_counts = st.one_of(
    near_thresholds,
    near_thresholds,
    near_thresholds,
    st.integers(0, 10_000),
    st.integers(0, 2**62),
    st.just(2**62),
    st.just(2**63 - 1),
    st.just(0),
    st.integers(0, 10**7),
    st.integers(-3, -1),
)


@st.composite
def rate_schedules(draw: st.DrawFn) -> ModelRates:
    """Own rates: a standard set, maybe tiers, maybe a threshold with long-context sets; each
    set input, output and a random few other classes."""

    def rate_set() -> dict[str, str]:
        every = st.just(list(OPTIONAL_CLASSES))
        extra = draw(st.one_of(every, st.lists(st.sampled_from(OPTIONAL_CLASSES), unique=True)))
        return {c: draw(rates) for c in ("input", "output", *extra)}

    tiers = [STANDARD, *draw(st.lists(st.sampled_from(SERVICE_TIERS[1:]), unique=True))]
    above = draw(st.one_of(st.none(), st.sampled_from(THRESHOLDS)))
    sets = {}
    for tier in tiers:
        contexts = CONTEXT_TIERS if above is not None and draw(st.booleans()) else (STANDARD,)
        for context in contexts:
            sets[(tier, context)] = rate_set()
    if above is not None and not any(context == LONG for _, context in sets):
        sets[(STANDARD, LONG)] = rate_set()
    return schedule(sets, above)


def loadable_multipliers(*bases: ModelRates | dict[str, str]) -> st.SearchStrategy[str]:
    """Multipliers that round no positive rate of ``bases`` to 0: a book with one is
    refused by the loader (rule 6), so no rating ever prices by it."""
    return multipliers.filter(
        lambda text: (
            not any(derives_a_zero(b, Decimal(text)) for b in bases if isinstance(b, ModelRates))
        )
    )


@st.composite
def pricebook_versions(draw: st.DrawFn) -> PricebookVersion:
    """A version with true bases, own-rate and declared fine-tunes, maybe a non-ft alias."""
    bases = draw(st.lists(st.sampled_from(TRUE_BASES), min_size=1, max_size=3, unique=True))
    models: dict[str, ModelRates | dict[str, str]] = {
        base: draw(rate_schedules()) for base in bases
    }
    for n in range(draw(st.integers(0, 2))):
        models[f"ft:own:{n}"] = draw(rate_schedules())
    for n in range(draw(st.integers(0, 2))):
        base = draw(st.sampled_from(bases))
        models[f"ft:decl:{n}"] = derived(base, draw(loadable_multipliers(models[base])))
    if draw(st.booleans()):
        base = draw(st.sampled_from(bases))
        models["alias-x"] = derived(base, draw(loadable_multipliers(models[base])))
    fine_tune_multiplier = draw(
        st.one_of(st.none(), loadable_multipliers(*(models[base] for base in bases)))
    )
    # Two names: one in effect well before WINDOW, one from WINDOW's start exactly.
    name = draw(st.sampled_from(tuple(VERSION_EFFECTIVE)))
    return make_version(
        models,
        version=name,
        effective_from=VERSION_EFFECTIVE[name],
        fine_tune_multiplier=fine_tune_multiplier,
    )


def weighted(usual: tuple[object, ...], rare: tuple[object, ...]) -> st.SearchStrategy:
    """Mostly one of ``usual``, sometimes one of ``rare``: most events must be valid for
    the rules of valid usage to be exercised at all."""
    return st.one_of(*[st.sampled_from(usual)] * 4, st.sampled_from(rare))


offsets = st.one_of(
    st.just(timedelta(0)),
    st.just(timedelta(hours=1)),
    st.just(timedelta(hours=1) - timedelta(microseconds=1)),
    st.just(-timedelta(microseconds=1)),
    st.integers(0, 3_600_000_000 - 1).map(lambda us: timedelta(microseconds=us)),
    st.integers(-600, 4200).map(lambda s: timedelta(seconds=s)),
)


inside = st.integers(0, 3_600_000_000 - 1).map(lambda us: timedelta(microseconds=us))


@st.composite
def window_events(
    draw: st.DrawFn, version: PricebookVersion, max_size: int = 40
) -> list[BillingEvent]:
    """Events around WINDOW for ``version``, with unique ids."""
    base_models = (None, *TRUE_BASES, *STRAY_BASES)
    count = draw(st.integers(0, max_size))
    events = []
    for n in range(count):
        extra = draw(st.lists(st.sampled_from(OPTIONAL_CLASSES), max_size=2, unique=True))
        events.append(
            BillingEvent(
                event_id=f"ev-{n}",
                auth_id=draw(weighted(AUTH_IDS, INVALID_AUTH_IDS)),
                model_id=draw(weighted(tuple(version.models), UNLISTED_MODELS)),
                base_model=draw(st.sampled_from(base_models)),
                input_tokens=draw(token_counts),
                output_tokens=draw(token_counts),
                occurred_at=WINDOW.start + draw(st.one_of(inside, inside, offsets)),
                service_tier=draw(weighted((None, *SERVICE_TIERS), INVALID_TIERS)),
                **{f"{c}_tokens": draw(token_counts) for c in extra},
            )
        )
    return events


@st.composite
def full_schedules(draw: st.DrawFn) -> ModelRates:
    """Own rates with every tier, a threshold, and every class in every set."""
    above = draw(st.sampled_from(THRESHOLDS))
    return schedule(
        {
            (tier, context): {c: draw(rates) for c in TOKEN_CLASSES}
            for tier in SERVICE_TIERS
            for context in CONTEXT_TIERS
        },
        above,
    )


@st.composite
def priced_versions(draw: st.DrawFn) -> PricebookVersion:
    """A version where every valid event prices: a full true base, a fine-tune declared
    from it, and a fine_tune_multiplier for fine-tunes priced from their events' base."""
    base = draw(full_schedules())
    models: dict[str, ModelRates | dict[str, str]] = {
        "base-a": base,
        "ft:decl:0": derived("base-a", draw(loadable_multipliers(base))),
    }
    return make_version(models, fine_tune_multiplier=draw(loadable_multipliers(base)))


# Mostly zero, so that a prompt often is its input alone, exactly at a threshold.
mostly_zero = st.one_of(st.just(0), st.just(0), near_thresholds)


@st.composite
def priced_events(draw: st.DrawFn, max_size: int = 30) -> list[BillingEvent]:
    """Valid events in WINDOW of the models of ``priced_versions``, every class drawn near
    the thresholds, every service tier."""
    events = []
    for n in range(draw(st.integers(1, max_size))):
        model_id, base = draw(
            st.sampled_from((("base-a", None), ("ft:decl:0", None), ("ft:ev", "base-a")))
        )
        events.append(
            BillingEvent(
                event_id=f"ev-{n}",
                auth_id=draw(st.sampled_from(("org-1", "org-2"))),
                model_id=model_id,
                base_model=base,
                occurred_at=WINDOW.start + draw(inside),
                service_tier=draw(st.sampled_from((None, *SERVICE_TIERS))),
                input_tokens=draw(near_thresholds),
                **{f"{c}_tokens": draw(mostly_zero) for c in TOKEN_CLASSES[1:]},  # type: ignore[arg-type]
            )
        )
    return events


@st.composite
def ambiguous_events(draw: st.DrawFn, max_size: int = 24) -> list[BillingEvent]:
    """Events of unlisted fine-tunes for ``priced_versions``, few principals and a mix of
    bases (a true base, none, unknown, padded, a fine-tune's), so that one (auth, model)
    pair often carries two bases: the ambiguity gate (contract 5.2) decides them. Some
    are invalid: they must not count towards ambiguity."""
    events = []
    for n in range(draw(st.integers(2, max_size))):
        events.append(
            BillingEvent(
                event_id=f"ev-{n}",
                auth_id=draw(st.sampled_from(("org-1", "org-2"))),
                model_id=draw(st.sampled_from(("ft:u1", "ft:u2", "base-a"))),
                base_model=draw(
                    st.sampled_from((None, "base-a", "base-a", "base-b", "base-a ", "ft:decl:0"))
                ),
                occurred_at=WINDOW.start + draw(inside),
                service_tier=draw(st.sampled_from((None, *SERVICE_TIERS, "Batch"))),
                input_tokens=draw(st.one_of(near_thresholds, near_thresholds, st.just(-1))),
                output_tokens=draw(near_thresholds),
            )
        )
    return events
