"""media.frame_pdqs: the PDQ of every sampled frame of an animation or a video

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

Kept so that a list that gains entries later (retroactive matching) and a re-post of the
same mxc (which may be quarantined, so undownloadable) see every frame, not only the first:
`number:pdq:quality` per frame, joined by `;` (a video's numbers are its seconds). NULL for
still images and for media hashed before this revision.
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("frame_pdqs", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("frame_pdqs")
