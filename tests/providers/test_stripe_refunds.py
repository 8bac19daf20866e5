"""Stripe refunds, refund notifications and the daily statement, against the fake of
``tests/provider_kits/stripe_refunds.py`` on 127.0.0.1 (no test reaches Stripe).

The adapter is built directly with the kit's keys: refunds and statements read nothing from the
site's database, so these tests need none.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from heyon_site.providers import stripe_checkout
from heyon_site.providers.base import (
    InvalidSignature,
    MalformedStatement,
    NothingToDo,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    StatementLine,
    StatementNotReady,
)
from heyon_site.providers.stripe_checkout import StripeCheckoutProvider
from heyon_site.providers.stripe_statement import BEIJING, day_bounds

from tests.fakes import serving
from tests.provider_kits.stripe import keys, stripe_id
from tests.provider_kits.stripe_refunds import (
    BALANCE_TRANSACTIONS,
    REFUNDS,
    StripeRefundsFake,
    charge_refunded,
    fake_api,
    refund_event,
)

ORDER = "2601010000000001"
PAID_FEN = 10000


@pytest.fixture
def fake() -> Iterator[StripeRefundsFake]:
    api = fake_api()
    with serving(api):
        yield api


@pytest.fixture
def stripe(fake: StripeRefundsFake) -> StripeCheckoutProvider:
    return StripeCheckoutProvider(keys().secret_key, keys().webhook_secret, fake.base_url)


def paid(fake: StripeRefundsFake, order_no: str = ORDER, amount_fen: int = PAID_FEN,
         refund_no: str = "RF000000000101", refund_fen: int | None = None) -> RefundRequest:
    """A paid order and the request to refund it (all of it unless ``refund_fen``); the
    payment's txn_id is its Checkout Session id, as the paid event recorded it."""
    session = fake.pay(order_no, amount_fen)
    return RefundRequest(order_no, refund_no, amount_fen if refund_fen is None else refund_fen, amount_fen,
                         session["id"])


def charge_of(fake: StripeRefundsFake, request: RefundRequest) -> dict[str, Any]:
    return fake.charges[fake.intents[fake.sessions[request.txn_id]["payment_intent"]]]


# ------------------------------------------------------------------ refund


def test_a_refund_stripe_makes_at_once_succeeds(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    result = stripe.refund(request)
    [made] = fake.refunds.values()
    assert result == RefundResult("succeeded", made["id"], "succeeded")
    [sent] = fake.refund_creates()
    assert sent == {"payment_intent": fake.sessions[request.txn_id]["payment_intent"], "amount": str(PAID_FEN),
                    "metadata[refund_no]": request.refund_no, "metadata[order_no]": ORDER}
    assert fake.refund_keys == [request.refund_no]  # the idempotency key is our number
    assert charge_of(fake, request)["amount_refunded"] == PAID_FEN


def test_a_pending_refund_is_pending_until_stripe_finishes_it(fake: StripeRefundsFake,
                                                              stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.next_statuses.append("pending")
    first = stripe.refund(request)
    assert (first.state, first.detail) == ("pending", "pending: processing")
    assert stripe.refund_status(request) == first
    fake.settle(str(first.provider_refund_id), "succeeded")
    assert stripe.refund_status(request) == RefundResult("succeeded", first.provider_refund_id, "succeeded")
    assert len(fake.refund_creates()) == 1  # status asks, it never sends again


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_a_refund_that_fails_later_is_failed_with_stripes_reason(fake: StripeRefundsFake,
                                                                 stripe: StripeCheckoutProvider, status: str) -> None:
    request = paid(fake)
    fake.next_statuses.append("pending")
    refund_id = str(stripe.refund(request).provider_refund_id)
    fake.settle(refund_id, status, "expired_or_canceled_card" if status == "failed" else None)
    reason = "expired_or_canceled_card" if status == "failed" else "merchant_request"
    assert stripe.refund_status(request) == RefundResult("failed", refund_id, reason)
    # Asked again under the same number: the failed refund is found, none is made in its place.
    assert stripe.refund(request) == RefundResult("failed", refund_id, reason)
    assert len(fake.refund_creates()) == 1
    assert charge_of(fake, request)["amount_refunded"] == 0  # the money is back at Stripe


@pytest.mark.parametrize(("refunded_before", "code"), [(PAID_FEN, "charge_already_refunded"),
                                                       (PAID_FEN // 2, "amount_too_large")])
def test_a_charge_that_cannot_give_it_back_is_failed_with_stripes_code(
        fake: StripeRefundsFake, stripe: StripeCheckoutProvider, refunded_before: int, code: str) -> None:
    request = paid(fake)
    fake.refund_in_dashboard(ORDER, refunded_before)
    assert stripe.refund(request) == RefundResult("failed", None, code)
    assert fake.ours(request.refund_no) == []
    assert charge_of(fake, request)["amount_refunded"] == refunded_before  # never above the charge


def test_a_throttled_refund_is_unavailable_and_made_once_later(fake: StripeRefundsFake,
                                                               stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.throttle_refunds = 1
    with pytest.raises(ProviderUnavailable, match="RateLimitError 429"):
        stripe.refund(request)
    assert fake.refunds == {}
    assert stripe.refund(request).state == "succeeded"
    assert len(fake.ours(request.refund_no)) == 1


def test_stripe_down_is_unavailable(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.fail_next = 2  # the package tries once more after a 5xx
    with pytest.raises(ProviderUnavailable, match="503"):
        stripe.refund(request)
    fake.fail_next = 2
    with pytest.raises(ProviderUnavailable):
        stripe.refund_status(request)
    assert fake.refunds == {}


def test_no_connection_is_unavailable(fake: StripeRefundsFake) -> None:
    request = paid(fake)
    nowhere = StripeCheckoutProvider(keys().secret_key, keys().webhook_secret, "http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailable, match="APIConnectionError"):
        nowhere.refund(request)


def test_the_same_refund_no_twice_refunds_once(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    request = paid(fake, refund_fen=4000)
    first, again = stripe.refund(request), stripe.refund(request)
    assert first == again and first.state == "succeeded"
    assert len(fake.ours(request.refund_no)) == 1
    assert charge_of(fake, request)["amount_refunded"] == 4000
    # A second refund of the same payment, under its own number, is another refund.
    second = stripe.refund(RefundRequest(ORDER, "RF000000000102", 4000, PAID_FEN, request.txn_id))
    assert second.state == "succeeded" and second.provider_refund_id != first.provider_refund_id
    assert charge_of(fake, request)["amount_refunded"] == 8000


def test_a_refund_whose_answer_was_lost_is_made_once(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.lose_refund_answers = 1  # made at Stripe, the answer lost: the package sends it again
    result = stripe.refund(request)
    [made] = fake.ours(request.refund_no)
    assert result == RefundResult("succeeded", made["id"], "succeeded")
    first, second = fake.refund_creates()
    assert first == second and fake.refund_keys == [request.refund_no] * 2  # the same request, the same key
    assert charge_of(fake, request)["amount_refunded"] == PAID_FEN


def test_a_refund_stripe_never_received_is_pending_not_failed(fake: StripeRefundsFake,
                                                              stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.refund_in_dashboard(ORDER, 100)  # a refund of the payment, but not this one
    assert stripe.refund_status(request) == RefundResult("pending", None, "not_found")
    assert fake.refund_creates() == []


def test_refund_status_reads_every_page_of_the_payments_refunds(fake: StripeRefundsFake,
                                                                stripe: StripeCheckoutProvider,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe_checkout, "PAGE_SIZE", 2)
    request = paid(fake, refund_fen=100)
    fake.clock = 1_700_000_000
    ours = stripe.refund(request)  # the oldest: on the last page
    for _ in range(4):
        fake.clock += 1
        fake.refund_in_dashboard(ORDER, 100)
    before = len(fake.seen)
    assert stripe.refund_status(request) == ours
    asked = [path for method, path, _ in fake.seen[before:] if (method, path) == ("GET", REFUNDS)]
    assert len(asked) == 3  # five refunds, two to a page


@pytest.mark.parametrize(("txn_id", "order_no", "detail"), [
    ("4200001234202601010000000001", ORDER, "not_a_checkout_session"),
    (None, "2601010000000002", "session_of_another_order"),
])
def test_a_payment_that_is_not_this_orders_session_is_never_refunded(
        fake: StripeRefundsFake, stripe: StripeCheckoutProvider, txn_id: str | None, order_no: str,
        detail: str) -> None:
    request = paid(fake)
    wrong = RefundRequest(order_no, request.refund_no, PAID_FEN, PAID_FEN, txn_id or request.txn_id)
    assert stripe.refund(wrong) == RefundResult("failed", None, detail)
    assert fake.refund_creates() == []


def test_an_unpaid_session_has_nothing_to_refund(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    session = {"id": stripe_id("cs_test_", 58), "object": "checkout.session", "status": "expired",
               "payment_status": "unpaid", "payment_intent": None, "currency": "cny",
               "client_reference_id": ORDER, "metadata": {"order_no": ORDER}, "created": 1}
    fake.add_session(session)
    request = RefundRequest(ORDER, "RF000000000101", PAID_FEN, PAID_FEN, session["id"])
    assert stripe.refund(request) == RefundResult("failed", None, "session_not_paid")
    assert fake.refund_creates() == []


# ------------------------------------------------------------------ notifications


def test_refund_updated_to_failed_is_a_refund_failed_event(fake: StripeRefundsFake,
                                                           stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.next_statuses.append("pending")
    refund_id = str(stripe.refund(request).provider_refund_id)
    failed = fake.settle(refund_id, "failed", "lost_or_stolen_card")
    for message in (refund_event(failed, previous={"status": "pending"}), refund_event(failed, "refund.failed")):
        event = stripe.parse_callback(*message)
        assert (event.kind, event.order_no, event.refund_no, event.txn_id, event.amount_fen) == (
            "refund_failed", ORDER, request.refund_no, refund_id, PAID_FEN)


def test_refund_updated_to_succeeded_is_a_refunded_event(fake: StripeRefundsFake,
                                                         stripe: StripeCheckoutProvider) -> None:
    request = paid(fake, refund_fen=2500)
    fake.next_statuses.append("pending")
    refund_id = str(stripe.refund(request).provider_refund_id)
    done = fake.settle(refund_id, "succeeded")
    event = stripe.parse_callback(*refund_event(done, previous={"status": "pending"}))
    assert (event.kind, event.refund_no, event.txn_id, event.amount_fen) == ("refunded", request.refund_no,
                                                                             refund_id, 2500)


def test_refund_events_that_change_nothing_are_ignored(fake: StripeRefundsFake,
                                                       stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    ours = fake.refunds[str(stripe.refund(request).provider_refund_id)]
    ignored = [
        # A succeeded refund that gets its network reference later: nothing about the money.
        refund_event(ours, previous={"destination_details": {"card": {"reference": None}}}),
        refund_event({**ours, "status": "pending"}, previous={"status": "requires_action"}),
        # Made in the dashboard: no numbers of ours (charge.refunded tells its money).
        refund_event({**ours, "metadata": {}}, "refund.failed"),
    ]
    for message in ignored:
        with pytest.raises(NothingToDo):
            stripe.parse_callback(*message)


def test_a_forged_refund_event_is_refused(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    request = paid(fake)
    fake.next_statuses.append("pending")
    refund = fake.settle(str(stripe.refund(request).provider_refund_id), "failed", "declined")
    with pytest.raises(InvalidSignature):
        stripe.parse_callback(*refund_event(refund, "refund.failed", other_secret=True))


def test_charge_refunded_names_our_refund_when_the_event_lists_the_refunds(fake: StripeRefundsFake,
                                                                           stripe: StripeCheckoutProvider) -> None:
    request = paid(fake, refund_fen=3000)
    fake.clock = 1_700_000_000
    fake.refund_in_dashboard(ORDER, 1000)
    fake.clock += 5
    ours = fake.refunds[str(stripe.refund(request).provider_refund_id)]
    event = stripe.parse_callback(*charge_refunded(fake, ours))
    assert (event.kind, event.order_no, event.refund_no, event.amount_fen) == ("refunded", ORDER,
                                                                               request.refund_no, 4000)
    assert event.txn_id == f"{ours['charge']}:4000"  # as before: the charge and its total refunded
    # Without the list (API versions since 2022-11-15) the event names no refund.
    assert stripe.parse_callback(*charge_refunded(fake, ours, with_refunds=False)).refund_no is None
    # The newest refund is one made in the dashboard: no number of ours.
    fake.clock += 5
    newest = fake.refund_in_dashboard(ORDER, 500)
    assert stripe.parse_callback(*charge_refunded(fake, newest)).refund_no is None


# ------------------------------------------------------------------ statement

DAY = date(2026, 11, 20)


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> int:
    """A Unix time, Beijing wall clock."""
    return int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=BEIJING).timestamp())


def utc(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC).replace(tzinfo=None)


def test_balance_transactions_over_pages_become_lines_with_fees(fake: StripeRefundsFake,
                                                                 stripe: StripeCheckoutProvider,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe_checkout, "PAGE_SIZE", 2)
    start, end = day_bounds(DAY)
    assert (start, end) == (at(DAY, 0), at(DAY, 0) + 86400)
    fake.clock = start - 1  # 23:59:59 the day before: another day's
    paid(fake, "2601010000000010", 5000)
    fake.clock = start
    first = paid(fake, "2601010000000011", 10000)
    fake.clock = at(DAY, 9, 30)
    second = paid(fake, "2601010000000012", 3000, refund_no="RF000000000201")
    fake.clock = at(DAY, 12)
    fake.book_payout(7000)  # neither a payment nor a refund
    other = fake.pay("2601010000000013", 2000)  # made by another integration on the account:
    fake.sessions[other["id"]]["metadata"] = {}  # no number of ours anywhere
    fake.charges[fake.intents[other["payment_intent"]]]["metadata"] = {}
    fake.clock = at(DAY, 15)
    ours = stripe.refund(second)
    fake.clock = at(DAY, 16)
    by_hand = fake.refund_in_dashboard("2601010000000011", 1000)
    fake.clock = end - 1
    paid(fake, "2601010000000014", 800)
    fake.clock = end  # the next day's
    paid(fake, "2601010000000015", 900)

    name, raw = stripe.fetch_statement(DAY)
    assert name == "stripe-2026-11-20.json"
    asked = [path for method, path, _ in fake.seen if (method, path) == ("GET", BALANCE_TRANSACTIONS)]
    assert len(asked) == 4  # seven lines of that day, two to a page
    last_order = fake.session_of("2601010000000014")
    assert last_order is not None
    assert stripe.parse_statement(raw) == [
        StatementLine("payment", first.order_no, first.txn_id, 10000, 575, utc(start)),
        StatementLine("payment", second.order_no, second.txn_id, 3000, 337, utc(at(DAY, 9, 30))),
        StatementLine("refund", second.order_no, second.txn_id, 3000, 0, utc(at(DAY, 15)),
                      refund_no="RF000000000201", refund_id=ours.provider_refund_id),
        # Made in the dashboard: the order is its session's, and no number of ours.
        StatementLine("refund", first.order_no, first.txn_id, 1000, 0, utc(at(DAY, 16)), refund_id=by_hand["id"]),
        StatementLine("payment", "2601010000000014", last_order["id"], 800, 262, utc(end - 1)),
    ]


def test_a_refund_of_an_older_payment_finds_its_session(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    fake.clock = at(DAY - timedelta(days=3), 10)
    request = paid(fake, refund_fen=2000)
    fake.clock = at(DAY, 10)
    result = stripe.refund(request)
    [line] = stripe.parse_statement(stripe.fetch_statement(DAY)[1])
    assert line == StatementLine("refund", ORDER, request.txn_id, 2000, 0, utc(at(DAY, 10)),
                                 refund_no=request.refund_no, refund_id=result.provider_refund_id)
    sessions_asked = [body for method, path, body in fake.seen if (method, path) == ("GET", "/v1/checkout/sessions")]
    assert len(sessions_asked) == 2  # the day's sessions (not there), then by its PaymentIntent


def test_a_balance_in_another_currency_reads_the_yuan_and_converts_the_fee(fake: StripeRefundsFake,
                                                                           stripe: StripeCheckoutProvider) -> None:
    fake.balance_currency, fake.exchange_rate = "hkd", "1.0875"
    fake.clock = at(DAY, 11)
    request = paid(fake)
    [line] = [bt for bt in fake.balance if bt["type"] == "charge"]
    assert (line["amount"], line["fee"]) == (10875, 604)  # HK cents: 10875 * 3.4% + 2.35 HKD
    [read] = stripe.parse_statement(stripe.fetch_statement(DAY)[1])
    assert (read.txn_id, read.amount_fen, read.fee_fen) == (request.txn_id, PAID_FEN, 555)  # 604 / 1.0875


def test_a_day_that_is_not_over_has_no_statement_yet(fake: StripeRefundsFake, stripe: StripeCheckoutProvider) -> None:
    today = datetime.now(BEIJING).date()
    with pytest.raises(StatementNotReady):
        stripe.fetch_statement(today)
    assert fake.seen == []
    name, raw = stripe.fetch_statement(today - timedelta(days=1))
    assert (name, stripe.parse_statement(raw)) == (f"stripe-{today - timedelta(days=1)}.json", [])


def test_a_statement_when_stripe_is_down_is_unavailable(fake: StripeRefundsFake,
                                                        stripe: StripeCheckoutProvider) -> None:
    fake.fail_next = 2
    with pytest.raises(ProviderUnavailable):
        stripe.fetch_statement(DAY)


MALFORMED = {
    "not JSON": b"<html>",
    "not UTF-8": b'["\xff"]',
    "not a list": b'{"object": "list", "data": []}',
    "not a balance transaction": b'[{"object": "charge"}]',
    "source not expanded": b'[{"object": "balance_transaction", "type": "charge", "source": "ch_1", "amount": 1,'
                           b' "fee": 0, "currency": "cny", "created": 1}]',
    "a fractional amount": b'[{"object": "balance_transaction", "type": "charge", "amount": 1.5, "fee": 0,'
                           b' "currency": "cny", "created": 1, "source": {"id": "ch_1", "payment_intent": "pi_1",'
                           b' "metadata": {"order_no": "2601010000000001"}}}]',
    "a refund of money in": b'[{"object": "balance_transaction", "type": "refund", "amount": 100, "fee": 0,'
                            b' "currency": "cny", "created": 1, "source": {"id": "re_1", "payment_intent": "pi_1",'
                            b' "metadata": {"order_no": "2601010000000001"}}}]',
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_file_not_in_the_format_is_malformed(stripe: StripeCheckoutProvider, raw: bytes) -> None:
    with pytest.raises(MalformedStatement):
        stripe.parse_statement(raw)
