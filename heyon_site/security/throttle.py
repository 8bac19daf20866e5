"""Failure throttles kept in the database, so every worker and machine shares them: card
passwords, staff passwords and staff second-factor codes all go through ``check`` here.

A *subject* is what a guesser aims at: a card number or a username, as a keyed hash of what was
typed, so an unknown number or name is throttled exactly like a real one and nothing readable is
stored. Following OWASP's "Slow Down Online Guessing Attacks with Device Cookies", each subject
has several buckets of consecutive failures:

- one shared by every *unknown* device (its key is the subject itself);
- one per *known* device: a browser that gave the right secret before holds a signed entry bound
  to this subject (``device_cookie.py``), and its failures and waits are its own, so a stranger
  who knows only a card number cannot spend the owner's allowance;
- the *device allowance*: a leaky bucket all known devices of the subject share, so that stolen
  device cookies add a bounded number of guesses a day, however many there are.

The attempt is counted *before* the secret is checked, under a row lock: parallel guesses each
use one up. A right secret clears the bucket it came through, and only that one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from flask import current_app
from sqlalchemy import delete, select

from heyon_site.database import in_write_transaction, insert, rowcount, serialise_on
from heyon_site.extensions import db
from heyon_site.models import LoginThrottle, utcnow

T = TypeVar("T")
DAY = 86400


@dataclass(frozen=True)
class Refusal:
    reason: str  # "throttled" | "locked"
    retry_after: int = 0  # seconds


def whole_minutes(seconds: int) -> int:
    """A wait as people are told it: whole minutes, rounded up, at least one."""
    return max(1, -(-seconds // 60))


def whole_hours(seconds: int) -> int:
    """A wait as people are told it: whole hours, rounded up, at least one."""
    return max(1, -(-seconds // 3600))


@dataclass(frozen=True)
class Policy:
    """How one kind of secret is throttled (``HEYON_CARD_*`` or ``HEYON_STAFF_*``)."""

    free: int  # consecutive failures a bucket may have before it waits
    max_delay: int  # seconds; the doubling waits stop growing here
    lock_after: int | None  # consecutive failures after which a bucket is locked out ...
    lockout: int  # ... for this many seconds (renewed by each failure after it); never for good
    device_allowance: int  # failures all known devices of a subject share: this many, one back every DAY / it

    @classmethod
    def from_config(cls, kind: str) -> Policy:
        c = current_app.config
        return cls(
            c[f"HEYON_{kind}_FREE_ATTEMPTS"],
            c[f"HEYON_{kind}_MAX_DELAY_SECONDS"],
            c[f"HEYON_{kind}_LOCK_AFTER"],
            c[f"HEYON_{kind}_LOCKOUT_SECONDS"],
            max(1, c[f"HEYON_{kind}_DEVICE_ALLOWANCE"]),
        )

    def delay_after(self, failures: int) -> int:
        """Seconds to wait after ``failures`` consecutive failures of one bucket."""
        if self.lock_after is not None and failures >= self.lock_after:
            return self.lockout
        return delay_after(failures, self.free, self.max_delay)


def key_for(namespace: str, typed: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"{namespace}:".encode() + typed.encode(), hashlib.sha256).hexdigest()


def delay_after(failures: int, free: int, cap_seconds: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures: ``free`` tries, then doubling."""
    if failures <= free:
        return 0
    return int(min(2 ** min(failures - free, 30), cap_seconds))


@dataclass(frozen=True)
class Bucket:
    """The failures one attempt counts against: the subject's unknown devices (``device`` None)
    or one known device of it."""

    subject: str
    device: str | None = None

    @property
    def key(self) -> str:
        return self.subject if self.device is None else key_for("device", f"{self.subject}:{self.device}")


def _allowance_key(subject: str) -> str:
    return key_for("device-allowance", subject)


def _locked_row(key: str, subject: str, now: datetime) -> LoginThrottle:
    """The row, created empty if need be and locked for this transaction (SQLite: the whole
    database is, by BEGIN IMMEDIATE).

    On PostgreSQL the insert can find a row that a concurrent success then deletes before our
    SELECT ... FOR UPDATE reads it (READ COMMITTED skips the deleted row), so the pair is tried
    again: the next insert then makes the row. Each retry needs another commit in between, so
    three are plenty; a fourth miss is a real fault and raises."""
    for _ in range(4):
        db.session.execute(
            insert(db.session, LoginThrottle)
            .values(key=key, subject=subject, failures=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = db.session.execute(
            select(LoginThrottle)
            .where(LoginThrottle.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if row is not None:
            return row
    raise RuntimeError("the throttle row kept vanishing between its insert and its lock")


def _wait(until: datetime | None, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds())) if until is not None and until > now else 0


def _leak(pool: LoginThrottle, allowance: int, now: datetime) -> None:
    """Give back the device allowance's slots that came free since it was last looked at."""
    interval = timedelta(seconds=DAY / allowance)
    leaked = int((now - pool.updated_at) / interval) if now > pool.updated_at else 0
    if leaked:
        pool.failures = max(0, pool.failures - leaked)
        pool.updated_at = now if pool.failures == 0 else pool.updated_at + leaked * interval
    pool.blocked_until = pool.updated_at + interval if pool.failures >= allowance else None


def reserve(bucket: Bucket, policy: Policy, now: datetime) -> Refusal | None:
    """Inside a write transaction: refuse while the bucket waits out a delay or a lockout (or,
    for a known device, while the devices' allowance is spent); else count the attempt and set
    the wait the next one must respect."""
    row = _locked_row(bucket.key, bucket.subject, now)
    wait = _wait(row.blocked_until, now)
    if wait:
        locked = policy.lock_after is not None and row.failures >= policy.lock_after
        return Refusal("locked" if locked else "throttled", wait)
    if bucket.device is not None:
        pool = _locked_row(_allowance_key(bucket.subject), bucket.subject, now)
        if pool.failures == 0:
            pool.updated_at = now
        _leak(pool, policy.device_allowance, now)
        if pool.failures >= policy.device_allowance:
            if row.failures == 0:
                db.session.delete(row)  # made just now, for nothing
            return Refusal("throttled", _wait(pool.blocked_until, now))
        pool.failures += 1
        _leak(pool, policy.device_allowance, now)
    row.failures += 1
    row.updated_at = now
    delay = policy.delay_after(row.failures)
    row.blocked_until = now + timedelta(seconds=delay) if delay else None
    db.session.flush()
    return None


def succeeded(bucket: Bucket, policy: Policy, now: datetime) -> None:
    """Inside a write transaction: the right secret clears its own bucket, and gives back the
    device allowance this attempt took."""
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == bucket.key))
    if bucket.device is not None:
        pool = db.session.execute(
            select(LoginThrottle)
            .where(LoginThrottle.key == _allowance_key(bucket.subject))
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if pool is not None and pool.failures <= 1:
            db.session.delete(pool)  # all given back: no row left behind by a sign-in
        elif pool is not None:
            pool.failures -= 1
            _leak(pool, policy.device_allowance, now)
        db.session.flush()


def clear_subjects(*subjects: str) -> int:
    """Inside a write transaction: forget every row of these subjects (a reset by support or an
    admin); the number of rows removed."""
    result = db.session.execute(delete(LoginThrottle).where(LoginThrottle.subject.in_(subjects)))
    return int(rowcount(result) or 0)


@dataclass(frozen=True)
class Checked(Generic[T]):
    """``value`` when the secret was right; ``refusal`` when it was not even checked."""

    value: T | None = None
    refusal: Refusal | None = None


def check(
    bucket: Bucket,
    policy: Policy,
    verify: Callable[[], T | None],
    on_success: Callable[[T], None] | None = None,
    now: datetime | None = None,
    *,
    quick: bool = False,
) -> Checked[T]:
    """The one throttled check of a secret: count the attempt, then ``verify`` (which returns
    something for a right secret, None for a wrong one, and does the same work either way), then
    clear the bucket and run ``on_success``.

    A slow ``verify`` (argon2, tens of milliseconds) runs between two write transactions, so that
    no write lock is held while it works (on SQLite that lock is the whole database's). A
    ``quick`` one (a keyed card PIN: microseconds) runs inside a single write transaction with
    the counting and the clearing: the same steps under the same lock, one commit instead of two.
    """
    now = now or utcnow()
    if quick:
        return in_write_transaction(lambda: _check_at_once(bucket, policy, verify, on_success, now))
    refusal = in_write_transaction(lambda: reserve(bucket, policy, now))
    if refusal is not None:
        return Checked(refusal=refusal)
    value = verify()
    db.session.rollback()  # verify's reads end here, before the write transaction
    if value is None:
        return Checked()
    in_write_transaction(lambda: _right_secret(bucket, policy, now, value, on_success))
    return Checked(value=value)


def _check_at_once(
    bucket: Bucket,
    policy: Policy,
    verify: Callable[[], T | None],
    on_success: Callable[[T], None] | None,
    now: datetime,
) -> Checked[T]:
    # Every check of this subject waits here for the one before it, so that even with no row
    # yet (nothing to lock) parallel guesses are checked one after another and each sees the
    # failures counted before it.
    serialise_on(f"throttle:{bucket.subject}")
    keys = [bucket.key] if bucket.device is None else [bucket.key, _allowance_key(bucket.subject)]
    if db.session.execute(select(LoginThrottle.key).where(LoginThrottle.key.in_(keys)).limit(1)).first() is None:
        # No failures behind this bucket (the usual case): a right secret writes nothing, a wrong
        # one is counted as it would have been before the check.
        value = verify()
        if value is None:
            reserve(bucket, policy, now)  # a fresh bucket and allowance: never a refusal
            return Checked()
        if on_success is not None:
            on_success(value)
        return Checked(value=value)
    refusal = reserve(bucket, policy, now)
    if refusal is not None:
        return Checked(refusal=refusal)
    value = verify()
    if value is None:
        return Checked()
    _right_secret(bucket, policy, now, value, on_success)
    return Checked(value=value)


def _right_secret(
    bucket: Bucket, policy: Policy, now: datetime, value: T, on_success: Callable[[T], None] | None
) -> None:
    """Inside the write transaction: clear the bucket, then what the caller does on success."""
    succeeded(bucket, policy, now)
    if on_success is not None:
        on_success(value)


# ------------------------------------------------------------------ what the staff pages show


@dataclass(frozen=True)
class State:
    """The throttle in force on one subject, read from its rows."""

    failures: int = 0  # consecutive failures from unknown devices
    wait_until: datetime | None = None  # unknown devices wait until then
    locked: bool = False  # ... and it is a lockout (lock_after reached), not a doubling delay
    devices_waiting: int = 0  # known devices that must wait
    devices_until: datetime | None = None  # the known devices' shared allowance is spent until then

    @property
    def in_force(self) -> bool:
        return bool(self.wait_until or self.devices_waiting or self.devices_until)

    @property
    def any(self) -> bool:
        return self.in_force or self.failures > 0


def state(subject: str, policy: Policy, now: datetime | None = None) -> State:
    now = now or utcnow()
    rows = list(
        db.session.scalars(
            select(LoginThrottle).where(LoginThrottle.subject == subject).execution_options(populate_existing=True)
        )
    )
    unknown = next((r for r in rows if r.key == subject), None)
    pool_key = _allowance_key(subject)
    pool = next((r for r in rows if r.key == pool_key), None)
    devices = [r for r in rows if r.key not in (subject, pool_key)]
    wait_until = unknown.blocked_until if unknown and _wait(unknown.blocked_until, now) else None
    failures = unknown.failures if unknown else 0
    devices_until = None
    if pool is not None:
        # Read as _leak would compute it, without writing: a page view changes nothing.
        db.session.expunge(pool)
        _leak(pool, policy.device_allowance, now)
        devices_until = pool.blocked_until if _wait(pool.blocked_until, now) else None
    return State(
        failures=failures,
        wait_until=wait_until,
        locked=bool(wait_until and policy.lock_after is not None and failures >= policy.lock_after),
        devices_waiting=sum(1 for r in devices if _wait(r.blocked_until, now)),
        devices_until=devices_until,
    )
