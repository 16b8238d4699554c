"""The partial index on events with a bad token count covers null counts too.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

Upstream's own ``billing_event`` may allow nulls (contract 3); rating excepts an event with
a null count as ``invalid_event`` and finds it, as it finds a negative count, through this
index rather than a second scan of its window. The predicate is the rating's own: every
count ``>= 0`` is not true. Downgrade restores revision 0009's index.
"""

from __future__ import annotations

from alembic import op

from rating_pipeline.warehouse import online_ddl

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Built as 0009 built its own: the replacement concurrently under a name of its own, the
# old index dropped concurrently, the new one renamed in the revision's transaction.
INDEX = "billing_event_negative_tokens_idx"
NEXT_INDEX = "billing_event_negative_tokens_next_idx"
CREATE_NEGATIVE_OR_NULL = """
CREATE INDEX CONCURRENTLY billing_event_negative_tokens_next_idx ON billing_event (occurred_at)
WHERE (input_tokens >= 0 AND output_tokens >= 0 AND cache_read_tokens >= 0
    AND cache_write_tokens >= 0 AND cache_write_1h_tokens >= 0 AND reasoning_tokens >= 0
    AND audio_input_tokens >= 0 AND audio_output_tokens >= 0 AND image_input_tokens >= 0)
    IS NOT TRUE
"""
CREATE_NEGATIVE = """
CREATE INDEX CONCURRENTLY billing_event_negative_tokens_next_idx ON billing_event (occurred_at)
WHERE input_tokens < 0 OR output_tokens < 0 OR cache_read_tokens < 0
    OR cache_write_tokens < 0 OR cache_write_1h_tokens < 0 OR reasoning_tokens < 0
    OR audio_input_tokens < 0 OR audio_output_tokens < 0 OR image_input_tokens < 0
"""
RENAME_NEXT = f"ALTER INDEX {NEXT_INDEX} RENAME TO {INDEX}"


def replace_index(create_next: str) -> None:
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        online_ddl.drop_index(bind, NEXT_INDEX)
        online_ddl.build_index(bind, NEXT_INDEX, create_next)
        online_ddl.drop_index(bind, INDEX)
    op.execute(RENAME_NEXT)


def upgrade() -> None:
    replace_index(CREATE_NEGATIVE_OR_NULL)


def downgrade() -> None:
    replace_index(CREATE_NEGATIVE)
