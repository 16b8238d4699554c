"""Hypothesis strategies for pricebook versions and one window's events, edges weighted in.

Shared by the pure property tests and the database property tests.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import strategies as st

from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import BillingEvent
from rating_pipeline.windows import Window
from tests.factories import WINDOW_START, derived, make_version, own

WINDOW = Window(WINDOW_START)
TRUE_BASES = ("base-a", "base-b", "base-c")
AUTH_IDS = ("org-1", "org-2", "", " \t", "o'brien; DROP TABLE x;--", "ünïcode\\tab\there")
UNLISTED_MODELS = ("mystery", "ft:unlisted:1", "ft:unlisted:2", "", "ft:")
STRAY_BASES = ("nowhere", "alias-x", "ft:own:0", "ft:decl:0", "")

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
token_counts = st.one_of(
    st.integers(0, 10_000),
    st.integers(0, 2**62),
    st.just(2**62),
    st.just(0),
    st.integers(0, 10**7),
    st.integers(-3, -1),
)


@st.composite
def pricebook_versions(draw: st.DrawFn) -> PricebookVersion:
    """A version with true bases, own-rate and declared fine-tunes, maybe a non-ft alias."""
    bases = draw(st.lists(st.sampled_from(TRUE_BASES), min_size=1, max_size=3, unique=True))
    models: dict[str, tuple[str, str] | dict[str, str]] = {
        base: own(draw(rates), draw(rates)) for base in bases
    }
    for n in range(draw(st.integers(0, 2))):
        models[f"ft:own:{n}"] = own(draw(rates), draw(rates))
    for n in range(draw(st.integers(0, 2))):
        models[f"ft:decl:{n}"] = derived(draw(st.sampled_from(bases)), draw(multipliers))
    if draw(st.booleans()):
        models["alias-x"] = derived(draw(st.sampled_from(bases)), draw(multipliers))
    fine_tune_multiplier = draw(st.one_of(st.none(), multipliers))
    return make_version(models, fine_tune_multiplier=fine_tune_multiplier)


offsets = st.one_of(
    st.just(timedelta(0)),
    st.just(timedelta(hours=1)),
    st.just(timedelta(hours=1) - timedelta(microseconds=1)),
    st.just(-timedelta(microseconds=1)),
    st.integers(0, 3_600_000_000 - 1).map(lambda us: timedelta(microseconds=us)),
    st.integers(-600, 4200).map(lambda s: timedelta(seconds=s)),
)


@st.composite
def window_events(
    draw: st.DrawFn, version: PricebookVersion, max_size: int = 40
) -> list[BillingEvent]:
    """Events around WINDOW for ``version``, with unique ids."""
    model_ids = (*version.models, *UNLISTED_MODELS)
    base_models = (None, *TRUE_BASES, *STRAY_BASES)
    count = draw(st.integers(0, max_size))
    events = []
    for n in range(count):
        events.append(
            BillingEvent(
                event_id=f"ev-{n}",
                auth_id=draw(st.sampled_from(AUTH_IDS)),
                model_id=draw(st.sampled_from(model_ids)),
                base_model=draw(st.sampled_from(base_models)),
                input_tokens=draw(token_counts),
                output_tokens=draw(token_counts),
                occurred_at=WINDOW.start + draw(offsets),
            )
        )
    return events
