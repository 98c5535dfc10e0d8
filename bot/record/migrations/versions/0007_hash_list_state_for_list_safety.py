"""hash list state for list safety

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

hash_list_state: per list, the entry count and file digest of the version last loaded, and
the digest an operator accepted with `modbot hashes accept`, so that a list file garbled or
emptied (while the bot runs or while it is down) is held instead of loaded.
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hash_list_state",
        sa.Column("list_name", sa.String(length=255), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("loaded_at", sa.Float(), nullable=True),
        sa.Column("accepted_digest", sa.String(length=64), nullable=True),
        sa.Column("accepted_by", sa.String(length=255), nullable=True),
        sa.Column("accepted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("list_name"),
    )


def downgrade() -> None:
    op.drop_table("hash_list_state")
