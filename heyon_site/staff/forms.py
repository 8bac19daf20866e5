"""Staff forms. Messages are lazy so they come out in the reader's language."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, Regexp

from ..billing.receipts import PAPERS
from ..models import ORDER_STATES


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
    date_from = DateField(_l("From"), [Optional()])
    date_to = DateField(_l("To"), [Optional()])
    status = SelectField(_l("Status"), choices=[SelectChoice("", "—"), *[SelectChoice(s, s) for s in ORDER_STATES]], default="")


class ReceiptForm(FlaskForm):
    paper = SelectField(_l("Paper"), choices=[SelectChoice(p, p.upper() if p == "a4" else f"{p} mm") for p in PAPERS], default="80")


class LogoutForm(FlaskForm):
    """Only the CSRF token: logout is a POST so another site cannot sign staff out."""
