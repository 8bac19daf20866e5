"""Money returned at a provider after the order was credited, whichever provider says it.

Alipay (a full refund closes the trade, a partial one notifies TRADE_SUCCESS with refund_fee),
WeChat Pay (REFUND.* notifications), Stripe (charge.refunded) and the sandbox (TRADE_CLOSED
after success): each genuine notice is recorded once, answered as the provider expects, puts
the order on the staff dashboard and writes an ALARM line; nothing is debited, and the books
still prove (``books_balance``). Forgeries are refused as any other.
"""
from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from heyon_site.billing import ledger
from heyon_site.billing.recharge import MONEY_RETURNED
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, RechargeOrder, utcnow
from heyon_site.payments.reconcile import candidate, check_one
from heyon_site.billing.events import ProviderEvent
from heyon_site.staff.dashboard import returned_orders

from tests import kit
from tests.kit import SANDBOX_SECRET, site_for_tests
from tests.provider_kits import alipay, stripe, wechat
from tests.staff.kit import signed_in

pytestmark = pytest.mark.usefixtures("books_balance")

Message = tuple[bytes, dict[str, str]]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NOWHERE = "http://127.0.0.1:9"  # no API is asked on the notification path


def sandbox_message(order_no: str, txn: str, secret: str = SANDBOX_SECRET, **fields: str) -> Message:
    return urlencode(kit.notification(order_no, "100.00", trade_no=txn, secret=secret, **fields)).encode(), FORM


def alipay_refund(order_no: str, txn: str, fee: str = "100.00", status: str = "TRADE_CLOSED", biz: str | None = "RF1",
                  **tamper: Any) -> Message:
    """Alipay's notice after a refund: refund_fee (total so far), gmt_refund, out_biz_no; a full
    refund closes the trade (and brings gmt_close), a partial one keeps it TRADE_SUCCESS."""
    now = datetime.now(UTC)
    extra = {"gmt_close": now} if status == "TRADE_CLOSED" else {}
    return alipay.KIT.notification(order_no, kit.ORDER_FEN, txn, trade_status=status, refund_fee=fee,
                                   gmt_refund=now, out_biz_no=biz, **extra, **tamper)


@dataclass(frozen=True)
class Provider:
    """How one provider pays, refunds and is forged, and how it wants to be answered."""

    name: str
    config: dict[str, str]
    received: tuple[int, str]
    refused_status: int
    new_txn: Callable[[], str]
    pay: Callable[[str, str], Message]
    refund: Callable[[str, str], Message]  # all of it, after the payment
    forged_refund: Callable[[str, str], Message]
    refund_kind: str  # as recorded: the sandbox can only say "closed"


PROVIDERS = {
    "alipay": Provider(
        "alipay", alipay.KIT.config(NOWHERE), (200, "success"), 400, alipay.new_trade_no,
        lambda no, txn: alipay.KIT.notification(no, kit.ORDER_FEN, txn),
        alipay_refund,
        lambda no, txn: alipay_refund(no, txn, key="other"),
        "refunded"),
    "wechat": Provider(
        "wechat", wechat.KIT.config(NOWHERE), (204, ""), 400, wechat.new_transaction_id,
        lambda no, txn: wechat.KIT.notification(no, kit.ORDER_FEN, txn),
        lambda no, txn: wechat.KIT.refund_notification(no, txn, kit.ORDER_FEN, kit.ORDER_FEN),
        lambda no, txn: wechat.KIT.refund_notification(no, txn, kit.ORDER_FEN, kit.ORDER_FEN, other_key=True),
        "refunded"),
    "stripe": Provider(
        "stripe", stripe.KIT.config(NOWHERE), (200, '{"received": true}'), 400,
        lambda: stripe.stripe_id("cs_test_", 58),
        lambda no, txn: stripe.KIT.notification(no, kit.ORDER_FEN, txn),
        lambda no, txn: stripe.KIT.refund_notification(no, kit.ORDER_FEN, charge_id="ch_" + txn[-24:]),
        lambda no, txn: stripe.KIT.refund_notification(no, kit.ORDER_FEN, charge_id="ch_" + txn[-24:],
                                                       other_secret=True),
        "refunded"),
    "sandbox": Provider(
        "sandbox", {}, (200, "success"), 400, lambda: "SBX" + uuid.uuid4().hex[:20].upper(),
        sandbox_message,
        lambda no, txn: sandbox_message(no, txn, trade_status="TRADE_CLOSED"),
        lambda no, txn: sandbox_message(no, txn, secret="not-the-sandbox-secret", trade_status="TRADE_CLOSED"),
        "closed"),
}
# The ones whose notices say "refund" in so many words, so a refund can come before the payment.
EXPLICIT = ["alipay", "wechat", "stripe"]


def only(name: str) -> pytest.MarkDecorator:
    """Run a test with one provider's site only (on every database)."""
    return pytest.mark.parametrize("provider", [PROVIDERS[name]], ids=[name])


@pytest.fixture(params=list(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> Provider:
    return PROVIDERS[request.param]


@pytest.fixture
def app(database: str, provider: Provider) -> Iterator[Flask]:
    with site_for_tests(database, HEYON_PROVIDERS=(provider.name,), **provider.config) as app:
        yield app


@pytest.fixture
def alarms(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    with caplog.at_level(logging.WARNING, logger="heyon_site.ops.alarms"):
        yield lambda: [r.getMessage() for r in caplog.records if "ALARM" in r.getMessage()]


def post(client: FlaskClient, provider: Provider, message: Message) -> tuple[int, str]:
    return kit.post_notification(f"/pay/notify/{provider.name}", client, message)


def paid_order(client: FlaskClient, provider: Provider) -> tuple[str, str]:
    """A credited order of 100.00 on a card that held 5.00: its number and payment's txn id."""
    order_no, txn = kit.provider_order(provider.name), provider.new_txn()
    assert post(client, provider, provider.pay(order_no, txn)) == provider.received
    assert kit.order(order_no).status == "credited"
    return order_no, txn


def events(order_no: str) -> list[tuple[str, str, int]]:
    db.session.rollback()
    return [(e.kind, e.outcome, e.amount_fen) for e in db.session.scalars(
        select(PaymentEvent).where(PaymentEvent.order_id == kit.order(order_no).id).order_by(PaymentEvent.id))]


def assert_books_unchanged(order_no: str) -> None:
    """The card keeps what it was credited: nothing is debited by itself."""
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1


# ------------------------------------------------------------------ every provider


def test_money_returned_after_crediting_is_recorded_flagged_alarmed_and_acknowledged(
        app: Flask, client: FlaskClient, provider: Provider, alarms: Callable[[], list[str]]) -> None:
    order_no, txn = paid_order(client, provider)
    refund = provider.refund(order_no, txn)

    assert post(client, provider, refund) == provider.received  # so the provider stops sending
    assert post(client, provider, refund) == provider.received  # its retry: a duplicate

    assert [c.outcome for c in kit.callbacks()] == ["credited", "refunded", "duplicate"]
    assert events(order_no) == [("paid", "credited", kit.ORDER_FEN), (provider.refund_kind, "refunded", kit.ORDER_FEN)]
    [line] = alarms()  # one line per refund, none for the repeat
    assert order_no in line and provider.name in line and kit.CARD not in line and kit.CARD[-4:] not in line
    found = kit.order(order_no)
    assert (found.status, found.attention) == ("credited", MONEY_RETURNED) and found.attention_at is not None
    assert_books_unchanged(order_no)
    assert ledger.verify(db.session).ok  # a case for a person, not a broken book

    cashier = signed_in(app, "cashier")
    board = cashier.get("/staff/?lang=en").get_data(as_text=True)
    section = board.split('id="waiting-attention"', 1)[1]
    assert "Money returned at the provider (1)</h3>" in section and f"/staff/orders/{order_no}" in section
    assert "The card was not debited" in section
    page = cashier.get(f"/staff/orders/{order_no}?lang=en").get_data(as_text=True)
    assert "Money returned at the provider" in page and "a person decides what to do" in page
    refund_txn = db.session.scalar(select(PaymentEvent.provider_txn_id).where(PaymentEvent.outcome == "refunded"))
    assert f"<td>{refund_txn}</td>" in page  # to find the refund at the provider
    assert "款项已在支付渠道退回 (1)" in cashier.get("/staff/?lang=zh").get_data(as_text=True)


def test_a_forged_refund_is_refused_and_flags_nothing(client: FlaskClient, provider: Provider,
                                                       alarms: Callable[[], list[str]]) -> None:
    order_no, txn = paid_order(client, provider)
    status, _ = post(client, provider, provider.forged_refund(order_no, txn))
    assert status == provider.refused_status  # not acknowledged: nothing of it is trusted
    found = kit.order(order_no)
    assert (found.status, found.attention, found.attention_at) == ("credited", None, None)
    assert_books_unchanged(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["credited", "bad_signature"]
    assert events(order_no) == [("paid", "credited", kit.ORDER_FEN)] and alarms() == []
    assert returned_orders(utcnow()).total == 0


# The sandbox's close of a pending order is a close, not a refund: the others say "refund".
@pytest.mark.parametrize("provider", [PROVIDERS[name] for name in EXPLICIT], ids=EXPLICIT)
def test_a_refund_before_the_payment_is_known_keeps_the_order_from_ever_being_credited(
        client: FlaskClient, provider: Provider, alarms: Callable[[], list[str]]) -> None:
    order_no, txn = kit.provider_order(provider.name), provider.new_txn()
    assert post(client, provider, provider.refund(order_no, txn)) == provider.received
    found = kit.order(order_no)
    assert (found.status, found.status_reason, found.attention) == ("review", MONEY_RETURNED, MONEY_RETURNED)
    # The payment's own notice, late (it was lost, or retried after the refund): never credited.
    assert post(client, provider, provider.pay(order_no, txn)) == provider.received
    assert kit.order(order_no).status == "review"
    kit.assert_not_credited(order_no)
    assert [outcome for _, outcome, _ in events(order_no)] == ["refunded", "review"]
    assert len(alarms()) == 1


def test_the_books_name_a_refund_nobody_was_asked_to_look_at(client: FlaskClient, provider: Provider) -> None:
    """``ledger verify`` is green with the flag, and red without it: the check can fail."""
    order_no, txn = paid_order(client, provider)
    post(client, provider, provider.refund(order_no, txn))
    assert ledger.verify(db.session).ok

    def set_flag(value: str | None) -> None:
        in_write_transaction(lambda: db.session.execute(
            update(RechargeOrder).where(RechargeOrder.order_no == order_no)
            .values(attention=value, attention_at=None if value is None else utcnow())))

    set_flag(None)
    assert ledger.verify(db.session).violations == [
        f"order {order_no}: the provider reports money returned, but the order is not flagged for staff"]
    set_flag(MONEY_RETURNED)
    assert ledger.verify(db.session).ok


# ------------------------------------------------------------------ Alipay


@only("alipay")
def test_alipay_partial_then_full_refund_are_two_refunds(client: FlaskClient, provider: Provider,
                                                        alarms: Callable[[], list[str]]) -> None:
    order_no, txn = paid_order(client, provider)
    partial = alipay_refund(order_no, txn, fee="30.00", status="TRADE_SUCCESS", biz="RF1")
    full = alipay_refund(order_no, txn, fee="100.00", status="TRADE_CLOSED", biz="RF2")
    for message in (partial, partial, full, full):
        assert post(client, provider, message) == provider.received
    assert events(order_no) == [("paid", "credited", 10000), ("refunded", "refunded", 3000),
                                ("refunded", "refunded", 10000)]
    db.session.rollback()
    assert set(db.session.scalars(select(PaymentEvent.provider_txn_id).where(PaymentEvent.kind == "refunded"))) \
        == {f"{txn}:RF1", f"{txn}:RF2"}
    assert [c.outcome for c in kit.callbacks()] == ["credited", "refunded", "duplicate", "refunded", "duplicate"]
    assert_books_unchanged(order_no)
    assert len(alarms()) == 2 and kit.order(order_no).attention == MONEY_RETURNED


@only("alipay")
def test_alipay_refund_without_out_biz_no_is_named_by_its_running_total(client: FlaskClient, provider: Provider) -> None:
    order_no, txn = paid_order(client, provider)
    for fee in ("10.00", "10.00", "25.50"):
        post(client, provider, alipay_refund(order_no, txn, fee=fee, status="TRADE_SUCCESS", biz=None))
    assert [c.outcome for c in kit.callbacks()] == ["credited", "refunded", "duplicate", "refunded"]
    assert [amount for kind, _, amount in events(order_no) if kind == "refunded"] == [1000, 2550]


@only("alipay")
def test_alipay_close_without_refund_fields_after_credit_is_money_returned_too(
        client: FlaskClient, provider: Provider, alarms: Callable[[], list[str]]) -> None:
    # Alipay closes a paid trade only by refunding all of it; billing, not the adapter, knows
    # the order was credited.
    order_no, txn = paid_order(client, provider)
    closed = alipay.KIT.notification(order_no, kit.ORDER_FEN, txn, trade_status="TRADE_CLOSED")
    assert post(client, provider, closed) == provider.received
    assert events(order_no)[-1] == ("closed", "refunded", kit.ORDER_FEN)
    assert kit.order(order_no).attention == MONEY_RETURNED and len(alarms()) == 1


@only("alipay")
def test_alipay_close_of_an_unpaid_trade_still_fails_the_order(client: FlaskClient, provider: Provider,
                                                               alarms: Callable[[], list[str]]) -> None:
    order_no = kit.provider_order("alipay")
    closed = alipay.KIT.notification(order_no, kit.ORDER_FEN, alipay.new_trade_no(), trade_status="TRADE_CLOSED")
    assert post(client, provider, closed) == provider.received
    found = kit.order(order_no)
    assert (found.status, found.status_reason, found.attention) == ("failed", "closed_by_provider", None)
    assert alarms() == []


@only("alipay")
def test_alipay_payment_notice_with_a_zero_refund_fee_is_a_payment(client: FlaskClient, provider: Provider) -> None:
    order_no, txn = kit.provider_order("alipay"), alipay.new_trade_no()
    assert post(client, provider, alipay.KIT.notification(order_no, kit.ORDER_FEN, txn, refund_fee="0.00")) \
        == provider.received
    assert kit.order(order_no).status == "credited" and kit.order(order_no).attention is None


@only("alipay")
def test_alipay_refund_fields_added_after_signing_are_refused(client: FlaskClient, provider: Provider) -> None:
    order_no, txn = paid_order(client, provider)
    message = alipay.KIT.notification(order_no, kit.ORDER_FEN, txn,
                                      after_signing={"refund_fee": "100.00", "out_biz_no": "RF9"})
    assert post(client, provider, message) == (400, "fail")
    assert kit.order(order_no).attention is None


# ------------------------------------------------------------------ WeChat Pay


@only("wechat")
def test_wechat_abnormal_then_success_of_one_refund_are_both_kept(client: FlaskClient, provider: Provider,
                                                                  alarms: Callable[[], list[str]]) -> None:
    # ABNORMAL: sent back, bounced off a closed card; the merchant re-sends it by hand at WeChat.
    order_no, txn = paid_order(client, provider)
    refund_id = wechat.new_refund_id()
    for status in ("ABNORMAL", "ABNORMAL", "SUCCESS"):
        message = wechat.KIT.refund_notification(order_no, txn, 4000, kit.ORDER_FEN, status=status, refund_id=refund_id)
        assert post(client, provider, message) == provider.received
    db.session.rollback()
    assert list(db.session.scalars(select(PaymentEvent.provider_txn_id).where(PaymentEvent.kind == "refunded")
                                   .order_by(PaymentEvent.id))) == [f"{refund_id}:ABNORMAL", f"{refund_id}:SUCCESS"]
    assert [c.outcome for c in kit.callbacks()] == ["credited", "refunded", "duplicate", "refunded"]
    assert_books_unchanged(order_no)
    assert len(alarms()) == 2


@only("wechat")
def test_wechat_refund_closed_without_paying_back_flags_nothing(client: FlaskClient, provider: Provider,
                                                                alarms: Callable[[], list[str]]) -> None:
    order_no, txn = paid_order(client, provider)
    closed = wechat.KIT.refund_notification(order_no, txn, kit.ORDER_FEN, kit.ORDER_FEN, status="CLOSED")
    assert post(client, provider, closed) == provider.received  # verified, and nothing to do
    assert kit.order(order_no).attention is None and alarms() == []
    [_, kept] = kit.callbacks()
    # A "refund_failed" event now (no longer NothingToDo): applied to the order, and ignored there,
    # as it closes no refund this site asked for; no money-returned event is recorded.
    assert (kept.outcome, kept.order_no) == ("ignored", order_no)
    assert events(order_no) == [("paid", "credited", kit.ORDER_FEN)]


WECHAT_REFUSED = {
    "another merchant's refund": ({"mchid": wechat.FOREIGN_MCHID}, "mchid is not ours"),
    "a status that is not the event's": ({"event_type": "REFUND.SUCCESS", "status": "CLOSED"}, "refund_status"),
    "an unknown refund status": ({"status": "PROCESSING"}, "PROCESSING"),
}


@only("wechat")
@pytest.mark.parametrize(("tamper", "reason"), WECHAT_REFUSED.values(), ids=WECHAT_REFUSED.keys())
def test_wechat_signed_refunds_that_do_not_add_up_are_malformed(client: FlaskClient, provider: Provider,
                                                                tamper: dict[str, str], reason: str) -> None:
    order_no, txn = paid_order(client, provider)
    message = wechat.KIT.refund_notification(order_no, txn, kit.ORDER_FEN, kit.ORDER_FEN, **tamper)  # type: ignore[arg-type]
    status, _ = post(client, provider, message)
    assert status == 400  # WeChat sends it again; the callback log keeps why
    [_, kept] = kit.callbacks()
    assert kept.outcome == "malformed" and reason in (kept.detail or "")
    assert kit.order(order_no).attention is None


# ------------------------------------------------------------------ Stripe


@only("stripe")
def test_stripe_partial_then_full_refund_of_a_charge(client: FlaskClient, provider: Provider,
                                                     alarms: Callable[[], list[str]]) -> None:
    order_no, _ = paid_order(client, provider)
    charge = stripe.stripe_id("ch_", 24)
    for refunded in (2500, 2500, 10000):
        message = stripe.KIT.refund_notification(order_no, refunded, charge_id=charge)
        assert post(client, provider, message) == provider.received
    assert [(kind, amount) for kind, _, amount in events(order_no)] == [("paid", 10000), ("refunded", 2500),
                                                                         ("refunded", 10000)]
    assert [c.outcome for c in kit.callbacks()] == ["credited", "refunded", "duplicate", "refunded"]
    assert len(alarms()) == 2


@only("stripe")
def test_stripe_refund_of_a_charge_this_site_did_not_make_is_ignored(client: FlaskClient, provider: Provider) -> None:
    order_no, _ = paid_order(client, provider)
    message = stripe.KIT.refund_notification(order_no, 10000, charge_id=stripe.stripe_id("ch_", 24), metadata={})
    assert post(client, provider, message) == provider.received  # else Stripe retries for days
    assert [c.outcome for c in kit.callbacks()] == ["credited", "ignored"]
    assert kit.order(order_no).attention is None


@only("stripe")
def test_stripe_refund_in_another_currency_is_malformed(client: FlaskClient, provider: Provider) -> None:
    order_no, _ = paid_order(client, provider)
    message = stripe.KIT.refund_notification(order_no, 1380, charge_id=stripe.stripe_id("ch_", 24), currency="usd")
    assert post(client, provider, message) == (400, '{"received": false}')
    assert kit.order(order_no).attention is None


# ------------------------------------------------------------------ the way there


@only("sandbox")
def test_reconciliation_that_finds_a_close_of_an_order_credited_meanwhile_flags_it(
        app: Flask, client: FlaskClient, provider: Provider, database: str,
        alarms: Callable[[], list[str]]) -> None:
    """The provider is asked outside the write lock on SQLite: the order it said "closed" about
    may have been credited by a notification in between. On PostgreSQL the order is claimed for
    the whole check, so the credited order is not touched (the close's own notice flags it)."""
    order_no, txn = kit.provider_order("sandbox"), PROVIDERS["sandbox"].new_txn()
    asked = candidate(order_no)
    assert asked is not None
    assert post(client, provider, sandbox_message(order_no, txn)) == provider.received  # credited meanwhile

    class SaysClosed:
        name, pay_timeout = "sandbox", timedelta(minutes=15)

        def query(self, _: str) -> ProviderEvent:
            return ProviderEvent("sandbox", order_no, txn, "closed", kit.ORDER_FEN)

    outcome = check_one(asked, lambda _: SaysClosed(), expire_after=None)  # type: ignore[arg-type, return-value]
    if database.startswith("sqlite"):
        assert outcome == "refunded" and kit.order(order_no).attention == MONEY_RETURNED
        assert len(alarms()) == 1 and order_no in alarms()[0]
    else:
        assert outcome == "not_pending" and kit.order(order_no).attention is None and alarms() == []
    assert_books_unchanged(order_no)


@only("sandbox")
def test_the_dashboard_lists_the_longest_flagged_first(app: Flask, client: FlaskClient, provider: Provider) -> None:
    # Three credited orders, each refunded at the provider a day apart (oldest last here).
    flagged = []
    for i, card in enumerate(("8600000000000101", "8600000000000119", "8600000000000127")):
        order_no = kit.provider_order("sandbox", card=card)
        txn = PROVIDERS["sandbox"].new_txn()
        post(client, provider, sandbox_message(order_no, txn))
        post(client, provider, sandbox_message(order_no, txn, trade_status="TRADE_CLOSED"))
        when = utcnow() - timedelta(days=i)
        in_write_transaction(lambda order_no=order_no, when=when: db.session.execute(  # type: ignore[misc]
            update(RechargeOrder).where(RechargeOrder.order_no == order_no).values(attention_at=when)))
        flagged.append(order_no)
    now = utcnow()
    listed = returned_orders(now, limit=2)
    assert listed.total == 3 and [o.order_no for o in listed.orders] == [flagged[2], flagged[1]]
    assert listed.orders[0].reason == "credited" and listed.orders[0].waited >= timedelta(days=2)
    assert Counter(o.last4 for o in listed.orders) == Counter({"0127": 1, "0119": 1})
