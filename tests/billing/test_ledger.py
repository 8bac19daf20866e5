"""The ledger: idempotent credits, a cached balance that always equals the ledger sum, rows the
database itself keeps append-only, and `ledger.verify(db.session)` / `flask ledger verify` catching tampering."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from heyon_site.billing import ledger
from heyon_site.billing.ledger import balance_of, credit
from heyon_site.billing.recharge import apply_event, start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry
from heyon_site.billing.events import ProviderEvent

from tests.kit import flask_cli
from tests.kit import CARD, balance, make_card

OPENING_FEN = 1000
LAST4 = CARD[-4:]


@pytest.fixture
def card_id(app: Flask) -> int:
    """A card opened with 10.00: one ledger entry, balance 1000 fen."""
    return make_card(balance_fen=OPENING_FEN)


# ------------------------------------------------------------------ helpers (could move to kit.py)


def raw_sql(statement: str, **params: Any) -> None:
    """Run SQL as a person at a database prompt would, bypassing the application, and commit."""
    db.session.execute(text(statement), params)
    db.session.commit()


def book(card_id: int, amount_fen: int, key: str, kind: str = "adjustment", order_id: int | None = None) -> bool:
    return in_write_transaction(lambda: credit(db.session, card_id, amount_fen, kind, key=key, order_id=order_id))


def entry_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(LedgerEntry)) or 0


@dataclass(frozen=True)
class NewOrder:
    id: int
    order_no: str


def new_order(card_id: int, amount_fen: int = 5000) -> NewOrder:
    """A pending sandbox order; only its keys, since the row is meant to be changed behind the ORM."""
    def create() -> NewOrder:
        order = start_recharge(db.session, card_id, amount_fen, "sandbox", "en")
        return NewOrder(order.id, order.order_no)

    return in_write_transaction(create)


def violations() -> list[str]:
    db.session.rollback()
    return ledger.verify(db.session).violations


# ------------------------------------------------------------------ credit(db.session)


def test_credit_with_the_same_key_twice_writes_one_entry(card_id: int) -> None:
    assert book(card_id, 250, key="test:refund:1") is True
    assert book(card_id, 250, key="test:refund:1") is False
    assert book(card_id, 999, key="test:refund:1") is False  # the key decides, not the amount
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.key == "test:refund:1")) == 1
    assert balance() == OPENING_FEN + 250
    assert ledger.verify(db.session).ok


def test_the_same_key_twice_in_one_transaction_writes_one_entry(card_id: int) -> None:
    assert in_write_transaction(lambda: [credit(db.session, card_id, 100, "adjustment", key="test:twice") for _ in range(2)]) == [True, False]
    assert balance() == OPENING_FEN + 100


@pytest.mark.parametrize("amount", [0, 1.0, 0.5, float("nan"), True, False, Decimal("100"), "100", None])
def test_credit_refuses_anything_but_a_non_zero_int(card_id: int, amount: object) -> None:
    with pytest.raises(ValueError, match="non-zero int of fen"):
        book(card_id, amount, key="test:bad")  # type: ignore[arg-type]
    assert entry_count() == 1
    assert balance() == OPENING_FEN


def test_cached_balance_always_equals_the_ledger_sum(card_id: int) -> None:
    expected = OPENING_FEN
    for i, amount in enumerate([1, 99, -100, 10**10, -(10**10), 12345, -1]):
        book(card_id, amount, key=f"test:step:{i}")
        expected += amount
        db.session.rollback()
        assert balance() == balance_of(db.session, card_id) == expected
    assert ledger.verify(db.session).ok


def test_a_credited_order_with_a_bonus_books_both_entries(card_id: int) -> None:
    order = new_order(card_id)
    raw_sql("UPDATE recharge_orders SET bonus_fen = 500 WHERE id = :id", id=order.id)
    event = ProviderEvent(provider="sandbox", order_no=order.order_no, txn_id="SBXBONUS", kind="paid", amount_fen=5000)
    assert in_write_transaction(lambda: apply_event(db.session, event)) == "credited"
    assert balance() == OPENING_FEN + 5000 + 500
    db.session.rollback()
    kinds = db.session.scalars(select(LedgerEntry.kind).where(LedgerEntry.order_id == order.id).order_by(LedgerEntry.id))
    assert list(kinds) == ["recharge", "bonus"]
    verdict = ledger.verify(db.session)
    assert verdict.ok and verdict.credited_orders == 1


# ------------------------------------------------------------------ the database enforces it


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount_fen = amount_fen + 100",
    "UPDATE ledger_entries SET kind = 'adjustment'",
    "UPDATE ledger_entries SET amount_fen = amount_fen",  # even a no-op update
    "DELETE FROM ledger_entries WHERE id = (SELECT min(id) FROM ledger_entries)",
    "DELETE FROM ledger_entries",
])
def test_ledger_rows_cannot_be_changed_or_deleted(card_id: int, statement: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text(statement))
    db.session.rollback()
    assert entry_count() == 1
    assert balance_of(db.session, card_id) == OPENING_FEN


def test_ledger_cannot_be_truncated_on_postgresql(database: str, card_id: int) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("SQLite has no TRUNCATE; its DELETE is covered above")
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text("TRUNCATE ledger_entries CASCADE"))
    db.session.rollback()
    assert entry_count() == 1


def test_an_overdraft_is_refused_by_the_check_constraint(card_id: int) -> None:
    with pytest.raises(IntegrityError, match="(?i)check|balance_not_negative"):
        book(card_id, -(OPENING_FEN + 1), key="test:overdraft")
    assert entry_count() == 1  # the entry went with the refused balance update
    assert balance() == OPENING_FEN
    book(card_id, -OPENING_FEN, key="test:to-zero")  # down to exactly zero is fine
    assert balance() == 0


def test_a_negative_balance_cannot_be_written_directly(card_id: int) -> None:
    with pytest.raises(IntegrityError):
        raw_sql("UPDATE cards SET balance_fen = -1 WHERE id = :id", id=card_id)
    db.session.rollback()
    assert balance() == OPENING_FEN


# ------------------------------------------------------------------ verify() finds tampering


def test_verify_summarises_healthy_books(card_id: int) -> None:
    verdict = ledger.verify(db.session)
    assert (verdict.ok, verdict.cards, verdict.entries, verdict.total_fen, verdict.credited_orders) == (True, 1, 1, OPENING_FEN, 0)


def test_verify_reports_a_tampered_cached_balance(card_id: int) -> None:
    raw_sql("UPDATE cards SET balance_fen = balance_fen + 1 WHERE id = :id", id=card_id)
    assert violations() == [f"card *{LAST4}: cached balance {OPENING_FEN + 1} fen != ledger sum {OPENING_FEN} fen"]


def test_verify_reports_a_card_with_a_balance_and_no_entries(app: Flask) -> None:
    card_id = make_card("8600000000009999")
    raw_sql("UPDATE cards SET balance_fen = 700 WHERE id = :id", id=card_id)
    assert violations() == ["card *9999: cached balance 700 fen != ledger sum 0 fen"]


def test_verify_reports_an_order_credited_without_entries_or_payment(card_id: int) -> None:
    order = new_order(card_id)
    raw_sql("UPDATE recharge_orders SET status = 'credited' WHERE id = :id", id=order.id)
    found = violations()
    assert len(found) == 2, found
    assert found[0] == f"order {order.order_no}: credited but has no ledger entries"
    assert found[1] == f"order {order.order_no}: credited without a matching verified payment"


def test_verify_reports_an_order_credited_with_entries_but_no_payment(card_id: int) -> None:
    order = new_order(card_id)
    book(card_id, 5000, kind="recharge", key=f"order:{order.id}:recharge", order_id=order.id)
    raw_sql("UPDATE recharge_orders SET status = 'credited' WHERE id = :id", id=order.id)
    assert violations() == [f"order {order.order_no}: credited without a matching verified payment"]


def test_verify_reports_a_payment_of_another_amount(card_id: int) -> None:
    order = new_order(card_id)
    event = ProviderEvent(provider="sandbox", order_no=order.order_no, txn_id="SBX1", kind="paid", amount_fen=5000)
    assert in_write_transaction(lambda: apply_event(db.session, event)) == "credited"
    raw_sql("UPDATE payment_events SET amount_fen = 1 WHERE order_id = :id", id=order.id)
    assert violations() == [f"order {order.order_no}: credited without a matching verified payment"]


def test_verify_reports_entries_on_an_order_that_is_not_credited(card_id: int) -> None:
    order = new_order(card_id)
    book(card_id, 5000, kind="recharge", key=f"order:{order.id}:recharge", order_id=order.id)
    assert violations() == [f"order {order.order_no}: status pending but has ledger entries"]


def test_verify_reports_recharge_entries_without_an_order(card_id: int) -> None:
    book(card_id, 5000, kind="recharge", key="test:orphan")
    assert violations() == ["1 recharge/bonus entries belong to no order"]


# ------------------------------------------------------------------ the real `flask ledger verify`


def test_cli_verify_passes_with_a_one_line_summary(database: str, card_id: int) -> None:
    result = flask_cli(database, "ledger", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ledger ok: 1 cards, 1 entries, 0 credited orders, total 10.00"]


def test_cli_verify_fails_naming_the_violation(database: str, card_id: int) -> None:
    raw_sql("UPDATE cards SET balance_fen = balance_fen + 1 WHERE id = :id", id=card_id)
    result = flask_cli(database, "ledger", "verify")
    assert result.returncode == 1
    assert f"VIOLATION card *{LAST4}: cached balance 1001 fen != ledger sum 1000 fen" in result.stderr
    assert result.stdout.strip() == "ledger FAILS: 1 violation(s)"
    assert CARD not in result.stdout + result.stderr  # never the full card number
