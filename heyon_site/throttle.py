"""Consecutive-failure throttles kept in the database, so every worker and machine shares them.

Used for card passwords and staff sign-ins. Rows are keyed by an HMAC of what was typed, so an
unknown card number or username is throttled exactly like a real one and nothing readable is
stored. The attempt is counted *before* the secret is checked: parallel guesses each use one up.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, update

from .database import insert
from .extensions import db
from .models import LoginThrottle


@dataclass(frozen=True)
class Refusal:
    reason: str  # "throttled" | "locked"
    retry_after: int = 0  # seconds, when throttled


def key_for(namespace: str, typed: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"{namespace}:".encode() + typed.encode(), hashlib.sha256).hexdigest()


def delay_after(failures: int, free: int, cap_seconds: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures: ``free`` tries, then doubling."""
    if failures <= free:
        return 0
    return int(min(2 ** min(failures - free, 30), cap_seconds))


def reserve_attempt(key: str, now: datetime, free: int, cap_seconds: int,
                    lock_after: int | None = None) -> tuple[Refusal | None, int]:
    """Inside a write transaction: refuse while waiting out a delay (or locked), else count the
    attempt and set the delay the next one must wait. Returns (refusal, failures counted)."""
    row = db.session.get(LoginThrottle, key, populate_existing=True)
    if row is not None:
        if lock_after is not None and row.failures >= lock_after:
            return Refusal("locked"), row.failures
        if row.blocked_until is not None and row.blocked_until > now:
            wait = max(1, int((row.blocked_until - now).total_seconds() + 0.999))
            return Refusal("throttled", wait), row.failures
    failures = db.session.execute(
        insert(LoginThrottle).values(key=key, failures=1, updated_at=now)
        .on_conflict_do_update(index_elements=["key"], set_={"failures": LoginThrottle.failures + 1, "updated_at": now})
        .returning(LoginThrottle.failures)
    ).scalar_one()
    wait = delay_after(failures, free, cap_seconds)
    db.session.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                       .values(blocked_until=now + timedelta(seconds=wait) if wait else None))
    return None, failures


def clear(key: str) -> None:
    """A success resets the count."""
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
