"""Card PINs: a keyed HMAC that takes microseconds to check and that a database alone cannot test.

A card PIN has six digits, a million values. No hashing cost makes an offline search of one card
slow: argon2id at 64 MiB and 3 passes costs about 75 ms, so a million guesses take 21 hours of
one core, and every card falls in that time. What protects a low-entropy secret is a key the
database does not hold (OWASP's password storage cheat sheet calls it a pepper; banks verify
PINs under a key held in an HSM, ISO 9564 and the PVV) and the online throttle. So a PIN is
stored as ``HMAC-SHA256(key, salt || PIN)``: without the key a stolen table allows no guessing
at all, and a check costs the server a few microseconds instead of 75 ms of CPU and 64 MiB.

Stored form: ``pin1$<key id>$<salt>$<mac>``, base64url without padding. The key id (8 hex
characters of an HMAC of the key, not the key) tells a wrong key (every check would fail) from a
wrong PIN. Hashes made before this scheme (argon2id, ``$argon2id$...``) still open their card;
the caller replaces them with the keyed form on the next success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PREFIX = "pin1"
_SALT_BYTES = 16
_DUMMY_SALT = b"\0" * _SALT_BYTES
log = logging.getLogger(__name__)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=4)
def key_id(key: bytes) -> str:
    """Names the key in each stored hash without revealing anything about it (once per key: every
    check compares it)."""
    return hmac.new(key, b"heyon pin key id", hashlib.sha256).hexdigest()[:8]


def _mac(key: bytes, salt: bytes, pin: str) -> bytes:
    return hmac.new(key, salt + pin.encode(), hashlib.sha256).digest()


def hash_pin(key: bytes, pin: str) -> str:
    """The stored form of a normalised PIN under ``key``, with a salt of its own."""
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"{PREFIX}${key_id(key)}${_b64(salt)}${_b64(_mac(key, salt, pin))}"


def is_keyed(stored: str) -> bool:
    return stored.startswith(PREFIX + "$")


@dataclass(frozen=True)
class PinCheck:
    """``ok`` for the right PIN; ``upgrade`` when it was right under a hash of the old scheme,
    which the caller should replace with ``hash_pin`` of the same PIN."""

    ok: bool
    upgrade: bool = False


def check_pin(key: bytes, stored: str | None, pin: str, legacy: PasswordHasher) -> PinCheck:
    """Check ``pin`` against ``stored`` (None: no such card, which costs the same keyed work).

    A hash of the old scheme costs argon2's time, as it always did, until its card is next opened.
    """
    if stored is None:
        hmac.compare_digest(_mac(key, _DUMMY_SALT, pin), _mac(key, _DUMMY_SALT, "not a pin"))
        return PinCheck(ok=False)
    if not is_keyed(stored):
        try:
            legacy.verify(stored, pin)
        except (VerificationError, InvalidHashError):
            return PinCheck(ok=False)
        return PinCheck(ok=True, upgrade=True)
    try:
        _, kid, salt, mac = stored.split("$")
        salt_bytes, mac_bytes = _unb64(salt), _unb64(mac)
    except ValueError:
        log.error("a stored card PIN hash is malformed")
        return PinCheck(ok=False)
    if kid != key_id(key):
        # Every card would fail alike: the site runs with another HEYON_PIN_KEY than the one its
        # cards were issued under. Say so, by key id only.
        log.error("card PIN hash made under key %s, but this site's HEYON_PIN_KEY is %s", kid, key_id(key))
        return PinCheck(ok=False)
    return PinCheck(ok=hmac.compare_digest(_mac(key, salt_bytes, pin), mac_bytes))
