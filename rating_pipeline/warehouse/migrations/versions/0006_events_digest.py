"""Add ``rating_log.events_digest``: the digest of the summed events each rating read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Log rows from before this revision have none.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ADD_EVENTS_DIGEST = "ALTER TABLE rating_log ADD COLUMN events_digest text NULL"
DROP_EVENTS_DIGEST = "ALTER TABLE IF EXISTS rating_log DROP COLUMN IF EXISTS events_digest"


def upgrade() -> None:
    op.execute(ADD_EVENTS_DIGEST)


def downgrade() -> None:
    op.execute(DROP_EVENTS_DIGEST)
