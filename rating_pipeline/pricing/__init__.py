"""Pricing of one window's usage (contract sections 5 and 6), pure and database-free."""

from rating_pipeline.pricing.rate import event_problems, group_events, price_window
from rating_pipeline.pricing.resolve import Excluded, Priced, resolve

__all__ = ["Excluded", "Priced", "event_problems", "group_events", "price_window", "resolve"]
