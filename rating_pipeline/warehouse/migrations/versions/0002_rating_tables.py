"""The rating outputs: rated_usage, rating_exception, their archives and rating_log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-06-15

Money is numeric everywhere, never float. Token sums are numeric(30, 0): a sum of bigints
can exceed bigint. Each output table's primary key leads with window_start, so reconciling
one window reads only that window's rows.
"""

from __future__ import annotations

from alembic import op

from rating_pipeline.warehouse.migrations import refuse_to_drop_rows

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CREATE_RATED_USAGE = """
CREATE TABLE rated_usage (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    event_count bigint NOT NULL,
    input_tokens numeric(30, 0) NOT NULL,
    output_tokens numeric(30, 0) NOT NULL,
    rate_source text NOT NULL,
    derivation_base text NULL,
    multiplier numeric NULL,
    input_rate_per_mtok numeric(24, 6) NOT NULL,
    output_rate_per_mtok numeric(24, 6) NOT NULL,
    cost_usd numeric(50, 12) NOT NULL,
    pricebook_version text NOT NULL,
    pricebook_sha256 text NOT NULL,
    rated_at timestamptz NOT NULL,
    run_id text NOT NULL,
    CONSTRAINT rated_usage_pkey PRIMARY KEY (window_start, auth_id, model_id),
    CONSTRAINT rated_usage_window_is_utc_hour CHECK (
        window_end = window_start + interval '1 hour'
        AND (window_start AT TIME ZONE 'UTC') = date_trunc('hour', window_start AT TIME ZONE 'UTC')
    ),
    CONSTRAINT rated_usage_rate_source_known CHECK (rate_source IN ('own', 'declared', 'event')),
    CONSTRAINT rated_usage_derivation_matches_source CHECK (
        (rate_source = 'own') = (derivation_base IS NULL AND multiplier IS NULL)
    ),
    CONSTRAINT rated_usage_amounts_not_negative CHECK (
        event_count > 0 AND input_tokens >= 0 AND output_tokens >= 0
        AND input_rate_per_mtok >= 0 AND output_rate_per_mtok >= 0
    ),
    -- Multiplication, not division: numeric division rounds to a computed scale.
    CONSTRAINT rated_usage_cost_reconstructs CHECK (
        cost_usd * 1000000
        = input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
    )
)
"""

CREATE_RATING_EXCEPTION = """
CREATE TABLE rating_exception (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    event_count bigint NOT NULL,
    input_tokens numeric(30, 0) NOT NULL,
    output_tokens numeric(30, 0) NOT NULL,
    pricebook_version text NOT NULL,
    rated_at timestamptz NOT NULL,
    run_id text NOT NULL,
    CONSTRAINT rating_exception_pkey PRIMARY KEY (window_start, auth_id, model_id, reason),
    CONSTRAINT rating_exception_window_is_utc_hour CHECK (
        window_end = window_start + interval '1 hour'
        AND (window_start AT TIME ZONE 'UTC') = date_trunc('hour', window_start AT TIME ZONE 'UTC')
    ),
    CONSTRAINT rating_exception_reason_known CHECK (
        reason IN ('unpriced', 'ambiguous_base', 'invalid_event')
    ),
    CONSTRAINT rating_exception_has_events CHECK (event_count > 0)
)
"""

# Superseded rows, kept with their old values: every live column, then the archive's own.
CREATE_RATED_USAGE_ARCHIVE = """
CREATE TABLE rated_usage_archive (
    archive_id bigserial PRIMARY KEY,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    event_count bigint NOT NULL,
    input_tokens numeric(30, 0) NOT NULL,
    output_tokens numeric(30, 0) NOT NULL,
    rate_source text NOT NULL,
    derivation_base text NULL,
    multiplier numeric NULL,
    input_rate_per_mtok numeric(24, 6) NOT NULL,
    output_rate_per_mtok numeric(24, 6) NOT NULL,
    cost_usd numeric(50, 12) NOT NULL,
    pricebook_version text NOT NULL,
    pricebook_sha256 text NOT NULL,
    rated_at timestamptz NOT NULL,
    run_id text NOT NULL,
    change text NOT NULL CONSTRAINT rated_usage_archive_change_known
        CHECK (change IN ('updated', 'deleted')),
    superseded_at timestamptz NOT NULL,
    superseded_by_run_id text NOT NULL
)
"""

CREATE_RATED_USAGE_ARCHIVE_INDEX = """
CREATE INDEX rated_usage_archive_window_start_idx ON rated_usage_archive (window_start)
"""

CREATE_RATING_EXCEPTION_ARCHIVE = """
CREATE TABLE rating_exception_archive (
    archive_id bigserial PRIMARY KEY,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    event_count bigint NOT NULL,
    input_tokens numeric(30, 0) NOT NULL,
    output_tokens numeric(30, 0) NOT NULL,
    pricebook_version text NOT NULL,
    rated_at timestamptz NOT NULL,
    run_id text NOT NULL,
    change text NOT NULL CONSTRAINT rating_exception_archive_change_known
        CHECK (change IN ('updated', 'deleted')),
    superseded_at timestamptz NOT NULL,
    superseded_by_run_id text NOT NULL
)
"""

CREATE_RATING_EXCEPTION_ARCHIVE_INDEX = """
CREATE INDEX rating_exception_archive_window_start_idx
    ON rating_exception_archive (window_start)
"""

CREATE_RATING_LOG = """
CREATE TABLE rating_log (
    log_id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    pricebook_version text NOT NULL,
    pricebook_sha256 text NOT NULL,
    rows_inserted integer NOT NULL,
    rows_updated integer NOT NULL,
    rows_deleted integer NOT NULL,
    rows_unchanged integer NOT NULL,
    exceptions_inserted integer NOT NULL,
    exceptions_updated integer NOT NULL,
    exceptions_deleted integer NOT NULL,
    exceptions_unchanged integer NOT NULL,
    events_read bigint NOT NULL,
    events_rated bigint NOT NULL,
    events_excepted bigint NOT NULL,
    total_cost_usd numeric(50, 12) NOT NULL,
    output_checksum text NOT NULL,
    max_ingested_at timestamptz NULL,
    rated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rating_log_events_conserved CHECK (events_read = events_rated + events_excepted)
)
"""

CREATE_RATING_LOG_INDEX = """
CREATE INDEX rating_log_window_start_idx ON rating_log (window_start, log_id)
"""

# What the downgrade drops, the tables ratings write first leading: the order it locks them.
DROPPED = (
    "rated_usage",
    "rating_exception",
    "rated_usage_archive",
    "rating_exception_archive",
    "rating_log",
)
# Reverse order of creation; IF EXISTS so that a repeated or partial downgrade is harmless.
DROP_TABLES = (
    "DROP TABLE IF EXISTS rating_log",
    "DROP TABLE IF EXISTS rating_exception_archive",
    "DROP TABLE IF EXISTS rated_usage_archive",
    "DROP TABLE IF EXISTS rating_exception",
    "DROP TABLE IF EXISTS rated_usage",
)


def upgrade() -> None:
    for statement in (
        CREATE_RATED_USAGE,
        CREATE_RATING_EXCEPTION,
        CREATE_RATED_USAGE_ARCHIVE,
        CREATE_RATED_USAGE_ARCHIVE_INDEX,
        CREATE_RATING_EXCEPTION_ARCHIVE,
        CREATE_RATING_EXCEPTION_ARCHIVE_INDEX,
        CREATE_RATING_LOG,
        CREATE_RATING_LOG_INDEX,
    ):
        op.execute(statement)


def downgrade() -> None:
    refuse_to_drop_rows(op.get_bind(), revision, DROPPED)
    for statement in DROP_TABLES:
        op.execute(statement)
