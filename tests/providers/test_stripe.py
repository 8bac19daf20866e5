"""Stripe Checkout: the hosted card page, its signed webhooks, and asking Stripe about an order.

Stripe is a fake on 127.0.0.1 (``tests/provider_kits/stripe.py``); no test reaches Stripe.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from heyon_site import create_app
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.payments.reconcile import candidate, check_one
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import OrderRef, ProviderUnavailable
from heyon_site.providers.stripe_checkout import PAY_TIMEOUT, StripeCheckoutProvider

from tests import kit
from tests.kit import TEST_CONFIG, flask_cli, site_for_tests
from tests.fakes import serving
from tests.provider_kits.stripe import (
    CHECKOUT_PAGE,
    KIT,
    SESSIONS,
    StripeFake,
    keys,
    signature_header,
    stripe_id,
)

NOTIFY = "/pay/notify/stripe"
pytestmark = pytest.mark.usefixtures("books_balance")
RECEIVED = (200, '{"received": true}')
REFUSED = (400, '{"received": false}')
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
COMPUTER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    api = KIT.fake_api()
    with serving(api):
        yield api


@pytest.fixture
def app(database: str, fake: StripeFake) -> Iterator[Flask]:
    """The conftest app, with Stripe as its one payment method, talking to the fake."""
    with site_for_tests(database, HEYON_PROVIDERS=("stripe",), **KIT.config(fake.base_url)) as app:
        yield app


def provider() -> StripeCheckoutProvider:
    found = get_provider("stripe")
    assert isinstance(found, StripeCheckoutProvider)
    return found


def start(client: FlaskClient, fake: StripeFake, user_agent: str = PHONE) -> str:
    """Order 100 yuan by card as a browser does; return the order number."""
    r = client.post("/recharge", data=kit.recharge_form(client, method="stripe"), headers={"User-Agent": user_agent})
    assert r.status_code == 303, (r.status_code, r.get_data(as_text=True)[:500])
    location = r.headers["Location"]
    assert location.startswith(CHECKOUT_PAGE), location
    return str(fake.sessions[location.removeprefix(CHECKOUT_PAGE)]["client_reference_id"])


@pytest.fixture
def order_no(client: FlaskClient, fake: StripeFake) -> str:
    kit.make_card(balance_fen=kit.OPENING_FEN)
    return start(client, fake)


def session_id(order_no: str) -> str:
    ref = kit.order(order_no).provider_ref
    assert ref
    return ref


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> TestResponse:
    return client.post(NOTIFY, data=body, headers=headers)


def answer(r: TestResponse) -> tuple[int, str]:
    return r.status_code, r.get_data(as_text=True)


def create_requests(fake: StripeFake) -> list[dict[str, str]]:
    return [dict(parse_qsl(body.decode())) for method, path, body in fake.seen if (method, path) == ("POST", SESSIONS)]


# ------------------------------------------------------------------ checkout


@pytest.mark.parametrize("user_agent", [PHONE, COMPUTER], ids=["mobile", "desktop"])
def test_checkout_sends_phone_and_computer_to_the_session_page(client: FlaskClient, fake: StripeFake, user_agent: str) -> None:
    kit.make_card()
    before = time.time()
    order_no = start(client, fake, user_agent)
    found = kit.order(order_no)
    session = fake.sessions[found.provider_ref or ""]
    # Kept on the order: query and close find the session by it; "continue paying" uses the URL.
    assert (found.pay_url, found.pay_qr) == (session["url"], None)
    [sent] = create_requests(fake)
    assert sent["mode"] == "payment"
    assert sent["allowed_payment_method_types[0]"] == "card"
    assert (sent["line_items[0][price_data][currency]"], sent["line_items[0][price_data][unit_amount]"],
            sent["line_items[0][quantity]"]) == ("cny", str(kit.ORDER_FEN), "1")
    assert sent["client_reference_id"] == sent["metadata[order_no]"] == order_no
    order_page = f"http://heyon.test/orders/{found.token}"
    assert sent["success_url"] == sent["cancel_url"] == order_page
    assert before + 30 * 60 < int(sent["expires_at"]) <= time.time() + PAY_TIMEOUT.total_seconds()


def test_a_create_whose_answer_was_lost_makes_one_session(app: Flask, fake: StripeFake) -> None:
    kit.make_card()
    ref = OrderRef("2601010000000001", 5000, "Heyon card recharge", "http://heyon.test/orders/x")
    fake.lose_answers = 1  # made at Stripe, but the answer never arrived: the client asks again
    made = provider().checkout(ref, "mobile")
    assert len(fake.sessions) == 1
    assert made.provider_ref in fake.sessions
    sent = [body for method, path, body in fake.seen if (method, path) == ("POST", SESSIONS)]
    assert len(sent) == 2 and sent[0] == sent[1]  # the same request again, under the same idempotency key


def test_a_second_checkout_of_one_order_never_makes_a_second_session(app: Flask, fake: StripeFake) -> None:
    ref = OrderRef("2601010000000002", 5000, "Heyon card recharge", "http://heyon.test/orders/x")
    provider().checkout(ref, "mobile")
    with pytest.raises(ProviderUnavailable):
        provider().checkout(OrderRef(ref.order_no, 6000, ref.subject, ref.return_url), "desktop")
    assert len(fake.sessions) == 1


def test_stripe_down_at_checkout_keeps_the_customer_on_the_form(client: FlaskClient, fake: StripeFake) -> None:
    kit.make_card()
    fake.fail_next = 10
    r = client.post("/recharge", data=kit.recharge_form(client, method="stripe"))
    assert r.status_code == 503
    [found] = db.session.scalars(select(RechargeOrder)).all()
    assert (found.status, found.provider_ref) == ("pending", None)


# ------------------------------------------------------------------ webhooks: genuine


def test_a_signed_completed_session_credits_once(client: FlaskClient, order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no))
    answers = [post(client, body, headers) for _ in range(3)]  # Stripe redelivers until it gets a 2xx
    assert [answer(a) for a in answers] == [RECEIVED] * 3
    assert answers[0].mimetype == "application/json"
    found = kit.order(order_no)
    assert (found.status, found.paid_fen, found.provider_txn_id) == ("credited", kit.ORDER_FEN, session_id(order_no))
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1
    assert [(c.outcome, c.order_no) for c in kit.callbacks()] == [("credited", order_no), ("duplicate", order_no),
                                                             ("duplicate", order_no)]


def test_other_events_about_the_same_session_credit_nothing_more(client: FlaskClient, order_no: str) -> None:
    # Event ids differ between events (and a redelivery keeps its id); the key is the session.
    sid = session_id(order_no)
    first = KIT.notification(order_no, kit.ORDER_FEN, sid)
    later = KIT.notification(order_no, kit.ORDER_FEN, sid, event_type="checkout.session.async_payment_succeeded")
    assert answer(post(client, *first)) == answer(post(client, *later)) == RECEIVED
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert [c.outcome for c in kit.callbacks()] == ["credited", "duplicate"]


def test_the_kit_signs_as_the_stripe_package_does(order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no))
    t = int(headers["Stripe-Signature"].split(",")[0].removeprefix("t="))
    expected = stripe.WebhookSignature.generate_signature_header(body.decode(), keys().webhook_secret, t)
    assert headers["Stripe-Signature"] == expected


def test_an_adaptive_pricing_session_credits_its_yuan_amount(client: FlaskClient, order_no: str) -> None:
    conversion = {"source_currency": "cny", "amount_total": kit.ORDER_FEN, "amount_subtotal": kit.ORDER_FEN, "fx_rate": "0.138"}
    body, headers = KIT.notification(order_no, 1380, session_id(order_no), currency="usd", currency_conversion=conversion)
    assert answer(post(client, body, headers)) == RECEIVED
    assert kit.order(order_no).status == "credited"


def test_an_expired_session_fails_the_order(client: FlaskClient, order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no), event_type="checkout.session.expired")
    assert answer(post(client, body, headers)) == RECEIVED
    found = kit.order(order_no)
    assert (found.status, found.status_reason) == ("failed", "closed_by_provider")
    kit.assert_not_credited(order_no)


def test_a_different_amount_goes_to_review(client: FlaskClient, order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN - 1, session_id(order_no))
    assert answer(post(client, body, headers)) == RECEIVED  # on record; retrying would not help
    found = kit.order(order_no)
    assert (found.status, found.status_reason, found.paid_fen) == ("review", "amount_mismatch", kit.ORDER_FEN - 1)
    kit.assert_not_credited(order_no)


# ------------------------------------------------------------------ webhooks: refused

FORGED: dict[str, dict[str, Any]] = {
    "signed with another secret": {"other_secret": True},
    "amount changed after signing": {"amount": 1000000},
    "stale timestamp (6 minutes)": {"stale": True},
    "only a v0 signature (not the live scheme)": {"scheme": "v0"},
    "no Stripe-Signature header": {"signature": ""},
    "header without a timestamp": {"signature": "v1=00"},
    "header with a text timestamp": {"signature": "t=now,v1=00"},
    "header with non-ASCII text": {"signature": "t=1,v1=\u00e9\u00e9"},
}


@pytest.mark.parametrize("tamper", FORGED.values(), ids=FORGED.keys())
def test_a_forged_webhook_credits_nothing_and_is_kept(client: FlaskClient, order_no: str, tamper: dict[str, Any]) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no), **tamper)
    assert answer(post(client, body, headers)) == REFUSED
    assert kit.order(order_no).status == "pending"
    kit.assert_not_credited(order_no)
    [kept] = kit.callbacks()
    assert (kept.provider, kept.outcome, kit.kept_body(kept)) == ("stripe", "bad_signature", kit.as_refused(body))
    assert kept.order_no is None  # nothing from an unverified body is trusted


def test_a_body_that_is_not_utf8_is_refused(client: FlaskClient, order_no: str) -> None:
    body = b'{"id": "\xff"}'
    headers = {"Stripe-Signature": signature_header(body, keys().webhook_secret, int(time.time()))}
    assert answer(post(client, body, headers)) == REFUSED
    assert [c.outcome for c in kit.callbacks()] == ["bad_signature"]


UNCREDITED: dict[str, dict[str, Any]] = {
    "payment_status unpaid": {"unpaid": True},
    "payment_status no_payment_required": {"payment_status": "no_payment_required"},
    "another currency": {"currency": "usd"},
    "a live-mode event for a test-mode key": {"livemode": True},
    "metadata naming another order": {"metadata": {"order_no": "2601010000000000"}},
}
NOT_FOR_US: dict[str, dict[str, Any]] = {
    "an event type we do not handle": {"event_type": "payment_intent.succeeded"},
    "a session another integration made": {"metadata": {}},
}


@pytest.mark.parametrize("tamper", NOT_FOR_US.values(), ids=NOT_FOR_US.keys())
def test_a_signed_webhook_not_for_us_is_acknowledged_and_ignored(client: FlaskClient, order_no: str,
                                                               tamper: dict[str, Any]) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no), **tamper)
    assert answer(post(client, body, headers)) == (200, '{"received": true}')  # else Stripe retries for days
    assert kit.order(order_no).status == "pending"
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["ignored"]


@pytest.mark.parametrize("tamper", UNCREDITED.values(), ids=UNCREDITED.keys())
def test_a_signed_webhook_that_is_not_a_payment_credits_nothing(client: FlaskClient, order_no: str,
                                                                tamper: dict[str, Any]) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no), **tamper)
    assert answer(post(client, body, headers)) == REFUSED
    assert kit.order(order_no).status == "pending"
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["malformed"]


def test_a_signed_body_that_is_not_an_event_is_malformed(client: FlaskClient, order_no: str) -> None:
    fractional = (b'{"object": "event", "livemode": false, "type": "checkout.session.completed", "data": {"object": '
                  b'{"object": "checkout.session", "id": "cs_1", "payment_status": "paid", "client_reference_id": "1", '
                  b'"metadata": {"order_no": "1"}, "currency": "cny", "amount_total": 1.5}}}')
    for body in (b"[1, 2]", b"not json", fractional):
        headers = {"Stripe-Signature": signature_header(body, keys().webhook_secret, int(time.time()))}
        assert answer(post(client, body, headers)) == REFUSED
    assert [c.outcome for c in kit.callbacks()] == ["malformed"] * 3
    kit.assert_not_credited(order_no)


def test_the_webhook_path_makes_no_outbound_connection(client: FlaskClient, order_no: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, session_id(order_no))
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def no_network(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("no outbound connection from the notification path")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert answer(post(client, body, headers)) == RECEIVED
    assert attempts == []
    assert kit.order(order_no).status == "credited"


# ------------------------------------------------------------------ query and close


def test_query_says_unpaid_paid_or_closed(app: Flask, fake: StripeFake, order_no: str) -> None:
    assert provider().query(order_no) is None  # open
    sid = KIT.pay(fake, order_no, kit.ORDER_FEN)
    assert sid == session_id(order_no)
    paid = provider().query(order_no)
    assert paid is not None
    assert (paid.kind, paid.txn_id, paid.amount_fen, paid.order_no) == ("paid", sid, kit.ORDER_FEN, order_no)
    KIT.expire(fake, order_no)
    closed = provider().query(order_no)
    assert closed is not None and closed.kind == "closed"


def test_query_of_an_order_without_a_session_asks_nothing(app: Flask, fake: StripeFake) -> None:
    card_id = kit.make_card()
    order_no = in_write_transaction(lambda: start_recharge(db.session, card_id, kit.ORDER_FEN, "stripe", "en").order_no)
    assert provider().query(order_no) is None
    provider().close(order_no)
    assert fake.seen == []


def test_query_and_close_when_stripe_is_down(app: Flask, fake: StripeFake, order_no: str) -> None:
    fake.fail_next = 10
    with pytest.raises(ProviderUnavailable):
        provider().query(order_no)
    with pytest.raises(ProviderUnavailable):
        provider().close(order_no)


def test_query_refuses_a_session_of_another_order(client: FlaskClient, fake: StripeFake, order_no: str) -> None:
    other = start(client, fake)
    in_write_transaction(lambda: db.session.execute(
        update(RechargeOrder).where(RechargeOrder.order_no == other).values(provider_ref=session_id(order_no))))
    with pytest.raises(ProviderUnavailable, match="another order"):
        provider().query(other)


def test_a_wrong_key_is_unavailable_and_never_shown(app: Flask, fake: StripeFake, order_no: str) -> None:
    wrong = "sk_test_" + "9" * 48
    stranger = StripeCheckoutProvider(wrong, keys().webhook_secret, fake.base_url)
    with pytest.raises(ProviderUnavailable) as caught:
        stranger.query(order_no)
    assert "AuthenticationError" in str(caught.value)
    assert "sk_" not in str(caught.value)


def test_close_expires_an_open_session_and_accepts_a_finished_one(app: Flask, fake: StripeFake, order_no: str) -> None:
    provider().close(order_no)
    assert fake.sessions[session_id(order_no)]["status"] == "expired"
    provider().close(order_no)  # already expired: fine
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    provider().close(order_no)  # paid meanwhile: fine, the next query finds it paid


def test_close_of_a_session_stripe_does_not_know_is_unavailable(app: Flask, fake: StripeFake, order_no: str) -> None:
    fake.sessions.clear()
    with pytest.raises(ProviderUnavailable):
        provider().close(order_no)


def test_reconciliation_credits_a_payment_whose_webhook_was_lost(app: Flask, fake: StripeFake, order_no: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    asked = candidate(order_no)
    assert asked is not None
    assert check_one(asked, get_provider, expire_after=None) == "credited"
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


def test_reconciliation_closes_the_session_of_an_abandoned_order(app: Flask, fake: StripeFake, order_no: str) -> None:
    asked = candidate(order_no)
    assert asked is not None
    later = asked.created_at + PAY_TIMEOUT + timedelta(minutes=1)
    assert check_one(asked, get_provider, expire_after=timedelta(minutes=1), now=later) == "expired"
    assert fake.sessions[session_id(order_no)]["status"] == "expired"
    assert kit.order(order_no).status_reason == "timeout"  # ran out of time: not a failed payment
    kit.assert_not_credited(order_no)


# ------------------------------------------------------------------ configuration

REQUIRED = ("HEYON_STRIPE_SECRET_KEY", "HEYON_STRIPE_WEBHOOK_SECRET")


@pytest.fixture
def provider_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="heyon_site.providers")
    return caplog


def stripe_app(database: str, log: pytest.LogCaptureFixture, **config: str) -> tuple[Flask, str]:
    built = create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_PROVIDERS": ("stripe",), **config})
    return built, log.text


@pytest.mark.parametrize("missing", REQUIRED)
def test_incomplete_configuration_is_not_offered_and_says_why(database: str, provider_log: pytest.LogCaptureFixture,
                                                              missing: str) -> None:
    config = {k: v for k, v in KIT.config("https://api.stripe.com").items() if k != missing}
    built, log = stripe_app(database, provider_log, **config)
    assert "stripe" not in built.extensions["heyon.providers"]
    assert missing in log
    for value in config.values():
        if value.startswith(("sk_", "whsec_")):
            assert value not in log


@pytest.mark.parametrize(("name", "value"), [
    ("HEYON_STRIPE_SECRET_KEY", "pk_test_" + "1" * 24),  # the publishable key, by mistake
    ("HEYON_STRIPE_WEBHOOK_SECRET", "not-a-signing-secret"),
    ("HEYON_STRIPE_API_BASE", "http://api.stripe.example"),  # the key would travel in clear text
    ("HEYON_STRIPE_MIN_AMOUNT", "four"),
])
def test_a_wrong_setting_is_not_offered_and_never_echoed(database: str, provider_log: pytest.LogCaptureFixture,
                                                         name: str, value: str) -> None:
    built, log = stripe_app(database, provider_log, **{**KIT.config("https://api.stripe.com"), name: value})
    assert "stripe" not in built.extensions["heyon.providers"]
    assert name in log
    assert value not in log


def test_keys_can_come_from_files(database: str, provider_log: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    files = {}
    for name, value in KIT.config("https://api.stripe.com").items():
        if name in REQUIRED:
            (tmp_path / name).write_text(value + "\n")
            files[name + "_FILE"] = str(tmp_path / name)
    built, _ = stripe_app(database, provider_log, HEYON_STRIPE_MIN_AMOUNT="12.50", **files)
    offered = built.extensions["heyon.providers"]["stripe"]
    assert offered.min_fen == 1250


# ------------------------------------------------------------------ many deliveries at once


def _post_raw(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.mark.live
def test_twenty_deliveries_at_once_credit_once(app: Flask, fake: StripeFake, order_no: str, database: str,
                                               tmp_path: Path) -> None:
    sid = session_id(order_no)
    # Ten redeliveries of one event and ten of another event about the same session.
    deliveries = ([KIT.notification(order_no, kit.ORDER_FEN, sid)] * 10
                  + [KIT.notification(order_no, kit.ORDER_FEN, sid, event_id=stripe_id("evt_", 24))] * 10)
    env = {"HEYON_PROVIDERS": "stripe", **KIT.config(fake.base_url)}
    with kit.live_site(database, tmp_path, workers=4, extra_env=env) as site:
        barrier = threading.Barrier(len(deliveries))
        answers: list[tuple[int, str] | OSError | RuntimeError | None] = [None] * len(deliveries)

        def fire(i: int) -> None:
            try:
                barrier.wait(timeout=30)
                answers[i] = _post_raw(site.url + NOTIFY, *deliveries[i])
            except (OSError, RuntimeError) as exc:  # handed to the main thread, which fails the test
                answers[i] = exc

        threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(deliveries))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert answers == [RECEIVED] * len(deliveries), (answers, site.log_text()[-3000:])
        assert "Traceback" not in site.log_text()
    assert kit.order(order_no).status == "credited"
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1
    assert Counter(c.outcome for c in kit.callbacks()) == Counter({"credited": 1, "duplicate": 19})
    verify = flask_cli(database, "ledger", "verify")
    assert verify.returncode == 0, (verify.stdout, verify.stderr)
