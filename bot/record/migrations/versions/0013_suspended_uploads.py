"""suspended uploads: users modbot suspended, whose new uploads it quarantines

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

suspended_uploads: one row per user modbot suspended (bot/act/uploadwatch.py): since when,
the creation time (ms) of the newest of their uploads already dealt with, how many were
quarantined, and when the watch stopped (unsuspended); kept across restarts.
"""

from alembic import op
import sqlalchemy as sa


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suspended_uploads",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("suspended_at", sa.Float(), nullable=False),
        sa.Column("watermark_ms", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("suspended_uploads")
