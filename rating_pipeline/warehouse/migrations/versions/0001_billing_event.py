"""billing_event: the upstream input table, created only where it is absent.

Revision ID: 0001
Revises:
Create Date: 2026-06-15

The table belongs upstream (contract section 3). This revision creates it, exactly as the
contract lists it, only if it does not exist, and indexes ``occurred_at`` and
``ingested_at`` only where no index already leads with that column. An upstream table
with more columns is left as it is. Downgrade never drops it: the events are not ours.
"""

from __future__ import annotations

from alembic import op

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

# CREATE INDEX on a large upstream table is expensive: skip it when upstream already has
# an index whose first key is the column (whatever its name). The DO block carries no
# values, only this revision's own identifiers.
INDEX_OCCURRED_AT = """
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index AS i
        JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'billing_event'::regclass AND a.attname = 'occurred_at'
    ) THEN
        CREATE INDEX IF NOT EXISTS billing_event_occurred_at_idx ON billing_event (occurred_at);
    END IF;
END
$$
"""

INDEX_INGESTED_AT = """
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index AS i
        JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'billing_event'::regclass AND a.attname = 'ingested_at'
    ) THEN
        CREATE INDEX IF NOT EXISTS billing_event_ingested_at_idx ON billing_event (ingested_at);
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(CREATE_BILLING_EVENT)
    op.execute(INDEX_OCCURRED_AT)
    op.execute(INDEX_INGESTED_AT)


def downgrade() -> None:
    """Nothing: billing_event and its indexes belong upstream and are never dropped."""
