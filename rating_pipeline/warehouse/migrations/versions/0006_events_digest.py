"""Record the digest of the events each rating read, apart from its input fingerprint.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

The fingerprint of revision 0005 is now the digest of two parts: what the output depends
on besides the events (the release, the pricebook file, the bound values: known before
the events are read) and the digest of the summed events. Logging the latter lets the next
rating of the window hand it to the statement that sums the events, which then leaves
``window_usage`` unwritten when the events are the same (``engine.latest_rating``). Log
rows from before this revision have no events digest and are never taken as unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ADD_EVENTS_DIGEST = "ALTER TABLE rating_log ADD COLUMN events_digest text NULL"
DROP_EVENTS_DIGEST = "ALTER TABLE rating_log DROP COLUMN IF EXISTS events_digest"


def upgrade() -> None:
    op.execute(ADD_EVENTS_DIGEST)


def downgrade() -> None:
    op.execute(DROP_EVENTS_DIGEST)
