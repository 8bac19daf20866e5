"""provider transaction ids up to 255 characters

Stripe documents its object ids as opaque strings of up to 255 characters; a Checkout Session
id is 66 today.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 18:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.alter_column(
            "provider_txn_id", existing_type=sa.String(length=64), type_=sa.String(length=255), existing_nullable=False
        )
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.alter_column(
            "provider_txn_id", existing_type=sa.String(length=64), type_=sa.String(length=255), existing_nullable=True
        )


def downgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.alter_column(
            "provider_txn_id", existing_type=sa.String(length=255), type_=sa.String(length=64), existing_nullable=True
        )
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.alter_column(
            "provider_txn_id", existing_type=sa.String(length=255), type_=sa.String(length=64), existing_nullable=False
        )
