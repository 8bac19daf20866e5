"""The ledger: idempotent credits, a cached balance that always equals the ledger sum, rows the
database itself keeps append-only, and `ledger.verify(session)` / `flask ledger verify` catching tampering.

On a plain SQLAlchemy Session (tests/billing/conftest.py): no application, no app context."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from heyon_site.billing import ledger
from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.ledger import balance_of, credit
from heyon_site.billing.recharge import apply_event, start_recharge
from heyon_site.models import Card, LedgerEntry
from tests.billing.kit import write
from tests.kit import CARD, flask_cli

OPENING_FEN = 1000
LAST4 = CARD[-4:]


def new_card(s: Session, number: str = CARD, balance_fen: int = 0) -> int:
    """A card row as the site writes one (the ledger never reads its digest or password), its opening
    balance booked through the ledger as cards.services.create_card books it."""
    def create() -> int:
        card = Card(number_digest=hashlib.sha256(number.encode()).hexdigest(), last4=number[-4:],
                    password_hash="not-checked-here", balance_fen=0)
        s.add(card)
        s.flush()
        if balance_fen:
            credit(s, card.id, balance_fen, "opening", key=f"card:{card.id}:opening")
        return card.id

    return write(s, create)


@pytest.fixture
def card_id(session: Session) -> int:
    """A card opened with 10.00: one ledger entry, balance 1000 fen."""
    return new_card(session, balance_fen=OPENING_FEN)



def raw_sql(s: Session, statement: str, **params: Any) -> None:
    """Run SQL as a person at a database prompt would, bypassing the application, and commit."""
    s.execute(text(statement), params)
    s.commit()


def book(s: Session, card_id: int, amount_fen: int, key: str, kind: str = "adjustment", order_id: int | None = None) -> bool:
    return write(s, lambda: credit(s, card_id, amount_fen, kind, key=key, order_id=order_id))


def balance(s: Session, card_id: int) -> int:
    """The cached balance, as a fresh transaction reads it."""
    s.rollback()
    return s.scalar(select(Card.balance_fen).where(Card.id == card_id)) or 0


def entry_count(s: Session) -> int:
    s.rollback()
    return s.scalar(select(func.count()).select_from(LedgerEntry)) or 0


@dataclass(frozen=True)
class NewOrder:
    id: int
    order_no: str


def new_order(s: Session, card_id: int, amount_fen: int = 5000) -> NewOrder:
    """A pending sandbox order; only its keys, since the row is meant to be changed behind the ORM."""
    def create() -> NewOrder:
        order = start_recharge(s, card_id, amount_fen, "sandbox", "en")
        return NewOrder(order.id, order.order_no)

    return write(s, create)


def violations(s: Session) -> list[str]:
    s.rollback()
    return ledger.verify(s).violations


# ------------------------------------------------------------------ credit(session)


def test_credit_with_the_same_key_twice_writes_one_entry(session: Session, card_id: int) -> None:
    assert book(session, card_id, 250, key="test:refund:1") is True
    assert book(session, card_id, 250, key="test:refund:1") is False
    assert book(session, card_id, 999, key="test:refund:1") is False  # the key decides, not the amount
    assert session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.key == "test:refund:1")) == 1
    assert balance(session, card_id) == OPENING_FEN + 250
    assert ledger.verify(session).ok


def test_the_same_key_twice_in_one_transaction_writes_one_entry(session: Session, card_id: int) -> None:
    assert write(session, lambda: [credit(session, card_id, 100, "adjustment", key="test:twice") for _ in range(2)]) == [True, False]
    assert balance(session, card_id) == OPENING_FEN + 100


@pytest.mark.parametrize("amount", [0, 1.0, 0.5, float("nan"), True, False, Decimal("100"), "100", None])
def test_credit_refuses_anything_but_a_non_zero_int(session: Session, card_id: int, amount: object) -> None:
    with pytest.raises(ValueError, match="non-zero int of fen"):
        book(session, card_id, amount, key="test:bad")  # type: ignore[arg-type]
    assert entry_count(session) == 1
    assert balance(session, card_id) == OPENING_FEN


def test_cached_balance_always_equals_the_ledger_sum(session: Session, card_id: int) -> None:
    expected = OPENING_FEN
    for i, amount in enumerate([1, 99, -100, 10**10, -(10**10), 12345, -1]):
        book(session, card_id, amount, key=f"test:step:{i}")
        expected += amount
        session.rollback()
        assert balance(session, card_id) == balance_of(session, card_id) == expected
    assert ledger.verify(session).ok


def test_a_credited_order_with_a_bonus_books_both_entries(session: Session, card_id: int) -> None:
    order = new_order(session, card_id)
    raw_sql(session, "UPDATE recharge_orders SET bonus_fen = 500 WHERE id = :id", id=order.id)
    event = ProviderEvent(provider="sandbox", order_no=order.order_no, txn_id="SBXBONUS", kind="paid", amount_fen=5000)
    assert write(session, lambda: apply_event(session, event)) == "credited"
    assert balance(session, card_id) == OPENING_FEN + 5000 + 500
    session.rollback()
    kinds = session.scalars(select(LedgerEntry.kind).where(LedgerEntry.order_id == order.id).order_by(LedgerEntry.id))
    assert list(kinds) == ["recharge", "bonus"]
    verdict = ledger.verify(session)
    assert verdict.ok and verdict.credited_orders == 1


# ------------------------------------------------------------------ the database enforces it


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount_fen = amount_fen + 100",
    "UPDATE ledger_entries SET kind = 'adjustment'",
    "UPDATE ledger_entries SET amount_fen = amount_fen",  # even a no-op update
    "DELETE FROM ledger_entries WHERE id = (SELECT min(id) FROM ledger_entries)",
    "DELETE FROM ledger_entries",
])
def test_ledger_rows_cannot_be_changed_or_deleted(session: Session, card_id: int, statement: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement))
    session.rollback()
    assert entry_count(session) == 1
    assert balance_of(session, card_id) == OPENING_FEN


def test_ledger_cannot_be_truncated_on_postgresql(database: str, session: Session, card_id: int) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("SQLite has no TRUNCATE; its DELETE is covered above")
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text("TRUNCATE ledger_entries CASCADE"))
    session.rollback()
    assert entry_count(session) == 1


def test_an_overdraft_is_refused_by_the_check_constraint(session: Session, card_id: int) -> None:
    with pytest.raises(IntegrityError, match="(?i)check|balance_not_negative"):
        book(session, card_id, -(OPENING_FEN + 1), key="test:overdraft")
    assert entry_count(session) == 1  # the entry went with the refused balance update
    assert balance(session, card_id) == OPENING_FEN
    book(session, card_id, -OPENING_FEN, key="test:to-zero")  # down to exactly zero is fine
    assert balance(session, card_id) == 0


def test_a_negative_balance_cannot_be_written_directly(session: Session, card_id: int) -> None:
    with pytest.raises(IntegrityError):
        raw_sql(session, "UPDATE cards SET balance_fen = -1 WHERE id = :id", id=card_id)
    session.rollback()
    assert balance(session, card_id) == OPENING_FEN


# ------------------------------------------------------------------ verify() finds tampering


def test_verify_summarises_healthy_books(session: Session, card_id: int) -> None:
    verdict = ledger.verify(session)
    assert (verdict.ok, verdict.cards, verdict.entries, verdict.total_fen, verdict.credited_orders) == (True, 1, 1, OPENING_FEN, 0)


def test_verify_reports_a_tampered_cached_balance(session: Session, card_id: int) -> None:
    raw_sql(session, "UPDATE cards SET balance_fen = balance_fen + 1 WHERE id = :id", id=card_id)
    assert violations(session) == [f"card *{LAST4}: cached balance {OPENING_FEN + 1} fen != ledger sum {OPENING_FEN} fen"]


def test_verify_reports_a_card_with_a_balance_and_no_entries(session: Session) -> None:
    card_id = new_card(session, "8600000000009999")
    raw_sql(session, "UPDATE cards SET balance_fen = 700 WHERE id = :id", id=card_id)
    assert violations(session) == ["card *9999: cached balance 700 fen != ledger sum 0 fen"]


def test_verify_reports_an_order_credited_without_entries_or_payment(session: Session, card_id: int) -> None:
    order = new_order(session, card_id)
    raw_sql(session, "UPDATE recharge_orders SET status = 'credited' WHERE id = :id", id=order.id)
    found = violations(session)
    assert len(found) == 2, found
    assert found[0] == f"order {order.order_no}: credited but has no ledger entries"
    assert found[1] == f"order {order.order_no}: credited without a matching verified payment"


def test_verify_reports_an_order_credited_with_entries_but_no_payment(session: Session, card_id: int) -> None:
    order = new_order(session, card_id)
    book(session, card_id, 5000, kind="recharge", key=f"order:{order.id}:recharge", order_id=order.id)
    raw_sql(session, "UPDATE recharge_orders SET status = 'credited' WHERE id = :id", id=order.id)
    assert violations(session) == [f"order {order.order_no}: credited without a matching verified payment"]


def test_verify_reports_a_payment_of_another_amount(session: Session, card_id: int) -> None:
    order = new_order(session, card_id)
    event = ProviderEvent(provider="sandbox", order_no=order.order_no, txn_id="SBX1", kind="paid", amount_fen=5000)
    assert write(session, lambda: apply_event(session, event)) == "credited"
    raw_sql(session, "UPDATE payment_events SET amount_fen = 1 WHERE order_id = :id", id=order.id)
    found = violations(session)
    assert found[0] == f"order {order.order_no}: credited without a matching verified payment"
    # And the day's payments no longer add up to what was credited (summed from the order).
    assert len(found) == 2 and found[1].startswith("sandbox ") and found[1].endswith(
        ": payments 1 fen != credited, refunded and waiting 5000 fen"), found


def test_verify_reports_entries_on_an_order_that_is_not_credited(session: Session, card_id: int) -> None:
    order = new_order(session, card_id)
    book(session, card_id, 5000, kind="recharge", key=f"order:{order.id}:recharge", order_id=order.id)
    assert violations(session) == [f"order {order.order_no}: status pending but has ledger entries"]


def test_verify_reports_recharge_entries_without_an_order(session: Session, card_id: int) -> None:
    book(session, card_id, 5000, kind="recharge", key="test:orphan")
    assert violations(session) == ["1 recharge/bonus entries belong to no order"]


# ------------------------------------------------------------------ the real `flask ledger verify`


def test_cli_verify_passes_with_a_one_line_summary(database: str, session: Session, card_id: int) -> None:
    result = flask_cli(database, "ledger", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ledger ok: 1 cards, 1 entries, 0 credited orders, total 10.00"]


def test_cli_verify_fails_naming_the_violation(database: str, session: Session, card_id: int) -> None:
    raw_sql(session, "UPDATE cards SET balance_fen = balance_fen + 1 WHERE id = :id", id=card_id)
    result = flask_cli(database, "ledger", "verify")
    assert result.returncode == 1
    assert f"VIOLATION card *{LAST4}: cached balance 1001 fen != ledger sum 1000 fen" in result.stderr
    assert result.stdout.strip() == "ledger FAILS: 1 violation(s)"
    assert CARD not in result.stdout + result.stderr  # never the full card number
