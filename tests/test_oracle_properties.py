"""Property tests: the production pricing equals the oracle, and nothing is lost."""

from __future__ import annotations

from decimal import Decimal, Inexact, localcontext

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating_pipeline import oracle
from rating_pipeline.pricing import group_events, price_window
from rating_pipeline.pricing.rate import in_window
from tests.strategies import WINDOW, pricebook_versions, window_events

cases = pricebook_versions().flatmap(lambda v: st.tuples(st.just(v), window_events(v)))
property_settings = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@property_settings
@given(cases)
def test_production_pricing_equals_the_oracle(case):
    version, events = case
    produced = price_window(WINDOW, version, group_events(WINDOW, events))
    expected = oracle.rate_window(WINDOW, version, events)
    assert produced.rollups == expected.rollups
    assert produced.exceptions == expected.exceptions
    assert produced.checksum == expected.checksum


@property_settings
@given(cases)
def test_conservation_every_event_and_token_is_billed_or_explained(case):
    version, events = case
    rating = price_window(WINDOW, version, group_events(WINDOW, events))
    in_scope = [e for e in events if in_window(WINDOW, e.occurred_at)]
    rows = (*rating.rollups, *rating.exceptions)
    assert sum(r.event_count for r in rows) == len(in_scope)
    assert sum(r.input_tokens for r in rows) == sum(e.input_tokens for e in in_scope)
    assert sum(r.output_tokens for r in rows) == sum(e.output_tokens for e in in_scope)


@property_settings
@given(cases)
def test_no_float_reaches_an_output_row_and_every_cost_reconstructs(case):
    version, events = case
    rating = price_window(WINDOW, version, group_events(WINDOW, events))
    for row in (*rating.rollups, *rating.exceptions):
        assert not any(isinstance(value, float) for value in vars(row).values()), row
    for rollup in rating.rollups:
        assert type(rollup.cost_usd) is Decimal
        with localcontext(prec=100, traps=[Inexact]):
            rebuilt = (
                rollup.input_tokens * rollup.input_rate_per_mtok
                + rollup.output_tokens * rollup.output_rate_per_mtok
            )
            assert rollup.cost_usd * 1_000_000 == rebuilt
