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

from rating_pipeline.warehouse import online_ddl

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The replacement is built concurrently under a name of its own, the old index dropped
# concurrently, and the new one renamed in the revision's transaction, with its stamp: the
# table keeps a negative-tokens index throughout and upstream's inserts go on. The rename
# locks the index alone (SHARE UPDATE EXCLUSIVE), not the table. A replacement left by an
# interrupted run is dropped and built again: it may hold either predicate.
INDEX = "billing_event_negative_tokens_idx"
NEXT_INDEX = "billing_event_negative_tokens_next_idx"
CREATE_EVERY_CLASS = """
CREATE INDEX CONCURRENTLY billing_event_negative_tokens_next_idx ON billing_event (occurred_at)
WHERE input_tokens < 0 OR output_tokens < 0 OR cache_read_tokens < 0
    OR cache_write_tokens < 0 OR cache_write_1h_tokens < 0 OR reasoning_tokens < 0
    OR audio_input_tokens < 0 OR audio_output_tokens < 0 OR image_input_tokens < 0
"""
CREATE_INPUT_OUTPUT = """
CREATE INDEX CONCURRENTLY billing_event_negative_tokens_next_idx ON billing_event (occurred_at)
WHERE input_tokens < 0 OR output_tokens < 0
"""
RENAME_NEXT = (
    "ALTER INDEX billing_event_negative_tokens_next_idx RENAME TO billing_event_negative_tokens_idx"
)


def replace_index(create_next: str) -> None:
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        online_ddl.drop_index(bind, NEXT_INDEX)
        online_ddl.build_index(bind, NEXT_INDEX, create_next)
        online_ddl.drop_index(bind, INDEX)
    op.execute(RENAME_NEXT)


def upgrade() -> None:
    replace_index(CREATE_EVERY_CLASS)


def downgrade() -> None:
    replace_index(CREATE_INPUT_OUTPUT)
