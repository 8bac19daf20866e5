"""Customer forms. Messages are lazy so they come out in the visitor's language."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, cast

from flask import current_app
from flask_babel import lazy_gettext as _l
from wtforms import EmailField, HiddenField, PasswordField, RadioField, StringField
from wtforms.validators import InputRequired, Length, ValidationError

from heyon_site.billing.invoices import normalise_tax_id
from heyon_site.billing.money import AmountError, parse_amount, yuan
from heyon_site.billing.promos import Quote, quote_token
from heyon_site.billing.recharge import AmountOutOfRange, AmountRules
from heyon_site.billing.vouchers import METHOD as VOUCHER
from heyon_site.billing.vouchers import normalise_pin
from heyon_site.cards.numbers import CardNumberError, normalise_card_number
from heyon_site.providers import enabled
from heyon_site.web import page_cache
from heyon_site.web.forms import Form

PROVIDER_LABELS = {
    "alipay": _l("Alipay"),
    "wechat": _l("WeChat Pay"),
    "stripe": _l("Bank card"),
    "sandbox": _l("Sandbox (test payment)"),
    VOUCHER: _l("Voucher"),
}


class CardForm(Form):
    """Card number and password, shared by every form that opens a card."""

    card_number = StringField(
        _l("Card number"),
        [InputRequired(_l("Enter the card number.")), Length(max=40, message=_l("That card number is too long."))],
        render_kw={
            "inputmode": "numeric",
            "autocomplete": "off",
            "autocapitalize": "off",
            "spellcheck": "false",
            "maxlength": "40",
            "placeholder": "8600 0000 0000 0000",
        },
    )
    password = PasswordField(
        _l("Card password"),
        [InputRequired(_l("Enter the card password.")), Length(max=64, message=_l("That password is too long."))],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "maxlength": "64"},
    )
    card_no: str = ""

    def validate_card_number(self, field: StringField) -> None:
        try:
            self.card_no = normalise_card_number(field.data or "")
        except CardNumberError:
            raise ValidationError(
                _l("A card number has 10 to 19 digits; check the number printed on your card.")
            ) from None


class BalanceForm(CardForm):
    """Card number and password only: the balance is shown after a POST, never in a URL."""


REMINDER_MIN_FEN, REMINDER_MAX_FEN = 100, 100000  # reminders below 1 to 1,000 yuan
_OFF = frozenset({"", "off"})


class LowBalanceForm(Form):
    """The low-balance reminder, offered with a balance result: a threshold in yuan, or none (off).
    The card is the one the result was for: ``card`` names it and ``grant`` proves the password
    was given for it minutes ago (customer/balance.py), so neither is ever asked for again."""

    threshold = StringField(
        _l("Remind me when the balance falls below (yuan)"),
        [Length(max=20, message=_l("That amount is too long."))],
        render_kw={"inputmode": "decimal", "autocomplete": "off", "maxlength": "20"},
    )
    card = HiddenField()
    grant = HiddenField()
    threshold_fen: int | None = None

    def validate_threshold(self, field: StringField) -> None:
        text = (field.data or "").strip()
        if text.lower() in _OFF:
            self.threshold_fen = None
            return
        try:
            fen = parse_amount(text)
        except AmountError:
            raise ValidationError(
                _l("Enter an amount in yuan, like 10, or leave it empty to turn reminders off.")
            ) from None
        if fen and not REMINDER_MIN_FEN <= fen <= REMINDER_MAX_FEN:
            raise ValidationError(
                _l(
                    "A reminder can be set from %(low)s to %(high)s yuan.",
                    low=yuan(REMINDER_MIN_FEN),
                    high=yuan(REMINDER_MAX_FEN),
                )
            )
        self.threshold_fen = fen or None  # 0 yuan: never below it, so off


OTHER = "other"  # the amount choice whose value is typed in
_FORM_ID = re.compile(r"[A-Za-z0-9_-]{16,40}")
MAX_EMAIL = 254  # RFC 5321's limit on a path, and the column's size
# An e-mail address in the shape mail servers accept, checked here and nowhere else: no DNS
# lookup (slow, and it fails on a phone's bad network for an address that is right). The local
# part is the common unquoted form; the domain has at least two labels of letters (any script),
# digits and inner hyphens, the last at least two characters long.
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[^\W_](?:[^\W_]|-){0,61}(?<!-)\.)+[^\W\d_]{2,63})"
)


def normalise_email(text: str) -> str | None:
    """The address as stored (the domain in lower case), or None when it is not one. Full-width
    letters and "＠", as a Chinese input method types them, count as their plain forms."""
    address = unicodedata.normalize("NFKC", text or "").strip()
    match = _EMAIL.fullmatch(address) if len(address) <= MAX_EMAIL else None
    if match is None or len(match["local"]) > 64:
        return None
    return f"{match['local']}@{match['domain'].lower()}"


class RechargeForm(CardForm):
    """The amount is ONE choice: a preset, or "Other" with a typed amount. A typed amount counts
    only while "Other" is chosen (the page hides its box otherwise, with CSS alone), so the
    highlighted choice, the quote and what the gateway asks for always agree."""

    amount = RadioField(_l("Amount"), validate_choice=False)
    custom_amount = StringField(
        _l("Other amount (yuan)"),
        render_kw={"inputmode": "decimal", "autocomplete": "off", "maxlength": "20"},
    )
    method = RadioField(_l("Payment method"), [InputRequired(_l("Choose a payment method."))], validate_choice=False)
    # One-time id of this copy of the form: the same form sent again makes no second order.
    form_id = HiddenField()
    # The version of the promotions the page showed (billing.promos.offer_version), and the
    # terms of the quote line where htmx showed one: together they tell whether the customer
    # saw the terms the order gets.
    offer = HiddenField()
    quoted = HiddenField()
    # Where to send "recharge credited" besides the card's phone: optional, never shown back on a
    # cached page (the empty form's is empty for everyone).
    email = EmailField(
        _l("E-mail for the receipt (optional)"),
        [Length(max=MAX_EMAIL, message=_l("That e-mail address is too long."))],
        render_kw={
            "autocomplete": "email",
            "autocapitalize": "off",
            "spellcheck": "false",
            "maxlength": str(MAX_EMAIL),
        },
    )
    # A recharge voucher's PIN, when the method is "voucher": the page shows its box only then
    # (site.css), and it counts only then. The voucher's own value is what is credited.
    voucher_pin = StringField(
        _l("Voucher PIN"),
        render_kw={"inputmode": "numeric", "autocomplete": "off", "spellcheck": "false", "maxlength": "40"},
    )
    amount_fen: int = 0
    email_address: str | None = None
    pin: str = ""

    def __init__(self, formdata: Any, **kwargs: Any) -> None:
        super().__init__(formdata=formdata, **kwargs)
        self.rules = AmountRules.from_config(current_app.config)
        self.presets = {yuan(p).removesuffix(".00"): p for p in self.rules.presets_fen}
        self.amount.choices = [(value, f"¥{value}") for value in self.presets] + [(OTHER, _l("Other"))]
        # Defaults are for a new page, never for what was sent (a POST, or the quote's GET).
        blank = formdata is None
        if blank and self.presets:
            self.amount.data = list(self.presets)[len(self.presets) // 2]
        if blank:
            self.form_id.data = page_cache.one_time_id()
        # The providers first (the first is the default), then a voucher, which is ours.
        self.method.choices = [(name, PROVIDER_LABELS.get(name, name)) for name in [*enabled(), VOUCHER]]
        if blank and self.method.choices:
            self.method.data = self.method.choices[0][0]

    @property
    def by_voucher(self) -> bool:
        return bool(self.method.data == VOUCHER)

    def validate_amount(self, field: RadioField) -> None:
        # A voucher pays its own value: the amount chosen does not count, and is never an error.
        if field.data != OTHER and not self.by_voucher:
            self.amount_fen = self.chosen_amount()

    def validate_custom_amount(self, field: StringField) -> None:
        # The typed amount is checked only when it is the choice: a value left in the hidden
        # box after picking a preset is ignored, never an error the customer cannot see.
        if self.amount.data == OTHER and not self.by_voucher:
            self.amount_fen = self.chosen_amount()

    def validate_voucher_pin(self, field: StringField) -> None:
        if not self.by_voucher:
            return  # a PIN left in the hidden box counts only while "Voucher" is the method
        text = (field.data or "").strip()
        if not text:
            raise ValidationError(_l("Enter the voucher PIN, under the scratch panel of the voucher."))
        pin = normalise_pin(text) if len(text) <= 40 else None
        if pin is None:
            raise ValidationError(_l("A voucher PIN has 16 digits; check the digits under the scratch panel."))
        self.pin = pin

    def chosen_amount(self) -> int:
        """The amount in fen, or a ValidationError saying what is wrong with it. Also used alone,
        for the quote shown before the card is typed in."""
        if self.amount.data == OTHER:
            text = (self.custom_amount.data or "").strip()
            if not text:
                raise ValidationError(_l("Type the amount, or choose one of the amounts above."))
            if len(text) > 20:
                raise ValidationError(_l("That amount is too long."))
        elif self.amount.data in self.presets:
            text = self.amount.data
        else:
            raise ValidationError(_l("Choose an amount."))
        provider = enabled().get(self.method.data or "")
        try:
            return self.rules.parse(text, provider.min_fen if provider else 0)
        except AmountError:
            raise ValidationError(_l("Enter an amount in yuan, like 100 or 88.50.")) from None
        except AmountOutOfRange as e:
            raise ValidationError(
                _l("Amounts from %(low)s to %(high)s yuan are accepted.", low=yuan(e.min_fen), high=yuan(e.max_fen))
            ) from None

    def validate_method(self, field: RadioField) -> None:
        choices = cast(list[tuple[str, str]], self.method.choices or [])  # as __init__ sets them
        if field.data not in dict(choices):
            raise ValidationError(_l("Choose a payment method."))

    def validate_email(self, field: EmailField) -> None:
        if not (field.data or "").strip():
            return  # optional: no address, no e-mail
        self.email_address = normalise_email(field.data or "")
        if self.email_address is None:
            raise ValidationError(_l("Enter an e-mail address like name@example.com, or leave it empty."))

    def one_time_id(self) -> str | None:
        """The form's one-time id as sent, if it is one of ours in shape (else no repeat check)."""
        sent = self.form_id.data or ""
        return sent if _FORM_ID.fullmatch(sent) else None

    def saw(self, terms: Quote, version: str) -> bool:
        """Whether the page this form came from showed ``terms``: the promotions were those of
        ``version``, and the chosen amount's terms were on its button (a preset), in the quote
        line htmx showed (an "Other" amount), or plain face value (a typed amount earning nothing
        extra is exactly what was typed)."""
        if self.offer.data != version:
            return False
        plain = terms.pay_fen == terms.amount_fen and terms.bonus_fen == 0
        return self.amount.data != OTHER or plain or self.quoted.data == quote_token(terms)


class CheckPaymentForm(Form):
    """Only the CSRF token: "check payment now" asks the provider, so it is a POST."""


class ConfirmTermsForm(Form):
    """Only the CSRF token: accepting an order's changed terms starts the payment, so a POST."""


class ContinuePaymentForm(Form):
    """Only the CSRF token: going on to pay an order with which no provider was asked yet (it was
    opened where its method could not pay, or the provider did not answer), so a POST."""


class OtherMethodForm(Form):
    """Pay an order another way, among the methods that work where the customer is now."""

    method = RadioField(_l("Payment method"), [InputRequired(_l("Choose a payment method."))], validate_choice=False)

    def __init__(self, formdata: Any, methods: list[str], **kwargs: Any) -> None:
        super().__init__(formdata=formdata, **kwargs)
        self.method.choices = [(name, PROVIDER_LABELS.get(name, name)) for name in methods]
        if formdata is None and methods:
            self.method.data = methods[0]

    def validate_method(self, field: RadioField) -> None:
        choices = cast(list[tuple[str, str]], self.method.choices or [])
        if field.data not in dict(choices):
            raise ValidationError(_l("Choose a payment method."))


class InvoiceForm(Form):
    """An invoice (发票) of a credited order: for a person (个人) or a company, which gives its
    unified social credit code; and where the PDF is announced (customer/invoice.py)."""

    buyer_kind = RadioField(
        _l("Invoice for"),
        [InputRequired(_l("Choose a personal or a company invoice."))],
        default="personal",
        validate_choice=False,
    )
    buyer_name = StringField(
        _l("Buyer name"),
        [Length(max=200, message=_l("That name is too long."))],
        render_kw={"autocomplete": "organization", "maxlength": "200"},
    )
    tax_id = StringField(
        _l("Tax id (统一社会信用代码)"),
        [Length(max=40, message=_l("That tax id is too long."))],
        render_kw={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false", "maxlength": "40"},
    )
    email = EmailField(
        _l("E-mail for the invoice"),
        [InputRequired(_l("Enter the e-mail address the invoice goes to."))],
        render_kw={"autocomplete": "email", "autocapitalize": "off", "spellcheck": "false", "maxlength": "254"},
    )
    code: str | None = None
    email_address: str = ""

    def __init__(self, formdata: Any, **kwargs: Any) -> None:
        super().__init__(formdata=formdata, **kwargs)
        # Set here, as the other forms' choices: WTForms 3.3 warns of choices given as pairs.
        self.buyer_kind.choices = [("personal", _l("A person (个人)")), ("company", _l("A company"))]

    @property
    def company(self) -> bool:
        return bool(self.buyer_kind.data == "company")

    def validate_buyer_kind(self, field: RadioField) -> None:
        if field.data not in ("personal", "company"):
            raise ValidationError(_l("Choose a personal or a company invoice."))

    def validate_buyer_name(self, field: StringField) -> None:
        name = " ".join((field.data or "").split())
        if name and not name.isprintable():
            raise ValidationError(_l("Type the name without special characters."))
        if self.company and not name:
            raise ValidationError(_l("Enter the company's name as it is registered."))

    def validate_tax_id(self, field: StringField) -> None:
        if not self.company:
            return  # a person's invoice has no tax id; one left in the box is ignored
        if not (field.data or "").strip():
            raise ValidationError(_l("Enter the company's unified social credit code (18 characters)."))
        self.code = normalise_tax_id(field.data or "")
        if self.code is None:
            raise ValidationError(
                _l("That is not a valid unified social credit code: check its 18 characters, the last one included.")
            )

    def validate_email(self, field: EmailField) -> None:
        self.email_address = normalise_email(field.data or "") or ""
        if not self.email_address:
            raise ValidationError(_l("Enter an e-mail address like name@example.com."))
