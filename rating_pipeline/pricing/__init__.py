"""Pricing rules (contract section 5.1 and 5.2): resolving a model, and the bases its
events name, to the rates that price it, or to the reason it cannot bill. Pure and
database-free; the warehouse applies the answers in SQL."""

from rating_pipeline.pricing.resolve import (
    ContextThresholds,
    Excluded,
    Priced,
    context_thresholds,
    resolve,
)

__all__ = ["ContextThresholds", "Excluded", "Priced", "context_thresholds", "resolve"]
