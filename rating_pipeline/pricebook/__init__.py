"""Versioned YAML pricebooks (contract section 4)."""

from rating_pipeline.pricebook.model import (
    ModelEntry,
    NoPricebookForWindow,
    Pricebooks,
    PricebookVersion,
    Rate,
    is_derivation_base,
    is_fine_tune,
)

__all__ = [
    "ModelEntry",
    "NoPricebookForWindow",
    "PricebookVersion",
    "Pricebooks",
    "Rate",
    "is_derivation_base",
    "is_fine_tune",
]
