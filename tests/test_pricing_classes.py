"""Token classes, service tiers and long context (contract 3, 5.3 and 6), through the
production path; every case is also held to the oracle by the ``rate_events`` fixture."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.records import AMBIGUOUS_BASE, INVALID_EVENT, UNPRICED
from tests.factories import derived, make_event, make_version, schedule, with_tokens

# Priced as a provider prices a 2026 model: cache reads at a tenth of input, writes at
# 1.25 x, batch at half, a long-context set above 200,000 prompt tokens.
LARGE = schedule(
    {
        ("standard", "standard"): {
            "input": "2.50", "output": "10", "cache_read": "0.25", "cache_write": "3.125",
            "reasoning": "10",
        },
        ("standard", "long"): {"input": "5", "output": "15", "cache_read": "0.50"},
        ("batch", "standard"): {"input": "1.25", "output": "5"},
        ("priority", "standard"): {"input": "5", "output": "20", "cache_read": "0.50"},
    },
    above=200_000,
)  # fmt: skip
BOOK = make_version(
    {"base-large": LARGE, "ft:acme:legal": derived("base-large", "1.25")},
    fine_tune_multiplier="1.5",
)


def test_cached_tokens_are_priced_at_the_cache_read_rate_never_at_input(rate_events):
    event = replace(make_event("a", "base-large", None, 1_000, 200), cache_read_tokens=9_000)
    (rollup,) = rate_events(BOOK, event).rollups
    # 1,000 x 2.50 + 200 x 10 + 9,000 x 0.25, per million
    assert rollup.cost_usd == Decimal("0.00675")
    assert (rollup.cache_read_tokens, rollup.cache_read_rate_per_mtok) == (9_000, Decimal("0.25"))
    assert rollup.cache_write_rate_per_mtok == Decimal("3.125")  # frozen though unused
    assert rollup.audio_input_rate_per_mtok is None


def test_batch_events_are_priced_by_the_batch_rate_set(rate_events):
    batch = replace(make_event("a", "base-large", None, 100_000, 10_000), service_tier="batch")
    standard = make_event("a", "base-large", None, 100_000, 10_000)
    stored = rate_events(BOOK, batch, standard)
    costs = {r.service_tier: r.cost_usd for r in stored.rollups}
    # 100,000 x 1.25 + 10,000 x 5 (batch) and 100,000 x 2.50 + 10,000 x 10, per million
    assert costs == {"batch": Decimal("0.175"), "standard": Decimal("0.35")}


def test_null_service_tier_and_standard_are_one_rollup(rate_events):
    events = [make_event("a"), replace(make_event("a"), service_tier="standard")]
    (rollup,) = rate_events(BOOK, *events).rollups
    assert (rollup.service_tier, rollup.event_count) == ("standard", 2)


def test_prompt_exactly_at_the_threshold_is_standard_context_one_above_is_long(rate_events):
    at = replace(make_event("a", "base-large", None, 150_000, 10), cache_read_tokens=50_000)
    above = replace(make_event("b", "base-large", None, 150_001, 10), cache_read_tokens=50_000)
    stored = rate_events(BOOK, at, above)
    tiers = {r.auth_id: (r.context_tier, r.cost_usd) for r in stored.rollups}
    # at: 150,000 x 2.50 + 10 x 10 + 50,000 x 0.25; above, long: x 5, x 15, x 0.50
    assert tiers == {
        "a": ("standard", Decimal("0.3876")),
        "b": ("long", Decimal("0.775155")),
    }


def test_output_tokens_do_not_count_toward_the_prompt_size(rate_events):
    event = make_event("a", "base-large", None, 200_000, 5_000_000)
    (rollup,) = rate_events(BOOK, event).rollups
    assert rollup.context_tier == "standard"


def test_a_class_with_tokens_and_no_rate_makes_the_rollup_unpriced_naming_it(rate_events):
    event = replace(
        make_event("a", "base-large", None, 10, 10), service_tier="priority", reasoning_tokens=5
    )
    stored = rate_events(BOOK, event)
    (excepted,) = stored.exceptions
    assert not stored.rollups
    assert (excepted.reason, excepted.service_tier) == (UNPRICED, "priority")
    assert excepted.detail == "no reasoning rate in priority rates of base-large"
    assert excepted.reasoning_tokens == 5


def test_a_tier_without_a_rate_set_is_unpriced_never_priced_at_standard(rate_events):
    event = replace(make_event("a", "base-large", None, 10, 10), service_tier="flex")
    (excepted,) = rate_events(BOOK, event).exceptions
    assert (excepted.reason, excepted.detail) == (UNPRICED, "no flex rates for base-large")


def test_a_missing_set_names_a_model_whose_id_says_rates_of_by_its_whole_id(rate_events):
    """The detail's words go around the id, never into it. Found by fuzzing the oracle."""
    book = make_version({"m rates of n": LARGE})
    event = replace(make_event("a", "m rates of n", None, 10, 10), service_tier="flex")
    (excepted,) = rate_events(book, event).exceptions
    assert excepted.detail == "no flex rates for m rates of n"


def test_long_context_in_a_tier_without_long_rates_is_unpriced(rate_events):
    event = replace(make_event("a", "base-large", None, 300_000, 10), service_tier="batch")
    (excepted,) = rate_events(BOOK, event).exceptions
    assert (excepted.context_tier, excepted.detail) == (
        "long",
        "no batch long-context rates for base-large",
    )


def test_a_declared_fine_tune_derives_every_rate_of_every_set_and_the_threshold(rate_events):
    event = replace(make_event("a", "ft:acme:legal", None, 300_000, 0), cache_read_tokens=4)
    (rollup,) = rate_events(BOOK, event).rollups
    assert (rollup.context_tier, rollup.rate_source) == ("long", "declared")
    assert rollup.input_rate_per_mtok == Decimal("6.25")  # 5 x 1.25
    assert rollup.cache_read_rate_per_mtok == Decimal("0.625")  # 0.50 x 1.25


def test_a_declared_fine_tune_takes_its_declared_bases_threshold_whatever_base_its_events_name(
    rate_events,
):
    """Contract 5.1: a listed model's rates, and threshold, are its own; the base its events
    name is read only for a fine-tune not listed. Only the property tests caught the event's
    base's threshold tried first (a mutation audit): it billed long-context rates here."""
    small = schedule(
        {
            ("standard", "standard"): {"input": "1", "output": "1"},
            ("standard", "long"): {"input": "2", "output": "2"},
        },
        above=1_000,
    )
    book = make_version(
        {"base-large": LARGE, "base-small": small, "ft:acme:legal": derived("base-large", "1.25")},
        fine_tune_multiplier="1.5",
    )
    # 5,000 prompt tokens: below base-large's 200,000 (declared), above base-small's 1,000
    event = make_event("a", "ft:acme:legal", "base-small", 5_000, 0)
    (rollup,) = rate_events(book, event).rollups
    assert (rollup.context_tier, rollup.rate_source, rollup.input_rate_per_mtok) == (
        "standard",
        "declared",
        Decimal("3.125"),
    )


def test_an_event_path_fine_tune_takes_its_bases_threshold(rate_events):
    events = [
        make_event("a", "ft:globex:chat", "base-large", 300_000, 0),
        make_event("b", "ft:globex:chat", "base-large", 100, 0),
    ]
    stored = rate_events(BOOK, *events)
    tiers = {r.auth_id: (r.context_tier, r.input_rate_per_mtok) for r in stored.rollups}
    assert tiers == {"a": ("long", Decimal("7.5")), "b": ("standard", Decimal("3.75"))}


def test_an_event_path_fine_tune_takes_its_own_bases_threshold_among_several(rate_events):
    small = schedule(
        {("standard", "standard"): {"input": "1", "output": "1"},
         ("standard", "long"): {"input": "2", "output": "2"}},
        above=1_000,
    )  # fmt: skip
    book = make_version({"base-large": LARGE, "base-small": small}, fine_tune_multiplier="1.5")
    events = [
        make_event("a", "ft:globex:chat", "base-large", 5_000, 0),
        make_event("b", "ft:globex:chat", "base-small", 5_000, 0),
    ]
    stored = rate_events(book, *events)
    # 5,000 prompt tokens: under base-large's 200,000, over base-small's 1,000
    assert {r.auth_id: r.context_tier for r in stored.rollups} == {"a": "standard", "b": "long"}


def test_a_fine_tune_in_a_version_without_fine_tune_multiplier_is_standard_context(
    rate_events,
):
    book = make_version({"base-large": LARGE})  # no fine_tune_multiplier: no path 3
    event = make_event("a", "ft:globex:chat", "base-large", 300_000, 0)
    (excepted,) = rate_events(book, event).exceptions
    assert (excepted.reason, excepted.context_tier) == (UNPRICED, "standard")


def test_a_fine_tune_whose_base_is_an_own_rate_fine_tune_takes_no_threshold(rate_events):
    own_fine_tune = schedule(
        {("standard", "standard"): {"input": "1", "output": "1"},
         ("standard", "long"): {"input": "2", "output": "2"}},
        above=1_000,
    )  # fmt: skip
    book = make_version({"ft:acme:support": own_fine_tune}, fine_tune_multiplier="1.5")
    event = make_event("a", "ft:globex:chat", "ft:acme:support", 5_000, 0)
    (excepted,) = rate_events(book, event).exceptions
    assert (excepted.reason, excepted.context_tier) == (UNPRICED, "standard")
    assert "one hop only" in excepted.detail


def test_ambiguous_bases_exclude_the_pair_in_every_tier(rate_events):
    events = [
        make_event("a", "ft:globex:chat", "base-large"),
        replace(make_event("a", "ft:globex:chat", None), service_tier="batch"),
    ]
    stored = rate_events(BOOK, *events)
    assert not stored.rollups
    assert sorted((e.reason, e.service_tier) for e in stored.exceptions) == [
        ("ambiguous_base", "batch"),
        ("ambiguous_base", "standard"),
    ]


def test_an_unknown_service_tier_is_an_invalid_event_and_the_rest_bills(rate_events):
    events = [replace(make_event("a"), service_tier="Batch"), make_event("a")]
    stored = rate_events(BOOK, *events)
    (excepted,) = stored.exceptions
    assert (excepted.reason, excepted.detail) == (INVALID_EVENT, "unknown service_tier")
    assert (excepted.service_tier, excepted.context_tier) == ("-", "-")
    assert [r.event_count for r in stored.rollups] == [1]


def test_a_negative_count_in_any_class_is_an_invalid_event_whatever_the_model(rate_events):
    events = [
        replace(make_event("a", "mystery"), audio_output_tokens=-1),
        replace(make_event("a", "base-large"), cache_write_1h_tokens=-2, image_input_tokens=-3),
    ]
    details = {e.model_id: e.detail for e in rate_events(BOOK, *events).exceptions}
    assert details == {
        "mystery": "negative audio_output_tokens",
        "base-large": "negative cache_write_1h_tokens, negative image_input_tokens",
    }


def test_a_poison_auth_id_is_excepted_under_a_shortened_key_and_the_window_bills(rate_events):
    poison = make_event("p" * 9_000, "base-large")
    good = [make_event(f"org-{n % 30}", "base-large", None, 1_000, 100) for n in range(300)]
    stored = rate_events(BOOK, poison, *good)
    (excepted,) = stored.exceptions
    assert excepted.detail == "auth_id longer than 256 characters"
    assert excepted.auth_id.startswith("p" * 183 + "...sha256:") and len(excepted.auth_id) == 257
    assert sum(r.event_count for r in stored.rollups) == 300
    assert sum(r.cost_usd for r in stored.rollups) == 300 * Decimal("0.0035")


def test_an_id_kept_whole_never_shares_an_exception_row_with_a_shortened_one(rate_events):
    """Contract 6: the shortened form still tells ids apart, also from an id whose text is
    that form. Found by fuzzing: a 138-character form was a valid length, so an event
    carrying it was grouped with the long id's."""
    long_id = make_event("p" * 300, "base-large")
    (shortened,) = rate_events(BOOK, long_id).exceptions
    carrying_it = replace(make_event(shortened.auth_id, "base-large"), input_tokens=-1)
    stored = rate_events(BOOK, long_id, carrying_it)
    assert sorted(e.event_count for e in stored.exceptions) == [1, 1]


def test_a_fine_tune_pair_with_long_ids_and_many_bases_never_stops_the_window(rate_events):
    """Ids up to 256 characters are valid; a pair's bases together may exceed what a B-tree
    key holds (~2,700 bytes), and must still be excepted while the rest bills."""
    draw = random.Random(12).randrange
    model = "ft:" + "".join(chr(0x4E00 + draw(20_000)) for _ in range(253))
    bases = ["".join(chr(0x4E00 + draw(20_000)) for _ in range(256)) for _ in range(3)]
    events = [make_event("a", model, base) for base in bases]
    stored = rate_events(BOOK, *events, make_event("a", "base-large", None, 100, 0))
    assert [(r.model_id, r.event_count) for r in stored.rollups] == [("base-large", 1)]
    assert [(e.reason, e.event_count) for e in stored.exceptions] == [("ambiguous_base", 3)]


OPTIONAL_CLASSES = (
    "cache_read", "cache_write", "cache_write_1h", "reasoning", "audio_input", "audio_output",
    "image_input",
)  # fmt: skip
PROMPT_CLASSES = ("cache_read", "cache_write", "cache_write_1h", "audio_input", "image_input")
EVERY_CLASS = schedule(
    {
        ("standard", "standard"): {
            "input": "1", "output": "2", "cache_read": "3", "cache_write": "4",
            "cache_write_1h": "5", "reasoning": "6", "audio_input": "7", "audio_output": "8",
            "image_input": "9",
        },
        ("standard", "long"): {
            "input": "10", "output": "20", "cache_read": "30", "cache_write": "40",
            "cache_write_1h": "50", "reasoning": "60", "audio_input": "70", "audio_output": "80",
            "image_input": "90",
        },
    },
    above=1_000,
)  # fmt: skip
EVERY_CLASS_BOOK = make_version({"m": EVERY_CLASS})
TWO_CLASS_BOOK = make_version(
    {"m": schedule({("standard", "standard"): {"input": "1", "output": "2"}})}
)


def every_rate_but(token_class: str) -> PricebookVersion:
    rates = {"input": "1", "output": "2", **{c: "3" for c in OPTIONAL_CLASSES if c != token_class}}
    return make_version({"m": schedule({("standard", "standard"): rates})})


@pytest.mark.parametrize("token_class", OPTIONAL_CLASSES)
@pytest.mark.parametrize("other_rates", ["none", "every other class's"])
def test_tokens_of_any_class_without_a_rate_make_only_their_rollup_unpriced(
    rate_events, token_class, other_rates
):
    """Never priced at 0 nor at another class's rate (a set with a 5-minute cache-write rate
    and no 1-hour one, say); the rest of the window bills."""
    book = TWO_CLASS_BOOK if other_rates == "none" else every_rate_but(token_class)
    event = with_tokens(make_event("a", "m", None, 10, 10), **{f"{token_class}_tokens": 5})
    stored = rate_events(book, event, make_event("b", "m", None, 10, 10))
    (excepted,) = stored.exceptions
    assert [r.auth_id for r in stored.rollups] == ["b"]
    assert (excepted.auth_id, excepted.reason) == ("a", UNPRICED)
    assert excepted.detail == f"no {token_class} rate in standard rates of m"


def test_a_rollup_of_every_class_costs_the_sum_of_each_class_at_its_rate(rate_events):
    counts = {f"{c}_tokens": 1_000 for c in OPTIONAL_CLASSES}
    event = with_tokens(make_event("a", "m", None, 0, 1_000_000), **counts)
    (rollup,) = rate_events(EVERY_CLASS_BOOK, event).rollups
    # prompt 5 x 1,000 > 1,000: long. 1,000,000 x 20 + 1,000 x (30+40+50+60+70+80+90), per 1M
    assert rollup.context_tier == "long"
    assert rollup.cost_usd == Decimal("20.42")


def test_a_cost_down_to_the_twelfth_decimal_place_is_stored_exactly(rate_events):
    """One token at the smallest rate a pricebook holds (0.000001 USD per million tokens)
    costs 10^-12 USD: every place of `numeric(50, 12)` is used, none rounded away. Only
    the property tests caught a narrower cost (a mutation audit)."""
    book = make_version(
        {"m": schedule({("standard", "standard"): {"input": "0.000001", "output": "0"}})}
    )
    (rollup,) = rate_events(book, make_event("a", "m", None, 1, 0)).rollups
    assert rollup.cost_usd == Decimal("0.000000000001")


@pytest.mark.parametrize("token_class", PROMPT_CLASSES)
def test_every_input_side_class_counts_toward_the_prompt_size(rate_events, token_class):
    at = with_tokens(make_event("a", "m", None, 999, 0), **{f"{token_class}_tokens": 1})
    above = with_tokens(make_event("b", "m", None, 999, 0), **{f"{token_class}_tokens": 2})
    stored = rate_events(EVERY_CLASS_BOOK, at, above)
    assert {r.auth_id: r.context_tier for r in stored.rollups} == {"a": "standard", "b": "long"}


@pytest.mark.parametrize("token_class", ("input", "output", *OPTIONAL_CLASSES))
def test_a_negative_count_in_each_class_is_excepted_once_and_never_billed(rate_events, token_class):
    event = with_tokens(make_event("a", "m", None, 10, 10), **{f"{token_class}_tokens": -1})
    stored = rate_events(EVERY_CLASS_BOOK, event, make_event("b", "m", None, 10, 10))
    (excepted,) = stored.exceptions
    assert [r.auth_id for r in stored.rollups] == ["b"]
    assert (excepted.reason, excepted.detail) == (INVALID_EVENT, f"negative {token_class}_tokens")
    assert excepted.event_count == 1


def test_a_base_model_longer_than_256_characters_is_an_invalid_event_on_a_listed_model(
    rate_events,
):
    """Contract 6: invalid whatever its model, though a listed model ignores its base."""
    long_base = make_event("a", "base-large", "b" * 257)
    stored = rate_events(BOOK, long_base, make_event("a", "base-large"))
    assert [(r.auth_id, r.event_count) for r in stored.rollups] == [("a", 1)]
    assert [(e.reason, e.detail, e.event_count) for e in stored.exceptions] == [
        (INVALID_EVENT, "base_model longer than 256 characters", 1)
    ]


def test_an_invalid_event_of_an_ambiguous_pair_stays_invalid_never_merged_into_it(rate_events):
    events = [
        make_event("a", "ft:globex:chat", "base-large"),
        make_event("a", "ft:globex:chat", "base-other"),
        make_event("a", "ft:globex:chat", "base-large", input_tokens=-5),
    ]
    stored = rate_events(BOOK, *events)
    assert not stored.rollups
    assert [(e.reason, e.event_count, e.input_tokens) for e in stored.exceptions] == [
        (INVALID_EVENT, 1, -5),
        (AMBIGUOUS_BASE, 2, 2_000),
    ]
