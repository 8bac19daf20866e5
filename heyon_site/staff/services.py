"""Changing staff accounts: each function is one change (by an admin's screen, one's own account
page or `flask staff`), with its audit row, in the caller's write transaction. Changes that take
something away (password, role, sign-in, second factor) end the account's sessions everywhere.
They never read the request: the caller passes the ``Actor``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import update

from heyon_site.extensions import db
from heyon_site.models import STAFF_ROLES, StaffUser
from heyon_site.ops.audit import COMMAND_LINE, Actor, record, summary
from heyon_site.staff import second_factor
from heyon_site.staff.auth import MIN_PASSWORD_LENGTH, clear_throttle, end_all_sessions, hash_password


@dataclass(frozen=True)
class Settings:
    """What an admin decides about an account besides its password."""

    role: str
    active: bool = True
    totp_required: bool = False


def settings_of(user: StaffUser) -> Settings:
    return Settings(user.role, bool(user.active), bool(user.totp_required))


def create_account(actor: Actor, username: str, password_hash: str, settings: Settings) -> StaffUser:
    """A new account (the password hashed by the caller, outside the write transaction: argon2
    takes tens of milliseconds, and SQLite has one writer)."""
    if settings.role not in STAFF_ROLES:
        raise ValueError(settings.role)
    user = StaffUser(username=username, password_hash=password_hash, **asdict(settings))
    db.session.add(user)
    db.session.flush()
    record(actor, "staff.create", f"staff {username}", after=summary(asdict(settings)))
    return user


def create_staff(username: str, password: str, role: str, actor: Actor = COMMAND_LINE) -> StaffUser:
    """``create_account`` for a password in clear: `flask staff create`, and tests' fixtures."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError("password too short")
    return create_account(actor, username, hash_password(password), Settings(role))


def change_settings(actor: Actor, user: StaffUser, new: Settings) -> bool:
    """Put ``new`` in force; False when nothing changed (and nothing is recorded)."""
    before, after = asdict(settings_of(user)), asdict(new)
    changed = {k: v for k, v in after.items() if before[k] != v}
    if not changed:
        return False
    db.session.execute(update(StaffUser).where(StaffUser.id == user.id).values(**changed))
    if changed.get("active") is False or "role" in changed:
        end_all_sessions(user.id)
    record(
        actor,
        "staff.edit",
        f"staff {user.username}",
        before=summary({k: before[k] for k in changed}),
        after=summary(changed),
    )
    return True


def set_password(actor: Actor, user: StaffUser, password_hash: str) -> int:
    """An admin's (or the command line's) new password for someone: the way back in, so no wait
    from anyone's failures is left. Returns the throttle rows cleared."""
    db.session.execute(update(StaffUser).where(StaffUser.id == user.id).values(password_hash=password_hash))
    cleared = clear_throttle(user.username)
    end_all_sessions(user.id)
    record(actor, "staff.password_reset", f"staff {user.username}")
    return cleared


def reset_second_factor(actor: Actor, user: StaffUser) -> None:
    """For a lost phone: the factor is set up again at the next sign-in. The codes' throttle was
    about the removed secret, so it goes too; the password's stays."""
    second_factor.remove(user.id)
    clear_throttle(user.username, password=False)
    end_all_sessions(user.id)
    record(actor, "staff.totp_reset", f"staff {user.username}")


def change_own_password(actor: Actor, password_hash: str) -> None:
    """The member's own new password (the current one was checked): every other session ends."""
    assert actor.staff_id is not None
    db.session.execute(update(StaffUser).where(StaffUser.id == actor.staff_id).values(password_hash=password_hash))
    end_all_sessions(actor.staff_id)
    record(actor, "account.password", f"staff {actor.username}")


def turn_on_second_factor(actor: Actor, code: str, now: datetime) -> bool:
    """Confirm the enrolment with a first code; False when the code does not match."""
    assert actor.staff_id is not None
    if not second_factor.confirm_enrolment(actor.staff_id, code, now):
        return False
    record(actor, "account.totp_on", f"staff {actor.username}")
    return True


def turn_off_second_factor(actor: Actor) -> None:
    assert actor.staff_id is not None
    second_factor.remove(actor.staff_id)
    record(actor, "account.totp_off", f"staff {actor.username}")
