"""The sandbox gateway's hosted payment page. It plays the provider, so it reads only its own
book (``SandboxPayment``) and the order's public amount, and talks to the site only through
the signed notification, exactly as a real gateway would.

Its address is signed like a real provider's pay URL (``?sign=``, see SandboxProvider.checkout).
Without that signature every order number gets the 404 an unknown one gets, except in the browser
that made the order. After a payment only that browser is sent on to the order's page, whose
address is the order's secret token; anyone else who holds the link gets a page without it.
"""

from __future__ import annotations

import secrets
import time

from flask import Blueprint, Response, abort, current_app, request, url_for
from flask_babel import lazy_gettext as _l
from wtforms import HiddenField
from wtforms.validators import AnyOf

from heyon_site.billing.money import yuan
from heyon_site.billing.recharge import find_order
from heyon_site.customer import own_orders
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db, limiter
from heyon_site.models import RechargeOrder, SandboxPayment, SandboxRefund
from heyon_site.payments.context import Context, context_of
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import RefundRequest
from heyon_site.providers.sandbox import SandboxProvider
from heyon_site.sandbox.notifier import notify_url, send_in_background
from heyon_site.web.forms import Form
from heyon_site.web.fragments import redirect_to, render
from heyon_site.web.limits import ip_limit

bp = Blueprint("sandbox", __name__, url_prefix="/pay/sandbox")
# The page and its form are limited per address like every other form, as one budget.
limiter.shared_limit(ip_limit, scope="sandbox-gateway")(bp)

OUTCOMES = ("pay", "fail", "silent")

#: What a real provider would have done where this page was opened (payments/context.py), so the
#: sandbox shows each context's checkout: (WeChat Pay, Alipay).
REAL_CHECKOUTS: dict[Context, tuple[object, object]] = {
    "wechat": (
        _l("WeChat's own pay sheet (JSAPI), after a silent WeChat sign-in"),
        _l("a page saying to open this page in the browser"),
    ),
    "alipay": (_l("a page saying to open this page in WeChat or a browser"), _l("Alipay's mobile page (wap pay)")),
    "mobile": (_l("WeChat's mobile page (H5)"), _l("Alipay's mobile page (wap pay)")),
    "desktop": (_l("a QR code to scan with WeChat (Native)"), _l("Alipay's page, with its QR code")),
}


class GatewayForm(Form):
    outcome = HiddenField(validators=[AnyOf(OUTCOMES)])


def _sandbox() -> SandboxProvider:
    provider = get_provider("sandbox")
    assert isinstance(provider, SandboxProvider)  # the blueprint is registered only with it
    return provider


def _order_shown(order_no: str) -> RechargeOrder:
    """The order, if the address carries its signature or this browser made it; else the 404 an
    unknown order gets, decided before any query, so neither answer nor timing tells them apart."""
    signed = _sandbox().gateway_sign_matches(order_no, request.args.get("sign", ""))
    if not (signed or own_orders.made_here(order_no)):
        abort(404)
    order = find_order(db.session, order_no)
    if order is None or order.provider != "sandbox":
        abort(404)
    return order


@bp.get("/<order_no>")
def gateway(order_no: str) -> Response:
    order = _order_shown(order_no)
    # Back from the order page after paying shows what happened, not the buttons again (the page
    # is never cached, so Back asks for it anew); a hosted page takes one payment per order.
    done = db.session.query(SandboxPayment).filter_by(order_no=order_no).one_or_none()
    context = context_of(request.user_agent.string)
    response = render(
        "sandbox/gateway.html",
        order=order,
        context=context,
        real=REAL_CHECKOUTS[context],
        sign=_sandbox().gateway_sign(order_no),
        paid=None if done is None else done.status != "TRADE_CLOSED",
        own=own_orders.made_here(order_no),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<order_no>")
def pay(order_no: str) -> Response:
    order = _order_shown(order_no)
    form = GatewayForm(formdata=request.form)
    if not form.validate():
        abort(400)
    outcome = form.outcome.data
    status = "TRADE_CLOSED" if outcome == "fail" else "TRADE_SUCCESS"
    amount_fen, token = order.pay_fen, order.token

    def book() -> SandboxPayment:
        # The gateway's own record: one payment attempt per order, as a hosted page allows.
        row = db.session.query(SandboxPayment).filter_by(order_no=order_no).one_or_none()
        if row is None:
            row = SandboxPayment(
                order_no=order_no,
                trade_no="SBX" + secrets.token_hex(10).upper(),
                amount_fen=amount_fen,
                status=status,
                notify=outcome != "silent",
            )
            db.session.add(row)
            db.session.flush()
        return row

    row = in_write_transaction(book)
    if row.notify:
        _notify(order_no, row)
    if own_orders.made_here(order_no):
        return redirect_to(url_for("customer.order", token=token))
    response = render("sandbox/done.html", paid=row.status != "TRADE_CLOSED")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<order_no>/refund")
def console_refund(order_no: str) -> Response:
    """ "Refund" as a merchant would in the provider's own console, outside this site: the gateway
    gives back what its book holds of the payment and notifies with a request number that is not
    one of ours, so the site flags the order for a person (and refunds none of its own)."""
    _order_shown(order_no)  # signed address or this browser's order, else 404
    if not Form(formdata=request.form).validate():  # the CSRF token only
        abort(400)
    paid = db.session.query(SandboxPayment).filter_by(order_no=order_no).one_or_none()
    if paid is None or paid.status == "TRADE_CLOSED":
        abort(409)
    trade_no, paid_fen = paid.trade_no, paid.amount_fen

    def book() -> RefundRequest | None:
        returned = sum(r.amount_fen for r in db.session.query(SandboxRefund).filter_by(order_no=order_no))
        if returned >= paid_fen:
            return None  # given back already
        ask = RefundRequest(order_no, "CONSOLE" + secrets.token_hex(8).upper(), paid_fen - returned, paid_fen, trade_no)
        db.session.add(SandboxRefund(refund_no=ask.refund_no, order_no=order_no, amount_fen=ask.amount_fen))
        return ask

    made = in_write_transaction(book)
    if made is not None:
        notify_refund(made)
    return redirect_to(url_for("sandbox.gateway", order_no=order_no, sign=_sandbox().gateway_sign(order_no)))


def notify_refund(request: RefundRequest) -> None:
    """A refund the sandbox booked, told to the site as Alipay tells one: refund_fee and
    out_biz_no on the payment's notification address."""
    fields = {
        "out_trade_no": request.order_no,
        "trade_no": request.txn_id,
        "out_biz_no": request.refund_no,
        "refund_fee": yuan(request.amount_fen),
        "trade_status": "TRADE_SUCCESS",
        "notify_id": secrets.token_hex(16),
        "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "sign_type": "HMAC-SHA256",
    }
    _send(request.order_no, fields)


def _notify(order_no: str, row: SandboxPayment) -> None:
    """Post the signed notification in the background to the configured address only."""
    fields = {
        "out_trade_no": order_no,
        "trade_no": row.trade_no,
        "total_amount": yuan(row.amount_fen),
        "trade_status": row.status,
        "notify_id": secrets.token_hex(16),
        "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "sign_type": "HMAC-SHA256",
    }
    _send(order_no, fields)


def _send(order_no: str, fields: dict[str, str]) -> None:
    """Sign ``fields`` and post them in the background to the configured address only."""
    # Built from the URL map, not url_for: a refund is told from `flask payments reconcile` too,
    # where there is no request to take a host from (and none is wanted: see notify_url).
    path = current_app.url_map.bind("").build("payments.notify", {"name": "sandbox"})
    url = notify_url(current_app.config, path)
    if url is None:
        current_app.logger.warning(
            "sandbox notification for order %s not sent: no address to send it to (set HEYON_SITE_URL or "
            "HEYON_SANDBOX_NOTIFY_URL, or serve with gunicorn and gunicorn.conf.py); reconciliation finds "
            "the payment through the sandbox's query",
            order_no,
        )
        return
    fields["sign"] = _sandbox().sign(fields)
    sender = current_app.extensions.get("heyon.sandbox_sender", send_in_background)
    sender(url, fields, current_app.config["HEYON_SANDBOX_RETRY_SCHEDULE"])
