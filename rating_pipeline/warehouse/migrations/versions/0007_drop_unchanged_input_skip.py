"""Drop the unchanged-inputs skip and the output checksum.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

Drops the edit-counting statement triggers on the outputs, their function and counter
table, and the rating log's ``output_edits_seen``, ``input_fingerprint`` and
``output_checksum`` columns. The log keeps its counts, exact total and ``events_digest``.
Downgrade restores the objects of revision 0006; restored log rows carry NULLs there.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OUTPUT_TABLES = ("rated_usage", "rating_exception")
DROP_TRIGGER = "DROP TRIGGER IF EXISTS {table}_count_edit ON {table}"
UPGRADE = (
    "DROP FUNCTION IF EXISTS rated_output_count_edit()",
    "DROP TABLE IF EXISTS rated_output_edit",
    "ALTER TABLE rating_log DROP COLUMN IF EXISTS output_edits_seen",
    "ALTER TABLE rating_log DROP COLUMN IF EXISTS input_fingerprint",
    "ALTER TABLE rating_log DROP COLUMN IF EXISTS output_checksum",
)

RESTORE_COLUMNS = """
ALTER TABLE IF EXISTS rating_log
    ADD COLUMN IF NOT EXISTS output_checksum text NULL,
    ADD COLUMN IF NOT EXISTS input_fingerprint text NULL,
    ADD COLUMN IF NOT EXISTS output_edits_seen bigint NULL
"""
RESTORE_EDIT_COUNTER = """
CREATE TABLE IF NOT EXISTS rated_output_edit (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT rated_output_edit_one_row
        CHECK (singleton),
    edits bigint NOT NULL
)
"""
RESTORE_EDIT_COUNT = """
INSERT INTO rated_output_edit (singleton, edits) VALUES (true, 0) ON CONFLICT DO NOTHING
"""
RESTORE_COUNT_EDIT = """
CREATE OR REPLACE FUNCTION rated_output_count_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('rating_pipeline.rating', true), '') <> 'on' THEN
        UPDATE rated_output_edit SET edits = edits + 1;
    END IF;
    RETURN NULL;
END
$$
"""
RESTORE_TRIGGER = """
DO $$
BEGIN
    IF to_regclass('{table}') IS NOT NULL THEN
        CREATE TRIGGER {table}_count_edit
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION rated_output_count_edit();
    END IF;
END
$$
"""

DOWNGRADE = (RESTORE_COLUMNS, RESTORE_EDIT_COUNTER, RESTORE_EDIT_COUNT, RESTORE_COUNT_EDIT)


def upgrade() -> None:
    for table in OUTPUT_TABLES:
        op.execute(DROP_TRIGGER.format(table=table))
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in (
        RESTORE_COLUMNS,
        RESTORE_EDIT_COUNTER,
        RESTORE_EDIT_COUNT,
        RESTORE_COUNT_EDIT,
    ):
        op.execute(statement)
    for table in OUTPUT_TABLES:
        op.execute(DROP_TRIGGER.format(table=table))
        op.execute(RESTORE_TRIGGER.format(table=table))
