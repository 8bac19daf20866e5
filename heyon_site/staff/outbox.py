"""Messages to customers as staff see them (cashier and admin): how many wait, went, or were given
up, and the ones given up, each with what went wrong and a link to its card's orders. Recipients
are shown masked: enough to tell two apart, not to reach the person."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flask import Response
from sqlalchemy import func, select

from heyon_site.extensions import db
from heyon_site.models import OUTBOX_STATES, Card, OutboxMessage
from heyon_site.staff.auth import require_role
from heyon_site.staff.blueprint import bp
from heyon_site.web.fragments import render

SHOWN = 100  # dead letters on the page, newest first


@dataclass(frozen=True)
class DeadLetter:
    at: datetime  # when it was written (the change that caused it)
    channel: str
    recipient: str  # unmasked: the template masks it
    template: str
    attempts: int
    last_error: str | None
    last4: str | None  # the card's, for its orders


def status_counts() -> dict[str, int]:
    m = OutboxMessage
    found = {status: int(n) for status, n in db.session.execute(select(m.status, func.count()).group_by(m.status))}
    return {status: found.get(status, 0) for status in OUTBOX_STATES}


def dead_letters(limit: int = SHOWN) -> Sequence[DeadLetter]:
    m = OutboxMessage
    rows = db.session.execute(
        select(m.created_at, m.channel, m.recipient, m.template, m.attempts, m.last_error, Card.last4)
        .outerjoin(Card, Card.id == m.card_id)
        .where(m.status == "dead")
        .order_by(m.created_at.desc(), m.id.desc())
        .limit(limit)
    )
    return [DeadLetter(*row) for row in rows]


@bp.get("/outbox")
@require_role("cashier")
def outbox() -> Response:
    return render("staff/outbox.html", counts=status_counts(), dead=dead_letters(), shown=SHOWN)
