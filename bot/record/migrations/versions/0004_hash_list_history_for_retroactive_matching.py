"""hash list history for retroactive matching

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

media.sha1 for NCMEC-style lists; hash_list_seen, the entries of each list already
matched against the media history (as digests), so that what is new survives restarts;
retro_runs, one row per retroactive matching run.
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("sha1", sa.String(length=40), nullable=True))
        batch.create_index("ix_media_sha1", ["sha1"], unique=False)
    op.create_table(
        "hash_list_seen",
        sa.Column("list_name", sa.String(length=255), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("digests", sa.Text(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("list_name", "chunk"),
    )
    op.create_table(
        "retro_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("list_name", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("new_entries", sa.Integer(), nullable=False),
        sa.Column("media_checked", sa.Integer(), nullable=False),
        sa.Column("media_matched", sa.Integer(), nullable=False),
        sa.Column("events_acted", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retro_runs_list_name", "retro_runs", ["list_name"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_retro_runs_list_name", table_name="retro_runs")
    op.drop_table("retro_runs")
    op.drop_table("hash_list_seen")
    with op.batch_alter_table("media") as batch:
        batch.drop_index("ix_media_sha1")
        batch.drop_column("sha1")
