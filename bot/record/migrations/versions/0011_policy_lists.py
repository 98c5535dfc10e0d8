"""policy lists: watched policy rooms, their rules, and the bans the rules made

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

policy_lists: the policy rooms (MSC2313) modbot follows and when each last changed;
policy_rules: their rules by (room, event type, state key), entity or MSC4205 hash;
policy_bans: which rule banned whom where, so that removing a rule unbans only what it did.
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_lists",
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("added_by", sa.String(length=255), nullable=True),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.Column("last_update", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("room_id"),
    )
    op.create_table(
        "policy_rules",
        sa.Column("list_room", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("state_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recommendation", sa.String(length=255), nullable=False),
        sa.Column("entity", sa.String(length=255), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("list_room", "event_type", "state_key"),
    )
    op.create_index("ix_policy_rules_sha256", "policy_rules", ["sha256"])
    op.create_table(
        "policy_bans",
        sa.Column("list_room", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("state_key", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("banned_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("list_room", "event_type", "state_key", "user_id", "room_id"),
    )


def downgrade() -> None:
    op.drop_table("policy_bans")
    op.drop_index("ix_policy_rules_sha256", table_name="policy_rules")
    op.drop_table("policy_rules")
    op.drop_table("policy_lists")
