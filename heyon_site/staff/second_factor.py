"""Staff second factor: time-based one-time codes (RFC 6238) from an authenticator app.

Plain functions over the database; the views decide when a code is asked for. A code is
accepted once: the step it belongs to is stored with a conditional UPDATE, so the same code
replayed (or sent twice at once) is refused by the database row, not by luck.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import pyotp
import segno
from sqlalchemy import or_, update

from heyon_site.database import rowcount
from heyon_site.extensions import db
from heyon_site.models import StaffUser

ISSUER = "Heyon staff"
# One 30 s step either side of now: phone clocks drift, and a code typed at the end of its
# step arrives in the next one. RFC 6238 section 5.2 recommends at most one.
DRIFT_STEPS = 1
CODE_DIGITS = 6


def new_secret() -> str:
    """160 random bits, base32 as authenticator apps expect (RFC 4226 recommends 160)."""
    return pyotp.random_base32(32)


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into a phone by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """Inline SVG for the enrolment page: no image request, no script, nothing leaves the page."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=2, omitsize=True, title="TOTP")


def normalise_code(text: str) -> str:
    """Digits only: people type "123 456" and IMEs give full-width digits."""
    # isdecimal, not isdigit: "²" is a digit that int() cannot read; "１" is decimal and reads as 1.
    return "".join(str(int(ch)) for ch in text if ch.isdecimal())


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code this is, within the drift window, or ``None``."""
    code = normalise_code(code)
    if len(code) != CODE_DIGITS:
        return None
    totp = pyotp.TOTP(secret)
    # Our times are naive UTC; pyotp would read a naive time as the server's local time, which
    # is eight hours off on a server set to Asia/Shanghai.
    here = totp.timecode(now.replace(tzinfo=UTC) if now.tzinfo is None else now)
    found = None
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        # Compare every candidate, in constant time, so timing tells nothing about which matched.
        if hmac.compare_digest(code, totp.generate_otp(step)):
            found = step
    return found


def use_code(staff_id: int, secret: str, code: str, now: datetime) -> bool:
    """Accept the code once: true only if it matches and its step is newer than the last one
    used. Runs in the caller's write transaction."""
    step = matching_step(secret, code, now)
    if step is None:
        return False
    taken = db.session.execute(
        update(StaffUser)
        .where(
            StaffUser.id == staff_id,
            StaffUser.totp_secret == secret,
            or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return rowcount(taken) == 1


def confirm_enrolment(staff_id: int, code: str, now: datetime) -> bool:
    """Turn the pending secret on if ``code`` comes from it (proof the app has it)."""
    user = db.session.get(StaffUser, staff_id, populate_existing=True)
    if user is None or not user.totp_pending:
        return False
    step = matching_step(user.totp_pending, code, now)
    if step is None:
        return False
    done = db.session.execute(
        update(StaffUser)
        .where(StaffUser.id == staff_id, StaffUser.totp_pending == user.totp_pending)
        .values(totp_secret=user.totp_pending, totp_pending=None, totp_last_step=step)
    )
    return rowcount(done) == 1


def start_enrolment(staff_id: int) -> str:
    """The pending secret to show, made once and kept until confirmed, so reloading the page
    does not invalidate what the phone already scanned."""
    user = db.session.get(StaffUser, staff_id, populate_existing=True)
    assert user is not None
    if user.totp_pending:
        return user.totp_pending
    secret = new_secret()
    db.session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(totp_pending=secret))
    return secret


def remove(staff_id: int) -> None:
    """Second factor off (own choice with a code, or an admin's reset for a lost phone)."""
    db.session.execute(
        update(StaffUser)
        .where(StaffUser.id == staff_id)
        .values(totp_secret=None, totp_pending=None, totp_last_step=None)
    )
