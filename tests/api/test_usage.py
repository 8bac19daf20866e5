"""The network's usage API (README: Interfaces other systems rely on), as the network calls it.

``POST /api/v1/usage`` applies each charge once, in order, never below zero; anything not signed
by a known client now, or not a well-formed batch, is refused whole and changes nothing; a hundred
copies of one batch at once (a real multi-worker server) move each balance once. ``GET
/api/v1/cards/<number>/balance`` answers the balance. The books prove afterwards in every test
(``books_balance``). The signature is computed here from the README's words, not the site's code.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from heyon_site import create_app
from heyon_site.api import usage as usage_views
from heyon_site.api.auth import ClientsSettingError
from heyon_site.billing.usage import apply_charge
from heyon_site.extensions import db, limiter
from heyon_site.models import LedgerEntry, OutboxMessage, UsageCharge

from tests import kit
from tests.kit import CARD, PIN, TEST_CONFIG, balance, make_card, site_for_tests

pytestmark = pytest.mark.usefixtures("books_balance")

KEY = "net-key-0123456789abcdef"
ROAMING_KEY = "roaming-key-fedcba9876543210"
CLIENTS = f"net:{KEY}, roaming:{ROAMING_KEY}"
OTHER = "8611223344556677"  # a second card
UNKNOWN = "8600000000009999"  # no card has it
USAGE = "/api/v1/usage"
AT = "2026-12-03T08:15:00Z"


@pytest.fixture
def app(database: str) -> Iterator[Flask]:
    """The site as tests run it, with two clients of the network (``books_balance`` takes this one)."""
    with site_for_tests(database, HEYON_USAGE_CLIENTS=CLIENTS) as app:
        yield app


# ------------------------------------------------------------------ the network's side


def signed(body: bytes, client: str = "net", key: str = KEY, at: float | None = None) -> dict[str, str]:
    """The three headers: HMAC-SHA256 under the client's key of ``<timestamp>.<raw body>``, lowercase hex."""
    stamp = str(int(time.time() if at is None else at))
    mac = hmac.new(key.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Heyon-Client": client, "X-Heyon-Timestamp": stamp, "X-Heyon-Signature": mac}


def charge(charge_id: str, card: str = CARD, amount: str = "1.20", **fields: Any) -> dict[str, Any]:
    return {"id": charge_id, "card": card, "amount": amount, "at": AT, "kind": "voice",
            "description": "call to +86 10 1234", **fields}


def batch(*charges: dict[str, Any]) -> bytes:
    return json.dumps({"charges": list(charges)}).encode()


def post(client: FlaskClient, body: bytes, headers: dict[str, str] | None = None) -> TestResponse:
    """POST a batch, signed unless ``headers`` are given; every answer is JSON and sets no cookie."""
    answer = client.post(USAGE, data=body, headers={"Content-Type": "application/json",
                                                    **(signed(body) if headers is None else headers)})
    assert "Set-Cookie" not in answer.headers, answer.headers
    assert answer.is_json, answer.get_data(as_text=True)[:300]
    assert answer.headers["Cache-Control"] == "no-store"
    return answer


def results(answer: TestResponse) -> list[tuple[str, str, str | None]]:
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    return [(r["id"], r["status"], r["reason"]) for r in answer.get_json()["results"]]


def books() -> tuple[int, int, int, int, int]:
    """What a refused request must leave as it was: both balances, charges kept, ledger entries, messages."""
    db.session.rollback()

    def count(model: type[Any]) -> int:
        return db.session.scalar(select(func.count()).select_from(model)) or 0

    return balance(CARD), balance(OTHER), count(UsageCharge), count(LedgerEntry), count(OutboxMessage)


@pytest.fixture
def cards(app: Flask) -> None:
    make_card(CARD, PIN, balance_fen=1000)
    make_card(OTHER, PIN, balance_fen=500)


# ------------------------------------------------------------------ applied, duplicate, refused


@pytest.mark.usefixtures("cards")
def test_each_charge_is_answered_in_the_order_sent(client: FlaskClient) -> None:
    longest = "x" * 64
    sent = batch(charge("a"), charge("b", UNKNOWN), charge("a"), charge("c", OTHER, "6.00"),
                 charge(longest, OTHER, "2.50", kind="data"), charge("d", "not a card number", "0.01"))
    assert results(post(client, sent)) == [
        ("a", "applied", None), ("b", "refused", "unknown_card"), ("a", "duplicate", None),
        ("c", "refused", "insufficient_balance"), (longest, "applied", None), ("d", "refused", "unknown_card")]
    assert (balance(CARD), balance(OTHER)) == (1000 - 120, 500 - 250)
    # The same batch again (the network's retry): every charge was seen, nothing moves.
    assert results(post(client, sent)) == [
        ("a", "duplicate", None), ("b", "duplicate", "refused before"), ("a", "duplicate", None),
        ("c", "duplicate", "refused before"), (longest, "duplicate", None), ("d", "duplicate", "refused before")]
    assert (balance(CARD), balance(OTHER)) == (1000 - 120, 500 - 250)
    db.session.rollback()
    kept = {c.charge_id: (c.status, c.kind, c.charged_at.isoformat()) for c in db.session.scalars(select(UsageCharge))}
    assert kept[longest] == ("applied", "data", "2026-12-03T08:15:00")
    assert kept["c"][0] == "refused" and len(kept) == 5


@pytest.mark.usefixtures("cards")
def test_a_charge_over_the_balance_is_refused_alone_while_the_others_apply(client: FlaskClient) -> None:
    sent = batch(charge("1", OTHER, "2.00"), charge("2", OTHER, "3.01"), charge("3", OTHER, "3.00"),
                 charge("4", OTHER, "0.01"), charge("5", CARD, "10.00"))
    assert results(post(client, sent)) == [
        ("1", "applied", None), ("2", "refused", "insufficient_balance"), ("3", "applied", None),
        ("4", "refused", "insufficient_balance"), ("5", "applied", None)]
    assert (balance(OTHER), balance(CARD)) == (0, 0)  # to the fen, never below


@pytest.mark.usefixtures("cards")
def test_ids_are_one_namespace_per_client(client: FlaskClient) -> None:
    sent = batch(charge("same-id"))
    assert results(post(client, sent)) == [("same-id", "applied", None)]
    assert results(post(client, sent, signed(sent, "roaming", ROAMING_KEY))) == [("same-id", "applied", None)]
    assert balance(CARD) == 1000 - 240


@pytest.mark.usefixtures("cards")
def test_times_with_an_offset_are_kept_as_utc_and_amounts_are_exact(client: FlaskClient) -> None:
    sent = batch(charge("east", at="2026-12-03T16:15:00.123456789+08:00", amount="0.1"),
                 charge("west", at="2026-12-03t03:15:00-05:00", amount="7"), charge("bare", amount="0.07"))
    assert [status for _, status, _ in results(post(client, sent))] == ["applied"] * 3
    db.session.rollback()
    kept = dict(db.session.execute(select(UsageCharge.charge_id, UsageCharge.charged_at)).all())
    assert kept["east"].isoformat() == "2026-12-03T08:15:00.123456"
    assert kept["west"].isoformat() == "2026-12-03T08:15:00"
    assert balance(CARD) == 1000 - 10 - 700 - 7


@pytest.mark.usefixtures("cards")
def test_a_full_batch_of_one_thousand_charges_is_applied_in_order(client: FlaskClient) -> None:
    # Long descriptions in Chinese, written as \u escapes: the largest batch a client may send.
    many = [charge(f"c{i:04d}", CARD if i % 2 else OTHER, "0.01", description="漫游通话" * 50) for i in range(1000)]
    sent = batch(*many)
    assert len(sent) > 1_000_000
    answered = results(post(client, sent))
    assert [charge_id for charge_id, _, _ in answered] == [c["id"] for c in many]
    assert {status for _, status, _ in answered} == {"applied"}
    assert (balance(CARD), balance(OTHER)) == (1000 - 500, 500 - 500)


@pytest.mark.usefixtures("cards")
def test_a_failure_mid_batch_leaves_the_chunks_before_it_applied(client: FlaskClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 100 are committed one by one: the database failing at the 150th charge keeps the
    first 100, rolls back the second chunk, and the network's retry applies the rest once."""
    failed: list[str] = []

    def failing_once(s: Any, client_name: str, c: Any, today: Any, now: Any = None) -> Any:
        if c.charge_id == "c149" and not failed:
            failed.append(c.charge_id)
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return apply_charge(s, client_name, c, today, now)

    monkeypatch.setattr("heyon_site.api.usage.apply_charge", failing_once)
    sent = batch(*(charge(f"c{i:03d}", CARD, "0.01") for i in range(250)))
    refused = post(client, sent)
    assert refused.status_code == 503 and refused.get_json()["error"] == "unavailable"
    assert balance(CARD) == 1000 - usage_views.CHUNK
    answered = results(post(client, sent))
    assert Counter(status for _, status, _ in answered[: usage_views.CHUNK]) == {"duplicate": usage_views.CHUNK}
    assert Counter(status for _, status, _ in answered[usage_views.CHUNK :]) == {"applied": 250 - usage_views.CHUNK}
    assert balance(CARD) == 1000 - 250


# ------------------------------------------------------------------ who may call


def _unsigned_cases(body: bytes) -> dict[str, dict[str, str]]:
    now = time.time()
    good = signed(body)
    return {
        "bad signature": {**good, "X-Heyon-Signature": "0" * 64},
        "signature of another body": signed(body + b" "),
        "signed with another client's key": signed(body, client="net", key=ROAMING_KEY),
        "unknown client": signed(body, client="stranger"),
        "signature in capitals": {**good, "X-Heyon-Signature": good["X-Heyon-Signature"].upper()},
        "stale timestamp": signed(body, at=now - 301),
        "future timestamp": signed(body, at=now + 301),
        "timestamp not a number": {**good, "X-Heyon-Timestamp": good["X-Heyon-Timestamp"] + ".0"},
        "no client": {k: v for k, v in good.items() if k != "X-Heyon-Client"},
        "no timestamp": {k: v for k, v in good.items() if k != "X-Heyon-Timestamp"},
        "no signature": {k: v for k, v in good.items() if k != "X-Heyon-Signature"},
        "no headers": {},
    }


@pytest.mark.usefixtures("cards")
def test_a_request_not_signed_by_a_client_now_is_refused_and_changes_nothing(client: FlaskClient) -> None:
    body = batch(charge("a"), charge("b", OTHER))
    before = books()
    answers = {case: post(client, body, headers) for case, headers in _unsigned_cases(body).items()}
    assert {case: a.status_code for case, a in answers.items()} == dict.fromkeys(answers, 401)
    assert {a.get_json()["error"] for a in answers.values()} == {"unauthorized"}
    assert "WWW-Authenticate" in answers["no headers"].headers
    assert "within 300 s" in answers["stale timestamp"].get_json()["detail"]
    assert books() == before
    # The same body, signed now, or within the five minutes either way, goes through.
    assert [s for _, s, _ in results(post(client, body, signed(body, at=time.time() - 290)))] == ["applied"] * 2
    assert [s for _, s, _ in results(post(client, body, signed(body, at=time.time() + 290)))] == ["duplicate"] * 2


# ------------------------------------------------------------------ what may be sent

GOOD = charge("good")  # put first in every malformed batch: a partial check would apply it


def _with(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**charge("bad"), **changes}.items() if v is not _MISSING}


_MISSING = object()

MALFORMED: dict[str, bytes] = {
    "not JSON": b"charges: good",
    "empty body": b"",
    "not UTF-8": b'{"charges": [{"id": "\xff"}]}',
    "not an object": json.dumps([GOOD]).encode(),
    "no charges": json.dumps({"charge": [GOOD]}).encode(),
    "charges not a list": json.dumps({"charges": GOOD}).encode(),
    "no charge at all": batch(),
    "1,001 charges": batch(*(charge(f"c{i}", amount="0.01") for i in range(1001))),
    "a charge not an object": json.dumps({"charges": [GOOD, "bad"]}).encode(),
    "three decimals": batch(GOOD, _with(amount="1.234")),
    "negative amount": batch(GOOD, _with(amount="-1")),
    "amount not a number": batch(GOOD, _with(amount="abc")),
    "amount as a JSON number": batch(GOOD, _with(amount=1.2)),
    "amount zero": batch(GOOD, _with(amount="0.00")),
    "amount with an exponent": batch(GOOD, _with(amount="1e2")),
    "amount with a currency sign": batch(GOOD, _with(amount="¥1.20")),
    "no amount": batch(GOOD, _with(amount=_MISSING)),
    "unknown kind": batch(GOOD, _with(kind="roaming")),
    "no kind": batch(GOOD, _with(kind=_MISSING)),
    "time in words": batch(GOOD, _with(at="yesterday")),
    "time without an offset": batch(GOOD, _with(at="2026-12-03T08:15:00")),
    "date alone": batch(GOOD, _with(at="2026-12-03")),
    "no such day": batch(GOOD, _with(at="2026-02-30T08:15:00Z")),
    "no such offset": batch(GOOD, _with(at="2026-12-03T08:15:00+24:00")),
    "time as a number": batch(GOOD, _with(at=1796285700)),
    "no id": batch(GOOD, _with(id=_MISSING)),
    "empty id": batch(GOOD, _with(id="")),
    "id of 65 characters": batch(GOOD, _with(id="x" * 65)),
    "id as a number": batch(GOOD, _with(id=7)),
    "id with a line break": batch(GOOD, _with(id="a\nb")),
    "no card": batch(GOOD, _with(card=_MISSING)),
    "card as a number": batch(GOOD, _with(card=8600000000001234)),
    "description not text": batch(GOOD, _with(description=["call"])),
    "NUL in a description": batch(GOOD, _with(description="call\x00")),
    "a key given twice": (b'{"charges": [' + json.dumps(GOOD).encode()
                          + b', {"id": "bad", "card": "8600000000001234", "amount": "1.00", "amount": "100.00",'
                            b' "at": "2026-12-03T08:15:00Z", "kind": "voice"}]}'),
    "NaN": b'{"charges": [' + json.dumps(GOOD).encode() + b'], "x": NaN}',
    "nested too deeply": b'{"charges": [' + json.dumps(GOOD).encode() + b'], "x": ' + b"[" * 100_000 + b"]" * 100_000
                         + b"}",
}


@pytest.mark.usefixtures("cards")
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_batch_is_refused_whole_and_changes_nothing(client: FlaskClient, case: str) -> None:
    before = books()
    answer = post(client, MALFORMED[case])
    assert answer.status_code == 400, answer.get_data(as_text=True)
    error = answer.get_json()
    assert error["error"] == "malformed" and error["detail"], error
    assert books() == before


@pytest.mark.usefixtures("cards")
def test_the_malformed_answer_says_which_charge_and_field(client: FlaskClient) -> None:
    assert post(client, MALFORMED["three decimals"]).get_json()["detail"].startswith("charges[1].amount")
    assert post(client, MALFORMED["1,001 charges"]).get_json()["detail"] == \
        '"charges" must hold 1 to 1,000 charges, not 1,001'
    assert post(client, MALFORMED["id of 65 characters"]).get_json()["detail"].startswith("charges[1].id")


@pytest.mark.usefixtures("cards")
def test_a_body_over_two_megabytes_is_refused_before_it_is_read(client: FlaskClient) -> None:
    before = books()
    huge = batch(GOOD, charge("big", description="x" * (2 * 1024 * 1024)))
    answer = post(client, huge)
    assert answer.status_code == 413 and answer.get_json()["error"] == "too_large"
    assert books() == before


# ------------------------------------------------------------------ the balance


def _balance_of(client: FlaskClient, number: str, headers: dict[str, str] | None = None) -> TestResponse:
    answer = client.get(f"/api/v1/cards/{number}/balance", headers=signed(b"") if headers is None else headers)
    assert "Set-Cookie" not in answer.headers and answer.is_json
    return answer


@pytest.mark.usefixtures("cards")
def test_the_balance_of_a_card(client: FlaskClient) -> None:
    assert _balance_of(client, CARD).get_json() == {"balance": "10.00"}
    assert results(post(client, batch(charge("a", amount="1.23")))) == [("a", "applied", None)]
    answer = _balance_of(client, CARD)
    assert (answer.status_code, answer.get_json()) == (200, {"balance": "8.77"})
    assert answer.headers["Cache-Control"] == "no-store"
    for number in (UNKNOWN, "12345"):
        missing = _balance_of(client, number)
        assert (missing.status_code, missing.get_json()["error"]) == (404, "unknown_card")
    # Signed over "<timestamp>." and nothing else; a stale or foreign signature is refused.
    assert _balance_of(client, CARD, signed(b"x")).status_code == 401
    assert _balance_of(client, CARD, signed(b"", at=time.time() - 400)).status_code == 401
    assert _balance_of(client, CARD, {}).status_code == 401


# ------------------------------------------------------------------ settings and limits


def test_the_clients_setting_is_read_once_at_start_and_a_bad_one_stops_the_start(database: str,
                                                                                 tmp_path: Path) -> None:
    keys = tmp_path / "clients"
    keys.write_text(f"net:{KEY}\nroaming:{ROAMING_KEY}\n")
    started = create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_USAGE_CLIENTS_FILE": str(keys)})
    assert started.extensions["heyon.usage_clients"] == {"net": KEY.encode(), "roaming": ROAMING_KEY.encode()}
    for bad, said in ((f"net{KEY}", "entry 1 is not name:key"), ("net:tiny-k3y", "the key of net is shorter"),
                      (f"net:{KEY},net:{ROAMING_KEY}", "net is named twice"), (f"a b:{KEY}", "entry 1")):
        with pytest.raises(ClientsSettingError, match=said) as refused:
            create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_USAGE_CLIENTS": bad})
        # The message names the entry, never its key (it goes to the start-up log).
        assert not {KEY, ROAMING_KEY, "tiny-k3y"} & set(str(refused.value).replace(":", " ").split()), refused.value
    with pytest.raises(ValueError, match="HEYON_USAGE_CLIENTS_FILE cannot be read"):
        create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_USAGE_CLIENTS_FILE": str(tmp_path / "none")})


@pytest.fixture
def customer_limits_on(app: Flask) -> Iterator[Flask]:
    """Per-address limits switched on and set tiny, a default limit for every route included.
    Flask-Limiter keeps its key prefix and default limits from the first app it meets: both are
    put back afterwards."""
    kept_prefix, kept_defaults = limiter._key_prefix, limiter.limit_manager._default_limits
    limiter._key_prefix = ""
    limiter.limit_manager.set_default_limits([])
    app.config.update(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://",
                      RATELIMIT_KEY_PREFIX=f"heyon-test-{uuid.uuid4().hex}", RATELIMIT_DEFAULT="2 per minute",
                      HEYON_IP_LIMIT="2 per minute", HEYON_IP_FAILURE_LIMIT="2 per hour")
    limiter.init_app(app)
    limiter.reset()
    yield app
    limiter._key_prefix = kept_prefix
    limiter.limit_manager.set_default_limits(kept_defaults)


@pytest.mark.usefixtures("cards", "customer_limits_on")
def test_the_customer_limits_per_address_never_hold_back_the_network(client: FlaskClient) -> None:
    answers = [post(client, batch(charge(f"b{i}", amount="0.01"))).status_code for i in range(6)]
    answers += [post(client, batch(charge("x")), {}).status_code for _ in range(4)]  # refusals are not limited either
    answers += [_balance_of(client, CARD).status_code for _ in range(4)]
    assert answers == [200] * 6 + [401] * 4 + [200] * 4
    # The limits are live: a customer page from the same address is refused at the third.
    assert [client.get("/faq").status_code for _ in range(3)] == [200, 200, 429]


# ------------------------------------------------------------------ many copies at once


def _post_live(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.headers.get("Set-Cookie") is None
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError is an open response: close it or it leaks a socket
            return exc.code, exc.read().decode(errors="replace")[:300]


def post_together(url: str, body: bytes, headers: dict[str, str], copies: int) -> list[tuple[int, Any]]:
    """The same request from ``copies`` threads, released together; the answers."""
    barrier = threading.Barrier(copies)
    answers: list[tuple[int, Any] | BaseException | None] = [None] * copies

    def fire(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[i] = _post_live(url, body, headers)
        except BaseException as exc:  # handed to the main thread, which fails the test with it
            answers[i] = exc

    threads = [threading.Thread(target=fire, args=(i,), name=f"usage-{i}") for i in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a copy got no answer within 180 s"
    failures = [a for a in answers if not isinstance(a, tuple)]
    assert not failures, failures[:3]
    return [a for a in answers if isinstance(a, tuple)]


@pytest.mark.live
@pytest.mark.usefixtures("cards")
def test_a_hundred_copies_of_one_batch_at_once_apply_each_charge_once(database: str, tmp_path: Path) -> None:
    """Against gunicorn with four workers (each its own connection; on PostgreSQL truly at once):
    150 charges, two chunks, half on a card that can pay only ten of them."""
    sent = batch(*(charge(f"u{i:03d}", CARD, "0.10") if i % 2 else charge(f"u{i:03d}", OTHER, "0.50")
                   for i in range(150)))
    headers = signed(sent)  # one request, delivered a hundred times within its five minutes
    with kit.live_site(database, tmp_path, workers=4, extra_env={"HEYON_USAGE_CLIENTS": CLIENTS}) as site:
        answers = post_together(site.url + USAGE, sent, headers, copies=100)
        log = site.log_text()
    assert Counter(status for status, _ in answers) == {200: 100}, answers[:3]
    assert "Traceback" not in log, log[-3000:]
    first_hand: dict[str, list[tuple[str, str | None]]] = {}
    for _, document in answers:
        for r in document["results"]:
            if r["status"] != "duplicate":
                first_hand.setdefault(r["id"], []).append((r["status"], r["reason"]))
    # Each charge was decided by exactly one copy; the 99 others answered "duplicate".
    assert sorted(first_hand) == [f"u{i:03d}" for i in range(150)]
    assert {len(decided) for decided in first_hand.values()} == {1}
    on_other = [first_hand[f"u{i:03d}"][0] for i in range(0, 150, 2)]
    assert on_other == [("applied", None)] * 10 + [("refused", "insufficient_balance")] * 65
    assert {first_hand[f"u{i:03d}"][0] for i in range(1, 150, 2)} == {("applied", None)}
    assert (balance(CARD), balance(OTHER)) == (1000 - 75 * 10, 0)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(UsageCharge)) == 150
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "usage")) == 85


def test_an_address_under_the_api_that_does_not_exist_answers_json(app: Flask) -> None:
    """A machine gets JSON for a route or method that is not there, never the site's HTML page."""
    client = app.test_client()
    for r in (client.get("/api/v1/nothing"), client.get("/api/v1/usage")):
        assert r.status_code in (404, 405) and r.is_json and r.get_json()["status"] == r.status_code
        assert "Set-Cookie" not in r.headers
