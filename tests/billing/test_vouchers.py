"""Vouchers in the money core: a batch's PINs exist only in what it hands out, a voucher pays once
(even when two customers race for it), every refusal looks the same, and ``ledger.verify`` proves
each used voucher credited one order of its value and can fail when it did not."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.orm import Session

from heyon_site.billing import ledger, vouchers
from heyon_site.billing.vouchers import VoucherError, normalise_pin, parse_serial, serial_text
from heyon_site.models import Card, LedgerEntry, OutboxMessage, PaymentEvent, RechargeOrder, Voucher, VoucherBatch

KEY = b"k" * 32
TODAY = date(2026, 12, 4)
NOW = datetime(2026, 12, 4, 2, 0)


def card(s: Session, last4: str = "1234") -> int:
    made = Card(number_digest=f"digest-{last4}", last4=last4, password_hash="h", status="active", balance_fen=0)
    s.add(made)
    s.flush()
    return made.id


def batch(s: Session, count: int = 3, value_fen: int = 5000, expires: date = TODAY, active: bool = True,
          above_fen: int = 10**9) -> tuple[int, list[tuple[str, str]]]:
    """A committed batch and its (serial, PIN) pairs; active unless told otherwise."""
    got: list[tuple[str, str]] = []
    made = vouchers.create_batch(s, KEY, count, value_fen, expires, "test", "alice", got.extend, TODAY, NOW)
    if active:
        assert vouchers.activate(s, made.id, "alice", None, above_fen, NOW) == "active"
    s.commit()
    return made.id, got


def redeem(s: Session, card_id: int, pin: str, today: date = TODAY) -> RechargeOrder | None:
    order = vouchers.redeem(s, KEY, card_id, pin, "en", today, NOW)
    s.commit()
    return order


def test_a_batch_hands_out_each_pin_once_and_keeps_only_digests(session: Session) -> None:
    batch_id, got = batch(session, count=2_500, active=False)  # two chunks and a bit
    assert [serial for serial, _ in got] == [serial_text(batch_id, n) for n in range(1, 2_501)]
    pins = [pin for _, pin in got]
    assert len(set(pins)) == 2_500 and all(len(p) == 16 and p.isdigit() for p in pins)
    stored = session.scalars(select(Voucher.pin_digest).where(Voucher.batch_id == batch_id)).all()
    assert len(stored) == 2_500 and not set(pins) & set(stored)
    assert vouchers.pin_digest(KEY, pins[0]) in stored and vouchers.pin_digest(b"other", pins[0]) not in stored
    dump = " ".join(str(v) for row in session.execute(text("SELECT * FROM vouchers")) for v in row)
    assert not any(p in dump for p in pins[:50])


@pytest.mark.parametrize(("count", "value", "expires"), [(0, 5000, TODAY), (100_001, 5000, TODAY),
                                                          (1, 0, TODAY), (1, 5000, TODAY - timedelta(days=1))])
def test_a_batch_out_of_bounds_is_refused(session: Session, count: int, value: int, expires: date) -> None:
    with pytest.raises(VoucherError):
        vouchers.create_batch(session, KEY, count, value, expires, "", "alice", lambda rows: None, TODAY, NOW)


def test_a_voucher_credits_its_value_once_through_the_order_path(session: Session) -> None:
    card_id = card(session)
    _, got = batch(session)
    order = redeem(session, card_id, got[0][1])
    assert order is not None and (order.status, order.provider, order.amount_fen, order.pay_fen) == (
        "credited", "voucher", 5000, 5000)
    assert session.get(Card, card_id).balance_fen == 5000  # type: ignore[union-attr]
    event = session.scalars(select(PaymentEvent).where(PaymentEvent.order_id == order.id)).one()
    assert (event.provider, event.provider_txn_id, event.kind, event.outcome) == ("voucher", got[0][0], "paid",
                                                                                  "credited")
    used = session.scalars(select(Voucher).where(Voucher.order_id == order.id)).one()
    assert (used.status, used.card_id) == ("used", card_id)
    # The same card sending it again lands on the same order; nothing more is credited.
    again = redeem(session, card_id, " ".join(got[0][1][i:i + 4] for i in range(0, 16, 4)))
    assert again is not None and again.id == order.id
    assert session.get(Card, card_id).balance_fen == 5000  # type: ignore[union-attr]
    assert ledger.verify(session).ok


def test_every_reason_a_voucher_pays_nothing_answers_the_same(session: Session) -> None:
    card_id, other = card(session), card(session, "9999")
    inactive_id, inactive = batch(session, active=False)
    voided_id, voided = batch(session)
    _, expired = batch(session, expires=TODAY)
    _, live = batch(session)
    vouchers.void_batch(session, voided_id, NOW)
    vouchers.void_voucher(session, *parse_serial(live[1][0]) or (0, 0), now=NOW)
    session.commit()
    assert redeem(session, other, live[0][1]) is not None  # used, by another card
    refusals = {
        "no such PIN": "0000000000000000",
        "not a PIN": "12345",
        "not sold yet": inactive[0][1],
        "batch voided": voided[0][1],
        "voucher voided": live[1][1],
        "expired": expired[0][1],
        "used by another card": live[0][1],
    }
    answers = {why: redeem(session, card_id, pin, TODAY + timedelta(days=1) if why == "expired" else TODAY)
               for why, pin in refusals.items()}
    assert answers == dict.fromkeys(refusals)
    assert session.get(Card, card_id).balance_fen == 0  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(RechargeOrder).where(RechargeOrder.card_id == card_id)) == 0
    assert redeem(session, card_id, expired[1][1]) is not None  # the last day still counts
    assert ledger.verify(session).ok


def test_two_customers_racing_for_one_pin_credit_once(database: str) -> None:
    """Eight sessions, each its own connection, take the same PIN at the same instant: on
    PostgreSQL truly at once (the row lock makes the losers re-read a used voucher), on SQLite
    one writer at a time. One order is credited; the others get nothing and leave no order."""
    engine = create_engine(database)
    try:
        with Session(engine) as s:
            cards = [card(s, f"{1000 + i}") for i in range(8)]
            _, got = batch(s, count=1)
        pin = got[0][1]
        barrier = threading.Barrier(len(cards))
        results: list[object] = [None] * len(cards)

        def take(i: int) -> None:
            try:
                with Session(engine) as s:
                    barrier.wait(timeout=30)
                    s.connection(execution_options={"heyon_write": True})  # as database.begin_write does
                    order = vouchers.redeem(s, KEY, cards[i], pin, "en", TODAY, NOW)
                    results[i] = None if order is None else order.card_id
                    s.commit()
            except BaseException as exc:  # handed to the main thread
                results[i] = exc

        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(cards))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not [r for r in results if isinstance(r, BaseException)], results
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(RechargeOrder)) == 1
            assert s.scalar(select(func.sum(LedgerEntry.amount_fen))) == 5000
            assert s.scalar(select(Card.balance_fen).where(Card.id == winners[0])) == 5000
            assert ledger.verify(s).ok
    finally:
        engine.dispose()


def test_activation_above_the_threshold_takes_two_admins(session: Session) -> None:
    session.execute(text("INSERT INTO staff_users (id, username, password_hash, role, active, session_version, "
                         "created_at, totp_required) VALUES (1, 'alice', 'h', 'admin', :t, 1, :now, :f), "
                         "(2, 'bob', 'h', 'admin', :t, 1, :now, :f)"), {"t": True, "f": False, "now": NOW})
    batch_id, _ = batch(session, count=3, value_fen=5000, active=False)
    assert vouchers.activate(session, batch_id, "alice", 1, 10000, NOW) == "requested"
    with pytest.raises(VoucherError, match="Another admin"):
        vouchers.activate(session, batch_id, "alice", 1, 10000, NOW)
    with pytest.raises(VoucherError, match="second admin"):
        vouchers.activate(session, batch_id, "cli", None, 10000, NOW)  # the command line never approves
    assert vouchers.activate(session, batch_id, "bob", 2, 10000, NOW) == "active"
    session.commit()
    found = session.get(VoucherBatch, batch_id)
    assert found is not None and (found.state, found.activation_requested_by, found.activated_by) == (
        "active", "alice", "bob")
    assert set(session.scalars(select(Voucher.status).where(Voucher.batch_id == batch_id))) == {"active"}
    with pytest.raises(VoucherError):
        vouchers.activate(session, batch_id, "bob", 2, 10000, NOW)  # once
    # The database holds the rule too: the same account cannot be both.
    session.rollback()
    with pytest.raises(Exception, match="two_people"):
        session.execute(update(VoucherBatch).where(VoucherBatch.id == batch_id).values(activated_by_id=1,
                                                                                       activation_requested_by_id=1))
        session.flush()
    session.rollback()
    small, _ = batch(session, count=2, value_fen=5000, active=False)
    assert vouchers.activate(session, small, "cli", None, 10000, NOW) == "active"  # 100 yuan: one person


def test_outstanding_value_per_batch_is_what_can_still_be_used(session: Session) -> None:
    card_id = card(session)
    first, got = batch(session, count=4, value_fen=5000)
    second, _ = batch(session, count=2, value_fen=10000, expires=TODAY)
    redeem(session, card_id, got[0][1])
    vouchers.void_voucher(session, *parse_serial(got[1][0]) or (0, 0), now=NOW)
    session.commit()
    report = {o.batch_id: o for o in vouchers.outstanding(session, TODAY)}
    assert (report[first].usable, report[first].used, report[first].voided, report[first].outstanding_fen) == (
        2, 1, 1, 10000)
    assert report[second].outstanding_fen == 20000
    later = {o.batch_id: o for o in vouchers.outstanding(session, TODAY + timedelta(days=1))}
    assert (later[second].usable, later[second].expired, later[second].outstanding_fen) == (0, 2, 0)


def test_verify_names_a_voucher_that_credited_wrongly(session: Session) -> None:
    card_id = card(session)
    _, got = batch(session, count=2)
    order = redeem(session, card_id, got[0][1])
    assert order is not None and ledger.verify(session).ok
    # A voucher marked used for an order it did not pay, behind the code's back.
    second = session.scalars(select(Voucher).where(Voucher.status == "active")).one()
    other_order = RechargeOrder(order_no="2612040000000001", token="t" * 24, card_id=card_id, provider="voucher",
                                status="pending", amount_fen=5000, pay_fen=5000, bonus_fen=0, locale="en")
    session.add(other_order)
    session.flush()
    session.execute(update(Voucher).where(Voucher.id == second.id).values(status="used", card_id=card_id,
                                                                          order_id=other_order.id))
    session.commit()
    problems = [p for p in ledger.verify(session).violations if "voucher" in p]
    assert any(serial_text(second.batch_id, second.serial) in p and "pending" in p for p in problems), problems


def test_pins_and_serials_are_read_as_typed() -> None:
    assert normalise_pin("１２３４ ５６７８-9012 3456") == "1234567890123456"
    assert normalise_pin("123456789012345") is None and normalise_pin("12345678901234567") is None
    assert normalise_pin("١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦") is None  # digits of another script are not ours
    assert parse_serial("0012-000034") == (12, 34) == parse_serial("0012000034") == parse_serial("12-34")
    assert parse_serial("0000-000001") is None and parse_serial("abc") is None


def test_a_credited_voucher_writes_its_message_with_the_credit(session: Session) -> None:
    card_id = card(session)
    session.execute(update(Card).where(Card.id == card_id).values(msisdn="+8613800138000"))
    _, got = batch(session, count=1)
    order = redeem(session, card_id, got[0][1])
    assert order is not None
    assert session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.card_id == card_id)) == 1
