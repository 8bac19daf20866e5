"""Opening a card: its number and password, checked through the device-aware guessing throttle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import update

from heyon_site.cards.numbers import find_card
from heyon_site.extensions import db
from heyon_site.models import Card
from heyon_site.ops import alarms
from heyon_site.security import device_cookie, throttle
from heyon_site.security.device_cookie import DeviceCookie
from heyon_site.security.passwords import MAX_PASSWORD_LENGTH, hasher, normalise_password
from heyon_site.security.pins import check_pin, hash_pin, is_keyed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthResult:
    """``card_id`` is set only when the number and password match an active card."""

    card_id: int | None = None
    refused: str | None = None  # "credentials" | "throttled" | "locked" | "blocked" | "busy"
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


def pin_key() -> bytes:
    """The key PINs are checked with, read once at start-up (``config.card_pin_key``)."""
    key: bytes = current_app.extensions["heyon.pin_key"]
    return key


def within_check_budget() -> bool:
    """One more check from a browser that never opened the card fits the site-wide budget
    (HEYON_PASSWORD_CHECK_BUDGET, counted in the rate-limit storage shared by every worker).

    A spray of wrong passwords for random cards comes from unknown browsers, each address within
    its own limits; past the budget those wait, before the throttle's write and the check, so the
    CPU stays with the customers whose browsers opened their card before: they are never counted.
    A storage that fails lets the check through (the per-address limits still hold)."""
    try:
        return alarms.site_wide_hit(current_app.config["HEYON_PASSWORD_CHECK_BUDGET"], "password-checks")
    except Exception:  # availability first: the budget is a shield, not a gate
        log.exception("password-check budget: the counter storage failed")
        return True


def hash_card_pin(password: str) -> str:
    """What a new card (or a new PIN) stores: the keyed form of the normalised PIN."""
    return hash_pin(pin_key(), normalise_password(password)[:MAX_PASSWORD_LENGTH])


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures of one count of one card."""
    return policy().delay_after(failures)


def authenticate(
    number: str, password: str, device: DeviceCookie | None = None, now: datetime | None = None
) -> AuthResult:
    """Check a normalised card number and a password, throttled per card number and device
    (``device`` is the browser's device cookie; without one it is an unknown device).

    Unknown numbers cost the same keyed work and are throttled the same way as real ones, so
    neither the answer nor its timing tells whether a number exists. A PIN stored under the old
    argon2id scheme is replaced by its keyed form on its first success (``security.pins``).
    """
    subject = throttle_key(number)
    bucket = throttle.Bucket(subject, device_cookie.device_for(subject, device, now))
    if bucket.device is None and not within_check_budget():
        return AuthResult(refused="busy", retry_after=1)
    key = pin_key()
    legacy = hasher()
    typed = normalise_password(password)[:MAX_PASSWORD_LENGTH]

    # Read once, before the check: a keyed PIN (or no card: the dummy is keyed too) is checked in
    # microseconds, inside the throttle's one write transaction; a PIN still under argon2 outside
    # it (throttle.check says why).
    # Plain values, not the object: a commit before the check would expire it and reload it.
    card = find_card(number)
    found = (card.id, card.status) if card is not None else None
    stored = card.password_hash if card is not None else None
    quick = stored is None or is_keyed(stored)

    def verify() -> tuple[int, str, str | None] | None:
        result = check_pin(key, stored, typed, legacy)
        if found is None or not result.ok:
            return None
        return *found, stored if result.upgrade else None

    def upgrade(found: tuple[int, str, str | None]) -> None:
        card_id, _, old_hash = found
        if old_hash is not None:  # only while it still holds the hash that was checked
            db.session.execute(
                update(Card)
                .where(Card.id == card_id, Card.password_hash == old_hash)
                .values(password_hash=hash_pin(key, typed))
            )

    checked = throttle.check(bucket, policy(), verify, upgrade, now, quick=quick)
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
