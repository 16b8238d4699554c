"""Pricebook versions as frozen data, and the one predicate for a derivation base."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.windows import Window

FINE_TUNE_PREFIX = "ft:"


def is_fine_tune(model_id: str) -> bool:
    """A fine-tune is a model id that starts with ``ft:``."""
    return model_id.startswith(FINE_TUNE_PREFIX)


@dataclass(frozen=True)
class Rate:
    """USD per 1,000,000 tokens, exact, at most RATE_PLACES places."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal


@dataclass(frozen=True)
class ModelEntry:
    """One model of a version: either ``own_rate``, or ``derived_from`` with ``multiplier``."""

    model_id: str
    line: int
    own_rate: Rate | None = None
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
    return entry is not None and entry.own_rate is not None


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
