"""Record each rating's input fingerprint, so an unchanged window is not compared again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

A rating whose inputs (as first written: the window's summed events, the rules' answers,
the pricebook, the statements; since 0006 see ``warehouse/fingerprint.py``) digest to the
fingerprint its window's latest rating logged, with no write to the outputs outside a
rating since (migration 0004), would produce exactly the rows that rating left: it logs
itself without comparing them again (``engine.latest_rating``).
Log rows from before this revision have no fingerprint and are never taken as unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ADD_INPUT_FINGERPRINT = "ALTER TABLE rating_log ADD COLUMN input_fingerprint text NULL"
DROP_INPUT_FINGERPRINT = "ALTER TABLE rating_log DROP COLUMN IF EXISTS input_fingerprint"


def upgrade() -> None:
    op.execute(ADD_INPUT_FINGERPRINT)


def downgrade() -> None:
    op.execute(DROP_INPUT_FINGERPRINT)
