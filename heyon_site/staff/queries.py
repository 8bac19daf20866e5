"""What the staff pages read. Views never build queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from heyon_site import sitetime
from heyon_site.billing.recharge import find_order
from heyon_site.extensions import db
from heyon_site.models import AuditLog, Card, LedgerEntry, PaymentEvent, ProviderCallback, RechargeOrder

SEARCH_LIMIT = 100
AUDIT_PAGE_SIZE = 50


def search_orders(
    tz: ZoneInfo,
    order_no: str = "",
    last4: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
    status: str = "",
) -> list[RechargeOrder]:
    """Newest first; dates are days in the site's time zone, both inclusive."""
    q = select(RechargeOrder).join(Card, RechargeOrder.card_id == Card.id)
    if order_no:
        q = q.where(RechargeOrder.order_no == order_no)
    if last4:
        q = q.where(Card.last4 == last4)
    if date_from:
        q = q.where(RechargeOrder.created_at >= sitetime.day_start(date_from, tz))
    if date_to:
        q = q.where(RechargeOrder.created_at < sitetime.day_start(date_to + timedelta(days=1), tz))
    if status:
        q = q.where(RechargeOrder.status == status)
    q = q.order_by(RechargeOrder.created_at.desc(), RechargeOrder.id.desc()).limit(SEARCH_LIMIT)
    return list(db.session.scalars(q).unique())


# Callbacks whose outcome says no event was recorded for them (refused, already on record, not
# ours): the event list is never searched for theirs.
NO_EVENT = frozenset({"bad_signature", "malformed", "duplicate", "unknown_order", "received"})


@dataclass(frozen=True)
class Step:
    """One line of an order's provider timeline: a callback received, with the verified event it
    brought if any, or an event found by asking the provider (``callback`` None)."""

    at: datetime
    callback: ProviderCallback | None
    event: PaymentEvent | None

    @property
    def outcome(self) -> str:
        if self.callback is not None:
            return self.callback.outcome
        return self.event.outcome if self.event is not None else ""


def timeline(callbacks: Sequence[ProviderCallback], events: Sequence[PaymentEvent]) -> list[Step]:
    """The callbacks in the order received, each with its event, and the events no callback brought.

    No column links a callback to its event, but a callback is stored (and committed) before its
    event is applied, in the same request: its event is the first of its provider's recorded at or
    after it and before the next callback. An event outside every such window came from asking
    the provider (reconciliation, or the customer's "check now").
    """
    ordered = sorted(callbacks, key=lambda c: (c.received_at, c.id))
    free = sorted(events, key=lambda e: (e.created_at, e.id))
    steps: list[Step] = []
    for i, c in enumerate(ordered):
        until = ordered[i + 1].received_at if i + 1 < len(ordered) else None
        mine = None
        if c.outcome not in NO_EVENT:
            mine = next(
                (
                    e
                    for e in free
                    if e.provider == c.provider
                    and e.created_at >= c.received_at
                    and (until is None or e.created_at < until)
                ),
                None,
            )
        if mine is not None:
            free.remove(mine)
        steps.append(Step(c.received_at, c, mine))
    steps.extend(Step(e.created_at, None, e) for e in free)
    return sorted(steps, key=lambda s: s.at)


@dataclass(frozen=True)
class OrderDetail:
    order: RechargeOrder
    events: list[PaymentEvent]
    callbacks: list[ProviderCallback]
    entries: list[LedgerEntry]

    @property
    def timeline(self) -> list[Step]:
        return timeline(self.callbacks, self.events)


def order_detail(order_no: str) -> OrderDetail | None:
    # Not shaped like an order number (a NUL, which PostgreSQL refuses in text): none, never a query.
    found = find_order(db.session, order_no)
    if found is None:
        return None
    return OrderDetail(
        found,
        list(
            db.session.scalars(select(PaymentEvent).where(PaymentEvent.order_id == found.id).order_by(PaymentEvent.id))
        ),
        list(
            db.session.scalars(
                select(ProviderCallback).where(ProviderCallback.order_no == order_no).order_by(ProviderCallback.id)
            )
        ),
        list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.order_id == found.id).order_by(LedgerEntry.id))),
    )


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditLog]
    page: int
    has_next: bool


MAX_AUDIT_PAGE = 1_000_000  # far beyond any log; keeps OFFSET inside a 64-bit integer


def audit_page(page: int) -> AuditPage:
    page = min(max(1, page), MAX_AUDIT_PAGE)
    rows = list(
        db.session.scalars(
            select(AuditLog)
            .order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
            .offset((page - 1) * AUDIT_PAGE_SIZE)
            .limit(AUDIT_PAGE_SIZE + 1)
        )
    )
    return AuditPage(rows[:AUDIT_PAGE_SIZE], page, len(rows) > AUDIT_PAGE_SIZE)
