"""Closed periods, adjustments and invoice lines (contract sections 10 and 11).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

Adds ``rating_period_close`` (the append-only close record) and ``rating_period_close_total``
(what each close recorded per month and account), ``rating_adjustment`` and its archive,
``billing_account`` and ``invoice_line``, and ``round_half_even``, the one rounding point
of an invoice amount. ``rating_log`` gains the adjustment counts of a closed window's rating.
Downgrade refuses while any of the new tables holds a row: closes and invoices are history.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection, text

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.warehouse.migrations import lock_tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TOKEN_CLASSES = (
    "input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning",
    "audio_input", "audio_output", "image_input",
)  # fmt: skip
KNOWN_CLASS = "token_class IN (" + ", ".join(f"'{c}'" for c in TOKEN_CLASSES) + ")"
HOUR_ALIGNED = "({column} AT TIME ZONE 'UTC') = date_trunc('hour', {column} AT TIME ZONE 'UTC')"
MONTH_ALIGNED = "({column} AT TIME ZONE 'UTC') = date_trunc('month', {column} AT TIME ZONE 'UTC')"
TIERS_KNOWN = (
    "service_tier IN ('standard', 'batch', 'priority', 'flex') "
    "AND context_tier IN ('standard', 'long')"
)

# Half-even to ``places``: round() on numeric rounds a tie away from zero, so a tie whose
# truncation is already even keeps the truncation. Inlined by the planner (one SELECT).
CREATE_ROUND_HALF_EVEN = """
CREATE FUNCTION round_half_even(value numeric, places integer) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN abs(value - trunc(value, places)) = 0.5 * 10::numeric ^ (-places)
             AND mod(trunc(value * 10::numeric ^ places), 2) = 0
        THEN trunc(value, places)
        ELSE round(value, places)
    END
$$
"""

CREATE_PERIOD_CLOSE = f"""
CREATE TABLE rating_period_close (
    close_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    closed_through timestamptz NOT NULL UNIQUE,
    closed_at timestamptz NOT NULL,
    closed_by text NOT NULL,
    note text NULL,
    CONSTRAINT rating_period_close_through_is_utc_hour CHECK (
        {HOUR_ALIGNED.format(column="closed_through")}
    ),
    CONSTRAINT rating_period_close_before_it_was_made CHECK (closed_through <= closed_at)
)
"""

CREATE_PERIOD_CLOSE_TOTAL = f"""
CREATE TABLE rating_period_close_total (
    month timestamptz NOT NULL,
    account_id text NOT NULL,
    close_id bigint NOT NULL REFERENCES rating_period_close (close_id),
    line_count integer NOT NULL,
    amount_exact numeric(50, 12) NOT NULL,
    amount numeric(40, 2) NOT NULL,
    lines_sha256 text NOT NULL,
    PRIMARY KEY (month, account_id),
    CONSTRAINT rating_period_close_total_month_is_utc_month CHECK (
        {MONTH_ALIGNED.format(column="month")}
    )
)
"""

ADJUSTMENT_COLUMNS = """
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    service_tier text NOT NULL,
    context_tier text NOT NULL,
    token_class text NOT NULL,
    unit_rate_per_mtok numeric(24, 6) NOT NULL,
    event_count bigint NOT NULL,
    quantity_tokens numeric(30, 0) NOT NULL,
    cost_usd numeric(50, 12) NOT NULL,
    bill_month timestamptz NOT NULL,
    pricebook_version text NOT NULL,
    pricebook_sha256 text NOT NULL,
    rated_at timestamptz NOT NULL,
    run_id text NOT NULL,
    invoiced_by bigint NULL REFERENCES rating_period_close (close_id)"""

CREATE_ADJUSTMENT = f"""
CREATE TABLE rating_adjustment (
    adjustment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    {ADJUSTMENT_COLUMNS},
    CONSTRAINT rating_adjustment_window_is_utc_hour CHECK (
        window_end = window_start + interval '1 hour'
        AND {HOUR_ALIGNED.format(column="window_start")}
    ),
    CONSTRAINT rating_adjustment_bill_month_is_utc_month CHECK (
        {MONTH_ALIGNED.format(column="bill_month")}
    ),
    CONSTRAINT rating_adjustment_keys_known CHECK ({TIERS_KNOWN} AND {KNOWN_CLASS}),
    CONSTRAINT rating_adjustment_rate_not_negative CHECK (unit_rate_per_mtok >= 0),
    CONSTRAINT rating_adjustment_events_ride_on_input CHECK (
        event_count = 0 OR token_class = 'input'
    ),
    CONSTRAINT rating_adjustment_not_zero CHECK (event_count <> 0 OR quantity_tokens <> 0),
    CONSTRAINT rating_adjustment_cost_reconstructs CHECK (
        cost_usd * 1000000 = quantity_tokens * unit_rate_per_mtok
    )
)
"""
# One open row per rollup key, class and rate; stamped rows repeat keys, close after close.
CREATE_ADJUSTMENT_INDEXES = (
    """
    CREATE UNIQUE INDEX rating_adjustment_open_key ON rating_adjustment (
        window_start, auth_id, model_id, service_tier, context_tier, token_class,
        unit_rate_per_mtok
    ) WHERE invoiced_by IS NULL
    """,
    "CREATE INDEX rating_adjustment_window ON rating_adjustment (window_start)",
    "CREATE INDEX rating_adjustment_bill_month ON rating_adjustment (bill_month)",
)
CREATE_ADJUSTMENT_ARCHIVE = f"""
CREATE TABLE rating_adjustment_archive (
    archive_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    adjustment_id bigint NOT NULL,
    {ADJUSTMENT_COLUMNS.replace(" REFERENCES rating_period_close (close_id)", "")},
    change text NOT NULL CHECK (change IN ('updated', 'deleted')),
    superseded_at timestamptz NOT NULL,
    superseded_by_run_id text NOT NULL
)
"""
CREATE_ADJUSTMENT_ARCHIVE_INDEX = (
    "CREATE INDEX rating_adjustment_archive_window "
    "ON rating_adjustment_archive (window_start, superseded_at)"
)

CREATE_BILLING_ACCOUNT = """
CREATE TABLE billing_account (
    auth_id text PRIMARY KEY,
    account_id text NOT NULL,
    CONSTRAINT billing_account_ids_keyable CHECK (
        length(auth_id) BETWEEN 1 AND 256 AND length(account_id) BETWEEN 1 AND 256
    )
)
"""

CREATE_INVOICE_LINE = f"""
CREATE TABLE invoice_line (
    month timestamptz NOT NULL,
    account_id text NOT NULL,
    kind text NOT NULL,
    model_id text NOT NULL,
    service_tier text NOT NULL,
    context_tier text NOT NULL,
    token_class text NOT NULL,
    unit_rate_per_mtok numeric(24, 6) NOT NULL,
    quantity_tokens numeric(30, 0) NOT NULL,
    amount_exact numeric(50, 12) NOT NULL,
    amount numeric(40, 2) NOT NULL,
    built_at timestamptz NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (
        month, account_id, kind, model_id, service_tier, context_tier, token_class,
        unit_rate_per_mtok
    ),
    CONSTRAINT invoice_line_month_is_utc_month CHECK ({MONTH_ALIGNED.format(column="month")}),
    CONSTRAINT invoice_line_keys_known CHECK (
        kind IN ('usage', 'adjustment') AND {TIERS_KNOWN} AND {KNOWN_CLASS}
    ),
    CONSTRAINT invoice_line_not_zero CHECK (quantity_tokens <> 0),
    CONSTRAINT invoice_line_amount_exact_reconstructs CHECK (
        amount_exact * 1000000 = quantity_tokens * unit_rate_per_mtok
    ),
    CONSTRAINT invoice_line_amount_rounds_half_even CHECK (
        amount = round_half_even(amount_exact, 2)
    )
)
"""

ADD_LOG_COLUMNS = """
ALTER TABLE rating_log
    ADD COLUMN window_closed boolean NOT NULL DEFAULT false,
    ADD COLUMN adjustments_inserted integer NOT NULL DEFAULT 0,
    ADD COLUMN adjustments_updated integer NOT NULL DEFAULT 0,
    ADD COLUMN adjustments_deleted integer NOT NULL DEFAULT 0,
    ADD COLUMN adjustments_unchanged integer NOT NULL DEFAULT 0,
    ADD COLUMN open_adjustment_cost_usd numeric(50, 12) NOT NULL DEFAULT 0
"""

NEW_TABLES = (
    "invoice_line", "billing_account", "rating_adjustment_archive", "rating_adjustment",
    "rating_period_close_total", "rating_period_close",
)  # fmt: skip
DROP_LOG_COLUMNS = """
ALTER TABLE IF EXISTS rating_log
    DROP COLUMN IF EXISTS window_closed,
    DROP COLUMN IF EXISTS adjustments_inserted,
    DROP COLUMN IF EXISTS adjustments_updated,
    DROP COLUMN IF EXISTS adjustments_deleted,
    DROP COLUMN IF EXISTS adjustments_unchanged,
    DROP COLUMN IF EXISTS open_adjustment_cost_usd
"""
DROP_ROUND_HALF_EVEN = "DROP FUNCTION IF EXISTS round_half_even(numeric, integer)"
PRESENT = "SELECT to_regclass(:table) IS NOT NULL"
COUNT_ROWS = "SELECT count(*) FROM {table}"


def upgrade() -> None:
    op.execute(CREATE_ROUND_HALF_EVEN)
    op.execute(CREATE_PERIOD_CLOSE)
    op.execute(CREATE_PERIOD_CLOSE_TOTAL)
    op.execute(CREATE_ADJUSTMENT)
    for statement in CREATE_ADJUSTMENT_INDEXES:
        op.execute(statement)
    op.execute(CREATE_ADJUSTMENT_ARCHIVE)
    op.execute(CREATE_ADJUSTMENT_ARCHIVE_INDEX)
    op.execute(CREATE_BILLING_ACCOUNT)
    op.execute(CREATE_INVOICE_LINE)
    op.execute(ADD_LOG_COLUMNS)


class DowngradeWouldDropInvoicedHistory(RatingPipelineError):
    """Downgrading below 0011 would drop closes, adjustments, accounts or invoice lines."""


def check_downgrade(bind: Connection) -> None:
    """Raise DowngradeWouldDropInvoicedHistory while any table of this revision holds a
    row. ``migrations.downgrade`` calls it before undoing any revision."""
    held = [
        f"{count} {table} row{'s' * (count != 1)}"
        for table in NEW_TABLES
        if bind.execute(text(PRESENT), {"table": table}).scalar()
        for count in [bind.execute(text(COUNT_ROWS.format(table=table))).scalar()]
        if count
    ]
    if held:
        raise DowngradeWouldDropInvoicedHistory(
            f"refusing to downgrade below revision 0011: {', '.join(held)}; closes, "
            "adjustments, accounts and invoice lines are what was invoiced and would be lost"
        )


def downgrade() -> None:
    lock_tables(op.get_bind(), NEW_TABLES)  # a close committed since the first count counts
    check_downgrade(op.get_bind())
    for table in NEW_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute(DROP_LOG_COLUMNS)
    op.execute(DROP_ROUND_HALF_EVEN)
