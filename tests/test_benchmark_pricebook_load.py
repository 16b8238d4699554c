"""benchmarks/pricebook_load.py: the generated LiteLLM-sized version validates, every set in it.

It never asserts a time: it exists so that the measurement cannot rot.
"""

from __future__ import annotations

from benchmarks.pricebook_load import generated_version, main
from rating_pipeline.pricebook.loader import load_version_text
from rating_pipeline.pricebook.model import CONTEXT_TIERS, SERVICE_TIERS, TOKEN_CLASSES


def test_generated_version_prices_every_class_in_every_set_and_validates():
    version = load_version_text(generated_version(20), "generated.yaml")
    assert len(version.models) == 20
    own = version.models["model-0"].own_rates
    assert own is not None and own.long_context_above_tokens == 200000
    assert set(own.sets) == {(tier, context) for tier in SERVICE_TIERS for context in CONTEXT_TIERS}
    assert all(set(rate_set.rates) == set(TOKEN_CLASSES) for rate_set in own.sets.values())
    assert version.models["ft:org-9:tuned"].derived_from == "model-8"


def test_the_measurement_runs(capsys):
    assert main(["--models", "10", "--repeat", "1"]) == 0
    assert "validated 10 models in" in capsys.readouterr().out
