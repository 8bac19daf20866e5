"""Cards: creating them (an opening balance goes through the ledger), finding them, what a customer
sees, clearing their throttle."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from heyon_site.billing.ledger import credit
from heyon_site.billing.money import yuan
from heyon_site.cards.auth import clear_throttle, hash_card_pin
from heyon_site.cards.numbers import mask, normalise_card_number, number_digest
from heyon_site.database import rowcount
from heyon_site.extensions import db
from heyon_site.models import Card, RechargeOrder
from heyon_site.ops.audit import Actor, record


def create_card(number: str, password: str, balance_fen: int = 0) -> Card:
    """Add a card; an opening balance goes through the ledger like any other money."""
    digits = normalise_card_number(number)
    card = Card(
        number_digest=number_digest(digits), last4=digits[-4:], password_hash=hash_card_pin(password), balance_fen=0
    )
    db.session.add(card)
    db.session.flush()
    if balance_fen:
        credit(db.session, card.id, balance_fen, "opening", key=f"card:{card.id}:opening")
    return card


@dataclass(frozen=True)
class CardSummary:
    last4: str
    status: str
    balance_fen: int
    recent: list[RechargeOrder]


def summary(card_id: int, recent: int = 10) -> CardSummary:
    """What a customer sees after opening a card: its balance and its latest recharge orders."""
    card = db.session.get(Card, card_id, populate_existing=True)
    if card is None:
        raise LookupError(card_id)
    orders = db.session.scalars(
        select(RechargeOrder)
        .where(RechargeOrder.card_id == card_id)
        .order_by(RechargeOrder.created_at.desc(), RechargeOrder.id.desc())
        .limit(recent)
    ).all()
    return CardSummary(card.last4, card.status, card.balance_fen, list(orders))


def issue_cards(actor: Actor, cards: list[tuple[str, str, int]]) -> None:
    """Add cards (normalised number, password, opening balance in fen) as an operator does, with
    one audit row for the batch: how many, and the opening money they bring into the books."""
    for number, password, balance_fen in cards:
        create_card(number, password, balance_fen)
    masked = ", ".join(mask(number) for number, _, _ in cards[:5]) + (" ..." if len(cards) > 5 else "")
    record(
        actor,
        "cards.issue",
        f"{len(cards)} card(s): {masked}",
        after=f"opening_balance={yuan(sum(fen for _, _, fen in cards))}",
    )


def unblock(actor: Actor, number: str) -> int | None:
    """Set a card active again and clear its password throttle from every device (after support
    checked who asks); the throttle rows cleared, or None when there is no such card."""
    found = rowcount(
        db.session.execute(update(Card).where(Card.number_digest == number_digest(number)).values(status="active"))
    )
    if not found:
        return None
    record(actor, "card.unblock", f"card {mask(number)}")
    return clear_throttle(number)
