"""Add ``rating_log.input_fingerprint`` (dropped by 0007).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ADD_INPUT_FINGERPRINT = "ALTER TABLE rating_log ADD COLUMN input_fingerprint text NULL"
DROP_INPUT_FINGERPRINT = "ALTER TABLE IF EXISTS rating_log DROP COLUMN IF EXISTS input_fingerprint"


def upgrade() -> None:
    op.execute(ADD_INPUT_FINGERPRINT)


def downgrade() -> None:
    op.execute(DROP_INPUT_FINGERPRINT)
