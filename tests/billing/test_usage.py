"""Debits from the network's usage: each charge once, never below zero, in the same ledger; the
low-balance message once a day; and the proof that can fail (``ledger.verify`` on debits)."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from heyon_site.billing import ledger
from heyon_site.billing.usage import Charge, apply_charge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, LedgerEntry, OutboxMessage, UsageCharge, utcnow

from tests.kit import balance, make_card

pytestmark = pytest.mark.usefixtures("books_balance")
TODAY = date(2026, 12, 3)


def charge(card_id: int | None, fen: int, charge_id: str = "c1") -> Charge:
    return Charge(charge_id, card_id, fen, utcnow() - timedelta(minutes=1), "voice", "call to +86 10 1234")


def apply(card_id: int | None, fen: int, charge_id: str = "c1", client: str = "net", today: date = TODAY) -> tuple[str, str | None]:
    result = in_write_transaction(lambda: apply_charge(db.session, client, charge(card_id, fen, charge_id), today))
    return result.status, result.reason


def test_a_charge_debits_once_whoever_sends_it_again(app: Flask) -> None:
    card_id = make_card(balance_fen=1000)
    assert apply(card_id, 120) == ("applied", None)
    assert apply(card_id, 120) == ("duplicate", None)
    assert apply(card_id, 120, client="other") == ("applied", None)  # ids are per client
    assert balance() == 1000 - 240
    db.session.rollback()
    assert db.session.scalar(select(LedgerEntry.kind).where(LedgerEntry.key == "usage:net:c1")) == "usage"


def test_a_charge_over_the_balance_is_refused_alone_and_never_later_applied(app: Flask) -> None:
    card_id = make_card(balance_fen=100)
    assert apply(card_id, 101) == ("refused", "insufficient_balance")
    assert apply(card_id, 100, "c2") == ("applied", None)
    assert balance() == 0
    assert apply(card_id, 101) == ("duplicate", "refused before")  # the same charge is not tried again
    assert apply(None, 5, "c3") == ("refused", "unknown_card")


def test_the_low_balance_message_goes_once_a_day_when_a_debit_crosses_the_threshold(app: Flask) -> None:
    card_id = make_card(balance_fen=1000)
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(
        msisdn="+8613800138000", low_balance_fen=500, low_balance_locale="en")))
    assert apply(card_id, 400, "a")[0] == "applied"  # 600: above
    assert apply(card_id, 200, "b")[0] == "applied"  # 400: crossed
    assert apply(card_id, 100, "c")[0] == "applied"  # 300: below already, and the same day
    db.session.rollback()
    sent = db.session.scalars(select(OutboxMessage)).all()
    assert [(m.channel, m.recipient, m.template, m.locale) for m in sent] == [
        ("sms", "+8613800138000", "low_balance", "en")]
    assert '"balance": "4.00"' in sent[0].params
    # The next day a debit that crosses again (after a recharge) writes one more.
    in_write_transaction(lambda: ledger.credit(db.session, card_id, 1000, "adjustment", key="top-up"))
    assert apply(card_id, 900, "d", today=TODAY + timedelta(days=1))[0] == "applied"
    db.session.rollback()
    assert len(db.session.scalars(select(OutboxMessage)).all()) == 2


def test_verify_names_a_debit_without_its_charge_and_a_charge_without_its_debit(app: Flask) -> None:
    card_id = make_card(balance_fen=1000)
    assert apply(card_id, 120)[0] == "applied"
    in_write_transaction(lambda: ledger.credit(db.session, card_id, -50, "usage", key="usage:net:forged"))
    in_write_transaction(lambda: db.session.execute(update(UsageCharge).where(UsageCharge.charge_id == "c1").values(
        amount_fen=121)))
    found = ledger.verify(db.session).violations
    assert "ledger entry usage:net:forged: a usage debit without its charge" in found
    assert any(v.startswith("usage:net:c1: applied, but the ledger has (-120") for v in found), found
    # Put back what the test forged, so the books prove again at its end.
    in_write_transaction(lambda: db.session.execute(update(UsageCharge).where(UsageCharge.charge_id == "c1").values(
        amount_fen=120)))
    in_write_transaction(lambda: db.session.add(UsageCharge(
        client="net", charge_id="forged", card_id=card_id, amount_fen=50, kind="other", charged_at=datetime(2026, 1, 1),
        status="applied")))
    assert ledger.verify(db.session).ok
