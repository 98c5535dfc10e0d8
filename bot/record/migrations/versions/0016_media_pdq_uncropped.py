"""media.pdq_uncropped: PDQ of an image padded back by each crop guess

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

Kept, like pdq_queries, so that a re-post of the same mxc (which may be quarantined, so
undownloadable) and retroactive matching of list entries added later find a cropped copy
as the first post would have: the hashes (64 hex digits each, bot/hashing/uncrop.py)
joined by `,` in the guesses' order. NULL for media that is not an image and for media
hashed before this revision.
"""

from alembic import op
import sqlalchemy as sa


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("pdq_uncropped", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("pdq_uncropped")
