"""The dumb, frozen records of rating: rollups and exceptions out, and the names the
output uses (rate sources, reasons, problems).

These hold data only. The warehouse reads its rows back as them, and the reference oracle
(``tests/oracle.py``) speaks them too. Events in are summed in SQL, never read as records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rating_pipeline.pricebook.model import STANDARD, TOKEN_CLASSES

# rate_source values (contract 5.1)
RATE_OWN = "own"
RATE_DECLARED = "declared"
RATE_EVENT = "event"

# rating_exception reasons (contract 6)
UNPRICED = "unpriced"
AMBIGUOUS_BASE = "ambiguous_base"
INVALID_EVENT = "invalid_event"
REASONS = (UNPRICED, AMBIGUOUS_BASE, INVALID_EVENT)

# What makes an event invalid (contract 6), in the order a detail names them. The SQL
# reads a window's problems as bits: the name at index i is bit 1 << i.
BLANK_AUTH_ID = "blank auth_id"
BLANK_MODEL_ID = "blank model_id"
PROBLEMS = (
    BLANK_AUTH_ID,
    BLANK_MODEL_ID,
    "auth_id longer than 256 characters",
    "model_id longer than 256 characters",
    "base_model longer than 256 characters",
    "unknown service_tier",
    *(f"negative {token_class}_tokens" for token_class in TOKEN_CLASSES),
    # Only an upstream table that allows nulls (contract 3) has these; never read as 0.
    *(f"null {token_class}_tokens" for token_class in TOKEN_CLASSES),
    # Only a numeric(p, 0) column can hold 'NaN', which is no count: summed as nothing.
    *(f"NaN {token_class}_tokens" for token_class in TOKEN_CLASSES),
)
# An id is blank when nothing but these remain: every code point of Unicode's White_Space
# property (no-break and ideographic spaces among them). The SQL binds those both the
# warehouse's and the client's encodings hold (extract.blank_characters).
BLANK_CHARACTERS = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Longer ids are invalid: they could not key a row (a B-tree entry holds ~2,700 bytes).
# An exception row keys such an id by its first ID_PREFIX_LENGTH characters, "...sha256:"
# and the 64 hex digits of its sha256: MAX_ID_LENGTH + 1 characters, so that no id kept
# whole is ever another's shortened form.
MAX_ID_LENGTH = 256
ID_PREFIX_LENGTH = MAX_ID_LENGTH + 1 - len("...sha256:") - 64


@dataclass(frozen=True)
class RatedRollup:
    """One billable row of ``rated_usage``, its rates frozen on it (contract 6)."""

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
    service_tier: str = STANDARD
    context_tier: str = STANDARD
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    cache_read_rate_per_mtok: Decimal | None = None
    cache_write_rate_per_mtok: Decimal | None = None
    cache_write_1h_rate_per_mtok: Decimal | None = None
    reasoning_rate_per_mtok: Decimal | None = None
    audio_input_rate_per_mtok: Decimal | None = None
    audio_output_rate_per_mtok: Decimal | None = None
    image_input_rate_per_mtok: Decimal | None = None

    def tokens(self) -> dict[str, int]:
        """Every token class's sum, in TOKEN_CLASSES order."""
        return {c: getattr(self, f"{c}_tokens") for c in TOKEN_CLASSES}

    def rates(self) -> dict[str, Decimal | None]:
        """Every token class's frozen rate (None: the rate set has none), in order."""
        return {c: getattr(self, f"{c}_rate_per_mtok") for c in TOKEN_CLASSES}


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
    service_tier: str = STANDARD
    context_tier: str = STANDARD
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0

    def tokens(self) -> dict[str, int]:
        """Every token class's sum, in TOKEN_CLASSES order."""
        return {c: getattr(self, f"{c}_tokens") for c in TOKEN_CLASSES}
