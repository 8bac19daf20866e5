"""Who calls the API: the clients of the network's charging system, each with a key of its own.

Every request carries three headers: ``X-Heyon-Client`` (the client's name),
``X-Heyon-Timestamp`` (unix seconds when it was signed) and ``X-Heyon-Signature``, the lowercase
hex HMAC-SHA256 under the client's key of ``<timestamp>.<raw body>``. A timestamp more than five
minutes from the site's clock is refused: a captured request can be replayed only within that
window, and replaying it changes nothing (each charge is applied once, by its id).

The keys come from ``HEYON_USAGE_CLIENTS`` (or the file ``HEYON_USAGE_CLIENTS_FILE`` names):
``name:key`` pairs separated by commas, read once when the app starts; a malformed setting stops
the start rather than leaving the network refused at its first batch.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from heyon_site.config import setting

CLIENT_HEADER = "X-Heyon-Client"
TIMESTAMP_HEADER = "X-Heyon-Timestamp"
SIGNATURE_HEADER = "X-Heyon-Signature"
MAX_SKEW_SECONDS = 300
MIN_KEY_LENGTH = 16
# A client's name is kept on every charge it sends (usage_charges.client, 40 characters).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_TIMESTAMP = re.compile(r"\d{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
# Checked against when the client is unknown, so an unknown name costs the same HMAC as a known one.
_NO_KEY = b"\x00" * 32

REASONS = {
    "missing_headers": f"{CLIENT_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are all required",
    "stale_timestamp": f"{TIMESTAMP_HEADER} must be unix seconds within {MAX_SKEW_SECONDS} s of the site's clock",
    "bad_signature": f"{SIGNATURE_HEADER} is not the lowercase hex HMAC-SHA256 of <timestamp>.<body> "
    "under this client's key",
}


class ClientsSettingError(ValueError):
    """HEYON_USAGE_CLIENTS is malformed; the message never contains a key."""


class Unauthenticated(Exception):
    """The request is not signed by a known client now; ``reason`` is a key of REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_clients(text: str) -> dict[str, bytes]:
    """``"net:key1,roaming:key2"`` -> ``{"net": b"key1", "roaming": b"key2"}``. A file may also
    put one pair on each line."""
    clients: dict[str, bytes] = {}
    for number, part in enumerate(re.split(r"[,\n]", text), start=1):
        if not part.strip():
            continue
        name, colon, key = (piece.strip() for piece in part.partition(":"))
        # Only the entry's position is named: a pair without its colon may be a key.
        if not colon or not _NAME.fullmatch(name):
            raise ClientsSettingError(
                f"HEYON_USAGE_CLIENTS: entry {number} is not name:key "
                "(a name of 1 to 40 letters, digits, '.', '_', '-')"
            )
        if len(key) < MIN_KEY_LENGTH:
            raise ClientsSettingError(
                f"HEYON_USAGE_CLIENTS: the key of {name} is shorter than {MIN_KEY_LENGTH} characters"
            )
        if name in clients:
            raise ClientsSettingError(f"HEYON_USAGE_CLIENTS: {name} is named twice")
        clients[name] = key.encode()
    return clients


def load_clients(config: Mapping[str, Any]) -> dict[str, bytes]:
    """The clients from the settings (empty: the API refuses every request)."""
    return parse_clients(setting(config, "HEYON_USAGE_CLIENTS", required=False))


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def authenticate(clients: Mapping[str, bytes], headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The name of the client that signed this request within the allowed skew of ``now``, or
    Unauthenticated."""
    name = headers.get(CLIENT_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not (name and stamp and given):
        raise Unauthenticated("missing_headers")
    if not _TIMESTAMP.fullmatch(stamp) or abs(now - int(stamp)) > MAX_SKEW_SECONDS:
        raise Unauthenticated("stale_timestamp")
    key = clients.get(name)
    expected = signature(key or _NO_KEY, stamp, body)
    # The format check first (it tells nothing of the key), so the constant-time comparison is
    # always between two ASCII strings of the same length.
    if not _SIGNATURE.fullmatch(given) or not hmac.compare_digest(expected, given) or key is None:
        raise Unauthenticated("bad_signature")
    return name
