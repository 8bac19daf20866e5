"""Opening a card: its number and password, checked through the device-aware guessing throttle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from argon2.exceptions import InvalidHashError, VerificationError

from heyon_site.cards.numbers import find_card
from heyon_site.extensions import db
from heyon_site.models import Card
from heyon_site.security import device_cookie, throttle
from heyon_site.security.device_cookie import DeviceCookie
from heyon_site.security.passwords import MAX_PASSWORD_LENGTH, dummy_hash, hasher, normalise_password


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


def authenticate(
    number: str, password: str, device: DeviceCookie | None = None, now: datetime | None = None
) -> AuthResult:
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
