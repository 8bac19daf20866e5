"""What the staff pages read. Views never build queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
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


@dataclass(frozen=True)
class OrderDetail:
    order: RechargeOrder
    events: list[PaymentEvent]
    callbacks: list[ProviderCallback]
    entries: list[LedgerEntry]


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
