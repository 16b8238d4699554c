"""pricebook/loader.py: contract section 4, every rule, every error reported at once.

Each case is a small pricebook written inline as the YAML a person would write, put in a
real directory under tmp_path and loaded the way the pipeline loads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from rating_pipeline.pricebook.loader import (
    PricebookError,
    PricebookLoadError,
    load_pricebooks,
    load_version_beside,
    load_version_text,
)
from rating_pipeline.pricebook.model import (
    LONG,
    SERVICE_TIERS,
    STANDARD,
    TOKEN_CLASSES,
    NoPricebookForWindow,
    Pricebooks,
    PricebookVersion,
    is_derivation_base,
)
from rating_pipeline.pricing import Priced, resolve
from rating_pipeline.records import MAX_ID_LENGTH
from rating_pipeline.settings import project_root
from rating_pipeline.windows import Window

SHIPPED = project_root() / "pricebooks"


def write_books(directory: Path, **files: str) -> Path:
    """Write each ``name=yaml`` (dedented) into ``directory``; ``a_yaml`` names ``a.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        stem, _, suffix = name.rpartition("_")
        (directory / f"{stem}.{suffix}").write_text(textwrap.dedent(text).lstrip("\n"))
    return directory


def load_one(tmp_path: Path, text: str) -> Pricebooks:
    return load_pricebooks(write_books(tmp_path / "books", book_yaml=text))


def standard_rates(version: PricebookVersion, model_id: str) -> Mapping[str, Decimal]:
    """The model's standard-tier, standard-context rates by token class."""
    rates = version.models[model_id].own_rates
    assert rates is not None, f"{model_id} has no own rates"
    rate_set = rates.rate_set(STANDARD, STANDARD)
    assert rate_set is not None
    return rate_set.rates


def errors_of(tmp_path: Path, text: str) -> list[PricebookError]:
    with pytest.raises(PricebookLoadError) as caught:
        load_one(tmp_path, text)
    return list(caught.value.errors)


def the_error(tmp_path: Path, text: str) -> PricebookError:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# --- rule 5: one hop only -------------------------------------------------------------


def test_fine_tune_cannot_derive_from_an_own_rate_fine_tune(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          ft:acme:support: {input_per_mtok: "3.75", output_per_mtok: "15"}
          ft:acme:legal:
            derived_from: ft:acme:support
            multiplier: "1.25"
        """,
    )
    assert (error.line, error.model) == (7, "ft:acme:legal")
    assert "'ft:acme:support' is a fine-tune with its own rates" in error.message


def test_fine_tune_cannot_derive_from_a_derived_fine_tune(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          ft:acme:legal: {derived_from: base-large, multiplier: "1.25"}
          ft:acme:legal-2: {derived_from: "ft:acme:legal", multiplier: "2"}
        """,
    )
    assert (error.line, error.model) == (7, "ft:acme:legal-2")
    assert "'ft:acme:legal' is a derived fine-tune (from 'base-large')" in error.message
    assert "one hop only" in error.message


def test_model_cannot_derive_from_a_derived_non_fine_tune(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          base-large-eu: {derived_from: base-large, multiplier: "1.1"}
          ft:acme:eu: {derived_from: base-large-eu, multiplier: "1.25"}
        """,
    )
    assert error.model == "ft:acme:eu"
    assert "'base-large-eu' is itself derived (from 'base-large')" in error.message


def test_derived_from_a_missing_model_is_rejected_with_its_own_message(tmp_path):
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          ft:acme:own: {input_per_mtok: "1", output_per_mtok: "1"}
          ft:a: {derived_from: base-larg, multiplier: "1.25"}
          ft:b: {derived_from: "ft:acme:own", multiplier: "1.25"}
          ft:c: {derived_from: "ft:a", multiplier: "1.25"}
          ft:d: {derived_from: " ", multiplier: "1.25"}
        """,
    )
    messages = {error.model: error.message for error in errors}
    assert messages["ft:a"] == "derived_from 'base-larg' is not a model of this version"
    assert messages["ft:d"] == "derived_from must not be blank"
    assert [e.line for e in errors if e.model == "ft:d"] == [10]
    # missing, own-rate fine-tune, derived, blank: distinct
    assert len(set(messages.values())) == 4


def test_derivation_from_a_true_base_loads(tmp_path):
    books = load_one(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          ft:acme:legal: {derived_from: base-large, multiplier: "1.25"}
        """,
    )
    (version,) = books.versions
    legal = version.models["ft:acme:legal"]
    assert (legal.derived_from, legal.multiplier, legal.own_rates) == (
        "base-large",
        Decimal("1.25"),
        None,
    )
    assert is_derivation_base(version, "base-large")
    assert not is_derivation_base(version, "ft:acme:legal")


# --- rule 6: round-to-zero fails closed -------------------------------------------------


def test_declared_derivation_rounding_to_zero_fails_closed(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-cheap: {input_per_mtok: "0.000001", output_per_mtok: "0.000010"}
          ft:acme:cheap: {derived_from: base-cheap, multiplier: "0.4"}
        """,
    )
    assert (error.line, error.model) == (6, "ft:acme:cheap")
    assert error.message.startswith("derived input_per_mtok: base-cheap input_per_mtok 0.000001")
    assert "rounds to 0" in error.message


def test_a_half_way_derived_rate_rounds_half_even_to_zero_and_fails_closed(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-cheap: {input_per_mtok: "0.000003", output_per_mtok: "0.000001"}
          ft:acme:half: {derived_from: base-cheap, multiplier: "0.5"}
        """,
    )
    # 0.0000015 rounds to 0.000002 (loads); 0.0000005 rounds to even 0 (fails).
    assert error.model == "ft:acme:half"
    assert error.message.startswith("derived output_per_mtok")


def test_projection_through_fine_tune_multiplier_rounding_to_zero_fails_closed(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0.4"
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          base-cheap: {input_per_mtok: "0.10", output_per_mtok: "0.000001"}
        """,
    )
    assert (error.line, error.model) == (4, "base-cheap")
    assert error.message.startswith("fine_tune_multiplier 0.4 × output_per_mtok 0.000001")


def test_zero_base_deriving_zero_loads(tmp_path):
    books = load_one(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0.000001"
        models:
          embed-small: {input_per_mtok: "0", output_per_mtok: "0"}
          ft:acme:embed: {derived_from: embed-small, multiplier: "0.000001"}
        """,
    )
    assert books.versions[0].models["ft:acme:embed"].multiplier == Decimal("0.000001")


def test_fine_tune_multiplier_projects_true_bases_only_not_own_rate_fine_tunes(tmp_path):
    """An own-rate fine-tune is no derivation base: nothing is priced by projecting it."""
    books = load_one(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0.4"
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          ft:acme:tiny: {input_per_mtok: "0.000001", output_per_mtok: "1"}
        """,
    )
    assert standard_rates(books.versions[0], "ft:acme:tiny")["input"] == Decimal("0.000001")


def test_a_derived_rate_equal_to_the_rate_limit_is_rejected(tmp_path):
    """The limit is exclusive for derived rates as for own ones: 10^12 is refused."""
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-big: {input_per_mtok: "500000000000", output_per_mtok: "1"}
          ft:double: {derived_from: base-big, multiplier: "2"}
        """,
    )
    assert (error.line, error.model) == (6, "ft:double")
    assert "derives 1000000000000.000000, not below the rate limit" in error.message


@pytest.mark.parametrize(("places", "loads"), [(39, True), (40, False)])
def test_a_multiplier_may_span_forty_digits_written_out_and_no_more(tmp_path, places, loads):
    multiplier = "0." + "0" * (places - 1) + "1"  # places + 1 digits written out
    text = f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          embed-small: {{input_per_mtok: "0", output_per_mtok: "0"}}
          ft:acme:embed: {{derived_from: embed-small, multiplier: "{multiplier}"}}
        """
    if loads:
        model = load_one(tmp_path, text).versions[0].models["ft:acme:embed"]
        assert model.multiplier == Decimal(multiplier)
    else:
        error = the_error(tmp_path, text)
        assert (error.line, error.model) == (6, "ft:acme:embed")
        assert error.message.endswith("has more than 40 digits written out in full")


def test_a_negative_zero_rate_loads_as_unsigned_zero(tmp_path):
    """-0 is 0: no sign may show in a rate (or in what is derived from it)."""
    books = load_one(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          embed-small: {input_per_mtok: -0, output_per_mtok: "-0.00"}
        """,
    )
    rates = standard_rates(books.versions[0], "embed-small")
    assert [f"{rate:f}" for rate in rates.values()] == ["0", "0.00"]
    assert not any(rate.is_signed() for rate in rates.values())


# --- rules 1 and 2: duplicated and unknown keys ----------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "model", "message"),
    [
        pytest.param(
            """
            version: "v1"
            effective_from: "2026-06-01T00:00:00Z"
            currency: USD
            version: "v2"
            models:
              base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
            """,
            4,
            None,
            "duplicated key 'version' (first at line 1)",
            id="top-level",
        ),
        pytest.param(
            """
            version: "v1"
            effective_from: "2026-06-01T00:00:00Z"
            currency: USD
            models:
              base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
              base-large: {input_per_mtok: "0", output_per_mtok: "0"}
            """,
            6,
            "base-large",
            "model listed twice (first at line 5)",
            id="in-models",
        ),
        pytest.param(
            """
            version: "v1"
            effective_from: "2026-06-01T00:00:00Z"
            currency: USD
            models:
              base-large:
                input_per_mtok: "2.50"
                output_per_mtok: "10.00"
                "input_per_mtok": "0"
            """,
            8,
            "base-large",
            "duplicated key 'input_per_mtok' (first at line 6)",
            id="inside-a-model",
        ),
    ],
)
def test_duplicated_key_is_rejected_at_every_level(tmp_path, text, line, model, message):
    error = the_error(tmp_path, text)
    assert (error.line, error.model, error.message) == (line, model, message)


def test_a_key_that_is_not_a_plain_string_is_a_load_error_at_every_level(tmp_path):
    """Rule 2: a key written as a list or a mapping names nothing; it is never skipped."""
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        ? [fine_tune_multiplier]
        : "1.5"
        models:
          base-large:
            input_per_mtok: "2.50"
            output_per_mtok: "10.00"
            ? {cache_read_per_mtok: x}
            : "0.25"
          ? [ft:acme:legal]
          : {derived_from: base-large, multiplier: "1.25"}
        """,
    )
    assert [(e.line, e.model, e.message) for e in errors] == [
        (4, None, "a key must be a plain string, got a list"),
        (10, "base-large", "a key must be a plain string, got a mapping"),
        (12, None, "a model id must be a string, got a list"),
    ]


def test_unknown_key_is_rejected_with_its_line(tmp_path):
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplyer: "1.5"
        models:
          base-large:
            input_per_mtok: "2.50"
            output_per_mtok: "10.00"
            output_per_mtoks: "0"
        """,
    )
    assert [(e.line, e.model) for e in errors] == [(4, None), (9, "base-large")]
    assert errors[0].message.startswith(
        "unknown key 'fine_tune_multiplyer' (did you mean 'fine_tune_multiplier'?)"
    )
    assert errors[1].message.startswith("unknown key 'output_per_mtoks'")


def test_invalid_yaml_is_one_error_with_its_line(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"
          base-small: {input_per_mtok: "0.15", output_per_mtok: "0.60"}
        """,
    )
    assert error.line == 5 and error.model is None
    assert error.message.startswith("invalid YAML: ")


def test_an_undefined_alias_is_named_whichever_yaml_parser_reads_the_file(tmp_path):
    """libyaml says only "found undefined alias"; which one, on a line of several, is the
    question. Found by a review."""
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: *large_out}
        """,
    )
    assert (error.line, error.message) == (4, "invalid YAML: found undefined alias 'large_out'")
    as_a_key = the_error(tmp_path, 'version: "v1"\nmodels:\n  *m1: {input_per_mtok: "1"}\n')
    assert as_a_key.message == "invalid YAML: found undefined alias 'm1'"


def test_more_than_one_document_in_a_file_is_rejected(tmp_path):
    error = the_error(tmp_path, "version: v1\n---\nversion: v2\n")
    assert error.line == 2 and "single document" in error.message


def test_empty_file_is_rejected(tmp_path):
    error = the_error(tmp_path, "# nothing but a comment\n")
    assert error.line is None and error.message.startswith("empty file")


# --- rule 3: money exactly as written ---------------------------------------------------


def test_unquoted_money_is_read_from_its_text_not_through_a_float(tmp_path):
    books = load_one(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: 1.5
        models:
          base-large: {input_per_mtok: 2.50, output_per_mtok: "2.50"}
          base-tiny: {input_per_mtok: 3e-6, output_per_mtok: 15}
          ft:acme:legal:
            derived_from: base-large
            multiplier: 0.1000000000000000055511151231257827
        """,
    )
    (version,) = books.versions
    large = standard_rates(version, "base-large")
    assert str(large["input"]) == "2.50" and str(large["output"]) == "2.50"
    assert standard_rates(version, "base-tiny")["input"] == Decimal("0.000003")
    exact = Decimal("0.1000000000000000055511151231257827")
    multiplier = version.models["ft:acme:legal"].multiplier
    assert multiplier == exact and str(multiplier) == "0.1000000000000000055511151231257827"
    assert str(version.fine_tune_multiplier) == "1.5"


def test_rate_with_more_than_six_decimal_places_is_rejected(tmp_path):
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: 0.1000000000000000055511151231257827, output_per_mtok: "1"}
          base-small: {input_per_mtok: "0.1234567", output_per_mtok: "0.123456"}
        """,
    )
    assert [(e.line, e.model) for e in errors] == [(5, "base-large"), (6, "base-small")]
    assert (
        errors[1].message == "input_per_mtok 0.1234567 has 7 decimal places; a rate has at most 6"
    )


@pytest.mark.parametrize(
    "written",
    [
        "true",
        "null",
        "~",
        ".nan",
        ".inf",
        "-.inf",
        "[1]",
        "{a: 1}",
        '"abc"',
        "1_000",
        "0x10",
        "010",
        "+010",  # a sign does not make a leading zero unambiguous
        "0010",  # eight to a YAML 1.1 reader
        '" 010"',  # blanks around it do not either
        "1e999999999",
        "1e-999999999",
        "1e-9999999999999999999",
        '"\u0661\u0660"',
    ],
)
def test_what_is_not_a_plain_decimal_is_not_money(tmp_path, written):
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large:
            input_per_mtok: {written}
            output_per_mtok: "10.00"
        """,
    )
    assert (error.line, error.model) == (6, "base-large")
    assert error.message.startswith("input_per_mtok ")


def test_negative_rate_and_non_positive_multipliers_are_rejected(tmp_path):
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0"
        models:
          base-large: {input_per_mtok: "-0.01", output_per_mtok: "10.00"}
          ft:acme:legal: {derived_from: base-large, multiplier: "-1.25"}
        """,
    )
    assert [str(e) for e in errors] == [
        f"{errors[0].file}:4: fine_tune_multiplier must be > 0, got 0",
        f"{errors[0].file}:6: base-large: input_per_mtok must be >= 0, got -0.01",
        f"{errors[0].file}:7: ft:acme:legal: multiplier must be > 0, got -1.25",
    ]


def _numbers(value: object) -> list[object]:
    """Every non-text leaf of a loaded version: dataclass fields and mapping values, deep."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [n for f in dataclasses.fields(value) for n in _numbers(getattr(value, f.name))]
    if isinstance(value, Mapping):
        return [n for item in value.values() for n in _numbers(item)]
    if value is None or isinstance(value, str | datetime):
        return []
    return [value]


def test_no_float_anywhere_in_the_loaded_example_books():
    numbers = [n for v in load_pricebooks(SHIPPED).versions for n in _numbers(v)]
    line_numbers = [n for n in numbers if type(n) is int]
    money = [n for n in numbers if type(n) is not int]
    assert money, "the example books hold no money at all"
    assert all(type(n) is Decimal for n in money), {type(n) for n in money}
    versions = load_pricebooks(SHIPPED).versions
    thresholds = [
        entry.own_rates.long_context_above_tokens
        for version in versions
        for entry in version.models.values()
        if entry.own_rates is not None and entry.own_rates.long_context_above_tokens is not None
    ]
    assert len(line_numbers) == sum(len(v.models) for v in versions) + len(thresholds)


def test_version_and_effective_from_are_taken_from_their_text(tmp_path):
    books = load_one(
        tmp_path,
        """
        version: 2026-06-01
        effective_from: 2026-06-01T10:00:00+00:00
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
        """,
    )
    (version,) = books.versions
    assert type(version.version) is str and version.version == "2026-06-01"
    assert version.effective_from == datetime(2026, 6, 1, 10, tzinfo=UTC)


# --- rule 4: own rates or a derivation, whole ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{input_per_mtok: "1"}', "has input_per_mtok but is missing output_per_mtok"),
        ('{output_per_mtok: "1"}', "has output_per_mtok but is missing input_per_mtok"),
        ("{derived_from: base-large}", "has derived_from but is missing multiplier"),
        ('{multiplier: "2"}', "has multiplier but is missing derived_from"),
        (
            '{input_per_mtok: "1", output_per_mtok: "1", multiplier: "2"}',
            "mixes own rates (input_per_mtok, output_per_mtok) with a derivation (multiplier)",
        ),
        ("{}", "has no price"),
        ("", "has no price"),
    ],
)
def test_model_has_both_own_rates_or_a_whole_derivation(tmp_path, body, message):
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {{input_per_mtok: "2.50", output_per_mtok: "10.00"}}
          ft:acme:odd: {body}
        """,
    )
    assert (error.line, error.model) == (6, "ft:acme:odd")
    assert error.message.startswith(message)


# --- the header: currency, models, model ids --------------------------------------------


def test_missing_required_keys_are_each_reported(tmp_path):
    errors = errors_of(tmp_path, 'version: "v1"\nfine_tune_multiplier: "1.5"\n')
    assert [e.message for e in errors] == [
        "missing required key 'effective_from'",
        "missing required key 'currency'",
        "missing required key 'models'",
    ]


@pytest.mark.parametrize(
    ("header", "models", "message"),
    [
        ("currency: EUR", "{m: {input_per_mtok: 1, output_per_mtok: 1}}", "currency must be USD"),
        ("currency: USD", "{}", "models is empty"),
        ("currency: USD", "[m]", "models must be a mapping of model ids, got a list"),
        ("currency: USD", '{" ": {input_per_mtok: 1, output_per_mtok: 1}}', "a model id must"),
        ("currency: USD", '{" m": {input_per_mtok: 1, output_per_mtok: 1}}', "a model id must"),
        ("currency: USD", "{~: {input_per_mtok: 1, output_per_mtok: 1}}", "a model id must"),
    ],
)
def test_header_and_model_ids_are_checked(tmp_path, header, models, message):
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        {header}
        models: {models}
        """,
    )
    assert error.message.startswith(message)


def test_a_model_id_no_valid_event_can_carry_is_a_load_error_with_its_line(tmp_path):
    """Contract 6: an event whose model_id is longer than 256 characters is an invalid_event,
    so a model listed under such an id would never bill."""
    errors = errors_of(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          {"m" * MAX_ID_LENGTH}: {{input_per_mtok: "1", output_per_mtok: "1"}}
          {"m" * (MAX_ID_LENGTH + 1)}: {{input_per_mtok: "1", output_per_mtok: "1"}}
        """,
    )
    assert [(e.line, e.model) for e in errors] == [(6, None)]
    assert errors[0].message.startswith(
        f"a model id must be at most {MAX_ID_LENGTH} characters, as an event's is"
    )
    assert errors[0].message.endswith(f"{MAX_ID_LENGTH + 1} characters")


@pytest.mark.parametrize("name", ['"v1 "', '" v1"', "' v1 '"])
def test_a_version_name_with_surrounding_blanks_is_rejected(tmp_path, name):
    """ "v1" and "v1 " would otherwise be two versions that no reader tells apart."""
    error = the_error(
        tmp_path,
        f"""
        version: {name}
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models: {{m: {{input_per_mtok: "1", output_per_mtok: "1"}}}}
        """,
    )
    assert (error.line, error.model) == (1, None)
    assert error.message.startswith("version must not start or end with blanks")


def test_a_version_name_with_a_control_character_is_rejected(tmp_path):
    """A tab inside a name would print as blanks no reader tells from a space."""
    error = the_error(
        tmp_path,
        """
        version: "v\t1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models: {m: {input_per_mtok: "1", output_per_mtok: "1"}}
        """,
    )
    assert (error.line, error.model) == (1, None)
    assert error.message.startswith("version must be printable, not blank")


# --- rule 7: effective_from, unique versions and instants -------------------------------


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ('"2026-06-01T00:00:00"', "has no timezone"),
        ('"2026-06-01"', "has no timezone"),
        ('"2026-06-01T02:00:00+02:00"', "is not UTC"),
        ('"2026-06-01T00:30:00Z"', "is not on a whole hour"),
        ('"2026-06-01T00:00:01+00:00"', "is not on a whole hour"),
        ('"2026-06-01T00:00:00.000001Z"', "is not on a whole hour"),
        ('"first of June"', "is not an ISO-8601 instant"),
        # Finer than a microsecond: datetime would drop it and see a whole UTC hour.
        ('"2026-06-01T00:00:00.0000001Z"', "finer than a microsecond"),
        ('"2026-06-01T00:00:00+00:00:00.5"', "finer than a microsecond"),
    ],
)
def test_effective_from_must_be_an_hour_aligned_utc_instant(tmp_path, written, message):
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        effective_from: {written}
        currency: USD
        models:
          base-large: {{input_per_mtok: "2.50", output_per_mtok: "10.00"}}
        """,
    )
    assert error.line == 2 and message in error.message


@pytest.mark.parametrize("written", ['"2026-06-01T10:00:00Z"', '"2026-06-01T10:00:00+00:00"'])
def test_effective_from_accepts_z_and_zero_offset(tmp_path, written):
    text = f"""
    version: v1
    effective_from: {written}
    currency: USD
    models: {{m: {{input_per_mtok: 1, output_per_mtok: 1}}}}
    """
    version = load_version_text(textwrap.dedent(text), "inline.yaml")
    assert version.effective_from == datetime(2026, 6, 1, 10, tzinfo=UTC)


def test_versions_and_effective_instants_are_unique_across_files(tmp_path):
    books = write_books(
        tmp_path / "books",
        a_yaml="""
        version: "2026-06-01"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models: {m: {input_per_mtok: 1, output_per_mtok: 1}}
        """,
        b_yml="""
        version: "2026-06-01"
        effective_from: "2026-06-01T00:00:00+00:00"
        currency: USD
        models: {m: {input_per_mtok: 1, output_per_mtok: 2}}
        """,
    )
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(books)
    first, second = caught.value.errors
    a_file, b_file = str(books / "a.yaml"), str(books / "b.yml")
    assert (second.file, second.line) == (b_file, 2) and f"{a_file}:2" in second.message
    assert (first.file, first.line) == (b_file, 1) and f"{a_file}:1" in first.message
    assert "version '2026-06-01' is also declared in" in first.message


def test_version_for_picks_the_latest_effective_from_at_or_before_the_window(tmp_path):
    """Versions are ordered by effective_from, not by their files' names nor their own: here
    both sort the later version first."""
    books = load_pricebooks(
        write_books(
            tmp_path / "books",
            a_late_yaml="""
            version: "autumn"
            effective_from: "2026-09-01T00:00:00Z"
            currency: USD
            models: {m: {input_per_mtok: "1", output_per_mtok: "1"}}
            """,
            b_early_yaml="""
            version: "summer"
            effective_from: "2026-06-01T00:00:00Z"
            currency: USD
            models: {m: {input_per_mtok: "2", output_per_mtok: "2"}}
            """,
        )
    )
    assert [v.version for v in books.versions] == ["summer", "autumn"]
    at = Window.from_key
    assert books.version_for(at("2026-06-01-00:00")).version == "summer"
    assert books.version_for(at("2026-08-31-23:00")).version == "summer"
    assert books.version_for(at("2026-09-01-00:00")).version == "autumn"
    assert books.version_for(at("2026-10-01-00:00")).version == "autumn"
    before_first = r"window \[2026-05-31T23:00:00\+00:00.*first takes effect at 2026-06-01T00:00"
    with pytest.raises(NoPricebookForWindow, match=before_first):
        books.version_for(at("2026-05-31-23:00"))


def test_a_version_beside_others_is_not_refused_for_their_clashes_with_each_other(tmp_path):
    """A new version answers for its own errors and its clashes with the others, not for
    a clash between two files already there."""
    clashing = """
        version: "2026-06-01"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models: {m: {input_per_mtok: 1, output_per_mtok: 1}}
        """
    books = write_books(tmp_path / "books", a_yaml=clashing, b_yaml=clashing)
    new = textwrap.dedent(
        """
        version: "2026-07-01"
        effective_from: "2026-07-01T00:00:00Z"
        currency: USD
        models: {m: {input_per_mtok: 2, output_per_mtok: 2}}
        """
    ).lstrip("\n")
    version = load_version_beside(new, books / "c.yaml")
    assert version.version == "2026-07-01"
    with pytest.raises(PricebookLoadError) as caught:
        load_version_beside(new.replace("2026-07-01", "2026-06-01"), books / "c.yaml")
    assert {e.file for e in caught.value.errors} == {str(books / "c.yaml")}


# --- every error, every file, one run -------------------------------------------------------


def test_every_violation_in_every_file_is_reported_in_one_run(tmp_path):
    books = write_books(
        tmp_path / "books",
        a_yaml="""
        version: "2026-06-01"
        effective_from: "2026-06-01T00:30:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.50", output_per_mtok: "10.00"}
          ft:a: {derived_from: "ft:b", multiplier: "1.25"}
          ft:b: {input_per_mtok: "1", output_per_mtok: "1", colour: red}
        """,
        b_yaml="""
        version: "2026-06-01"
        effective_from: "2026-09-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0.0000001"
        models:
          base-large: {input_per_mtok: 2.5000001, output_per_mtok: "10.00"}
          base-small: {input_per_mtok: "0.15", output_per_mtok: "0.60"}
          base-small: {input_per_mtok: "0.15", output_per_mtok: "0.60"}
          ft:c: {derived_from: base-larg, multiplier: "1.25"}
        """,
        broken_yaml="models: [\n",
    )
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(books)
    a, b, broken = (str(books / name) for name in ("a.yaml", "b.yaml", "broken.yaml"))
    assert [(e.file, e.line, e.model) for e in caught.value.errors] == [
        (a, 2, None),  # not on a whole hour
        (a, 6, "ft:a"),  # derives from an own-rate fine-tune (reported though ft:b is broken)
        (a, 7, "ft:b"),  # unknown key
        (b, 1, None),  # version already in a.yaml
        (b, 4, "base-small"),  # projection through fine_tune_multiplier rounds to 0 (input)
        (b, 4, "base-small"),  # ... and output
        (b, 6, "base-large"),  # 7 decimal places
        (b, 8, "base-small"),  # listed twice
        (b, 9, "ft:c"),  # derives from a missing model
        (broken, 2, None),  # invalid YAML
    ]
    report = caught.value.report_lines()
    assert report[0] == f"{a}:2: effective_from 2026-06-01T00:30:00+00:00 is not on a whole hour"
    assert report[2].startswith(f"{a}:7: ft:b: unknown key 'colour'")


def test_cross_model_rules_are_reported_in_the_same_run_as_a_models_own_errors(tmp_path):
    """Rules 5 and 6 look across models; a model with an error of its own is still read
    for them, so that fixing one report never reveals errors the first one hid."""
    books = write_books(
        tmp_path / "books",
        a_yaml="""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0.4"
        models:
          cheap:
            input_per_mtok: "1"
            output_per_mtok: "2"
            turbo: "1"
            batch: {input_per_mtok: "0.000001", output_per_mtok: "1"}
          halfway: {derived_from: cheap}
          ft:hop: {derived_from: halfway, multiplier: "1"}
          ft:typo: {derived_from: cheap, multiplier: "0.4", colour: red}
        """,
    )
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(books)
    found = [(e.line, e.model, e.message) for e in caught.value.errors]
    expected = [
        (4, "cheap", "fine_tune_multiplier 0.4 × batch input_per_mtok 0.000001 rounds to 0"),
        (9, "cheap", "unknown key 'turbo'"),
        (11, "halfway", "has derived_from but is missing multiplier"),
        (12, "ft:hop", "derived_from 'halfway' is itself derived (from 'cheap')"),
        (13, "ft:typo", "unknown key 'colour'"),
        (13, "ft:typo", "derived batch input_per_mtok: cheap batch input_per_mtok 0.000001"),
    ]
    assert [(line, model) for line, model, _ in found] == [
        (line, model) for line, model, _ in expected
    ]
    for (_, _, message), (_, _, start) in zip(found, expected, strict=True):
        assert message.startswith(start), message

    assert str(PricebookError("p/a.yaml", 7, "ft:x", "bad")) == "p/a.yaml:7: ft:x: bad"
    assert str(PricebookError("p/a.yaml", 7, None, "bad")) == "p/a.yaml:7: bad"
    assert str(PricebookError("p/a.yaml", None, None, "bad")) == "p/a.yaml: bad"
    error = PricebookLoadError(
        [
            PricebookError("b", 1, None, "x"),
            PricebookError("a", 9, None, "y"),
            PricebookError("a", 2, None, "z"),
        ]
    )
    assert error.report_lines() == ["a:2: z", "a:9: y", "b:1: x"]
    assert "\n" not in str(error) and str(error).startswith("3 pricebook errors: a:2: z")


def test_a_model_listed_twice_has_its_second_listing_checked_in_the_same_run(tmp_path):
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          m: {input_per_mtok: "1", output_per_mtok: "2"}
          m: {input_per_mtok: "abc", output_per_mtok: "2"}
        """,
    )
    assert [(error.line, error.model) for error in errors] == [(6, "m"), (6, "m")]
    assert "model listed twice (first at line 5)" in errors[0].message + errors[1].message
    assert any("abc" in error.message for error in errors)


def test_a_model_listed_twice_has_its_second_listing_checked_by_rules_5_and_6(tmp_path):
    """Contract 4: every violation is reported together. The second listing of a model is
    checked for its own errors (above); its derivation must be checked too, or fixing the
    duplicate brings a second round of errors that one run should have reported."""
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base: {input_per_mtok: "0.000001", output_per_mtok: "1"}
          ft:x: {derived_from: base, multiplier: "2"}
          ft:x: {derived_from: no-such-base, multiplier: "2"}
          ft:y: {derived_from: base, multiplier: "2"}
          ft:y: {derived_from: base, multiplier: "0.1"}
        """,
    )
    messages = [f"{error.line}: {error.message}" for error in errors]
    assert any(m.startswith("7: derived_from 'no-such-base'") for m in messages), messages
    assert any(m.startswith("9: ") and "rounds to 0" in m for m in messages), messages


def test_a_model_whose_id_is_invalid_is_still_checked_by_rules_5_and_6(tmp_path):
    """docs/pricebooks.md: one run reports every error, the derivation's too."""
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base: {input_per_mtok: "0.000001", output_per_mtok: "1"}
          "ft:y ": {derived_from: base, multiplier: "0.1"}
        """,
    )
    messages = [error.message for error in errors]
    assert any("must not start or end with blanks" in m for m in messages), messages
    assert any("input_per_mtok" in m and "rounds to 0" in m for m in messages), messages


@pytest.mark.parametrize(
    ("base", "incomplete", "rate"),
    [
        # the standard set lacks output: no set of the model is checked
        (
            'input_per_mtok: "1", batch: {input_per_mtok: "0.000001", output_per_mtok: "1"}',
            "is missing output_per_mtok",
            "batch input_per_mtok",
        ),
        # a tier lacks input: its output goes unchecked
        (
            'input_per_mtok: "1", output_per_mtok: "1", batch: {output_per_mtok: "0.000001"}',
            "batch has output_per_mtok but is missing input_per_mtok",
            "batch output_per_mtok",
        ),
        # a long_context set lacks output: its input goes unchecked
        (
            'input_per_mtok: "1", output_per_mtok: "1", long_context_above_tokens: 10, '
            'long_context: {input_per_mtok: "0.000001"}',
            "long_context has input_per_mtok but is missing output_per_mtok",
            "long_context input_per_mtok",
        ),
    ],
    ids=["standard", "batch", "long_context"],
)
def test_a_rate_set_missing_input_or_output_still_has_its_rates_checked_by_rule_6(
    tmp_path, base, incomplete, rate
):
    """docs/pricebooks.md: a model with an error of its own is still checked against rules
    5 and 6, "so one run reports them all"; contract 4: "all errors are collected and
    reported together". A set that lacks input or output is such an error; the rates it
    does have must still be checked for round-to-zero, through a declared derivation and
    through fine_tune_multiplier, or adding the missing key reveals errors the first run
    hid."""
    errors = errors_of(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        fine_tune_multiplier: "0.4"
        models:
          base: {{{base}}}
          ft:x: {{derived_from: base, multiplier: "0.4"}}
        """,
    )
    found = [(error.line, error.model, error.message) for error in errors]
    assert any(model == "base" and incomplete in message for _, model, message in found), found
    assert any(
        (line, model) == (4, "base") and f"{rate} 0.000001 rounds to 0" in message
        for line, model, message in found
    ), found
    assert any(
        (line, model) == (7, "ft:x") and f"derived {rate}:" in message
        for line, model, message in found
    ), found


def test_a_model_mixing_own_rates_with_a_derivation_has_its_derived_from_checked_too(tmp_path):
    """Rule 5 reports in the same run as the model's own rule 4 error."""
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base: {input_per_mtok: "1", output_per_mtok: "1"}
          ft:y: {input_per_mtok: "1", output_per_mtok: "1", derived_from: bsae, multiplier: "2"}
        """,
    )
    assert [(e.line, e.model) for e in errors] == [(6, "ft:y"), (6, "ft:y")]
    assert errors[0].message.startswith("mixes own rates")
    assert errors[1].message == "derived_from 'bsae' is not a model of this version"


def test_a_model_id_that_is_no_clean_id_is_quoted_so_each_error_stays_one_line(tmp_path):
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          "a\\nb": {input_per_mtok: "1", output_per_mtok: "2", bogus: "1"}
          "ft:y ": {input_per_mtok: "1", output_per_mtok: "2", bogus: "1"}
        """,
    )
    lines = [str(error) for error in errors]
    assert all("\n" not in line for line in lines), lines
    assert any(": 'a\\nb': unknown key 'bogus'" in line for line in lines), lines
    assert any(": 'ft:y ': unknown key 'bogus'" in line for line in lines), lines


VALID_V1 = (
    'version: "v1"\neffective_from: "2026-06-01T00:00:00Z"\ncurrency: USD\n'
    'models:\n  m: {input_per_mtok: "1", output_per_mtok: "2"}\n'
)


def test_a_file_name_with_a_line_break_is_quoted_so_each_error_stays_one_line(tmp_path):
    """A file's name is anyone's text too (found by a review)."""
    (tmp_path / "2026-06\nfake.yaml").write_text(
        'version: "v1"\neffective_from: "2026-06-01T00:00:00Z"\ncurrency: USD\n'
        'models:\n  m: {input_per_mtok: "a", output_per_mtok: "2"}\n'
    )
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    (error,) = caught.value.errors
    assert "\n" not in str(error) and str(error).startswith(
        repr(str(tmp_path / "2026-06\nfake.yaml"))
    )
    # named as the other file of a version declared twice, too
    (tmp_path / "2026-06\nfake.yaml").write_text(VALID_V1)
    (tmp_path / "b.yaml").write_text(VALID_V1)
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    assert caught.value.errors and all("\n" not in str(e) for e in caught.value.errors)


def test_an_unacceptable_character_is_reported_on_its_line_after_text_beyond_ascii(tmp_path):
    """libyaml counts the position in UTF-8 bytes: a comment of euro signs above the
    character must not push the reported line down."""
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        # {"€" * 40}
        effective_from: "2026-06-01T00:00:00Z"
        currency: "USD\x07"
        models:
          base-large: {{input_per_mtok: "2.50", output_per_mtok: "10.00"}}
        """,
    )
    assert (error.line, error.message) == (4, "invalid YAML: unacceptable character #x0007")


@pytest.mark.parametrize("hidden", ["\u2028", "\u2029", "\x85", "\r"])
def test_a_line_break_that_editors_do_not_show_is_refused_so_no_rate_hides_behind_it(
    tmp_path, hidden
):
    """YAML reads U+2028, U+2029, NEL and a carriage return without a line feed as line
    breaks; editors, grep and diffs do not (a lone CR shows as ^M inside the line). A rate
    after one in a comment would bill while every review saw it as part of the comment.
    Found by a review of pricebook input and a second reading of its fix."""
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: "USD"
        models:
          base-large:
            input_per_mtok: "2.50"
            output_per_mtok: "10.00"  # cache reads are billed{hidden}    cache_read_per_mtok: "0"
        """,
    )
    code = f"U+{ord(hidden):04X}"
    assert error.line == 7 and error.model is None
    assert error.message.startswith(f"character {code} ("), error.message
    assert "a line break to YAML" in error.message


def test_a_file_with_windows_line_endings_loads(tmp_path):
    text = 'version: v1\r\neffective_from: "2026-06-01T00:00:00Z"\r\ncurrency: USD\r\n'
    text += 'models: {m: {input_per_mtok: "1", output_per_mtok: "2"}}\r\n'
    (tmp_path / "v1.yaml").write_bytes(text.encode())
    (version,) = load_pricebooks(tmp_path).versions
    assert standard_rates(version, "m") == {"input": Decimal("1"), "output": Decimal("2")}


# --- the directory --------------------------------------------------------------------------


def test_missing_directory_is_one_error_naming_it(tmp_path):
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path / "nowhere")
    assert caught.value.report_lines() == [
        f"{tmp_path / 'nowhere'}: pricebook directory does not exist"
    ]


def test_directory_without_version_files_is_one_error(tmp_path):
    (tmp_path / "README.md").write_text("not a pricebook\n")
    (tmp_path / "old.yaml").mkdir()
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.model) == (str(tmp_path), None, None)
    assert "no pricebook version files" in error.message


def test_only_yaml_files_directly_in_the_directory_are_versions(tmp_path):
    body = 'currency: USD\nmodels: {m: {input_per_mtok: "1", output_per_mtok: "1"}}\n'
    (tmp_path / "v1.yaml").write_text(
        f'version: v1\neffective_from: "2026-06-01T00:00:00Z"\n{body}'
    )
    (tmp_path / "v2.yml").write_text(f'version: v2\neffective_from: "2026-07-01T00:00:00Z"\n{body}')
    (tmp_path / "notes.txt").write_text("version: [broken\n")
    (tmp_path / "drafts").mkdir()
    (tmp_path / "drafts" / "v3.yaml").write_text("version: [broken\n")
    books = load_pricebooks(tmp_path)
    assert [v.source_file for v in books.versions] == [
        str(tmp_path / "v1.yaml"),
        str(tmp_path / "v2.yml"),
    ]


def test_a_version_name_on_a_fifo_is_an_error_never_skipped_nor_read(tmp_path):
    """A FIFO named like a version was skipped without a word, and a link to one would
    have blocked the loader on reading it. Found by a review of pricebook input."""
    body = 'currency: USD\nmodels: {m: {input_per_mtok: "1", output_per_mtok: "1"}}\n'
    (tmp_path / "v1.yaml").write_text(
        f'version: v1\neffective_from: "2026-06-01T00:00:00Z"\n{body}'
    )
    os.mkfifo(tmp_path / "v2.yaml")
    (tmp_path / "v3.yaml").symlink_to(tmp_path / "v2.yaml")
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    assert [(error.file, error.message) for error in caught.value.errors] == [
        (str(tmp_path / name), "cannot read: not a regular file (a FIFO, socket or device)")
        for name in ("v2.yaml", "v3.yaml")
    ]


def test_a_version_file_with_an_upper_case_suffix_is_a_version_not_skipped(tmp_path):
    """A price change saved as ``V2.YAML`` must not be silently left out."""
    body = 'currency: USD\nmodels: {m: {input_per_mtok: "1", output_per_mtok: "1"}}\n'
    (tmp_path / "v1.yaml").write_text(
        f'version: v1\neffective_from: "2026-06-01T00:00:00Z"\n{body}'
    )
    (tmp_path / "V2.YAML").write_text(
        f'version: v2\neffective_from: "2026-07-01T00:00:00Z"\n{body}'
    )
    (tmp_path / "V3.Yml").write_text("version: [broken\n")
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    assert [error.file for error in caught.value.errors] == [str(tmp_path / "V3.Yml")]
    (tmp_path / "V3.Yml").unlink()
    books = load_pricebooks(tmp_path)
    assert [v.source_file for v in books.versions] == [
        str(tmp_path / "v1.yaml"),
        str(tmp_path / "V2.YAML"),
    ]


def test_a_version_file_that_cannot_be_read_is_an_error_not_skipped(tmp_path):
    """A dangling link is a version that went missing: rating without it would price its
    windows by the version before, unseen."""
    body = 'currency: USD\nmodels: {m: {input_per_mtok: "1", output_per_mtok: "1"}}\n'
    (tmp_path / "v1.yaml").write_text(
        f'version: v1\neffective_from: "2026-06-01T00:00:00Z"\n{body}'
    )
    (tmp_path / "v2.yaml").symlink_to(tmp_path / "elsewhere" / "v2.yaml")
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.model) == (str(tmp_path / "v2.yaml"), None, None)
    assert error.message.startswith("cannot read")


def test_hidden_files_are_not_versions(tmp_path):
    """Editors leave hidden files next to the ones they edit (emacs' ``.#v1.yaml`` is a
    dangling link); a version's file name does not start with a dot."""
    body = 'currency: USD\nmodels: {m: {input_per_mtok: "1", output_per_mtok: "1"}}\n'
    (tmp_path / "v1.yaml").write_text(
        f'version: v1\neffective_from: "2026-06-01T00:00:00Z"\n{body}'
    )
    (tmp_path / ".#v1.yaml").symlink_to("someone@host.4242:1700000000")
    (tmp_path / ".v1.yaml").write_text("version: [broken\n")
    books = load_pricebooks(tmp_path)
    assert [v.source_file for v in books.versions] == [str(tmp_path / "v1.yaml")]


def test_file_that_is_not_utf8_is_an_error_with_its_line(tmp_path):
    (tmp_path / "v1.yaml").write_bytes(b'version: v1\ncurrency: "US\xff"\n')
    with pytest.raises(PricebookLoadError) as caught:
        load_pricebooks(tmp_path)
    (error,) = caught.value.errors
    assert error.line == 2 and error.message.startswith("not UTF-8 text")


# --- the shipped books ----------------------------------------------------------------------


def test_shipped_pricebooks_load_cleanly():
    books = load_pricebooks(SHIPPED)
    first = books.versions[0]
    assert first.version == "2026-06-01"
    assert first.effective_from == datetime(2026, 6, 1, tzinfo=UTC)
    assert first.fine_tune_multiplier == Decimal("1.5")
    for model_id in ("base-large", "base-medium", "base-small", "embed-small"):
        assert is_derivation_base(first, model_id)
    assert first.models["ft:acme:support"].own_rates is not None
    legal = first.models["ft:acme:legal"]
    assert (legal.derived_from, legal.multiplier) == ("base-large", Decimal("1.25"))
    for version in books.versions:
        data = Path(version.source_file).read_bytes()
        assert version.sha256 == hashlib.sha256(data).hexdigest()


def test_shipped_pricebooks_price_every_class_tier_and_long_context():
    for version in load_pricebooks(SHIPPED).versions:
        own = [e.own_rates for e in version.models.values() if e.own_rates is not None]
        sets = {key: rate_set for rates in own for key, rate_set in rates.sets.items()}
        classes = {
            cls for rates in own for rate_set in rates.sets.values() for cls in rate_set.rates
        }
        assert set(sets) >= {(tier, STANDARD) for tier in SERVICE_TIERS}, version.version
        assert (STANDARD, LONG) in sets and ("batch", LONG) in sets, version.version
        assert classes == set(TOKEN_CLASSES), version.version
        large = version.models["base-large"].own_rates
        assert large is not None and large.long_context_above_tokens == 200000


def test_loaded_models_are_read_only():
    version: PricebookVersion = load_pricebooks(SHIPPED).versions[0]
    with pytest.raises(TypeError):
        version.models["base-large"] = version.models["base-small"]  # type: ignore[index]


def test_rates_own_or_derived_must_be_below_the_rate_limit(tmp_path):
    """10^12 USD per 1M tokens: below it, any rollup rated_usage holds has a cost it holds."""
    errors = errors_of(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-huge: {input_per_mtok: "1000000000000", output_per_mtok: "1"}
          base-big: {input_per_mtok: "999999999999.999999", output_per_mtok: "1"}
          ft:bigger: {derived_from: base-big, multiplier: "2"}
        """,
    )
    assert [(e.line, e.model) for e in errors] == [(5, "base-huge"), (7, "ft:bigger")]
    assert "below" in errors[0].message and "rate limit" in errors[1].message


def test_a_rate_with_more_than_six_places_is_rejected_even_past_28_digits(tmp_path):
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base-large: {input_per_mtok: "2.5000000000000000000000000001", output_per_mtok: "1"}
        """,
    )
    assert (error.line, error.model) == (5, "base-large")
    assert "decimal places" in error.message


def test_a_declared_derivation_prices_at_the_exact_product_rounded_once(tmp_path: Path) -> None:
    """A multiplier may carry 40 digits: its product must not pass through a 28-digit
    context before the one half-even rounding to 6 places."""
    multiplier = "0.00000149999999999999999999999999999"
    version = load_one(tmp_path, f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          base: {{input_per_mtok: "1", output_per_mtok: "2"}}
          ft:acme:long: {{derived_from: base, multiplier: "{multiplier}"}}
        """).versions[0]  # fmt: skip
    priced = resolve(version, "ft:acme:long", frozenset({None}))
    assert isinstance(priced, Priced)
    standard = priced.rates.rate_set(STANDARD, STANDARD)
    assert standard is not None
    assert dict(standard.rates) == {"input": Decimal("0.000001"), "output": Decimal("0.000003")}


def test_a_currency_not_written_exactly_usd_is_a_load_error(tmp_path: Path) -> None:
    error = the_error(tmp_path, """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: usd
        models: {m: {input_per_mtok: "1", output_per_mtok: "1"}}
        """)  # fmt: skip
    assert (error.line, error.message) == (
        3,
        "currency must be USD (rates are USD per 1,000,000 tokens), got 'usd'",
    )


def test_a_tagged_top_level_mapping_is_a_load_error(tmp_path: Path) -> None:
    """Every mapping of a version is plain, the top level too: another YAML reader may
    construct a tagged one as something else."""
    error = the_error(tmp_path, """
        !pricebook
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models: {m: {input_per_mtok: "1", output_per_mtok: "1"}}
        """)  # fmt: skip
    assert error.line == 1
    assert error.message.endswith("got a mapping tagged !pricebook")


def test_a_rate_error_is_one_line_whatever_the_text_of_the_rate(tmp_path):
    """A quoted rate may hold an escaped line break; its error must not (FILE:LINE: MODEL:
    message, one line). Found by fuzzing the loader."""
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          a: {input_per_mtok: "0.0000001\\n", output_per_mtok: "1"}
        """,
    )
    assert (error.line, error.model) == (5, "a")
    assert error.message == (
        "input_per_mtok '0.0000001\\n' has 7 decimal places; a rate has at most 6"
    )


def test_a_byte_order_mark_past_the_start_of_a_file_is_refused_at_its_line(tmp_path):
    """libyaml skips U+FEFF at the start of any line, PyYAML's pure reader only at the start
    of the file: the same file would load or not by how PyYAML was installed."""
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
        \ufeff  a: {input_per_mtok: "1", output_per_mtok: "1"}
        """,
    )
    assert (error.line, error.model) == (5, None)
    assert error.message.startswith("character U+FEFF (BYTE ORDER MARK) past the start")


def test_a_tagged_key_is_not_read_as_the_plain_key(tmp_path):
    """`!custom cache_read_per_mtok` is no plain key to any other YAML reader (and
    `!!null input_per_mtok` a null one): rule 2."""
    error = the_error(
        tmp_path,
        """
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          a: {input_per_mtok: "1", output_per_mtok: "1", !custom cache_read_per_mtok: "1"}
        """,
    )
    assert (error.line, error.model) == (5, "a")
    assert error.message == (
        "a key must be a plain string, got 'cache_read_per_mtok' tagged !custom"
    )


@pytest.mark.parametrize("written", ["+200000", '"+200000"', '" 200000"'])
def test_a_threshold_is_plain_digits_without_a_sign_or_padding(tmp_path, written):
    error = the_error(
        tmp_path,
        f"""
        version: "v1"
        effective_from: "2026-06-01T00:00:00Z"
        currency: USD
        models:
          a:
            input_per_mtok: "1"
            output_per_mtok: "1"
            long_context_above_tokens: {written}
            long_context: {{input_per_mtok: "2", output_per_mtok: "2"}}
        """,
    )
    assert (error.line, error.model) == (8, "a")
    assert error.message.startswith("long_context_above_tokens must be a positive integer")
