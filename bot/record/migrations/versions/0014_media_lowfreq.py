"""media.lowfreq: the low-frequency signatures of a smooth image

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

Kept, like frame_pdqs, so that a re-post of the same mxc (which may be quarantined, so
undownloadable) and retroactive matching of `lowfreq` list entries added later see them:
the signatures' texts (72 hex digits each, bot/hashing/smoothsig.py) joined by `,`. NULL for
images without one and for media hashed before this revision.
"""

from alembic import op
import sqlalchemy as sa


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("lowfreq", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("lowfreq")
