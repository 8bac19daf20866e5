"""Card numbers as typed and as kept: normalised digits, the keyed digest a card is found by, the masked form."""

from __future__ import annotations

import re
import unicodedata

from flask import current_app
from sqlalchemy import select

from heyon_site.config import card_number_digest
from heyon_site.extensions import db
from heyon_site.models import Card

_SEPARATORS = re.compile(r"[\s\-_.·/]+")


_CARD_NUMBER = re.compile(r"\d{10,19}")


class CardNumberError(ValueError):
    """Not a card number."""


def normalise_card_number(text: str) -> str:
    """Digits only: full-width digits, spaces and dashes as typed on a phone are accepted."""
    digits = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text or ""))
    if not _CARD_NUMBER.fullmatch(digits) or not digits.isascii():
        raise CardNumberError(text)
    return digits


def mask(number: str) -> str:
    """What a receipt or log may show of a card number: the last four digits."""
    return "**** " + number[-4:]


def number_digest(number: str) -> str:
    """What a card is found by: an HMAC of its normalised number (the number is never stored)."""
    return card_number_digest(current_app.extensions["heyon.card_key"], number)


def find_card(number: str) -> Card | None:
    """The card with this normalised number, found by its digest."""
    return db.session.scalar(select(Card).where(Card.number_digest == number_digest(number)))
