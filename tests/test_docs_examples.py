"""The worked examples of docs/pricing.md stay true: each is read from the doc, its
arithmetic is checked, and its event is rated through the production path with the shipped
pricebooks; the stored row must have exactly the tiers, rates and cost_usd the doc shows
(and, through the ``rate_events`` fixture, equal the oracle's)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.pricebook.model import TOKEN_CLASSES
from rating_pipeline.windows import Window
from tests.factories import WINDOW_START, BillingEvent
from tests.oracle import PROMPT_CLASSES

ROOT = Path(__file__).resolve().parent.parent
PRICING = (ROOT / "docs" / "pricing.md").read_text()
EVENTS = (ROOT / "docs" / "events.md").read_text()
SHIPPED = load_pricebooks(ROOT / "pricebooks").version_for(Window(WINDOW_START))
MILLION = Decimal(1_000_000)

LINE = re.compile(r"^(\w+) +([\d,]+) × ([\d.]+) += +([\d,.]+)$")
SUM = re.compile(r"^sum +=\s+([\d,.]+)$")
COST = re.compile(r"^cost_usd = ([\d,.]+) / 1,000,000 = (\d+\.\d{12})$")
PROMPT = re.compile(r"prompt size ((?:[\d,]+ \+ )*[\d,]+) = ([\d,]+)")
RATED = re.compile(
    r"The `rated_usage` row: service_tier `(\S+)`, context_tier `(\S+)`, cost_usd `([\d.]+)`"
)
EXCEPTED = re.compile(
    r"The `rating_exception` row: reason `(\w+)`, service_tier `(\S+)`, "
    r"context_tier `(\S+)`, detail `([^`]+)`"
)


def number(text: str) -> Decimal:
    """A figure as the doc writes it (thousands separated by commas), exactly."""
    return Decimal(text.replace(",", ""))


@dataclass(frozen=True)
class Line:
    """One line of an example's arithmetic: ``tokens × rate = amount``."""

    token_class: str
    tokens: int
    rate: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Example:
    """One worked example, as the doc shows it."""

    title: str
    event: BillingEvent
    prompt_terms: tuple[int, ...]
    prompt: int | None
    lines: tuple[Line, ...]
    total: Decimal | None
    cost_numerator: Decimal | None
    cost_usd: str | None
    rated: tuple[str, str, str] | None
    excepted: tuple[str, str, str, str] | None


def _event(number_: int, block: str) -> BillingEvent:
    fields = yaml.safe_load(block)
    tokens = {key: value for key, value in fields.items() if key.endswith("_tokens")}
    assert set(tokens) <= {f"{c}_tokens" for c in TOKEN_CLASSES}, tokens
    assert all(type(value) is int for value in tokens.values()), tokens
    return BillingEvent(
        event_id=f"docs-example-{number_}",
        auth_id=fields["auth_id"],
        model_id=fields["model_id"],
        base_model=fields.get("base_model"),
        occurred_at=WINDOW_START + timedelta(minutes=5),
        service_tier=fields["service_tier"],
        **{"input_tokens": 0, "output_tokens": 0, **tokens},
    )


def _example(title: str, body: str) -> Example:
    number_ = int(title.split()[1].rstrip(":"))
    (event_block,) = re.findall(r"```yaml\n(.*?)```", body, flags=re.S)
    arithmetic = re.findall(r"```text\n(.*?)```", body, flags=re.S)
    prose = " ".join(re.sub(r"```.*?```", "", body, flags=re.S).split())
    lines, total, numerator, cost = [], None, None, None
    for text in arithmetic[0].splitlines() if arithmetic else []:
        if line := LINE.match(text):
            name, tokens, rate, amount = line.groups()
            lines.append(Line(name, int(number(tokens)), Decimal(rate), number(amount)))
        elif summed := SUM.match(text):
            total = number(summed.group(1))
        elif costed := COST.match(text):
            numerator, cost = number(costed.group(1)), costed.group(2)
        else:
            raise AssertionError(f"{title}: unreadable arithmetic line {text!r}")
    prompt = PROMPT.search(prose)
    rated = RATED.search(prose)
    excepted = EXCEPTED.search(prose)
    return Example(
        title=title,
        event=_event(number_, event_block),
        prompt_terms=tuple(int(number(t)) for t in prompt.group(1).split(" + ")) if prompt else (),
        prompt=int(number(prompt.group(2))) if prompt else None,
        lines=tuple(lines),
        total=total,
        cost_numerator=numerator,
        cost_usd=cost,
        rated=(rated[1], rated[2], rated[3]) if rated else None,
        excepted=(excepted[1], excepted[2], excepted[3], excepted[4]) if excepted else None,
    )


def worked_examples(doc: str) -> list[Example]:
    """Every ``### Example N: ...`` of the doc's "Worked examples" section."""
    section = doc.split("\n## Worked examples\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (Example \d+: .+)$", section, flags=re.M)
    return [_example(title, body) for title, body in zip(parts[1::2], parts[2::2], strict=True)]


EXAMPLES = worked_examples(PRICING)
BY_TITLE = pytest.mark.parametrize("example", EXAMPLES, ids=[e.title for e in EXAMPLES])


def prompt_size(event: BillingEvent) -> int:
    return sum(event.tokens()[c] for c in PROMPT_CLASSES)


def test_the_doc_works_one_example_per_feature_with_the_shipped_pricebook():
    assert SHIPPED.version == "2026-06-01"  # the version the doc names
    base_large = SHIPPED.models["base-large"].own_rates
    assert base_large is not None and base_large.long_context_above_tokens is not None
    above = base_large.long_context_above_tokens
    rated = [(e, e.rated[:2]) for e in EXAMPLES if e.rated]
    features = {
        "cached": any(e.event.cache_read_tokens and t[0] == "standard" for e, t in rated),
        "batch": any(tiers[0] == "batch" for _, tiers in rated),
        "one token above": any(e.prompt == above + 1 and t[1] == "long" for e, t in rated),
        "exactly at": any(e.prompt == above and t[1] == "standard" for e, t in rated),
    }
    assert all(features.values()), features
    assert all(e.rated or e.excepted for e in EXAMPLES)


@BY_TITLE
def test_the_examples_arithmetic_adds_up(example: Example):
    tokens = example.event.tokens()
    if example.prompt is not None:
        assert sum(example.prompt_terms) == example.prompt == prompt_size(example.event)
    if not example.rated:
        assert not example.lines
        return
    shown = {line.token_class for line in example.lines}
    assert shown == {c for c, n in tokens.items() if n}, "every class with tokens, no other"
    for line in example.lines:
        assert line.tokens == tokens[line.token_class]
        assert line.tokens * line.rate == line.amount, line
    assert example.total == sum(line.amount for line in example.lines)
    assert example.cost_numerator == example.total
    assert example.cost_usd == f"{example.total / MILLION:.12f}"
    assert example.rated[2] == example.cost_usd


@BY_TITLE
def test_the_example_rates_as_the_doc_shows(example: Example, rate_events):
    stored = rate_events(SHIPPED, example.event)
    if example.excepted:
        assert not stored.rollups
        (row,) = stored.exceptions
        assert (row.reason, row.service_tier, row.context_tier, row.detail) == example.excepted
        return
    assert example.rated is not None
    assert not stored.exceptions
    (rollup,) = stored.rollups
    assert (rollup.service_tier, rollup.context_tier, str(rollup.cost_usd)) == example.rated
    rates = rollup.rates()
    for line in example.lines:
        assert rates[line.token_class] == line.rate, line
    assert rollup.tokens() == example.event.tokens()
    assert rollup.pricebook_version == SHIPPED.version


def test_the_anthropic_mapping_in_events_md_is_example_1s_event():
    anthropic = EVENTS.split("\n## Anthropic\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```json\n(.*?)```", anthropic, flags=re.S)
    usage = json.loads("{" + block + "}")["usage"]
    created = usage["cache_creation"]
    assert usage["cache_creation_input_tokens"] == (
        created["ephemeral_5m_input_tokens"] + created["ephemeral_1h_input_tokens"]
    )
    mapped = replace(
        EXAMPLES[0].event,
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage["cache_read_input_tokens"],
        cache_write_tokens=created["ephemeral_5m_input_tokens"],
        cache_write_1h_tokens=created["ephemeral_1h_input_tokens"],
        service_tier=usage["service_tier"],
    )
    assert EXAMPLES[0].title == "Example 1: a cached request"
    assert mapped.tokens() == EXAMPLES[0].event.tokens()
    assert (mapped.service_tier or "standard") == (EXAMPLES[0].event.service_tier or "standard")
