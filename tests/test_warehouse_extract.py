"""Extraction: one window's events summed in SQL, as ``pricing.group_events`` sums them
once its groups are merged into rollups (valid usage) and kinds of invalid usage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating_pipeline.pricing import group_events
from rating_pipeline.records import (
    BLANK_AUTH_ID,
    BLANK_CHARACTERS,
    BLANK_MODEL_ID,
    NEGATIVE_INPUT_TOKENS,
    NEGATIVE_OUTPUT_TOKENS,
    BillingEvent,
    UsageGroup,
)
from rating_pipeline.warehouse.extract import UsageSum, decode_problems, extract_window_usage
from rating_pipeline.windows import Window
from tests.conftest import insert_events, truncate_all
from tests.factories import WINDOW_START, make_event
from tests.strategies import pricebook_versions, window_events

WINDOW = Window(WINDOW_START)
AddEvents = Callable[[Iterable[BillingEvent]], int]


def merged(groups: Iterable[UsageGroup]) -> Counter[UsageSum]:
    """``group_events``' groups merged as window_usage holds them: per (auth_id, model_id)
    with the set of base_model values when valid, per (auth_id, model_id, problems) else."""
    sums: dict[tuple[str, str, frozenset[str]], list[int]] = {}
    bases: dict[tuple[str, str, frozenset[str]], set[str | None]] = {}
    for group in groups:
        key = (group.auth_id, group.model_id, group.problems)
        totals = sums.setdefault(key, [0, 0, 0])
        totals[0] += group.event_count
        totals[1] += group.input_tokens
        totals[2] += group.output_tokens
        bases.setdefault(key, set()).add(group.base_model)
    return Counter(
        UsageSum(auth_id, model_id, None if problems else frozenset(bases[key]), *totals, problems)
        for key, totals in sums.items()
        for auth_id, model_id, problems in [key]
    )


def _extract(conn: psycopg.Connection, window: Window = WINDOW) -> Counter[UsageSum]:
    usage = extract_window_usage(conn, window)
    conn.rollback()
    return Counter(usage.groups)


def test_extraction_window_is_half_open(conn: psycopg.Connection, add_events: AddEvents) -> None:
    microsecond = timedelta(microseconds=1)
    add_events(
        [
            make_event(occurred_at=WINDOW.start - microsecond, input_tokens=1),
            make_event(occurred_at=WINDOW.start, input_tokens=10),
            make_event(occurred_at=WINDOW.end - microsecond, input_tokens=100),
            make_event(occurred_at=WINDOW.end, input_tokens=1000),
        ]
    )
    (group,) = _extract(conn)
    assert (group.event_count, group.input_tokens) == (2, 110)
    (next_group,) = _extract(conn, Window(WINDOW.end))
    assert next_group.input_tokens == 1000


def test_extraction_flags_every_blank_character_and_negative_tokens(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    add_events(
        [
            *(make_event(auth_id=char * 2) for char in BLANK_CHARACTERS),
            make_event(auth_id=BLANK_CHARACTERS, model_id=" "),
            make_event(auth_id="org-1", model_id="\u00a0"),  # no-break space is not blank
            make_event(auth_id="org-1", input_tokens=-1),
            make_event(auth_id="org-1", output_tokens=-1),
            make_event(auth_id="org-1", input_tokens=-1, output_tokens=-2),
            make_event(auth_id="org-1"),
        ]
    )
    problems = {
        (g.auth_id, g.model_id, g.input_tokens, g.output_tokens): g.problems for g in _extract(conn)
    }
    for char in BLANK_CHARACTERS:
        assert problems[(char * 2, "base-large", 1000, 100)] == {BLANK_AUTH_ID}
    assert problems[(BLANK_CHARACTERS, " ", 1000, 100)] == {BLANK_AUTH_ID, BLANK_MODEL_ID}
    assert problems[("org-1", "\u00a0", 1000, 100)] == frozenset()
    assert problems[("org-1", "base-large", -1, 100)] == {NEGATIVE_INPUT_TOKENS}
    assert problems[("org-1", "base-large", 1000, -1)] == {NEGATIVE_OUTPUT_TOKENS}
    assert problems[("org-1", "base-large", -1, -2)] == {
        NEGATIVE_INPUT_TOKENS,
        NEGATIVE_OUTPUT_TOKENS,
    }
    assert problems[("org-1", "base-large", 1000, 100)] == frozenset()


def test_extraction_sums_beyond_bigint_exactly(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    biggest = 2**63 - 1
    add_events([make_event(input_tokens=biggest, output_tokens=biggest) for _ in range(3)])
    (group,) = _extract(conn)
    assert group.input_tokens == group.output_tokens == 3 * biggest


def test_extraction_reports_the_latest_ingested_at(
    conn: psycopg.Connection, add_events: AddEvents
) -> None:
    late = WINDOW.end + timedelta(days=2)
    add_events(
        [
            replace(make_event(), ingested_at=WINDOW.end),
            replace(make_event(model_id="other"), ingested_at=late),
            replace(make_event(occurred_at=WINDOW.end), ingested_at=late + timedelta(days=1)),
        ]
    )
    usage = extract_window_usage(conn, WINDOW)
    conn.rollback()
    assert usage.max_ingested_at == late
    empty = extract_window_usage(conn, Window(WINDOW.start - timedelta(hours=5)))
    conn.rollback()
    assert (empty.groups, empty.max_ingested_at) == ((), None)


def test_decode_problems_rejects_unknown_bits() -> None:
    assert decode_problems(0) == frozenset()
    assert decode_problems(15) == {
        BLANK_AUTH_ID,
        BLANK_MODEL_ID,
        NEGATIVE_INPUT_TOKENS,
        NEGATIVE_OUTPUT_TOKENS,
    }
    with pytest.raises(ValueError, match="unknown problem bits 16"):
        decode_problems(16)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_sql_extraction_groups_exactly_as_group_events(
    database_url: str, data: st.DataObject
) -> None:
    version = data.draw(pricebook_versions())
    events = data.draw(window_events(version))
    truncate_all(database_url)
    insert_events(database_url, events)
    with psycopg.connect(database_url) as conn:
        extracted = Counter(extract_window_usage(conn, WINDOW).groups)
    assert extracted == merged(group_events(WINDOW, events))
