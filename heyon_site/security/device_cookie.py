"""The device cookie: how a browser that gave the right secret before is known again.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies": after a right card password (or
a full staff sign-in) the browser gets a signed cookie holding, for each of a few cards or
accounts, an *entry*: a random device id, the day it was issued, and a tag, HMAC(app key,
subject, device id, day). ``throttle.py`` then counts that browser's failures in a bucket of its
own. The cookie holds no card number or username, only random ids and tags, and the whole of it
is signed as well: an entry tagged for card A is worthless for card B, and a forged, tampered,
expired or oversized cookie is simply no cookie (the browser is an unknown device).

Each right secret replaces the entry with a fresh device id (OWASP: a new cookie after each
success), so a copy taken earlier stops counting as that device once its owner signs in again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from flask import Response, after_this_request, current_app, g, request
from itsdangerous import BadData, URLSafeSerializer

from heyon_site.models import utcnow

NAME = "heyon_device"
HTTPS_NAME = "__Host-heyon_device"  # HTTPS only, path /, no Domain: no subdomain can plant one
ENTRY_CHARS = 80  # an entry takes about 64 characters of the signed cookie; longer ones were not made here
_SALT = "heyon.device-cookie"
_EPOCH = datetime(1970, 1, 1)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def day_of(moment: datetime) -> int:
    return (moment - _EPOCH).days


@dataclass(frozen=True)
class Entry:
    device: str  # random, 96 bits
    day: int  # issued on (days since 1970, UTC)
    tag: str  # HMAC of subject, device and day: binds the entry to one card or account


def _tag(secret: bytes, subject: str, device: str, day: int) -> str:
    mac = hmac.new(secret, f"device-entry\0{subject}\0{device}\0{day}".encode(), hashlib.sha256).digest()
    return _b64(mac[:12])


@dataclass(frozen=True)
class DeviceCookie:
    """The entries one browser holds, most recent first. Pure: the key and today are given."""

    entries: tuple[Entry, ...] = ()

    def device_for(self, subject: str, secret: bytes, today: int, max_days: int) -> str | None:
        """This browser's device id for ``subject``, if it holds a live entry made for it."""
        for e in self.entries:
            if 0 <= today - e.day <= max_days and hmac.compare_digest(e.tag, _tag(secret, subject, e.device, e.day)):
                return e.device
        return None

    def renewed(self, subject: str, secret: bytes, today: int, max_days: int, max_entries: int) -> DeviceCookie:
        """The cookie after a right secret for ``subject``: a fresh entry for it first, its old
        one and expired ones dropped, the oldest beyond ``max_entries`` forgotten."""
        device = _b64(secrets.token_bytes(12))
        fresh = Entry(device, today, _tag(secret, subject, device, today))
        kept = [
            e
            for e in self.entries
            if 0 <= today - e.day <= max_days and not hmac.compare_digest(e.tag, _tag(secret, subject, e.device, e.day))
        ]
        return DeviceCookie(tuple([fresh, *kept][:max_entries]))

    def dumps(self, key: str) -> str:
        return str(URLSafeSerializer(key, salt=_SALT).dumps([[e.device, e.day, e.tag] for e in self.entries]))

    @classmethod
    def loads(cls, raw: str | None, key: str, max_entries: int) -> DeviceCookie:
        """The entries of a cookie this site signed; none at all for anything else."""
        if not raw or len(raw) > ENTRY_CHARS * (max_entries + 1):
            return cls()
        try:
            data = URLSafeSerializer(key, salt=_SALT).loads(raw)
        except BadData:
            return cls()
        if not isinstance(data, list):
            return cls()
        entries = []
        for item in data[:max_entries]:
            if (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[2], str)
                and isinstance(item[1], int)
                and not isinstance(item[1], bool)
            ):
                entries.append(Entry(item[0], item[1], item[2]))
        return cls(tuple(entries))


# ------------------------------------------------------------------ this request's browser


def tag_key() -> bytes:
    """The entries' HMAC key, derived from the app's key (as every keyed hash here is)."""
    return hmac.new(current_app.config["SECRET_KEY"].encode(), b"heyon device entries", hashlib.sha256).digest()


def cookie_name() -> str:
    return HTTPS_NAME if current_app.config["HEYON_HTTPS"] else NAME


def presented() -> DeviceCookie:
    """The device cookie this request came with (empty when none or not ours)."""
    if "heyon_device_cookie" not in g:
        g.heyon_device_cookie = DeviceCookie.loads(
            request.cookies.get(cookie_name()),
            current_app.config["SECRET_KEY"],
            current_app.config["HEYON_DEVICE_COOKIE_ENTRIES"],
        )
    cookie: DeviceCookie = g.heyon_device_cookie
    return cookie


def device_for(subject: str, cookie: DeviceCookie | None = None, now: datetime | None = None) -> str | None:
    """This browser's device id for ``subject`` (a card's or account's throttle subject), or None
    for an unknown device. Without a request, every caller is an unknown device."""
    if cookie is None:
        return None
    return cookie.device_for(
        subject, tag_key(), day_of(now or utcnow()), current_app.config["HEYON_DEVICE_COOKIE_DAYS"]
    )


def remember(subject: str) -> None:
    """After a right secret: this response gives the browser a fresh entry for ``subject``."""
    pending: list[str] = g.setdefault("heyon_device_subjects", [])
    if not pending:
        after_this_request(_set_cookie)
    pending.append(subject)


def _set_cookie(response: Response) -> Response:
    c = current_app.config
    cookie, today = presented(), day_of(utcnow())
    for subject in g.get("heyon_device_subjects", []):
        cookie = cookie.renewed(
            subject, tag_key(), today, c["HEYON_DEVICE_COOKIE_DAYS"], c["HEYON_DEVICE_COOKIE_ENTRIES"]
        )
    response.set_cookie(
        cookie_name(),
        cookie.dumps(c["SECRET_KEY"]),
        max_age=c["HEYON_DEVICE_COOKIE_DAYS"] * 86400,
        path="/",
        secure=bool(c["HEYON_HTTPS"]),
        httponly=True,
        samesite="Lax",
    )
    return response
