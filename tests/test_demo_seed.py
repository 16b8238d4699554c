"""The synthetic data generator, the demo day and the summary, on a live PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from rating_pipeline import pricing
from rating_pipeline.demo.day import DEMO_CASES, add_late_events, demo_day
from rating_pipeline.demo.seed import (
    COLUMN_NAMES,
    DEMO_MIX,
    LONG_CONTEXT_ABOVE_TOKENS,
    Columns,
    SeedError,
    SeedSpec,
    generate_hour,
    rows,
    seed_events,
)
from rating_pipeline.demo.summary import invoices_summary, summarize
from rating_pipeline.pricebook.loader import load_pricebooks
from rating_pipeline.pricebook.model import LONG, STANDARD, Pricebooks, PricebookVersion
from rating_pipeline.records import AMBIGUOUS_BASE, INVALID_EVENT, REASONS, UNPRICED
from rating_pipeline.settings import project_root
from rating_pipeline.warehouse.engine import rate_window
from rating_pipeline.warehouse.invoices import build_invoice
from rating_pipeline.warehouse.outputs import (
    cost_by_tier,
    cost_by_token_class,
    stored_exceptions,
)
from rating_pipeline.warehouse.periods import close_period
from rating_pipeline.windows import HOUR, Window, WindowError
from tests.conftest import insert_events, stored_rollups
from tests.factories import make_event, make_version, own

START = datetime(2026, 6, 15, tzinfo=UTC)
SHIPPED_PRICEBOOKS = project_root() / "pricebooks"
# The token classes the generator and the case table write.
GENERATED_CLASSES = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
PROMPT_CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h")
# Where each billed tier, cache and long-context case of DEMO_CASES lands once rated: its
# rollup's (auth_id, model_id, service_tier, context_tier) and the exact cost its
# ``expected`` text works out by hand.
CASE_ROLLUPS = {
    "cached_prefix": ("org-cached", "base-large", "standard", "standard", "0.226"),
    "batch_request": ("org-batch", "base-medium", "batch", "standard", "0.036"),
    "priority_request": ("org-priority", "base-medium", "priority", "standard", "0.00826"),
    "long_context_above_threshold": (
        "org-long-context", "base-large", "standard", "long", "0.790005"
    ),
    "long_context_at_threshold": (
        "org-long-context", "base-large", "standard", "standard", "0.3975"
    ),
}  # fmt: skip
EVENT_COLUMNS = ", ".join(COLUMN_NAMES)
SELECT_EVENTS = f"SELECT {EVENT_COLUMNS} FROM billing_event ORDER BY event_id"
COUNT_PER_HOUR = (
    "SELECT date_trunc('hour', occurred_at AT TIME ZONE 'UTC'), count(*) FROM billing_event"
    " GROUP BY 1 ORDER BY 1"
)
# The hand-made events of one row of DEMO_CASES, as the table states them.
CASE_ROW_EVENTS = """
SELECT count(*) FROM billing_event
WHERE occurred_at >= %(hour)s AND occurred_at < %(hour)s + interval '1 hour'
  AND event_id !~ '^ev-5-[0-9]{10}-' AND auth_id = %(auth_id)s AND model_id = %(model_id)s
  AND base_model IS NOT DISTINCT FROM %(base_model)s AND input_tokens = %(input_tokens)s
  AND output_tokens = %(output_tokens)s AND ingested_at - occurred_at = %(ingest_delay)s
  AND cache_read_tokens = %(cache_read_tokens)s AND cache_write_tokens = %(cache_write_tokens)s
  AND cache_write_1h_tokens = %(cache_write_1h_tokens)s
  AND service_tier IS NOT DISTINCT FROM %(service_tier)s
"""
TABLE_DIGEST = (
    f"SELECT md5(string_agg(concat_ws('|', {EVENT_COLUMNS}), ',' ORDER BY event_id))"
    " FROM billing_event"
)


Event = dict[str, Any]


def events_of(columns: Columns) -> list[Event]:
    """Generated columns, event by event."""
    return [dict(zip(COLUMN_NAMES, row, strict=True)) for row in rows(columns)]


def prompt_size(event: Event) -> int:
    return sum(event[f"{name}_tokens"] for name in PROMPT_CLASSES)


def per_mille(events: list[Event], holds: Callable[[Event], bool]) -> int:
    """How many of ``events``, per mille, ``holds`` for (rounded down)."""
    return 1_000 * sum(1 for event in events if holds(event)) // len(events)


def why_unpriced(version: PricebookVersion, event: Event) -> str | None:
    """Why ``version`` would not price ``event`` on its own (contract 5.1, 5.3), or None."""
    outcome = pricing.resolve(version, event["model_id"], frozenset({event["base_model"]}))
    if not isinstance(outcome, pricing.Priced):
        return outcome.detail
    threshold = outcome.rates.long_context_above_tokens
    context = LONG if threshold is not None and prompt_size(event) > threshold else STANDARD
    tier = event["service_tier"] or STANDARD
    rates = outcome.rates.rate_set(tier, context)
    if rates is None:
        return f"{event['model_id']}: no {tier} {context}-context rates"
    missing = [c for c in GENERATED_CLASSES if event[f"{c}_tokens"] and rates.rate(c) is None]
    return f"{event['model_id']} {tier} {context}: no {missing} rate" if missing else None


def small_spec(**changes: object) -> SeedSpec:
    fields: dict[str, object] = {
        "start": START,
        "hours": 3,
        "events_per_hour": 2_000,
        "seed": 11,
        "principals": 50,
    }
    fields.update(changes)
    return SeedSpec(**fields)  # type: ignore[arg-type]


def generated(spec: SeedSpec) -> list[Columns]:
    return [generate_hour(spec, spec.start + offset * HOUR) for offset in range(spec.hours)]


def digest(conn: psycopg.Connection) -> str:
    row = conn.execute(TABLE_DIGEST).fetchone()
    assert row is not None
    return str(row[0])


def test_same_seed_generates_identical_events_and_another_seed_does_not() -> None:
    assert generated(small_spec()) == generated(small_spec())
    assert generated(small_spec(seed=12)) != generated(small_spec())


def test_an_hour_does_not_depend_on_the_range_it_was_seeded_with() -> None:
    day = small_spec(hours=3)
    later = small_spec(start=START + HOUR, hours=1)
    assert generate_hour(day, START + HOUR) == generate_hour(later, START + HOUR)


def test_generated_token_counts_are_non_negative_integers() -> None:
    columns = generate_hour(small_spec(events_per_hour=20_000), START)
    for name in GENERATED_CLASSES:
        assert all(type(count) is int and count >= 0 for count in columns[f"{name}_tokens"])
    embeddings = [m.model_id for m in DEMO_MIX if m.output_median == 0]
    assert embeddings
    assert not any(
        out
        for model, out in zip(columns["model_id"], columns["output_tokens"], strict=True)
        if model in embeddings
    )


def test_the_generator_draws_cache_tier_and_long_context_shares() -> None:
    events = events_of(generate_hour(small_spec(events_per_hour=40_000), START))
    cacheable = [e for e in events if e["model_id"] in ("base-large", "base-medium")]
    assert 370 <= per_mille(cacheable, lambda e: e["cache_read_tokens"] > 0) <= 430
    assert 0 < per_mille(events, lambda e: e["cache_write_tokens"] > 0) < 100
    assert 0 < per_mille(events, lambda e: e["cache_write_1h_tokens"] > 0) < 100
    tiered = [e for e in events if e["model_id"] != "ft:acme:support"]
    assert 130 <= per_mille(tiered, lambda e: e["service_tier"] == "batch") <= 170
    assert {e["model_id"] for e in events if e["service_tier"] in ("priority", "flex")} == {
        "base-medium",
        "ft:globex:chat",
    }
    assert {e["service_tier"] for e in events} == {None, "batch", "priority", "flex"}
    # a few long-context requests, on base-large only; every other prompt at most the threshold
    long_context = [e for e in events if prompt_size(e) > LONG_CONTEXT_ABOVE_TOKENS]
    assert {e["model_id"] for e in long_context} == {"base-large"}
    assert 0 < len(long_context) < len(events) // 500


def test_every_generated_event_prices_under_the_shipped_pricebooks() -> None:
    events = events_of(generate_hour(small_spec(events_per_hour=40_000), START))
    assert any(e["service_tier"] == "batch" and e["model_id"] == "base-small" for e in events)
    for version in load_pricebooks(SHIPPED_PRICEBOOKS).versions:
        large = version.models["base-large"].own_rates
        assert large is not None and large.long_context_above_tokens == LONG_CONTEXT_ABOVE_TOKENS
        unpriced = Counter(filter(None, (why_unpriced(version, event) for event in events)))
        assert not unpriced, (version.version, unpriced)


def test_principals_are_skewed_towards_the_first_ones() -> None:
    columns = generate_hour(small_spec(events_per_hour=20_000, principals=1_000), START)
    counts = Counter(columns["auth_id"])
    ranked = [counts[f"org-{n:04d}"] for n in range(1, 1_001)]
    assert ranked[0] == max(ranked)
    assert sum(ranked[:10]) > sum(ranked[500:])


def test_seed_loads_exactly_events_per_hour_in_each_hour(conn: psycopg.Connection) -> None:
    result = seed_events(conn, small_spec())
    conn.commit()
    assert result.events == 6_000
    per_hour = conn.execute(COUNT_PER_HOUR).fetchall()
    assert [(hour.replace(tzinfo=UTC), n) for hour, n in per_hour] == [
        (START + offset * HOUR, 2_000) for offset in range(3)
    ]


def test_event_ids_are_unique_and_carry_the_seed(conn: psycopg.Connection) -> None:
    seed_events(conn, small_spec())
    seed_events(conn, small_spec(seed=12))
    conn.commit()
    row = conn.execute(
        "SELECT count(*), count(DISTINCT event_id),"
        " count(*) FILTER (WHERE event_id LIKE 'ev-11-%%' OR event_id LIKE 'ev-12-%%')"
        " FROM billing_event"
    ).fetchone()
    assert row == (12_000, 12_000, 12_000)


def test_copied_rows_are_exactly_the_generated_events(conn: psycopg.Connection) -> None:
    spec = small_spec(hours=1, events_per_hour=500)
    seed_events(conn, spec)
    conn.commit()
    columns = generate_hour(spec, START)
    assert conn.execute(SELECT_EVENTS).fetchall() == sorted(tuple(row) for row in rows(columns))
    for occurred, ingested in zip(columns["occurred_at"], columns["ingested_at"], strict=True):
        assert START <= occurred < START + HOUR
        assert occurred < ingested < occurred + timedelta(minutes=5)


def test_reseeding_a_range_replaces_it_instead_of_duplicating(conn: psycopg.Connection) -> None:
    seed_events(conn, small_spec())
    conn.commit()
    before = digest(conn)
    again = seed_events(conn, small_spec())
    conn.commit()
    assert again.deleted == 6_000
    assert digest(conn) == before


def test_reseeding_leaves_other_seeds_and_other_hours_alone(conn: psycopg.Connection) -> None:
    seed_events(conn, small_spec(seed=12))
    seed_events(conn, small_spec(start=START + 3 * HOUR, hours=1))
    conn.commit()
    untouched = digest(conn)
    seed_events(conn, small_spec())
    seed_events(conn, small_spec())
    conn.commit()
    conn.execute(
        "DELETE FROM billing_event WHERE event_id LIKE 'ev-11-%%' AND occurred_at < %s",
        (START + 3 * HOUR,),
    )
    assert digest(conn) == untouched


def test_seed_parameters_that_describe_no_data_are_refused() -> None:
    with pytest.raises(WindowError):
        small_spec(start=START + timedelta(minutes=30))
    with pytest.raises(SeedError):
        small_spec(hours=0)
    with pytest.raises(SeedError):
        small_spec(events_per_hour=-1)
    with pytest.raises(SeedError):
        small_spec(principals=0)
    with pytest.raises(SeedError, match="no window holds"):
        small_spec(start=datetime(9999, 12, 31, 22, tzinfo=UTC), hours=5)


def test_seed_parameters_the_generator_cannot_key_are_refused_in_one_line() -> None:
    """numpy seeds from non-negative words: a negative seed, or an hour before 1970 (keyed
    by the hours since then), was a traceback. Found by a review of the command line."""
    with pytest.raises(SeedError, match="seed must be >= 0, not -1"):
        small_spec(seed=-1)
    with pytest.raises(SeedError, match="start must be 1970-01-01T00:00:00Z or later"):
        small_spec(start=datetime(1969, 12, 31, 23, tzinfo=UTC))


def test_demo_day_contains_every_interesting_case(conn: psycopg.Connection) -> None:
    day = demo_day(conn, START, seed=5, events_per_hour=300)
    conn.commit()
    count = conn.execute("SELECT count(*) FROM billing_event").fetchone()
    assert count == (day.events,)

    def one(query: str) -> object:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    # ambiguous: one (auth, model, hour) of an unlisted fine-tune with two bases, and one
    # with a base and a null
    ambiguous = conn.execute(
        "SELECT auth_id, model_id, array_agg(DISTINCT coalesce(base_model, 'null'))"
        " FROM billing_event WHERE model_id IN ('ft:initech:summarize', 'ft:globex:chat')"
        " GROUP BY auth_id, model_id, date_trunc('hour', occurred_at)"
        " HAVING count(DISTINCT coalesce(base_model, 'null')) > 1 ORDER BY 1"
    ).fetchall()
    assert [(auth, model, sorted(bases)) for auth, model, bases in ambiguous] == [
        ("org-0002", "ft:globex:chat", ["base-medium", "null"]),
        ("org-0004", "ft:initech:summarize", ["base-medium", "base-small"]),
    ]
    # unpriced: an unknown model, a fine-tune whose base is a fine-tune, one with no base
    assert one("SELECT count(*) FROM billing_event WHERE model_id = 'mystery-large'") == 4
    assert one("SELECT count(*) FROM billing_event WHERE base_model LIKE 'ft:%%'") == 3
    assert (
        one("SELECT count(*) FROM billing_event WHERE model_id LIKE 'ft:%%' AND base_model IS NULL")
        == 4  # ft:hooli:search (2) and the null half of the ambiguous case (2)
    )
    # invalid: negative tokens, blank ids
    assert one("SELECT count(*) FROM billing_event WHERE input_tokens < 0") == 1
    assert one("SELECT count(*) FROM billing_event WHERE output_tokens < 0") == 1
    assert one("SELECT count(*) FROM billing_event WHERE btrim(auth_id) = ''") == 2
    assert one("SELECT count(*) FROM billing_event WHERE model_id = ''") == 1
    # stragglers: ingested hours after their hour closed
    assert one(
        "SELECT count(*) FROM billing_event"
        " WHERE ingested_at > date_trunc('hour', occurred_at) + interval '4 hours'"
    ) == sum(case.count for case in DEMO_CASES if case.name == "straggler")
    # ordinary traffic: every event of it valid and non-negative
    assert (
        one(
            "SELECT count(*) FROM billing_event WHERE event_id ~ '^ev-5-[0-9]{10}-'"
            " AND (input_tokens < 0 OR output_tokens < 0 OR auth_id !~ '^org-[0-9]{4}$')"
        )
        == 0
    )


def test_demo_day_holds_every_row_of_the_case_table_as_written(conn: psycopg.Connection) -> None:
    demo_day(conn, START, seed=5, events_per_hour=100)
    for case in DEMO_CASES:
        params = {**vars(case), "hour": START + case.hour_offset * HOUR}
        row = conn.execute(CASE_ROW_EVENTS, params).fetchone()
        assert row == (case.count,), case


def test_demo_day_bills_its_ordinary_traffic_and_excepts_exactly_the_cases(
    conn: psycopg.Connection,
) -> None:
    demo_day(conn, START, seed=5, events_per_hour=200)
    conn.commit()
    pricebooks = load_pricebooks(SHIPPED_PRICEBOOKS)
    excepted: set[tuple[str, str, str]] = set()
    tiers: set[tuple[str, str]] = set()
    for offset in range(24):
        window = Window(START + offset * HOUR)
        result = rate_window(conn, window, pricebooks, "test-demo-day")
        excepted |= {(e.auth_id, e.model_id, e.reason) for e in result.exception_rows}
        tiers |= {(r.service_tier, r.context_tier) for r in stored_rollups(conn, window)}
        conn.rollback()
    # every case whose expected text names a reason, and nothing of the ordinary traffic
    assert excepted == {
        (case.auth_id, case.model_id, case.expected.split(":")[0])
        for case in DEMO_CASES
        if case.expected.split(":")[0] in REASONS
    }
    assert {reason for _, _, reason in excepted} == {AMBIGUOUS_BASE, UNPRICED, INVALID_EVENT}
    assert {
        ("standard", "standard"),
        ("standard", "long"),
        ("batch", "standard"),
        ("priority", "standard"),
        ("flex", "standard"),
    } <= tiers


def test_each_tier_cache_and_long_context_case_lands_where_expected(
    conn: psycopg.Connection,
) -> None:
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    pricebooks = load_pricebooks(SHIPPED_PRICEBOOKS)
    for name, (auth_id, model_id, service_tier, context_tier, cost) in CASE_ROLLUPS.items():
        rows = [case for case in DEMO_CASES if case.name == name]
        window = Window(START + rows[0].hour_offset * HOUR)
        rate_window(conn, window, pricebooks, "test-cases")
        key = (auth_id, model_id, service_tier, context_tier)
        [rollup] = [
            r
            for r in stored_rollups(conn, window)
            if (r.auth_id, r.model_id, r.service_tier, r.context_tier) == key
        ]
        conn.rollback()
        assert rollup.event_count == sum(case.count for case in rows), name
        for token_class in GENERATED_CLASSES:
            written = sum(getattr(case, f"{token_class}_tokens") * case.count for case in rows)
            assert rollup.tokens()[token_class] == written, (name, token_class)
        assert rollup.cost_usd == Decimal(cost), name
        assert any(f"${cost}" in case.expected for case in rows), name


def test_cached_tokens_in_a_tier_without_a_cache_rate_are_unpriced(
    conn: psycopg.Connection,
) -> None:
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    [case] = [case for case in DEMO_CASES if case.name == "unpriced_cache_in_batch"]
    window = Window(START + case.hour_offset * HOUR)
    rate_window(conn, window, load_pricebooks(SHIPPED_PRICEBOOKS), "test-unpriced-class")
    [excepted] = [e for e in stored_exceptions(conn, window) if e.auth_id == case.auth_id]
    assert (excepted.model_id, excepted.service_tier, excepted.context_tier) == (
        "base-small",
        "batch",
        "standard",
    )
    assert (excepted.reason, excepted.detail) == (
        UNPRICED,
        "no cache_read rate in batch rates of base-small",
    )
    assert excepted.cache_read_tokens == case.cache_read_tokens * case.count
    assert excepted.detail in case.expected


def test_late_events_arrive_after_a_rating_and_are_idempotent(conn: psycopg.Connection) -> None:
    window = Window(START + 2 * HOUR)
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    pricebooks = load_pricebooks(project_root() / "pricebooks")
    first = rate_window(conn, window, pricebooks, "test-first")

    assert add_late_events(conn, window.start, 7, seed=5) == 7
    conn.commit()
    assert add_late_events(conn, window.start, 7, seed=5) == 0
    assert add_late_events(conn, window.start, 9, seed=5) == 2
    conn.commit()
    late = conn.execute(
        "SELECT count(*) FROM billing_event WHERE event_id LIKE 'ev-5-late-%%'"
        " AND occurred_at >= %s AND occurred_at < %s AND ingested_at > %s",
        (window.start, window.end, first.rated_at),
    ).fetchone()
    assert late == (9,)
    conn.rollback()
    again = rate_window(conn, window, pricebooks, "test-again")
    assert again.events_read == first.events_read + 9


def test_demo_day_reloaded_is_the_same_day(conn: psycopg.Connection) -> None:
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    add_late_events(conn, START, 3, seed=5)
    conn.commit()
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    first = digest(conn)
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    assert digest(conn) == first
    late = conn.execute("SELECT count(*) FROM billing_event WHERE event_id LIKE '%%late%%'")
    assert late.fetchone() == (0,)


def test_summary_reports_hours_principals_reasons_and_exact_totals(
    conn: psycopg.Connection,
) -> None:
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    pricebooks = load_pricebooks(SHIPPED_PRICEBOOKS)
    for offset in range(24):
        rate_window(conn, Window(START + offset * HOUR), pricebooks, "test-summary")
    text = summarize(conn, START, START + 24 * HOUR)
    conn.rollback()
    total = conn.execute("SELECT sum(cost_usd), sum(event_count) FROM rated_usage").fetchone()
    assert total is not None
    assert "Cost per hour" in text
    assert "2026-06-15 23:00" in text
    assert "Top 10 principals by cost" in text
    assert "org-0001" in text
    for reason in (AMBIGUOUS_BASE, UNPRICED, INVALID_EVENT):
        assert reason in text
    assert f"events billed:   {total[1]:,}" in text
    # the day's exact total three times: under the classes, under the tiers, in Totals
    assert text.count(f"(exact: {format(total[0], ',f')})") == 3
    assert "Tokens and cost per class" in text and "Cost per service tier and context" in text
    for section_row in (
        r"\ncache_read ",
        r"\ncache_write_1h ",
        r"\npriority +standard ",
        r"\nstandard +long ",
    ):
        assert re.search(section_row, text), section_row


def test_per_class_and_per_tier_costs_add_up_exactly_to_the_days_cost(
    conn: psycopg.Connection,
) -> None:
    demo_day(conn, START, seed=5, events_per_hour=100)
    conn.commit()
    pricebooks = load_pricebooks(SHIPPED_PRICEBOOKS)
    for offset in range(24):
        rate_window(conn, Window(START + offset * HOUR), pricebooks, "test-classes")
    end = START + 24 * HOUR
    classes, tiers = cost_by_token_class(conn, START, end), cost_by_tier(conn, START, end)
    total = conn.execute("SELECT sum(cost_usd), sum(event_count) FROM rated_usage").fetchone()
    conn.rollback()
    assert total is not None
    assert sum(c.cost_usd for c in classes) == total[0]
    assert sum(t.cost_usd for t in tiers) == total[0]
    assert sum(t.events for t in tiers) == total[1]
    assert sum(c.tokens for c in classes) == sum(t.tokens for t in tiers)
    assert [c.token_class for c in classes] == list(GENERATED_CLASSES)
    assert all(c.tokens > 0 and c.cost_usd > 0 for c in classes)


def test_summary_of_an_unrated_range_says_so(conn: psycopg.Connection) -> None:
    text = summarize(conn, START, START + 2 * HOUR)
    assert "(nothing billed)" in text
    assert "(none: every event was billed)" in text


def test_seed_command_loads_the_range_and_reports_the_rate(
    warehouse_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from rating_pipeline.cli import main

    assert main(["demo", "seed", "--start", "2026-06-15T00:00:00Z", "--hours", "2",
                 "--events-per-hour", "1000", "--seed", "3"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "loaded 2,000 events into billing_event" in out
    assert "events/s" in out
    with psycopg.connect(warehouse_env) as check:
        assert check.execute("SELECT count(*) FROM billing_event").fetchone() == (2_000,)


def test_a_seed_into_closed_hours_warns_that_rating_them_again_adjusts_the_next_invoice(
    warehouse_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seeding replaces the range's events even in a closed period, as upstream's late
    events land there too; but the README's trial commands, run after the demo closed
    June, re-seeded its closed hours without a word, and the next ``rate`` put 8,271 open
    adjustments on July's invoice. Found by an outside tour."""
    from rating_pipeline.cli import main

    seed = ["demo", "seed", "--hours", "2", "--events-per-hour", "100", "--seed", "3"]
    assert main([*seed, "--start", "2026-06-15T00:00:00Z"]) == 0
    assert capsys.readouterr().err == ""  # no close yet
    with psycopg.connect(warehouse_env) as conn:
        rated = load_pricebooks(project_root() / "pricebooks")
        rate_window(conn, Window(datetime(2026, 6, 15, tzinfo=UTC)), rated, "test-closed-seed")
        close_period(conn, datetime(2026, 6, 15, 1, tzinfo=UTC), "test")

    assert main([*seed, "--start", "2026-06-15T00:00:00Z"]) == 0

    assert capsys.readouterr().err.splitlines() == [
        "warning: 1 of the seeded hours is closed (the periods are closed through "
        "2026-06-15T01:00:00+00:00), from 2026-06-15T00:00:00+00:00: its invoice stands, and "
        "rating it again bills what changed as adjustments on the next invoice "
        "(docs/periods.md)"
    ]


def test_summary_lists_principals_costliest_first_within_its_range_rounding_half_even(
    database_url: str, conn: psycopg.Connection
) -> None:
    version = make_version({"m": own("1", "0")})
    first = START + timedelta(minutes=5)
    insert_events(
        database_url,
        [
            make_event("org-cheap", "m", None, 250, 0, occurred_at=first),  # 0.00025
            make_event("org-dear", "m", None, 1_000, 0, occurred_at=first),  # 0.001
            *(make_event(f"org-{n:02}", "mystery", occurred_at=first) for n in range(20)),
            make_event("org-next-hour", "m", None, 10**6, 0, occurred_at=first + HOUR),
        ],
    )
    for hour in (START, START + HOUR):
        rate_window(conn, Window(hour), Pricebooks((version,)), "test-summary")

    text = summarize(conn, START, START + HOUR)

    principals = text.split("principals by cost")[1].split("Exceptions by reason")[0]
    assert "org-next-hour" not in principals  # its window is outside the range
    assert principals.index("org-dear") < principals.index("org-cheap")
    assert re.search(r"\norg-cheap .* 0\.0002 ", principals)  # 0.00025, half-even
    assert "events read:     22\n" in text  # 2 billed + 20 excepted
    assert "cost USD:        0.0012 (exact: 0.001250000000)" in text  # half-even
    assert "more" not in text  # exactly EXCEPTIONS_LISTED exception rows: all listed


def test_invoice_summary_residuals_are_the_invoiced_total_minus_the_exact_sum(
    database_url: str, conn: psycopg.Connection
) -> None:
    """Residual = amount - amount_exact (operations.md), per account and for all of them:
    org-a's 0.00025 USD invoices 0.00, org-b's 0.006 USD invoices 0.01."""
    version = make_version({"m": own("1", "0")})
    at = START + timedelta(minutes=5)
    insert_events(
        database_url,
        [
            make_event("org-a", "m", None, 250, 0, occurred_at=at),
            make_event("org-b", "m", None, 6_000, 0, occurred_at=at),
        ],
    )
    rate_window(conn, Window(START), Pricebooks((version,)), "test-invoice-summary")
    build_invoice(conn, START.replace(day=1), "test-invoice-summary")

    text = invoices_summary(conn, [START])

    assert text.startswith("Invoice 2026-06 (open), per account\n")
    assert re.search(r"\norg-a +1 +0\.000250000000 +0\.00 +-0\.000250000000\n", text), text
    assert re.search(r"\norg-b +1 +0\.006000000000 +0\.01 +0\.004000000000\n", text), text
    assert text.endswith(
        "  all accounts: 0.01 USD invoiced, 0.006250000000 exact, residual 0.003750000000\n"
    )


def test_an_id_that_does_not_print_cannot_write_a_line_of_the_summary(
    database_url: str, conn: psycopg.Connection
) -> None:
    """Upstream's ids may hold a line break or a terminal escape: the summary's principals,
    exceptions and invoice accounts (an unmapped auth_id is its own account) show it
    quoted, so it cannot forge a line of the report."""
    version = make_version({"m": own("1", "0")})
    at = START + timedelta(minutes=5)
    forged = "org-x\nall accounts: 0.00 USD invoiced\x1b[2K"
    insert_events(
        database_url,
        [
            make_event(forged, "m", None, 1_000, 0, occurred_at=at),
            make_event(forged, "mystery", occurred_at=at),  # an exception row
        ],
    )
    rate_window(conn, Window(START), Pricebooks((version,)), "test-unprintable")
    build_invoice(conn, START.replace(day=1), "test-unprintable")

    text = summarize(conn, START, START + HOUR) + invoices_summary(conn, [START])

    assert "\x1b" not in text and "\nall accounts: 0.00" not in text
    assert text.count(repr(forged)) == 3


def test_summary_of_a_closed_hour_corrected_late_lists_its_adjustments(
    database_url: str, conn: psycopg.Connection
) -> None:
    """A late event in a closed hour bills as an adjustment, not in rated_usage: the
    report's totals say so, or the hour's correction would not show anywhere in it. Its
    "events read" is what the hour's latest rating read: billed output's events + the
    adjustments' + the exceptions' (contract 10), not the frozen rows' and exceptions'."""
    version = make_version({"m": own("1", "0")})
    pricebooks = Pricebooks((version,))
    at = START + timedelta(minutes=5)
    insert_events(database_url, [make_event("org-a", "m", None, 1_000, 0, occurred_at=at)])
    rate_window(conn, Window(START), pricebooks, "test-adjustments")
    close_period(conn, START + HOUR, "test")
    late = [
        make_event("org-a", "m", None, 500, 0, occurred_at=at),
        make_event("", "m", None, 1, 0, occurred_at=at),  # invalid: blank auth_id
    ]
    insert_events(database_url, late)
    latest = rate_window(conn, Window(START), pricebooks, "test-adjustments")

    text = summarize(conn, START, START + HOUR)

    assert "  cost USD:        0.0010 (exact: 0.001000000000)\n" in text  # the frozen row
    assert (
        "  adjustments:     1 rows, +1 events, cost USD 0.0005 (exact: 0.000500000000): "
        "closed hours' corrections, each billed on the invoice after its hour's close\n"
    ) in text
    assert "  events billed:   1 in 1 rollups\n  events excepted: 1\n" in text
    assert latest.events_read == 3 and "  events read:     3\n" in text, text


@pytest.mark.parametrize(
    ("module", "stopped_in", "loaded", "said"),
    [
        ("seed", "copy_events", 0, "before its commit: nothing was loaded"),
        ("commands", "analyze_billing_event", 2_000, "after its commit: the 2,000 events"),
    ],
)
def test_a_seed_stopped_by_ctrl_c_says_whether_its_events_were_loaded(
    warehouse_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    stopped_in: str,
    loaded: int,
    said: str,
) -> None:
    from rating_pipeline.demo import commands, seed

    where = {"seed": seed, "commands": commands}[module]
    real = getattr(where, stopped_in)

    def interrupted(conn: psycopg.Connection, *args: object) -> None:
        real(conn, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(where, stopped_in, interrupted)
    with pytest.raises(KeyboardInterrupt):
        commands.seed_command(START, 2, 1_000, 3)

    assert said in capsys.readouterr().err
    with psycopg.connect(warehouse_env) as check:
        assert check.execute("SELECT count(*) FROM billing_event").fetchone() == (loaded,)
