"""The dumb, frozen records of rating: events in, rollups and exceptions out, and the
names the output uses (rate sources, reasons, problems).

These hold data only. The warehouse reads its rows back as them, and the reference oracle
(``tests/oracle.py``) speaks them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# rate_source values (contract 5.1)
RATE_OWN = "own"
RATE_DECLARED = "declared"
RATE_EVENT = "event"

# rating_exception reasons (contract 6)
UNPRICED = "unpriced"
AMBIGUOUS_BASE = "ambiguous_base"
INVALID_EVENT = "invalid_event"
REASONS = (UNPRICED, AMBIGUOUS_BASE, INVALID_EVENT)

# What makes an event invalid, each with the bit the SQL extraction reports it by.
BLANK_AUTH_ID = "blank auth_id"
BLANK_MODEL_ID = "blank model_id"
NEGATIVE_INPUT_TOKENS = "negative input_tokens"
NEGATIVE_OUTPUT_TOKENS = "negative output_tokens"
PROBLEM_BITS: dict[int, str] = {
    1: BLANK_AUTH_ID,
    2: BLANK_MODEL_ID,
    4: NEGATIVE_INPUT_TOKENS,
    8: NEGATIVE_OUTPUT_TOKENS,
}
# An id is blank when nothing but these characters remain (the SQL uses the same set).
BLANK_CHARACTERS = " \t\n\r\f\v"


@dataclass(frozen=True)
class BillingEvent:
    """One row of ``billing_event``."""

    event_id: str
    auth_id: str
    model_id: str
    base_model: str | None
    input_tokens: int
    output_tokens: int
    occurred_at: datetime
    ingested_at: datetime | None = None


@dataclass(frozen=True)
class RatedRollup:
    """One billable row of ``rated_usage``, its rate frozen on it."""

    window_start: datetime
    window_end: datetime
    auth_id: str
    model_id: str
    event_count: int
    input_tokens: int
    output_tokens: int
    rate_source: str
    derivation_base: str | None
    multiplier: Decimal | None
    input_rate_per_mtok: Decimal
    output_rate_per_mtok: Decimal
    cost_usd: Decimal
    pricebook_version: str
    pricebook_sha256: str


@dataclass(frozen=True)
class RatingException:
    """One row of ``rating_exception``: usage that did not bill, and why."""

    window_start: datetime
    window_end: datetime
    auth_id: str
    model_id: str
    reason: str
    detail: str
    event_count: int
    input_tokens: int
    output_tokens: int
    pricebook_version: str
