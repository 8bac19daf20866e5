"""Parsing and formatting money. Fen (integer) inside, yuan strings only at the edges."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

# At most 9 integer digits (far beyond any limit, well inside BIGINT); commas only as thousands
# separators; a currency mark only before or after the number, never inside it ("1元5").
_AMOUNT = re.compile(
    r"(?:¥|rmb|cny)?\s*(?P<int>\d{1,3}(?:,\d{3}){1,2}|\d{1,9})(?:\.(?P<dec>\d{1,2}))?\s*(?:元|yuan|rmb|cny)?",
    re.ASCII,
)


class AmountError(ValueError):
    """The text is not an amount of money in yuan with at most two decimals."""


def normalise_digits(text: str) -> str:
    """Full-width digits and punctuation (typed by Chinese IMEs) become ASCII."""
    return unicodedata.normalize("NFKC", text)


def parse_amount(text: str) -> int:
    """``"10.50" -> 1050``. Refuses exponents, NaN, signs and more than two decimals.

    Decimal is used only to make the conversion exact; nothing but ``int`` leaves here.
    """
    if not isinstance(text, str):
        raise AmountError("not text")
    # NFKC turns full-width digits and "￥" into ASCII; re.ASCII keeps other scripts' digits out.
    match = _AMOUNT.fullmatch(normalise_digits(text).strip().lower())
    if match is None:
        raise AmountError(text)
    fen = Decimal(match["int"].replace(",", "") + "." + (match["dec"] or "0")) * 100
    assert fen == fen.to_integral_value()  # the regex allows at most two decimals
    return int(fen)


def yuan(fen: int) -> str:
    """``1050 -> "10.50"``: the form every page, receipt and CLI prints."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def yuan_grouped(fen: int) -> str:
    """``123456789 -> "1,234,567.89"``: staff tables, and the ``money`` filter customers read."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"
