"""pre-send checks: events blocked before delivery, and what the check endpoint has seen

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

events.presend: "blocked" for an event Synapse offered to the pre-send check (through
synapse-http-antispam) and modbot rejected; it was never delivered, so the follow-up
(quarantine, ban, incident, notice) works from the JSON stored here, and redaction is moot.
presend_stats: per outcome (ping, allowed, blocked, timed_out, failed, ...) a count and when
it was last seen, for `modbot check` (is Synapse calling the endpoint?) and `status`.
"""

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("presend", sa.String(length=16), nullable=True))
    op.create_table(
        "presend_stats",
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("outcome"),
    )


def downgrade() -> None:
    op.drop_table("presend_stats")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("presend")
