"""Pricing of one window (contract 5 and 6) through the production path, rate_window on a
real PostgreSQL, each test named after the invariant it protects."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, Inexact, localcontext

import pytest

from rating_pipeline.records import AMBIGUOUS_BASE, INVALID_EVENT, UNPRICED
from rating_pipeline.windows import Window
from tests.factories import WINDOW_START, Own, derived, make_event, make_version, own
from tests.oracle import OracleRating

WINDOW = Window(WINDOW_START)
MODELS: dict[str, Own | dict[str, str]] = {
    "base-large": own("2.50", "10.00"),
    "base-small": own("0.15", "0.60"),
    "ft:acme:support": own("3.75", "15"),
    "ft:acme:legal": derived("base-large", "1.25"),
}
BOOK = make_version(MODELS, fine_tune_multiplier="1.5")


@pytest.fixture
def rate(rate_events):
    """Rate ``events`` with ``book`` (BOOK by default); return the window's stored rows."""

    def rating(*events, book=BOOK) -> OracleRating:
        return rate_events(book, *events)

    return rating


def test_own_rate_prices_at_the_listed_rate_exactly(rate):
    rating = rate(make_event("a", "base-large", None, 1_000_000, 500_000))
    (rollup,) = rating.rollups
    assert (rollup.rate_source, rollup.derivation_base, rollup.multiplier) == ("own", None, None)
    assert rollup.cost_usd == Decimal("2.50") + Decimal("5.00")


def test_declared_derivation_ignores_the_events_base_model(rate):
    rating = rate(make_event("a", "ft:acme:legal", "base-small", 1_000_000, 0))
    (rollup,) = rating.rollups
    assert (rollup.rate_source, rollup.derivation_base) == ("declared", "base-large")
    assert rollup.input_rate_per_mtok == Decimal("3.125000")
    assert rollup.multiplier == Decimal("1.25")


def test_unlisted_fine_tune_derives_from_its_event_base_through_fine_tune_multiplier(rate):
    rating = rate(make_event("a", "ft:globex:chat", "base-small", 1_000_000, 1_000_000))
    (rollup,) = rating.rollups
    assert (rollup.rate_source, rollup.derivation_base) == ("event", "base-small")
    assert (rollup.input_rate_per_mtok, rollup.output_rate_per_mtok) == (
        Decimal("0.225"),
        Decimal("0.9"),
    )


def test_derived_rate_rounds_half_even_to_six_places(rate):
    book = make_version(
        {"base": own("0.000005", "0.000015"), "ft:x": derived("base", "0.5")},
    )
    rollup = rate(make_event("a", "ft:x"), book=book).rollups[0]
    # 0.0000025 -> 0.000002 (half to even), 0.0000075 -> 0.000008
    assert (rollup.input_rate_per_mtok, rollup.output_rate_per_mtok) == (
        Decimal("0.000002"),
        Decimal("0.000008"),
    )


def test_fine_tune_with_one_base_makes_one_rollup_however_many_events(rate):
    events = [make_event("a", "ft:globex:chat", "base-large", 10, 1, minutes=m) for m in range(50)]
    rating = rate(*events)
    assert len(rating.rollups) == 1 and not rating.exceptions
    assert rating.rollups[0].event_count == 50
    assert rating.rollups[0].input_tokens == 500


@pytest.mark.parametrize(
    "bases",
    [("base-large", "base-small"), (None, "base-large"), ("base-large", "ft:acme:support")],
)
def test_mixed_bases_exclude_the_whole_rollup_as_ambiguous(rate, bases):
    events = [make_event("a", "ft:globex:chat", base, 100, 10) for base in bases]
    rating = rate(*events, make_event("a", "base-large"))
    assert [r.model_id for r in rating.rollups] == ["base-large"]
    (excluded,) = rating.exceptions
    assert excluded.reason == AMBIGUOUS_BASE
    assert excluded.event_count == 2 and excluded.input_tokens == 200
    for base in bases:
        assert ("null" if base is None else f'"{base}"') in excluded.detail


def test_ambiguity_is_judged_per_principal(rate):
    rating = rate(
        make_event("a", "ft:globex:chat", "base-large"),
        make_event("b", "ft:globex:chat", "base-small"),
    )
    assert [r.auth_id for r in rating.rollups] == ["a", "b"]
    assert not rating.exceptions


def test_ambiguity_is_judged_per_model_of_one_principal(rate):
    """Two fine-tunes of one principal, each of mixed bases: each pair is excluded with its
    own events only."""
    rating = rate(
        make_event("a", "ft:globex:chat", "base-large", 100, 10),
        make_event("a", "ft:globex:chat", "base-small", 100, 10),
        make_event("a", "ft:initech:chat", None, 1, 1),
        make_event("a", "ft:initech:chat", "base-large", 1, 1),
    )
    assert not rating.rollups
    assert [(e.model_id, e.reason, e.event_count, e.input_tokens) for e in rating.exceptions] == [
        ("ft:globex:chat", AMBIGUOUS_BASE, 2, 200),
        ("ft:initech:chat", AMBIGUOUS_BASE, 2, 2),
    ]


def test_a_listed_model_is_priced_whatever_mix_of_bases_its_events_carry(rate):
    """Paths 1 and 2 ignore the events' base_model: the ambiguity gate is path 3's only."""
    rating = rate(
        *(
            make_event("a", model_id, base, 1_000_000, 0)
            for model_id in ("base-large", "ft:acme:support", "ft:acme:legal")
            for base in (None, "base-small", "base-large")
        )
    )
    assert not rating.exceptions
    assert [(r.model_id, r.rate_source, r.event_count) for r in rating.rollups] == [
        ("base-large", "own", 3),
        ("ft:acme:legal", "declared", 3),
        ("ft:acme:support", "own", 3),
    ]


@pytest.mark.parametrize(
    ("model_id", "fine_tune_multiplier", "detail_part"),
    [
        ("mystery-model", "1.5", "unknown model"),
        ("ft:globex:chat", None, "no fine_tune_multiplier"),
    ],
)
def test_mixed_bases_off_the_event_path_are_unpriced_never_ambiguous(
    rate, model_id, fine_tune_multiplier, detail_part
):
    """Mixed bases exclude as ambiguous only a rollup path 3 would price; any other rollup
    is unpriced with its own reason, whatever bases its events carry."""
    book = make_version(MODELS, fine_tune_multiplier=fine_tune_multiplier)
    events = [make_event("a", model_id, base, 7, 3) for base in (None, "base-large", "base-small")]
    rating = rate(*events, book=book)
    assert not rating.rollups
    (excepted,) = rating.exceptions
    assert excepted.reason == UNPRICED
    assert detail_part in excepted.detail
    assert (excepted.event_count, excepted.input_tokens) == (3, 21)


def test_an_event_base_that_is_a_derived_non_fine_tune_is_unpriced_as_itself_derived(rate):
    book = make_version(
        {**MODELS, "base-alias": derived("base-large", "2")}, fine_tune_multiplier="1.5"
    )
    rating = rate(make_event("a", "ft:globex:chat", "base-alias", 7, 3), book=book)
    assert not rating.rollups
    (excepted,) = rating.exceptions
    assert excepted.reason == UNPRICED
    assert excepted.detail == (
        f'base "base-alias" is itself derived in pricebook {book.version}, not a true base'
    )


@pytest.mark.parametrize(
    ("model_id", "base_model", "fine_tune_multiplier", "detail_part"),
    [
        ("mystery-model", None, "1.5", "unknown model"),
        ("ftx:globex:chat", "base-large", "1.5", "unknown model"),  # starts "ft", not "ft:"
        ("globex/ft:chat", "base-large", "1.5", "unknown model"),  # "ft:", not at the start
        ("ft:globex:chat", None, "1.5", "without a base"),
        ("ft:globex:chat", "ft:acme:support", "1.5", "one hop only"),
        ("ft:globex:chat", "ft:acme:legal", "1.5", "one hop only"),
        ("ft:globex:chat", "no-such-base", "1.5", "not in pricebook"),
        ("ft:globex:chat", "base-large", None, "no fine_tune_multiplier"),
    ],
)
def test_unpriceable_usage_is_excepted_with_its_reason(
    rate, model_id, base_model, fine_tune_multiplier, detail_part
):
    book = make_version(MODELS, fine_tune_multiplier=fine_tune_multiplier)
    rating = rate(make_event("a", model_id, base_model, 7, 3), book=book)
    assert not rating.rollups
    (excepted,) = rating.exceptions
    assert excepted.reason == UNPRICED
    assert detail_part in excepted.detail
    assert (excepted.event_count, excepted.input_tokens, excepted.output_tokens) == (1, 7, 3)


@pytest.mark.parametrize(
    ("auth_id", "model_id", "input_tokens", "output_tokens", "detail"),
    [
        ("", "base-large", 1, 1, "blank auth_id"),
        (" \t", "base-large", 1, 1, "blank auth_id"),
        ("a", "", 1, 1, "blank model_id"),
        ("a", "base-large", -1, 1, "negative input_tokens"),
        ("a", "mystery", 1, -5, "negative output_tokens"),
    ],
)
def test_invalid_event_is_excepted_whatever_its_model(
    rate, auth_id, model_id, input_tokens, output_tokens, detail
):
    rating = rate(make_event(auth_id, model_id, None, input_tokens, output_tokens))
    assert not rating.rollups
    (excepted,) = rating.exceptions
    assert (excepted.reason, excepted.detail) == (INVALID_EVENT, detail)
    assert (excepted.input_tokens, excepted.output_tokens) == (input_tokens, output_tokens)


def test_an_id_of_256_characters_bills_and_one_of_257_is_invalid(rate):
    rating = rate(make_event("a" * 256, "base-large"), make_event("b" * 257, "base-large"))
    assert [r.auth_id for r in rating.rollups] == ["a" * 256]
    (excepted,) = rating.exceptions
    assert (excepted.reason, excepted.detail) == (
        INVALID_EVENT,
        "auth_id longer than 256 characters",
    )


def test_invalid_events_do_not_make_a_valid_rollup_ambiguous(rate):
    rating = rate(
        make_event("a", "ft:globex:chat", "base-large"),
        make_event("a", "ft:globex:chat", "base-small", -1, 0),
    )
    assert [r.derivation_base for r in rating.rollups] == ["base-large"]
    assert [e.reason for e in rating.exceptions] == [INVALID_EVENT]


def test_window_is_half_open(rate):
    rating = rate(
        make_event("start", occurred_at=WINDOW.start),
        make_event("before", occurred_at=WINDOW.start - timedelta(microseconds=1)),
        make_event("end", occurred_at=WINDOW.end),
        make_event("last", occurred_at=WINDOW.end - timedelta(microseconds=1)),
    )
    assert [r.auth_id for r in rating.rollups] == ["last", "start"]


def test_every_rollup_cost_reconstructs_from_its_own_rates_and_tokens(rate):
    events = [
        make_event("a", "base-large", None, 2**62, 2**62 - 1),
        make_event("a", "base-large", None, 2**62, 3),
        make_event("b", "ft:acme:legal", None, 123_456_789, 987_654_321),
        make_event("c", "ft:globex:chat", "base-small", 1, 1),
    ]
    for rollup in rate(*events).rollups:
        # typeshed types localcontext's traps as a dict only; like Context's, a list is documented.
        with localcontext(prec=100, traps=[Inexact]):  # type: ignore[arg-type]
            rebuilt = (
                rollup.input_tokens * rollup.input_rate_per_mtok
                + rollup.output_tokens * rollup.output_rate_per_mtok
            )
            assert rollup.cost_usd * 1_000_000 == rebuilt
        assert rollup.cost_usd.as_tuple().exponent == -12


def test_a_versions_sha256_is_carried_on_every_rollup(rate):
    rating = rate(make_event("a"), make_event("b", "ft:acme:legal"))
    assert {r.pricebook_sha256 for r in rating.rollups} == {BOOK.sha256}
    assert {r.pricebook_version for r in rating.rollups} == {BOOK.version}
