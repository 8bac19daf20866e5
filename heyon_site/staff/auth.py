"""Staff sign-in: argon2id passwords, a per-username throttle in the database, sessions that
die on logout (``session_version``) or after idle minutes, role checks in the view, the audit log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar, cast

from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, current_app, g, request, session, url_for
from sqlalchemy import select, update

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import StaffUser, utcnow
from heyon_site.ops.audit import Actor, record
from heyon_site.security import device_cookie, throttle
from heyon_site.security.device_cookie import DeviceCookie
from heyon_site.security.passwords import dummy_hash, hasher
from heyon_site.staff import second_factor
from heyon_site.web.fragments import redirect_to

F = TypeVar("F", bound=Callable[..., Any])


MIN_PASSWORD_LENGTH = 10


MAX_PASSWORD_LENGTH = 128


SESSION_KEY = "staff"


def hash_password(password: str) -> str:
    return hasher().hash(password)


def find_staff(username: str) -> StaffUser | None:
    return db.session.scalar(select(StaffUser).where(StaffUser.username == username))


@dataclass(frozen=True)
class SignIn:
    staff_id: int | None = None
    refused: str | None = None  # "credentials" | "throttled" | "locked"
    retry_after: int = 0


def policy() -> throttle.Policy:
    return throttle.Policy.from_config("STAFF")


def password_subject(username: str) -> str:
    """The password throttle's subject, keyed by name whether or not the account exists, so the
    throttle reveals nothing. A browser's device entry for the account is bound to it."""
    return throttle.key_for("staff-throttle", username)


def code_subject(username: str) -> str:
    return throttle.key_for("staff-code", username)


def _refused(refusal: throttle.Refusal) -> SignIn:
    return SignIn(refused=refusal.reason, retry_after=refusal.retry_after)


def authenticate(
    username: str, password: str, device: DeviceCookie | None = None, now: datetime | None = None
) -> SignIn:
    """Same work, same answer for an unknown name, a wrong password and a disabled account;
    throttled per name and device (``device`` is the browser's device cookie)."""
    now = now or utcnow()
    subject = password_subject(username)
    bucket = throttle.Bucket(subject, device_cookie.device_for(subject, device, now))
    h = hasher()

    def verify() -> tuple[int, str] | None:
        user = find_staff(username)
        try:
            h.verify(user.password_hash if user else dummy_hash(h), password[:MAX_PASSWORD_LENGTH])
        except (VerificationError, InvalidHashError):
            return None
        return (user.id, user.password_hash) if user is not None and user.active else None

    def signed_in(found: tuple[int, str]) -> None:
        values: dict[str, Any] = {"last_login_at": now}
        if h.check_needs_rehash(found[1]):
            values["password_hash"] = h.hash(password)
        db.session.execute(update(StaffUser).where(StaffUser.id == found[0]).values(**values))

    checked = throttle.check(bucket, policy(), verify, signed_in, now)
    if checked.refusal is not None:
        return _refused(checked.refusal)
    return SignIn(staff_id=checked.value[0]) if checked.value else SignIn(refused="credentials")


def check_code(
    staff_id: int,
    username: str,
    secret: str,
    code: str,
    device: DeviceCookie | None = None,
    now: datetime | None = None,
) -> SignIn:
    """A second-factor code, throttled per account and device like the password: a million
    codes would otherwise be guessed in a few thousand tries an hour. The device is known by its
    entry for the account (the one its full sign-ins renew)."""
    now = now or utcnow()
    bucket = throttle.Bucket(code_subject(username), device_cookie.device_for(password_subject(username), device, now))

    def verify() -> int | None:
        return staff_id if in_write_transaction(lambda: second_factor.use_code(staff_id, secret, code, now)) else None

    checked = throttle.check(bucket, policy(), verify, now=now)
    if checked.refusal is not None:
        return _refused(checked.refusal)
    return SignIn(staff_id=staff_id) if checked.value else SignIn(refused="credentials")


def clear_throttle(username: str, *, password: bool = True, code: bool = True) -> int:
    """Inside a write transaction: forget the failures counted against an account's password
    and/or codes, from every device; the rows removed."""
    subjects = [s for s, wanted in ((password_subject(username), password), (code_subject(username), code)) if wanted]
    return throttle.clear_subjects(*subjects)


def throttle_states(username: str, now: datetime | None = None) -> dict[str, throttle.State]:
    """The throttles in force on an account, as its rows say: "password" and "code"."""
    p = policy()
    return {
        "password": throttle.state(password_subject(username), p, now),
        "code": throttle.state(code_subject(username), p, now),
    }


SECOND_STEP_KEY = "staff_second_step"


SECOND_STEP_SECONDS = 300


def start_second_step(user: StaffUser) -> None:
    """The password was right and a code is due: remember who, not signed in yet."""
    session.clear()
    session[SECOND_STEP_KEY] = {"id": user.id, "v": user.session_version, "at": int(utcnow().timestamp())}


def second_step_user() -> StaffUser | None:
    """The account waiting for its code, if the password step was recent and still valid."""
    data = session.get(SECOND_STEP_KEY)
    if not isinstance(data, dict):
        return None
    try:
        staff_id, version, at = int(data["id"]), int(data["v"]), int(data["at"])
    except (KeyError, TypeError, ValueError):
        return None
    user = db.session.get(StaffUser, staff_id, populate_existing=True)
    fresh = 0 <= int(utcnow().timestamp()) - at <= SECOND_STEP_SECONDS
    if user is None or not user.active or user.session_version != version or not user.totp_secret or not fresh:
        session.pop(SECOND_STEP_KEY, None)
        return None
    return user


def end_all_sessions(staff_id: int) -> None:
    """Every cookie of the account stops working (password change, role change, disabling).
    Runs in the caller's write transaction."""
    db.session.execute(
        update(StaffUser).where(StaffUser.id == staff_id).values(session_version=StaffUser.session_version + 1)
    )


def start_session(user: StaffUser) -> None:
    """A new session for a new identity: nothing from before sign-in survives (fixation). The
    sign-in is complete (second factor included), so the browser becomes a known device of the
    account, with its own failure allowance (a fresh device entry)."""
    session.clear()
    session[SESSION_KEY] = {"id": user.id, "v": user.session_version, "seen": int(utcnow().timestamp())}
    session.permanent = False
    device_cookie.remember(password_subject(user.username))


def current_staff() -> StaffUser | None:
    """The signed-in staff member, checked on every request: account active, session version
    current (logout elsewhere ends it), and not idle longer than HEYON_STAFF_IDLE_MINUTES."""
    if "staff_user" in g:
        cached: StaffUser | None = g.staff_user
        return cached
    g.staff_user = None
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    now = int(utcnow().timestamp())
    idle = current_app.config["HEYON_STAFF_IDLE_MINUTES"] * 60
    try:
        staff_id, version, seen = int(data["id"]), int(data["v"]), int(data["seen"])
    except (KeyError, TypeError, ValueError):
        session.pop(SESSION_KEY, None)
        return None
    user = db.session.get(StaffUser, staff_id, populate_existing=True)
    if user is None or not user.active or user.session_version != version or now - seen > idle:
        session.pop(SESSION_KEY, None)
        return None
    session[SESSION_KEY] = {**data, "seen": now}
    g.staff_user = user
    return user


def end_session(user: StaffUser) -> None:
    """Logout: every cookie of this account's current version stops working, even a copy."""
    who = Actor(user.id, user.username, request.remote_addr)

    def work() -> None:
        end_all_sessions(user.id)
        record(who, "logout")

    in_write_transaction(work)
    session.clear()


def actor() -> Actor:
    """Who acts in this request, for the audit rows of the changes it makes (signed-in views only)."""
    user = current_staff()
    assert user is not None  # every view that changes anything is behind require_role
    return Actor(user.id, user.username, request.remote_addr)


def require_role(*roles: str, enrolling: bool = False) -> Callable[[F], F]:
    """Check the role in the view: a fragment render never runs the page's template checks.
    An admin may do everything; no role at all means any signed-in staff member. An account
    whose second factor is required but not set up reaches only the ``enrolling`` pages."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_staff()
            if user is None:
                return redirect_to(url_for("staff.login", next=request.full_path if request.method == "GET" else None))
            if user.totp_required and not user.totp_secret and not enrolling:
                return redirect_to(url_for("staff.totp_setup"))
            if roles and user.role != "admin" and user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator
