"""pricebook/litellm.py and ``rating-pipeline pricebook import litellm`` (issue 12, item 5).

The fixture ``fixtures/litellm_model_prices.json`` is written in the shape of LiteLLM's
``model_prices_and_context_window.json`` (per-token USD prices as JSON floats), with real
entries cut down to their prices and one entry per case the importer must handle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from rating_pipeline.cli import EXIT_FAILURE, EXIT_OK, main
from rating_pipeline.pricebook.litellm import (
    FloatNoiseError,
    ImportedVersion,
    LitellmFormatError,
    convert_litellm,
)
from rating_pipeline.pricebook.loader import load_pricebooks, load_version_text
from rating_pipeline.pricebook.model import LONG, STANDARD, ModelRates, PricebookVersion
from rating_pipeline.records import MAX_ID_LENGTH

FIXTURE = Path(__file__).parent / "fixtures" / "litellm_model_prices.json"
EFFECTIVE_FROM = "2026-10-01T00:00:00Z"


def convert(text: str, *, round_rates: bool = True) -> ImportedVersion:
    return convert_litellm(
        text, version="litellm-1", effective_from=EFFECTIVE_FROM, round_rates=round_rates
    )


def imported(text: str | None = None) -> tuple[ImportedVersion, PricebookVersion]:
    """The fixture (or ``text``) imported with --round, and its YAML loaded by the loader."""
    result = convert(FIXTURE.read_text() if text is None else text)
    return result, load_version_text(result.text, "litellm-1.yaml")


def rates(version: PricebookVersion, model_id: str) -> ModelRates:
    own = version.models[model_id].own_rates
    assert own is not None
    return own


def as_text(model: ModelRates, tier: str = STANDARD, context: str = STANDARD) -> dict[str, str]:
    rate_set = model.rate_set(tier, context)
    assert rate_set is not None, (tier, context)
    return {cls: f"{rate:f}" for cls, rate in rate_set.rates.items()}


def unmapped_of(result: ImportedVersion, model_id: str) -> dict[str, str]:
    return {note.field: note.reason for note in result.unmapped if note.model == model_id}


def one_model(body: str, model_id: str = "m") -> str:
    """A LiteLLM map of one chat model whose fields are ``body`` (JSON members)."""
    return "{" + json.dumps(model_id) + ': {"mode": "chat", "litellm_provider": "x", ' + body + "}}"


# --- what it maps -----------------------------------------------------------------------


def test_import_maps_every_per_token_class_to_its_rate_per_million_tokens():
    _, version = imported()
    assert as_text(rates(version, "claude-sonnet-4-5")) == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "cache_write_1h": "6",
    }
    assert as_text(rates(version, "gemini-2.5-flash")) == {
        "input": "0.3",
        "output": "2.5",
        "cache_read": "0.03",
        "reasoning": "2.5",
        "audio_input": "1",
        "image_input": "0.3",
    }
    assert as_text(rates(version, "gpt-4o-mini-audio-preview")) == {
        "input": "0.15",
        "output": "0.6",
        "audio_input": "10",
        "audio_output": "20",
    }
    assert as_text(rates(version, "deepseek/deepseek-chat"))["cache_write"] == "0"


def test_import_maps_batch_priority_and_flex_tiers_each_as_its_own_set():
    _, version = imported()
    gpt = rates(version, "gpt-5.4")
    assert as_text(gpt, "batch") == {"input": "1.25", "output": "7.5", "cache_read": "0.125"}
    assert as_text(gpt, "flex") == {"input": "1.25", "output": "7.5", "cache_read": "0.125"}
    assert as_text(gpt, "priority") == {"input": "5", "output": "30", "cache_read": "0.5"}
    assert as_text(rates(version, "o3-deep-research"), "batch") == {"input": "5", "output": "20"}


def test_import_maps_long_context_rates_with_their_threshold():
    _, version = imported()
    claude = rates(version, "claude-sonnet-4-5")
    assert claude.long_context_above_tokens == 200_000
    assert as_text(claude, STANDARD, LONG) == {
        "input": "6",
        "output": "22.5",
        "cache_read": "0.6",
        "cache_write": "7.5",
        "cache_write_1h": "12",
    }
    gpt = rates(version, "gpt-5.4")
    assert gpt.long_context_above_tokens == 272_000
    assert as_text(gpt, "batch", LONG) == {"input": "2.5", "output": "11.25", "cache_read": "0.25"}


def test_a_tier_or_long_context_set_without_a_cache_rate_in_the_source_gets_none():
    _, version = imported()
    claude = rates(version, "claude-sonnet-4-5")
    assert as_text(claude, "batch") == {"input": "1.5", "output": "7.5"}
    gpt = rates(version, "gpt-5.4")
    assert as_text(gpt, "flex", LONG) == {"input": "2.5", "output": "11.25"}


def test_only_chat_and_responses_models_are_imported():
    result, version = imported()
    assert "o3-deep-research" in version.models  # mode responses
    assert "text-embedding-3-small" not in version.models
    assert "1024-x-1024/dall-e-2" not in version.models
    assert "sample_spec" not in version.models
    assert dict(result.skipped_modes) == {
        "embedding": 1,
        "image_generation": 1,
        '"one of: chat, embedding, completion, image_generation, audio_transcription, '
        'audio_speech, image_generation, moderation, rerank, search"': 1,
    }
    assert result.models == len(version.models) == 12


def test_import_reads_each_price_from_its_json_text_never_through_a_float():
    # 5.46875e-07 is exact in decimal; as a binary float times 1e6 it is 0.5468749999999999.
    _, version = imported(
        one_model('"input_cost_per_token": 5.46875e-07, "output_cost_per_token": 1.1e-06')
    )
    assert as_text(rates(version, "m")) == {"input": "0.546875", "output": "1.1"}


def test_a_negative_zero_price_is_written_as_zero():
    result, version = imported(
        one_model('"input_cost_per_token": 1e-06, "output_cost_per_token": -0.0')
    )
    assert as_text(rates(version, "m")) == {"input": "1", "output": "0"}
    assert 'output_per_mtok: "0"' in result.text and '"-0"' not in result.text


def test_the_imported_version_validates_with_the_loader():
    result, version = imported()
    assert version.version == "litellm-1"
    assert version.effective_from.isoformat() == "2026-10-01T00:00:00+00:00"
    assert result.text.startswith("# Imported from LiteLLM")
    for model in version.models.values():
        assert model.own_rates is not None and model.derived_from is None


# --- what it reports --------------------------------------------------------------------


def test_float_noise_without_round_is_an_error_naming_model_field_and_both_values():
    with pytest.raises(FloatNoiseError) as caught:
        convert(FIXTURE.read_text(), round_rates=False)
    assert caught.value.report_lines() == [
        "databricks/databricks-claude-sonnet-4-1: input_cost_per_token 2.9999900000000002e-06 "
        "is 2.9999900000000002 per 1M tokens, 16 decimal places, more than the 6 a rate holds; "
        "--round would import 2.99999",
        "databricks/databricks-claude-sonnet-4-1: output_cost_per_token 1.5000020000000002e-05 "
        "is 15.000020000000002 per 1M tokens, 15 decimal places, more than the 6 a rate holds; "
        "--round would import 15.00002",
        "free-tier/tiny-chat: input_cost_per_token 1e-13 is 0.0000001 per 1M tokens, "
        "7 decimal places, more than the 6 a rate holds; it rounds to 0, so --round would "
        "leave it out",
    ]


def test_round_rounds_half_even_and_reports_model_field_and_both_values():
    result, version = imported()
    assert as_text(rates(version, "databricks/databricks-claude-sonnet-4-1")) == {
        "input": "2.99999",
        "output": "15.00002",
    }
    assert [str(note) for note in result.rounded] == [
        "databricks/databricks-claude-sonnet-4-1: input_cost_per_token 2.9999900000000002e-06 "
        "is 2.9999900000000002 per 1M tokens, rounded half-even to 2.99999",
        "databricks/databricks-claude-sonnet-4-1: output_cost_per_token 1.5000020000000002e-05 "
        "is 15.000020000000002 per 1M tokens, rounded half-even to 15.00002",
    ]
    _, half = imported(
        one_model('"input_cost_per_token": 2.5e-12, "output_cost_per_token": 3.5e-12')
    )
    assert as_text(rates(half, "m")) == {"input": "0.000002", "output": "0.000004"}


def test_a_positive_price_that_would_round_to_zero_is_never_imported_free():
    result, version = imported()
    assert "free-tier/tiny-chat" not in version.models
    reasons = unmapped_of(result, "free-tier/tiny-chat")
    assert reasons["input_cost_per_token"] == (
        "0.0000001 per 1M tokens rounds to 0 at 6 places: a priced class is never imported free"
    )
    assert reasons["output_cost_per_reasoning_token"] == "a negative price"
    assert reasons["output_cost_per_token"] == (
        "model not imported: it has no usable input_cost_per_token"
    )


def test_a_threshold_field_of_thousands_of_digits_is_reported_not_a_crash():
    """Python refuses to convert more than 4300 digits to an int. Found by a review of
    pricebook input. Unread, it leaves the model out, as any long-context price not read."""
    field = f"input_cost_per_token_above_{'9' * 5000}k_tokens"
    result = convert(
        one_model(
            f'"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "{field}": 3e-06'
        )
    )
    why = f"model not imported: a long-context price it cannot read ({field})"
    assert unmapped_of(result, "m") == {
        "input_cost_per_token": why,
        "output_cost_per_token": why,
        field: why,
    }


def test_a_threshold_past_the_largest_a_pricebook_holds_leaves_the_model_out():
    """Imported, it made a version the loader refuses: one odd field failed the whole
    import on a line of a file nobody wrote. Found by a second reading of the change."""
    above = "_above_9999999999999999k_tokens"
    result = convert(
        one_model(
            '"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, '
            f'"input_cost_per_token{above}": 3e-06, "output_cost_per_token{above}": 4e-06'
        )
    )
    assert result.models == 0
    assert [str(note) for note in result.not_imported] == [
        "m: a long-context threshold of 9999999999999999k tokens is past the largest a "
        "pricebook holds (9223372036854775807 tokens)"
    ]


def test_prices_it_cannot_map_are_reported_by_model_field_value_and_reason():
    result, _ = imported()
    assert unmapped_of(result, "claude-sonnet-4-5") == {
        "search_context_cost_per_query": "priced per query: the contract prices tokens only"
    }
    assert unmapped_of(result, "gemini-2.5-flash") == {
        "cache_read_input_audio_token_cost": (
            "a per-token price of a class, tier or threshold the contract does not know"
        ),
        "google_maps_grounding_cost_per_query": "priced per query: the contract prices tokens only",
        "input_cost_per_token_priority": (
            "priority rates lack output_cost_per_token_priority: a rate set needs input and output"
        ),
    }
    assert unmapped_of(result, "gemini-live-2.5-flash") == {
        "input_cost_per_audio_per_second": "priced per second: the contract prices tokens only",
        "output_cost_per_token_priority": (
            "priority rates lack input_cost_per_token_priority: a rate set needs input and output"
        ),
    }
    assert unmapped_of(result, "gpt-5.4") == {
        "fedramp_uplift_multiplier": "a price multiplier: the contract has none"
    }
    assert unmapped_of(result, "deepseek/deepseek-chat") == {
        "input_cost_per_token_cache_hit": (
            "an older name for cache_read_input_token_cost, which is read instead"
        )
    }
    assert unmapped_of(result, "databricks/databricks-claude-sonnet-4-1") == {
        "input_dbu_cost_per_token": (
            "a per-token price of a class, tier or threshold the contract does not know"
        )
    }
    rendered = [str(note) for note in result.unmapped if note.model == "perplexity/sonar"]
    assert rendered == [  # the whole value, each number as the file writes it
        'perplexity/sonar: search_context_cost_per_query {"search_context_size_high": 0.012, '
        '"search_context_size_low": 0.005, "search_context_size_medium": 0.008}: '
        "priced per query: the contract prices tokens only"
    ]


def test_a_price_named_by_neither_cost_nor_price_is_reported_never_dropped():
    """LiteLLM's map grows new price fields: a field that looks like a price, by its name
    or by the names inside it, is reported whatever it is called; counts and flags are not."""
    result = convert(
        one_model(
            '"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, '
            '"priority_pricing": {"input_cost_per_token": 2e-06}, '
            '"batch_rates": {"input_per_token": 5e-07}, "input_usd_per_token_cached": 1e-07, '
            '"max_input_tokens": 128000, "supports_vision": true, '
            '"tool_use_system_prompt_tokens": 159, "supported_modalities": ["text"]'
        )
    )
    assert set(unmapped_of(result, "m")) == {
        "priority_pricing",
        "batch_rates",
        "input_usd_per_token_cached",
    }


def test_an_older_cache_hit_price_is_the_cache_read_price_where_the_newer_field_is_absent():
    """LiteLLM's deepseek/deepseek-coder (and deepseek-r1, deepseek-v3.2, openrouter/deepseek/*)
    carry only ``input_cost_per_token_cache_hit``: it is their cache-read price, read as such
    and reported under no name; beside the newer field, the newer is read and the older
    reported (docs/pricebooks.md: the import never changes a price silently)."""
    entry = {
        "mode": "chat", "litellm_provider": "deepseek", "input_cost_per_token": 1.4e-07,
        "output_cost_per_token": 2.8e-07, "input_cost_per_token_cache_hit": 1.4e-08,
    }  # fmt: skip
    both = {**entry, "cache_read_input_token_cost": 2e-08}
    result, version = imported(json.dumps({"deepseek/deepseek-coder": entry, "newer": both}))

    for model_id, cache_read in (("deepseek/deepseek-coder", "0.014"), ("newer", "0.02")):
        standard = rates(version, model_id).rate_set(STANDARD, STANDARD)
        assert standard is not None and standard.rate("cache_read") == Decimal(cache_read)
    assert unmapped_of(result, "deepseek/deepseek-coder") == {}
    assert unmapped_of(result, "newer") == {
        "input_cost_per_token_cache_hit": (
            "an older name for cache_read_input_token_cost, which is read instead"
        )
    }


@pytest.mark.parametrize(
    "why_left_out",
    [
        '"output_cost_per_token": 2e-06, "input_cost_per_token_above_1.5k_tokens": 2e-06',
        '"output_cost_per_token_batches": 2e-06',  # no standard output price
    ],
)
def test_an_older_cache_hit_name_of_a_model_left_out_is_not_said_to_be_read_instead(
    why_left_out: str,
) -> None:
    """Beside the newer field it is reported; the model left out, nothing is read."""
    both = one_model(
        '"input_cost_per_token": 1e-06, "cache_read_input_token_cost": 1e-07, '
        f'"input_cost_per_token_cache_hit": 1e-07, {why_left_out}'
    )
    result = convert(both)
    assert result.models == 0
    reason = unmapped_of(result, "m")["input_cost_per_token_cache_hit"]
    assert reason.startswith("model not imported: ")


def test_a_model_whose_thresholds_differ_is_not_imported_rather_than_billed_flat():
    """One threshold per model is what the contract holds; importing the rest of such a
    model would price its long prompts at standard rates (contract 5: never another
    context's rates), so it is left out, every price told."""
    result, version = imported()
    assert "kyma/qwen3.7-flash" not in version.models
    assert "kyma/qwen3.7-flash: long-context thresholds differ (32k, 256k tokens)" in {
        str(note) for note in result.not_imported
    }
    reason = "model not imported: long-context thresholds differ within it (32k, 256k tokens)"
    assert set(unmapped_of(result, "kyma/qwen3.7-flash").values()) == {reason}
    assert len(unmapped_of(result, "kyma/qwen3.7-flash")) == 6  # every price it has


@pytest.mark.parametrize(
    ("body", "models", "left_out"),
    [
        (  # thresholds that differ: --round leaves the model out
            '"input_cost_per_token": 2.9999900000000002e-06, "output_cost_per_token": 2e-06, '
            '"input_cost_per_token_above_200k_tokens": 6e-06, '
            '"output_cost_per_token_above_200k_tokens": 9e-06, '
            '"input_cost_per_token_above_128k_tokens": 5e-06',
            0,
            "the model is left out",
        ),
        (  # a batch input price without its batch output: the batch set is left out
            '"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, '
            '"input_cost_per_token_batches": 1.4999900000000002e-06',
            1,
            "it is not mapped",
        ),
        (  # its input price rounds to 0: --round leaves the model out (a mutation audit)
            '"input_cost_per_token": 1e-13, "output_cost_per_token": 2.9999900000000002e-06',
            0,
            "the model is left out",
        ),
    ],
    ids=["model left out", "rate set left out", "input rounds to zero"],
)
def test_float_noise_of_a_price_left_out_is_never_reported_as_a_rate_it_would_import(
    body: str, models: int, left_out: str
) -> None:
    """A noisy price of a model or a rate set the import leaves out: no report may say it
    rounds (or would import) that price. Found by an audit, and the rate set by a second
    reading of its fix."""
    with pytest.raises(FloatNoiseError) as caught:
        convert(one_model(body), round_rates=False)
    line = caught.value.report_lines()[-1]  # the last noisy price of the entry
    assert "--round would import" not in line
    assert f"--round would not import it: {left_out}" in line
    result = convert(one_model(body))
    assert result.models == models and result.rounded == ()


def test_a_model_whose_long_context_prices_make_no_whole_set_is_not_imported():
    """A threshold with no complete long-context set to price above it: importing the
    rest would bill its long prompts at standard rates, as with thresholds that differ.
    Found by a review of the importer."""
    text = json.dumps(
        {
            "m": {"mode": "chat", "litellm_provider": "x", "input_cost_per_token": 3e-06,
                  "output_cost_per_token": 1.5e-05,
                  "input_cost_per_token_above_200k_tokens": 6e-06},
            "ok": {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
        }
    )  # fmt: skip
    result, version = imported(text)
    assert list(version.models) == ["ok"]
    why = "long-context prices above 200k tokens make no complete rate set"
    assert f"m: {why}" in {str(note) for note in result.not_imported}
    assert set(unmapped_of(result, "m").values()) == {f"model not imported: {why}"}
    assert len(unmapped_of(result, "m")) == 3  # every price it has


def test_prices_by_region_are_reported_not_ignored():
    text = json.dumps(
        {
            "m": {
                "mode": "chat", "input_cost_per_token": 1.32e-06,
                "output_cost_per_token": 3.96e-06,
                "provider_specific_entry": {"us": "1.1", "fast": 2},
            }
        }
    )  # fmt: skip
    result, version = imported(text)
    assert "m" in version.models
    assert unmapped_of(result, "m") == {
        "provider_specific_entry": "price multipliers by region or speed: the contract has none",
    }


def test_a_model_priced_by_time_of_day_is_not_imported_rather_than_billed_at_peak_rates():
    """Off-peak prices replace the per-token prices part of the week; the contract's rates
    hold at every hour, so importing the rest billed off-peak usage at twice its price.
    Found by a review of the importer against LiteLLM's real map."""
    text = json.dumps(
        {
            "deepseek-v4-pro": {
                "mode": "chat", "input_cost_per_token": 1.32e-06,
                "output_cost_per_token": 3.96e-06,
                "off_peak_pricing": {"input_cost_per_token": 6.6e-07, "windows": ["00:00-01:00"]},
            },
            "ok": {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
        }
    )  # fmt: skip
    result, version = imported(text)
    assert list(version.models) == ["ok"]
    why = "prices by time of day replace its per-token prices part of the time"
    assert f"deepseek-v4-pro: {why}" in {str(note) for note in result.not_imported}
    assert set(unmapped_of(result, "deepseek-v4-pro").values()) == {f"model not imported: {why}"}
    assert len(unmapped_of(result, "deepseek-v4-pro")) == 3  # every price it has


def test_a_model_whose_only_prices_the_contract_cannot_hold_is_not_imported_rather_than_free():
    """Tokens at 0 and a price per clip: imported, every request billed nothing. Found by
    a review of the importer against LiteLLM's real map."""
    text = one_model(
        '"input_cost_per_token": 0, "output_cost_per_token": 0, "output_cost_per_image": 0.08'
    )
    result = convert(text)
    assert result.models == 0
    why = "every per-token price is 0 and it has prices the contract cannot hold"
    assert f"m: {why}" in {str(note) for note in result.not_imported}


@pytest.mark.parametrize(
    "price",
    [
        '{"search_context_size_low": 0.01}',  # LiteLLM's per-query price object
        "[0.01]",
        '"0.01"',
    ],
)
def test_zero_token_prices_beside_a_price_in_an_object_list_or_text_are_never_imported_free(
    price: str,
) -> None:
    """Found by an audit: only a plain number counted as a price beside the zero ones."""
    text = one_model(
        '"input_cost_per_token": 0, "output_cost_per_token": 0, '
        f'"search_context_cost_per_query": {price}'
    )
    result = convert(text)
    assert result.models == 0, result.text
    why = "every per-token price is 0 and it has prices the contract cannot hold"
    assert f"m: {why}" in {str(note) for note in result.not_imported}


@pytest.mark.parametrize(
    "field",
    [
        "input_cost_per_token_priority_above_200k_tokens",  # LiteLLM reads this order too
        "input_cost_per_token_above_200000_tokens",  # and thresholds without the k
        "input_cost_per_token_above_0k_tokens",
        "input_cost_per_token_above_1.5k_tokens",  # LiteLLM reads the number as a float
    ],
)
def test_a_long_context_price_it_cannot_read_leaves_the_model_out(field: str) -> None:
    """Imported without it, the model's long prompts would bill at standard rates. Found by
    a review of the importer against LiteLLM's cost code."""
    text = one_model(
        '"input_cost_per_token": 2e-06, "output_cost_per_token": 4e-06, '
        f'"input_cost_per_token_priority": 2e-06, "output_cost_per_token_priority": 4e-06, '
        f'"{field}": 9e-06'
    )
    result = convert(text)
    assert result.models == 0
    why = f"a long-context price it cannot read ({field})"
    assert f"m: {why}" in {str(note) for note in result.not_imported}


def test_a_long_context_price_of_a_class_it_does_not_know_is_reported_not_a_reason_to_leave_out():
    """A 12-hour cache write above a threshold (OpenAI's in LiteLLM's map): the threshold
    is read after the last "_above_", and the class is one the contract lacks."""
    field = "cache_creation_input_token_cost_above_12hr_above_272k_tokens"
    prices = f'"input_cost_per_token": 2e-06, "output_cost_per_token": 4e-06, "{field}": 1e-06'
    result = convert(one_model(prices))
    assert result.models == 1
    assert unmapped_of(result, "m") == {
        field: "a per-token price of a class, tier or threshold the contract does not know"
    }


def test_an_xai_threshold_counts_a_prompt_at_it_as_long_as_litellm_does():
    """LiteLLM bills xAI's long-context rates from the threshold itself (prompt >= N); the
    contract's threshold is exclusive (prompt > N), so it is written one token lower."""
    entry = {
        "mode": "chat", "litellm_provider": "xai", "input_cost_per_token": 1.25e-06,
        "output_cost_per_token": 2.5e-06, "input_cost_per_token_above_200k_tokens": 2.5e-06,
        "output_cost_per_token_above_200k_tokens": 5e-06,
    }  # fmt: skip
    _, version = imported(
        json.dumps({"xai/grok-4.3": entry, "other/grok": {**entry, "litellm_provider": "other"}})
    )
    assert rates(version, "xai/grok-4.3").long_context_above_tokens == 199_999
    assert rates(version, "other/grok").long_context_above_tokens == 200_000


def test_an_incomplete_tier_or_long_context_set_is_reported_and_not_imported():
    result, version = imported()
    pro = rates(version, "gemini-2.5-pro")
    assert set(pro.sets) == {(STANDARD, STANDARD), (STANDARD, LONG), ("batch", STANDARD)}
    assert unmapped_of(result, "gemini-2.5-pro") == {
        "input_cost_per_token_above_200k_tokens_batches": (
            "batch long-context rates lack output_cost_per_token_above_200k_tokens_batches: "
            "a rate set needs input and output"
        ),
        "output_cost_per_token_flex": (
            "flex rates lack input_cost_per_token_flex: a rate set needs input and output"
        ),
        "input_cost_per_token_above_200k_tokens_flex": (
            "flex long-context rates without flex rates to belong to"
        ),
        "output_cost_per_token_above_200k_tokens_flex": (
            "flex long-context rates without flex rates to belong to"
        ),
    }


def test_a_model_without_per_token_input_and_output_is_not_imported_and_reported():
    result, version = imported()
    assert "openrouter/openai/gpt-4o:online" not in version.models
    assert unmapped_of(result, "openrouter/openai/gpt-4o:online") == {
        "input_cost_per_token": "model not imported: it has no usable output_cost_per_token"
    }
    assert [str(note) for note in result.not_imported] == [
        "free-tier/tiny-chat: no usable input_cost_per_token",
        "kyma/qwen3.7-flash: long-context thresholds differ (32k, 256k tokens)",
        "openrouter/openai/gpt-4o:online: no usable output_cost_per_token",
    ]


def test_an_imported_fine_tune_entry_is_noted_as_pricing_only_its_exact_id():
    """LiteLLM keys a fine-tune's prices by ``ft:<base>``; no served fine-tune's id equals
    that, so the report says the listed model prices nothing until the user lists theirs."""
    result, version = imported()
    assert "ft:gpt-4o-2024-08-06" in version.models
    assert [line for line in result.report_lines() if line.startswith("note: ft:")] == [
        "note: ft:gpt-4o-2024-08-06: listed as it is, it prices only events whose model_id "
        "is exactly ft:gpt-4o-2024-08-06; a fine-tune's own id (OpenAI's "
        "ft:<base>:<org>:<suffix>:<id>) is another model, unpriced until listed with these "
        "rates or priced by fine_tune_multiplier"
    ]


def test_a_tier_priced_flat_beside_a_threshold_is_noted_as_unpriced_above_it():
    """A model has one threshold (contract 4), and a tier the source prices flat gets no
    long-context set: its prompts above the threshold are unpriced, and the report says so
    per model and tier instead of leaving it to the first invoice."""
    text = json.dumps(
        {
            "m": {
                "mode": "chat",
                "input_cost_per_token": 3e-06,
                "output_cost_per_token": 1.5e-05,
                "input_cost_per_token_above_200k_tokens": 6e-06,
                "output_cost_per_token_above_200k_tokens": 2.25e-05,
                "input_cost_per_token_batches": 1.5e-06,
                "output_cost_per_token_batches": 7.5e-06,
                "input_cost_per_token_priority": 6e-06,
                "output_cost_per_token_priority": 3e-05,
                "input_cost_per_token_above_200k_tokens_priority": 1.2e-05,
                "output_cost_per_token_above_200k_tokens_priority": 4.5e-05,
            }
        }
    )
    result, version = imported(text)
    assert rates(version, "m").rate_set("batch", LONG) is None
    assert [line for line in result.report_lines() if line.startswith("note: ")] == [
        "note: m: its batch rates have no long-context set in the source: batch requests "
        "whose prompt is above 200000 tokens are unpriced until one is added (a model has "
        "one threshold, and nothing is inherited)"
    ]


def test_a_model_id_beyond_the_basic_multilingual_plane_is_written_as_itself():
    """The id is written as YAML text; a \\ud83d surrogate escape would not load (found by a
    mutation pass: no test held an id outside the BMP)."""
    result, version = imported(
        one_model('"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06', "m\U0001f600")
    )
    assert list(version.models) == ["m\U0001f600"]
    assert "m\U0001f600" in result.text


def test_a_model_id_no_pricebook_can_list_is_not_imported_and_reported():
    text = (
        '{" padded": {"mode": "chat", "input_cost_per_token": 1e-06, '
        '"output_cost_per_token": 1e-06}, "ok": {"mode": "chat", '
        '"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}}'
    )
    result, version = imported(text)
    assert list(version.models) == ["ok"]
    assert [str(note) for note in result.not_imported] == [" padded: no usable model id"]


def test_a_duplicated_key_in_the_json_fails_the_import():
    text = '{"m": {"mode": "chat", "input_cost_per_token": 1e-06, "input_cost_per_token": 2e-06}}'
    with pytest.raises(LitellmFormatError, match="duplicated key 'input_cost_per_token' in 'm'"):
        convert(text)
    with pytest.raises(LitellmFormatError, match="model 'm' is listed twice"):
        convert('{"m": {"mode": "chat"}, "m": {"mode": "chat"}}')


def test_a_duplicated_key_deep_in_a_model_is_named_with_its_model():
    """In a map of thousands of models, the duplicate's place names its model."""
    text = '{"m": {"mode": "chat", "x": {"y": {"z": 1, "z": 2}}}}'
    with pytest.raises(LitellmFormatError, match=r"duplicated key 'z' in 'm'\['x'\]\['y'\]"):
        convert(text)


def test_a_file_nested_too_deeply_is_one_clean_error():
    """A price field holding lists nested hundreds deep is no price map: an error that
    names the model, not a RecursionError's traceback."""
    deep = "[" * 600 + "1" + "]" * 600
    with pytest.raises(LitellmFormatError, match=r"model 'm' holds values nested more than"):
        convert(one_model('"x_cost": ' + deep))
    with pytest.raises(LitellmFormatError, match="nested more than"):
        convert("[" * 5000 + "]" * 5000)


def test_an_effective_from_that_is_no_text_is_one_clean_error(tmp_path, capsys):
    code = run_import("--version", "v1", "--effective-from", EFFECTIVE_FROM + "\udcff",
                      "--out", str(tmp_path), "--round")  # fmt: skip
    assert code == EXIT_FAILURE
    assert "--effective-from '2026-10-01T00:00:00Z\\udcff'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("effective_from", "said"),
    [
        ("2026-10-01", "has no timezone; windows are UTC"),
        ("2026-10-01T00:30:00Z", "is not on a whole hour"),
        ("2026-10-01T02:00:00+02:00", "is not UTC"),
        ("October 1st", "is not an ISO-8601 instant"),
    ],
)
def test_an_effective_from_the_loader_would_refuse_is_refused_as_the_argument(
    tmp_path, capsys, effective_from, said
):
    """The loader's rule for effective_from, applied to ``--effective-from`` before the
    conversion: the error names the argument, alone, where it named a line of a file never
    written, after the whole mapping report. Found by an outside tour."""
    code = run_import("--version", "v1", "--effective-from", effective_from,
                      "--out", str(tmp_path), "--round")  # fmt: skip

    err = capsys.readouterr().err
    assert code == EXIT_FAILURE and not list(tmp_path.iterdir())
    assert err.startswith(f"error: --effective-from {effective_from!r}: ") and said in err, err
    assert err.count("\n") == 1, err


def test_a_duplicated_key_in_a_price_range_fails_the_import():
    """An object inside a list (a tiered_pricing range) is checked as one inside an object
    is: a parser keeps the last of two input prices, 9 in place of 1, unseen. Found by a
    review of the importer."""
    text = (
        '{"m": {"mode": "chat", "tiered_pricing": ['
        '{"range": [0, 256000], "input_cost_per_token": 1e-06, "input_cost_per_token": 9e-06, '
        '"output_cost_per_token": 2e-06}, {"range": [256000, 1000000], '
        '"input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06}]}}'
    )
    with pytest.raises(
        LitellmFormatError,
        match=r"duplicated key 'input_cost_per_token' in 'm'\['tiered_pricing'\]\[0\]",
    ):
        convert(text)


def test_a_price_per_second_or_character_above_a_threshold_is_reported_as_such():
    result, _ = imported(one_model(
        '"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, '
        '"input_cost_per_video_per_second_above_128k_tokens": 0.001, '
        '"output_cost_per_character_above_128k_tokens": 0.002'
    ))  # fmt: skip
    assert unmapped_of(result, "m") == {
        "input_cost_per_video_per_second_above_128k_tokens": (
            "priced per second: the contract prices tokens only"
        ),
        "output_cost_per_character_above_128k_tokens": (
            "priced per character: the contract prices tokens only"
        ),
    }


# --- LiteLLM's model aliases ----------------------------------------------------------------

CHAT_PRICES = {"mode": "chat", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05}


def test_an_alias_of_an_imported_model_is_derived_from_it_at_multiplier_1():
    """LiteLLM serves an ``alias_of`` row, and each name of an ``aliases`` list, at its
    target's prices: one price for every name of the model, as the derivation keeps it."""
    result, version = imported(json.dumps({
        "claude-sonnet-5-5": {**CHAT_PRICES, "aliases": ["claude-sonnet-5-5-latest"]},
        "claude-sonnet-latest": {"alias_of": "claude-sonnet-5-5"},
    }))  # fmt: skip
    assert result.models == 3 and not result.skipped_modes and not result.not_imported
    for alias in ("claude-sonnet-latest", "claude-sonnet-5-5-latest"):
        entry = version.models[alias]
        assert (entry.derived_from, entry.multiplier) == ("claude-sonnet-5-5", Decimal(1))
    assert (
        '  "claude-sonnet-latest":\n    derived_from: "claude-sonnet-5-5"\n    multiplier: "1"\n'
        in (result.text)
    )


def test_an_alias_litellm_does_not_serve_as_an_imported_model_is_named_or_counted():
    result, version = imported(json.dumps({
        "chat": {**CHAT_PRICES, "aliases": ["other"]},
        "other": CHAT_PRICES,  # an entry of its own: LiteLLM serves it, not the alias
        "embed": {"mode": "embedding", "input_cost_per_token": 1e-08},
        "embed-latest": {"alias_of": "embed"},
        "gone-latest": {"alias_of": "gone"},
        "chained": {"alias_of": "gone-latest"},
        "unpriced": {"mode": "chat", "input_cost_per_token": 1e-06},
        "unpriced-latest": {"alias_of": "unpriced", "input_cost_per_token": 5e-06},
        "ft:chat": CHAT_PRICES,
        "ft-latest": {"alias_of": "ft:chat"},
    }))  # fmt: skip
    assert set(version.models) == {"chat", "other", "ft:chat"}
    assert result.skipped_modes == {"embedding": 2}
    assert [str(note) for note in result.not_imported] == [
        "unpriced: no usable output_cost_per_token",
        "gone-latest: an alias of gone, which is no model of the map (LiteLLM drops it)",
        "chained: an alias of gone-latest, which is no model of the map (LiteLLM drops it)",
        "ft-latest: an alias of the fine-tune entry ft:chat: only a true base is derived from",
        "unpriced-latest: an alias of unpriced, which is not imported",
    ]
    assert result.entries == result.models + len(result.not_imported)
    assert unmapped_of(result, "unpriced-latest") == {
        "input_cost_per_token": "beside alias_of: LiteLLM serves this name at unpriced's prices"
    }


def test_a_name_an_aliases_list_claims_is_served_as_its_owner_whatever_its_alias_of_row():
    """LiteLLM takes the lists' claims first: an ``alias_of`` row of a claimed name is
    ignored, even one naming no model. A number in a list, or as ``alias_of``, names
    nothing (LiteLLM reads names as strings)."""
    result, version = imported(json.dumps({
        "a": {**CHAT_PRICES, "aliases": ["p", "q", 5]},
        "b": CHAT_PRICES,
        "p": {"alias_of": "gone"},
        "q": {"alias_of": "b", "input_cost_per_token": 1e-06},
        "n": {"alias_of": 7, "mode": "chat", "input_cost_per_token": 1e-06,
              "output_cost_per_token": 1e-06},
    }))  # fmt: skip
    assert set(version.models) == {"a", "b", "p", "q", "n"}
    assert {alias: version.models[alias].derived_from for alias in ("p", "q")} == {
        "p": "a", "q": "a"
    }  # fmt: skip
    assert version.models["n"].own_rates is not None
    assert result.not_imported == ()
    assert unmapped_of(result, "q") == {
        "input_cost_per_token": "beside alias_of: LiteLLM serves this name at a's prices"
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]", "a JSON object of models"), ("{", "not valid JSON"), ('{"m": 1}', "'m' is not")],
)
def test_a_file_that_is_not_a_litellm_price_map_is_one_clean_error(text, message):
    with pytest.raises(LitellmFormatError, match=message):
        convert(text)


# --- the command ----------------------------------------------------------------------------


def run_import(*options: str, source: Path = FIXTURE) -> int:
    return main(["pricebook", "import", "litellm", str(source), *options])


def test_a_command_whose_reader_goes_away_ends_its_report_without_a_traceback(tmp_path):
    """``... | head``: the report stops quietly; the exit code is the work's (the version
    is written)."""
    out = tmp_path / "books"
    command = [sys.executable, "-m", "rating_pipeline", "pricebook", "import", "litellm",
               str(FIXTURE), "--version", "v1", "--effective-from", EFFECTIVE_FROM, "--round",
               "--out", str(out)]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    err = child.stderr.read().decode()

    assert (child.wait(), err) == (EXIT_OK, "")
    assert (out / "v1.yaml").exists()


def test_import_command_writes_the_version_and_prints_the_report(tmp_path, capsys):
    out = tmp_path / "books"
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(out), "--round")  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert (code, stderr) == (EXIT_OK, "")
    written = out / "litellm-1.yaml"
    (version,) = load_pricebooks(out).versions
    assert version.source_file == str(written) and len(version.models) == 12
    lines = stdout.splitlines()
    assert lines[0] == (
        f"{written}: 12 models imported from {FIXTURE} (15 chat or responses entries; "
        "3 entries of other modes skipped); 3 models not imported, 2 rates rounded, "
        "24 prices not mapped"
    )
    assert sum(line.startswith("not imported: ") for line in lines) == 3
    assert sum(line.startswith("rounded: ") for line in lines) == 2
    assert sum(line.startswith("not mapped: ") for line in lines) == 24
    assert sum(line.startswith("note: ") for line in lines) == 4  # a fine-tune, 3 flat tiers
    assert 'skipped: 1 "one of: chat, embedding, completion,' in stdout


def test_import_command_without_round_exits_one_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "books"
    code = run_import("--version", "v", "--effective-from", EFFECTIVE_FROM, "--out", str(out))
    stdout, stderr = capsys.readouterr()
    assert code == EXIT_FAILURE and stdout == ""
    assert not out.exists()
    assert len(stderr.splitlines()) == 3 + 1  # three noisy prices and the hint
    assert "float noise" in stderr and "--round" in stderr.splitlines()[-1]


def test_import_command_never_overwrites_a_version_file(tmp_path, capsys):
    (tmp_path / "litellm-1.yaml").write_text("kept\n")
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    assert code == EXIT_FAILURE
    assert (tmp_path / "litellm-1.yaml").read_text() == "kept\n"
    assert "already exists" in capsys.readouterr().err


def test_import_command_into_an_out_path_that_is_a_file_is_one_clean_error(tmp_path, capsys):
    (tmp_path / "a-file").write_text("kept\n")
    code = run_import("--version", "v", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path / "a-file"), "--round")  # fmt: skip
    assert code == EXIT_FAILURE
    assert (tmp_path / "a-file").read_text() == "kept\n"
    assert "cannot write the version" in capsys.readouterr().err.splitlines()[-1]


def test_import_command_refuses_a_version_that_clashes_with_the_directory(tmp_path, capsys):
    """Rule 7 holds across the directory: a version written beside one with the same name
    or effective_from would stop every rating until someone removed it."""
    (tmp_path / "live.yaml").write_text(
        f'version: "litellm-1"\neffective_from: "{EFFECTIVE_FROM}"\ncurrency: USD\n'
        'models:\n  m: {input_per_mtok: "1", output_per_mtok: "2"}\n'
    )
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    stderr = capsys.readouterr().err
    assert code == EXIT_FAILURE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.yaml"]
    assert f"version 'litellm-1' is also declared in {tmp_path / 'live.yaml'}:1" in stderr
    assert f"is also the effective_from of {tmp_path / 'live.yaml'}:2" in stderr
    load_pricebooks(tmp_path)  # the directory still loads


def test_import_command_warns_of_the_models_the_version_before_it_prices_and_it_drops(
    tmp_path, capsys
):
    """From the new version's effective_from, a model only the version before it priced is
    an unknown model: its events go unpriced. Found by running the runbooks: importing
    into the live directory dropped the shipped models without a word."""
    (tmp_path / "live.yaml").write_text(
        'version: "live"\neffective_from: "2026-06-01T00:00:00Z"\ncurrency: USD\nmodels:\n'
        '  base-large: {input_per_mtok: "1", output_per_mtok: "2"}\n'
        '  gpt-5.4: {input_per_mtok: "1", output_per_mtok: "2"}\n'
        '  ft:acme:x: {derived_from: base-large, multiplier: "2"}\n'
    )
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == EXIT_OK
    assert err[-1] == (
        "warning: 2 models of version live are not in litellm-1: from "
        "2026-10-01T00:00:00+00:00 their events are unpriced: base-large, ft:acme:x"
    )


@pytest.mark.parametrize(("dropped", "tail"), [(10, ""), (12, ", and 2 more")])
def test_import_command_names_ten_dropped_models_and_counts_the_rest(
    tmp_path, capsys, dropped, tail
):
    """Found by a mutation pass: the only test dropped two models."""
    models = [f"old-{n:02}" for n in range(dropped)]
    (tmp_path / "live.yaml").write_text(
        'version: "live"\neffective_from: "2026-06-01T00:00:00Z"\ncurrency: USD\nmodels:\n'
        + "".join(f'  {m}: {{input_per_mtok: "1", output_per_mtok: "2"}}\n' for m in models)
    )
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == EXIT_OK
    assert err[-1].endswith(f"their events are unpriced: {', '.join(models[:10])}{tail}")


def test_import_command_before_every_version_of_the_directory_warns_of_no_dropped_model(
    tmp_path, capsys
):
    """No version precedes it, so none of its models go unpriced from its effective_from
    (the later version's models are that version's business). Found by a mutation pass."""
    (tmp_path / "later.yaml").write_text(
        'version: "later"\neffective_from: "2027-01-01T00:00:00Z"\ncurrency: USD\nmodels:\n'
        '  base-large: {input_per_mtok: "1", output_per_mtok: "2"}\n'
    )
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    assert code == EXIT_OK
    assert "warning:" not in capsys.readouterr().err


def test_import_command_reports_a_version_the_loader_rejects_and_writes_nothing(tmp_path, capsys):
    """Beside a version of the same instant (a rule on the directory, not the argument)."""
    assert run_import("--version", "v", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round") == EXIT_OK  # fmt: skip
    capsys.readouterr()
    code = run_import("--version", "w", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    assert code == EXIT_FAILURE and [p.name for p in tmp_path.iterdir()] == ["v.yaml"]
    stderr = capsys.readouterr().err
    assert "is also the effective_from of" in stderr
    assert stderr.splitlines()[-1] == "error: the converted version does not load; nothing written"


def test_import_command_that_imports_no_model_says_so_with_its_report(tmp_path, capsys):
    """Why nothing was imported (every model dropped, each with its reason) is what the
    user needs, not the loader's complaint about a file that was never written."""
    source = tmp_path / "prices.json"
    source.write_text('{"per-query/search": {"mode": "chat", "input_cost_per_query": 0.01}}')
    code = run_import("--version", "v", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path / "books"), source=source)  # fmt: skip
    stderr = capsys.readouterr().err
    assert code == EXIT_FAILURE and not (tmp_path / "books").exists()
    assert "not imported: per-query/search: no usable input_cost_per_token" in stderr
    assert "not mapped: per-query/search: input_cost_per_query" in stderr
    assert stderr.splitlines()[-1] == (
        "error: no model imported (see the lines above); nothing written"
    )


def test_import_command_rejects_a_version_name_that_is_no_file_name(tmp_path, capsys):
    code = run_import("--version", "../v", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    assert code == EXIT_FAILURE and list(tmp_path.iterdir()) == []
    assert "version" in capsys.readouterr().err


def test_import_of_the_same_source_is_byte_for_byte_the_same(tmp_path):
    source = json.loads(FIXTURE.read_text())
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(dict(reversed(list(source.items()))), indent=4))
    first, _ = imported()
    second, _ = imported(reordered.read_text())
    assert first.text.split("\nmodels:")[1] == second.text.split("\nmodels:")[1]  # sorted by id


def tiered(ranges: list[tuple[int, int, dict[str, float]]], **top: object) -> str:
    entry = {"mode": "chat", **top, "tiered_pricing": [
        {"range": [low, high], **prices} for low, high, prices in ranges
    ]}  # fmt: skip
    return json.dumps({"qwen-flash": entry})


def test_two_price_ranges_by_prompt_size_are_one_long_context_threshold():
    """LiteLLM bills a whole request at the range its prompt falls in (start < prompt <=
    end): two ranges split at N are the contract's threshold N and its long-context set."""
    text = tiered([
        (0, 256000, {"input_cost_per_token": 5e-08, "output_cost_per_token": 4e-07,
                     "cache_read_input_token_cost": 1e-08}),
        (256000, 1000000, {"input_cost_per_token": 2.5e-07, "output_cost_per_token": 2e-06}),
    ])  # fmt: skip
    result, version = imported(text)
    flash = rates(version, "qwen-flash")
    assert flash.long_context_above_tokens == 256_000
    assert flash.rate_set(STANDARD, STANDARD).rates == {  # type: ignore[union-attr]
        "input": Decimal("0.05"), "output": Decimal("0.4"), "cache_read": Decimal("0.01")
    }  # fmt: skip
    assert flash.rate_set(STANDARD, LONG).rates == {  # type: ignore[union-attr]
        "input": Decimal("0.25"), "output": Decimal("2")
    }  # fmt: skip
    assert unmapped_of(result, "qwen-flash") == {}


def test_price_ranges_the_contract_cannot_hold_leave_the_model_out_even_with_flat_prices():
    """Three ranges, or flat prices that differ from the range that prices the same prompts:
    importing the flat prices would bill those prompts at them, and dropping them would
    change a price silently."""
    three = tiered(
        [(0, 32000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
         (32000, 128000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06}),
         (128000, 256000, {"input_cost_per_token": 3e-07, "output_cost_per_token": 3e-06})],
        input_cost_per_token=1e-07, output_cost_per_token=1e-06,
    )  # fmt: skip
    differing = tiered(
        [(0, 100000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
         (100000, 200000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06})],
        input_cost_per_token=3e-07, output_cost_per_token=1e-06,
    )  # fmt: skip
    quoted = tiered(
        [(0, 100000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
         (100000, 200000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06})],
        input_cost_per_token="cheap", output_cost_per_token=1e-06,
    )  # fmt: skip
    differing_long = tiered(
        [(0, 100000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
         (100000, 200000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06})],
        input_cost_per_token=1e-07, output_cost_per_token=1e-06,
        input_cost_per_token_above_100k_tokens=9e-07,
    )  # fmt: skip
    for text, reason in (
        (three, "price ranges by prompt size the contract cannot hold (3 ranges)"),
        (differing, "input_cost_per_token differs from tiered_pricing[0]'s"),
        (quoted, "input_cost_per_token differs from tiered_pricing[0]'s"),
        (
            differing_long,
            "input_cost_per_token_above_100k_tokens differs from tiered_pricing[1]'s",
        ),
    ):
        result = convert(text)
        assert result.models == 0
        assert [str(note) for note in result.not_imported] == [f"qwen-flash: {reason}"]
        assert {note.reason for note in result.unmapped} == {f"model not imported: {reason}"}


def test_an_xai_model_priced_by_two_ranges_keeps_the_ranges_exclusive_threshold():
    """LiteLLM picks a range by start < prompt <= end for every provider, xAI included
    (tiered_pricing.select_tier_for_input): a prompt of exactly N tokens bills at the first
    range, so the threshold is N, not N - 1 (which is only for xAI's _above_Nk_tokens
    fields)."""
    text = tiered([
        (0, 128000, {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}),
        (128000, 1000000, {"input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06}),
    ], litellm_provider="xai")  # fmt: skip
    _, version = imported(text)
    assert rates(version, "qwen-flash").long_context_above_tokens == 128_000


def test_a_flat_price_beside_price_ranges_is_reported_and_left_unpriced():
    """A cache read, reasoning or tier price the ranges do not list: whether LiteLLM bills a
    ranged request at it depends on its code path, not on the map (its batch path reads the
    flat batch prices, its range path does not). Imported into the first range's set, it
    would bill some prompts at a price LiteLLM may not charge (docs/pricebooks.md: the import
    never changes a price silently): it is reported, the class left unpriced."""
    ranges = [
        (0, 128000, {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}),
        (128000, 1000000, {"input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06}),
    ]
    for name, token_class in (
        ("cache_read_input_token_cost", "cache_read"),
        ("output_cost_per_reasoning_token", "reasoning"),
        ("cache_read_input_token_cost_above_128k_tokens", "cache_read"),
    ):
        result, version = imported(tiered(ranges, **{name: 9e-06}))
        model = rates(version, "qwen-flash")
        for context in (STANDARD, LONG):
            rate_set = model.rate_set(STANDARD, context)
            assert rate_set is not None and rate_set.rate(token_class) is None, name
        reason = unmapped_of(result, "qwen-flash")[name]
        assert reason == "beside tiered_pricing, whose ranges alone are read: left unpriced"
    result, version = imported(tiered(ranges, input_cost_per_token_batches=5e-07))
    assert rates(version, "qwen-flash").rate_set("batch", STANDARD) is None
    assert "input_cost_per_token_batches" in unmapped_of(result, "qwen-flash")


def test_a_price_inside_a_range_is_reported_by_the_field_the_source_has():
    """The report names model, field and value (docs/pricebooks.md, What it reports): a
    price read from tiered_pricing[1] is named there, never by a field the file lacks
    (``input_cost_per_token_above_128k_tokens``), nor as the flat field beside it."""
    text = tiered([
        (0, 128000, {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}),
        (128000, 1000000, {"input_cost_per_token": 3e-06}),
    ])  # fmt: skip
    assert set(unmapped_of(convert(text), "qwen-flash")) == {
        "tiered_pricing[0].input_cost_per_token",
        "tiered_pricing[0].output_cost_per_token",
        "tiered_pricing[1].input_cost_per_token",
    }  # not imported: its long prompts have no complete set
    noisy = tiered([
        (0, 128000, {"input_cost_per_token": 1.0000000000000002e-06,
                     "output_cost_per_token": 2e-06}),
        (128000, 1000000, {"input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06}),
    ])  # fmt: skip
    assert [note.field for note in convert(noisy).rounded] == [
        "tiered_pricing[0].input_cost_per_token"
    ]


def test_a_tier_price_inside_a_price_range_is_reported_never_mapped():
    text = tiered([
        (0, 256000, {"input_cost_per_token": 5e-08, "output_cost_per_token": 4e-07,
                     "input_cost_per_token_batches": 2.5e-08,
                     "output_cost_per_token_batches": 2e-07}),
        (256000, 1000000, {"input_cost_per_token": 2.5e-07, "output_cost_per_token": 2e-06}),
    ])  # fmt: skip
    result, version = imported(text)
    assert rates(version, "qwen-flash").rate_set("batch", STANDARD) is None
    assert set(unmapped_of(result, "qwen-flash")) == {
        "tiered_pricing[0].input_cost_per_token_batches",
        "tiered_pricing[0].output_cost_per_token_batches",
    }


# --- exactness: no price changed silently ------------------------------------------------


def test_a_rate_of_exactly_six_places_is_imported_as_is_without_round():
    """Six places per million is what a rate holds: no float noise, nothing rounded."""
    result = convert(
        one_model('"input_cost_per_token": 1.234567e-06, "output_cost_per_token": 1e-06'),
        round_rates=False,
    )
    assert as_text(rates(load_version_text(result.text, "litellm-1.yaml"), "m")) == {
        "input": "1.234567",
        "output": "1",
    }
    assert result.rounded == () and result.unmapped == ()


def test_a_price_with_more_digits_than_a_float_holds_is_never_rounded_silently():
    """32 significant digits: beyond a default decimal context (28), so scaling it there
    would round it to 1 with no report. Here it is float noise like any other."""
    long = one_model(
        '"input_cost_per_token": 1.0000000000000000000000000000001e-06, '
        '"output_cost_per_token": 1e-06'
    )
    with pytest.raises(FloatNoiseError) as caught:
        convert(long, round_rates=False)
    assert caught.value.report_lines() == [
        "m: input_cost_per_token 1.0000000000000000000000000000001e-06 is "
        "1.0000000000000000000000000000001 per 1M tokens, 31 decimal places, more than the 6 "
        "a rate holds; --round would import 1"
    ]
    result, _ = imported(long)
    assert [note.field for note in result.rounded] == ["input_cost_per_token"]


def test_a_price_with_too_many_digits_to_scale_exactly_is_reported_not_dropped():
    digits = "1." + "0" * 88 + "1e-06"  # 90 significant digits: more than exact arithmetic's 80
    result, version = imported(
        one_model(f'"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, '
                  f'"cache_read_input_token_cost": {digits}')
    )  # fmt: skip
    assert as_text(rates(version, "m")) == {"input": "1", "output": "1"}
    assert unmapped_of(result, "m") == {
        "cache_read_input_token_cost": "too many digits to scale exactly"
    }


def test_a_rate_at_the_rate_limit_is_reported_and_the_rest_imported():
    """A rate must be below the rate limit, 10^12 per 1M tokens; the largest one below is
    imported, one at the limit is reported rather than failing the whole version."""
    result, version = imported(
        one_model('"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, '
                  '"cache_read_input_token_cost": 1e+06, '
                  '"cache_creation_input_token_cost": 9.99999999999999999e+05')
    )  # fmt: skip
    assert as_text(rates(version, "m")) == {
        "input": "1",
        "output": "1",
        "cache_write": "999999999999.999999",
    }
    assert unmapped_of(result, "m") == {
        "cache_read_input_token_cost": "not below 1000000000000 per 1M tokens"
    }


def test_a_price_written_as_a_json_string_is_reported_never_read_as_a_number():
    text = (
        '{"m": {"mode": "chat", "input_cost_per_token": "3e-06", "output_cost_per_token": '
        '1.5e-05}, "ok": {"mode": "chat", "input_cost_per_token": 1e-06, '
        '"output_cost_per_token": 1e-06}}'
    )
    result, version = imported(text)
    assert list(version.models) == ["ok"]
    assert [str(note) for note in result.not_imported] == ["m: no usable input_cost_per_token"]
    assert unmapped_of(result, "m")["input_cost_per_token"] == "not a number"


# --- what it reports (more) ---------------------------------------------------------------


def test_each_price_it_cannot_map_is_reported_by_what_it_is_priced_per():
    """``output_cost_per_image_token`` is priced per token (of image output, a class the
    contract does not know), not per image; a ``price`` field is reported like a ``cost``."""
    result, _ = imported(
        one_model('"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, '
                  '"output_cost_per_image_token": 4e-05, "output_cost_per_image": 0.04, '
                  '"search_price_per_query": 0.01')
    )  # fmt: skip
    assert unmapped_of(result, "m") == {
        "output_cost_per_image_token": (
            "a per-token price of a class, tier or threshold the contract does not know"
        ),
        "output_cost_per_image": "priced per image: the contract prices tokens only",
        "search_price_per_query": "priced per query: the contract prices tokens only",
    }


def test_a_model_id_with_a_control_character_is_not_imported_and_reported():
    """The loader refuses such an id: importing it would fail the whole version."""
    prices = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
    result, version = imported(json.dumps({"tab\tid": prices, "ok": prices}))
    assert list(version.models) == ["ok"]
    assert [str(note) for note in result.not_imported] == ["'tab\\tid': no usable model id"]


def test_every_report_line_is_one_printable_line_whatever_the_source_holds(tmp_path, capsys):
    """Ids, field names and modes come from the file: one with a line break would forge a
    line of the report, and a lone surrogate (valid JSON) would end the command after the
    version was written, its report lost. Each is shown quoted and escaped."""
    prices = '"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06'
    source = tmp_path / "map.json"
    source.write_text(
        '{"e": {"mode": "embedding\\udfff"}, '
        '"evil\\nrounded: m": {"mode": "chat", ' + prices + "}, "
        '"bad\\ud800": {"mode": "chat", ' + prices + "}, "
        '"m": {"mode": "chat", "x_cost\\nnot mapped: m": 1, ' + prices + "}, "
        '"n": {"mode": " chat", ' + prices + "}, "
        '"o": {"mode": "chat", "input_cost_per_token_above_\\r\\u001b[2Kx\\u0085y_tokens": 3e-06, '
        + prices
        + "}}"
    )

    code = run_import("--version", "v1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path / "books"), source=source)  # fmt: skip

    stdout, stderr = capsys.readouterr()
    assert (code, stderr) == (EXIT_OK, "")
    lines = stdout.splitlines()
    assert all(line.isprintable() for line in lines)
    # the summary, 3 not imported, 3 not mapped (o's 3 prices, left out), skipped
    assert len(lines) == 1 + 3 + 4 + 1, lines
    assert sum(line.startswith("not mapped: ") for line in lines) == 4
    assert 'skipped: 1 " chat", 1 "embedding\\udfff"' in lines
    assert sum(line.startswith("rounded: ") for line in lines) == 0


def test_a_model_id_with_quotes_and_backslashes_is_written_as_the_same_id():
    prices = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    model_id = 'acme/"quoted"\\model: #1'
    _, version = imported(json.dumps({model_id: prices}))
    assert as_text(rates(version, model_id)) == {"input": "1", "output": "2"}


def test_each_price_of_a_model_left_out_is_reported_once_with_its_own_reason():
    result = convert(
        one_model('"input_cost_per_token_above_200k_tokens": 2e-06, '
                  '"output_cost_per_token_above_200k_tokens": 4e-06, '
                  '"input_cost_per_token_batches": 5e-07')
    )  # fmt: skip
    assert result.models == 0
    assert [str(note) for note in result.not_imported] == [
        "m: no usable input_cost_per_token, output_cost_per_token"
    ]
    left_out = "model not imported: it has no usable input_cost_per_token, output_cost_per_token"
    assert sorted(str(note) for note in result.unmapped) == [
        "m: input_cost_per_token_above_200k_tokens 2e-06: " + left_out,
        "m: input_cost_per_token_batches 5e-07: batch rates lack output_cost_per_token_batches: "
        "a rate set needs input and output",
        "m: output_cost_per_token_above_200k_tokens 4e-06: " + left_out,
    ]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_price_is_reported_by_model_and_field_and_the_rest_imported(constant):
    """NaN and Infinity are no JSON numbers and no prices: each is reported where it is, a
    model's other fields and the other models are read as ever, nothing through a float.
    Refusing the whole file named neither model nor field, in a map of 3,000 models."""
    prices = '"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06'
    text = (
        '{"a": {"mode": "chat", "input_cost_per_token": ' + constant + ", "
        '"output_cost_per_token": 1e-06}, '
        '"b": {"mode": "chat", "max_tokens": ' + constant + ", " + prices + "}}"
    )

    result, version = imported(text)

    assert list(version.models) == ["b"]
    assert as_text(rates(version, "b")) == {"input": "1", "output": "2"}
    assert f"a: input_cost_per_token {constant}: not a finite number" in map(str, result.unmapped)


# --- price ranges (more) ------------------------------------------------------------------


def test_a_flat_price_equal_to_its_first_range_but_written_differently_is_the_same_price():
    text = tiered(
        [(0, 128000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
         (128000, 1000000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06})],
        input_cost_per_token=1e-07, output_cost_per_token=1e-06,
    )  # fmt: skip
    text = text.replace('"input_cost_per_token": 1e-07,', '"input_cost_per_token": 1.00e-07,', 1)
    assert text.index("1.00e-07") < text.index("tiered_pricing")  # the flat price
    result, version = imported(text)
    assert rates(version, "qwen-flash").long_context_above_tokens == 128_000
    assert result.not_imported == ()


# Stands in for 1e-999999999 in a test's JSON, which no Python float holds.
TINY = 987654321


@pytest.mark.parametrize(
    "bounds",
    [
        ((1000, 128000), (128000, 1000000)),
        ((0, 128000), (256000, 1000000)),
        ((0, 128500), (128500, 1000000)),
        ((0, TINY), (TINY, 3)),
        ((0, 1e31), (1e31, 2e31)),
        ((0, 128000), (128000, 1000)),
        ((False, 128000), (128000, 1000000)),
        ((0, 0), (0, 1000000)),
    ],
    ids=[
        "not-from-zero", "gap-between", "not-whole-thousands", "tiny-split",
        "split-past-decimal-precision", "second-range-inverted", "boolean-start", "zero-split",
    ],
)  # fmt: skip
def test_price_ranges_the_contract_cannot_read_as_one_threshold_leave_the_model_out(bounds):
    """Prompts outside both ranges would bill at the flat prices; a threshold is written in
    thousands (``_above_128k_tokens``), so a split at 128,500 would bill prompts of 128,001
    to 128,500 tokens at the long-context rates. A split of 1e-999999999 once underflowed to
    a threshold of 0, billing every prompt at the first range's prices, and 1e31 crashed
    the import (found by a review of pricebook input)."""
    (low, split), (again, high) = bounds
    text = tiered(
        [(low, split, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
         (again, high, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06})],
        input_cost_per_token=1e-07, output_cost_per_token=1e-06,
    ).replace(str(TINY), "1e-999999999")  # fmt: skip
    result = convert(text)
    assert result.models == 0
    assert [str(note) for note in result.not_imported] == [
        "qwen-flash: price ranges by prompt size the contract cannot hold (2 ranges)"
    ]


def test_every_price_of_a_model_priced_by_ranges_it_cannot_hold_is_reported():
    """The ranges themselves too, with or without flat prices beside them."""
    ranges = [
        (0, 32000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
        (32000, 128000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06}),
        (128000, 256000, {"input_cost_per_token": 3e-07, "output_cost_per_token": 3e-06}),
    ]
    with_flat = convert(tiered(ranges, input_cost_per_token=1e-07, output_cost_per_token=1e-06))
    assert set(unmapped_of(with_flat, "qwen-flash")) == {
        "input_cost_per_token",
        "output_cost_per_token",
        "tiered_pricing",
    }
    only_ranges = convert(tiered(ranges))
    why = "price ranges by prompt size the contract cannot hold (3 ranges)"
    assert [str(note) for note in only_ranges.not_imported] == [f"qwen-flash: {why}"]
    assert [str(note) for note in only_ranges.unmapped] == [
        'qwen-flash: tiered_pricing [{"range": [0, 32000], "input_cost_per_token": 1e-07, '
        '"output_cost_per_token": 1e-06}, {"range": [32000, 128000], "input_cost_per_token": '
        '2e-07, "output_cost_per_token": 2e-06}, {"range": [128000, 256000], '
        '"input_cost_per_token": 3e-07, "output_cost_per_token": 3e-06}]: '
        f"model not imported: {why}"
    ]


def test_an_older_cache_hit_name_inside_a_price_range_is_reported_as_not_read():
    """Only a top-level older name is read as the newer one: inside a range it is left out,
    and its report must not say it was read instead."""
    text = tiered([
        (0, 200000, {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                     "input_cost_per_token_cache_hit": 1e-07}),
        (200000, 1000000, {"input_cost_per_token": 2e-06, "output_cost_per_token": 4e-06}),
    ])  # fmt: skip
    result, version = imported(text)
    standard = rates(version, "qwen-flash").rate_set(STANDARD, STANDARD)
    assert standard is not None and standard.rate("cache_read") is None
    reason = unmapped_of(result, "qwen-flash")["tiered_pricing[0].input_cost_per_token_cache_hit"]
    assert "read instead" not in reason and "not read inside a price range" in reason


def test_a_model_left_out_for_its_price_ranges_still_reports_each_other_price():
    ranges = [
        (0, 32000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
        (32000, 128000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06}),
        (128000, 256000, {"input_cost_per_token": 3e-07, "output_cost_per_token": 3e-06}),
    ]
    result = convert(
        tiered(ranges, input_cost_per_second=0.0001, search_context_cost_per_query=0.01)
    )
    assert unmapped_of(result, "qwen-flash") == {
        "tiered_pricing": (
            "model not imported: price ranges by prompt size the contract cannot hold (3 ranges)"
        ),
        "input_cost_per_second": "priced per second: the contract prices tokens only",
        "search_context_cost_per_query": "priced per query: the contract prices tokens only",
    }


def test_a_long_context_price_inside_a_price_range_is_reported_never_mapped():
    text = tiered([
        (0, 256000, {"input_cost_per_token": 5e-08, "output_cost_per_token": 4e-07,
                     "input_cost_per_token_above_128k_tokens": 1e-07}),
        (256000, 1000000, {"input_cost_per_token": 2.5e-07, "output_cost_per_token": 2e-06,
                           "cache_read_input_token_cost_above_512k_tokens": 1e-07}),
    ])  # fmt: skip
    result, version = imported(text)
    flash = rates(version, "qwen-flash")
    assert flash.long_context_above_tokens == 256_000
    assert as_text(flash, STANDARD, LONG) == {"input": "0.25", "output": "2"}
    assert set(unmapped_of(result, "qwen-flash")) == {
        "tiered_pricing[0].input_cost_per_token_above_128k_tokens",
        "tiered_pricing[1].cache_read_input_token_cost_above_512k_tokens",
    }


# --- the command (more) -----------------------------------------------------------------


def test_import_command_reports_left_out_then_rounded_then_unmapped_then_noted_then_skipped(
    tmp_path, capsys
):
    code = run_import("--version", "litellm-1", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path), "--round")  # fmt: skip
    lines = capsys.readouterr().out.splitlines()[1:]
    assert code == EXIT_OK
    kinds = [line.split(": ", 1)[0] for line in lines]
    order = ["not imported", "rounded", "not mapped", "note", "skipped"]
    assert kinds == sorted(kinds, key=order.index)
    assert set(kinds) == set(order)


def test_import_command_counts_every_skipped_entry_by_its_mode(tmp_path, capsys):
    source = tmp_path / "prices.json"
    source.write_text(json.dumps({
        "chat": {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
        "embed-a": {"mode": "embedding", "input_cost_per_token": 1e-08},
        "embed-b": {"mode": "embedding", "input_cost_per_token": 1e-08},
        "modeless": {"input_cost_per_token": 1e-06},
    }))  # fmt: skip
    code = run_import("--version", "v", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path / "books"), source=source)  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert "(1 chat or responses entries; 3 entries of other modes skipped)" in lines[0]
    assert lines[-1] == "skipped: 1 (no mode), 2 embedding"


def test_a_mode_with_a_comma_is_counted_quoted_so_the_skipped_line_reads_one_way():
    """LiteLLM's ``sample_spec`` documents the field with a mode of "one of: chat, ...": a
    count must not read as many modes."""
    result = convert(json.dumps({
        "chat": CHAT_PRICES,
        "sample_spec": {"mode": "one of: chat, embedding", "input_cost_per_token": 0},
    }))  # fmt: skip
    assert result.report_lines()[-1] == 'skipped: 1 "one of: chat, embedding"'


def test_import_command_refuses_a_version_that_would_write_outside_the_directory(tmp_path, capsys):
    out = tmp_path / "books"
    out.mkdir()
    code = run_import("--version", "v/../../escaped", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(out), "--round")  # fmt: skip
    assert code == EXIT_FAILURE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["books"] and not any(out.iterdir())
    assert "must be a plain file name" in capsys.readouterr().err


def test_import_command_reports_a_file_that_is_not_utf8_in_one_line(tmp_path, capsys):
    source = tmp_path / "prices.json"
    source.write_bytes(b'{"caf\xe9": {"mode": "chat"}}')
    code = run_import("--version", "v", "--effective-from", EFFECTIVE_FROM,
                      "--out", str(tmp_path / "books"), source=source)  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert (code, stdout) == (EXIT_FAILURE, "")
    (line,) = stderr.splitlines()
    assert line.startswith(f"error: cannot read {source}: ")


def test_a_model_id_longer_than_an_event_can_carry_is_not_imported_and_reported():
    """The loader refuses an id no valid event can carry (over MAX_ID_LENGTH characters)."""
    prices = {"mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
    longest, too_long = "m" * MAX_ID_LENGTH, "m" * (MAX_ID_LENGTH + 1)
    result, version = imported(json.dumps({longest: prices, too_long: prices}))
    assert list(version.models) == [longest]
    assert [str(note) for note in result.not_imported] == [f"{too_long}: no usable model id"]


def test_a_provider_that_is_no_text_is_a_format_error_not_a_crash():
    """Found by a review of the importer: a list where LiteLLM writes a provider's name
    failed with a bare TypeError."""
    text = json.dumps(
        {"m": {"mode": "chat", "litellm_provider": ["xai"], "input_cost_per_token": 1e-06,
               "output_cost_per_token": 2e-06, "input_cost_per_token_above_128k_tokens": 2e-06,
               "output_cost_per_token_above_128k_tokens": 4e-06}}
    )  # fmt: skip
    result = convert(text)
    assert result.models == 1  # not xai's inclusive threshold: a provider is a name


def test_a_dangling_link_at_the_output_path_is_an_existing_file(tmp_path, capsys):
    """Found by a review of the importer: exists() is false for a link to nothing, and the
    exclusive open then failed with a FileExistsError traceback."""
    out = tmp_path / "pricebooks"
    out.mkdir()
    (out / "v3.yaml").symlink_to(tmp_path / "gone.yaml")
    source = tmp_path / "map.json"
    source.write_text(FIXTURE.read_text())
    command = ["pricebook", "import", "litellm", str(source), "--version", "v3",
               "--effective-from", EFFECTIVE_FROM, "--round", "--out", str(out)]  # fmt: skip
    assert main(command) == EXIT_FAILURE
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "already exists" in line


def test_a_second_price_range_that_holds_no_prompt_is_no_long_context_set() -> None:
    """Ranges [0, N] and [N, N]: LiteLLM bills no prompt at the second's prices (start <
    prompt <= end holds for none); read as a threshold, every prompt above N would bill at
    prices LiteLLM never charges. The model is left out instead."""
    text = tiered([
        (0, 200000, {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-06}),
        (200000, 200000, {"input_cost_per_token": 2e-07, "output_cost_per_token": 2e-06}),
    ])  # fmt: skip
    result = convert(text)
    assert result.models == 0
    reason = "price ranges by prompt size the contract cannot hold (2 ranges)"
    assert [str(note) for note in result.not_imported] == [f"qwen-flash: {reason}"]


def test_a_model_free_in_every_price_is_imported_free() -> None:
    """Only a positive price the contract cannot hold makes zero token prices a reason to
    leave a model out: left out, a free model's usage would go unpriced."""
    text = one_model(
        '"input_cost_per_token": 0, "output_cost_per_token": 0, "output_cost_per_image": 0'
    )
    assert (convert(text).models, convert(text).not_imported) == (1, ())
    _, version = imported(text)
    standard = rates(version, "m").rate_set(STANDARD, STANDARD)
    assert standard is not None
    assert dict(standard.rates) == {"input": Decimal(0), "output": Decimal(0)}
