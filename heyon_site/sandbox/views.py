"""The sandbox gateway's hosted payment page. It plays the provider, so it reads only its own
book (``SandboxPayment``) and the order's public amount, and talks to the site only through
the signed notification, exactly as a real gateway would."""
from __future__ import annotations

import secrets
import time

from flask import Blueprint, Response, abort, current_app, request, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import AnyOf

from ..billing.money import yuan
from ..billing.recharge import find_order
from ..database import in_write_transaction
from ..customer.views import ip_limit
from ..extensions import db, limiter
from ..htmx import redirect_to, render
from ..models import SandboxPayment
from ..providers import get as get_provider
from .notifier import send_in_background

bp = Blueprint("sandbox", __name__, url_prefix="/pay/sandbox")
# The gateway's form is limited per IP like every other form.
limiter.limit(ip_limit, methods=["POST"])(bp)

OUTCOMES = ("pay", "fail", "silent")


class GatewayForm(FlaskForm):
    outcome = HiddenField(validators=[AnyOf(OUTCOMES)])


@bp.get("/<order_no>")
def gateway(order_no: str) -> Response:
    order = find_order(order_no)
    if order is None or order.provider != "sandbox":
        abort(404)
    response = render("sandbox/gateway.html", order=order)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<order_no>")
def pay(order_no: str) -> Response:
    order = find_order(order_no)
    form = GatewayForm(formdata=request.form)
    if order is None or order.provider != "sandbox":
        abort(404)
    if not form.validate():
        abort(400)
    outcome = form.outcome.data
    status = "TRADE_CLOSED" if outcome == "fail" else "TRADE_SUCCESS"
    amount_fen, token = order.pay_fen, order.token

    def book() -> SandboxPayment:
        # The gateway's own record: one payment attempt per order, as a hosted page allows.
        row = db.session.query(SandboxPayment).filter_by(order_no=order_no).one_or_none()
        if row is None:
            row = SandboxPayment(order_no=order_no, trade_no="SBX" + secrets.token_hex(10).upper(),
                                 amount_fen=amount_fen, status=status, notify=outcome != "silent")
            db.session.add(row)
            db.session.flush()
        return row

    row = in_write_transaction(book)
    if row.notify:
        fields = {
            "out_trade_no": order_no,
            "trade_no": row.trade_no,
            "total_amount": yuan(row.amount_fen),
            "trade_status": row.status,
            "notify_id": secrets.token_hex(16),
            "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sign_type": "HMAC-SHA256",
        }
        provider = get_provider("sandbox")
        assert provider is not None and hasattr(provider, "sign")
        fields["sign"] = provider.sign(fields)
        url = current_app.config["HEYON_SANDBOX_NOTIFY_URL"] or url_for("payments.notify", name="sandbox", _external=True)
        sender = current_app.extensions.get("heyon.sandbox_sender", send_in_background)
        sender(url, fields, current_app.config["HEYON_SANDBOX_RETRY_SCHEDULE"])
    return redirect_to(url_for("customer.order", token=token))
