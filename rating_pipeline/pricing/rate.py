"""Pricing one window's aggregated usage into rollups and exceptions (contract 5 and 6).

Input is usage already summed per (auth_id, model_id, base_model, problems), as the
warehouse's SQL extraction returns it; ``group_events`` makes the same groups in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rating_pipeline.money import cost_usd
from rating_pipeline.pricebook.model import PricebookVersion
from rating_pipeline.pricing.resolve import Excluded, Priced, resolve
from rating_pipeline.records import (
    BLANK_AUTH_ID,
    BLANK_CHARACTERS,
    BLANK_MODEL_ID,
    INVALID_EVENT,
    NEGATIVE_INPUT_TOKENS,
    NEGATIVE_OUTPUT_TOKENS,
    PROBLEM_BITS,
    BillingEvent,
    RatedRollup,
    RatingException,
    UsageGroup,
    WindowRating,
)
from rating_pipeline.windows import Window


@dataclass
class _Totals:
    event_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    bases: set[str | None] = field(default_factory=set)
    problems: set[str] = field(default_factory=set)

    def add(self, group: UsageGroup) -> None:
        self.event_count += group.event_count
        self.input_tokens += group.input_tokens
        self.output_tokens += group.output_tokens
        self.bases.add(group.base_model)
        self.problems.update(group.problems)


def price_window(
    window: Window, version: PricebookVersion, groups: Iterable[UsageGroup]
) -> WindowRating:
    """Price every (auth_id, model_id) of one window.

    Valid usage becomes a ``RatedRollup`` or, when it cannot be priced, an ``unpriced`` or
    ``ambiguous_base`` exception; invalid usage becomes an ``invalid_event`` exception
    whatever its model. Every event of ``groups`` lands in exactly one output row.
    """
    valid: dict[tuple[str, str], _Totals] = {}
    invalid: dict[tuple[str, str], _Totals] = {}
    for group in groups:
        bucket = invalid if group.problems else valid
        bucket.setdefault((group.auth_id, group.model_id), _Totals()).add(group)

    resolutions: dict[tuple[str, frozenset[str | None]], Priced | Excluded] = {}
    rollups: list[RatedRollup] = []
    exceptions: list[RatingException] = []
    for (auth_id, model_id), totals in sorted(valid.items()):
        bases = frozenset(totals.bases)
        outcome = resolutions.get((model_id, bases))
        if outcome is None:
            outcome = resolutions[(model_id, bases)] = resolve(version, model_id, bases)
        if isinstance(outcome, Priced):
            rollups.append(_rollup(window, version, auth_id, model_id, totals, outcome))
        else:
            exceptions.append(
                _exception(
                    window, version, auth_id, model_id, totals, outcome.reason, outcome.detail
                )
            )
    for (auth_id, model_id), totals in sorted(invalid.items()):
        detail = ", ".join(name for name in PROBLEM_BITS.values() if name in totals.problems)
        exceptions.append(
            _exception(window, version, auth_id, model_id, totals, INVALID_EVENT, detail)
        )
    exceptions.sort(key=lambda e: (e.auth_id, e.model_id, e.reason))
    return WindowRating(
        window=window,
        pricebook_version=version.version,
        pricebook_sha256=version.sha256,
        rollups=tuple(rollups),
        exceptions=tuple(exceptions),
    )


def _rollup(
    window: Window,
    version: PricebookVersion,
    auth_id: str,
    model_id: str,
    totals: _Totals,
    priced: Priced,
) -> RatedRollup:
    return RatedRollup(
        window_start=window.start,
        window_end=window.end,
        auth_id=auth_id,
        model_id=model_id,
        event_count=totals.event_count,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        rate_source=priced.rate_source,
        derivation_base=priced.derivation_base,
        multiplier=priced.multiplier,
        input_rate_per_mtok=priced.rate.input_per_mtok,
        output_rate_per_mtok=priced.rate.output_per_mtok,
        cost_usd=cost_usd(
            totals.input_tokens,
            totals.output_tokens,
            priced.rate.input_per_mtok,
            priced.rate.output_per_mtok,
        ),
        pricebook_version=version.version,
        pricebook_sha256=version.sha256,
    )


def _exception(
    window: Window,
    version: PricebookVersion,
    auth_id: str,
    model_id: str,
    totals: _Totals,
    reason: str,
    detail: str,
) -> RatingException:
    return RatingException(
        window_start=window.start,
        window_end=window.end,
        auth_id=auth_id,
        model_id=model_id,
        reason=reason,
        detail=detail,
        event_count=totals.event_count,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        pricebook_version=version.version,
    )


def is_blank(identifier: str) -> bool:
    """Blank: nothing left once BLANK_CHARACTERS are trimmed (the SQL trims the same set)."""
    return not identifier.strip(BLANK_CHARACTERS)


def event_problems(event: BillingEvent) -> frozenset[str]:
    """What makes an event invalid; empty when it may be priced."""
    problems = set()
    if is_blank(event.auth_id):
        problems.add(BLANK_AUTH_ID)
    if is_blank(event.model_id):
        problems.add(BLANK_MODEL_ID)
    if event.input_tokens < 0:
        problems.add(NEGATIVE_INPUT_TOKENS)
    if event.output_tokens < 0:
        problems.add(NEGATIVE_OUTPUT_TOKENS)
    return frozenset(problems)


def in_window(window: Window, occurred_at: datetime) -> bool:
    """The half-open window predicate: ``start <= occurred_at < end``."""
    return window.start <= occurred_at < window.end


def group_events(window: Window, events: Iterable[BillingEvent]) -> list[UsageGroup]:
    """The window's events summed per (auth_id, model_id, base_model, problems), in memory."""
    sums: dict[tuple[str, str, str | None, frozenset[str]], list[int]] = {}
    for event in events:
        if not in_window(window, event.occurred_at):
            continue
        key = (event.auth_id, event.model_id, event.base_model, event_problems(event))
        totals = sums.setdefault(key, [0, 0, 0])
        totals[0] += 1
        totals[1] += event.input_tokens
        totals[2] += event.output_tokens
    return [
        UsageGroup(auth_id, model_id, base_model, count, input_tokens, output_tokens, problems)
        for (auth_id, model_id, base_model, problems), (count, input_tokens, output_tokens) in (
            sums.items()
        )
    ]
