"""promotion caps on orders, and two people for a promotion's terms

Orders record the promotion caps they were quoted under (HEYON_PROMO_MAX_BONUS_PERCENT and
HEYON_PROMO_MAX_DISCOUNT_PERCENT), and CHECKs hold their bonus and discount within them; orders
made before keep NULL caps (`flask ledger verify` holds them to the configured caps).

Promotions get the two-person columns (who last edited the terms, a publication asked for, a
change waiting for approval) and CHECKs that hold whatever the caps are: a published promotion
never discounts 100 % nor gives a fixed bonus above its from amount. A published promotion that
breaks them (only possible before this revision) is withdrawn to a draft here, with an audit
row saying why: its terms are kept as they were, for the record.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:00:00

"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OVER_ANY_CAP = (
    "published AND ((kind = 'discount' AND percent_bp >= 10000) "
    "OR (kind = 'fixed_bonus' AND value_fen > threshold_fen))"
)


def _withdraw_promotions_over_any_cap():
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT id FROM promotions WHERE {OVER_ANY_CAP} ORDER BY id")).all()
    for (promo_id,) in rows:
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (username, action, target, before_summary, after_summary, created_at) "
                "VALUES ('migration 0010', 'promo.unpublish', :target, 'published=true', :after, "
                "CURRENT_TIMESTAMP)"
            ),
            {
                "target": f"promotion {promo_id}",
                "after": "published=false (a 100% discount or a fixed bonus above its from amount)",
            },
        )
    conn.execute(sa.text(f"UPDATE promotions SET published = false WHERE {OVER_ANY_CAP}"))
    if rows:
        logging.getLogger("alembic").warning(
            "withdrew %d published promotion(s) over any cap to drafts: %s",
            len(rows),
            ", ".join(str(r[0]) for r in rows),
        )


def upgrade():
    _withdraw_promotions_over_any_cap()
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("publish_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("edited_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("edited_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending_terms", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pending_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pending_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending_at", sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_promotions_edited_by_id_staff_users"), "staff_users", ["edited_by_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_promotions_pending_by_id_staff_users"), "staff_users", ["pending_by_id"], ["id"]
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_promotions_discount_below_100"), "NOT published OR kind <> 'discount' OR percent_bp < 10000"
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_promotions_fixed_bonus_within_threshold"),
            "NOT published OR kind <> 'fixed_bonus' OR value_fen <= threshold_fen",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_promotions_requested_only_when_draft"), "NOT (published AND publish_requested)"
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_promotions_changes_only_when_published"), "pending_terms IS NULL OR published"
        )

    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bonus_cap_percent", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("discount_cap_percent", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f("ck_recharge_orders_caps_together"),
            "(bonus_cap_percent IS NULL) = (discount_cap_percent IS NULL)",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_recharge_orders_bonus_within_cap"),
            "bonus_cap_percent IS NULL OR (bonus_cap_percent BETWEEN 0 AND 100 "
            "AND bonus_fen * 100 <= pay_fen * bonus_cap_percent)",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_recharge_orders_discount_within_cap"),
            "discount_cap_percent IS NULL OR (discount_cap_percent BETWEEN 0 AND 99 "
            "AND (amount_fen - pay_fen) * 100 <= amount_fen * discount_cap_percent)",
        )


def downgrade():
    with op.batch_alter_table("recharge_orders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_recharge_orders_discount_within_cap"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_recharge_orders_bonus_within_cap"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_recharge_orders_caps_together"), type_="check")
        batch_op.drop_column("discount_cap_percent")
        batch_op.drop_column("bonus_cap_percent")

    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_promotions_changes_only_when_published"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_promotions_requested_only_when_draft"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_promotions_fixed_bonus_within_threshold"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_promotions_discount_below_100"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_promotions_pending_by_id_staff_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_promotions_edited_by_id_staff_users"), type_="foreignkey")
        batch_op.drop_column("pending_at")
        batch_op.drop_column("pending_by")
        batch_op.drop_column("pending_by_id")
        batch_op.drop_column("pending_terms")
        batch_op.drop_column("edited_by")
        batch_op.drop_column("edited_by_id")
        batch_op.drop_column("publish_requested")
