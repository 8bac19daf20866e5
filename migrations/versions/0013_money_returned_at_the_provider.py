"""money returned at the provider: refund events, and orders flagged for a person

payment_events.kind also takes 'refunded' (a provider's refund, keyed by its refund id), and
recharge_orders gets attention (why a person must look) and attention_at (since when).

Before this revision a provider's close of a credited order (Alipay's TRADE_CLOSED after a full
refund) was recorded as an ignored 'closed' event. Those orders are flagged here, as of the
close, so the refunds that were missed show up on the staff dashboard too.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 10:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MONEY_RETURNED = "money_returned"  # billing.recharge.MONEY_RETURNED


def upgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attention", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("attention_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_recharge_orders_attention_at"), ["attention_at"], unique=False)

    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_events_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payment_events_kind"), "kind IN ('paid', 'closed', 'refunded')")

    # A credited order can only have a 'closed' event from after it was credited (a close of a
    # pending order fails it, and a failed order is never credited): each is a missed refund.
    op.execute(
        sa.text(
            "UPDATE recharge_orders SET attention = :reason, attention_at = ("
            " SELECT MIN(e.created_at) FROM payment_events e"
            " WHERE e.order_id = recharge_orders.id AND e.kind = 'closed')"
            " WHERE status = 'credited' AND EXISTS ("
            " SELECT 1 FROM payment_events e WHERE e.order_id = recharge_orders.id AND e.kind = 'closed')"
        ).bindparams(reason=MONEY_RETURNED)
    )


def downgrade():
    refunds = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM payment_events WHERE kind = 'refunded'")).scalar()
    if refunds:
        raise RuntimeError(
            f"{refunds} refund event(s) are on record and 0009 cannot hold them; "
            "restore a backup made before 0013 instead of downgrading"
        )
    with op.batch_alter_table("payment_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_events_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payment_events_kind"), "kind IN ('paid', 'closed')")

    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recharge_orders_attention_at"))
        batch_op.drop_column("attention_at")
        batch_op.drop_column("attention")
