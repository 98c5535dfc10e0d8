"""media.pdq_coefficients: PDQ's DCT coefficients of a smooth image

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

Kept, like lowfreq, so that a re-post of the same mxc (which may be quarantined, so
undownloadable) and retroactive matching of list entries added later match a smooth
image's most reliable PDQ bits as the first post did: the coefficients' texts (1024 hex
digits each, bot/hashing/pdqcoef.py) joined by `,`. NULL for images of PDQ quality 50 or
more and for media hashed before this revision.
"""

from alembic import op
import sqlalchemy as sa


revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("pdq_coefficients", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("pdq_coefficients")
