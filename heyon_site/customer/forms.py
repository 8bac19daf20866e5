"""Customer forms. Messages are lazy so they come out in the visitor's language."""
from __future__ import annotations

from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, StringField
from wtforms.validators import InputRequired, Length, ValidationError

from ..billing.cards import CardNumberError, normalise_card_number
from ..billing.money import AmountError, yuan
from ..billing.recharge import AmountOutOfRange, AmountRules
from ..providers import enabled

PROVIDER_LABELS = {
    "alipay": _l("Alipay"),
    "wechat": _l("WeChat Pay"),
    "stripe": _l("Bank card"),
    "sandbox": _l("Sandbox (test payment)"),
}


class CardForm(FlaskForm):
    """Card number and password, shared by every form that opens a card."""

    card_number = StringField(
        _l("Card number"),
        [InputRequired(_l("Enter the card number.")), Length(max=40, message=_l("That card number is too long."))],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "autocapitalize": "off", "spellcheck": "false",
                   "maxlength": "40", "placeholder": "8600 0000 0000 0000"},
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
            raise ValidationError(_l("A card number has 10 to 19 digits; check the number printed on your card.")) from None


class BalanceForm(CardForm):
    """Card number and password only: the balance is shown after a POST, never in a URL."""


class RechargeForm(CardForm):
    amount = RadioField(_l("Amount"), validate_choice=False)
    custom_amount = StringField(
        _l("Other amount (yuan)"),
        [Length(max=20, message=_l("That amount is too long."))],
        render_kw={"inputmode": "decimal", "autocomplete": "off", "maxlength": "20"},
    )
    method = RadioField(_l("Payment method"), [InputRequired(_l("Choose a payment method."))], validate_choice=False)
    amount_fen: int = 0

    def __init__(self, formdata: Any, **kwargs: Any) -> None:
        super().__init__(formdata=formdata, **kwargs)
        self.rules = AmountRules.from_config(current_app.config)
        self.amount.choices = [(yuan(p).removesuffix(".00"), f"¥{yuan(p).removesuffix('.00')}") for p in self.rules.presets_fen]
        # Defaults are for a new page, never for what was sent (a POST, or the quote's GET).
        blank = formdata is None
        if blank and self.amount.choices:
            self.amount.data = self.amount.choices[len(self.amount.choices) // 2][0]
        self.method.choices = [(name, PROVIDER_LABELS.get(name, name)) for name in enabled()]
        if blank and self.method.choices:
            self.method.data = self.method.choices[0][0]

    def validate_custom_amount(self, field: StringField) -> None:
        self.amount_fen = self.chosen_amount()

    def chosen_amount(self) -> int:
        """The amount in fen, or a ValidationError saying what is wrong with it. Also used alone,
        for the quote shown before the card is typed in."""
        # A typed amount wins over the preset, since on a phone the preset is usually untouched.
        text = (self.custom_amount.data or "").strip() or (self.amount.data or "")
        if not text:
            raise ValidationError(_l("Choose an amount."))
        provider = enabled().get(self.method.data or "")
        try:
            return self.rules.parse(text, provider.min_fen if provider else 0)
        except AmountError:
            raise ValidationError(_l("Enter an amount in yuan, like 100 or 88.50.")) from None
        except AmountOutOfRange as e:
            raise ValidationError(_l("Amounts from %(low)s to %(high)s yuan are accepted.", low=yuan(e.min_fen), high=yuan(e.max_fen))) from None

    def validate_method(self, field: RadioField) -> None:
        if field.data not in dict(self.method.choices or []):
            raise ValidationError(_l("Choose a payment method."))


class CheckPaymentForm(FlaskForm):
    """Only the CSRF token: "check payment now" asks the provider, so it is a POST."""
