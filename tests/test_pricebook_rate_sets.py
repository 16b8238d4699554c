"""pricebook/loader.py: rate sets per token class, service tier and context (contract 4).

Each case is a small version written inline as the YAML a person would write, loaded from
its text. Line numbers count from the document's first line (``version:``).
"""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from rating_pipeline.pricebook.loader import PricebookError, PricebookLoadError, load_version_text
from rating_pipeline.pricebook.model import (
    LONG,
    SERVICE_TIERS,
    STANDARD,
    ModelRates,
    PricebookVersion,
    RateSet,
)

HEADER = """\
version: "v1"
effective_from: "2026-06-01T00:00:00Z"
currency: USD
"""


def book(models: str, header: str = HEADER) -> str:
    """A version: ``header`` then ``models:`` with ``models`` (dedented) indented under it."""
    body = textwrap.indent(textwrap.dedent(models).strip("\n"), "  ")
    return f"{header}models:\n{body}\n"


def load(models: str, header: str = HEADER) -> PricebookVersion:
    return load_version_text(book(models, header), "book.yaml")


def errors_of(models: str, header: str = HEADER) -> list[PricebookError]:
    with pytest.raises(PricebookLoadError) as caught:
        load(models, header)
    return list(caught.value.errors)


def the_error(models: str, header: str = HEADER) -> PricebookError:
    errors = errors_of(models, header)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def rates_of(version: PricebookVersion, model_id: str) -> ModelRates:
    rates = version.models[model_id].own_rates
    assert rates is not None, f"{model_id} has no own rates"
    return rates


def as_text(rate_set: RateSet | None) -> dict[str, str]:
    assert rate_set is not None
    return {cls: f"{rate:f}" for cls, rate in rate_set.rates.items()}


# Line 5 is the first model's id; line 6 its first key.

# --- token classes ----------------------------------------------------------------------


def test_every_token_class_key_loads_into_the_standard_rate_set():
    version = load(
        """
        base-omni:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          cache_read_per_mtok: "0.25"
          cache_write_per_mtok: "3.125"
          cache_write_1h_per_mtok: "5"
          reasoning_per_mtok: "12"
          audio_input_per_mtok: "40"
          audio_output_per_mtok: "80"
          image_input_per_mtok: "2.5"
        """
    )
    rates = rates_of(version, "base-omni")
    assert list(rates.sets) == [(STANDARD, STANDARD)]
    assert as_text(rates.rate_set(STANDARD, STANDARD)) == {
        "input": "2.50",
        "output": "10",
        "cache_read": "0.25",
        "cache_write": "3.125",
        "cache_write_1h": "5",
        "reasoning": "12",
        "audio_input": "40",
        "audio_output": "80",
        "image_input": "2.5",
    }
    assert rates.long_context_above_tokens is None


def test_a_class_a_rate_set_does_not_list_has_no_rate_in_it():
    version = load('base-large: {input_per_mtok: "2.50", output_per_mtok: "10"}')
    standard = rates_of(version, "base-large").rate_set(STANDARD, STANDARD)
    assert standard is not None
    assert standard.rate("input") == Decimal("2.50")
    assert standard.rate("cache_read") is None and standard.rate("reasoning") is None


def test_unknown_class_key_is_a_load_error_with_its_line():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          cached_input_per_mtok: "0.25"
          batch:
            input_per_mtok: "1.25"
            output_per_mtok: "5"
            cache_reed_per_mtok: "0.125"
        """
    )
    assert [(e.line, e.model) for e in errors] == [(8, "base-large"), (12, "base-large")]
    assert errors[0].message.startswith("unknown key 'cached_input_per_mtok'")
    assert errors[1].message.startswith(
        "batch: unknown key 'cache_reed_per_mtok' (did you mean 'cache_read_per_mtok'?)"
    )


# --- service tiers ----------------------------------------------------------------------


def test_each_service_tier_loads_as_its_own_complete_rate_set():
    version = load(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          cache_read_per_mtok: "0.25"
          batch: {input_per_mtok: "1.25", output_per_mtok: "5"}
          priority: {input_per_mtok: "4.25", output_per_mtok: "17", cache_read_per_mtok: "0.425"}
          flex: {input_per_mtok: "1.25", output_per_mtok: "5", cache_read_per_mtok: "0.125"}
        """
    )
    rates = rates_of(version, "base-large")
    assert set(rates.sets) == {(tier, STANDARD) for tier in SERVICE_TIERS}
    assert as_text(rates.rate_set("batch", STANDARD)) == {"input": "1.25", "output": "5"}
    assert as_text(rates.rate_set("priority", STANDARD)) == {
        "input": "4.25",
        "output": "17",
        "cache_read": "0.425",
    }
    assert rates.rate_set("flex", LONG) is None


def test_nothing_is_inherited_between_tiers():
    version = load(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          cache_read_per_mtok: "0.25"
          reasoning_per_mtok: "10"
          batch: {input_per_mtok: "1.25", output_per_mtok: "5"}
        """
    )
    batch = rates_of(version, "base-large").rate_set("batch", STANDARD)
    assert batch is not None
    assert batch.rate("cache_read") is None and batch.rate("reasoning") is None


@pytest.mark.parametrize("tier", ["turbo", "standard", "Batch", "batches"])
def test_unknown_tier_key_is_a_load_error_with_its_line(tier):
    error = the_error(
        f"""
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          {tier}: {{input_per_mtok: "1.25", output_per_mtok: "5"}}
        """
    )
    assert (error.line, error.model) == (8, "base-large")
    assert error.message.startswith(f"unknown key '{tier}'")
    assert "batch, priority, flex" in error.message


@pytest.mark.parametrize(
    ("tier_body", "message"),
    [
        ('{output_per_mtok: "5"}', "batch has output_per_mtok but is missing input_per_mtok"),
        ('{input_per_mtok: "1.25"}', "batch has input_per_mtok but is missing output_per_mtok"),
        (
            '{cache_read_per_mtok: "0.125"}',
            "batch has cache_read_per_mtok but is missing input_per_mtok, output_per_mtok",
        ),
        ("{}", "batch is empty: a rate set needs input_per_mtok and output_per_mtok"),
        ("", "batch must be a mapping of rates, got null"),
        ('"1.25"', "batch must be a mapping of rates, got '1.25'"),
        # Written below its key: still the key's line, not the first rate's.
        (
            '\n            input_per_mtok: "1.25"',
            "batch has input_per_mtok but is missing output_per_mtok",
        ),
        ("\n            {}", "batch is empty: a rate set needs input_per_mtok and output_per_mtok"),
    ],
)
def test_a_tier_without_input_or_output_is_a_load_error_with_its_line(tier_body, message):
    error = the_error(
        f"""
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          batch: {tier_body}
        """
    )
    assert (error.line, error.model, error.message) == (8, "base-large", message)


def test_a_tier_cannot_hold_another_tier_or_a_threshold():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          batch:
            input_per_mtok: "1.25"
            output_per_mtok: "5"
            flex: {input_per_mtok: "1", output_per_mtok: "4"}
            long_context_above_tokens: 200000
        """
    )
    assert [(e.line, e.message.split(" (")[0].split(";")[0]) for e in errors] == [
        (11, "batch: unknown key 'flex'"),
        (12, "batch: unknown key 'long_context_above_tokens'"),
    ]


# --- long context -----------------------------------------------------------------------


LONG_CONTEXT_MODEL = """
base-large:
  input_per_mtok: "2.50"
  output_per_mtok: "10"
  cache_read_per_mtok: "0.25"
  long_context_above_tokens: 200000
  long_context:
    input_per_mtok: "5"
    output_per_mtok: "15"
    cache_read_per_mtok: "0.5"
  batch:
    input_per_mtok: "1.25"
    output_per_mtok: "5"
    long_context: {input_per_mtok: "2.5", output_per_mtok: "7.5"}
  priority: {input_per_mtok: "4.25", output_per_mtok: "17"}
"""


def test_long_context_sets_load_with_their_threshold():
    rates = rates_of(load(LONG_CONTEXT_MODEL), "base-large")
    assert rates.long_context_above_tokens == 200000
    assert type(rates.long_context_above_tokens) is int
    assert as_text(rates.rate_set(STANDARD, LONG)) == {
        "input": "5",
        "output": "15",
        "cache_read": "0.5",
    }
    assert as_text(rates.rate_set("batch", LONG)) == {"input": "2.5", "output": "7.5"}
    assert rates.rate_set("priority", LONG) is None  # a tier without one has none
    assert set(rates.sets) == {
        (STANDARD, STANDARD),
        (STANDARD, LONG),
        ("batch", STANDARD),
        ("batch", LONG),
        ("priority", STANDARD),
    }


def test_long_context_without_its_threshold_is_a_load_error_with_its_line():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context: {input_per_mtok: "5", output_per_mtok: "15"}
          batch:
            input_per_mtok: "1.25"
            output_per_mtok: "5"
            long_context: {input_per_mtok: "2.5", output_per_mtok: "7.5"}
        """
    )
    assert [(e.line, e.model, e.message) for e in errors] == [
        (8, "base-large", "long_context needs long_context_above_tokens on the model"),
        (12, "base-large", "batch long_context needs long_context_above_tokens on the model"),
    ]


def test_a_threshold_of_thousands_of_digits_is_a_load_error_not_a_crash():
    """Python refuses to convert more than 4300 digits to an int: the loader must answer
    before that, with its line. Found by a review of pricebook input."""
    error = the_error(
        f"""
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context_above_tokens: {"9" * 5000}
          long_context: {{input_per_mtok: "5", output_per_mtok: "15"}}
        """
    )
    assert (error.line, error.model) == (8, "base-large")
    assert error.message.startswith("long_context_above_tokens must be a positive integer")
    assert error.message.endswith(f"got {'9' * 60!r}... (5000 characters)")


def test_threshold_without_a_long_context_set_is_a_load_error_with_its_line():
    error = the_error(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context_above_tokens: 200000
          batch: {input_per_mtok: "1.25", output_per_mtok: "5"}
        """
    )
    assert (error.line, error.model) == (8, "base-large")
    assert error.message == (
        "long_context_above_tokens 200000 has no long_context rate set to price above it"
    )


def test_a_threshold_that_is_no_integer_and_has_no_long_context_set_is_reported_for_both():
    """All violations are reported together (contract 4): fixing the threshold must not
    reveal a second error. Found by an audit of docs/pricebooks.md."""
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context_above_tokens: 2e5
        """
    )
    assert [(e.line, e.message.split(",")[0]) for e in errors] == [
        (8, "long_context_above_tokens must be a positive integer (a prompt size in tokens"),
        (8, "long_context_above_tokens has no long_context rate set to price above it"),
    ]


@pytest.mark.parametrize(
    "written",
    ["200000.5", "200000.0", '"2e5"', "0", "-1", '"abc"', "true", "~", "200_000", "010",
     "[200000]", "9223372036854775808"],
)  # fmt: skip
def test_threshold_that_is_not_a_positive_integer_is_a_load_error_with_its_line(written):
    error = the_error(
        f"""
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context_above_tokens: {written}
          long_context: {{input_per_mtok: "5", output_per_mtok: "15"}}
        """
    )
    assert (error.line, error.model) == (8, "base-large")
    assert error.message.startswith("long_context_above_tokens must be a positive integer")


@pytest.mark.parametrize("written", ["200000", '"200000"', "1", "9223372036854775807"])
def test_threshold_is_read_from_its_text_as_an_integer(written):
    rates = rates_of(
        load(
            f"""
            m:
              input_per_mtok: "1"
              output_per_mtok: "1"
              long_context_above_tokens: {written}
              long_context: {{input_per_mtok: "2", output_per_mtok: "2"}}
            """
        ),
        "m",
    )
    assert rates.long_context_above_tokens == int(written.strip('"'))


@pytest.mark.parametrize(
    ("models", "line", "message"),
    [
        (
            """
            base-large:
              input_per_mtok: "2.50"
              output_per_mtok: "10"
              long_context_above_tokens: 200000
              long_context: {input_per_mtok: "5"}
            """,
            9,
            "long_context has input_per_mtok but is missing output_per_mtok",
        ),
        (
            """
            base-large:
              input_per_mtok: "2.50"
              output_per_mtok: "10"
              long_context_above_tokens: 200000
              long_context: {}
            """,
            9,
            "long_context is empty: a rate set needs input_per_mtok and output_per_mtok",
        ),
        (
            """
            base-large:
              input_per_mtok: "2.50"
              output_per_mtok: "10"
              long_context_above_tokens: 200000
              long_context: {input_per_mtok: "5", output_per_mtok: "15"}
              batch:
                input_per_mtok: "1.25"
                output_per_mtok: "5"
                long_context: {output_per_mtok: "7.5"}
            """,
            13,
            "batch long_context has output_per_mtok but is missing input_per_mtok",
        ),
    ],
)
def test_a_long_context_set_without_input_or_output_is_a_load_error(models, line, message):
    error = the_error(models)
    assert (error.line, error.model, error.message) == (line, "base-large", message)


def test_a_merge_key_is_refused_without_calling_the_set_it_is_in_empty():
    """``<<: *alias`` is not expanded (a set spells out its rates); the set is then missing
    its rates, which is true, but it is not empty as written."""
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          batch: &half {input_per_mtok: "1.25", output_per_mtok: "5"}
          flex:
            <<: *half
        """
    )
    assert [(e.line, e.message) for e in errors] == [
        (9, "flex is missing input_per_mtok, output_per_mtok"),
        (10, "flex: a key must be a plain string, got '<<' tagged tag:yaml.org,2002:merge"),
    ]


def test_long_context_cannot_hold_long_context_or_a_tier():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context_above_tokens: 200000
          long_context:
            input_per_mtok: "5"
            output_per_mtok: "15"
            long_context: {input_per_mtok: "6", output_per_mtok: "16"}
            batch: {input_per_mtok: "2.5", output_per_mtok: "7.5"}
        """
    )
    assert [(e.line, e.message.split(";")[0]) for e in errors] == [
        (12, "long_context: unknown key 'long_context'"),
        (13, "long_context: unknown key 'batch'"),
    ]


# --- money in every set -----------------------------------------------------------------


def test_float_noise_is_named_by_its_yaml_line_in_every_rate_set():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: 10.000000000000002
          long_context_above_tokens: 200000
          long_context:
            input_per_mtok: "5"
            output_per_mtok: "15"
            cache_read_per_mtok: 0.30000000000000004
          batch:
            input_per_mtok: 1.2500000000000002
            output_per_mtok: "5"
            long_context: {input_per_mtok: "2.5", output_per_mtok: 7.499999999999999}
        """
    )
    assert [(e.line, e.model, e.message) for e in errors] == [
        (
            7,
            "base-large",
            "output_per_mtok 10.000000000000002 has 15 decimal places; a rate has at most 6",
        ),
        (
            12,
            "base-large",
            "long_context cache_read_per_mtok 0.30000000000000004 has 17 decimal places; "
            "a rate has at most 6",
        ),
        (
            14,
            "base-large",
            "batch input_per_mtok 1.2500000000000002 has 16 decimal places; a rate has at most 6",
        ),
        (
            16,
            "base-large",
            "batch long_context output_per_mtok 7.499999999999999 has 15 decimal places; "
            "a rate has at most 6",
        ),
    ]


def test_negative_rate_is_a_load_error_in_every_rate_set():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          cache_read_per_mtok: "-0.25"
          long_context_above_tokens: 200000
          long_context: {input_per_mtok: "5", output_per_mtok: "15", reasoning_per_mtok: "-1"}
          flex: {input_per_mtok: "-1.25", output_per_mtok: "5"}
        """
    )
    assert [(e.line, e.message) for e in errors] == [
        (8, "cache_read_per_mtok must be >= 0, got -0.25"),
        (10, "long_context reasoning_per_mtok must be >= 0, got -1"),
        (11, "flex input_per_mtok must be >= 0, got -1.25"),
    ]


def test_a_rate_that_is_not_a_decimal_is_named_with_its_set():
    error = the_error(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          priority: {input_per_mtok: "4.25", output_per_mtok: .nan}
        """
    )
    assert error.line == 8
    assert error.message.startswith("priority output_per_mtok must be a decimal number")


# --- duplicated keys at every level -------------------------------------------------------


def test_duplicated_key_is_a_load_error_at_every_level_of_a_model():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context_above_tokens: 200000
          long_context_above_tokens: 100000
          long_context:
            input_per_mtok: "5"
            output_per_mtok: "15"
            output_per_mtok: "16"
          batch:
            input_per_mtok: "1.25"
            output_per_mtok: "5"
            long_context: {input_per_mtok: "2.5", output_per_mtok: "7.5", input_per_mtok: "3"}
          batch: {input_per_mtok: "1", output_per_mtok: "4"}
        """
    )
    assert [(e.line, e.message) for e in errors] == [
        (9, "duplicated key 'long_context_above_tokens' (first at line 8)"),
        (13, "long_context: duplicated key 'output_per_mtok' (first at line 12)"),
        (17, "batch long_context: duplicated key 'input_per_mtok' (first at line 17)"),
        (18, "duplicated key 'batch' (first at line 14)"),
    ]


# --- a derived model is a multiplier and nothing else --------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('cache_read_per_mtok: "0.25"', "cache_read_per_mtok"),
        ('batch: {input_per_mtok: "1", output_per_mtok: "4"}', "batch"),
        ("long_context_above_tokens: 200000", "long_context_above_tokens"),
        ('long_context: {input_per_mtok: "5", output_per_mtok: "15"}', "long_context"),
    ],
)
def test_a_derived_model_with_anything_but_derived_from_and_multiplier_is_a_load_error(
    extra, named
):
    errors = errors_of(
        f"""
        base-large: {{input_per_mtok: "2.50", output_per_mtok: "10"}}
        ft:acme:legal:
          derived_from: base-large
          multiplier: "1.25"
          {extra}
        """
    )
    mixes = [e for e in errors if "mixes" in e.message]
    assert [(e.line, e.model) for e in mixes] == [(6, "ft:acme:legal")]
    assert mixes[0].message.startswith(
        f"mixes own rates ({named}) with a derivation (derived_from, multiplier)"
    )


# --- rule 6 over every rate of every set -----------------------------------------------------

TINY_EVERYWHERE = """
base-cheap:
  input_per_mtok: "1"
  output_per_mtok: "1"
  cache_read_per_mtok: "0.000001"
  long_context_above_tokens: 128000
  long_context: {input_per_mtok: "2", output_per_mtok: "2", audio_input_per_mtok: "0.000001"}
  batch:
    input_per_mtok: "0.5"
    output_per_mtok: "0.5"
    long_context: {input_per_mtok: "1", output_per_mtok: "1", cache_read_per_mtok: "0.000001"}
"""


def test_round_to_zero_is_checked_for_every_rate_of_every_set():
    errors = errors_of(
        TINY_EVERYWHERE + 'ft:acme:cheap: {derived_from: base-cheap, multiplier: "0.4"}'
    )
    assert {(e.line, e.model) for e in errors} == {(15, "ft:acme:cheap")}
    assert [e.message for e in errors] == [
        "derived cache_read_per_mtok: base-cheap cache_read_per_mtok 0.000001 × multiplier 0.4 "
        "rounds to 0 at 6 places (half-even); a priced base cannot derive free",
        "derived long_context audio_input_per_mtok: base-cheap long_context "
        "audio_input_per_mtok 0.000001 × multiplier 0.4 rounds to 0 at 6 places (half-even); "
        "a priced base cannot derive free",
        "derived batch long_context cache_read_per_mtok: base-cheap batch long_context "
        "cache_read_per_mtok 0.000001 × multiplier 0.4 rounds to 0 at 6 places (half-even); "
        "a priced base cannot derive free",
    ]


def test_round_to_zero_through_fine_tune_multiplier_is_checked_for_every_rate_of_every_set():
    header = HEADER + 'fine_tune_multiplier: "0.4"\n'
    errors = errors_of(TINY_EVERYWHERE, header)
    assert {(e.line, e.model) for e in errors} == {(4, "base-cheap")}
    assert [e.message.split(" rounds")[0] for e in errors] == [
        "fine_tune_multiplier 0.4 × cache_read_per_mtok 0.000001",
        "fine_tune_multiplier 0.4 × long_context audio_input_per_mtok 0.000001",
        "fine_tune_multiplier 0.4 × batch long_context cache_read_per_mtok 0.000001",
    ]


def test_derived_rates_are_every_rate_of_every_set_times_the_multiplier_with_the_threshold():
    rates = rates_of(load(LONG_CONTEXT_MODEL), "base-large").derived(Decimal("1.25"))
    assert rates.long_context_above_tokens == 200000
    assert as_text(rates.rate_set(STANDARD, STANDARD)) == {
        "input": "3.125000",
        "output": "12.500000",
        "cache_read": "0.312500",
    }
    assert as_text(rates.rate_set("batch", LONG)) == {"input": "3.125000", "output": "9.375000"}
    assert set(rates.sets) == set(rates_of(load(LONG_CONTEXT_MODEL), "base-large").sets)


# --- every error at once -------------------------------------------------------------------


def test_every_rate_set_error_of_a_version_is_reported_in_one_run():
    errors = errors_of(
        """
        base-large:
          input_per_mtok: "2.50"
          output_per_mtok: "10"
          long_context: {input_per_mtok: "5"}
          turbo: {input_per_mtok: "9", output_per_mtok: "9"}
          batch: {output_per_mtok: "5", cache_read_per_mtok: 0.1250000001}
        base-small:
          input_per_mtok: "0.15"
          output_per_mtok: "0.60"
          long_context_above_tokens: "lots"
        """
    )
    assert [(e.line, e.model) for e in errors] == [
        (8, "base-large"),  # long_context lacks output_per_mtok
        (8, "base-large"),  # ... and has no threshold
        (9, "base-large"),  # unknown tier
        (10, "base-large"),  # batch cache_read_per_mtok has 10 places
        (10, "base-large"),  # ... and batch lacks input_per_mtok
        (14, "base-small"),  # threshold is not an integer
        (14, "base-small"),  # ... and has no long_context set to price above it
    ]
