"""media.pdq_uncropped_tiers: how reliable each bit of each crop guess is

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02

Kept, like media.pdq_uncropped, so that a re-post of the same mxc and retroactive matching
of entries added later find a cropped copy as the first post would have: a guess a few bits
over its bound matches a listed image's own hash when it differs only in its unreliable
bits (bot/classify/cropmatch.py). 128 hex digits a guess (bot/hashing/pdqtiers.py) joined
by `,` in the guesses' order (bot/hashing/uncrop.py); NULL for media hashed before this
revision, whose guesses are matched within their bound alone.
"""

from alembic import op
import sqlalchemy as sa


revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("pdq_uncropped_tiers", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("pdq_uncropped_tiers")
