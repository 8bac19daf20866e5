"""Cards: number normalisation, argon2id passwords, creation, and throttled authentication."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import select

from .. import device_cookie, throttle
from ..config import card_number_digest
from ..device_cookie import DeviceCookie
from ..extensions import db
from ..models import Card, RechargeOrder, utcnow
from .ledger import credit

_SEPARATORS = re.compile(r"[\s\-_.·/]+")
_CARD_NUMBER = re.compile(r"\d{10,19}")
MAX_PASSWORD_LENGTH = 64


class CardNumberError(ValueError):
    """Not a card number."""


def normalise_card_number(text: str) -> str:
    """Digits only: full-width digits, spaces and dashes as typed on a phone are accepted."""
    digits = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text or ""))
    if not _CARD_NUMBER.fullmatch(digits) or not digits.isascii():
        raise CardNumberError(text)
    return digits


def normalise_password(text: str) -> str:
    """The PIN as printed: full-width characters from a Chinese IME become ASCII."""
    return unicodedata.normalize("NFKC", text or "").strip()


def mask(number: str) -> str:
    """What a receipt or log may show of a card number: the last four digits."""
    return "**** " + number[-4:]


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)


def hasher() -> PasswordHasher:
    c = current_app.config
    return _hasher(c["ARGON2_TIME_COST"], c["ARGON2_MEMORY_COST"], c["ARGON2_PARALLELISM"])


@lru_cache(maxsize=4)
def dummy_hash(h: PasswordHasher) -> str:
    """A hash to verify against when there is no account, so a miss costs the same argon2 work."""
    return h.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return hasher().hash(normalise_password(password))


def number_digest(number: str) -> str:
    """What a card is found by: an HMAC of its normalised number (the number is never stored)."""
    return card_number_digest(current_app.extensions["heyon.card_key"], number)


def create_card(number: str, password: str, balance_fen: int = 0) -> Card:
    """Add a card; an opening balance goes through the ledger like any other money."""
    digits = normalise_card_number(number)
    card = Card(number_digest=number_digest(digits), last4=digits[-4:], password_hash=hash_password(password),
                balance_fen=0)
    db.session.add(card)
    db.session.flush()
    if balance_fen:
        credit(card.id, balance_fen, "opening", key=f"card:{card.id}:opening")
    return card


def find_card(number: str) -> Card | None:
    return db.session.scalar(select(Card).where(Card.number_digest == number_digest(number)))


# ------------------------------------------------------------------ throttled authentication


@dataclass(frozen=True)
class AuthResult:
    """``card_id`` is set only when the number and password match an active card."""

    card_id: int | None = None
    refused: str | None = None  # "credentials" | "throttled" | "locked" | "blocked"
    retry_after: int = 0  # seconds, when throttled or locked
    subject: str | None = None  # the card's throttle subject, for the device cookie (when ok)

    @property
    def ok(self) -> bool:
        return self.card_id is not None


def throttle_key(number: str) -> str:
    """The card's throttle subject (also the key of its unknown devices' count)."""
    return throttle.key_for("card-throttle", number)


def policy() -> throttle.Policy:
    return throttle.Policy.from_config("CARD")


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures of one count of one card."""
    return policy().delay_after(failures)


def authenticate(number: str, password: str, device: DeviceCookie | None = None,
                 now: datetime | None = None) -> AuthResult:
    """Check a normalised card number and a password, throttled per card number and device
    (``device`` is the browser's device cookie; without one it is an unknown device).

    Unknown numbers cost the same argon2 work and are throttled the same way as real ones, so
    neither the answer nor its timing tells whether a number exists.
    """
    subject = throttle_key(number)
    bucket = throttle.Bucket(subject, device_cookie.device_for(subject, device, now))
    h = hasher()
    typed = normalise_password(password)[:MAX_PASSWORD_LENGTH]

    def verify() -> tuple[int, str, str] | None:
        card = find_card(number)
        try:
            h.verify(card.password_hash if card else dummy_hash(h), typed)
        except (VerificationError, InvalidHashError):
            return None
        return (card.id, card.status, card.password_hash) if card is not None else None

    def rehash(found: tuple[int, str, str]) -> None:
        if h.check_needs_rehash(found[2]):
            db.session.query(Card).filter_by(id=found[0]).update({"password_hash": h.hash(typed)})

    checked = throttle.check(bucket, policy(), verify, rehash, now)
    if checked.refusal is not None:
        return AuthResult(refused=checked.refusal.reason, retry_after=checked.refusal.retry_after)
    if checked.value is None:
        return AuthResult(refused="credentials")
    card_id, status, _ = checked.value
    if status != "active":
        return AuthResult(refused="blocked")
    return AuthResult(card_id=card_id, subject=subject)


def clear_throttle(number: str) -> int:
    """Inside a write transaction: forget every failure counted against this card number (its
    unknown devices, each known device, their allowance); the rows removed."""
    return throttle.clear_subjects(throttle_key(number))


@dataclass(frozen=True)
class CardSummary:
    last4: str
    status: str
    balance_fen: int
    recent: list[RechargeOrder]


def summary(card_id: int, recent: int = 10) -> CardSummary:
    """What a customer sees after opening a card: its balance and its latest recharge orders."""
    card = db.session.get(Card, card_id, populate_existing=True)
    if card is None:
        raise LookupError(card_id)
    orders = db.session.scalars(
        select(RechargeOrder).where(RechargeOrder.card_id == card_id)
        .order_by(RechargeOrder.created_at.desc(), RechargeOrder.id.desc()).limit(recent)
    ).all()
    return CardSummary(card.last4, card.status, card.balance_fen, list(orders))
