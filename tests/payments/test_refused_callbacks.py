"""What a notification endpoint keeps of callbacks it refuses, and how many it takes from one address.

A refused callback (bad signature, malformed) is kept as its first KiB, the SHA-256 and the size
of the whole, in one small write; past HEYON_CALLBACK_REFUSAL_LIMIT refusals per address (every
provider's endpoint together) the answer is 429 and nothing is written. A verified callback is
kept whole, before its event is applied, and is never limited.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site.extensions import db
from heyon_site.models import ProviderCallback

from tests import kit
from tests.kit import new_client, site_for_tests
from tests.provider_kits.alipay import KIT as ALIPAY
from tests.provider_kits.wechat import KIT as WECHAT
from tests.payments.kit import statements

NOTIFY = "/pay/notify/sandbox"
FORM = "application/x-www-form-urlencoded"
LIMIT = 50
JUNK = b"A" * 60 * 1024  # an unsigned 60 KB post, as the attack sent a thousand of
WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")


@pytest.fixture
def limited(database: str) -> Iterator[Flask]:
    """The site with per-address limits on, kept in this process's memory (fresh for each app)."""
    with site_for_tests(database, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://",
                        HEYON_CALLBACK_REFUSAL_LIMIT=f"{LIMIT} per hour") as app:
        yield app


def from_address(app: Flask, address: str) -> FlaskClient:
    c = new_client(app)
    c.environ_base["REMOTE_ADDR"] = address
    return c


def post(client: FlaskClient, body: bytes, path: str = NOTIFY, **headers: str) -> tuple[int, str]:
    answer = client.post(path, data=body, content_type=headers.pop("content_type", FORM), headers=headers)
    return answer.status_code, answer.get_data(as_text=True)


def writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.upper().startswith(WRITES)]


def signed_body(order_no: str, yuan: str = "100.00", **extra: str) -> bytes:
    return urlencode(kit.notification(order_no, yuan, **extra)).encode()


# ------------------------------------------------------------------ bounded, in rows and in bytes


def test_junk_posts_leave_a_bounded_record(limited: Flask) -> None:
    client = from_address(limited, "198.51.100.7")
    answers = Counter(post(client, JUNK) for _ in range(200))
    assert answers == {(400, "fail"): LIMIT, (429, "fail"): 200 - LIMIT}
    kept = kit.callbacks()
    assert len(kept) == LIMIT
    assert {(c.provider, c.outcome, c.remote_addr) for c in kept} == {("sandbox", "bad_signature", "198.51.100.7")}
    assert {kit.kept_body(c) for c in kept} == {("A" * 1024, hashlib.sha256(JUNK).hexdigest(), 60 * 1024)}
    stored = db.session.scalar(select(func.sum(func.length(ProviderCallback.body))))
    assert stored == LIMIT * 1024  # 50 KiB in all, where the 200 posts carried 12 MB


def test_past_the_limit_the_answer_is_429_and_nothing_is_written(limited: Flask) -> None:
    client = from_address(limited, "198.51.100.7")
    for _ in range(LIMIT):
        assert post(client, JUNK) == (400, "fail")
    with statements() as seen:
        answer = client.post(NOTIFY, data=JUNK, content_type=FORM)
    assert (answer.status_code, answer.get_data(as_text=True)) == (429, "fail")
    assert "Retry-After" in answer.headers
    assert writes(seen) == []  # not even a transaction that could wait for SQLite's write lock
    assert len(kit.callbacks()) == LIMIT
    # Another address has its own allowance.
    assert post(from_address(limited, "203.0.113.9"), JUNK) == (400, "fail")
    assert len(kit.callbacks()) == LIMIT + 1


def test_a_refused_callback_takes_one_small_write(limited: Flask, database: str) -> None:
    with statements() as seen:
        assert post(from_address(limited, "198.51.100.7"), JUNK) == (400, "fail")
    done = writes(seen)
    assert len(done) == (2 if database.startswith("sqlite") else 1), done
    assert [s for s in done if not s.startswith("BEGIN")][0].startswith("INSERT INTO provider_callbacks")
    if database.startswith("sqlite"):
        assert done[0] == "BEGIN IMMEDIATE"  # one write transaction, one row


def test_the_limit_counts_refusals_at_every_provider_together(database: str) -> None:
    config = {**ALIPAY.config("http://127.0.0.1:9"), **WECHAT.config("http://127.0.0.1:9")}
    with site_for_tests(database, HEYON_PROVIDERS=("alipay", "wechat"), RATELIMIT_ENABLED=True,
                        RATELIMIT_STORAGE_URI="memory://", HEYON_CALLBACK_REFUSAL_LIMIT="6 per hour", **config) as app:
        client = from_address(app, "198.51.100.7")
        answers = [post(client, JUNK, f"/pay/notify/{name}")[0] for name in ("alipay", "wechat") * 4]
        assert answers == [400] * 6 + [429] * 2
        assert Counter(c.provider for c in kit.callbacks()) == {"alipay": 3, "wechat": 3}


# ------------------------------------------------------------------ verified callbacks


def test_verified_callbacks_from_an_address_past_the_limit_still_credit(limited: Flask) -> None:
    order_no = kit.provider_order("sandbox")
    client = from_address(limited, "198.51.100.7")  # say, a provider's address an attacker shares
    for _ in range(LIMIT + 1):
        post(client, JUNK)
    assert post(client, JUNK) == (429, "fail")
    body = signed_body(order_no)
    assert post(client, body) == (200, "success")
    assert kit.order(order_no).status == "credited" and kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN
    # A provider resends until it reads "success": however often, it is never limited.
    assert [post(client, body) for _ in range(LIMIT + 5)] == [(200, "success")] * (LIMIT + 5)
    verified = [c for c in kit.callbacks() if c.outcome != "bad_signature"]
    assert Counter(c.outcome for c in verified) == {"credited": 1, "duplicate": LIMIT + 5}
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


def test_a_verified_callback_is_kept_whole(app: Flask, client: FlaskClient) -> None:
    order_no = kit.provider_order("sandbox")
    # Longer than what is kept of a refused one: a signed field as long as a provider's may be.
    body = signed_body(order_no, subject="Heyon card recharge " + "x" * 3000)
    assert len(body) > 3 * 1024
    assert post(client, body) == (200, "success")
    [kept] = kit.callbacks()
    assert (kept.outcome, kept.order_no) == ("credited", order_no)
    assert kit.kept_body(kept) == (body.decode(), hashlib.sha256(body).hexdigest(), len(body))
    assert kit.balance() == kit.OPENING_FEN + kit.ORDER_FEN


# ------------------------------------------------------------------ what a refused one keeps


def test_a_refused_callback_keeps_its_prefix_digest_and_size(app: Flask) -> None:
    # Bytes that are not UTF-8, a NUL, and a three-byte character across the 1024th byte.
    body = b"\xff\x00sign=forged&" + b"a" * 1009 + "漢字".encode() + b"z" * 4000
    assert body[1023:1026] == "漢".encode()
    client = new_client(app)
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert post(client, body, content_type="text/plain") == (400, "fail")
    [kept] = kit.callbacks()
    expected_text = "\ufffd\\x00sign=forged&" + "a" * 1009 + "\ufffd"  # the cut character is replaced
    assert kept.body == expected_text
    assert (kept.body_sha256, kept.body_size) == (hashlib.sha256(body).hexdigest(), len(body))
    assert (kept.provider, kept.outcome, kept.content_type, kept.remote_addr, kept.order_no) == \
        ("sandbox", "bad_signature", "text/plain", "198.51.100.7", None)
    assert kept.detail


def test_a_signed_but_malformed_callback_is_kept_bounded_too(app: Flask, client: FlaskClient) -> None:
    order_no = kit.provider_order("sandbox")
    body = signed_body(order_no, status="WAIT_BUYER_PAY", subject="x" * 3000)
    assert post(client, body) == (400, "fail")
    [kept] = kit.callbacks()
    assert (kept.outcome, kept.order_no) == ("malformed", None)
    assert kit.kept_body(kept) == kit.as_refused(body) and len(kept.body) == 1024 < len(body)
    assert kit.order(order_no).status == "pending"


def test_the_refusal_limit_has_a_default_and_comes_from_the_environment() -> None:
    from heyon_site.config import from_environment

    assert from_environment({})["HEYON_CALLBACK_REFUSAL_LIMIT"] == "10 per minute;100 per hour"
    assert from_environment({"HEYON_CALLBACK_REFUSAL_LIMIT": "5 per hour"})["HEYON_CALLBACK_REFUSAL_LIMIT"] == "5 per hour"
