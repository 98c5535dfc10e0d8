"""indexes for retention

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Retention (bot/retention.py) deletes the oldest finished events and verdicts every hour,
a capped number at a time: without an index on their time it would read the whole table
each run to find them.
"""

from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"], unique=False)
    op.create_index("ix_verdicts_created_at", "verdicts", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_verdicts_created_at", table_name="verdicts")
    op.drop_index("ix_events_received_at", table_name="events")
