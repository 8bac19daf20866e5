"""Opening a card from a customer form: the check, the device cookie, and one refusal message whatever was wrong."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from heyon_site.cards.auth import AuthResult, authenticate
from heyon_site.ops import alarms
from heyon_site.security import device_cookie
from heyon_site.security.throttle import whole_hours, whole_minutes
from heyon_site.web.forms import Form
from heyon_site.web.limits import checks_secret, ip_limit, secret_unchecked  # noqa: F401 - ip_limit: the sandbox imports it from here


def open_card(card_no: str, password: str) -> AuthResult:
    """The card's number and password, checked as this browser's attempt (its device cookie);
    a right password makes or renews the browser's entry for the card."""
    auth = authenticate(card_no, password, device_cookie.presented())
    if auth.subject is not None:
        device_cookie.remember(auth.subject)
    return auth


def refuse(form: Form, auth: AuthResult) -> int:
    """A card that did not open: a wrong number or password counts towards the spray alarm, the
    form carries the one refusal message; the status to answer with."""
    if auth.refused == "credentials":
        alarms.card_login_failed()
    elif auth.refused == "busy":
        secret_unchecked()  # nothing was checked: the address's failure budget is not spent
    message, status = refusal_message(auth)
    form.form_errors.append(message)
    return status


def refusal_message(auth: AuthResult) -> tuple[str, int]:
    """One message for a wrong number and a wrong password: nothing tells which one it was."""
    if auth.refused == "throttled":
        return _l(
            "Too many wrong attempts for this card. Try again in %(n)s minute(s).", n=whole_minutes(auth.retry_after)
        ), 429
    if auth.refused == "locked":
        return _l(
            "Too many wrong attempts: this card is locked for %(n)s hour(s) on devices it was not opened on "
            "before. Use a phone where you opened it before, or contact support.",
            n=whole_hours(auth.retry_after),
        ), 429
    if auth.refused == "busy":
        return _l("Many cards are being checked right now. Please try again in a few seconds."), 429
    if auth.refused == "blocked":
        return _l("This card cannot be recharged online. Please contact support."), 403
    return _l("The card number or password is wrong. Check both and try again."), 403
