"""The payments of an order that credited nothing, as the staff order page shows them."""

from __future__ import annotations

from dataclasses import dataclass

from heyon_site.billing import refunds
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, Refund, Resolution


@dataclass(frozen=True)
class PaymentCase:
    """One payment of the order that credited nothing, and what has been decided about it."""

    event: PaymentEvent
    state: str
    proposal: Resolution | None
    decisions: list[Resolution]
    refunds: list[Refund]


def cases_of(order_id: int) -> list[PaymentCase]:
    """The order's payments that credited nothing, with their decisions and refunds."""
    decisions = refunds.resolutions_of(db.session, order_id)
    sent = refunds.refunds_of(db.session, order_id)
    found = []
    for event_id in refunds.uncredited_of(db.session, order_id):
        event = db.session.get(PaymentEvent, event_id)
        assert event is not None
        mine = [d for d in decisions if d.payment_event_id == event_id]
        found.append(
            PaymentCase(
                event,
                refunds.state_of(db.session, event_id),
                next((d for d in mine if d.state == "proposed"), None),
                mine,
                [r for r in sent if r.payment_event_id == event_id],
            )
        )
    return found
