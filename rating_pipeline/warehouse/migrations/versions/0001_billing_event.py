"""billing_event: the upstream input table, created only where it is absent.

Revision ID: 0001
Revises:
Create Date: 2026-06-15

The table belongs upstream (contract section 3). This revision creates it, exactly as the
contract lists it, only if it does not exist, and indexes ``occurred_at`` and
``ingested_at`` (concurrently) only where no valid index already leads with that column.
An upstream table with more columns is left as it is. Downgrade never drops it: the events
are not ours.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from rating_pipeline.warehouse import online_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CREATE_BILLING_EVENT = """
CREATE TABLE IF NOT EXISTS billing_event (
    event_id text PRIMARY KEY,
    auth_id text NOT NULL,
    model_id text NOT NULL,
    base_model text NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
)
"""

FIND_BILLING_EVENT = "SELECT to_regclass('billing_event')"
# Built concurrently, outside any transaction: upstream's inserts go on during the build.
# Each only where no valid index already leads with its column, whatever its name.
TABLE = "billing_event"
INDEXES = (
    (
        "occurred_at",
        "billing_event_occurred_at_idx",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS billing_event_occurred_at_idx "
        "ON billing_event (occurred_at)",
    ),
    (
        "ingested_at",
        "billing_event_ingested_at_idx",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS billing_event_ingested_at_idx "
        "ON billing_event (ingested_at)",
    ),
)


def upgrade() -> None:
    # Absent means not found through the search path, as every statement finds it: an
    # upstream table in a schema later in the path must not get an empty twin earlier in it.
    if op.get_bind().execute(text(FIND_BILLING_EVENT)).scalar() is None:
        op.execute(CREATE_BILLING_EVENT)
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        for column, name, create in INDEXES:
            # Our failed build's leftover goes even where upstream's index stands in for it.
            if online_ddl.index_is_valid(bind, name) is False:
                online_ddl.drop_index(bind, name)
            if not online_ddl.has_valid_index_leading_with(bind, TABLE, column):
                online_ddl.build_index(bind, name, create)


def downgrade() -> None:
    """Nothing: billing_event and its indexes belong upstream and are never dropped."""
