"""Sending refunds to the providers, and following them to a final state.

The decisions live in ``billing.refunds``; this asks the provider between transactions (a slow
provider never holds a database lock) and records what it said. A refund never sent, or whose
request got no answer, is sent again with the same number (the provider's idempotency key: the
money goes back once); one the provider accepted is asked about until it is final. Its final state
comes from the provider (its answer, a notification, a query), never from the passing of time.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app

from heyon_site.billing import refunds
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, RechargeOrder, Refund, utcnow
from heyon_site.providers.base import Provider, ProviderUnavailable, RefundRequest, RefundResult


def request_of(refund: Refund) -> RefundRequest | None:
    event = db.session.get(PaymentEvent, refund.payment_event_id)
    order = db.session.get(RechargeOrder, refund.order_id)
    if event is None or order is None:
        return None
    return RefundRequest(
        order_no=order.order_no,
        refund_no=refund.refund_no,
        amount_fen=refund.amount_fen,
        total_fen=event.amount_fen,
        txn_id=event.provider_txn_id,
        reason="Heyon card: payment not credited",
    )


def push(refund_id: int, get_provider: Callable[[str], Provider | None], now: datetime | None = None) -> str:
    """Send one pending refund (or ask about it, once the provider has accepted it); returns its
    state as it now stands: pending, succeeded, failed, or unavailable (no answer; later again)."""
    now = now or utcnow()
    db.session.rollback()  # read what other transactions committed
    refund = db.session.get(Refund, refund_id, populate_existing=True)
    if refund is None or refund.status != "pending":
        return refund.status if refund is not None else "gone"
    ask = request_of(refund)
    provider = get_provider(refund.provider)
    answer: RefundResult | None = None
    if ask is not None and provider is not None:
        try:
            answer = provider.refund_status(ask) if refund.sent else provider.refund(ask)
        except ProviderUnavailable as exc:
            current_app.logger.warning("refund %s at %s: %s", refund.refund_no, refund.provider, exc)
        except ValueError as exc:
            # The adapter refused to send it (not of the provider's form): nothing left us, and
            # sending it again would be refused again; people decide what next.
            current_app.logger.error("refund %s at %s not sent: %s", refund.refund_no, refund.provider, exc)
            answer = RefundResult("failed", detail=f"not sent: {str(exc)[:100]}")
    db.session.rollback()  # the read transaction ends before the write
    in_write_transaction(
        lambda: refunds.record_answer(
            db.session,
            refund_id,
            answer.state if answer else None,
            now,
            answer.provider_refund_id if answer else None,
            answer.detail if answer else "",
        )
    )
    if answer is None:
        return "unavailable"
    current_app.logger.info("refund %s at %s: %s", ask.refund_no if ask else refund_id, refund.provider, answer.state)
    return answer.state


def _auto(event_id: int, now: datetime) -> bool:
    return refunds.auto_refund(db.session, event_id, now) is not None


def run(
    get_provider: Callable[[str], Provider | None], auto_after: timedelta, now: datetime | None = None
) -> Counter[str]:
    """One pass: ask for the refunds the rules call for (payments that can never be credited,
    verified at least ``auto_after`` ago), then send or ask about every refund that is due."""
    now = now or utcnow()
    counts: Counter[str] = Counter()
    db.session.rollback()
    for event_id in refunds.due_for_auto_refund(db.session, now - auto_after):
        if in_write_transaction(functools.partial(_auto, event_id, now)):
            counts["asked"] += 1
    db.session.rollback()
    for refund_id in refunds.refunds_due(db.session, now):
        counts[push(refund_id, get_provider, now)] += 1
    return counts
