"""Count the writes to the outputs that no rating made, so a checksum can be carried.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

As first written: a rating that changes no row of its window produces exactly the rows its
predecessor logged, so it may log the predecessor's checksum instead of rendering every row
again -- but only if nothing else has written those rows since. Every
statement that writes ``rated_usage`` or ``rating_exception`` outside a rating bumps the
single counter in ``rated_output_edit`` (statement-level triggers: one call per statement,
nothing per row); a rating marks itself with the transaction-local setting
``rating_pipeline.rating`` and records the counter it saw in ``rating_log.output_edits_seen``.
A log row whose count differs from the counter is never carried from.

Since revision 0005 the carry is part of a wider one: a rating whose inputs match its
window's latest rating skips the comparison too, under the same guard
(``engine.latest_rating``); a rating that compares its rows always renders its
checksum.
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
# Outside a rating, any write (even of zero rows) counts: a false positive only costs one
# full checksum, a missed write would carry a wrong one.
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
    "ALTER TABLE rating_log DROP COLUMN IF EXISTS output_edits_seen",
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
