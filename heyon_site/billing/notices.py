"""Messages to customers, written into the outbox in the same transaction as the money movement
that causes them: a credit that rolls back takes its message with it, and a credit that commits
cannot lose it. Delivery is `flask outbox work`'s (heyon_site/outbox); nothing here sends.

Each message has a unique key (what causes it, and on which channel): the same cause never writes
two, and the key goes to the provider as its idempotency key where it takes one.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from heyon_site.billing.money import yuan
from heyon_site.database import DbSession, insert_unless_there
from heyon_site.models import Card, OutboxMessage, RechargeOrder, utcnow

#: The templates a message can be (outbox/templates.py words them per language; Alibaba Cloud
#: needs each registered, its code configured).
RECHARGE_CREDITED = "recharge_credited"
LOW_BALANCE = "low_balance"
TEMPLATES = (RECHARGE_CREDITED, LOW_BALANCE)


def enqueue(
    s: DbSession,
    key: str,
    channel: str,
    recipient: str,
    template: str,
    params: dict[str, str],
    locale: str,
    card_id: int | None,
    now: datetime | None = None,
) -> bool:
    """Write one message (unless its key is there already); False when it was."""
    now = now or utcnow()
    added = s.execute(
        insert_unless_there(s, OutboxMessage, ("key",)),
        {
            "key": key[:120],
            "channel": channel,
            "recipient": recipient,
            "template": template,
            "params": json.dumps(params, ensure_ascii=False, sort_keys=True),
            "locale": locale,
            "card_id": card_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    return added.scalar_one_or_none() is not None


def recharge_credited(s: DbSession, order_id: int, now: datetime | None = None) -> int:
    """ "Recharge credited": an SMS to the card's phone, an e-mail to the address given with the
    order, in the order's language. Returns how many were written."""
    row = s.execute(
        select(
            RechargeOrder.order_no,
            RechargeOrder.email,
            RechargeOrder.locale,
            RechargeOrder.amount_fen,
            RechargeOrder.bonus_fen,
            Card.id,
            Card.last4,
            Card.msisdn,
            Card.balance_fen,
        )
        .join(Card, Card.id == RechargeOrder.card_id)
        .where(RechargeOrder.id == order_id)
    ).one()
    order_no, email, locale, amount, bonus, card_id, last4, msisdn, balance = row
    params = {"order_no": order_no, "amount": yuan(amount + bonus), "last4": last4, "balance": yuan(balance)}
    written = 0
    for channel, recipient in (("sms", msisdn), ("email", email)):
        if recipient:
            key = f"order:{order_id}:credited:{channel}"
            written += enqueue(s, key, channel, recipient, RECHARGE_CREDITED, params, locale, card_id, now)
    return written
