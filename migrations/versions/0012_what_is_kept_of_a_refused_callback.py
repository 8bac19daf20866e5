"""the digest and size of every provider callback's body

A refused callback (bad signature, malformed) now keeps only the first KiB of its body, with the
SHA-256 and the length of the whole; verified ones keep the whole body as before, and get both
too. Rows stored before this revision keep their body as it was, with neither (NULL).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 10:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("provider_callbacks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("body_size", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("provider_callbacks", schema=None) as batch_op:
        batch_op.drop_column("body_size")
        batch_op.drop_column("body_sha256")
