"""The oracle: a deliberately plain reference of pricing (contract 5 and 6) for one window.

It walks individual events with ``Decimal`` and shares no code with the production path
(``pricing``, ``money``, the SQL) beyond the pricebook types and the output records. Where the
production path aggregates first and prices totals, the oracle prices every event on its
own and adds the exact costs up; both must agree to the last digit. Property tests hold
them to it, so keep this module simple rather than fast, and change it only when the
contract changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact

from rating_pipeline.pricebook.model import ModelRates, PricebookVersion
from rating_pipeline.records import BillingEvent, RatedRollup, RatingException
from rating_pipeline.windows import Window

_CONTEXT = Context(prec=200, rounding=ROUND_HALF_EVEN, traps=[Inexact])
_SIX_PLACES = Decimal("0.000001")
_WHITESPACE = " \t\n\r\f\v"


@dataclass(frozen=True)
class OracleRating:
    """The whole output of rating one window, rows sorted by their keys (code point)."""

    rollups: tuple[RatedRollup, ...]
    exceptions: tuple[RatingException, ...]

    @property
    def events_read(self) -> int:
        return sum(r.event_count for r in self.rollups) + sum(
            e.event_count for e in self.exceptions
        )

    @property
    def total_cost_usd(self) -> Decimal:
        total = Decimal(0)
        for rollup in self.rollups:
            total = _CONTEXT.add(total, rollup.cost_usd)
        return total


def _problems(event: BillingEvent) -> list[str]:
    found = []
    if event.auth_id.strip(_WHITESPACE) == "":
        found.append("blank auth_id")
    if event.model_id.strip(_WHITESPACE) == "":
        found.append("blank model_id")
    if event.input_tokens < 0:
        found.append("negative input_tokens")
    if event.output_tokens < 0:
        found.append("negative output_tokens")
    return found


def _has_own_rate(version: PricebookVersion, model_id: str | None) -> bool:
    if model_id is None or model_id[:3] == "ft:":
        return False
    entry = version.models.get(model_id)
    return entry is not None and entry.own_rates is not None


def _standard_rates(rates: ModelRates | None) -> Mapping[str, Decimal]:
    """The standard tier's standard-context rates by token class."""
    assert rates is not None
    return rates.sets[("standard", "standard")].rates


def _times(rate: Decimal, multiplier: Decimal) -> Decimal:
    exact = _CONTEXT.multiply(rate, multiplier)
    return exact.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN, context=Context(prec=200))


def _price(
    version: PricebookVersion, model_id: str, bases: list[str | None]
) -> tuple[str, str | None, Decimal | None, Decimal, Decimal] | tuple[str, str]:
    """(source, base, multiplier, input rate, output rate), or (reason, detail)."""
    entry = version.models.get(model_id)
    if entry is not None and entry.own_rates is not None:
        own = _standard_rates(entry.own_rates)
        return ("own", None, None, own["input"], own["output"])
    if entry is not None and entry.derived_from is not None:
        base_rate = _standard_rates(version.models[entry.derived_from].own_rates)
        assert entry.multiplier is not None
        return (
            "declared",
            entry.derived_from,
            entry.multiplier,
            _times(base_rate["input"], entry.multiplier),
            _times(base_rate["output"], entry.multiplier),
        )
    if not model_id.startswith("ft:"):
        return ("unpriced", f"unknown model: not in pricebook {version.version}")
    multiplier = version.fine_tune_multiplier
    if multiplier is None:
        return (
            "unpriced",
            f"fine-tune not in pricebook {version.version}, which has no fine_tune_multiplier",
        )
    distinct: list[str | None] = []
    for base in bases:
        if base not in distinct:
            distinct.append(base)
    if len(distinct) > 1:
        listed = sorted(b for b in distinct if b is not None)
        if None in distinct:
            listed.append(None)  # type: ignore[arg-type]
        return (
            "ambiguous_base",
            "distinct base_model values: " + json.dumps(listed, ensure_ascii=False),
        )
    base = distinct[0]
    if base is None:
        return ("unpriced", "fine-tune without a base: its events carry no base_model")
    if not _has_own_rate(version, base):
        quoted = json.dumps(base, ensure_ascii=False)
        if base.startswith("ft:"):
            detail = (
                f"base {quoted} is a fine-tune: one hop only, a fine-tune cannot be derived from"
            )
        elif base in version.models:
            detail = (
                f"base {quoted} is itself derived in pricebook {version.version}, not a true base"
            )
        else:
            detail = f"base {quoted} is not in pricebook {version.version}"
        return ("unpriced", detail)
    base_rate = _standard_rates(version.models[base].own_rates)
    return (
        "event",
        base,
        multiplier,
        _times(base_rate["input"], multiplier),
        _times(base_rate["output"], multiplier),
    )


def rate_window(
    window: Window, version: PricebookVersion, events: Iterable[BillingEvent]
) -> OracleRating:
    """What rating ``window`` with ``version`` must produce from ``events`` (any window's)."""
    valid: dict[tuple[str, str], list[BillingEvent]] = {}
    invalid: dict[tuple[str, str], list[BillingEvent]] = {}
    for event in events:
        if not (window.start <= event.occurred_at < window.end):
            continue
        target = invalid if _problems(event) else valid
        target.setdefault((event.auth_id, event.model_id), []).append(event)

    rollups = []
    exceptions = []
    for (auth_id, model_id), group in valid.items():
        outcome = _price(version, model_id, [e.base_model for e in group])
        if len(outcome) == 2:
            reason, detail = outcome
            exceptions.append(_exception(window, version, auth_id, model_id, group, reason, detail))
            continue
        source, base, multiplier, input_rate, output_rate = outcome
        cost = Decimal(0)
        for event in group:
            event_cost = _CONTEXT.divide(
                _CONTEXT.add(
                    _CONTEXT.multiply(Decimal(event.input_tokens), input_rate),
                    _CONTEXT.multiply(Decimal(event.output_tokens), output_rate),
                ),
                Decimal(1_000_000),
            )
            cost = _CONTEXT.add(cost, event_cost)
        rollups.append(
            RatedRollup(
                window_start=window.start,
                window_end=window.end,
                auth_id=auth_id,
                model_id=model_id,
                event_count=len(group),
                input_tokens=sum(e.input_tokens for e in group),
                output_tokens=sum(e.output_tokens for e in group),
                rate_source=source,
                derivation_base=base,
                multiplier=multiplier,
                input_rate_per_mtok=input_rate,
                output_rate_per_mtok=output_rate,
                cost_usd=cost,
                pricebook_version=version.version,
                pricebook_sha256=version.sha256,
            )
        )
    for (auth_id, model_id), group in invalid.items():
        seen = {problem for event in group for problem in _problems(event)}
        order = [
            "blank auth_id",
            "blank model_id",
            "negative input_tokens",
            "negative output_tokens",
        ]
        detail = ", ".join(p for p in order if p in seen)
        exceptions.append(
            _exception(window, version, auth_id, model_id, group, "invalid_event", detail)
        )
    return OracleRating(
        rollups=tuple(sorted(rollups, key=lambda r: (r.auth_id, r.model_id))),
        exceptions=tuple(sorted(exceptions, key=lambda e: (e.auth_id, e.model_id, e.reason))),
    )


def _exception(
    window: Window,
    version: PricebookVersion,
    auth_id: str,
    model_id: str,
    group: list[BillingEvent],
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
        event_count=len(group),
        input_tokens=sum(e.input_tokens for e in group),
        output_tokens=sum(e.output_tokens for e in group),
        pricebook_version=version.version,
    )
