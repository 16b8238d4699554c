"""Token classes, service tiers and context tiers (contract sections 3 and 6).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

``billing_event`` gains the absent class columns (bigint, default 0) and ``service_tier``
(text, null): constant defaults, so PostgreSQL 11+ adds them to the catalog only, without
rewriting the table, in a statement of their own under a lock_timeout. The outputs and
their archives gain ``service_tier`` and ``context_tier`` (existing rows: ``standard``;
invalid-event exceptions: ``-``), every class's token sum (existing rows: 0) and, on
``rated_usage``, every class's frozen rate (null); the keys and the cost constraint cover
them. Downgrade refuses while a row holds what the old schema cannot, and never drops
``billing_event``'s columns: they hold upstream's data.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection, text

from rating_pipeline.errors import RatingPipelineError
from rating_pipeline.warehouse import online_ddl
from rating_pipeline.warehouse.migrations import lock_tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NEW_CLASSES = (
    "cache_read", "cache_write", "cache_write_1h", "reasoning", "audio_input", "audio_output",
    "image_input",
)  # fmt: skip
OUTPUTS = ("rated_usage", "rating_exception", "rated_usage_archive", "rating_exception_archive")
RATED = ("rated_usage", "rated_usage_archive")

ADD_EVENT_COLUMNS = "ALTER TABLE billing_event " + ", ".join(
    [f"ADD COLUMN IF NOT EXISTS {c}_tokens bigint NOT NULL DEFAULT 0" for c in NEW_CLASSES]
    + ["ADD COLUMN IF NOT EXISTS service_tier text NULL"]
)
ADD_TIERS = (
    "ALTER TABLE {table} ADD COLUMN service_tier text NOT NULL DEFAULT 'standard', "
    "ADD COLUMN context_tier text NOT NULL DEFAULT 'standard'"
)
ADD_TOKENS = "ALTER TABLE {table} " + ", ".join(
    f"ADD COLUMN {c}_tokens numeric(30, 0) NOT NULL DEFAULT 0" for c in NEW_CLASSES
)
ADD_RATES = "ALTER TABLE {table} " + ", ".join(
    f"ADD COLUMN {c}_rate_per_mtok numeric(24, 6) NULL" for c in NEW_CLASSES
)
DROP_TIER_DEFAULTS = (
    "ALTER TABLE {table} ALTER COLUMN service_tier DROP DEFAULT, "
    "ALTER COLUMN context_tier DROP DEFAULT"
)
MARK_INVALID_EVENTS = (
    "UPDATE {table} SET service_tier = '-', context_tier = '-' WHERE reason = 'invalid_event'"
)
NOT_NEGATIVE = " AND ".join(
    f"{c}_tokens >= 0 AND coalesce({c}_rate_per_mtok, 0) >= 0" for c in NEW_CLASSES
)
PRICED_HAVE_RATES = " AND ".join(
    f"({c}_tokens = 0 OR {c}_rate_per_mtok IS NOT NULL)" for c in NEW_CLASSES
)
NEW_CLASS_COSTS = " ".join(f"+ coalesce({c}_tokens * {c}_rate_per_mtok, 0)" for c in NEW_CLASSES)
RATED_USAGE_CONSTRAINTS = f"""
ALTER TABLE rated_usage
    DROP CONSTRAINT rated_usage_pkey,
    ADD CONSTRAINT rated_usage_pkey
        PRIMARY KEY (window_start, auth_id, model_id, service_tier, context_tier),
    ADD CONSTRAINT rated_usage_tiers_known CHECK (
        service_tier IN ('standard', 'batch', 'priority', 'flex')
        AND context_tier IN ('standard', 'long')
    ),
    ADD CONSTRAINT rated_usage_classes_not_negative CHECK (
        {NOT_NEGATIVE}
    ),
    ADD CONSTRAINT rated_usage_priced_classes_have_rates CHECK (
        {PRICED_HAVE_RATES}
    ),
    DROP CONSTRAINT rated_usage_cost_reconstructs,
    ADD CONSTRAINT rated_usage_cost_reconstructs CHECK (
        cost_usd * 1000000 = input_tokens * input_rate_per_mtok
            + output_tokens * output_rate_per_mtok
            {NEW_CLASS_COSTS}
    )
"""
RATING_EXCEPTION_CONSTRAINTS = """
ALTER TABLE rating_exception
    DROP CONSTRAINT rating_exception_pkey,
    ADD CONSTRAINT rating_exception_pkey
        PRIMARY KEY (window_start, auth_id, model_id, service_tier, context_tier, reason),
    ADD CONSTRAINT rating_exception_tiers_known CHECK (
        CASE WHEN reason = 'invalid_event' THEN service_tier = '-' AND context_tier = '-'
        ELSE service_tier IN ('standard', 'batch', 'priority', 'flex')
            AND context_tier IN ('standard', 'long') END
    )
"""


# Statistics for the new columns at once (a sample; it does not block upstream's inserts):
# without them the planner guesses the window's groups by service tier far too many, and
# sorts the window instead of hashing it.
ANALYZE_NEW_EVENT_COLUMNS = "ANALYZE billing_event (service_tier)"
EVENT_COLUMNS = (*(f"{c}_tokens" for c in NEW_CLASSES), "service_tier")
ADDING_EVENT_COLUMNS = (
    f"revision {revision} gave up adding the token-class columns to billing_event; "
    f"the warehouse stays at revision {down_revision}"
)


def add_event_columns() -> None:
    """billing_event's absent columns, in one catalog-only ALTER committed at once, under
    lock_timeout and retried (online_ddl): its ACCESS EXCLUSIVE lock is brief, and never
    held through the outputs' DDL below. With none absent, no lock is taken at all."""
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        if online_ddl.absent_columns(bind, "billing_event", EVENT_COLUMNS):
            online_ddl.with_lock_timeout(
                bind, ADD_EVENT_COLUMNS, "billing_event", ADDING_EVENT_COLUMNS
            )
        op.execute(ANALYZE_NEW_EVENT_COLUMNS)


def upgrade() -> None:
    add_event_columns()
    for table in OUTPUTS:
        op.execute(ADD_TIERS.format(table=table))
        op.execute(ADD_TOKENS.format(table=table))
        if table in RATED:
            op.execute(ADD_RATES.format(table=table))
        else:
            op.execute(MARK_INVALID_EVENTS.format(table=table))
        op.execute(DROP_TIER_DEFAULTS.format(table=table))
    op.execute(RATED_USAGE_CONSTRAINTS)
    op.execute(RATING_EXCEPTION_CONSTRAINTS)


# What the schema of 0007 cannot hold: another tier or context, or tokens of a new class.
ROWS_BEYOND_0007 = """
SELECT '{table}', count(*) FROM {table}
WHERE service_tier NOT IN ('standard', '-') OR context_tier NOT IN ('standard', '-')
   OR {nonzero}
"""
RESTORE_RATED_USAGE = """
ALTER TABLE IF EXISTS rated_usage
    DROP CONSTRAINT rated_usage_pkey,
    ADD CONSTRAINT rated_usage_pkey PRIMARY KEY (window_start, auth_id, model_id),
    DROP CONSTRAINT rated_usage_cost_reconstructs,
    ADD CONSTRAINT rated_usage_cost_reconstructs CHECK (
        cost_usd * 1000000
        = input_tokens * input_rate_per_mtok + output_tokens * output_rate_per_mtok
    )
"""
RESTORE_RATING_EXCEPTION_KEY = """
ALTER TABLE IF EXISTS rating_exception
    DROP CONSTRAINT rating_exception_pkey,
    ADD CONSTRAINT rating_exception_pkey PRIMARY KEY (window_start, auth_id, model_id, reason)
"""
DROP_COLUMNS = "ALTER TABLE IF EXISTS {table} " + ", ".join(
    ["DROP COLUMN IF EXISTS service_tier CASCADE", "DROP COLUMN IF EXISTS context_tier CASCADE"]
    + [f"DROP COLUMN IF EXISTS {c}_tokens CASCADE" for c in NEW_CLASSES]
)
DROP_RATES = "ALTER TABLE IF EXISTS {table} " + ", ".join(
    f"DROP COLUMN IF EXISTS {c}_rate_per_mtok CASCADE" for c in NEW_CLASSES
)
PRESENT = "SELECT to_regclass(:table) IS NOT NULL"


class DowngradeWouldLoseRows(RatingPipelineError):
    """Downgrading below 0008 would drop values the older schema cannot hold."""


def check_downgrade(bind: Connection) -> None:
    """Raise DowngradeWouldLoseRows if a row holds what 0007 cannot. ``migrations.downgrade``
    calls it before undoing any revision (each commits on its own), and downgrade() again."""
    nonzero = " OR ".join(f"{c}_tokens <> 0" for c in NEW_CLASSES)
    present = [t for t in OUTPUTS if bind.execute(text(PRESENT), {"table": t}).scalar()]
    if not present:
        return
    query = " UNION ALL ".join(
        ROWS_BEYOND_0007.format(table=table, nonzero=nonzero) for table in present
    )
    found = [(table, count) for table, count in bind.execute(text(query)) if count]
    if found:
        counts = ", ".join(f"{count} {table} row{'s' * (count != 1)}" for table, count in found)
        raise DowngradeWouldLoseRows(
            f"refusing to downgrade below revision 0008: {counts} would be lost, holding a "
            "service tier, a context tier or token classes that revision 0007 cannot"
        )


def downgrade() -> None:
    lock_tables(op.get_bind(), OUTPUTS)  # a row committed since the first check is checked
    check_downgrade(op.get_bind())
    op.execute(RESTORE_RATED_USAGE)
    op.execute(RESTORE_RATING_EXCEPTION_KEY)
    for table in OUTPUTS:
        op.execute(DROP_COLUMNS.format(table=table))
        if table in RATED:
            op.execute(DROP_RATES.format(table=table))
