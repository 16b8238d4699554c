"""Count the statements that write the outputs outside a rating (dropped by 0007).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Creates the one-row counter ``rated_output_edit``, statement-level triggers on
``rated_usage`` and ``rating_exception`` that bump it unless the transaction set
``rating_pipeline.rating``, and ``rating_log.output_edits_seen``.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CREATE_EDIT_COUNTER = """
CREATE TABLE rated_output_edit (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT rated_output_edit_one_row
        CHECK (singleton),
    edits bigint NOT NULL
)
"""
SEED_EDIT_COUNTER = "INSERT INTO rated_output_edit (singleton, edits) VALUES (true, 0)"
ADD_EDITS_SEEN = "ALTER TABLE rating_log ADD COLUMN output_edits_seen bigint NULL"
CREATE_COUNT_EDIT = """
CREATE FUNCTION rated_output_count_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('rating_pipeline.rating', true), '') <> 'on' THEN
        UPDATE rated_output_edit SET edits = edits + 1;
    END IF;
    RETURN NULL;
END
$$
"""
OUTPUT_TABLES = ("rated_usage", "rating_exception")
CREATE_TRIGGER = """
CREATE TRIGGER {table}_count_edit
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION rated_output_count_edit()
"""
DROP_TRIGGER = "DROP TRIGGER IF EXISTS {table}_count_edit ON {table}"
DOWNGRADE = (
    "DROP FUNCTION IF EXISTS rated_output_count_edit()",
    "ALTER TABLE IF EXISTS rating_log DROP COLUMN IF EXISTS output_edits_seen",
    "DROP TABLE IF EXISTS rated_output_edit",
)


def upgrade() -> None:
    op.execute(CREATE_EDIT_COUNTER)
    op.execute(SEED_EDIT_COUNTER)
    op.execute(ADD_EDITS_SEEN)
    op.execute(CREATE_COUNT_EDIT)
    for table in OUTPUT_TABLES:
        op.execute(CREATE_TRIGGER.format(table=table))


def downgrade() -> None:
    for table in OUTPUT_TABLES:
        op.execute(DROP_TRIGGER.format(table=table))
    for statement in DOWNGRADE:
        op.execute(statement)
