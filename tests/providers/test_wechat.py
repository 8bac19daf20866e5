"""The WeChat Pay (API v3) adapter: Native and H5 orders at checkout, notifications verified with
the configured platform key and nothing else, and query and close against a local fake API."""
from __future__ import annotations

import functools
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site import create_app
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, ProviderCallback, RechargeOrder
from heyon_site.payments.reconcile import candidate, check_one
from heyon_site.providers import get as get_provider
from heyon_site.providers import wechat
from heyon_site.providers.base import InvalidSignature, MalformedCallback, OrderRef, ProviderUnavailable
from heyon_site.providers.wechat import WaitingForPayment, WechatPayProvider
from heyon_site.providers.wechat_oauth import CodeRefused, WechatOAuth

from tests import kit
from tests.kit import TEST_CONFIG, held
from tests.fakes import serving
from tests.provider_kits.wechat import (
    APPID,
    KIT,
    MCHID,
    MP_APPID,
    MP_SECRET,
    PLATFORM_SERIAL,
    WechatFakeApi,
    WechatOAuthFake,
    jsapi_config,
    jsapi_notification,
    keys,
    oauth_fake,
    pay_sheet_verifies,
    private_pem,
    public_pem,
    signed_headers,
)

pytestmark = pytest.mark.usefixtures("books_balance")

NOTIFY = "/pay/notify/wechat"
TXN = "4200002026010100000000000001"
REFUSAL = {"code": "FAIL", "message": "refused"}


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def fake() -> Iterator[WechatFakeApi]:
    with serving(KIT.fake_api()) as api:
        assert isinstance(api, WechatFakeApi)
        yield api


def wechat_app(database: str, base_url: str, **overrides: Any) -> Flask:
    return create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_PROVIDERS": ("wechat",),
                       **KIT.config(base_url), **overrides})


@pytest.fixture
def app(database: str, fake: WechatFakeApi) -> Iterator[Flask]:
    """The site with WeChat Pay as its only provider, its API the fake one."""
    with held(wechat_app(database, fake.base_url)) as app:
        yield app


@pytest.fixture
def provider(app: Flask) -> WechatPayProvider:
    found = get_provider("wechat")
    assert isinstance(found, WechatPayProvider)
    return found


new_order = functools.partial(kit.provider_order, "wechat")


@pytest.fixture
def order_no(app: Flask) -> str:
    """A pending WeChat Pay order of 100.00 on a card holding 5.00."""
    return new_order()


post = functools.partial(kit.post_notification, NOTIFY)


def refused(answer: tuple[int, str]) -> bool:
    """WeChat's failure answer: a 4xx or 5xx with {"code": "FAIL", ...}; it will send again."""
    status, text = answer
    return 400 <= status < 600 and json.loads(text) == REFUSAL


# ------------------------------------------------------------------ a genuine notification


def test_genuine_notification_credits_exactly_once(client: FlaskClient, order_no: str) -> None:
    message = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    assert post(client, message) == (204, "")  # WeChat's "received": 2xx, no body
    assert post(client, message) == (204, "")  # its retry: acknowledged, not credited again
    found = kit.order(order_no)
    assert (found.status, found.paid_fen, found.provider_txn_id) == ("credited", kit.ORDER_FEN, TXN)
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1
    assert [(c.outcome, c.order_no) for c in kit.callbacks()] == [("credited", order_no), ("duplicate", order_no)]


def test_the_same_payment_notified_anew_credits_nothing_more(client: FlaskClient, order_no: str) -> None:
    # A new notification (new id, nonce, time and encryption) about the same transaction.
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, TXN)) == (204, "")
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, TXN)) == (204, "")
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert [c.outcome for c in kit.callbacks()] == ["credited", "duplicate"]


def test_a_different_amount_is_never_credited(client: FlaskClient, order_no: str) -> None:
    # Genuinely from WeChat, so someone really paid 0.01: on record for a person, acknowledged.
    assert post(client, KIT.notification(order_no, 1, TXN)) == (204, "")
    found = kit.order(order_no)
    assert (found.status, found.status_reason, found.paid_fen) == ("review", "amount_mismatch", 1)
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["amount_mismatch"]


def test_a_closed_trade_fails_the_order(client: FlaskClient, order_no: str) -> None:
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, TXN, trade_state="CLOSED")) == (204, "")
    found = kit.order(order_no)
    assert (found.status, found.status_reason) == ("failed", "closed_by_provider")
    kit.assert_not_credited(order_no)


def test_unknown_order_is_refused(client: FlaskClient, order_no: str) -> None:
    status, _ = post(client, KIT.notification("2601010000000000", kit.ORDER_FEN, TXN))
    assert status == 404
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["unknown_order"]


# ------------------------------------------------------------------ nothing else moves money


# (tamper options, the outcome kept with the raw callback, words of the reason kept with it)
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "signed with another key": ({"other_key": True}, "bad_signature", "does not verify"),
    "amount changed after signing": ({"amount": 1}, "bad_signature", "does not verify"),
    "amount raised after signing": ({"amount": 10 * kit.ORDER_FEN}, "bad_signature", "does not verify"),
    "stale timestamp (6 minutes)": ({"stale": True}, "bad_signature", "5 minutes off"),
    "timestamp 6 minutes ahead": ({"skew": 360}, "bad_signature", "5 minutes off"),
    "unknown serial": ({"unknown_serial": True}, "bad_signature", "Wechatpay-Serial"),
    "no signature": ({"drop": ("Wechatpay-Signature",)}, "bad_signature", "does not verify"),
    "no timestamp": ({"drop": ("Wechatpay-Timestamp",)}, "bad_signature", "Wechatpay-Timestamp"),
    "no nonce": ({"drop": ("Wechatpay-Nonce",)}, "bad_signature", "Wechatpay-Nonce"),
    "no serial": ({"drop": ("Wechatpay-Serial",)}, "bad_signature", "Wechatpay-Serial"),
    "foreign appid": ({"foreign_appid": True}, "malformed", "appid is not ours"),
    "foreign mchid": ({"foreign_mchid": True}, "malformed", "mchid is not ours"),
    "encrypted with another APIv3 key": ({"bad_ciphertext": True}, "malformed", "does not decrypt"),
    "NOTPAY": ({"trade_state": "NOTPAY"}, "malformed", "NOTPAY"),
    "USERPAYING": ({"trade_state": "USERPAYING"}, "malformed", "USERPAYING"),
    "PAYERROR": ({"trade_state": "PAYERROR"}, "malformed", "PAYERROR"),
    "REFUND": ({"trade_state": "REFUND"}, "malformed", "REFUND"),
    "unknown state": ({"trade_state": "PENDING"}, "malformed", "PENDING"),
}


@pytest.mark.parametrize(("tamper", "outcome", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_notification_credits_nothing_and_is_kept(client: FlaskClient, order_no: str,
                                                          tamper: dict[str, Any], outcome: str, reason: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, TXN, **tamper)
    assert refused(post(client, (body, headers)))  # not 2xx: WeChat sends it again
    assert kit.order(order_no).status == "pending"
    kit.assert_not_credited(order_no)
    assert db.session.scalar(select(func.count()).select_from(PaymentEvent)) == 0
    [kept] = kit.callbacks()
    assert (kept.provider, kept.outcome, kit.kept_body(kept)) == ("wechat", outcome, kit.as_refused(body))
    assert reason in (kept.detail or "")
    assert kept.order_no is None  # nothing of a refused body is trusted, not even the order number


def test_a_notification_four_minutes_old_is_still_taken(client: FlaskClient, order_no: str) -> None:
    # Within WeChat's five minutes: a slow network or a clock a little off is not a replay.
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, TXN, skew=-240)) == (204, "")
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


def test_not_paid_yet_is_recognised_as_nothing_to_do(provider: WechatPayProvider, order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, TXN, trade_state="NOTPAY")
    with pytest.raises(WaitingForPayment):
        provider.parse_callback(body, headers)


def test_a_signature_probe_is_refused(client: FlaskClient, order_no: str) -> None:
    # WeChat sends probes signed "WECHATPAY/SIGNTEST/..." to check that merchants verify.
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"][:40]
    assert refused(post(client, (body, headers)))
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["bad_signature"]


def test_the_signature_type_must_be_rsa_sha256(client: FlaskClient, order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SM2-WITH-SM3"
    assert refused(post(client, (body, headers)))
    assert [c.outcome for c in kit.callbacks()] == ["bad_signature"]


SIGNED_JUNK = {
    "not JSON": b"this is not JSON",
    "a list": b"[1, 2, 3]",
    "no resource": json.dumps({"event_type": "TRANSACTION.SUCCESS"}).encode(),
    "resource not encrypted": json.dumps({"event_type": "TRANSACTION.SUCCESS", "resource": {
        "algorithm": "NONE", "ciphertext": "{}", "nonce": "n", "associated_data": ""}}).encode(),
    "ciphertext not base64": json.dumps({"event_type": "TRANSACTION.SUCCESS", "resource": {
        "algorithm": "AEAD_AES_256_GCM", "ciphertext": "not base64!", "nonce": "0123456789ab",
        "associated_data": "transaction"}}).encode(),
    "a refund event that does not decrypt": json.dumps({"event_type": "REFUND.SUCCESS", "resource": {
        "algorithm": "AEAD_AES_256_GCM", "ciphertext": "", "nonce": "", "associated_data": ""}}).encode(),
}


@pytest.mark.parametrize("body", SIGNED_JUNK.values(), ids=SIGNED_JUNK.keys())
def test_signed_junk_is_malformed_without_a_5xx(client: FlaskClient, order_no: str, body: bytes) -> None:
    assert refused(post(client, (body, {"Content-Type": "application/json", **signed_headers(body)})))
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["malformed"]


@pytest.mark.parametrize("body", [b"", b"{}", bytes(range(256)) * 4], ids=["empty", "empty JSON", "binary"])
def test_unsigned_junk_is_refused_without_a_5xx(client: FlaskClient, order_no: str, body: bytes) -> None:
    assert refused(post(client, (body, {"Content-Type": "application/json"})))
    assert [c.outcome for c in kit.callbacks()] == ["bad_signature"]


def test_the_body_is_verified_as_received(client: FlaskClient, order_no: str) -> None:
    # Re-serialising the JSON (spacing, key order) would break a genuine signature; adding a
    # space after signing must break it too.
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    assert refused(post(client, (body + b" ", headers)))
    assert post(client, (body, headers)) == (204, "")
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


# ------------------------------------------------------------------ no network on the notify path


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make every IPv4/IPv6 connection and name lookup fail, and remember who tried."""
    tried: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            tried.append(address)
            raise OSError("no network in this test")
        real_connect(self, address)

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        tried.append(args[:2])
        raise OSError("no name lookups in this test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return tried


def test_the_notification_path_makes_no_outbound_connection(client: FlaskClient, order_no: str,
                                                            no_network: list[object]) -> None:
    # An unknown serial is where an SDK would go and download certificates.
    for tamper in ({"unknown_serial": True}, {"other_key": True}, {"stale": True}, {"bad_ciphertext": True}):
        assert refused(post(client, KIT.notification(order_no, kit.ORDER_FEN, TXN, **tamper)))
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, TXN)) == (204, "")
    assert no_network == []
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


# ------------------------------------------------------------------ many at once, on a real server


def _post_live(url: str, message: tuple[bytes, dict[str, str]], barrier: threading.Barrier) -> tuple[int, str]:
    body, headers = message
    barrier.wait(timeout=30)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError is an open response too; close it or it leaks a socket
            return exc.code, exc.read().decode()


@pytest.mark.live
def test_twenty_copies_at_once_credit_once(app: Flask, database: str, tmp_path: Path, order_no: str) -> None:
    message = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    # gunicorn's workers read the same settings from their environment (PEM keys and all).
    env = {"HEYON_PROVIDERS": "wechat", **KIT.config("http://127.0.0.1:9")}
    with kit.live_site(database, tmp_path, workers=4, extra_env=env) as site:
        barrier = threading.Barrier(20)
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: _post_live(site.url + NOTIFY, message, barrier), range(20)))
        assert answers == [(204, "")] * 20, site.log_text()[-3000:]
        assert "Traceback" not in site.log_text()
    assert kit.order(order_no).status == "credited"
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1
    db.session.rollback()
    assert Counter(db.session.scalars(select(ProviderCallback.outcome).where(ProviderCallback.order_no == order_no))) \
        == Counter({"credited": 1, "duplicate": 19})


# ------------------------------------------------------------------ query and close


def test_query_of_an_order_wechat_does_not_know_is_none(provider: WechatPayProvider, fake: WechatFakeApi,
                                                        order_no: str) -> None:
    assert provider.query(order_no) is None
    [(method, path, _)] = fake.seen
    assert (method, path) == ("GET", f"/v3/pay/transactions/out-trade-no/{order_no}")
    assert fake.refused == []  # our Authorization verified


def test_query_while_not_paid_is_none(provider: WechatPayProvider, fake: WechatFakeApi, order_no: str) -> None:
    KIT.open_order(fake, order_no, kit.ORDER_FEN)
    assert provider.query(order_no) is None


def test_query_of_a_paid_order(provider: WechatPayProvider, fake: WechatFakeApi, order_no: str) -> None:
    txn_id = KIT.pay(fake, order_no, kit.ORDER_FEN)
    event = provider.query(order_no)
    assert event is not None
    assert (event.provider, event.order_no, event.txn_id, event.kind, event.amount_fen) == (
        "wechat", order_no, txn_id, "paid", kit.ORDER_FEN)


def test_close_then_query_says_closed(provider: WechatPayProvider, fake: WechatFakeApi, order_no: str) -> None:
    KIT.open_order(fake, order_no, kit.ORDER_FEN)
    provider.close(order_no)
    assert fake.trades[order_no].state == "CLOSED"
    event = provider.query(order_no)
    assert event is not None
    # Never paid, so WeChat has no transaction_id: the close is keyed by the order, once.
    assert (event.kind, event.txn_id, event.amount_fen) == ("closed", f"closed-{order_no}", kit.ORDER_FEN)
    provider.close(order_no)  # closing again: ORDER_CLOSED, nothing left to do


def test_close_of_an_order_wechat_does_not_know_is_fine(provider: WechatPayProvider, order_no: str) -> None:
    provider.close(order_no)


def test_close_of_a_paid_order_is_fine_and_query_still_says_paid(provider: WechatPayProvider, fake: WechatFakeApi,
                                                                 order_no: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    provider.close(order_no)  # ORDERPAID: nothing to close; the next query tells
    event = provider.query(order_no)
    assert event is not None and event.kind == "paid"


def test_reconciliation_credits_a_payment_whose_notification_was_lost(app: Flask, fake: WechatFakeApi,
                                                                     order_no: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    found = candidate(order_no)
    assert found is not None
    assert check_one(found, get_provider, None) == "credited"
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


def test_reconciliation_closes_an_abandoned_order(app: Flask, fake: WechatFakeApi, order_no: str) -> None:
    KIT.open_order(fake, order_no, kit.ORDER_FEN)
    found = candidate(order_no)
    assert found is not None
    later = found.created_at + WechatPayProvider.pay_timeout + timedelta(minutes=1)
    # WeChat answers CLOSED after the close: a "closed" event, which billing records as failed
    # (or reconciliation as expired, if it reads a close it asked for itself as expiry).
    outcome = check_one(found, get_provider, timedelta(minutes=30), now=later)
    assert outcome in ("failed", "expired")
    assert fake.trades[order_no].state == "CLOSED"
    assert kit.order(order_no).status == outcome
    kit.assert_not_credited(order_no)


QUERY_FAILURES = ["down", "garbled", "unsigned", "other", "stale", "unknown_serial", "tampered"]
CLOSE_FAILURES = ["down", "unsigned", "other", "stale", "unknown_serial"]


@pytest.mark.parametrize(("operation", "failure"), [("query", f) for f in QUERY_FAILURES]
                                                    + [("close", f) for f in CLOSE_FAILURES])
def test_no_usable_answer_is_provider_unavailable(provider: WechatPayProvider, fake: WechatFakeApi,
                                                  order_no: str, operation: str, failure: str) -> None:
    KIT.open_order(fake, order_no, kit.ORDER_FEN)
    if failure == "down":
        fake.fail_next = 1
    else:
        fake.answer_with = failure
    with pytest.raises(ProviderUnavailable):
        getattr(provider, operation)(order_no)


def test_a_signed_answer_about_another_merchant_is_provider_unavailable(provider: WechatPayProvider,
                                                                        fake: WechatFakeApi, order_no: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    fake.answer_appid = "wx9999999999999999"
    with pytest.raises(ProviderUnavailable, match="another order or merchant"):
        provider.query(order_no)


def test_nothing_listening_is_provider_unavailable(order_no: str) -> None:
    with serving(KIT.fake_api()) as gone:
        url = gone.base_url  # a port that was just closed
    with pytest.raises(ProviderUnavailable):
        WechatPayProvider(KIT.config(url)).query(order_no)


def test_a_slow_api_is_provider_unavailable(provider: WechatPayProvider, fake: WechatFakeApi, order_no: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wechat, "TIMEOUT", (1, 0.2))
    fake.delay = 1.0
    with pytest.raises(ProviderUnavailable):
        provider.query(order_no)


def test_a_request_not_signed_with_our_key_is_refused_by_the_api(fake: WechatFakeApi, order_no: str) -> None:
    config = {**KIT.config(fake.base_url), "HEYON_WECHAT_PRIVATE_KEY": private_pem(keys().other)}
    with pytest.raises(ProviderUnavailable, match="SIGN_ERROR"):  # WeChat's refusal
        WechatPayProvider(config).query(order_no)
    assert fake.refused == [f"/v3/pay/transactions/out-trade-no/{order_no}?mchid={MCHID}"]


def test_the_api_is_wechats_by_default(app: Flask, order_no: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def nowhere(method: str, url: str, **kwargs: Any) -> requests.Response:
        asked.append(url)
        raise requests.ConnectionError("not in a test")

    monkeypatch.setattr(wechat.requests, "request", nowhere)
    config = {k: v for k, v in KIT.config("unused").items() if k != "HEYON_WECHAT_API_BASE"}
    with pytest.raises(ProviderUnavailable):
        WechatPayProvider(config).query(order_no)
    assert asked == [f"https://api.mch.weixin.qq.com/v3/pay/transactions/out-trade-no/{order_no}?mchid={MCHID}"]


# ------------------------------------------------------------------ checkout


def order_ref(order_no: str) -> OrderRef:
    return OrderRef(order_no, kit.ORDER_FEN, "Heyon card recharge", f"http://heyon.test/orders/{order_no}")


def assert_order_request(sent: dict[str, Any], order_no: str) -> None:
    assert {k: sent[k] for k in ("appid", "mchid", "description", "out_trade_no", "notify_url", "amount")} == {
        "appid": APPID, "mchid": MCHID, "description": "Heyon card recharge", "out_trade_no": order_no,
        "notify_url": "http://heyon.test/pay/notify/wechat", "amount": {"total": kit.ORDER_FEN, "currency": "CNY"}}
    expires = datetime.fromisoformat(sent["time_expire"])
    assert sent["time_expire"].endswith("+08:00")  # RFC 3339 in Beijing time, as WeChat writes it
    assert abs(expires - (datetime.now(UTC) + WechatPayProvider.pay_timeout)) < timedelta(seconds=5)


def test_checkout_on_a_computer_is_a_native_qr(provider: WechatPayProvider, fake: WechatFakeApi, order_no: str) -> None:
    checkout = provider.checkout(order_ref(order_no), "desktop")
    assert checkout.redirect_url is None
    assert checkout.qr_payload is not None and checkout.qr_payload.startswith("weixin://wxpay/bizpayurl?pr=")
    [(method, path, _)] = fake.seen
    assert (method, path, fake.refused) == ("POST", "/v3/pay/transactions/native", [])
    sent = fake.trades[order_no].request
    assert_order_request(sent, order_no)
    assert "scene_info" not in sent


def test_checkout_on_a_phone_is_an_h5_page_that_comes_back(provider: WechatPayProvider, fake: WechatFakeApi,
                                                           order_no: str) -> None:
    checkout = provider.checkout(order_ref(order_no), "mobile")
    assert checkout.qr_payload is None and checkout.redirect_url is not None
    parts = urlsplit(checkout.redirect_url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "wx.tenpay.com", "/cgi-bin/mmpayweb-bin/checkmweb")
    query = parse_qs(parts.query)
    assert query["redirect_url"] == [f"http://heyon.test/orders/{order_no}"]
    assert "%2F%2Fheyon.test%2Forders%2F" in checkout.redirect_url  # urlencoded, as WeChat asks
    sent = fake.trades[order_no].request
    assert_order_request(sent, order_no)
    # No payer address given (a command, a test): a placeholder.
    assert sent["scene_info"] == {"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}


PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
COMPUTER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def recharge(client: FlaskClient, user_agent: str) -> tuple[str, str]:
    kit.make_card(balance_fen=kit.OPENING_FEN)
    client.environ_base.update({"HTTP_USER_AGENT": user_agent, "REMOTE_ADDR": "203.0.113.7"})
    answer = client.post("/recharge", data=kit.recharge_form(client, method="wechat"))
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    db.session.rollback()
    order_no = db.session.scalar(select(RechargeOrder.order_no))
    assert order_no is not None
    return order_no, answer.headers["Location"]


def test_recharging_on_a_phone_goes_to_wechat_with_the_payers_address(client: FlaskClient,
                                                                       fake: WechatFakeApi) -> None:
    order_no, location = recharge(client, PHONE)
    assert location.startswith("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=")
    [back] = parse_qs(urlsplit(location).query)["redirect_url"]
    assert back == f"http://heyon.test/orders/{kit.order(order_no).token}"
    assert fake.trades[order_no].request["scene_info"]["payer_client_ip"] == "203.0.113.7"


def test_recharging_on_a_computer_shows_the_qr_code(client: FlaskClient, fake: WechatFakeApi) -> None:
    order_no, location = recharge(client, COMPUTER)
    assert location.endswith(f"/orders/{kit.order(order_no).token}")
    assert (kit.order(order_no).pay_qr or "").startswith("weixin://wxpay/bizpayurl?pr=")
    page = client.get(location)
    assert page.status_code == 200 and "<svg" in page.get_data(as_text=True)


def test_recharging_while_wechat_is_down_keeps_the_customer_on_the_form(client: FlaskClient,
                                                                         fake: WechatFakeApi) -> None:
    kit.make_card(balance_fen=kit.OPENING_FEN)
    fake.fail_next = 1
    answer = client.post("/recharge", data=kit.recharge_form(client, method="wechat"),
                         headers={"User-Agent": COMPUTER})
    assert answer.status_code == 503


@pytest.mark.parametrize("failure", ["down", "unsigned", "other", "stale", "unknown_serial", "tampered", "garbled"])
@pytest.mark.parametrize("device", ["mobile", "desktop"])
def test_checkout_without_a_usable_answer_is_provider_unavailable(provider: WechatPayProvider, fake: WechatFakeApi,
                                                                  order_no: str, device: str, failure: str) -> None:
    if failure == "down":
        fake.fail_next = 1
    else:
        fake.answer_with = failure
    with pytest.raises(ProviderUnavailable):
        provider.checkout(order_ref(order_no), device)  # type: ignore[arg-type]


def test_a_configured_notify_url_is_used(fake: WechatFakeApi, app: Flask, order_no: str) -> None:
    other = WechatPayProvider({**KIT.config(fake.base_url),
                               "HEYON_WECHAT_NOTIFY_URL": "https://pay.heyon.example/pay/notify/wechat"})
    other.checkout(order_ref(order_no), "desktop")
    assert fake.trades[order_no].request["notify_url"] == "https://pay.heyon.example/pay/notify/wechat"


# ------------------------------------------------------------------ configuration


@pytest.fixture
def provider_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="heyon_site.providers")
    return caplog


REQUIRED = ["HEYON_WECHAT_APPID", "HEYON_WECHAT_MCHID", "HEYON_WECHAT_MERCHANT_SERIAL", "HEYON_WECHAT_PRIVATE_KEY",
            "HEYON_WECHAT_API_V3_KEY", "HEYON_WECHAT_PLATFORM_PUBLIC_KEY", "HEYON_WECHAT_PLATFORM_SERIAL"]


@pytest.mark.parametrize("missing", REQUIRED)
def test_incomplete_configuration_is_not_offered_and_says_why(database: str, provider_log: pytest.LogCaptureFixture,
                                                              missing: str) -> None:
    built = wechat_app(database, "http://127.0.0.1:9", **{missing: ""})
    assert "wechat" not in built.extensions["heyon.providers"]
    [line] = [r.getMessage() for r in provider_log.records if "wechat" in r.getMessage()]
    assert missing in line
    assert_no_key_in(provider_log.text)


def _small_key() -> str:
    return private_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


BAD_SETTINGS: dict[str, Callable[[], dict[str, str]]] = {
    "private key is junk": lambda: {"HEYON_WECHAT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
    "a 1024-bit private key": lambda: {"HEYON_WECHAT_PRIVATE_KEY": _small_key()},
    "APIv3 key of 31 characters": lambda: {"HEYON_WECHAT_API_V3_KEY": keys().api_v3[:31]},
    "private key where WeChat's public key goes": lambda: {"HEYON_WECHAT_PLATFORM_PUBLIC_KEY": private_pem(keys().platform)},
    "our own public key for WeChat's": lambda: {"HEYON_WECHAT_PLATFORM_PUBLIC_KEY": public_pem(keys().merchant)},
    "a certificate of another serial": lambda: {"HEYON_WECHAT_PLATFORM_PUBLIC_KEY": certificate_pem(0x1234),
                                                "HEYON_WECHAT_PLATFORM_SERIAL": "ABCD"},
    "API base not a URL": lambda: {"HEYON_WECHAT_API_BASE": "api.mch.weixin.qq.com"},
}


@pytest.mark.parametrize("bad", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_an_unusable_setting_is_not_offered_and_never_logged(database: str, provider_log: pytest.LogCaptureFixture,
                                                             bad: Callable[[], dict[str, str]]) -> None:
    change = bad()
    built = wechat_app(database, "http://127.0.0.1:9", **change)
    assert "wechat" not in built.extensions["heyon.providers"]
    [line] = [r.getMessage() for r in provider_log.records if "wechat" in r.getMessage()]
    assert next(iter(change)) in line
    assert_no_key_in(provider_log.text, *change.values())


def _pem_body(pem: str) -> str:
    return "".join(pem.strip().splitlines()[1:-1])


def assert_no_key_in(text: str, *more: str) -> None:
    secrets_ = [private_pem(keys().merchant), private_pem(keys().platform), public_pem(keys().platform),
                public_pem(keys().merchant), keys().api_v3, *more]
    for value in secrets_:
        body = _pem_body(value) if "-----" in value else value
        for i in range(0, max(len(body) - 16, 1), 16):  # not even a piece of one
            assert body[i:i + 16] not in text


def certificate_pem(serial: int) -> str:
    """A self-signed certificate for WeChat's platform key, as older merchant accounts get."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(keys().platform.public_key())
            .serial_number(serial).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .sign(keys().platform, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_keys_from_files(tmp_path: Path, fake: WechatFakeApi, order_no: str) -> None:
    files = {"HEYON_WECHAT_PRIVATE_KEY": private_pem(keys().merchant), "HEYON_WECHAT_API_V3_KEY": keys().api_v3 + "\n",
             "HEYON_WECHAT_PLATFORM_PUBLIC_KEY": public_pem(keys().platform)}
    config = dict(KIT.config(fake.base_url))
    for name, value in files.items():
        path = tmp_path / name.lower()
        path.write_text(value)
        config[name], config[name + "_FILE"] = "", str(path)
    provider = WechatPayProvider(config)
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    event = provider.query(order_no)
    assert event is not None and event.kind == "paid"
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    assert provider.parse_callback(body, headers).amount_fen == kit.ORDER_FEN


def test_a_platform_certificate_instead_of_a_public_key(app: Flask, order_no: str) -> None:
    serial = 0x5D8B1C2A3F4E
    config = {**KIT.config("http://127.0.0.1:9"), "HEYON_WECHAT_PLATFORM_PUBLIC_KEY": certificate_pem(serial),
              "HEYON_WECHAT_PLATFORM_SERIAL": f"{serial:X}"}
    provider = WechatPayProvider(config)
    body, _ = KIT.notification(order_no, kit.ORDER_FEN, TXN)
    event = provider.parse_callback(body, signed_headers(body, serial=f"{serial:X}"))
    assert (event.order_no, event.txn_id, event.amount_fen) == (order_no, TXN, kit.ORDER_FEN)
    with pytest.raises(InvalidSignature):
        provider.parse_callback(body, signed_headers(body, serial=PLATFORM_SERIAL))



# ------------------------------------------------------------------ JSAPI: paying inside WeChat

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def jsapi_provider(fake: WechatFakeApi, **overrides: str) -> WechatPayProvider:
    """The adapter with the official account bound to the merchant (JSAPI orders)."""
    return WechatPayProvider({**KIT.config(fake.base_url), "HEYON_WECHAT_MP_APPID": MP_APPID, **overrides})


def payer_ref(order_no: str) -> OrderRef:
    return OrderRef(order_no, kit.ORDER_FEN, "Heyon card recharge", f"http://heyon.test/orders/{order_no}",
                    "203.0.113.7", payer_openid=OPENID)


def test_checkout_for_a_payer_is_a_jsapi_order_under_the_official_account(app: Flask, fake: WechatFakeApi,
                                                                          order_no: str) -> None:
    """With the payer's openid, whatever the device: a JSAPI order made under the appid the openid
    belongs to, and pay sheet parameters WeChat's client accepts (signed with the merchant key)."""
    checkout = jsapi_provider(fake).checkout(payer_ref(order_no), "mobile")
    assert (checkout.redirect_url, checkout.qr_payload, checkout.provider_ref) == (None, None, None)
    [(method, path, _)] = fake.seen
    assert (method, path, fake.refused) == ("POST", "/v3/pay/transactions/jsapi", [])
    sent = fake.trades[order_no].request
    assert (sent["appid"], sent["mchid"], sent["out_trade_no"], sent["payer"]) == (
        MP_APPID, MCHID, order_no, {"openid": OPENID})
    assert sent["amount"] == {"total": kit.ORDER_FEN, "currency": "CNY"}
    assert "scene_info" not in sent  # H5's; a JSAPI order names its payer instead
    sheet = checkout.jsapi
    assert sheet is not None and pay_sheet_verifies(sheet)
    assert (sheet["appId"], sheet["signType"]) == (MP_APPID, "RSA")
    assert fake.prepay_ids[sheet["package"].removeprefix("prepay_id=")] == order_no
    assert abs(int(sheet["timeStamp"]) - datetime.now(UTC).timestamp()) < 5


def test_a_pay_sheet_changed_after_signing_does_not_verify(app: Flask, fake: WechatFakeApi, order_no: str) -> None:
    """What makes pay_sheet_verifies worth asking: another order's package, under the same sign."""
    sheet = dict(jsapi_provider(fake).checkout(payer_ref(order_no), "mobile").jsapi or {})
    assert pay_sheet_verifies(sheet)
    assert not pay_sheet_verifies({**sheet, "package": "prepay_id=wx" + "0" * 32})
    assert not pay_sheet_verifies({**sheet, "signType": "MD5"})


def test_a_jsapi_checkout_without_an_official_account_asks_nothing(app: Flask, fake: WechatFakeApi,
                                                                   order_no: str) -> None:
    with pytest.raises(ProviderUnavailable, match="HEYON_WECHAT_MP_APPID"):
        WechatPayProvider(KIT.config(fake.base_url)).checkout(payer_ref(order_no), "mobile")
    assert fake.seen == []


@pytest.mark.parametrize("failure", ["down", "unsigned", "other", "stale", "unknown_serial", "tampered", "garbled"])
def test_a_jsapi_checkout_without_a_usable_answer_is_provider_unavailable(app: Flask, fake: WechatFakeApi,
                                                                         order_no: str, failure: str) -> None:
    if failure == "down":
        fake.fail_next = 1
    else:
        fake.answer_with = failure
    with pytest.raises(ProviderUnavailable):
        jsapi_provider(fake).checkout(payer_ref(order_no), "mobile")


def test_a_jsapi_payment_is_notified_and_queried_under_the_official_account(app: Flask, fake: WechatFakeApi,
                                                                          order_no: str) -> None:
    """Notifications and query answers about a JSAPI order carry MP_APPID; the adapter without
    that account configured still refuses them, so the appid is checked, not ignored."""
    body, headers = jsapi_notification(order_no, kit.ORDER_FEN, TXN)
    event = jsapi_provider(fake).parse_callback(body, headers)
    assert (event.kind, event.order_no, event.txn_id, event.amount_fen) == ("paid", order_no, TXN, kit.ORDER_FEN)
    with pytest.raises(MalformedCallback, match="appid is not ours"):
        WechatPayProvider(KIT.config(fake.base_url)).parse_callback(body, headers)
    txn_id = KIT.pay(fake, order_no, kit.ORDER_FEN)
    fake.answer_appid = MP_APPID
    queried = jsapi_provider(fake).query(order_no)
    assert queried is not None and (queried.kind, queried.txn_id) == ("paid", txn_id)
    with pytest.raises(ProviderUnavailable, match="another order or merchant"):
        WechatPayProvider(KIT.config(fake.base_url)).query(order_no)


# ------------------------------------------------------------------ WeChat's web sign-in (the openid)


@pytest.fixture
def oauth_api() -> Iterator[WechatOAuthFake]:
    with serving(oauth_fake()) as api:
        assert isinstance(api, WechatOAuthFake)
        yield api


def test_the_authorize_address_is_wechats_documented_one(oauth_api: WechatOAuthFake) -> None:
    url = WechatOAuth(jsapi_config(oauth_api.base_url)).authorize_url("https://heyon.example/wechat/signed-in", "s1")
    assert url == (f"{oauth_api.base_url}/connect/oauth2/authorize?appid={MP_APPID}"
                   "&redirect_uri=https%3A%2F%2Fheyon.example%2Fwechat%2Fsigned-in&response_type=code"
                   "&scope=snsapi_base&state=s1#wechat_redirect")


def test_a_code_is_traded_for_the_openid_once(oauth_api: WechatOAuthFake) -> None:
    oauth = WechatOAuth(jsapi_config(oauth_api.base_url))
    code = oauth_api.code_for()
    assert oauth.openid_for(code) == oauth_api.openid
    with pytest.raises(CodeRefused, match="40163"):  # WeChat's "code been used"
        oauth.openid_for(code)
    with pytest.raises(CodeRefused, match="40029"):  # never issued
        oauth.openid_for("0" * 32)


def test_a_code_not_of_wechats_form_is_refused_without_asking(oauth_api: WechatOAuthFake) -> None:
    oauth = WechatOAuth(jsapi_config(oauth_api.base_url))
    for code in ("", "a b", "x" * 129, "../../x", "code&secret=1"):
        with pytest.raises(CodeRefused):
            oauth.openid_for(code)
    assert oauth_api.seen == []


def test_a_wrong_secret_is_code_refused(oauth_api: WechatOAuthFake) -> None:
    oauth = WechatOAuth({**jsapi_config(oauth_api.base_url), "HEYON_WECHAT_MP_SECRET": "f" * 32})
    with pytest.raises(CodeRefused, match="40125"):
        oauth.openid_for(oauth_api.code_for())


def test_wechat_sign_in_unreachable_is_provider_unavailable_and_never_says_the_secret(
        oauth_api: WechatOAuthFake) -> None:
    """The secret travels in the request's query string: no error may carry the URL."""
    answering = WechatOAuth(jsapi_config(oauth_api.base_url))
    oauth_api.fail_next = 1
    with pytest.raises(ProviderUnavailable, match="HTTP 503") as failed:
        answering.openid_for(oauth_api.code_for())
    assert MP_SECRET not in str(failed.value)
    nowhere = WechatOAuth({**jsapi_config(oauth_api.base_url), "HEYON_WECHAT_OAUTH_BASE": "http://127.0.0.1:9"})
    with pytest.raises(ProviderUnavailable) as refused_connection:
        nowhere.openid_for(oauth_api.code_for())
    assert MP_SECRET not in str(refused_connection.value)
    assert refused_connection.value.__cause__ is None and refused_connection.value.__suppress_context__


def test_jsapi_is_offered_with_the_official_accounts_settings(database: str, oauth_api: WechatOAuthFake,
                                                             tmp_path: Path) -> None:
    """With the account's appid and secret (the secret from a file, as keys are mounted), WeChat's
    browser pays by JSAPI; without them, or without WeChat Pay, it is not offered."""
    secret = tmp_path / "mp_secret"
    secret.write_text(MP_SECRET + "\n")
    config = {**jsapi_config(oauth_api.base_url), "HEYON_WECHAT_MP_SECRET": "",
              "HEYON_WECHAT_MP_SECRET_FILE": str(secret)}
    built = wechat_app(database, "http://127.0.0.1:9", **config)
    assert isinstance(built.extensions["heyon.wechat_oauth"], WechatOAuth)
    assert wechat_app(database, "http://127.0.0.1:9").extensions["heyon.wechat_oauth"] is None
    sandbox_only = create_app({**TEST_CONFIG, "DATABASE_URL": database, **jsapi_config(oauth_api.base_url)})
    assert sandbox_only.extensions["heyon.wechat_oauth"] is None


def test_a_malformed_official_account_appid_is_not_offered_and_says_why(
        database: str, oauth_api: WechatOAuthFake, provider_log: pytest.LogCaptureFixture) -> None:
    built = wechat_app(database, "http://127.0.0.1:9",
                       **{**jsapi_config(oauth_api.base_url), "HEYON_WECHAT_MP_APPID": "gh_0123456789ab"})
    assert built.extensions["heyon.wechat_oauth"] is None
    assert "wechat" in built.extensions["heyon.providers"]  # WeChat Pay itself still works
    assert any("HEYON_WECHAT_MP_APPID" in r.getMessage() for r in provider_log.records)
    assert MP_SECRET not in provider_log.text
