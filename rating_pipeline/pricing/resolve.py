"""Rate resolution for one (model, distinct base_models seen) in one version (contract 5.1,
5.2), and the long-context thresholds events are classified by before they are summed
(5.3).

The unpriced and ambiguous details are part of the output (they land in
``rating_exception.detail``), so their wording is fixed here and in the oracle alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from rating_pipeline.pricebook.model import (
    ModelRates,
    PricebookVersion,
    is_derivation_base,
    is_fine_tune,
)
from rating_pipeline.records import AMBIGUOUS_BASE, RATE_DECLARED, RATE_EVENT, RATE_OWN, UNPRICED


@dataclass(frozen=True)
class Priced:
    """The rates that price a model, with how they were obtained."""

    rate_source: str
    rates: ModelRates
    derivation_base: str | None = None
    multiplier: Decimal | None = None


@dataclass(frozen=True)
class Excluded:
    """Usage that cannot bill: ``reason`` is UNPRICED or AMBIGUOUS_BASE."""

    reason: str
    detail: str


def describe_bases(bases: frozenset[str | None]) -> str:
    """The distinct base_model values as a JSON list, sorted, null last."""
    named = sorted(b for b in bases if b is not None)
    return json.dumps(named + ([None] if None in bases else []), ensure_ascii=False)


def resolve(
    version: PricebookVersion, model_id: str, bases: frozenset[str | None]
) -> Priced | Excluded:
    """Price ``model_id`` whose valid events in one rollup carried ``bases``.

    1. listed with own rates: its rate sets (bases ignored);
    2. listed ``derived_from: B``: every rate of B's sets times the multiplier, B's
       threshold (bases ignored);
    3. an unlisted fine-tune whose events all carry one true base ``b``, in a version with a
       ``fine_tune_multiplier``: b's rate sets times it; more than one distinct base (null
       counts) excludes the whole rollup as ambiguous;
    4. anything else is unpriced, with the reason.
    """
    entry = version.models.get(model_id)
    if entry is not None and entry.own_rates is not None:
        return Priced(RATE_OWN, entry.own_rates)
    if entry is not None and entry.derived_from is not None and entry.multiplier is not None:
        base_rates = version.models[entry.derived_from].own_rates
        assert base_rates is not None  # the loader admits only true bases (rule 5)
        return Priced(
            RATE_DECLARED,
            base_rates.derived(entry.multiplier),
            entry.derived_from,
            entry.multiplier,
        )
    if not is_fine_tune(model_id):
        return Excluded(UNPRICED, f"unknown model: not in pricebook {version.version}")
    if version.fine_tune_multiplier is None:
        return Excluded(
            UNPRICED,
            f"fine-tune not in pricebook {version.version}, which has no fine_tune_multiplier",
        )
    if len(bases) != 1:
        return Excluded(AMBIGUOUS_BASE, f"distinct base_model values: {describe_bases(bases)}")
    (base,) = bases
    if base is None:
        return Excluded(UNPRICED, "fine-tune without a base: its events carry no base_model")
    if not is_derivation_base(version, base):
        return Excluded(UNPRICED, _not_a_true_base(version, base))
    base_rates = version.models[base].own_rates
    assert base_rates is not None  # is_derivation_base
    return Priced(
        RATE_EVENT,
        base_rates.derived(version.fine_tune_multiplier),
        base,
        version.fine_tune_multiplier,
    )


def _not_a_true_base(version: PricebookVersion, base: str) -> str:
    quoted = json.dumps(base, ensure_ascii=False)
    if is_fine_tune(base):
        return f"base {quoted} is a fine-tune: one hop only, a fine-tune cannot be derived from"
    if base in version.models:
        return f"base {quoted} is itself derived in pricebook {version.version}, not a true base"
    return f"base {quoted} is not in pricebook {version.version}"


@dataclass(frozen=True)
class ContextThresholds:
    """The long-context threshold of every rate schedule an event can resolve to, before
    its rollup is known (contract 5.3): ``listed`` by model id, for every listed model (None:
    no threshold); ``event_bases`` by base, for unlisted fine-tunes priced from their
    event's base (path 3), present only when the version has a ``fine_tune_multiplier``.
    Events whose rollup turns out unpriced or ambiguous are classified all the same: they
    bill nothing, and their exception rows are split by the same tiers."""

    listed: dict[str, int | None]
    event_bases: dict[str, int]


def context_thresholds(version: PricebookVersion) -> ContextThresholds:
    """Each listed model's threshold as ``resolve`` would price it, and each true base's."""
    listed: dict[str, int | None] = {}
    for model_id, entry in version.models.items():
        rates = entry.own_rates
        if rates is None and entry.derived_from is not None:
            rates = version.models[entry.derived_from].own_rates
        listed[model_id] = None if rates is None else rates.long_context_above_tokens
    event_bases: dict[str, int] = {}
    if version.fine_tune_multiplier is not None:
        for model_id, entry in version.models.items():
            threshold = entry.own_rates and entry.own_rates.long_context_above_tokens
            if is_derivation_base(version, model_id) and threshold:
                event_bases[model_id] = threshold
    return ContextThresholds(listed, event_bases)
