"""(e): the baseline a user would write without the product.

pandas reads the window's raw events, groups them, prices each group with ``Decimal``
(own rate, declared derivation, or the event's base through ``fine_tune_multiplier``;
anything else silently skipped: no exceptions, no ambiguity gate, no audit), then upserts
row by row with ``INSERT ... ON CONFLICT DO UPDATE``, one statement per rollup, into a copy
of ``rated_usage`` (``bench_naive_rated_usage``), and commits once.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg
import sqlalchemy
from sqlalchemy.pool import NullPool

from rating_pipeline.money import EXACT
from rating_pipeline.pricebook.model import (
    STANDARD,
    ModelRates,
    Pricebooks,
    RateSet,
    is_derivation_base,
    is_fine_tune,
)
from rating_pipeline.warehouse.database import connect
from rating_pipeline.windows import Window

CREATE_NAIVE_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_naive_rated_usage (LIKE rated_usage INCLUDING ALL)"
)
TRUNCATE_NAIVE_TABLE = "TRUNCATE bench_naive_rated_usage"
READ_WINDOW_EVENTS = sqlalchemy.text(
    "SELECT event_id, auth_id, model_id, base_model, input_tokens, output_tokens"
    " FROM billing_event WHERE occurred_at >= :start AND occurred_at < :end"
)
UPSERT_ROLLUP = """
INSERT INTO bench_naive_rated_usage (
    window_start, window_end, auth_id, model_id, event_count, input_tokens, output_tokens,
    rate_source, derivation_base, multiplier, input_rate_per_mtok, output_rate_per_mtok,
    cost_usd, pricebook_version, pricebook_sha256, rated_at, run_id, service_tier,
    context_tier
) VALUES (
    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), %s, 'standard',
    'standard'
)
ON CONFLICT (window_start, auth_id, model_id, service_tier, context_tier) DO UPDATE SET
    event_count = EXCLUDED.event_count,
    input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens,
    rate_source = EXCLUDED.rate_source,
    derivation_base = EXCLUDED.derivation_base,
    multiplier = EXCLUDED.multiplier,
    input_rate_per_mtok = EXCLUDED.input_rate_per_mtok,
    output_rate_per_mtok = EXCLUDED.output_rate_per_mtok,
    cost_usd = EXCLUDED.cost_usd,
    pricebook_version = EXCLUDED.pricebook_version,
    pricebook_sha256 = EXCLUDED.pricebook_sha256,
    rated_at = EXCLUDED.rated_at,
    run_id = EXCLUDED.run_id
"""


def prepare(url: str) -> None:
    """Create (or empty) the naive baseline's output table."""
    with connect(url) as conn:
        conn.execute(CREATE_NAIVE_TABLE)
        conn.execute(TRUNCATE_NAIVE_TABLE)
        conn.commit()


def _engine(url: str) -> sqlalchemy.Engine:
    def create_connection() -> psycopg.Connection:
        return connect(url)

    return sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=create_connection, poolclass=NullPool
    )


def _rate(
    pricebooks: Pricebooks, window: Window, model_id: str, base: str | None
) -> tuple[str, str | None, Decimal | None, RateSet] | None:
    version = pricebooks.version_for(window)
    entry = version.models.get(model_id)
    if entry is not None and entry.own_rates is not None:
        return "own", None, None, _standard(entry.own_rates)
    if entry is not None and entry.derived_from is not None and entry.multiplier is not None:
        base_entry = version.models[entry.derived_from]
        assert base_entry.own_rates is not None
        rates = base_entry.own_rates.derived(entry.multiplier)
        return "declared", entry.derived_from, entry.multiplier, _standard(rates)
    multiplier = version.fine_tune_multiplier
    if is_fine_tune(model_id) and multiplier is not None and is_derivation_base(version, base):
        assert base is not None
        base_rates = version.models[base].own_rates
        assert base_rates is not None
        return "event", base, multiplier, _standard(base_rates.derived(multiplier))
    return None


def _standard(rates: ModelRates) -> RateSet:
    return rates.sets[(STANDARD, STANDARD)]


def rate_naively(url: str, window: Window, pricebooks: Pricebooks, run_id: str) -> int:
    """Rate ``window`` the naive way; return the rows upserted."""
    version = pricebooks.version_for(window)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            events = pd.read_sql(
                READ_WINDOW_EVENTS, connection, params={"start": window.start, "end": window.end}
            )
    finally:
        engine.dispose()
    groups = (
        events.groupby(["auth_id", "model_id", "base_model"], dropna=False)
        .agg(
            event_count=("event_id", "count"),
            input_tokens=("input_tokens", "sum"),
            output_tokens=("output_tokens", "sum"),
        )
        .reset_index()
    )
    written = 0
    with connect(url) as conn, conn.cursor() as cursor:
        rows: Iterable[Any] = groups.itertuples(index=False)
        for row in rows:
            base = row.base_model if isinstance(row.base_model, str) else None
            priced = _rate(pricebooks, window, str(row.model_id), base)
            if priced is None:
                continue
            source, derivation_base, multiplier, rate = priced
            input_tokens = int(row.input_tokens)
            output_tokens = int(row.output_tokens)
            cursor.execute(
                UPSERT_ROLLUP,
                (
                    window.start,
                    window.end,
                    row.auth_id,
                    row.model_id,
                    int(row.event_count),
                    input_tokens,
                    output_tokens,
                    source,
                    derivation_base,
                    multiplier,
                    rate.rates["input"],
                    rate.rates["output"],
                    EXACT.scaleb(
                        EXACT.add(EXACT.multiply(input_tokens, rate.rates["input"]),
                                  EXACT.multiply(output_tokens, rate.rates["output"])), -6
                    ),
                    version.version,
                    version.sha256,
                    run_id,
                ),
            )  # fmt: skip
            written += 1
        conn.commit()
    return written
