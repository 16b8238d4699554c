"""Pricebook versions as frozen data, and the one predicate for a derivation base."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.money import derive_rate
from rating_pipeline.windows import Window

FINE_TUNE_PREFIX = "ft:"


def is_fine_tune(model_id: str) -> bool:
    """A fine-tune is a model id that starts with ``ft:``."""
    return model_id.startswith(FINE_TUNE_PREFIX)


TOKEN_CLASSES = (
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "reasoning",
    "audio_input",
    "audio_output",
    "image_input",
)
REQUIRED_CLASSES = ("input", "output")
SERVICE_TIERS = ("standard", "batch", "priority", "flex")
STANDARD = "standard"  # the standard service tier and the standard context tier
LONG = "long"
CONTEXT_TIERS = (STANDARD, LONG)


@dataclass(frozen=True)
class RateSet:
    """USD per 1,000,000 tokens per token class it prices; input and output always.

    Each rate is exact, with at most RATE_PLACES places. A class absent from ``rates``
    has no rate here: it is never priced at another class's, tier's or context's rate.
    """

    rates: Mapping[str, Decimal]

    def rate(self, token_class: str) -> Decimal | None:
        """The class's rate, or None when this set does not price it."""
        return self.rates.get(token_class)


@dataclass(frozen=True)
class ModelRates:
    """A model's rate sets by (service tier, context tier); (STANDARD, STANDARD) always present.

    A (tier, LONG) set exists only with ``long_context_above_tokens``: it prices a request
    whose prompt size is strictly above that threshold, wholly.
    """

    sets: Mapping[tuple[str, str], RateSet]
    long_context_above_tokens: int | None = None

    def rate_set(self, service_tier: str, context_tier: str) -> RateSet | None:
        """The set for that tier and context, or None when the model lists none."""
        return self.sets.get((service_tier, context_tier))

    def derived(self, multiplier: Decimal) -> ModelRates:
        """Every rate of every set times ``multiplier``, each rounded by ``derive_rate``
        (half-even, RATE_PLACES places); the same sets, classes and threshold."""
        sets = {key: _derived_set(rates, multiplier) for key, rates in self.sets.items()}
        return ModelRates(MappingProxyType(sets), self.long_context_above_tokens)


def _derived_set(rates: RateSet, multiplier: Decimal) -> RateSet:
    derived = {cls: derive_rate(rate, multiplier) for cls, rate in rates.rates.items()}
    return RateSet(MappingProxyType(derived))


@dataclass(frozen=True)
class ModelEntry:
    """One model of a version: either ``own_rates``, or ``derived_from`` with ``multiplier``."""

    model_id: str
    line: int
    own_rates: ModelRates | None = None
    derived_from: str | None = None
    multiplier: Decimal | None = None


@dataclass(frozen=True)
class PricebookVersion:
    """One validated version file. ``sha256`` is of the file's bytes."""

    version: str
    effective_from: datetime
    currency: str
    models: Mapping[str, ModelEntry]
    source_file: str
    sha256: str
    fine_tune_multiplier: Decimal | None = None


def is_derivation_base(version: PricebookVersion, model_id: str | None) -> bool:
    """True base: listed in ``version`` with its own rates, and not a fine-tune.

    The only thing that may be derived from, by a declared entry (rule 5) or by an
    event's base_model (resolution path 3). Every path asks this one function.
    """
    if model_id is None or is_fine_tune(model_id):
        return False
    entry = version.models.get(model_id)
    return entry is not None and entry.own_rates is not None


class NoPricebookForWindow(RatingPipelineError, LookupError):
    """A window starts before the first pricebook version: an error, never a zero price."""


@dataclass(frozen=True)
class Pricebooks:
    """All versions, ordered by ``effective_from``; each window is priced by exactly one."""

    versions: tuple[PricebookVersion, ...]

    def version_for(self, window: Window) -> PricebookVersion:
        """The version with the latest ``effective_from`` at or before the window's start."""
        chosen: PricebookVersion | None = None
        for version in self.versions:
            if version.effective_from <= window.start:
                chosen = version
            else:
                break
        if chosen is None:
            first = self.versions[0].effective_from.isoformat() if self.versions else "none"
            raise NoPricebookForWindow(
                f"no pricebook version covers window {window}: the first takes effect at {first}"
            )
        return chosen
