"""Cards: creating them (an opening balance goes through the ledger), finding them, what a customer
sees, clearing their throttle, forgetting their owner's personal data."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from heyon_site.billing.ledger import credit
from heyon_site.billing.money import yuan
from heyon_site.cards.auth import clear_throttle, hash_card_pin
from heyon_site.cards.numbers import mask, normalise_card_number, number_digest
from heyon_site.database import rowcount
from heyon_site.extensions import db
from heyon_site.models import Card, InvoiceRequest, OutboxMessage, RechargeOrder, UsageCharge
from heyon_site.ops.audit import Actor, record
from heyon_site.ops.logs import mask_personal

# What a sent or dead message's recipient becomes when its card's data is forgotten: the row
# stays (staff and the books count it), the person it went to does not.
FORGOTTEN = "forgotten"
_PHONE_SEPARATORS = re.compile(r"[\s\-().]+")
_E164 = re.compile(r"\+[1-9]\d{5,14}")  # "+", then 6 to 15 digits, the first not 0
_CHINESE_MOBILE = re.compile(r"1[3-9]\d{9}")


class PhoneNumberError(ValueError):
    """Not a phone number messages can go to."""


def normalise_msisdn(text: str) -> str:
    """A card's phone number as kept (E.164): "+" and 6 to 15 digits, or an 11-digit Chinese mobile
    number, which becomes +86...; spaces, dashes, dots, brackets and full-width digits as typed."""
    compact = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", text or ""))
    if not compact.isascii():
        raise PhoneNumberError(text)
    if _CHINESE_MOBILE.fullmatch(compact):
        return "+86" + compact
    if _E164.fullmatch(compact):
        return compact
    raise PhoneNumberError(text)


def create_card(number: str, password: str, balance_fen: int = 0, msisdn: str | None = None) -> Card:
    """Add a card; an opening balance goes through the ledger like any other money. ``msisdn``:
    its phone number, normalised (``normalise_msisdn``)."""
    digits = normalise_card_number(number)
    card = Card(
        number_digest=number_digest(digits),
        last4=digits[-4:],
        password_hash=hash_card_pin(password),
        balance_fen=0,
        msisdn=msisdn,
    )
    db.session.add(card)
    db.session.flush()
    if balance_fen:
        credit(db.session, card.id, balance_fen, "opening", key=f"card:{card.id}:opening")
    return card


@dataclass(frozen=True)
class CardSummary:
    id: int
    last4: str
    status: str
    balance_fen: int
    recent: list[RechargeOrder]
    usage: list[UsageCharge]
    msisdn: str | None
    low_balance_fen: int | None


def summary(card_id: int, recent: int = 10) -> CardSummary:
    """What a customer sees after opening a card: its balance, its latest recharge orders, the
    latest charges it paid for (a refused charge took nothing, so it is not listed), and its
    reminder settings."""
    card = db.session.get(Card, card_id, populate_existing=True)
    if card is None:
        raise LookupError(card_id)
    orders = db.session.scalars(
        select(RechargeOrder)
        .where(RechargeOrder.card_id == card_id)
        .order_by(RechargeOrder.created_at.desc(), RechargeOrder.id.desc())
        .limit(recent)
    ).all()
    usage = db.session.scalars(
        select(UsageCharge)
        .where(UsageCharge.card_id == card_id, UsageCharge.status == "applied")
        .order_by(UsageCharge.charged_at.desc(), UsageCharge.id.desc())
        .limit(recent)
    ).all()
    return CardSummary(
        card.id, card.last4, card.status, card.balance_fen, list(orders), list(usage), card.msisdn, card.low_balance_fen
    )


def reminder_settings(card_id: int) -> tuple[str | None, int | None]:
    """A card's phone number and low-balance threshold (fen), each None when not set."""
    row = db.session.execute(select(Card.msisdn, Card.low_balance_fen).where(Card.id == card_id)).one()
    return row[0], row[1]


def set_low_balance(card_id: int, threshold_fen: int | None, locale: str) -> str | None:
    """Remind the card's owner when a debit takes the balance below ``threshold_fen`` (None: never
    again), in ``locale``; the card's phone number, where reminders go (None: none can go)."""
    db.session.execute(
        update(Card)
        .where(Card.id == card_id)
        .values(low_balance_fen=threshold_fen, low_balance_locale=locale if threshold_fen else None)
    )
    return reminder_settings(card_id)[0]


def issue_cards(actor: Actor, cards: list[tuple[str, str, int]], phones: Mapping[str, str] | None = None) -> None:
    """Add cards (normalised number, password, opening balance in fen) as an operator does, with
    one audit row for the batch: how many, and the opening money they bring into the books.
    ``phones``: normalised phone numbers by card number, for the cards that have one (the audit
    row counts them, and never names one)."""
    phones = phones or {}
    for number, password, balance_fen in cards:
        create_card(number, password, balance_fen, phones.get(number))
    masked = ", ".join(mask(number) for number, _, _ in cards[:5]) + (" ..." if len(cards) > 5 else "")
    with_phone = sum(1 for number, _, _ in cards if number in phones)
    record(
        actor,
        "cards.issue",
        f"{len(cards)} card(s): {masked}",
        after=f"opening_balance={yuan(sum(fen for _, _, fen in cards))}"
        + (f"; with_phone={with_phone}" if with_phone else ""),
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


@dataclass(frozen=True)
class Forgotten:
    """What forgetting a card's personal data removed, counted for the audit row."""

    orders: int  # orders whose e-mail address was deleted
    deleted: int  # messages not sent yet, deleted
    anonymised: int  # messages sent or given up, their recipient replaced
    # Invoice requests whose e-mail address was replaced (the column is NOT NULL: FORGOTTEN).
    # Not in the audit row, whose summary other tools read as it is.
    invoices: int = 0


def forget(actor: Actor, number: str) -> Forgotten | None:
    """Delete a card's personal data in the caller's transaction: its phone number and reminder
    settings, the e-mail addresses given with its orders and their invoice requests (those keep
    FORGOTTEN), and its messages' recipients (those not sent yet are deleted, the others keep only
    FORGOTTEN, and their errors are masked). None when there is no such card.

    A message a worker holds right now may still go out once (delivery is at least once): its
    outcome is recorded only on a row still pending, so none comes back."""
    card_id = db.session.scalar(select(Card.id).where(Card.number_digest == number_digest(number)))
    if card_id is None:
        return None
    db.session.execute(
        update(Card)
        .where(Card.id == card_id)
        .values(msisdn=None, low_balance_fen=None, low_balance_locale=None, low_balance_sent_on=None)
    )
    orders = rowcount(
        db.session.execute(
            update(RechargeOrder)
            .where(RechargeOrder.card_id == card_id, RechargeOrder.email.is_not(None))
            .values(email=None)
        )
    )
    invoices = rowcount(
        db.session.execute(
            update(InvoiceRequest)
            .where(
                InvoiceRequest.order_id.in_(select(RechargeOrder.id).where(RechargeOrder.card_id == card_id)),
                InvoiceRequest.email != FORGOTTEN,
            )
            .values(email=FORGOTTEN)
        )
    )
    mine = OutboxMessage.card_id == card_id
    deleted = rowcount(db.session.execute(delete(OutboxMessage).where(mine, OutboxMessage.status == "pending")))
    anonymised = rowcount(
        db.session.execute(
            update(OutboxMessage)
            .where(mine, OutboxMessage.status != "pending", OutboxMessage.recipient != FORGOTTEN)
            .values(recipient=FORGOTTEN)
        )
    )
    # A provider's error may name the recipient ("mailbox x@y unavailable"): kept, masked.
    errors = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.last_error).where(mine, OutboxMessage.last_error.is_not(None))
    )
    for message_id, error in list(errors):
        masked = mask_personal(error or "")
        if masked != error:
            db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(last_error=masked))
    done = Forgotten(orders, deleted, anonymised, invoices)
    record(
        actor,
        "card.forget",
        f"card {mask(number)}",
        after=f"emails_deleted={orders}; messages_deleted={deleted}; recipients_deleted={anonymised}",
    )
    return done
