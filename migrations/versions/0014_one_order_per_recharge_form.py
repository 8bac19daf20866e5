"""one order per recharge form, and orders that wait for the customer to accept changed terms

``submission_key`` (unique) ties an order to the one-time id of the form that made it and to
what the form asked for, so a form sent several times makes one order. ``needs_confirmation``
marks an order whose terms changed between the page and the order: the customer sees the new
terms on the order page and confirms them before being sent to pay. Orders already made keep
NULL and false: they were made before either existed.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submission_key", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("needs_confirmation", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_recharge_orders_submission_key"), ["submission_key"])


def downgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_recharge_orders_submission_key"), type_="unique")
        batch_op.drop_column("needs_confirmation")
        batch_op.drop_column("submission_key")
