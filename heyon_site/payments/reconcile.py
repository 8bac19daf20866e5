"""Starting payments, and making sure no paid order is left pending when a notification is lost.

``reconcile`` asks each provider about orders still pending after a while, credits the paid ones
through the one credit path (``apply_event``), and past the payment timeout closes the order with
the provider, asks once more (a payment may have landed meanwhile) and only then expires it.

Safe to run from cron on several machines at once. On PostgreSQL each order is claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` for the length of its check, so two runs never ask about
the same order at the same time and a notification for that order waits for the claim, then
finds it settled. SQLite has one writer: the provider is asked outside the write lock (a slow
provider must not stop every other writer), so two runs on one machine may ask twice; applying
the same answer twice is a duplicate, never a second credit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update

from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.recharge import apply_event
from heyon_site.database import in_write_transaction, rowcount
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from heyon_site.ops import alarms
from heyon_site.providers.base import Provider, ProviderUnavailable


@dataclass(frozen=True)
class Candidate:
    id: int
    order_no: str
    provider: str
    created_at: datetime


def _ask(
    provider: Provider, order: Candidate, expire_after: timedelta | None, now: datetime
) -> tuple[str, ProviderEvent | None, bool]:
    """Ask the provider (network; no write lock held on SQLite). Returns the outcome so far, the
    event to apply, and whether the order is to be expired."""
    try:
        event = provider.query(order.order_no)
        if event is not None:
            return "", event, False
        if expire_after is None or now - order.created_at < max(expire_after, provider.pay_timeout):
            return "still_pending", None, False
        provider.close(order.order_no)
        event = provider.query(order.order_no)  # paid between the first question and the close?
        if event is not None and event.kind == "paid":
            return "", event, False
        # Unpaid, or closed by the close we just sent: it ran out of time, it did not fail.
        return "expired", None, True
    except ProviderUnavailable:
        return "provider_unavailable", None, False


def _settle(order: Candidate, outcome: str, event: ProviderEvent | None, expire: bool, now: datetime) -> str:
    """The write half of a check, in the caller's write transaction."""
    db.session.execute(update(RechargeOrder).where(RechargeOrder.id == order.id).values(checked_at=now))
    if event is not None:
        return apply_event(db.session, event, now)
    if expire:
        moved = db.session.execute(
            update(RechargeOrder)
            .where(RechargeOrder.id == order.id, RechargeOrder.status == "pending")
            .values(status="expired", updated_at=now, finalized_at=now, status_reason="timeout")
        )
        return "expired" if rowcount(moved) == 1 else "ignored"
    return outcome


def _candidate_query(cutoff: datetime, after_id: int) -> Select[int, str, str, datetime]:
    return (
        select(RechargeOrder.id, RechargeOrder.order_no, RechargeOrder.provider, RechargeOrder.created_at)
        .where(RechargeOrder.status == "pending", RechargeOrder.created_at < cutoff, RechargeOrder.id > after_id)
        .order_by(RechargeOrder.id)
        .limit(1)
    )


def _on_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def check_one(
    order: Candidate,
    providers: Callable[[str], Provider | None],
    expire_after: timedelta | None,
    now: datetime | None = None,
) -> str:
    """Ask about one order and apply the answer; the outcome of ``apply_event`` or one of
    still_pending, expired, provider_unavailable, not_pending."""
    now = now or utcnow()
    provider = providers(order.provider)
    if provider is None:
        return "provider_unavailable"
    if _on_postgresql():

        def claimed() -> str:
            row = db.session.execute(
                select(RechargeOrder.status).where(RechargeOrder.id == order.id).with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return "claimed_elsewhere"
            if row.status != "pending":
                return "not_pending"
            outcome, event, expire = _ask(provider, order, expire_after, now)
            return _settle(order, outcome, event, expire, now)

        settled = in_write_transaction(claimed)
    else:
        outcome, event, expire = _ask(provider, order, expire_after, now)
        settled = in_write_transaction(lambda: _settle(order, outcome, event, expire, now))
    if settled == "refunded":  # "closed" from the provider, but the order was credited meanwhile
        alarms.money_returned(order.provider, order.order_no)
    return settled


def reconcile(
    providers: Callable[[str], Provider | None],
    older_than: timedelta,
    expire_after: timedelta,
    now: datetime | None = None,
    limit: int = 10_000,
) -> Counter[str]:
    """Check every order pending longer than ``older_than``, oldest first; count the outcomes."""
    now = now or utcnow()
    cutoff = now - older_than
    counts: Counter[str] = Counter()
    after_id = 0
    for _ in range(limit):
        if _on_postgresql():
            # Skip orders another run holds right now; they are being settled there.
            row = db.session.execute(_candidate_query(cutoff, after_id).with_for_update(skip_locked=True)).first()
        else:
            row = db.session.execute(_candidate_query(cutoff, after_id)).first()
        db.session.rollback()  # the claim itself is taken again inside check_one's transaction
        if row is None:
            break
        order = Candidate(*row)
        after_id = order.id
        counts[check_one(order, providers, expire_after, now)] += 1
    return counts


def candidate(order_no: str) -> Candidate | None:
    row = db.session.execute(
        select(RechargeOrder.id, RechargeOrder.order_no, RechargeOrder.provider, RechargeOrder.created_at).where(
            RechargeOrder.order_no == order_no
        )
    ).first()
    return Candidate(*row) if row else None
