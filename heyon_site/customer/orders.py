"""An order's pages: its status (polled while pending), accepting changed terms, checking the payment, the receipt."""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Response, abort, current_app, request, url_for
from markupsafe import Markup

from heyon_site.billing import invoices, receipts, refunds
from heyon_site.billing.recharge import accept_terms, find_by_token, switch_method
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.forms import (
    PROVIDER_LABELS,
    CheckPaymentForm,
    ConfirmTermsForm,
    ContinuePaymentForm,
    InvoiceForm,
    OtherMethodForm,
)
from heyon_site.customer.recharge import METHOD_UNAVAILABLE, to_checkout
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db, limiter
from heyon_site.models import RechargeOrder, utcnow
from heyon_site.payments.context import Context, blocked_here, context_of
from heyon_site.payments.reconcile import candidate, check_one
from heyon_site.providers import enabled as enabled_providers
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import ProviderUnavailable
from heyon_site.web.fragments import is_htmx, redirect_to, render
from heyon_site.web.limits import checks_secret, ip_limit  # noqa: F401 - ip_limit: the sandbox imports it from here


@bp.get("/orders/<token>")
def order(token: str) -> Response:
    return order_page(find_by_token(db.session, token) or abort(404))


def order_page(
    found: RechargeOrder,
    status: int = 200,
    problem: object = None,
    block: str = "order_status",
    invoice_form: InvoiceForm | None = None,
    invoice_problem: object = None,
) -> Response:
    waited = utcnow() - found.created_at
    context = context_of(request.user_agent.string)
    pending = found.status == "pending"
    qr = None
    if pending and found.pay_qr:
        # A long web address (a signed Alipay link is about 1,000 characters) becomes a short one
        # of ours that redirects to it: a small QR code a cheap camera reads. An app scheme
        # (weixin://) must be scanned as it is. segno escapes the payload into its own SVG.
        payload = (
            url_for("customer.order_pay", token=found.token, _external=True)
            if found.pay_qr.startswith(("https://", "http://"))
            else found.pay_qr
        )
        qr = Markup(receipts.qr_svg(payload))
    begun = bool(found.pay_url or found.pay_qr or found.pay_jsapi or found.provider_ref)
    returned = refunds.what_became_of(db.session, found.id) if found.status in ("review", "credited") else []
    waiting = pending and not found.needs_confirmation
    others = other_methods(found, context) if waiting and not begun else []
    # A credited order's invoice (customer/invoice.py): the request's state, or the form to ask.
    invoice = invoices.of_order(db.session, found.id) if found.status == "credited" else None
    return no_store(
        render(
            "customer/order.html",
            block,
            status,
            order=found,
            qr=qr,
            problem=problem,
            context=context,
            begun=begun,
            blocked=waiting and not begun and blocked_here(found.provider, context),
            # WeChat's pay sheet opens only inside WeChat; elsewhere the page says where it began.
            sheet=json.loads(found.pay_jsapi) if pending and found.pay_jsapi and context == "wechat" else None,
            check_form=CheckPaymentForm(formdata=None),
            confirm_form=ConfirmTermsForm(formdata=None),
            continue_form=ContinuePaymentForm(formdata=None),
            other_form=OtherMethodForm(formdata=None, methods=others) if others else None,
            method=PROVIDER_LABELS.get(found.provider, found.provider),
            overdue=pending and waited > timedelta(minutes=current_app.config["HEYON_PENDING_HELP_MINUTES"]),
            # Payments that credited nothing, and what people (or the rule) did with each.
            returned=returned,
            returned_done=all(state in ("credited", "refunded", "refunding") for state, _ in returned),
            invoice=invoice,
            invoice_form=invoice_form or (InvoiceForm(formdata=None) if found.status == "credited" else None),
            invoice_problem=invoice_problem,
        )
    )


def other_methods(found: RechargeOrder, context: Context) -> list[str]:
    """The enabled methods, other than the order's, that can pay it where the customer is."""
    return [
        name
        for name, provider in enabled_providers().items()
        if name != found.provider and not blocked_here(name, context) and provider.min_fen <= found.pay_fen
    ]


@bp.post("/orders/<token>/checkout")
@limiter.limit(ip_limit)
def order_checkout(token: str) -> Response:
    """Go on to pay an order with which no provider was asked yet: opened now where its method
    can pay (the browser, after WeChat), or after the provider did not answer."""
    found = find_by_token(db.session, token) or abort(404)
    if not ContinuePaymentForm(formdata=request.form).validate():
        abort(400)
    if found.status != "pending" or found.needs_confirmation:
        return redirect_to(url_for("customer.order", token=token))
    try:
        return to_checkout(found)
    except ProviderUnavailable:
        return order_page(found, status=503, problem=METHOD_UNAVAILABLE)


@bp.post("/orders/<token>/method")
@limiter.limit(ip_limit)
def order_method(token: str) -> Response:
    """Pay the order another way, while no provider has been asked for anything about it."""
    found = find_by_token(db.session, token) or abort(404)
    form = OtherMethodForm(formdata=request.form, methods=other_methods(found, context_of(request.user_agent.string)))
    if not form.validate():
        return order_page(found, status=422, problem=form.method.errors[0] if form.method.errors else None)
    order_id, method = found.id, form.method.data or ""
    if not in_write_transaction(lambda: switch_method(db.session, order_id, method)):
        return redirect_to(url_for("customer.order", token=token))  # begun, paid or expired meanwhile
    return _go_on_paying(token)


def _go_on_paying(token: str) -> Response:
    """After a change to the order (terms accepted, method switched): read it again, then pay."""
    db.session.expire_all()
    found = find_by_token(db.session, token) or abort(404)
    try:
        return to_checkout(found)
    except ProviderUnavailable:
        return order_page(found, status=503, problem=METHOD_UNAVAILABLE)


@bp.get("/orders/<token>/pay")
def order_pay(token: str) -> Response:
    """Where the order page's QR code points: on to the provider's page while the order can
    still be paid, else back to the order."""
    found = find_by_token(db.session, token) or abort(404)
    if found.status == "pending" and found.pay_qr and found.pay_qr.startswith(("https://", "http://")):
        return no_store(redirect_to(found.pay_qr))
    return redirect_to(url_for("customer.order", token=token))


@bp.post("/orders/<token>/start")
@limiter.limit(ip_limit)
def order_start(token: str) -> Response:
    """The customer accepts the terms the order page shows (they changed after the form was
    shown) and goes on to pay."""
    found = find_by_token(db.session, token) or abort(404)
    if not ConfirmTermsForm(formdata=request.form).validate():
        abort(400)
    order_id = found.id
    if not in_write_transaction(lambda: accept_terms(db.session, order_id)):
        return redirect_to(url_for("customer.order", token=token))  # paid, expired, or accepted already
    return _go_on_paying(token)


def check_limit() -> str:
    limit: str = current_app.config["HEYON_CHECK_LIMIT"]
    return limit


@bp.post("/orders/<token>/check")
@limiter.limit(check_limit)
def order_check(token: str) -> Response:
    """Ask the provider about this one order now, as reconciliation would (never expires it)."""
    found = find_by_token(db.session, token) or abort(404)
    if not CheckPaymentForm(formdata=request.form).validate():
        abort(400)
    interval = timedelta(seconds=current_app.config["HEYON_CHECK_INTERVAL_SECONDS"])
    if found.status == "pending" and (found.checked_at is None or utcnow() - found.checked_at >= interval):
        asked = candidate(found.order_no)
        if asked is not None:
            outcome = check_one(asked, get_provider, expire_after=None)
            current_app.logger.info("check now for order %s: %s", found.order_no, outcome)
        db.session.expire_all()
        found = find_by_token(db.session, token) or abort(404)
    if is_htmx():
        return order_page(found)
    return redirect_to(url_for("customer.order", token=token))
