"""durable action claims and retries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

actions.owner and actions.lease_until: the claim on an action, so that two processes on
one database never carry the same action out twice (a claim is one conditional UPDATE);
actions.next_attempt_at and actions.operation: a pending action's next retry and how to
redo it, so that retries survive restarts instead of ending after a few seconds.
"""

from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("operation", sa.Text(), nullable=True))
        batch.create_index("ix_actions_next_attempt_at", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_index("ix_actions_next_attempt_at")
        batch.drop_column("operation")
        batch.drop_column("next_attempt_at")
        batch.drop_column("lease_until")
        batch.drop_column("owner")
