"""Usage from the network's charging system: debits, each applied exactly once, never below zero.

A charge is unique per client and the client's own id (``usage_charges``, a unique constraint):
the same batch sent again, or a hundred copies of it at once, applies each charge once. A charge
larger than the card's balance is refused for that charge alone (the network bars the card); the
debit is a ``usage`` ledger entry keyed by the same pair, through the one path every movement
takes (``ledger.credit``, with a negative amount). A debit that takes the balance below the card's
reminder threshold writes a low-balance message, at most one a day, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from sqlalchemy import select, update

from heyon_site.billing import notices
from heyon_site.billing.ledger import credit
from heyon_site.billing.money import yuan
from heyon_site.database import DbSession, insert_unless_there, serialise_on
from heyon_site.models import Card, UsageCharge, utcnow

Status = Literal["applied", "duplicate", "refused"]


@dataclass(frozen=True)
class Charge:
    """One charge as the API read it: its card already found (None: no such card)."""

    charge_id: str
    card_id: int | None
    amount_fen: int
    at: datetime  # naive UTC
    kind: str
    description: str = ""


@dataclass(frozen=True)
class Result:
    charge_id: str
    status: Status
    reason: str | None = None


def usage_key(client: str, charge_id: str) -> str:
    return f"usage:{client}:{charge_id}"


def apply_charge(s: DbSession, client: str, charge: Charge, today: date, now: datetime | None = None) -> Result:
    """Inside the caller's write transaction. The charge's row is written first (ON CONFLICT DO
    NOTHING): a copy being applied by another transaction waits for it, then finds the row."""
    now = now or utcnow()
    row = {
        "client": client,
        "charge_id": charge.charge_id,
        "card_id": charge.card_id,
        "amount_fen": charge.amount_fen,
        "kind": charge.kind,
        "description": charge.description[:200],
        "charged_at": charge.at,
        "status": "refused",
        "reason": None,
        "created_at": now,
    }
    added = s.execute(insert_unless_there(s, UsageCharge, ("client", "charge_id")), row)
    charge_row_id = added.scalar_one_or_none()
    if charge_row_id is None:
        earlier = s.scalar(
            select(UsageCharge.status).where(UsageCharge.client == client, UsageCharge.charge_id == charge.charge_id)
        )
        return Result(charge.charge_id, "duplicate", None if earlier == "applied" else "refused before")
    reason = _debit(s, client, charge, today, now) if charge.card_id is not None else "unknown_card"
    status: Status = "refused" if reason else "applied"
    s.execute(update(UsageCharge).where(UsageCharge.id == charge_row_id).values(status=status, reason=reason))
    return Result(charge.charge_id, status, reason)


def _debit(s: DbSession, client: str, charge: Charge, today: date, now: datetime) -> str | None:
    assert charge.card_id is not None
    serialise_on(f"card:{charge.card_id}")  # debits of one card one after another (PostgreSQL)
    card = s.execute(
        select(Card.balance_fen, Card.status, Card.low_balance_fen, Card.low_balance_sent_on)
        .where(Card.id == charge.card_id)
        .with_for_update()
    ).one_or_none()
    if card is None:
        return "unknown_card"
    before, _status, threshold, sent_on = card
    if charge.amount_fen > before:
        return "insufficient_balance"
    credit(s, charge.card_id, -charge.amount_fen, "usage", key=usage_key(client, charge.charge_id))
    after = before - charge.amount_fen
    if threshold is not None and after < threshold <= before and sent_on != today:
        _low_balance(s, charge.card_id, after, today, now)
    return None


def _low_balance(s: DbSession, card_id: int, balance_fen: int, today: date, now: datetime) -> None:
    card = s.get(Card, card_id)
    assert card is not None
    if not card.msisdn:
        return  # asked for with no phone to send to: nothing to write
    s.execute(update(Card).where(Card.id == card_id).values(low_balance_sent_on=today))
    params = {"last4": card.last4, "balance": yuan(balance_fen)}
    notices.enqueue(
        s,
        f"card:{card_id}:low:{today.isoformat()}:sms",
        "sms",
        card.msisdn,
        notices.LOW_BALANCE,
        params,
        card.low_balance_locale or "zh_Hans",
        card_id,
        now,
    )
