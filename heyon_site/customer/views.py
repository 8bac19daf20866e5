"""Customer pages: home, recharge, order status, receipt, FAQ."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, request, url_for
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from wtforms.validators import ValidationError

from .. import alarms, device_cookie, page_cache
from ..billing import receipts
from ..billing.cards import AuthResult, authenticate, summary
from ..billing.promos import PromoCaps, active_promotions, offer_version, quote, quote_token
from ..billing.recharge import accept_terms, find_by_token, start_recharge
from ..database import in_write_transaction
from ..extensions import db, limiter
from ..htmx import is_htmx, redirect_to, render
from ..limits import checks_secret, ip_limit  # noqa: F401 - ip_limit: the sandbox imports it from here
from ..models import RechargeOrder, utcnow
from ..providers import get as get_provider
from ..payments.reconcile import begin_payment, candidate, check_one, device_of
from ..providers.base import OrderRef, ProviderUnavailable
from . import own_orders
from .forms import PROVIDER_LABELS, BalanceForm, CheckPaymentForm, ConfirmTermsForm, RechargeForm

bp = Blueprint("customer", __name__)

QUOTE_FIELDS = frozenset({"amount", "custom_amount", "method"})


def no_store(response: Response) -> Response:
    """Balances, orders and receipts stay out of every cache, shared or the browser's."""
    response.headers["Cache-Control"] = "no-store"
    return response


def open_card(card_no: str, password: str) -> AuthResult:
    """The card's number and password, checked as this browser's attempt (its device cookie);
    a right password makes or renews the browser's entry for the card."""
    auth = authenticate(card_no, password, device_cookie.presented())
    if auth.subject is not None:
        device_cookie.remember(auth.subject)
    return auth


def refusal_message(auth: AuthResult) -> tuple[object, int]:
    """One message for a wrong number and a wrong password: nothing tells which one it was."""
    if auth.refused == "throttled":
        minutes = max(1, (auth.retry_after + 59) // 60)
        return _l("Too many wrong attempts for this card. Try again in %(n)s minute(s).", n=minutes), 429
    if auth.refused == "locked":
        hours = max(1, (auth.retry_after + 3599) // 3600)
        return _l("Too many wrong attempts: this card is locked for %(n)s hour(s) on devices it was not opened on "
                  "before. Use a phone where you opened it before, or contact support.", n=hours), 429
    if auth.refused == "blocked":
        return _l("This card cannot be recharged online. Please contact support."), 403
    return _l("The card number or password is wrong. Check both and try again."), 403


def recharge_page(form: RechargeForm, block: str | None = None, status: int = 200,
                  template: str = "customer/recharge.html") -> Response:
    """A page with the recharge form and the running promotions. Each preset's button carries
    what it costs and earns, computed here so that a phone without JavaScript sees it; the quote
    line under the amounts is filled only in answers to htmx, which replaces it as the choice
    changes, so it can never show the terms of an amount no longer chosen."""
    now = utcnow()
    running = active_promotions(now)
    caps = PromoCaps.from_config(current_app.config)
    form.offer.data = offer_version(running, caps)
    deals = {value: quote(fen, running, now, caps=caps) for value, fen in form.presets.items()} if running else {}
    offer, problem = None, None
    if running and is_htmx():
        try:
            offer = quote(form.chosen_amount(), running, now, caps=caps)
        except ValidationError as e:
            problem = str(e)
    return render(template, block, status, form=form, promotions=running, deals=deals, quote=offer,
                  quoted=quote_token(offer) if offer else "", amount_problem=problem)


def form_page(template: str) -> Response:
    """Home and the empty recharge form: the same for every visitor of a language but for the
    CSRF token, so they come from the page cache (page_cache.py says what may be stale)."""
    response = page_cache.response(template, lambda: recharge_page(RechargeForm(formdata=None), template=template)
                                   .get_data(as_text=True))
    response.vary.add("HX-Request")  # as render() says for every page
    return response


@bp.get("/")
def home() -> Response:
    return form_page("customer/home.html")


@bp.get("/recharge")
def recharge() -> Response:
    return form_page("customer/recharge.html")


@bp.get("/recharge/quote")
def recharge_quote() -> Response:
    """What the amount picked so far earns: the line under the amounts for htmx, the page with
    that amount chosen otherwise."""
    # Only the amount fields: nothing about the card is read from a URL, or echoed into the page.
    asked = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k in QUOTE_FIELDS])
    return recharge_page(RechargeForm(formdata=asked), "quote")


@bp.post("/recharge")
@checks_secret
def recharge_submit() -> Response:
    form = RechargeForm(formdata=request.form)  # only form fields: never JSON, never files
    if not form.validate():
        return recharge_page(form, "recharge_form", 422)
    auth = open_card(form.card_no, form.password.data or "")
    if auth.card_id is None:
        if auth.refused == "credentials":
            alarms.card_login_failed()
        message, status = refusal_message(auth)
        form.form_errors.append(message)
        return recharge_page(form, "recharge_form", status)
    provider = get_provider(form.method.data or "") or abort(400)
    card_id, amount_fen, locale, form_id = auth.card_id, form.amount_fen, str(get_locale()), form.one_time_id()
    # Quoted again at the moment of the order: the promotion shown earlier may have ended since.
    now = utcnow()
    running = active_promotions(now)
    caps = PromoCaps.from_config(current_app.config)
    terms = quote(amount_fen, running, now, caps=caps)
    seen = form.saw(terms, offer_version(running, caps))
    order = in_write_transaction(lambda: start_recharge(card_id, amount_fen, provider.name, locale, terms=terms,
                                                        form_id=form_id, needs_confirmation=not seen))
    own_orders.remember(order.order_no)  # the sandbox gateway sends only this browser on to its page
    if order.needs_confirmation:
        return redirect_to(url_for("customer.order", token=order.token))  # the new terms, and "pay"
    try:
        return to_checkout(order)
    except ProviderUnavailable:
        form.form_errors.append(METHOD_UNAVAILABLE)
        return recharge_page(form, "recharge_form", 503)


METHOD_UNAVAILABLE = _l("This payment method is not answering right now. Try again in a minute or choose another method.")


def to_checkout(order: RechargeOrder) -> Response:
    """Send the customer on to pay: where a checkout was begun already (the same form sent
    again), the same one; else a new one with the provider. Raises ProviderUnavailable, and the
    order then stays pending and expires unpaid."""
    if order.pay_qr:
        return redirect_to(url_for("customer.order", token=order.token))  # the QR code is shown there
    if order.pay_url:
        return redirect_to(order.pay_url)
    provider = get_provider(order.provider) or abort(409)
    # WeChat compares the H5 payer's address with the one that opens its page; behind a proxy
    # ProxyFix (HEYON_PROXY_HOPS) puts the client's address here.
    ref = OrderRef(order.order_no, order.pay_fen, "Heyon card recharge",
                   url_for("customer.order", token=order.token, _external=True), request.remote_addr)
    try:
        checkout = begin_payment(provider, ref, device_of(request.user_agent.string))
    except ProviderUnavailable:
        current_app.logger.warning("%s checkout for order %s failed: provider unavailable", provider.name, ref.order_no)
        raise
    if checkout.qr_payload or not checkout.redirect_url:
        return redirect_to(url_for("customer.order", token=order.token))
    return redirect_to(checkout.redirect_url)


@bp.get("/balance")
def balance() -> Response:
    return no_store(render("customer/balance.html", form=BalanceForm(formdata=None)))


@bp.post("/balance")
@checks_secret
def balance_submit() -> Response:
    form = BalanceForm(formdata=request.form)
    if not form.validate():
        return no_store(render("customer/balance.html", "balance_lookup", 422, form=form))
    auth = open_card(form.card_no, form.password.data or "")
    if auth.card_id is None:
        if auth.refused == "credentials":
            alarms.card_login_failed()
        message, status = refusal_message(auth)
        form.form_errors.append(message)
        return no_store(render("customer/balance.html", "balance_lookup", status, form=form))
    # A fresh, empty form below the result: the password is never sent back to the page.
    return no_store(render("customer/balance.html", "balance_lookup", form=BalanceForm(formdata=None),
                           card=summary(auth.card_id), low_balance_fen=current_app.config["HEYON_LOW_BALANCE_FEN"]))


@bp.get("/orders/<token>")
def order(token: str) -> Response:
    return _order_page(find_by_token(token) or abort(404))


def _order_page(found: RechargeOrder, status: int = 200, problem: object = None) -> Response:
    waited = utcnow() - found.created_at
    qr = None
    if found.status == "pending" and found.pay_qr:
        # A long web address (a signed Alipay link is about 1,000 characters) becomes a short one
        # of ours that redirects to it: a small QR code a cheap camera reads. An app scheme
        # (weixin://) must be scanned as it is. segno escapes the payload into its own SVG.
        payload = (url_for("customer.order_pay", token=found.token, _external=True)
                   if found.pay_qr.startswith(("https://", "http://")) else found.pay_qr)
        qr = Markup(receipts.qr_svg(payload))
    return no_store(render(
        "customer/order.html", "order_status", status, order=found, qr=qr, problem=problem,
        check_form=CheckPaymentForm(formdata=None), confirm_form=ConfirmTermsForm(formdata=None),
        method=PROVIDER_LABELS.get(found.provider, found.provider),
        overdue=found.status == "pending" and waited > timedelta(minutes=current_app.config["HEYON_PENDING_HELP_MINUTES"]),
    ))


@bp.get("/orders/<token>/pay")
def order_pay(token: str) -> Response:
    """Where the order page's QR code points: on to the provider's page while the order can
    still be paid, else back to the order."""
    found = find_by_token(token) or abort(404)
    if found.status == "pending" and found.pay_qr and found.pay_qr.startswith(("https://", "http://")):
        return no_store(redirect_to(found.pay_qr))
    return redirect_to(url_for("customer.order", token=token))


@bp.post("/orders/<token>/start")
@limiter.limit(ip_limit)
def order_start(token: str) -> Response:
    """The customer accepts the terms the order page shows (they changed after the form was
    shown) and goes on to pay."""
    found = find_by_token(token) or abort(404)
    if not ConfirmTermsForm(formdata=request.form).validate():
        abort(400)
    order_id = found.id
    if not in_write_transaction(lambda: accept_terms(order_id)):
        return redirect_to(url_for("customer.order", token=token))  # paid, expired, or accepted already
    db.session.expire_all()
    found = find_by_token(token) or abort(404)
    try:
        return to_checkout(found)
    except ProviderUnavailable:
        return _order_page(found, status=503, problem=METHOD_UNAVAILABLE)


def check_limit() -> str:
    return current_app.config["HEYON_CHECK_LIMIT"]


@bp.post("/orders/<token>/check")
@limiter.limit(check_limit)
def order_check(token: str) -> Response:
    """Ask the provider about this one order now, as reconciliation would (never expires it)."""
    found = find_by_token(token) or abort(404)
    if not CheckPaymentForm(formdata=request.form).validate():
        abort(400)
    interval = timedelta(seconds=current_app.config["HEYON_CHECK_INTERVAL_SECONDS"])
    if found.status == "pending" and (found.checked_at is None or utcnow() - found.checked_at >= interval):
        asked = candidate(found.order_no)
        if asked is not None:
            outcome = check_one(asked, get_provider, expire_after=None)
            current_app.logger.info("check now for order %s: %s", found.order_no, outcome)
        db.session.expire_all()
        found = find_by_token(token) or abort(404)
    if is_htmx():
        return _order_page(found)
    return redirect_to(url_for("customer.order", token=token))


@bp.get("/orders/<token>/receipt")
def receipt(token: str) -> Response:
    found = find_by_token(token) or abort(404)
    paper = request.args.get("paper", "80")
    if paper not in receipts.PAPERS:
        paper = "80"
    return no_store(render("receipts/receipt.html", receipt=receipts.build(found, current_app.config["HEYON_TIMEZONE"]),
                           paper=paper, papers=receipts.PAPERS,
                           qr=receipts.qr_svg(url_for("customer.receipt", token=token, _external=True))))
