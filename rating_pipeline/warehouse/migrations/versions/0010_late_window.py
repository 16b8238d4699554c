"""Add ``late_window``: rated windows older than the lookback whose events changed after.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

The late_events sensor records each one it finds, against the rating_log row it compared;
the all_windows_billed check lists those whose latest rating is still that row.
"""

from __future__ import annotations

from alembic import op

from rating_pipeline.warehouse.migrations import refuse_to_drop_rows

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CREATE_LATE_WINDOW = """
CREATE TABLE late_window (
    window_start timestamptz PRIMARY KEY,
    events_now bigint NOT NULL,
    events_read bigint NOT NULL,
    log_id bigint NOT NULL,
    found_at timestamptz NOT NULL
)
"""
DROP_LATE_WINDOW = "DROP TABLE IF EXISTS late_window"


def upgrade() -> None:
    op.execute(CREATE_LATE_WINDOW)


def downgrade() -> None:
    refuse_to_drop_rows(op.get_bind(), revision, ["late_window"])
    op.execute(DROP_LATE_WINDOW)
