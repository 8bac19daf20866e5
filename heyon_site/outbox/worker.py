"""`flask outbox work`: claim due messages, send each through its channel, record the outcome.

Several workers on several machines at once: a worker claims a few due messages in one short
write transaction (on PostgreSQL ``FOR UPDATE SKIP LOCKED`` picks rows no other claimer holds;
SQLite's ``BEGIN IMMEDIATE`` makes claims one after another) by moving their next attempt a lease
ahead, then sends outside any transaction. Delivery is at least once: a worker that dies after
sending and before recording leaves the message to be sent again when the lease ends, under the
same key, which the provider receives as its idempotency key where it takes one. A failure backs
off exponentially; after HEYON_OUTBOX_MAX_TRIES tries (or a permanent failure) the message is
"dead": listed for staff and counted on /metrics.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import OutboxMessage, utcnow
from heyon_site.ops.logs import mask_contact
from heyon_site.outbox.channels import Channel, Outgoing, PermanentFailure, TemporaryFailure
from heyon_site.outbox.templates import render

#: How long a claimed message is a worker's before another may take it (a send takes seconds).
LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min ... at most 6 hours, after the ``attempts``-th failed try."""
    wait: timedelta = FIRST_RETRY * 2 ** min(max(attempts - 1, 0), 20)
    return min(wait, LAST_RETRY)


def claim(now: datetime, limit: int = 20) -> list[int]:
    """Take up to ``limit`` due messages for this worker: their next attempt moves a lease ahead
    and their tries count one more, in one transaction."""

    def work() -> list[int]:
        query = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
        )
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(db.session.scalars(query).all())
        if ids:
            db.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(next_attempt_at=now + LEASE, attempts=OutboxMessage.attempts + 1)
            )
        return ids

    return in_write_transaction(work)


def send_one(message_id: int, channels: Mapping[str, Channel], now: datetime) -> str:
    """Send one claimed message; its outcome: sent, retry, dead (or gone: not pending any more)."""
    db.session.rollback()
    found = db.session.get(OutboxMessage, message_id, populate_existing=True)
    if found is None or found.status != "pending":
        return "gone"
    attempts, channel = found.attempts, channels.get(found.channel)
    try:
        if channel is None:
            raise PermanentFailure(f"no {found.channel} channel")
        params = json.loads(found.params or "{}")
        subject, text = render(found.template, found.locale, params)
        channel.send(Outgoing(found.key, found.recipient, found.template, params, found.locale, subject, text))
    except (PermanentFailure, TemporaryFailure, KeyError, ValueError) as exc:
        permanent = not isinstance(exc, TemporaryFailure) or attempts >= current_app.config["HEYON_OUTBOX_MAX_TRIES"]
        error = f"{type(exc).__name__}: {exc}"[:200]
        current_app.logger.warning(
            "outbox message %s to %s (%s): %s%s",
            found.key,
            mask_contact(found.recipient),
            found.channel,
            error,
            " - given up" if permanent else "",
        )
        values: dict[str, object] = {"last_error": error}
        values.update(status="dead") if permanent else values.update(next_attempt_at=now + backoff(attempts))
        _record(message_id, values)
        return "dead" if permanent else "retry"
    _record(message_id, {"status": "sent", "sent_at": utcnow(), "last_error": None})
    return "sent"


def _record(message_id: int, values: dict[str, object]) -> None:
    db.session.rollback()
    in_write_transaction(
        lambda: db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending")
            .values(**values)
        )
    )


def work_once(channels: Mapping[str, Channel], now: datetime | None = None, limit: int = 20) -> Counter[str]:
    """One round: claim what is due, send it; the outcomes counted."""
    now = now or utcnow()
    counts: Counter[str] = Counter()
    # A read first: an idle worker (most of the time) takes no write lock every round.
    db.session.rollback()
    due = select(OutboxMessage.id).where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
    if db.session.scalar(due.limit(1)) is None:
        return counts
    for message_id in claim(now, limit):
        counts[send_one(message_id, channels, now)] += 1
    return counts
