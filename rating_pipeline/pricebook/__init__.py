"""Versioned YAML pricebooks (contract section 4)."""

from rating_pipeline.pricebook.model import (
    CONTEXT_TIERS,
    LONG,
    SERVICE_TIERS,
    STANDARD,
    TOKEN_CLASSES,
    ModelEntry,
    ModelRates,
    NoPricebookForWindow,
    Pricebooks,
    PricebookVersion,
    RateSet,
    is_derivation_base,
    is_fine_tune,
)

__all__ = [
    "CONTEXT_TIERS",
    "LONG",
    "SERVICE_TIERS",
    "STANDARD",
    "TOKEN_CLASSES",
    "ModelEntry",
    "ModelRates",
    "NoPricebookForWindow",
    "PricebookVersion",
    "Pricebooks",
    "RateSet",
    "is_derivation_base",
    "is_fine_tune",
]
