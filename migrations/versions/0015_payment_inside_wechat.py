"""payment inside WeChat: the JSAPI pay sheet's parameters, and the sign-in an order waits for

``pay_jsapi`` keeps the signed ``getBrandWCPayRequest`` parameters of a JSAPI order (JSON), so
the order page can open WeChat's pay sheet again after a reload. ``oauth_state`` holds the
digest of the single-use OAuth ``state`` the order was sent to WeChat with. Both stay NULL for
orders made before.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 21:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pay_jsapi", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("oauth_state", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.drop_column("oauth_state")
        batch_op.drop_column("pay_jsapi")
