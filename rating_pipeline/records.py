"""The dumb, frozen records that flow through rating: events in, rollups and exceptions out.

These hold data only. The production pricing (``pricing``) and the reference oracle
(``oracle``) both speak them, and nothing else is shared between the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property

from rating_pipeline.money import EXACT
from rating_pipeline.windows import Window

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
class UsageGroup:
    """Events of one window sharing (auth_id, model_id, base_model, problems), summed.

    ``problems`` is empty for valid events; otherwise the names of what is wrong.
    """

    auth_id: str
    model_id: str
    base_model: str | None
    event_count: int
    input_tokens: int
    output_tokens: int
    problems: frozenset[str] = field(default_factory=frozenset)


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


@dataclass(frozen=True)
class WindowRating:
    """The whole output of rating one window, rows sorted by their keys."""

    window: Window
    pricebook_version: str
    pricebook_sha256: str
    rollups: tuple[RatedRollup, ...]
    exceptions: tuple[RatingException, ...]

    @property
    def events_rated(self) -> int:
        return sum(r.event_count for r in self.rollups)

    @property
    def events_excepted(self) -> int:
        return sum(e.event_count for e in self.exceptions)

    @property
    def events_read(self) -> int:
        return self.events_rated + self.events_excepted

    @property
    def total_cost_usd(self) -> Decimal:
        # Exactly: the default context would round a large total to 28 digits.
        total = Decimal(0)
        for rollup in self.rollups:
            total = EXACT.add(total, rollup.cost_usd)
        return total

    @cached_property
    def checksum(self) -> str:
        """SHA-256 of the window's output values; equal outputs give equal checksums."""
        return output_checksum(self.rollups, self.exceptions)


def _canonical_decimal(value: Decimal) -> str:
    # Plain notation without trailing zeros, exactly: Decimal.normalize() would round to
    # the context's 28 digits (PostgreSQL's trim_scale renders the same text, unrounded).
    if not value:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _canonical_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


_CANONICAL = {
    Decimal: _canonical_decimal,
    str: _canonical_text,
    int: str,
    datetime: datetime.isoformat,
}


def _canonical(value: object) -> str:
    if value is None:
        return "\\N"
    return _CANONICAL[type(value)](value)  # type: ignore[operator]


def canonical_fields(*values: object) -> str:
    """``values`` rendered and TAB-joined exactly as in a line of ``output_checksum``."""
    return "\t".join(map(_canonical, values))


# Per kind, the fields the rows of one window share (the rating that left them wrote them
# all): they form a header line, rendered once per group instead of on every row's line.
SHARED_FIELDS = {
    "rollup": ("window_start", "window_end", "pricebook_version", "pricebook_sha256"),
    "exception": ("window_start", "window_end", "pricebook_version"),
}


def output_checksum(rollups: Iterable[RatedRollup], exceptions: Iterable[RatingException]) -> str:
    """A stable digest of rows' values, independent of row order and Decimal scale.

    SHA-256 of UTF-8 lines: per kind (rollups, then exceptions), the rows grouped by their
    SHARED_FIELDS; each group, in code point order of its header, is its header line (the
    kind, then the shared fields) followed by its rows' other fields, one line per row,
    sorted by code point. Fields are ``canonical_fields``: TAB-separated, with TAB, LF and
    backslash escaped, so a line's field count tells a header from a row.
    """
    # Equal values render equally whatever their type (int 10 and Decimal("10.0") are both
    # "10"), so one cache keyed by value serves every column; most values repeat.
    rendered: dict[object, str] = {}

    def render(value: object) -> str:
        text = rendered.get(value)
        if text is None:
            text = rendered[value] = _canonical(value)
        return text

    digest = hashlib.sha256()
    for kind, rows in (("rollup", rollups), ("exception", exceptions)):
        shared = SHARED_FIELDS[kind]
        groups: dict[str, list[str]] = {}
        for row in rows:
            values = vars(row)
            header = canonical_fields(kind, *(values[name] for name in shared))
            line = "\t".join(render(value) for name, value in values.items() if name not in shared)
            groups.setdefault(header, []).append(line)
        for header in sorted(groups):
            lines = sorted(groups[header])
            digest.update("".join([f"{header}\n", *(f"{line}\n" for line in lines)]).encode())
    return digest.hexdigest()
