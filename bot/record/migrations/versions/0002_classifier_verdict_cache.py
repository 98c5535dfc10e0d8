"""classifier verdict cache and scan holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('classifier_verdict_cache',
    sa.Column('classifier', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('verdicts_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('classifier', 'sha256')
    )
    with op.batch_alter_table('classifier_verdict_cache', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_classifier_verdict_cache_expires_at'), ['expires_at'], unique=False)

    op.create_table('scan_holds',
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.String(length=255), nullable=False),
    sa.Column('mxcs_json', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('held_at', sa.Float(), nullable=False),
    sa.Column('due_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('scan_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scan_holds_due_at'), ['due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('scan_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scan_holds_due_at'))

    op.drop_table('scan_holds')
    with op.batch_alter_table('classifier_verdict_cache', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_classifier_verdict_cache_expires_at'))

    op.drop_table('classifier_verdict_cache')
