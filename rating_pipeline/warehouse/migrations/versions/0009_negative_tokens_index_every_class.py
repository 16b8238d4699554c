"""The partial index on events with negative tokens covers every token class.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

Rating finds a window's negative-token events through it instead of scanning the window a
second time; only such events enter it. It is the project's own: downgrade restores the
narrower index of revision 0003.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DROP_INDEX = "DROP INDEX IF EXISTS billing_event_negative_tokens_idx"
CREATE_EVERY_CLASS = """
CREATE INDEX billing_event_negative_tokens_idx ON billing_event (occurred_at)
WHERE input_tokens < 0 OR output_tokens < 0 OR cache_read_tokens < 0
    OR cache_write_tokens < 0 OR cache_write_1h_tokens < 0 OR reasoning_tokens < 0
    OR audio_input_tokens < 0 OR audio_output_tokens < 0 OR image_input_tokens < 0
"""
CREATE_INPUT_OUTPUT = """
CREATE INDEX billing_event_negative_tokens_idx ON billing_event (occurred_at)
WHERE input_tokens < 0 OR output_tokens < 0
"""


def upgrade() -> None:
    op.execute(DROP_INDEX)
    op.execute(CREATE_EVERY_CLASS)


def downgrade() -> None:
    op.execute(DROP_INDEX)
    op.execute(CREATE_INPUT_OUTPUT)
