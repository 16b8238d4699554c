"""A partial index on billing_event's events with negative tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-06-15

Extraction finds a window's invalid (negative-token) events through this index instead of
scanning the window a second time. Only such events enter it, so it stays tiny and costs
upstream's inserts next to nothing. It is the project's own: downgrade drops it.
"""

from __future__ import annotations

from alembic import op

from rating_pipeline.warehouse import online_ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Built and dropped concurrently, outside any transaction: upstream's inserts go on.
INDEX = "billing_event_negative_tokens_idx"
CREATE_NEGATIVE_TOKENS_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS billing_event_negative_tokens_idx
ON billing_event (occurred_at) WHERE input_tokens < 0 OR output_tokens < 0
"""


def upgrade() -> None:
    with op.get_context().autocommit_block():
        online_ddl.build_index(op.get_bind(), INDEX, CREATE_NEGATIVE_TOKENS_INDEX)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        online_ddl.drop_index(op.get_bind(), INDEX)
