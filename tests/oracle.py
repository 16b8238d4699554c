"""The oracle: a deliberately plain reference of pricing (contract 5 and 6) for one window.

It walks individual events with ``Decimal`` and shares no code with the production path
(``pricing``, ``money``, the SQL) beyond the pricebook types and the output records. Where
the production path sums first and prices totals, the oracle classifies and prices every
event on its own and adds the exact costs up; both must agree to the last digit. Property
tests hold them to it, so keep this module simple rather than fast, and change it only
when the contract changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact

from rating_pipeline.pricebook.model import ModelRates, PricebookVersion
from rating_pipeline.records import RatedRollup, RatingException
from rating_pipeline.windows import Window
from tests.factories import BillingEvent

_CONTEXT = Context(prec=200, rounding=ROUND_HALF_EVEN, traps=[Inexact])
_SIX_PLACES = Decimal("0.000001")
CLASSES = [
    "input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning",
    "audio_input", "audio_output", "image_input",
]  # fmt: skip
PROMPT_CLASSES = ["input", "cache_read", "cache_write", "cache_write_1h", "audio_input",
                  "image_input"]  # fmt: skip
TIERS = ["standard", "batch", "priority", "flex"]


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


def _tokens(event: BillingEvent, token_class: str) -> int:
    return int(getattr(event, token_class + "_tokens"))


def _class_sums(group: list[BillingEvent]) -> dict[str, int]:
    """``{"<class>_tokens": sum}`` over ``group``, every class."""
    return {f"{c}_tokens": sum(_tokens(e, c) for e in group) for c in CLASSES}


def _blank(text: str) -> bool:
    """Nothing but Unicode White_Space: Python's whitespace less the four information
    separators U+001C..U+001F, which Python counts and Unicode does not."""
    return all(c.isspace() and c not in "\x1c\x1d\x1e\x1f" for c in text)


def _problems(event: BillingEvent) -> list[str]:
    found = []
    if _blank(event.auth_id):
        found.append("blank auth_id")
    if _blank(event.model_id):
        found.append("blank model_id")
    for name, value in (("auth_id", event.auth_id), ("model_id", event.model_id),
                        ("base_model", event.base_model or "")):  # fmt: skip
        if len(value) > 256:
            found.append(f"{name} longer than 256 characters")
    if event.service_tier is not None and event.service_tier not in TIERS:
        found.append("unknown service_tier")
    found += [f"negative {c}_tokens" for c in CLASSES if _tokens(event, c) < 0]
    return found


def _shortened(text: str) -> str:
    """257 characters: one more than any id kept whole."""
    if len(text) <= 256:
        return text
    return text[:183] + "...sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _true_base_rates(version: PricebookVersion, model_id: str | None) -> ModelRates | None:
    if model_id is None or model_id[:3] == "ft:":
        return None
    entry = version.models.get(model_id)
    return None if entry is None else entry.own_rates


def _times(rate: Decimal, multiplier: Decimal) -> Decimal:
    """A derived rate; a positive rate that derives to 0 is a book no loader accepts
    (pricebook rule 6), so the oracle refuses to price by it."""
    exact = _CONTEXT.multiply(rate, multiplier)
    derived = exact.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN, context=Context(prec=200))
    if rate > 0 and derived == 0:
        raise ValueError(f"rule 6: {rate} x {multiplier} rounds to 0; no loader accepts it")
    return derived


def breaks_rule_6(version: PricebookVersion) -> bool:
    """Whether a positive rate of ``version`` derives to 0 (pricebook rule 6), through a
    declared derivation or a true base projected through fine_tune_multiplier."""
    declared = [
        (version.models[entry.derived_from].own_rates, entry.multiplier)
        for entry in version.models.values()
        if entry.derived_from is not None
        and entry.derived_from in version.models
        and entry.multiplier is not None
    ]
    if version.fine_tune_multiplier is not None:
        declared += [
            (entry.own_rates, version.fine_tune_multiplier)
            for model_id, entry in version.models.items()
            if model_id[:3] != "ft:"
        ]
    return any(rates and derives_a_zero(rates, times) for rates, times in declared)


def derives_a_zero(rates: ModelRates, multiplier: Decimal) -> bool:
    """Whether some positive rate of ``rates``, times ``multiplier``, rounds to 0."""
    half_a_micro = Decimal("0.0000005")  # a tie, which half-even takes to 0
    return any(
        rate > 0 and _CONTEXT.multiply(rate, multiplier) <= half_a_micro
        for rate_set in rates.sets.values()
        for rate in rate_set.rates.values()
    )


def _schedule_of(version: PricebookVersion, event: BillingEvent) -> ModelRates | None:
    """The rates this one event would be priced by, ignoring the ambiguity gate: only to
    classify its context tier."""
    entry = version.models.get(event.model_id)
    if entry is not None:
        if entry.own_rates is not None:
            return entry.own_rates
        return version.models[entry.derived_from].own_rates if entry.derived_from else None
    if event.model_id[:3] == "ft:" and version.fine_tune_multiplier is not None:
        return _true_base_rates(version, event.base_model)
    return None


def _context_tier(version: PricebookVersion, event: BillingEvent) -> str:
    schedule = _schedule_of(version, event)
    if schedule is None or schedule.long_context_above_tokens is None:
        return "standard"
    prompt = sum(_tokens(event, c) for c in PROMPT_CLASSES)
    return "long" if prompt > schedule.long_context_above_tokens else "standard"


def _resolve(
    version: PricebookVersion, model_id: str, bases: list[str | None]
) -> tuple[str, str | None, Decimal | None, ModelRates] | tuple[str, str]:
    """(source, base, multiplier, the model's rates), or (reason, detail)."""
    entry = version.models.get(model_id)
    if entry is not None and entry.own_rates is not None:
        return ("own", None, None, entry.own_rates)
    if entry is not None and entry.derived_from is not None:
        base_rates = version.models[entry.derived_from].own_rates
        assert base_rates is not None and entry.multiplier is not None
        return ("declared", entry.derived_from, entry.multiplier, base_rates)
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
        listed: list[str | None] = [*sorted(b for b in distinct if b is not None)]
        if None in distinct:
            listed.append(None)
        return (
            "ambiguous_base",
            "distinct base_model values: " + json.dumps(listed, ensure_ascii=False),
        )
    base = distinct[0]
    if base is None:
        return ("unpriced", "fine-tune without a base: its events carry no base_model")
    base_rates = _true_base_rates(version, base)
    if base_rates is None:
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
    return ("event", base, multiplier, base_rates)


def _set_words(tier: str, context: str) -> str:
    if tier == "standard" and context == "standard":
        return "standard"
    if context == "long":
        return "long-context" if tier == "standard" else f"{tier} long-context"
    return tier


def rate_window(
    window: Window, version: PricebookVersion, events: Iterable[BillingEvent]
) -> OracleRating:
    """What rating ``window`` with ``version`` must produce from ``events`` (any window's)."""
    valid: dict[tuple[str, str], list[BillingEvent]] = {}
    invalid: dict[tuple[str, str], list[BillingEvent]] = {}
    for event in events:
        if not (window.start <= event.occurred_at < window.end):
            continue
        if _problems(event):
            key = (_shortened(event.auth_id), _shortened(event.model_id))
            invalid.setdefault(key, []).append(event)
        else:
            valid.setdefault((event.auth_id, event.model_id), []).append(event)
    rollups: list[RatedRollup] = []
    exceptions: list[RatingException] = []
    for (auth_id, model_id), pair in valid.items():
        outcome = _resolve(version, model_id, [e.base_model for e in pair])
        rollup_groups: dict[tuple[str, str], list[BillingEvent]] = {}
        for event in pair:
            tiers = (event.service_tier or "standard", _context_tier(version, event))
            rollup_groups.setdefault(tiers, []).append(event)
        for (tier, context), group in rollup_groups.items():
            row = _price(window, version, auth_id, model_id, tier, context, group, outcome)
            if isinstance(row, RatedRollup):
                rollups.append(row)
            else:
                exceptions.append(row)
    for (auth_id, model_id), group in invalid.items():
        seen = {problem for event in group for problem in _problems(event)}
        order = [
            "blank auth_id", "blank model_id", "auth_id longer than 256 characters",
            "model_id longer than 256 characters", "base_model longer than 256 characters",
            "unknown service_tier", *(f"negative {c}_tokens" for c in CLASSES),
        ]  # fmt: skip
        detail = ", ".join(p for p in order if p in seen)
        exceptions.append(
            _exception(window, version, (auth_id, model_id, "-", "-"), group,
                       "invalid_event", detail)
        )  # fmt: skip
    return OracleRating(
        rollups=tuple(
            sorted(rollups, key=lambda r: (r.auth_id, r.model_id, r.service_tier, r.context_tier))
        ),
        exceptions=tuple(
            sorted(
                exceptions,
                key=lambda e: (e.auth_id, e.model_id, e.service_tier, e.context_tier, e.reason),
            )
        ),
    )


def _price(
    window: Window,
    version: PricebookVersion,
    auth_id: str,
    model_id: str,
    tier: str,
    context: str,
    group: list[BillingEvent],
    outcome: tuple[str, str | None, Decimal | None, ModelRates] | tuple[str, str],
) -> RatedRollup | RatingException:
    key = (auth_id, model_id, tier, context)
    if len(outcome) == 2:
        return _exception(window, version, key, group, outcome[0], outcome[1])
    source, base, multiplier, schedule = outcome
    rate_set = schedule.sets.get((tier, context))
    if rate_set is None:
        detail = f"no {_set_words(tier, context)} rates for {model_id}"
        return _exception(window, version, key, group, "unpriced", detail)
    rates: dict[str, Decimal | None] = {}
    for c in CLASSES:
        listed = rate_set.rates.get(c)
        rates[c] = listed if listed is None or multiplier is None else _times(listed, multiplier)
    missing = [c for c in CLASSES if rates[c] is None and any(_tokens(e, c) for e in group)]
    if missing:
        detail = ", ".join(f"no {c} rate" for c in missing)
        detail += f" in {_set_words(tier, context)} rates of {model_id}"
        return _exception(window, version, key, group, "unpriced", detail)
    cost = Decimal(0)
    for event in group:
        for c in CLASSES:
            rate = rates[c]
            if rate is not None and _tokens(event, c):
                share = _CONTEXT.multiply(Decimal(_tokens(event, c)), rate)
                cost = _CONTEXT.add(cost, _CONTEXT.divide(share, Decimal(1_000_000)))
    return RatedRollup(
        window_start=window.start,
        window_end=window.end,
        auth_id=auth_id,
        model_id=model_id,
        service_tier=tier,
        context_tier=context,
        event_count=len(group),
        rate_source=source,
        derivation_base=base,
        multiplier=multiplier,
        cost_usd=cost.quantize(Decimal("1E-12"), context=_CONTEXT),
        pricebook_version=version.version,
        pricebook_sha256=version.sha256,
        **_class_sums(group),  # type: ignore[arg-type]
        **{f"{c}_rate_per_mtok": rates[c] for c in CLASSES},  # type: ignore[arg-type]
    )


def _exception(
    window: Window,
    version: PricebookVersion,
    key: tuple[str, str, str, str],
    group: list[BillingEvent],
    reason: str,
    detail: str,
) -> RatingException:
    auth_id, model_id, tier, context = key
    return RatingException(
        window_start=window.start,
        window_end=window.end,
        auth_id=auth_id,
        model_id=model_id,
        service_tier=tier,
        context_tier=context,
        reason=reason,
        detail=detail,
        event_count=len(group),
        pricebook_version=version.version,
        **_class_sums(group),  # type: ignore[arg-type]
    )
