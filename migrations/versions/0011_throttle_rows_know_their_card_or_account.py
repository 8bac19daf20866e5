"""throttle rows know their card or account; the staff mirror of the throttle goes

Every row of login_throttles gets ``subject``, the keyed hash of the card number or username it
counts for, with an index, so that a reset finds and clears every row of one card or account
(the one of unknown devices, one per known device, the devices' shared allowance). Rows made
before this revision are all of the first kind, whose key *is* that hash, so they are filled
from their own key and keep throttling as before.

staff_users.failed_logins and blocked_until mirrored the password throttle for the admin pages
and went stale (a reset cleared the mirror, not the throttle); the pages now read the throttle
rows themselves, so the columns are dropped.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 10:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=64), nullable=True))
    op.execute("UPDATE login_throttles SET subject = key")
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.alter_column("subject", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f("ix_login_throttles_subject"), ["subject"], unique=False)

    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_staff_users_failed_logins_not_negative"), type_="check")
        batch_op.drop_column("blocked_until")
        batch_op.drop_column("failed_logins")


def downgrade():
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("blocked_until", sa.DateTime(), nullable=True))
        batch_op.create_check_constraint(batch_op.f("ck_staff_users_failed_logins_not_negative"), "failed_logins >= 0")

    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttles_subject"))
        batch_op.drop_column("subject")
