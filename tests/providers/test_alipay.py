"""The Alipay adapter: signed links at checkout, notifications verified with Alipay's key and
nothing else, and the open API (query, close) against a local fake of Alipay's gateway."""
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
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site import create_app
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, ProviderCallback
from heyon_site.payments.reconcile import candidate, check_one
from heyon_site.providers import alipay
from heyon_site.providers import get as get_provider
from heyon_site.providers.alipay import AlipayProvider, WaitingForPayment
from heyon_site.providers.base import OrderRef, ProviderUnavailable

from tests import kit
from tests.kit import TEST_CONFIG, held
from tests.fakes import serving
from tests.provider_kits.alipay import (
    APP_ID,
    KIT,
    AlipayFakeApi,
    content,
    keys,
    private_pem,
    public_pem,
    verifies,
)

pytestmark = pytest.mark.usefixtures("books_balance")

NOTIFY = "/pay/notify/alipay"


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def fake() -> Iterator[AlipayFakeApi]:
    with serving(KIT.fake_api()) as api:
        assert isinstance(api, AlipayFakeApi)
        yield api


def alipay_app(database: str, base_url: str, **overrides: Any) -> Flask:
    return create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_PROVIDERS": ("alipay",),
                       **KIT.config(base_url), **overrides})


@pytest.fixture
def app(database: str, fake: AlipayFakeApi) -> Iterator[Flask]:
    """The site with Alipay as its only provider, its gateway the fake one."""
    with held(alipay_app(database, fake.base_url)) as app:
        yield app


@pytest.fixture
def provider(app: Flask) -> AlipayProvider:
    found = get_provider("alipay")
    assert isinstance(found, AlipayProvider)
    return found


new_order = functools.partial(kit.provider_order, "alipay")


@pytest.fixture
def order_no(app: Flask) -> str:
    """A pending Alipay order of 100.00 on a card holding 5.00."""
    return new_order()


post = functools.partial(kit.post_notification, NOTIFY)


# ------------------------------------------------------------------ a genuine notification


def test_genuine_notification_credits_exactly_once(client: FlaskClient, order_no: str) -> None:
    message = KIT.notification(order_no, kit.ORDER_FEN, "2026010122001400000000000001")
    assert post(client, message) == (200, "success")
    assert post(client, message) == (200, "success")  # Alipay's retry: acknowledged, not credited
    found = kit.order(order_no)
    assert (found.status, found.paid_fen, found.provider_txn_id) == ("credited", kit.ORDER_FEN, "2026010122001400000000000001")
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1
    assert [(c.outcome, c.order_no) for c in kit.callbacks()] == [("credited", order_no), ("duplicate", order_no)]


def test_trade_finished_after_trade_success_credits_nothing_more(client: FlaskClient, order_no: str) -> None:
    # TRADE_FINISHED comes when the trade can no longer be refunded: the same payment again.
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, "T1")) == (200, "success")
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, "T1", trade_status="TRADE_FINISHED")) == (200, "success")
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert [c.outcome for c in kit.callbacks()] == ["credited", "duplicate"]


def test_url_encoded_values_are_verified_decoded(client: FlaskClient, order_no: str) -> None:
    # fund_bill_list is JSON, buyer_logon_id has "*", subject has spaces: all percent-encoded on
    # the wire and signed as plain text; a field Alipay sends empty is not in the signed content.
    message = KIT.notification(order_no, kit.ORDER_FEN, "T2", body="", passback_params="a=1&b=中文 +/")
    assert post(client, message) == (200, "success")
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


def test_a_different_amount_is_never_credited(client: FlaskClient, order_no: str) -> None:
    # Signed by Alipay, so someone really paid 0.01: on record for a person, answered "success".
    assert post(client, KIT.notification(order_no, 1, "T3")) == (200, "success")
    found = kit.order(order_no)
    assert (found.status, found.status_reason, found.paid_fen) == ("review", "amount_mismatch", 1)
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["amount_mismatch"]


def test_trade_closed_fails_the_order(client: FlaskClient, order_no: str) -> None:
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, "T4", trade_status="TRADE_CLOSED")) == (200, "success")
    found = kit.order(order_no)
    assert (found.status, found.status_reason) == ("failed", "closed_by_provider")
    kit.assert_not_credited(order_no)


def test_unknown_order_is_refused(client: FlaskClient, order_no: str) -> None:
    assert post(client, KIT.notification("2601010000000000", kit.ORDER_FEN, "T5")) == (404, "fail")
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["unknown_order"]


# ------------------------------------------------------------------ nothing else moves money


LONG_AGO = datetime.now(UTC) - timedelta(days=3)
TOMORROW = datetime.now(UTC) + timedelta(days=1)

# (tamper options, the outcome kept with the raw callback)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "signed with another key": ({"key": "other"}, "bad_signature"),
    "signed with our own app key": ({"key": "app"}, "bad_signature"),
    "amount changed after signing": ({"after_signing": {"total_amount": "1.00"}}, "bad_signature"),
    "status changed after signing": ({"trade_status": "WAIT_BUYER_PAY", "after_signing": {"trade_status": "TRADE_SUCCESS"}}, "bad_signature"),
    "order changed after signing": ({"after_signing": {"out_trade_no": "2601010000000001"}}, "bad_signature"),
    "field added after signing": ({"after_signing": {"refund_fee": "100.00"}}, "bad_signature"),
    "sign missing": ({"drop": ("sign",)}, "bad_signature"),
    "sign empty": ({"after_signing": {"sign": ""}}, "bad_signature"),
    "sign not base64": ({"after_signing": {"sign": "not base64!"}}, "bad_signature"),
    "sign_type RSA (SHA-1)": ({"after_signing": {"sign_type": "RSA"}}, "bad_signature"),
    "sign_type missing": ({"drop": ("sign_type",)}, "bad_signature"),
    "stale notify_time": ({"notify_time": LONG_AGO}, "bad_signature"),
    "notify_time in the future": ({"notify_time": TOMORROW}, "bad_signature"),
    "foreign app_id": ({"app_id": "2021999999999999"}, "malformed"),
    "no app_id": ({"app_id": None}, "malformed"),
    "foreign seller_id": ({"seller_id": "2088999999999999"}, "malformed"),
    "no seller_id": ({"seller_id": None}, "malformed"),
    "no notify_time": ({"notify_time": None}, "malformed"),
    "unknown status": ({"trade_status": "TRADE_PENDING"}, "malformed"),
    "no status": ({"trade_status": None}, "malformed"),
    "exponent amount": ({"total_amount": "1e4"}, "malformed"),
    "three decimals": ({"total_amount": "100.000"}, "malformed"),
    "amount with a currency mark": ({"total_amount": "¥100.00"}, "malformed"),
    "negative amount": ({"total_amount": "-100.00"}, "malformed"),
    "no amount": ({"total_amount": None}, "malformed"),
    "out_trade_no not ours": ({"out_trade_no": "HEYON-1"}, "malformed"),
    "NUL in out_trade_no": ({"out_trade_no": "2601010000000000\x00"}, "malformed"),
    "no trade_no": ({"trade_no": None}, "malformed"),
    "long trade_no": ({"trade_no": "2" * 65}, "malformed"),
}


@pytest.mark.parametrize(("tamper", "outcome"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_notification_credits_nothing_and_is_kept(client: FlaskClient, order_no: str,
                                                          tamper: dict[str, Any], outcome: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, "2026010122001400000000000009", **tamper)
    assert post(client, (body, headers)) == (400, "fail")  # not "success": Alipay sends it again
    assert kit.order(order_no).status == "pending"
    kit.assert_not_credited(order_no)
    assert db.session.scalar(select(func.count()).select_from(PaymentEvent)) == 0
    [kept] = kit.callbacks()
    assert (kept.provider, kept.outcome, kit.kept_body(kept)) == ("alipay", outcome, kit.as_refused(body))
    assert kept.order_no is None  # nothing of a refused body is trusted, not even the order number


def test_wait_buyer_pay_is_acknowledged_and_changes_nothing(provider: AlipayProvider, order_no: str, client: FlaskClient) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, "T6", trade_status="WAIT_BUYER_PAY")
    with pytest.raises(WaitingForPayment):
        provider.parse_callback(body, headers)
    assert post(client, (body, headers)) == (200, "success")  # nothing to do: Alipay may stop sending
    assert kit.order(order_no).status == "pending"
    kit.assert_not_credited(order_no)
    [kept] = kit.callbacks()
    assert kept.outcome == "ignored"


JUNK = {
    "empty": b"",
    "not a form": b"this is not a form",
    "binary": bytes(range(256)) * 4,
    "JSON": json.dumps({"trade_status": "TRADE_SUCCESS"}).encode(),
    "too many fields": b"a=b&" * 1000,
    "bad percent-encoding": b"trade_status=%FF%FE&sign=x",
}


@pytest.mark.parametrize("body", JUNK.values(), ids=JUNK.keys())
def test_junk_is_refused_without_a_5xx(client: FlaskClient, order_no: str, body: bytes) -> None:
    assert post(client, (body, {"Content-Type": "application/x-www-form-urlencoded"})) == (400, "fail")
    kit.assert_not_credited(order_no)
    assert [c.outcome for c in kit.callbacks()] == ["bad_signature"]


def test_a_repeated_field_is_refused(client: FlaskClient, order_no: str) -> None:
    body, headers = KIT.notification(order_no, kit.ORDER_FEN, "T7")
    assert post(client, (body + b"&total_amount=1.00", headers)) == (400, "fail")
    kit.assert_not_credited(order_no)


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
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, "T8", key="other")) == (400, "fail")
    assert post(client, KIT.notification(order_no, kit.ORDER_FEN, "T8")) == (200, "success")
    assert no_network == []
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


# ------------------------------------------------------------------ many at once, on a real server


FORM = "application/x-www-form-urlencoded; charset=utf-8"


def _post_live(url: str, body: bytes, barrier: threading.Barrier) -> tuple[int, str]:
    barrier.wait(timeout=30)
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": FORM})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.mark.live
def test_twenty_copies_at_once_credit_once(app: Flask, database: str, tmp_path: Path, order_no: str) -> None:
    body, _ = KIT.notification(order_no, kit.ORDER_FEN, "2026010122001400000000000020")
    # gunicorn's workers read the same settings from their environment.
    env = {"HEYON_PROVIDERS": "alipay", **KIT.config("http://127.0.0.1:9")}
    with kit.live_site(database, tmp_path, workers=4, extra_env=env) as site:
        barrier = threading.Barrier(20)
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: _post_live(site.url + NOTIFY, body, barrier), range(20)))
        assert answers == [(200, "success")] * 20, site.log_text()[-3000:]
        assert "Traceback" not in site.log_text()
    assert kit.order(order_no).status == "credited"
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    assert kit.entries_of(order_no) == 1
    db.session.rollback()
    assert Counter(db.session.scalars(select(ProviderCallback.outcome).where(ProviderCallback.order_no == order_no))) \
        == Counter({"credited": 1, "duplicate": 19})


# ------------------------------------------------------------------ query and close


def test_query_of_an_order_never_opened_is_none(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str) -> None:
    assert provider.query(order_no) is None
    [(method, path, _)] = fake.seen
    assert (method, path) == ("POST", "/gateway.do")


def test_query_while_the_buyer_has_not_paid_is_none(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str) -> None:
    KIT.open_cashier(fake, order_no, kit.ORDER_FEN)
    assert provider.query(order_no) is None


def test_query_of_a_paid_order(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str) -> None:
    trade_no = KIT.pay(fake, order_no, kit.ORDER_FEN)
    event = provider.query(order_no)
    assert event is not None
    assert (event.provider, event.order_no, event.txn_id, event.kind, event.amount_fen) == (
        "alipay", order_no, trade_no, "paid", kit.ORDER_FEN)


def test_close_then_query_says_closed(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str) -> None:
    trade_no = KIT.open_cashier(fake, order_no, kit.ORDER_FEN)
    provider.close(order_no)
    event = provider.query(order_no)
    assert event is not None
    assert (event.kind, event.txn_id) == ("closed", trade_no)


def test_close_of_an_order_alipay_does_not_know_is_fine(provider: AlipayProvider, order_no: str) -> None:
    provider.close(order_no)


def test_close_of_a_paid_order_is_fine_and_query_still_says_paid(provider: AlipayProvider, fake: AlipayFakeApi,
                                                                 order_no: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    provider.close(order_no)  # ACQ.TRADE_STATUS_ERROR: nothing to close; the next query tells
    event = provider.query(order_no)
    assert event is not None and event.kind == "paid"


def test_reconciliation_credits_a_payment_whose_notification_was_lost(app: Flask, fake: AlipayFakeApi,
                                                                     order_no: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    found = candidate(order_no)
    assert found is not None
    assert check_one(found, get_provider, None) == "credited"
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


@pytest.mark.parametrize("call", ["query", "close"])
@pytest.mark.parametrize("failure", ["down", "garbled", "unsigned", "signed by another key"])
def test_no_usable_answer_is_provider_unavailable(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str,
                                                   call: str, failure: str) -> None:
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    if failure == "down":
        fake.fail_next = 1
    else:
        fake.answer_with = {"garbled": "garbled", "unsigned": "unsigned", "signed by another key": "other"}[failure]
    with pytest.raises(ProviderUnavailable):
        getattr(provider, call)(order_no)


def test_nothing_listening_is_provider_unavailable(order_no: str) -> None:
    with serving(KIT.fake_api()) as gone:
        url = gone.base_url  # a port that was just closed
    with pytest.raises(ProviderUnavailable):
        AlipayProvider(KIT.config(url)).query(order_no)


def test_a_slow_gateway_is_provider_unavailable(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alipay, "TIMEOUT", (1, 0.2))
    fake.delay = 1.0
    with pytest.raises(ProviderUnavailable):
        provider.query(order_no)


def test_a_request_not_signed_with_our_key_is_refused_by_the_gateway(fake: AlipayFakeApi, order_no: str) -> None:
    config = {**KIT.config(fake.base_url), "HEYON_ALIPAY_PRIVATE_KEY": private_pem(keys().other)}
    with pytest.raises(ProviderUnavailable, match="not a signed answer"):  # Alipay's refusal is unsigned
        AlipayProvider(config).query(order_no)


def test_requests_are_signed_as_documented(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str) -> None:
    provider.query(order_no)
    [(_, _, body)] = fake.seen
    params = dict(parse_qsl(body.decode()))
    assert {k: params[k] for k in ("app_id", "method", "charset", "sign_type", "version")} == {
        "app_id": APP_ID, "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2", "version": "1.0"}
    assert json.loads(params["biz_content"]) == {"out_trade_no": order_no}
    assert verifies(keys().app, content(params), params["sign"])


# ------------------------------------------------------------------ checkout


def link(url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.scheme}://{parts.netloc}{parts.path}", params, json.loads(params["biz_content"])


def beijing_now() -> datetime:
    return datetime.now(alipay.BEIJING).replace(tzinfo=None)


def order_ref(order_no: str) -> OrderRef:
    return OrderRef(order_no, kit.ORDER_FEN, "Heyon card recharge", f"http://heyon.test/orders/{order_no}")


def assert_signed_link(url: str, fake: AlipayFakeApi, method: str, product_code: str, order_no: str) -> dict[str, str]:
    where, params, biz = link(url)
    assert where == fake.base_url + "/gateway.do"
    assert verifies(keys().app, content(params), params["sign"])
    assert {k: params[k] for k in ("app_id", "method", "charset", "sign_type", "version", "notify_url", "return_url")} == {
        "app_id": APP_ID, "method": method, "charset": "utf-8", "sign_type": "RSA2", "version": "1.0",
        "notify_url": "http://heyon.test/pay/notify/alipay", "return_url": f"http://heyon.test/orders/{order_no}"}
    sent = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
    assert abs(sent - beijing_now()) < timedelta(minutes=1)  # Beijing time, whatever the server's zone
    assert {k: biz[k] for k in ("out_trade_no", "total_amount", "subject", "product_code", "timeout_express")} == {
        "out_trade_no": order_no, "total_amount": "100.00", "subject": "Heyon card recharge",
        "product_code": product_code, "timeout_express": "30m"}
    expires = datetime.strptime(biz["time_expire"], "%Y-%m-%d %H:%M:%S")
    assert abs(expires - (sent + AlipayProvider.pay_timeout)) < timedelta(seconds=2)
    return params


def test_checkout_on_a_phone_is_a_signed_wap_pay_link(provider: AlipayProvider, fake: AlipayFakeApi, order_no: str,
                                                      no_network: list[object]) -> None:
    checkout = provider.checkout(order_ref(order_no), "mobile")
    assert checkout.qr_payload is None and checkout.redirect_url is not None
    assert_signed_link(checkout.redirect_url, fake, "alipay.trade.wap.pay", "QUICK_WAP_WAY", order_no)
    assert no_network == [] and fake.seen == []  # a link, not an API call


def test_checkout_on_a_computer_is_page_pay_and_a_wap_pay_qr(provider: AlipayProvider, fake: AlipayFakeApi,
                                                             order_no: str) -> None:
    checkout = provider.checkout(order_ref(order_no), "desktop")
    assert checkout.redirect_url is not None and checkout.qr_payload is not None
    assert_signed_link(checkout.redirect_url, fake, "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY", order_no)
    assert_signed_link(checkout.qr_payload, fake, "alipay.trade.wap.pay", "QUICK_WAP_WAY", order_no)
    assert fake.seen == []


def test_a_configured_notify_url_is_used(fake: AlipayFakeApi, order_no: str) -> None:
    other = AlipayProvider({**KIT.config(fake.base_url), "HEYON_ALIPAY_NOTIFY_URL": "https://pay.heyon.example/pay/notify/alipay"})
    _, params, _ = link(other.checkout(order_ref(order_no), "mobile").redirect_url or "")
    assert params["notify_url"] == "https://pay.heyon.example/pay/notify/alipay"


def test_the_gateway_is_alipays_by_default(app: Flask, order_no: str) -> None:
    config = {k: v for k, v in KIT.config("unused").items() if k != "HEYON_ALIPAY_GATEWAY"}
    url = AlipayProvider(config).checkout(order_ref(order_no), "mobile").redirect_url or ""
    assert url.startswith("https://openapi.alipay.com/gateway.do?")


# ------------------------------------------------------------------ configuration


@pytest.fixture
def provider_log(database: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="heyon_site.providers")
    return caplog


def _pem_body(pem: str) -> str:
    return "".join(pem.strip().splitlines()[1:-1])


@pytest.mark.parametrize("missing", ["HEYON_ALIPAY_APP_ID", "HEYON_ALIPAY_SELLER_ID", "HEYON_ALIPAY_PRIVATE_KEY",
                                     "HEYON_ALIPAY_PUBLIC_KEY"])
def test_incomplete_configuration_is_not_offered_and_says_why(database: str, provider_log: pytest.LogCaptureFixture,
                                                              missing: str) -> None:
    config = {**KIT.config("http://127.0.0.1:9"), missing: ""}
    built = alipay_app(database, "http://127.0.0.1:9", **config)
    assert "alipay" not in built.extensions["heyon.providers"]
    [line] = [r.getMessage() for r in provider_log.records if "alipay" in r.getMessage()]
    assert missing in line
    assert_no_key_in(provider_log.text)


def _small_key() -> str:
    return private_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


BAD_KEYS: dict[str, Callable[[], dict[str, str]]] = {
    "private key is junk": lambda: {"HEYON_ALIPAY_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
    "bare base64 that is no key": lambda: {"HEYON_ALIPAY_PUBLIC_KEY": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"},
    "private key where the public key goes": lambda: {"HEYON_ALIPAY_PUBLIC_KEY": private_pem(keys().alipay)},
    "our own public key for Alipay's": lambda: {"HEYON_ALIPAY_PUBLIC_KEY": public_pem(keys().app)},
    "a 1024-bit key": lambda: {"HEYON_ALIPAY_PRIVATE_KEY": _small_key()},
}


@pytest.mark.parametrize("bad", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_an_unusable_key_is_not_offered_and_never_logged(database: str, provider_log: pytest.LogCaptureFixture,
                                                         bad: Callable[[], dict[str, str]]) -> None:
    change = bad()
    config = {**KIT.config("http://127.0.0.1:9"), **change}
    built = alipay_app(database, "http://127.0.0.1:9", **config)
    assert "alipay" not in built.extensions["heyon.providers"]
    [line] = [r.getMessage() for r in provider_log.records if "alipay" in r.getMessage()]
    assert next(iter(change)) in line
    assert_no_key_in(provider_log.text, *change.values())


def assert_no_key_in(text: str, *more: str) -> None:
    pems = [private_pem(keys().app), public_pem(keys().alipay), private_pem(keys().alipay), public_pem(keys().app), *more]
    for pem in pems:
        body = _pem_body(pem) if "-----" in pem else pem
        for i in range(0, len(body) - 40, 40):  # not even a piece of one
            assert body[i:i + 40] not in text


def test_keys_from_files_and_as_bare_base64(tmp_path: Path, fake: AlipayFakeApi, order_no: str) -> None:
    # Alipay's console hands keys out as one line of base64, without PEM armour.
    private, public = tmp_path / "app_private_key.pem", tmp_path / "alipay_public_key.txt"
    private.write_text(private_pem(keys().app))
    public.write_text(_pem_body(public_pem(keys().alipay)))
    config = {**KIT.config(fake.base_url), "HEYON_ALIPAY_PRIVATE_KEY": "", "HEYON_ALIPAY_PUBLIC_KEY": "",
              "HEYON_ALIPAY_PRIVATE_KEY_FILE": str(private), "HEYON_ALIPAY_PUBLIC_KEY_FILE": str(public)}
    provider = AlipayProvider(config)
    KIT.pay(fake, order_no, kit.ORDER_FEN)
    event = provider.query(order_no)
    assert event is not None and event.kind == "paid"
