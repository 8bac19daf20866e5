"""Staff forms. Messages are lazy so they come out in the reader's language."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length, Optional, Regexp

from ..billing.receipts import PAPERS
from ..models import ORDER_STATES, STAFF_ROLES
from .auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from .inputs import SiteDates


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), [InputRequired(_l("Enter your username.")), Length(max=64)],
                           render_kw={"autocomplete": "username", "autocapitalize": "off", "spellcheck": "false",
                                      "maxlength": "64"})
    password = PasswordField(_l("Password"), [InputRequired(_l("Enter your password.")), Length(max=128)],
                             render_kw={"autocomplete": "current-password", "maxlength": "128"})


class OrderSearchForm(FlaskForm):
    """A GET form: searching changes nothing, so it needs no CSRF token and can be bookmarked."""

    class Meta:
        csrf = False

    order_no = StringField(_l("Order number"), [Optional(), Regexp(r"^\d{1,24}$", message=_l("Digits only."))],
                           render_kw={"inputmode": "numeric", "maxlength": "24"})
    last4 = StringField(_l("Card last 4 digits"), [Optional(), Regexp(r"^\d{4}$", message=_l("Four digits."))],
                        render_kw={"inputmode": "numeric", "maxlength": "4"})
    # Days the site can turn into UTC boundaries (inputs.EARLIEST to LATEST): year 1 or 9999 cannot.
    date_from = DateField(_l("From"), [Optional(), SiteDates()])
    date_to = DateField(_l("To"), [Optional(), SiteDates()])
    status = SelectField(_l("Status"), choices=[SelectChoice("", "—"), *[SelectChoice(s, s) for s in ORDER_STATES]], default="")


class ReceiptForm(FlaskForm):
    paper = SelectField(_l("Paper"), choices=[SelectChoice(p, p.upper() if p == "a4" else f"{p} mm") for p in PAPERS], default="80")


class LogoutForm(FlaskForm):
    """Only the CSRF token: logout is a POST so another site cannot sign staff out."""


class ActionForm(FlaskForm):
    """Only the CSRF token: publish, unpublish, move, end, reset are POSTs with no fields."""


class CodeForm(FlaskForm):
    code = StringField(_l("6-digit code from the authenticator app"),
                       [InputRequired(_l("Enter the code.")), Length(max=16)],
                       render_kw={"inputmode": "numeric", "autocomplete": "one-time-code", "maxlength": "16",
                                  "autocapitalize": "off", "spellcheck": "false"})


def _new_password(label: object) -> PasswordField:
    return PasswordField(label, [InputRequired(_l("Required.")),
                                 Length(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH,
                                        message=_l("%(min)s to %(max)s characters.", min=MIN_PASSWORD_LENGTH,
                                                   max=MAX_PASSWORD_LENGTH))],
                         render_kw={"autocomplete": "new-password", "maxlength": str(MAX_PASSWORD_LENGTH)})


def _repeat() -> PasswordField:
    return PasswordField(_l("New password again"), [EqualTo("new_password", _l("The two new passwords differ."))],
                         render_kw={"autocomplete": "new-password", "maxlength": str(MAX_PASSWORD_LENGTH)})


class SetPasswordForm(FlaskForm):
    """An admin sets another account's password (it ends that account's sessions)."""

    new_password = _new_password(_l("New password"))
    again = _repeat()


class ChangePasswordForm(SetPasswordForm):
    """One's own password: the current one first, so a borrowed session cannot take the account."""

    current = PasswordField(_l("Current password"), [InputRequired(_l("Required.")), Length(max=MAX_PASSWORD_LENGTH)],
                            render_kw={"autocomplete": "current-password", "maxlength": str(MAX_PASSWORD_LENGTH)})


def _role() -> SelectField:
    return SelectField(_l("Role"), choices=[SelectChoice(r, r) for r in STAFF_ROLES], default="cashier")


class AccountSettingsForm(FlaskForm):
    role = _role()
    active = BooleanField(_l("Can sign in"), default=True)
    totp_required = BooleanField(_l("Require a second factor (authenticator code)"))


class NewAccountForm(AccountSettingsForm):
    username = StringField(_l("Username"), [InputRequired(_l("Required.")), Length(max=64, message=_l("Too long.")),
                                            Regexp(r"^[\w.@-]+$", message=_l("Letters, digits and . _ - @ only."))],
                           filters=[lambda t: t.strip() if isinstance(t, str) else t],
                           render_kw={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false",
                                      "maxlength": "64"})
    new_password = _new_password(_l("First password"))
    again = _repeat()
