"""`flask payments reconcile`, the payment housekeeping command: a payment whose notification was lost
is credited, orders pending past the expiry are expired."""
from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select, update

from heyon_site.billing import ledger
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from tests.kit import balance, cli, flask_cli, make_card, order, start_order
from tests.payments.kit import pay_on_gateway


def age_order(order_no: str, minutes: int) -> None:
    """Pretend the order was created `minutes` ago (orders, unlike the ledger, may be updated)."""
    in_write_transaction(lambda: db.session.execute(
        update(RechargeOrder).where(RechargeOrder.order_no == order_no)
        .values(created_at=utcnow() - timedelta(minutes=minutes))))


def test_reconcile_credits_a_payment_whose_notification_was_lost(database: str, app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    order_no = start_order(client)
    pay_on_gateway(client, order_no, "silent")
    assert order(order_no).status == "pending"

    untouched = flask_cli(database, "payments", "reconcile")  # default: only orders pending 5+ minutes
    assert untouched.returncode == 0, untouched.stderr
    assert untouched.stdout.strip() == "reconcile: expired 0"
    assert order(order_no).status == "pending"

    result = flask_cli(database, "payments", "reconcile", "--older-than", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "reconcile: credited 1, expired 0"
    assert order(order_no).status == "credited"
    assert balance() == 500 + 10000

    again = flask_cli(database, "payments", "reconcile", "--older-than", "0")
    assert again.stdout.strip() == "reconcile: expired 0"  # nothing pending is left
    assert balance() == 500 + 10000
    assert ledger.verify(db.session).ok


def test_reconcile_expires_orders_pending_past_the_expiry(app: Flask, client: FlaskClient, runner: FlaskCliRunner) -> None:
    app.config["HEYON_ORDER_EXPIRY_MINUTES"] = 30
    make_card()
    stale, fresh, paid = start_order(client), start_order(client), start_order(client)
    pay_on_gateway(client, paid, "silent")
    age_order(stale, 31)
    age_order(fresh, 29)
    age_order(paid, 90)  # paid long ago but never notified: credited, not expired

    result = cli(runner, "payments", "reconcile")
    assert result.exit_code == 0
    assert result.stdout.strip() == "reconcile: credited 1, expired 1, still_pending 1"
    assert (order(stale).status, order(stale).status_reason) == ("expired", "timeout")
    assert order(stale).finalized_at is not None
    assert order(fresh).status == "pending"
    assert order(paid).status == "credited"
    assert balance() == 10000
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder).where(RechargeOrder.status == "expired")) == 1
    assert ledger.verify(db.session).ok
