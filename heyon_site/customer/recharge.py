"""The home page and the recharge form: the quote, the order, and on to the provider's checkout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flask import Response, abort, current_app, request, url_for
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict
from wtforms.validators import ValidationError

from heyon_site.billing import vouchers
from heyon_site.billing.promos import (
    PromoCaps,
    Quote,
    active_promotions,
    current_quote,
    offer_version,
    quote,
    quote_token,
)
from heyon_site.billing.recharge import start_recharge
from heyon_site.cards.numbers import CardNumberError, normalise_card_number
from heyon_site.customer import own_orders, wechat_sign_in
from heyon_site.customer.auth import open_card, refuse
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.forms import RechargeForm
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from heyon_site.ops import alarms
from heyon_site.payments.checkout import begin_payment
from heyon_site.payments.context import Context, blocked_here, context_of, device_for
from heyon_site.providers import enabled as enabled_providers
from heyon_site.providers import get as get_provider
from heyon_site.providers import wechat_oauth
from heyon_site.providers.base import OrderRef, ProviderUnavailable
from heyon_site.vouchers import services as voucher_services
from heyon_site.web import page_cache
from heyon_site.web.fragments import is_htmx, redirect_to, render
from heyon_site.web.limits import (
    checks_secret,
    ip_limit,  # noqa: F401 - ip_limit: the sandbox imports it from here
    secret_failed,
)

QUOTE_FIELDS = frozenset({"amount", "custom_amount", "method"})


def recharge_page(
    form: RechargeForm,
    block: str | None = None,
    status: int = 200,
    template: str = "customer/recharge.html",
    again: bool = False,
) -> Response:
    """A page with the recharge form and the running promotions. Each preset's button carries
    what it costs and earns, computed here so that a phone without JavaScript sees it; the quote
    line under the amounts is filled only in answers to htmx, which replaces it as the choice
    changes, so it can never show the terms of an amount no longer chosen."""
    now = utcnow()
    running = active_promotions(db.session, now)
    caps = PromoCaps.from_config(current_app.config)
    form.offer.data = offer_version(running, caps)
    deals = {value: quote(fen, running, now, caps=caps) for value, fen in form.presets.items()} if running else {}
    offer, problem = None, None
    if running and is_htmx():
        try:
            offer = quote(form.chosen_amount(), running, now, caps=caps)
        except ValidationError as e:
            problem = str(e)
    return render(
        template,
        block,
        status,
        form=form,
        method_notes=method_notes(context_of(request.user_agent.string)),
        promotions=running,
        deals=deals,
        quote=offer,
        quoted=quote_token(offer) if offer else "",
        amount_problem=problem,
        again=again,
    )


#: What a method does where it cannot pay as usual, said beside it on the form.
CONTEXT_NOTES = {
    ("alipay", "wechat"): _l("In WeChat: we show you how to open it in your browser"),
    ("wechat", "alipay"): _l("In Alipay: we show you how to open it in WeChat or a browser"),
}
NATIVE_IN_WECHAT = _l("In WeChat: a code to scan with another phone, or open this page in a browser")


def method_notes(context: Context) -> dict[str, object]:
    notes: dict[str, object] = {
        name: CONTEXT_NOTES[(name, context)] for name in enabled_providers() if blocked_here(name, context)
    }
    if context == "wechat" and "wechat" in enabled_providers() and wechat_oauth() is None:
        notes["wechat"] = NATIVE_IN_WECHAT
    return notes


def form_page(template: str) -> Response:
    """Home and the empty recharge form: the same for every visitor of a language (and of a place:
    WeChat's browser, Alipay's app, any other) but for the CSRF token, so they come from the page
    cache (web/page_cache.py says what may be stale)."""
    answer = page_cache.response(
        template,
        lambda: recharge_page(RechargeForm(formdata=None), template=template).get_data(as_text=True),
        variant=context_of(request.user_agent.string),
    )
    answer.vary.add("User-Agent")  # what each method does here depends on the browser it is
    return answer


@bp.get("/")
def home() -> Response:
    return form_page("customer/home.html")


@bp.get("/recharge")
def recharge() -> Response:
    number = own_orders.last_card() if request.args.get("again") else None
    if number is None:
        return form_page("customer/recharge.html")
    # "Recharge again" from an order page: the card number this browser used, the password to
    # type again. Per visitor, so never from the page cache.
    form = RechargeForm(formdata=None)
    form.card_number.data = number
    return no_store(recharge_page(form, again=True))


@bp.get("/recharge/quote")
def recharge_quote() -> Response:
    """What the amount picked so far earns: the line under the amounts for htmx, the page with
    that amount chosen otherwise."""
    # Only the amount fields: nothing about the card is read from a URL, or echoed into the page.
    asked = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k in QUOTE_FIELDS])
    return recharge_page(RechargeForm(formdata=asked), "quote")


@bp.post("/recharge/summary")
def recharge_summary() -> Response:
    """What the form's choices come to before paying (htmx only, as they change): the card's
    ending as typed, what is paid and received, the method. A POST, so the card number never
    travels in a URL; the password is never sent (hx-params), and nothing is looked up or
    written: the card is checked only when the form is sent."""
    if not is_htmx():
        return redirect_to(url_for("customer.recharge"))
    return render("customer/recharge.html", "summary", summary=summary_of(RechargeForm(formdata=request.form)))


@dataclass(frozen=True)
class Summary:
    last4: str | None
    terms: Quote | None
    method: str | None


def summary_of(form: RechargeForm) -> Summary | None:
    """The parts of the summary the form's fields make out; None when none does."""
    try:
        last4: str | None = normalise_card_number(form.card_number.data or "")[-4:]
    except CardNumberError:
        last4 = None
    try:
        terms: Quote | None = current_quote(
            db.session, form.chosen_amount(), caps=PromoCaps.from_config(current_app.config)
        )
    except ValidationError:
        terms = None
    if form.by_voucher:
        terms = None  # a voucher credits its own value, which only the voucher knows
    # The chosen one of the enabled methods, by the label its button shows.
    method = next((str(label) for _, label, chosen, *_ in form.method.iter_choices() if chosen), None)
    return Summary(last4, terms, method) if last4 or terms or method else None


@bp.post("/recharge")
@checks_secret
def recharge_submit() -> Response:
    form = RechargeForm(formdata=request.form)  # only form fields: never JSON, never files
    if not form.validate():
        return recharge_page(form, "recharge_form", 422)
    auth = open_card(form.card_no, form.password.data or "")
    if auth.card_id is None:
        return recharge_page(form, "recharge_form", refuse(form, auth))
    if form.by_voucher:
        return pay_by_voucher(form, auth.card_id)
    provider = get_provider(form.method.data or "") or abort(400)
    card_id, amount_fen, locale, form_id = auth.card_id, form.amount_fen, str(get_locale()), form.one_time_id()
    email = form.email_address
    caps = PromoCaps.from_config(current_app.config)

    def make_order() -> Started:
        # Quoted again at the moment of the order, in its transaction: the promotion shown
        # earlier may have ended since.
        now = utcnow()
        running = active_promotions(db.session, now)
        terms = quote(amount_fen, running, now, caps=caps)
        seen = form.saw(terms, offer_version(running, caps))
        made = start_recharge(
            db.session,
            card_id,
            amount_fen,
            provider.name,
            locale,
            terms=terms,
            form_id=form_id,
            needs_confirmation=not seen,
            email=email,
        )
        return Started.of(made)

    order = in_write_transaction(make_order)
    own_orders.remember(order.order_no)  # the sandbox gateway sends only this browser on to its page
    own_orders.remember_card(form.card_no)
    if order.needs_confirmation:
        return redirect_to(url_for("customer.order", token=order.token))  # the new terms, and "pay"
    try:
        return to_checkout(order)
    except ProviderUnavailable:
        form.form_errors.append(METHOD_UNAVAILABLE)
        return recharge_page(form, "recharge_form", 503)


#: One answer for every voucher that pays nothing (no such PIN, not sold yet, voided, expired,
#: used): nothing tells a stranger which PINs exist.
VOUCHER_REFUSED = _l(
    "This voucher cannot be used. Check the PIN. A voucher pays once, until its expiry date, after the shop "
    "has sold it; if it still fails, ask the shop or our support."
)


def pay_by_voucher(form: RechargeForm, card_id: int) -> Response:
    """A voucher pays at once: its value is credited in this request, and the order page shows it
    credited. A PIN that pays nothing spends the address's failure budget, like a wrong card
    password, and counts towards the site-wide guessing alarm."""
    key, today = voucher_services.pin_key(), voucher_services.site_today(current_app.config)
    locale, email, pin = str(get_locale()), form.email_address, form.pin

    def use() -> tuple[str, str] | None:
        order = vouchers.redeem(db.session, key, card_id, pin, locale, today, email=email)
        return None if order is None else (order.order_no, order.token)

    used = in_write_transaction(use)
    if used is None:
        secret_failed()
        alarms.voucher_refused()
        form.voucher_pin.errors = [VOUCHER_REFUSED]
        return recharge_page(form, "recharge_form", 422)
    order_no, token = used
    own_orders.remember(order_no)
    own_orders.remember_card(form.card_no)
    return redirect_to(url_for("customer.order", token=token))


METHOD_UNAVAILABLE = _l(
    "This payment method is not answering right now. Try again in a minute or choose another method."
)


class CheckoutOrder(Protocol):
    """What sending a customer on to pay reads of an order."""

    @property
    def id(self) -> int: ...
    @property
    def order_no(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def pay_fen(self) -> int: ...
    @property
    def pay_qr(self) -> str | None: ...
    @property
    def pay_url(self) -> str | None: ...
    @property
    def pay_jsapi(self) -> str | None: ...


@dataclass(frozen=True)
class Started:
    """A new (or repeated) order as its transaction left it: read before the commit, so nothing
    after it loads the row again."""

    id: int
    order_no: str
    token: str
    provider: str
    pay_fen: int
    pay_qr: str | None
    pay_url: str | None
    pay_jsapi: str | None
    needs_confirmation: bool

    @classmethod
    def of(cls, o: RechargeOrder) -> Started:
        return cls(
            o.id, o.order_no, o.token, o.provider, o.pay_fen, o.pay_qr, o.pay_url, o.pay_jsapi, o.needs_confirmation
        )


def to_checkout(order: CheckoutOrder, openid: str | None = None) -> Response:
    """Send the customer on to pay: where a checkout was begun already (the same form sent
    again), the same one; else a new one with the provider, as where the customer is allows
    (payments/context.py). Raises ProviderUnavailable, and the order then stays pending, payable
    another way, and expires unpaid."""
    back = url_for("customer.order", token=order.token)
    if order.pay_qr or order.pay_jsapi:
        return redirect_to(back)  # the QR code, or WeChat's pay sheet, is opened there
    if order.pay_url:
        return redirect_to(order.pay_url)
    context = context_of(request.user_agent.string)
    if blocked_here(order.provider, context):
        return redirect_to(back)  # it says where this method can pay, and offers the others
    provider = get_provider(order.provider) or abort(409)
    device = device_for(context)
    if order.provider == "wechat" and context == "wechat":
        oauth = wechat_oauth()
        if oauth is None:
            device = "desktop"  # no official account: the Native QR code, with what to do about it
        else:
            openid = openid or wechat_sign_in.remembered_openid(oauth.appid)
            if openid is None:
                return _sign_in(order, oauth.authorize_url)
    # WeChat compares the H5 payer's address with the one that opens its page; behind a proxy
    # ProxyFix (HEYON_PROXY_HOPS) puts the client's address here.
    ref = OrderRef(
        order.order_no,
        order.pay_fen,
        "Heyon card recharge",
        url_for("customer.order", token=order.token, _external=True),
        request.remote_addr,
        payer_openid=openid,
    )
    try:
        checkout = begin_payment(provider, ref, device)
    except ProviderUnavailable:
        current_app.logger.warning("%s checkout for order %s failed: provider unavailable", provider.name, ref.order_no)
        raise
    if checkout.qr_payload or checkout.jsapi or not checkout.redirect_url:
        return redirect_to(back)
    return redirect_to(checkout.redirect_url)


def _sign_in(order: CheckoutOrder, authorize_url: Callable[[str, str], str]) -> Response:
    """WeChat's silent sign-in first (the openid JSAPI needs); it comes back to
    customer.wechat_signed_in with the state, and on to the pay sheet."""
    # The state is good only in the browser that started it: this one, which may not be the
    # one that made the order (made in Alipay's app, opened in WeChat to pay).
    own_orders.remember(order.order_no)
    state = wechat_sign_in.new_state(order.id, order.order_no)
    if state is None:
        return redirect_to(url_for("customer.order", token=order.token))
    return redirect_to(authorize_url(url_for("customer.wechat_signed_in", _external=True), state))
