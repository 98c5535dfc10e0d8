"""users' reports seen

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

user_reports: every report modbot has read from Synapse's report APIs (event reports and
user reports), keyed by kind and Synapse's report id, so that a report is carded once
however often it is polled and across restarts; with the card's event, what modbot found
and how the report was resolved (acted on by policy, by a moderator, or dismissed).
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("received_ts", sa.BigInteger(), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("card_event_id", sa.String(length=255), nullable=True),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.Column("resolved_by", sa.String(length=255), nullable=True),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "report_id", name="uq_user_reports_kind_report_id"),
    )
    op.create_index("ix_user_reports_status", "user_reports", ["status"])


def downgrade() -> None:
    op.drop_index("ix_user_reports_status", table_name="user_reports")
    op.drop_table("user_reports")
