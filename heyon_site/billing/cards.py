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

from .. import throttle
from ..config import card_number_digest
from ..database import in_write_transaction
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
    """``card`` is set only when the number and password match an active card."""

    card_id: int | None = None
    refused: str | None = None  # "credentials" | "throttled" | "locked" | "blocked"
    retry_after: int = 0  # seconds, when throttled

    @property
    def ok(self) -> bool:
        return self.card_id is not None


def throttle_key(number: str) -> str:
    return throttle.key_for("card-throttle", number)


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures for one card number."""
    c = current_app.config
    return throttle.delay_after(failures, c["HEYON_CARD_FREE_ATTEMPTS"], c["HEYON_CARD_MAX_DELAY_SECONDS"])


def _reserve_attempt(key: str, now: datetime) -> AuthResult | None:
    c = current_app.config
    refusal, _ = throttle.reserve_attempt(key, now, c["HEYON_CARD_FREE_ATTEMPTS"], c["HEYON_CARD_MAX_DELAY_SECONDS"],
                                          lock_after=c["HEYON_CARD_LOCK_AFTER"])
    return AuthResult(refused=refusal.reason, retry_after=refusal.retry_after) if refusal else None


def authenticate(number: str, password: str, now: datetime | None = None) -> AuthResult:
    """Check a normalised card number and a password, throttled per card number.

    Unknown numbers cost the same argon2 work and are throttled the same way as real ones, so
    neither the answer nor its timing tells whether a number exists.
    """
    now = now or utcnow()
    key = throttle_key(number)
    refusal = in_write_transaction(lambda: _reserve_attempt(key, now))
    if refusal is not None:
        return refusal

    card = find_card(number)
    h = hasher()
    try:
        h.verify(card.password_hash if card else dummy_hash(h), normalise_password(password)[:MAX_PASSWORD_LENGTH])
        matched = card is not None
    except (VerificationError, InvalidHashError):
        matched = False
    if not matched or card is None:
        db.session.rollback()
        return AuthResult(refused="credentials")

    card_id, status, stored = card.id, card.status, card.password_hash
    db.session.rollback()

    def success() -> None:
        throttle.clear(key)
        if h.check_needs_rehash(stored):
            db.session.query(Card).filter_by(id=card_id).update({"password_hash": h.hash(normalise_password(password))})

    in_write_transaction(success)
    if status != "active":
        return AuthResult(refused="blocked")
    return AuthResult(card_id=card_id)


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
