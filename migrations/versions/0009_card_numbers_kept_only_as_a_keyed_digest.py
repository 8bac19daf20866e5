"""card numbers kept only as a keyed digest and their last four digits

A card is found by HMAC-SHA256(card key, number); receipts and the staff search need only the
last four digits. The numbers already stored are digested here with the site's card key
(config.card_number_key), then the column is dropped. There is no way back: the numbers are
gone, so the downgrade refuses and a backup made before this revision is the way back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 21:00:00

"""

import sqlalchemy as sa
from alembic import op
from flask import current_app

from heyon_site.config import card_number_digest, card_number_key

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("last4", sa.String(length=4), nullable=True))

    key = card_number_key(current_app.config)
    conn = op.get_bind()
    after = 0
    while True:  # in batches by id, so a million cards never sit in memory at once
        rows = conn.execute(
            sa.text("SELECT id, number FROM cards WHERE id > :after ORDER BY id LIMIT :n"), {"after": after, "n": BATCH}
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text("UPDATE cards SET number_digest = :digest, last4 = :last4 WHERE id = :id"),
            [{"id": id_, "digest": card_number_digest(key, number), "last4": number[-4:]} for id_, number in rows],
        )
        after = rows[-1][0]

    op.drop_index("ix_cards_number_last4", table_name="cards")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_constraint("uq_cards_number", type_="unique")
        batch_op.drop_column("number")
        batch_op.alter_column("number_digest", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("last4", existing_type=sa.String(length=4), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_cards_number_digest"), ["number_digest"])
        batch_op.create_index(batch_op.f("ix_cards_last4"), ["last4"], unique=False)


def downgrade():
    raise RuntimeError(
        "0009 dropped the card numbers (only their digests are kept); "
        "restore a backup made before it instead of downgrading"
    )
