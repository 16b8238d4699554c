"""Small builders for pricebook versions and events, for tests that do not exercise the loader."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from rating_pipeline.pricebook.model import (
    LONG,
    STANDARD,
    TOKEN_CLASSES,
    ModelEntry,
    ModelRates,
    PricebookVersion,
    RateSet,
)

WINDOW_START = datetime(2026, 6, 15, 10, tzinfo=UTC)
_event_ids = itertools.count(1)


@dataclass(frozen=True)
class BillingEvent:
    """One row of ``billing_event`` (contract 3), as a test writes it: classes not given are 0."""

    event_id: str
    auth_id: str
    model_id: str
    base_model: str | None
    input_tokens: int
    output_tokens: int
    occurred_at: datetime
    ingested_at: datetime | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    service_tier: str | None = None

    def tokens(self) -> dict[str, int]:
        """Every token class's count, in TOKEN_CLASSES order."""
        return {c: getattr(self, f"{c}_tokens") for c in TOKEN_CLASSES}


@dataclass(frozen=True)
class Own:
    """Own rates as a pricebook writes them: token class -> rate text, tiers, long context."""

    rates: dict[str, str]
    tiers: dict[str, Own] = field(default_factory=dict)
    long_context: Own | None = None
    long_context_above_tokens: int | None = None


def own(
    input_rate: str,
    output_rate: str,
    *,
    long_context: Own | None = None,
    long_context_above_tokens: int | None = None,
    batch: Own | None = None,
    priority: Own | None = None,
    flex: Own | None = None,
    by_class: Mapping[str, str] | None = None,
    **classes: str,
) -> Own:
    """Own rates; ``classes`` by token class (``cache_read="0.25"``), tiers and long context
    as further ``own(...)`` (a tier's own ``long_context``; the threshold on the model's).
    ``by_class`` holds classes named at run time: ``**`` of a ``dict[str, str]`` would also
    fill, for mypy, the tier and long-context parameters."""
    tiers = {"batch": batch, "priority": priority, "flex": flex}
    return Own(
        rates={"input": input_rate, "output": output_rate, **(by_class or {}), **classes},
        tiers={tier: rates for tier, rates in tiers.items() if rates is not None},
        long_context=long_context,
        long_context_above_tokens=long_context_above_tokens,
    )


def derived(base: str, multiplier: str) -> dict[str, str]:
    return {"derived_from": base, "multiplier": multiplier}


def model_rates(spec: Own) -> ModelRates:
    """``spec`` as the loader would build it, unvalidated."""
    sets = {}
    for tier, tier_spec in {STANDARD: spec, **spec.tiers}.items():
        sets[(tier, STANDARD)] = _rate_set(tier_spec)
        if tier_spec.long_context is not None:
            sets[(tier, LONG)] = _rate_set(tier_spec.long_context)
    return ModelRates(MappingProxyType(sets), spec.long_context_above_tokens)


def _rate_set(spec: Own) -> RateSet:
    return RateSet(MappingProxyType({cls: Decimal(rate) for cls, rate in spec.rates.items()}))


def schedule(sets: dict[tuple[str, str], dict[str, str]], above: int | None = None) -> ModelRates:
    """Own rates straight from ``{(service tier, context tier): {token class: rate text}}``
    (the shape property tests draw)."""
    return ModelRates(
        MappingProxyType(
            {
                key: RateSet(MappingProxyType({c: Decimal(rate) for c, rate in rates.items()}))
                for key, rates in sets.items()
            }
        ),
        above,
    )


def make_version(
    models: Mapping[str, Own | ModelRates | Mapping[str, str]],
    *,
    version: str = "2026-06-01",
    effective_from: datetime = datetime(2026, 6, 1, tzinfo=UTC),
    fine_tune_multiplier: str | None = None,
) -> PricebookVersion:
    """A version from ``{model: own(...) | derived(base, multiplier)}``; no validation."""
    entries = {}
    for line, (model_id, spec) in enumerate(models.items(), start=1):
        if isinstance(spec, ModelRates):
            entries[model_id] = ModelEntry(model_id, line, own_rates=spec)
        elif isinstance(spec, Own):
            entries[model_id] = ModelEntry(model_id, line, own_rates=model_rates(spec))
        else:
            entries[model_id] = ModelEntry(
                model_id,
                line,
                derived_from=spec["derived_from"],
                multiplier=Decimal(spec["multiplier"]),
            )
    return PricebookVersion(
        version=version,
        effective_from=effective_from,
        currency="USD",
        models=MappingProxyType(entries),
        source_file=f"{version}.yaml",
        # Of everything the version holds, as a file's sha256 is of all it says.
        sha256=hashlib.sha256(
            repr((version, effective_from, sorted(models.items()), fine_tune_multiplier)).encode()
        ).hexdigest(),
        fine_tune_multiplier=None
        if fine_tune_multiplier is None
        else Decimal(fine_tune_multiplier),
    )


def make_event(
    auth_id: str = "org-1",
    model_id: str = "base-large",
    base_model: str | None = None,
    input_tokens: int = 1000,
    output_tokens: int = 100,
    *,
    occurred_at: datetime | None = None,
    minutes: int = 5,
    event_id: str | None = None,
) -> BillingEvent:
    """An event in the 2026-06-15 10:00 window unless ``occurred_at`` says otherwise."""
    return BillingEvent(
        event_id=event_id or f"ev-{next(_event_ids)}",
        auth_id=auth_id,
        model_id=model_id,
        base_model=base_model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        occurred_at=occurred_at or WINDOW_START + timedelta(minutes=minutes),
        ingested_at=None,
    )


def with_tokens(event: BillingEvent, /, **counts: int) -> BillingEvent:
    """``event`` with these token counts (``cache_read_tokens=5``), for classes named at run
    time: ``replace(event, **counts)`` that mypy accepts once, here."""
    # mypy checks ``**`` of a dict[str, int] against every field, str ones too; only *_tokens.
    return replace(event, **counts)  # type: ignore[arg-type]
