"""Payments that credited nothing: two people decide to credit or refund; a rule refunds what can
never be credited; refunds end as the provider says. On the sandbox (whose gateway keeps its own
book and refunds like a provider), on both databases, the books proving after every test."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.billing import ledger, refunds
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, PaymentEvent, Refund, Resolution, utcnow
from heyon_site.payments import refunds as pushing
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import RefundRequest, RefundResult

from tests.kit import balance, cli, csrf_from, deliver_outbox, gateway_path, make_card, new_client, notification, order, start_order
from tests.staff.kit import add_staff, audit_rows, sign_in

pytestmark = pytest.mark.usefixtures("books_balance")


def paid_on_gateway(app: Flask, buyer: FlaskClient) -> str:
    """An order paid on the sandbox gateway (its book has the payment) and credited."""
    number = start_order(buyer)
    page = buyer.get(gateway_path(number)).get_data(as_text=True)
    buyer.post(gateway_path(number), data={"csrf_token": csrf_from(page), "outcome": "pay"})
    assert deliver_outbox(app, buyer) == ["success"]
    assert order(number).status == "credited"
    return number


def second_payment(client: FlaskClient, number: str) -> PaymentEvent:
    """A second, different payment of a credited order: held, never credited."""
    assert client.post("/pay/notify/sandbox", data=notification(number, "100.00")).get_data() == b"success"
    db.session.rollback()
    event = db.session.scalar(select(PaymentEvent).where(PaymentEvent.outcome == "paid_again"))
    assert event is not None
    return event


def mismatched_payment(client: FlaskClient) -> tuple[str, PaymentEvent]:
    """A payment of another amount than the order's: the order goes to review."""
    number = start_order(client)
    assert client.post("/pay/notify/sandbox", data=notification(number, "90.00")).get_data() == b"success"
    db.session.rollback()
    event = db.session.scalar(select(PaymentEvent).where(PaymentEvent.outcome == "amount_mismatch"))
    assert event is not None and order(number).status == "review"
    return number, event


def staff(app: Flask, username: str, role: str) -> tuple[FlaskClient, int]:
    staff_id = add_staff(username, role)
    client = new_client(app)
    assert sign_in(client, username).status_code in (303, 204)
    return client, staff_id


def propose(client: FlaskClient, number: str, event_id: int, action: str, reason: str = "customer asked") -> int:
    page = client.get(f"/staff/orders/{number}?lang=en").get_data(as_text=True)
    r = client.post(f"/staff/orders/{number}/payments/{event_id}/propose",
                    data={"csrf_token": csrf_from(page), "action": action, "reason": reason})
    return r.status_code


def proposal_id(number: str) -> int:
    db.session.rollback()
    found = db.session.scalar(select(Resolution).where(Resolution.state == "proposed"))
    assert found is not None
    return found.id


def decide(client: FlaskClient, number: str, resolution_id: int, decision: str) -> int:
    page = client.get(f"/staff/orders/{number}?lang=en").get_data(as_text=True)
    return client.post(f"/staff/orders/{number}/resolutions/{resolution_id}",
                       data={"csrf_token": csrf_from(page), "decision": decision}).status_code


# ------------------------------------------------------------------ two people


def test_a_credit_needs_a_second_person_and_moves_money_once(app: Flask, client: FlaskClient) -> None:
    make_card()
    number, event = mismatched_payment(client)
    cashier, _ = staff(app, "cashier-a", "cashier")
    admin, _ = staff(app, "admin-b", "admin")
    assert propose(cashier, number, event.id, "credit") == 303
    assert balance() == 0  # nothing moves on a proposal
    page = cashier.get(f"/staff/orders/{number}?lang=en").get_data(as_text=True)
    assert "Another admin approves or rejects this proposal." in page and ">Approve<" not in page
    assert decide(cashier, number, proposal_id(number), "approve") == 403  # a cashier cannot approve
    assert decide(admin, number, proposal_id(number), "approve") == 303
    assert balance() == 9000  # the amount actually paid
    db.session.rollback()
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.key == ledger.credit_key(event.id)))
    assert entry is not None and entry.kind == "adjustment" and entry.amount_fen == 9000
    assert [r.action for r in audit_rows() if r.action.startswith("payment.")] == ["payment.propose", "payment.approve"]
    assert refunds.state_of(db.session, event.id) == "credited"
    page = client.get(f"/orders/{order(number).token}?lang=en").get_data(as_text=True)
    assert "Our staff credited your payment of ¥90.00 to card **** " in page and "needs a check" not in page
    # Decided once: a second proposal is refused with a message, and nothing moves.
    assert propose(cashier, number, event.id, "credit") == 409
    assert balance() == 9000


def test_the_proposer_cannot_approve_their_own_proposal(app: Flask, client: FlaskClient) -> None:
    make_card()
    number, event = mismatched_payment(client)
    admin, admin_id = staff(app, "admin-a", "admin")
    assert propose(admin, number, event.id, "refund") == 303
    page = admin.get(f"/staff/orders/{number}?lang=en").get_data(as_text=True)
    assert ">Approve<" not in page  # not offered to the proposer
    assert decide(admin, number, proposal_id(number), "approve") == 409  # and refused when forced
    with pytest.raises(refunds.RefundError):
        in_write_transaction(lambda: refunds.decide(db.session, proposal_id(number), admin_id, True))
    db.session.rollback()
    assert db.session.scalar(select(Refund)) is None


def test_the_database_refuses_one_person_deciding_their_own(app: Flask, client: FlaskClient) -> None:
    """The CHECK holds even if the code were wrong: decided_by never equals proposed_by."""
    make_card()
    number, event = mismatched_payment(client)
    admin_id = add_staff("admin-solo", "admin")
    made = in_write_transaction(lambda: refunds.propose(db.session, event.id, "credit", "r", admin_id))
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError
    with pytest.raises(IntegrityError):
        in_write_transaction(lambda: db.session.execute(
            update(Resolution).where(Resolution.id == made).values(state="approved", decided_by=admin_id, decided_at=utcnow())))


def test_a_rejected_proposal_leaves_the_payment_waiting(app: Flask, client: FlaskClient) -> None:
    make_card()
    number, event = mismatched_payment(client)
    cashier, _ = staff(app, "cashier-r", "cashier")
    admin, _ = staff(app, "admin-r", "admin")
    assert propose(cashier, number, event.id, "refund") == 303
    assert decide(admin, number, proposal_id(number), "reject") == 303
    db.session.rollback()
    assert refunds.state_of(db.session, event.id) == "waiting"
    assert db.session.scalar(select(Refund)) is None
    assert [u.event_id for u in refunds.uncredited(db.session)] == [event.id]


# ------------------------------------------------------------------ refunds


def test_an_approved_refund_goes_to_the_provider_and_succeeds(app: Flask, client: FlaskClient) -> None:
    make_card()
    buyer = new_client(app)
    number = paid_on_gateway(app, buyer)
    event = second_payment(client, number)
    cashier, _ = staff(app, "cashier-f", "cashier")
    admin, _ = staff(app, "admin-f", "admin")
    assert propose(cashier, number, event.id, "refund") == 303
    assert decide(admin, number, proposal_id(number), "approve") == 303
    db.session.rollback()
    refund = db.session.scalar(select(Refund))
    assert refund is not None and refund.status == "succeeded" and refund.amount_fen == 10000
    assert refund.origin == "resolution" and re.fullmatch(r"RF\d{12}", refund.refund_no)
    # The provider's notice of it arrives: recorded, tied to our refund, no alarm for anyone.
    assert deliver_outbox(app, client) == ["success"]
    db.session.rollback()
    notice = db.session.scalar(select(PaymentEvent).where(PaymentEvent.kind == "refunded"))
    assert notice is not None and notice.refund_id == refund.id and notice.outcome == "refund_succeeded"
    assert order(number).attention is None
    assert balance() == 10000  # the first payment's credit stays: credited money is never refunded
    page = buyer.get(f"/orders/{order(number).token}?lang=en").get_data(as_text=True)
    assert "the second payment of ¥100.00 has been returned to you" in page
    result = cli(app.test_cli_runner(), "refunds", "list")
    assert result.output.strip() == f"{number} sandbox 100.00 succeeded"


def test_a_refund_notice_before_our_call_returns_is_applied_once(app: Flask, client: FlaskClient) -> None:
    """The provider notifies while our refund request is still waiting for its answer: the notice
    finishes the refund, and the late answer changes nothing."""
    make_card()
    buyer = new_client(app)
    number = paid_on_gateway(app, buyer)
    event = second_payment(client, number)
    refund_id = in_write_transaction(lambda: refunds.auto_refund(db.session, event.id).id)
    provider = get_provider("sandbox")
    assert provider is not None
    original = provider.refund

    def notice_first(request: RefundRequest) -> RefundResult:
        answer = original(request)
        assert deliver_outbox(app, client) == ["success"]  # the notice lands before we record
        return answer

    provider.refund = notice_first  # type: ignore[method-assign]
    try:
        assert pushing.push(refund_id, get_provider) == "succeeded"
    finally:
        provider.refund = original  # type: ignore[method-assign]
    db.session.rollback()
    refund = db.session.get(Refund, refund_id)
    assert refund is not None and refund.status == "succeeded" and refund.detail == "notified"  # finished by the notice, not the late answer
    assert db.session.scalar(select(PaymentEvent).where(PaymentEvent.kind == "refunded")).refund_id == refund_id


def test_a_refund_that_fails_at_the_provider_waits_for_a_person_again(app: Flask, client: FlaskClient) -> None:
    make_card()
    number, event = mismatched_payment(client)  # never paid on the gateway: its book has nothing
    cashier, _ = staff(app, "cashier-x", "cashier")
    admin, _ = staff(app, "admin-x", "admin")
    assert propose(cashier, number, event.id, "refund") == 303
    assert decide(admin, number, proposal_id(number), "approve") == 303
    db.session.rollback()
    refund = db.session.scalar(select(Refund))
    assert refund is not None and refund.status == "failed" and refund.detail == "TRADE_NOT_PAID"
    assert refunds.state_of(db.session, event.id) == "refund_failed"
    page = cashier.get(f"/staff/orders/{number}?lang=en").get_data(as_text=True)
    assert "The refund failed: decide again" in page and ">Propose<" in page
    assert cli(app.test_cli_runner(), "refunds", "list", "--status", "failed").output.strip() == f"{number} sandbox 90.00 failed"


def test_a_refund_with_no_answer_is_asked_again_with_the_same_number(app: Flask, client: FlaskClient) -> None:
    make_card()
    buyer = new_client(app)
    number = paid_on_gateway(app, buyer)
    event = second_payment(client, number)
    refund_id = in_write_transaction(lambda: refunds.auto_refund(db.session, event.id).id)
    provider = get_provider("sandbox")
    original, asked = provider.refund, []

    def down(request: RefundRequest) -> RefundResult:
        from heyon_site.providers.base import ProviderUnavailable
        asked.append(request.refund_no)
        raise ProviderUnavailable("timeout")

    provider.refund = down  # type: ignore[method-assign]
    try:
        assert pushing.push(refund_id, get_provider) == "unavailable"
    finally:
        provider.refund = original  # type: ignore[method-assign]
    db.session.rollback()
    refund = db.session.get(Refund, refund_id)
    assert refund.status == "pending" and refund.attempts == 1 and refund.next_attempt_at > utcnow()
    # Not due yet; due later, the same number goes again and succeeds once.
    assert pushing.run(get_provider, timedelta(minutes=30))["succeeded"] == 0
    later = utcnow() + timedelta(minutes=5)
    assert pushing.run(get_provider, timedelta(minutes=30), now=later)["succeeded"] == 1
    db.session.rollback()
    assert asked == [refund.refund_no] and db.session.get(Refund, refund_id).status == "succeeded"


# ------------------------------------------------------------------ by rule


def test_reconcile_refunds_a_second_payment_once_the_wait_has_passed(app: Flask, client: FlaskClient) -> None:
    make_card()
    buyer = new_client(app)
    number = paid_on_gateway(app, buyer)
    event = second_payment(client, number)
    runner = app.test_cli_runner()
    first = cli(runner, "payments", "reconcile")  # HEYON_AUTO_REFUND_MINUTES (30) not passed
    assert "refunds:" not in first.output
    app.config["HEYON_AUTO_REFUND_MINUTES"] = 0
    second = cli(runner, "payments", "reconcile")
    assert "refunds: asked 1, succeeded 1" in second.output
    third = cli(runner, "payments", "reconcile")
    assert "refunds:" not in third.output  # once
    db.session.rollback()
    refund = db.session.scalar(select(Refund))
    assert refund.origin == "auto" and refund.payment_event_id == event.id and refund.status == "succeeded"


def test_an_amount_mismatch_is_never_refunded_by_rule(app: Flask, client: FlaskClient) -> None:
    """A person decides those: the right card may be credited what was paid."""
    make_card()
    mismatched_payment(client)
    app.config["HEYON_AUTO_REFUND_MINUTES"] = 0
    assert "refunds:" not in cli(app.test_cli_runner(), "payments", "reconcile").output
    db.session.rollback()
    assert db.session.scalar(select(Refund)) is None


def test_a_person_can_intervene_before_the_rule(app: Flask, client: FlaskClient) -> None:
    make_card()
    buyer = new_client(app)
    number = paid_on_gateway(app, buyer)
    event = second_payment(client, number)
    cashier, _ = staff(app, "cashier-i", "cashier")
    assert propose(cashier, number, event.id, "credit", "a gift for a loyal customer") == 303
    app.config["HEYON_AUTO_REFUND_MINUTES"] = 0
    assert "refunds:" not in cli(app.test_cli_runner(), "payments", "reconcile").output


def test_verify_finds_a_payment_both_credited_and_refunded(app: Flask, client: FlaskClient) -> None:
    """The proof can fail: a refund row forced beside a decided credit is named."""
    make_card()
    number, event = mismatched_payment(client)
    a, b = add_staff("p-1", "cashier"), add_staff("p-2", "admin")
    made = in_write_transaction(lambda: refunds.propose(db.session, event.id, "credit", "r", a))
    in_write_transaction(lambda: refunds.decide(db.session, made, b, True))
    in_write_transaction(lambda: db.session.add(Refund(
        refund_no="RFFORGED", payment_event_id=event.id, order_id=event.order_id, provider="sandbox",
        amount_fen=9000, status="succeeded", origin="auto", created_at=utcnow(), updated_at=utcnow())))
    verdict = ledger.verify(db.session)
    assert any("was credited by decision too" in v for v in verdict.violations), verdict.violations
    in_write_transaction(lambda: db.session.execute(Refund.__table__.delete()))
