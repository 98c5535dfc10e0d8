"""media.lowfreq_uncropped: the low-frequency signature of each crop guess of a smooth image

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

Kept, like media.lowfreq, so that a re-post of the same mxc and retroactive matching of
`lowfreq` entries added later find a cropped copy of a smooth image as the first post would
have: the signatures (72 hex digits each, bot/hashing/smoothsig.py) joined by `,` in the
guesses' order (bot/hashing/uncrop.py). NULL for images of PDQ quality 50 or more and for
media hashed before this revision.
"""

from alembic import op
import sqlalchemy as sa


revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("lowfreq_uncropped", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("lowfreq_uncropped")
