"""keyed incident chain: the hash scheme of each incident row

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

incidents.chain_scheme says how a row's hash was made: `sha256` (plain, every row written
before this revision, which keep verifying as they were) or `hmac-sha256` (keyed with the
chain key kept outside the database; every new row).
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("chain_scheme", sa.String(length=16), nullable=False, server_default="sha256"))


def downgrade() -> None:
    # Keyed rows stay in the table; an older modbot would report them as edited.
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("chain_scheme")
