"""Staff forms. Messages are lazy so they come out in the reader's language."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms 3.2 lacks it
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from heyon_site import sitetime
from heyon_site.billing.money import AmountError, parse_amount
from heyon_site.billing.promos import MAX_TITLE, NewPromotion
from heyon_site.billing.receipts import PAPERS
from heyon_site.billing.vouchers import MAX_COUNT, parse_serial
from heyon_site.faq.editing import EntryFields
from heyon_site.models import ORDER_STATES, PROMO_KINDS, STAFF_ROLES
from heyon_site.staff import words
from heyon_site.staff.auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from heyon_site.staff.inputs import SiteDates, site_time_field
from heyon_site.staff.services import Settings
from heyon_site.vouchers.services import site_today
from heyon_site.vouchers.sheet import WEB_SHEET_MAX
from heyon_site.web.forms import Form


class LoginForm(Form):
    username = StringField(
        _l("Username"),
        [InputRequired(_l("Enter your username.")), Length(max=64)],
        render_kw={"autocomplete": "username", "autocapitalize": "off", "spellcheck": "false", "maxlength": "64"},
    )
    password = PasswordField(
        _l("Password"),
        [InputRequired(_l("Enter your password.")), Length(max=128)],
        render_kw={"autocomplete": "current-password", "maxlength": "128"},
    )


class OrderSearchForm(Form):
    """A GET form: searching changes nothing, so it needs no CSRF token and can be bookmarked."""

    class Meta:
        csrf = False

    order_no = StringField(
        _l("Order number"),
        [Optional(), Regexp(r"^\d{1,24}$", message=_l("Digits only."))],
        render_kw={"inputmode": "numeric", "maxlength": "24"},
    )
    last4 = StringField(
        _l("Card last 4 digits"),
        [Optional(), Regexp(r"^\d{4}$", message=_l("Four digits."))],
        render_kw={"inputmode": "numeric", "maxlength": "4"},
    )
    # Days the site can turn into UTC boundaries (inputs.EARLIEST to LATEST): year 1 or 9999 cannot.
    date_from = DateField(_l("From"), [Optional(), SiteDates()])
    date_to = DateField(_l("To"), [Optional(), SiteDates()])
    status = SelectField(
        _l("Status"),
        choices=[SelectChoice("", "—"), *[SelectChoice(s, words.ORDER_STATUS[s]) for s in ORDER_STATES]],
        default="",
    )


class ReceiptForm(Form):
    paper = SelectField(
        _l("Paper"), choices=[SelectChoice(p, p.upper() if p == "a4" else f"{p} mm") for p in PAPERS], default="80"
    )


class LogoutForm(Form):
    """Only the CSRF token: logout is a POST so another site cannot sign staff out."""


class ActionForm(Form):
    """Only the CSRF token: publish, unpublish, move, end, reset are POSTs with no fields."""


class CodeForm(Form):
    code = StringField(
        _l("6-digit code from the authenticator app"),
        [InputRequired(_l("Enter the code.")), Length(max=16)],
        render_kw={
            "inputmode": "numeric",
            "autocomplete": "one-time-code",
            "maxlength": "16",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )


def _new_password(label: str) -> PasswordField:
    return PasswordField(
        label,
        [
            InputRequired(_l("Required.")),
            Length(
                MIN_PASSWORD_LENGTH,
                MAX_PASSWORD_LENGTH,
                message=_l("%(min)s to %(max)s characters.", min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH),
            ),
        ],
        render_kw={"autocomplete": "new-password", "maxlength": str(MAX_PASSWORD_LENGTH)},
    )


def _repeat() -> PasswordField:
    return PasswordField(
        _l("New password again"),
        [EqualTo("new_password", _l("The two new passwords differ."))],
        render_kw={"autocomplete": "new-password", "maxlength": str(MAX_PASSWORD_LENGTH)},
    )


class SetPasswordForm(Form):
    """An admin sets another account's password (it ends that account's sessions)."""

    new_password = _new_password(_l("New password"))
    again = _repeat()


class ChangePasswordForm(SetPasswordForm):
    """One's own password: the current one first, so a borrowed session cannot take the account."""

    current = PasswordField(
        _l("Current password"),
        [InputRequired(_l("Required.")), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password", "maxlength": str(MAX_PASSWORD_LENGTH)},
    )


def _role() -> SelectField:
    return SelectField(_l("Role"), choices=[SelectChoice(r, words.ROLE[r]) for r in STAFF_ROLES], default="cashier")


class AccountSettingsForm(Form):
    role = _role()
    active = BooleanField(_l("Can sign in"), default=True)
    totp_required = BooleanField(_l("Require a second factor (authenticator code)"))

    def settings(self) -> Settings:
        """What was chosen, once the form validated."""
        return Settings(self.role.data or "", bool(self.active.data), bool(self.totp_required.data))


class NewAccountForm(AccountSettingsForm):
    username = StringField(
        _l("Username"),
        [
            InputRequired(_l("Required.")),
            Length(max=64, message=_l("Too long.")),
            Regexp(r"^[\w.@-]+$", message=_l("Letters, digits and . _ - @ only.")),
        ],
        filters=[lambda t: t.strip() if isinstance(t, str) else t],
        render_kw={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false", "maxlength": "64"},
    )
    new_password = _new_password(_l("First password"))
    again = _repeat()


FAQ_LOCALES = (("zh_Hans", "中文"), ("en", "English"))


MAX_ANSWER = 10_000


MAX_POSITION = 1_000_000


def _strip(text: str | None) -> str | None:
    return text.strip() if isinstance(text, str) else text


def _too_long() -> Any:
    return _l("Too long.")


class FaqForm(Form):
    locale = SelectField(
        _l("Language"), choices=[SelectChoice(c, label) for c, label in FAQ_LOCALES], default="zh_Hans"
    )
    category = StringField(
        _l("Category"),
        [DataRequired(_l("Required.")), Length(max=80, message=_too_long())],
        filters=[_strip],
        render_kw={"maxlength": "80"},
    )
    question = StringField(
        _l("Question"),
        [DataRequired(_l("Required.")), Length(max=300, message=_too_long())],
        filters=[_strip],
        render_kw={"maxlength": "300"},
    )
    answer_md = TextAreaField(
        _l("Answer (Markdown)"),
        [DataRequired(_l("Required.")), Length(max=MAX_ANSWER, message=_too_long())],
        render_kw={"maxlength": str(MAX_ANSWER), "rows": "8"},
    )
    position = IntegerField(
        _l("Position"),
        [InputRequired(_l("Required.")), NumberRange(0, MAX_POSITION, message=_l("Out of range."))],
        render_kw={"inputmode": "numeric"},
    )
    published = BooleanField(_l("Published"))

    def fields(self) -> EntryFields:
        """What was typed, once the form validated."""
        return EntryFields(
            locale=self.locale.data or "",
            category=self.category.data or "",
            question=self.question.data or "",
            answer_md=self.answer_md.data or "",
            position=self.position.data or 0,
            published=bool(self.published.data),
        )


class PromotionForm(Form):
    title_zh = StringField(
        _l("Chinese title"),
        [DataRequired(_l("Required.")), Length(max=MAX_TITLE, message=_too_long())],
        filters=[_strip],
        render_kw={"maxlength": str(MAX_TITLE)},
    )
    title_en = StringField(
        _l("English title"),
        [DataRequired(_l("Required.")), Length(max=MAX_TITLE, message=_too_long())],
        filters=[_strip],
        render_kw={"maxlength": str(MAX_TITLE)},
    )
    kind = SelectField(
        _l("Kind"), choices=[SelectChoice(k, words.PROMO_KIND[k]) for k in PROMO_KINDS], default=PROMO_KINDS[0]
    )
    threshold = StringField(
        _l("From amount (yuan)"), default="0", render_kw={"maxlength": "12", "inputmode": "decimal"}
    )
    value = StringField(_l("Bonus (yuan, fixed bonus)"), render_kw={"maxlength": "12", "inputmode": "decimal"})
    percent = StringField(
        _l("Percent (percentage bonus or discount)"), render_kw={"maxlength": "8", "inputmode": "decimal"}
    )
    cap = StringField(_l("At most (yuan)"), render_kw={"maxlength": "12", "inputmode": "decimal"})
    # Within the years the site converts to UTC (inputs.EARLIEST to LATEST), so terms() cannot overflow.
    starts = site_time_field(_l("Starts"))
    ends = site_time_field(_l("Ends (exclusive)"))
    priority = IntegerField(
        _l("Priority"),
        [InputRequired(_l("Required.")), NumberRange(-1000, 1000, message=_l("Out of range."))],
        default=0,
    )
    published = BooleanField(_l("Published"))

    def terms(self, zone: ZoneInfo) -> NewPromotion | None:
        """The promotion the form describes, times as naive UTC; ``None`` (and field errors) if
        an amount cannot be read. The terms themselves are checked by billing.promos."""
        amounts: dict[str, int | None] = {}
        for name, message in (
            ("threshold", _l("Not an amount like 12.34.")),
            ("value", _l("Not an amount like 12.34.")),
            ("cap", _l("Not an amount like 12.34.")),
            ("percent", _l("Not a percentage like 10 or 2.5.")),
        ):
            field = self[name]
            text = (field.data or "").strip()
            if name == "percent":
                text = text.removesuffix("%").strip()
            try:
                # Hundredths of a percent are basis points: "2.5" is exactly 250, no float.
                amounts[name] = parse_amount(text) if text else None
            except AmountError:
                field.errors = [*field.errors, message]
        if (
            any(self[n].errors for n in ("threshold", "value", "cap", "percent"))
            or self.starts.data is None
            or self.ends.data is None
        ):
            return None

        return NewPromotion(
            title_zh=self.title_zh.data or "",
            title_en=self.title_en.data or "",
            kind=self.kind.data or "",
            starts_at=sitetime.to_utc(self.starts.data, zone),
            ends_at=sitetime.to_utc(self.ends.data, zone),
            threshold_fen=amounts["threshold"] or 0,
            value_fen=amounts["value"],
            percent_bp=amounts["percent"],
            cap_fen=amounts["cap"],
            priority=self.priority.data or 0,
            published=bool(self.published.data),
        )


class ApproveForm(Form):
    """The approve button names the terms the admin was shown (``approval_digest``)."""

    terms = HiddenField()


class ProposeForm(Form):
    """One person's proposal for a payment that credited nothing: credit it, or refund it."""

    action = SelectField(
        _l("What to do"),
        choices=[SelectChoice(code, words.RESOLUTION_ACTION[code]) for code in ("refund", "credit")],
        validators=[InputRequired(_l("Choose what to do."))],
    )
    reason = TextAreaField(
        _l("Reason"),
        [InputRequired(_l("Say why: the reason stays with the decision.")), Length(max=500)],
        render_kw={"maxlength": "500", "rows": "2"},
    )


class DecideForm(Form):
    """An admin's answer to another person's proposal."""

    decision = HiddenField(validators=[InputRequired(), Regexp(r"^(approve|reject)$")])


class InvoiceFilterForm(Form):
    """Which invoice requests the queue shows: all (those waiting first), or one state."""

    class Meta:
        csrf = False  # a GET search

    state = SelectField(
        _l("Status"),
        choices=[
            SelectChoice("", _l("All")),
            *(SelectChoice(code, label) for code, label in words.INVOICE_STATE.items()),
        ],
        default="",
    )


class IssueInvoiceForm(Form):
    """The invoice's PDF, as the tax platform produced it (its size and content are checked)."""

    pdf = FileField(
        _l("Invoice PDF"),
        [FileRequired(_l("Choose the PDF file of the invoice."))],
        render_kw={"accept": "application/pdf,.pdf"},
    )


class RefuseInvoiceForm(Form):
    """Refusing an invoice request: the customer reads the reason on the order page."""

    reason = TextAreaField(
        _l("Reason (the customer reads it)"),
        [DataRequired(_l("Say why: the customer reads the reason on the order page.")), Length(max=500)],
        render_kw={"maxlength": "500", "rows": "2"},
    )


class VoucherBatchForm(Form):
    """A new batch of recharge vouchers, and how its PINs are handed over: once, in the answer."""

    count = IntegerField(
        _l("How many vouchers"),
        [
            InputRequired(_l("Required.")),
            NumberRange(1, MAX_COUNT, message=_l("From 1 to %(most)s.", most=f"{MAX_COUNT:,}")),
        ],
        render_kw={"inputmode": "numeric", "min": "1", "max": str(MAX_COUNT)},
    )
    value = StringField(
        _l("Value of each voucher (yuan)"),
        [InputRequired(_l("Required."))],
        render_kw={"maxlength": "12", "inputmode": "decimal"},
    )
    expires = DateField(_l("Last day of use (site time)"), [InputRequired(_l("Required.")), SiteDates()])
    note = StringField(
        _l("Note (the shop, the purchase order)"),
        [Length(max=200, message=_too_long())],
        filters=[_strip],
        render_kw={"maxlength": "200"},
    )
    output = RadioField(
        _l("Hand the PINs over as"),
        [InputRequired(_l("Choose how to hand the PINs over."))],
        default="csv",
        validate_choice=False,  # validate_output: the radio_group macro reads choices as pairs
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output.choices = [
            ("csv", _l("A CSV file for the printer")),
            ("sheet", _l("A printable A4 sheet (at most %(most)s vouchers)", most=f"{WEB_SHEET_MAX:,}")),
        ]

    def validate_value(self, field: StringField) -> None:
        try:
            fen = parse_amount(field.data or "")
        except AmountError:
            raise ValidationError(_l("Not an amount like 50 or 49.50.")) from None
        if fen <= 0:
            raise ValidationError(_l("A voucher is worth more than zero."))

    def validate_expires(self, field: DateField) -> None:
        if field.data is not None and field.data < site_today(current_app.config):
            raise ValidationError(_l("The expiry date has passed."))

    def validate_output(self, field: RadioField) -> None:
        if field.data not in ("csv", "sheet"):
            raise ValidationError(_l("Choose how to hand the PINs over."))
        if field.data == "sheet" and isinstance(self.count.data, int) and self.count.data > WEB_SHEET_MAX:
            raise ValidationError(
                _l("A sheet made here holds at most %(most)s vouchers: choose the CSV file.", most=f"{WEB_SHEET_MAX:,}")
            )

    def value_fen(self) -> int:
        """The value in fen, once the form validated."""
        return parse_amount(self.value.data or "")


class VoucherLookupForm(Form):
    """A GET form: a serial is printed on the voucher, not secret, and a lookup changes nothing."""

    class Meta:
        csrf = False

    serial = StringField(
        _l("Voucher serial"),
        [InputRequired(_l("Enter the serial printed on the voucher."))],
        render_kw={"maxlength": "24", "autocomplete": "off", "spellcheck": "false", "placeholder": "0012-000034"},
    )

    def validate_serial(self, field: StringField) -> None:
        if parse_serial(field.data or "") is None:
            raise ValidationError(_l("Not a voucher serial like 0012-000034."))

    def batch_and_serial(self) -> tuple[int, int]:
        """(batch, serial), once the form validated."""
        found = parse_serial(self.serial.data or "")
        assert found is not None
        return found


class VoucherVoidForm(VoucherLookupForm):
    """Voiding one voucher by its serial: a change, so a POST with its CSRF token."""

    class Meta:
        csrf = True


class VoucherSheetForm(Form):
    """A batch's CSV file (the printer's), to print its sheet from: nothing is stored."""

    csv = FileField(
        _l("The batch's CSV file"),
        [FileRequired(_l("Choose the CSV file of the batch."))],
        render_kw={"accept": ".csv,text/csv"},
    )
