"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=1024), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=True),
    sa.Column('room_id', sa.String(length=255), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=512), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('decided_by', sa.String(length=255), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_actions_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_actions_room_id'), ['room_id'], unique=False)

    op.create_table('audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=True),
    sa.Column('room_id', sa.String(length=255), nullable=True),
    sa.Column('sender', sa.String(length=255), nullable=True),
    sa.Column('mxc', sa.String(length=512), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_audit_ts', ['ts'], unique=False)

    op.create_table('events',
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('room_id', sa.String(length=255), nullable=False),
    sa.Column('sender', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=255), nullable=False),
    sa.Column('event_json', sa.Text(), nullable=False),
    sa.Column('txn_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.Column('processed_at', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_room_id'), ['room_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_sender'), ['sender'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_status'), ['status'], unique=False)

    op.create_table('media',
    sa.Column('mxc', sa.String(length=512), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('md5', sa.String(length=32), nullable=True),
    sa.Column('pdq', sa.String(length=64), nullable=True),
    sa.Column('pdq_quality', sa.Integer(), nullable=True),
    sa.Column('phash', sa.String(length=16), nullable=True),
    sa.Column('pdq_queries', sa.Text(), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('mimetype', sa.String(length=255), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('first_seen', sa.Float(), nullable=False),
    sa.Column('last_scanned', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('mxc')
    )
    with op.batch_alter_table('media', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_media_md5'), ['md5'], unique=False)
        batch_op.create_index(batch_op.f('ix_media_sha256'), ['sha256'], unique=False)

    op.create_table('transactions',
    sa.Column('txn_id', sa.String(length=255), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('txn_id')
    )
    op.create_table('verdicts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('mxc', sa.String(length=512), nullable=False),
    sa.Column('classifier', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('list_name', sa.String(length=255), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('hash_type', sa.String(length=16), nullable=True),
    sa.Column('distance', sa.Integer(), nullable=True),
    sa.Column('matched_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'mxc', 'classifier', 'list_name', 'label', name='uq_verdict')
    )
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verdicts_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_verdicts_mxc'), ['mxc'], unique=False)

    op.create_table('event_media',
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('mxc', sa.String(length=512), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.event_id'], ),
    sa.PrimaryKeyConstraint('event_id', 'mxc')
    )


def downgrade() -> None:
    op.drop_table('event_media')
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verdicts_mxc'))
        batch_op.drop_index(batch_op.f('ix_verdicts_event_id'))

    op.drop_table('verdicts')
    op.drop_table('transactions')
    with op.batch_alter_table('media', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_media_sha256'))
        batch_op.drop_index(batch_op.f('ix_media_md5'))

    op.drop_table('media')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_status'))
        batch_op.drop_index(batch_op.f('ix_events_sender'))
        batch_op.drop_index(batch_op.f('ix_events_room_id'))

    op.drop_table('events')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_ts')
        batch_op.drop_index(batch_op.f('ix_audit_event_id'))

    op.drop_table('audit')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_actions_room_id'))
        batch_op.drop_index(batch_op.f('ix_actions_event_id'))

    op.drop_table('actions')
