"""The balance page: a card's balance, latest recharges and usage, after its number and password (a
POST, never a URL); and the low-balance reminder offered with that answer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response, current_app, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from heyon_site.billing.money import yuan
from heyon_site.cards.services import CardSummary, reminder_settings, set_low_balance, summary
from heyon_site.customer.auth import open_card, refuse
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.forms import BalanceForm, LowBalanceForm
from heyon_site.database import in_write_transaction
from heyon_site.ops.logs import mask_contact
from heyon_site.web import page_cache
from heyon_site.web.fragments import render
from heyon_site.web.limits import checks_secret, ip_limit  # noqa: F401 - ip_limit: the sandbox imports it from here

# What a usage charge was for (``UsageCharge.kind``), as the customer reads it.
USAGE_KINDS = {
    "voice": _l("Calls"),
    "data": _l("Mobile data"),
    "sms": _l("Text messages"),
    "other": _l("Other charges"),
}

# The reminder form is authorised by a grant: the card's id signed with the site's key when its
# password was right, good for this long. The password is never asked for or sent again, and the
# card number never travels in a URL.
GRANT_SALT = "heyon.balance.low-balance-reminder"
GRANT_SECONDS = 15 * 60
GRANT_EXPIRED = _l("This form is more than 15 minutes old. Check your balance again to set the reminder.")
GRANT_REFUSED = _l("This form is not valid. Check your balance again to set the reminder.")


@dataclass(frozen=True)
class Reminder:
    """The reminder section of a balance answer."""

    form: LowBalanceForm | None  # None: the grant was refused, nothing can be changed here
    phone: str | None = None  # masked: where reminders go
    threshold_fen: int | None = None
    saved: bool = False
    problem: str | None = None


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=GRANT_SALT)


def reminder_of(card: CardSummary) -> Reminder:
    """The reminder form under a balance result, with a fresh grant for this card."""
    form = LowBalanceForm(formdata=None)
    form.card.data, form.grant.data = str(card.id), _signer().dumps(card.id)
    form.threshold.data = yuan(card.low_balance_fen).removesuffix(".00") if card.low_balance_fen else ""
    return Reminder(form, mask_contact(card.msisdn) if card.msisdn else None, card.low_balance_fen)


def granted_card(form: LowBalanceForm) -> tuple[int | None, str | None]:
    """The card the form's grant is for, if it is fresh, ours and for the card the form names;
    else why not."""
    try:
        card_id = _signer().loads(form.grant.data or "", max_age=GRANT_SECONDS)
    except SignatureExpired:
        return None, str(GRANT_EXPIRED)
    except BadSignature:
        return None, str(GRANT_REFUSED)
    if not isinstance(card_id, int) or str(card_id) != (form.card.data or "").strip():
        return None, str(GRANT_REFUSED)
    return card_id, None


def balance_page(block: str | None = None, status: int = 200, **context: object) -> Response:
    context.setdefault("form", BalanceForm(formdata=None))
    context.setdefault("usage_kinds", USAGE_KINDS)
    context.setdefault("low_balance_fen", current_app.config["HEYON_LOW_BALANCE_FEN"])
    return no_store(render("customer/balance.html", block, status, **context))


@bp.get("/balance")
def balance() -> Response:
    # The empty form is the same for every visitor of a language but for the CSRF token.
    return no_store(
        page_cache.response(
            "customer/balance.html",
            lambda: render("customer/balance.html", form=BalanceForm(formdata=None)).get_data(as_text=True),
        )
    )


@bp.post("/balance")
@checks_secret
def balance_submit() -> Response:
    form = BalanceForm(formdata=request.form)
    if not form.validate():
        return balance_page("balance_lookup", 422, form=form)
    auth = open_card(form.card_no, form.password.data or "")
    if auth.card_id is None:
        return balance_page("balance_lookup", refuse(form, auth), form=form)
    # A fresh, empty form below the result: the password is never sent back to the page.
    card = summary(auth.card_id)
    return balance_page("balance_lookup", card=card, reminder=reminder_of(card))


@bp.post("/balance/reminder")
@checks_secret
def balance_reminder() -> Response:
    """Set or turn off the low-balance reminder of the card a balance result was for."""
    form = LowBalanceForm(formdata=request.form)
    card_id, refused = granted_card(form)
    if card_id is None:
        return balance_page("reminder", 403, reminder=Reminder(None, problem=refused))
    if not form.validate():
        phone, threshold = reminder_settings(card_id)
        return balance_page("reminder", 422, reminder=Reminder(form, mask_contact(phone) if phone else None, threshold))
    fen, locale = form.threshold_fen, str(get_locale())
    phone = in_write_transaction(lambda: set_low_balance(card_id, fen, locale))
    return balance_page("reminder", reminder=Reminder(form, mask_contact(phone) if phone else None, fen, saved=True))
