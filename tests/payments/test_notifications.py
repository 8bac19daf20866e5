"""The sandbox provider's notification at POST /pay/notify/sandbox: only a verified, matching
notification moves money, exactly once; everything else is answered without a 5xx and kept on record."""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, SandboxPayment

from tests.kit import SANDBOX_SECRET
from tests.kit import (
    OPENING_FEN,
    assert_not_credited,
    balance,
    callbacks,
    deliver_outbox,
    entries_of,
    make_card,
    notification,
    order,
    start_order,
)
from tests.payments.kit import FORM, NOTIFY, pay_on_gateway, post_notify

ORDER_YUAN, ORDER_FEN = "100.00", 10000  # what kit.start_order orders by default
# The fields the sandbox gateway sends, as its docstring and views describe them (Alipay's names).
DOCUMENTED_FIELDS = {"out_trade_no", "trade_no", "total_amount", "trade_status", "notify_id", "notify_time",
                     "sign_type", "sign"}


pytestmark = pytest.mark.usefixtures("books_balance")


@pytest.fixture
def order_no(client: FlaskClient) -> str:
    """A pending sandbox order of 100.00 on a card holding 5.00."""
    make_card(balance_fen=OPENING_FEN)
    return start_order(client)


# ------------------------------------------------------------------ helpers (could move to kit.py)


def assert_refused(response: TestResponse) -> None:
    assert 400 <= response.status_code < 500, response.status_code
    assert response.get_data(as_text=True) == "fail"


def reference_sign(fields: Mapping[str, str], secret: str) -> str:
    """The documented algorithm, written independently of the provider's own `sign`."""
    message = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k not in ("sign", "sign_type") and fields[k])
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ a valid notification


def test_valid_notification_credits_and_answers_success(client: FlaskClient, order_no: str) -> None:
    answer = post_notify(client, notification(order_no, ORDER_YUAN))
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "success")
    assert answer.content_type.startswith("text/plain")
    found = order(order_no)
    assert (found.status, found.paid_fen) == ("credited", ORDER_FEN)
    assert balance() == OPENING_FEN + ORDER_FEN
    assert entries_of(order_no) == 1
    assert [(c.outcome, c.order_no) for c in callbacks()] == [("credited", order_no)]


def test_the_same_notification_again_credits_nothing_more(client: FlaskClient, order_no: str) -> None:
    fields = notification(order_no, ORDER_YUAN)
    answers = [post_notify(client, fields) for _ in range(3)]  # providers retry until "success"
    assert [(a.status_code, a.get_data(as_text=True)) for a in answers] == [(200, "success")] * 3
    assert balance() == OPENING_FEN + ORDER_FEN
    assert entries_of(order_no) == 1
    assert [c.outcome for c in callbacks()] == ["credited", "duplicate", "duplicate"]


def test_trade_finished_after_trade_success_credits_nothing_more(client: FlaskClient, order_no: str) -> None:
    # Alipay sends TRADE_FINISHED when a trade can no longer be refunded: same trade, new message.
    first = notification(order_no, ORDER_YUAN)
    assert post_notify(client, first).get_data(as_text=True) == "success"
    finished = notification(order_no, ORDER_YUAN, status="TRADE_FINISHED", trade_no=first["trade_no"])
    assert post_notify(client, finished).get_data(as_text=True) == "success"
    assert balance() == OPENING_FEN + ORDER_FEN
    assert db.session.scalar(select(func.count()).select_from(PaymentEvent)) == 1


def test_a_second_payment_of_a_credited_order_is_not_credited(client: FlaskClient, order_no: str) -> None:
    assert post_notify(client, notification(order_no, ORDER_YUAN)).get_data(as_text=True) == "success"
    again = post_notify(client, notification(order_no, ORDER_YUAN))  # another trade_no: real money paid twice
    assert again.get_data(as_text=True) == "success"  # on record; a person refunds it, retries would not help
    assert order(order_no).status == "credited"
    assert balance() == OPENING_FEN + ORDER_FEN
    assert [c.outcome for c in callbacks()] == ["credited", "paid_again"]


# ------------------------------------------------------------------ signatures


Edit = Callable[[dict[str, str]], dict[str, str]]


def _other_secret(f: dict[str, str]) -> dict[str, str]:
    return notification(f["out_trade_no"], ORDER_YUAN, secret="not-" + SANDBOX_SECRET)


def _changed(**changes: str) -> Edit:
    return lambda f: {**f, **changes}


def _without(name: str) -> Edit:
    return lambda f: {k: v for k, v in f.items() if k != name}


FORGERIES: dict[str, Edit] = {
    "other secret": _other_secret,
    "amount changed after signing": _changed(total_amount="1000.00"),
    "trade_no changed after signing": _changed(trade_no="SBXFORGED"),
    "field added after signing": _changed(buyer_id="2088"),
    "sign missing": _without("sign"),
    "sign empty": _changed(sign=""),
    # sign_type is not signed, so these keep a signature that verifies: only the type is wrong.
    "sign_type RSA2": _changed(sign_type="RSA2"),
    "sign_type lower case": _changed(sign_type="hmac-sha256"),
    "sign_type missing": _without("sign_type"),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_bad_signature_credits_nothing_and_is_kept(client: FlaskClient, order_no: str, forge: Edit) -> None:
    body = urlencode(forge(notification(order_no, ORDER_YUAN)))
    answer = post_notify(client, body.encode())
    assert_refused(answer)
    assert order(order_no).status == "pending"
    assert_not_credited(order_no)
    [kept] = callbacks()
    assert (kept.provider, kept.outcome, kept.body, kept.content_type) == ("sandbox", "bad_signature", body, FORM)
    assert kept.order_no is None  # nothing from an unverified body is trusted, not even the order number


# ------------------------------------------------------------------ verified, but not a plain payment


def test_unknown_order_is_refused(client: FlaskClient, order_no: str) -> None:
    answer = post_notify(client, notification("2601010000000000", ORDER_YUAN))
    assert (answer.status_code, answer.get_data(as_text=True)) == (404, "fail")
    assert_not_credited(order_no)
    assert db.session.scalar(select(func.count()).select_from(PaymentEvent)) == 0
    assert [c.outcome for c in callbacks()] == ["unknown_order"]


@pytest.mark.parametrize(("paid", "paid_fen"), [("99.99", 9999), ("100.01", 10001), ("0.01", 1), ("10000.00", 1000000)])
def test_a_different_amount_goes_to_review(client: FlaskClient, order_no: str, paid: str, paid_fen: int) -> None:
    answer = post_notify(client, notification(order_no, paid))
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "success")  # on record; stop retrying
    found = order(order_no)
    assert (found.status, found.status_reason) == ("review", "amount_mismatch")
    assert found.paid_fen == paid_fen
    assert_not_credited(order_no)


def test_trade_closed_fails_the_order(client: FlaskClient, order_no: str) -> None:
    answer = post_notify(client, notification(order_no, ORDER_YUAN, status="TRADE_CLOSED"))
    assert answer.get_data(as_text=True) == "success"
    found = order(order_no)
    assert (found.status, found.status_reason) == ("failed", "closed_by_provider")
    assert found.finalized_at is not None
    assert_not_credited(order_no)


def test_a_payment_after_trade_closed_goes_to_review(client: FlaskClient, order_no: str) -> None:
    assert post_notify(client, notification(order_no, ORDER_YUAN, status="TRADE_CLOSED")).get_data(as_text=True) == "success"
    answer = post_notify(client, notification(order_no, ORDER_YUAN))
    assert answer.get_data(as_text=True) == "success"
    found = order(order_no)
    assert (found.status, found.status_reason) == ("review", "paid_after_close")
    assert_not_credited(order_no)


def test_trade_closed_after_credit_is_money_returned_and_debits_nothing(client: FlaskClient, order_no: str) -> None:
    # Closing a paid trade gives the money back: a person decides (tests/payments/test_refunds.py).
    first = notification(order_no, ORDER_YUAN)
    post_notify(client, first)
    closed = post_notify(client, notification(order_no, ORDER_YUAN, status="TRADE_CLOSED", trade_no=first["trade_no"]))
    assert closed.get_data(as_text=True) == "success"
    found = order(order_no)
    assert (found.status, found.attention) == ("credited", "money_returned")
    assert balance() == OPENING_FEN + ORDER_FEN
    assert [c.outcome for c in callbacks()] == ["credited", "refunded"]


MALFORMED: dict[str, Edit] = {
    "unknown status": _changed(trade_status="WAIT_BUYER_PAY"),
    "exponent amount": _changed(total_amount="1e2"),
    "negative amount": _changed(total_amount="-100.00"),
    "no amount": _without("total_amount"),
    "no trade_no": _without("trade_no"),
    "no out_trade_no": _without("out_trade_no"),
    "long trade_no": _changed(trade_no="T" * 65),
}


@pytest.mark.parametrize("malform", MALFORMED.values(), ids=MALFORMED.keys())
def test_signed_but_malformed_is_refused(client: FlaskClient, order_no: str, malform: Edit) -> None:
    fields = malform(notification(order_no, ORDER_YUAN))
    fields["sign"] = reference_sign(fields, SANDBOX_SECRET)  # properly signed: only the content is wrong
    answer = post_notify(client, fields)
    assert_refused(answer)
    assert order(order_no).status == "pending"
    assert_not_credited(order_no)
    assert [c.outcome for c in callbacks()] == ["malformed"]


# ------------------------------------------------------------------ bodies that are not a notification


def _repeated(order_no: str) -> bytes:
    fields = notification(order_no, ORDER_YUAN)
    return (urlencode(fields) + "&" + urlencode({"total_amount": fields["total_amount"]})).encode()


def _nul_appended(order_no: str) -> bytes:
    return urlencode(notification(order_no, ORDER_YUAN)).encode() + b"\x00"


JUNK: dict[str, Callable[[str], bytes]] = {
    "empty": lambda o: b"",
    "not form-encoded": lambda o: b"this is not a form",
    "binary": lambda o: bytes(range(256)) * 4,
    "NUL bytes only": lambda o: b"\x00" * 200,
    "NUL after a signed body": _nul_appended,
    "repeated field": _repeated,
    "60 KB of junk": lambda o: b"A" * 60 * 1024,
    "too many fields": lambda o: b"a=b&" * 10_000,
    "JSON": lambda o: json.dumps(notification(o, ORDER_YUAN)).encode(),
}


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
def test_malformed_body_is_refused_without_a_5xx(client: FlaskClient, order_no: str,
                                                 junk: Callable[[str], bytes]) -> None:
    answer = post_notify(client, junk(order_no))
    assert_refused(answer)
    assert order(order_no).status == "pending"
    assert_not_credited(order_no)
    [kept] = callbacks()
    assert kept.outcome == "bad_signature"
    assert len(kept.body) <= 16 * 1024 and "\x00" not in kept.body  # stored, capped, and storable in PostgreSQL


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"])
def test_json_or_other_content_is_refused(client: FlaskClient, order_no: str, content_type: str) -> None:
    answer = post_notify(client, json.dumps(notification(order_no, ORDER_YUAN)).encode(), content_type)
    assert_refused(answer)
    assert_not_credited(order_no)


def test_the_signature_not_the_content_type_is_what_is_trusted(client: FlaskClient, order_no: str) -> None:
    # A correctly signed form body is authentic whatever header came with it; documented here so
    # that a change to refuse it (which would also be acceptable) is a conscious one.
    answer = post_notify(client, notification(order_no, ORDER_YUAN), content_type="text/plain")
    assert answer.get_data(as_text=True) == "success"
    assert balance() == OPENING_FEN + ORDER_FEN


def test_a_body_over_64_kb_is_refused_before_the_view(client: FlaskClient, order_no: str) -> None:
    answer = post_notify(client, b"A" * 65 * 1024)
    assert (answer.status_code, answer.get_data(as_text=True)) == (413, "fail")
    assert_not_credited(order_no)


@pytest.mark.parametrize("field", ["out_trade_no", "trade_no"])
def test_nul_in_a_signed_field_is_refused(request: pytest.FixtureRequest, database: str, client: FlaskClient,
                                          order_no: str, field: str) -> None:
    # Only the provider can sign this, but the same body must get the same answer on both
    # databases, and never a 5xx (which makes a provider retry for a day). PostgreSQL text cannot
    # hold NUL, so the adapter has to refuse it as malformed before it reaches a query.
    fields = notification(order_no, ORDER_YUAN)
    fields[field] += "\x00"
    fields["sign"] = reference_sign(fields, SANDBOX_SECRET)
    answer = post_notify(client, fields)
    assert_refused(answer)
    assert_not_credited(order_no)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_not_allowed(client: FlaskClient, method: str) -> None:
    answer = client.open(NOTIFY, method=method)
    assert answer.status_code == 405
    assert callbacks() == []


def test_405_names_the_allowed_method(client: FlaskClient) -> None:
    assert "POST" in client.get(NOTIFY).headers.get("Allow", "")  # RFC 9110: a 405 MUST carry Allow


def test_unknown_provider_is_404(client: FlaskClient, order_no: str) -> None:
    answer = client.post("/pay/notify/alipay", data=notification(order_no, ORDER_YUAN))
    assert (answer.status_code, answer.get_data(as_text=True)) == (404, "fail")
    assert_not_credited(order_no)


# ------------------------------------------------------------------ what the sandbox gateway sends


def test_gateway_notification_is_signed_with_exactly_the_documented_fields(app: Flask, client: FlaskClient, order_no: str) -> None:
    pay_on_gateway(client, order_no)
    outbox: list[tuple[str, dict[str, str]]] = app.extensions["heyon.test_outbox"]
    [(url, fields)] = outbox
    assert url == "http://heyon.test/pay/notify/sandbox"
    assert set(fields) == DOCUMENTED_FIELDS
    assert fields["sign"] == reference_sign(fields, SANDBOX_SECRET)
    db.session.rollback()
    trade_no = db.session.scalar(select(SandboxPayment.trade_no).where(SandboxPayment.order_no == order_no))
    assert {k: fields[k] for k in ("out_trade_no", "trade_no", "total_amount", "trade_status", "sign_type")} == {
        "out_trade_no": order_no, "trade_no": trade_no, "total_amount": ORDER_YUAN,
        "trade_status": "TRADE_SUCCESS", "sign_type": "HMAC-SHA256"}
    assert deliver_outbox(app, client) == ["success"]
    assert balance() == OPENING_FEN + ORDER_FEN


def test_gateway_failure_sends_trade_closed(app: Flask, client: FlaskClient, order_no: str) -> None:
    pay_on_gateway(client, order_no, "fail")
    [(_, fields)] = app.extensions["heyon.test_outbox"]
    assert fields["trade_status"] == "TRADE_CLOSED"
    assert fields["sign"] == reference_sign(fields, SANDBOX_SECRET)
    assert deliver_outbox(app, client) == ["success"]
    assert order(order_no).status == "failed"
    assert_not_credited(order_no)


def test_gateway_silent_payment_sends_nothing(app: Flask, client: FlaskClient, order_no: str) -> None:
    pay_on_gateway(client, order_no, "silent")
    assert app.extensions["heyon.test_outbox"] == []
    assert order(order_no).status == "pending"  # reconciliation finds it (tests/payments/test_reconcile_command.py)
