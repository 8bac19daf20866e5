"""A batch of charges as the network posts it, read and checked whole before any is applied.

One fault anywhere refuses the whole request (400), naming the charge and the field: nothing of
it was applied, so the network corrects its sender and sends the batch again, and no charge is
left half-known. A card number that is well-formed text but names no card is not a fault of the
request: that charge is refused (``unknown_card``) and the others go on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from heyon_site.billing.money import parse_amount
from heyon_site.cards.numbers import CardNumberError, normalise_card_number
from heyon_site.models import USAGE_KINDS

MAX_CHARGES = 1000
MAX_ID_LENGTH = 64  # usage_charges.charge_id
MAX_CARD_LENGTH = 64  # far beyond any card number with separators; longer is not one
# Yuan with at most two decimals, ASCII digits only: a machine writes "1.20", never "¥1,20" or "１.２".
_AMOUNT = re.compile(r"\d{1,9}(?:\.\d{1,2})?", re.ASCII)
# RFC 3339 date-time: a time of day with seconds and an offset (Z or +hh:mm) are required.
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))", re.ASCII
)


class Malformed(ValueError):
    """The body is not a batch of charges as the README describes it; the message says where."""


@dataclass(frozen=True)
class Incoming:
    """One charge as sent, its fields checked; ``card_number`` normalised, None if it is no card number."""

    charge_id: str
    card_number: str | None
    amount_fen: int
    at: datetime  # naive UTC, as stored
    kind: str
    description: str


def read_batch(body: bytes) -> list[Incoming]:
    """The charges of a request body, in the order sent, or Malformed."""
    try:
        document = json.loads(body, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_no_twice)
    except RecursionError:
        raise Malformed("the body is nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, a key given twice
        raise Malformed(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Malformed('the body must be a JSON object: {"charges": [...]}')
    charges = document.get("charges")
    if not isinstance(charges, list):
        raise Malformed('"charges" must be a list of charges')
    if not 1 <= len(charges) <= MAX_CHARGES:
        raise Malformed(f'"charges" must hold 1 to {MAX_CHARGES:,} charges, not {len(charges):,}')
    return [_charge(i, item) for i, item in enumerate(charges)]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object that names a key twice is ambiguous (which amount?): refused, not guessed."""
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("an object names a key twice")
    return found


def _charge(i: int, item: object) -> Incoming:
    where = f"charges[{i}]"
    if not isinstance(item, dict):
        raise Malformed(f"{where} must be an object")
    charge_id = _text(item, "id", where)
    if not 1 <= len(charge_id) <= MAX_ID_LENGTH or not charge_id.isprintable():
        raise Malformed(f"{where}.id must be 1 to {MAX_ID_LENGTH} printable characters")
    card = _text(item, "card", where)
    if len(card) > MAX_CARD_LENGTH:
        raise Malformed(f"{where}.card is longer than {MAX_CARD_LENGTH} characters")
    kind = _text(item, "kind", where)
    if kind not in USAGE_KINDS:
        raise Malformed(f"{where}.kind must be one of {', '.join(USAGE_KINDS)}")
    description = _text(item, "description", where, default="")
    return Incoming(charge_id, _card_number(card), _amount(item, where), _time(item, where), kind, description)


def _text(item: dict[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = item.get(name, default)
    if not isinstance(value, str):
        raise Malformed(f"{where}.{name} must be a string" + ("" if default is not None else " and is required"))
    if "\x00" in value:  # PostgreSQL keeps no NUL in text
        raise Malformed(f"{where}.{name} contains a NUL character")
    return value


def _card_number(text: str) -> str | None:
    try:
        return normalise_card_number(text)
    except CardNumberError:
        return None  # no card has it: the charge is refused as unknown_card


def _amount(item: dict[str, Any], where: str) -> int:
    text = item.get("amount")
    if not isinstance(text, str) or not _AMOUNT.fullmatch(text):
        raise Malformed(f'{where}.amount must be a string of yuan with at most two decimals, like "1.20"')
    fen = parse_amount(text)
    if fen <= 0:
        raise Malformed(f"{where}.amount must be more than 0")
    return fen


def _time(item: dict[str, Any], where: str) -> datetime:
    text = item.get("at")
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise Malformed(f'{where}.at must be an RFC 3339 time such as "2026-12-03T08:15:00Z"')
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if not zulu and (int(off_h) > 23 or int(off_m) > 59):
        raise Malformed(f"{where}.at has no such offset: {text}")
    try:
        offset = timedelta(0) if zulu else (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m))
        zone = timezone(offset)
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((fraction or "0")[:6].ljust(6, "0")), tzinfo=zone,
        )  # fmt: skip
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # 2026-02-30, 25:00, an offset past the calendar's ends
        raise Malformed(f"{where}.at is not a real time: {text}") from None
