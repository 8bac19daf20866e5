"""Many notifications at once, against a real multi-worker server: money still moves exactly once.

Providers retry, and a retry can arrive while the first delivery is still being processed by
another worker. These tests fire notifications from many threads at a real ``gunicorn -w 4`` on
127.0.0.1, released together by a barrier, and then check the books from the database itself.
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site.billing import ledger
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, PaymentEvent, ProviderCallback

from tests import kit
from tests.kit import flask_cli

pytestmark = pytest.mark.live

N = 40  # notifications per test: ten times the workers, so requests queue and overlap
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def _post(url: str, body: bytes) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": FORM})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(response.status, response.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError is an open response too; close it or it leaks a socket
            return Answer(exc.code, exc.read().decode())


def post_together(url: str, forms: list[dict[str, str]]) -> list[Answer]:
    """POST every form from its own thread, all released at the same instant; answers in order."""
    bodies = [urlencode(form).encode() for form in forms]
    barrier = threading.Barrier(len(bodies))
    answers: list[Answer | BaseException | None] = [None] * len(bodies)

    def fire(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[i] = _post(url, bodies[i])
        except BaseException as exc:  # handed to the main thread, which fails the test with it
            answers[i] = exc

    threads = [threading.Thread(target=fire, args=(i,), name=f"notify-{i}") for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a notification got no answer within 120 s"
    failures = [a for a in answers if not isinstance(a, Answer)]
    assert not failures, failures[:3]
    return [a for a in answers if isinstance(a, Answer)]


def assert_all_success(answers: list[Answer], site: kit.LiveSite) -> None:
    # The provider retries until it reads exactly "success": anything else means another delivery.
    bad = [a for a in answers if (a.status, a.body) != (200, "success")]
    assert not bad, (Counter(bad).most_common(5), site.log_text()[-3000:])
    assert "Traceback" not in site.log_text(), site.log_text()[-3000:]


def recharge_entries(order_id: int) -> int:
    db.session.rollback()  # the server wrote in other processes: start a fresh snapshot
    return db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.order_id == order_id, LedgerEntry.kind == "recharge")) or 0


def callback_outcomes(order_no: str) -> Counter[str]:
    db.session.rollback()
    return Counter(db.session.scalars(select(ProviderCallback.outcome).where(ProviderCallback.order_no == order_no)))


def assert_books_balance(database: str, credited_orders: int) -> None:
    db.session.rollback()
    verdict = ledger.verify(db.session)
    assert verdict.ok, verdict.violations
    assert verdict.credited_orders == credited_orders
    # The operator's own check, in a fresh process, must agree.
    cli = flask_cli(database, "ledger", "verify")
    assert cli.returncode == 0, (cli.stdout, cli.stderr)
    assert f"{credited_orders} credited orders" in cli.stdout, cli.stdout


def test_identical_notifications_at_once_credit_once(app: Flask, client: FlaskClient, database: str, tmp_path: Path) -> None:
    kit.make_card(balance_fen=500)
    order_no = kit.start_order(client)
    order_id = kit.order(order_no).id
    # One delivery, retried N times: same trade_no, same notify_id, same signature.
    form = kit.notification(order_no, "100.00")

    with kit.live_site(database, tmp_path, workers=4) as site:
        answers = post_together(f"{site.url}/pay/notify/sandbox", [form] * N)
        assert_all_success(answers, site)

    assert kit.order(order_no).status == "credited"
    assert kit.balance() == 500 + 10000
    assert recharge_entries(order_id) == 1
    # One payment event (the unique key), every other delivery recognised as a duplicate of it.
    assert kit.event_outcomes(order_id) == Counter({"credited": 1})
    assert callback_outcomes(order_no) == Counter({"credited": 1, "duplicate": N - 1})
    assert_books_balance(database, credited_orders=1)


def test_distinct_payments_of_one_order_at_once_credit_once(app: Flask, client: FlaskClient, database: str, tmp_path: Path) -> None:
    kit.make_card(balance_fen=500)
    order_no = kit.start_order(client)
    order_id = kit.order(order_no).id
    # N different provider transactions for one order: the customer paid N times.
    forms = [kit.notification(order_no, "100.00", trade_no=f"SBXMULTI{i:04d}") for i in range(N)]

    with kit.live_site(database, tmp_path, workers=4) as site:
        answers = post_together(f"{site.url}/pay/notify/sandbox", forms)
        assert_all_success(answers, site)

    found = kit.order(order_no)
    assert found.status == "credited"
    assert kit.balance() == 500 + 10000
    assert recharge_entries(order_id) == 1
    # Every extra payment is on record for a person to refund; none of them moved money.
    assert kit.event_outcomes(order_id) == Counter({"credited": 1, "paid_again": N - 1})
    assert callback_outcomes(order_no) == Counter({"credited": 1, "paid_again": N - 1})
    db.session.rollback()
    winner = db.session.scalar(select(PaymentEvent.provider_txn_id).where(
        PaymentEvent.order_id == order_id, PaymentEvent.outcome == "credited"))
    assert found.provider_txn_id == winner  # the order names the payment that credited it
    assert_books_balance(database, credited_orders=1)


def test_notifications_for_many_orders_at_once_each_credit_once(app: Flask, client: FlaskClient, database: str, tmp_path: Path) -> None:
    cards = [f"86000000000100{i:02d}" for i in range(10)]
    orders: list[tuple[str, str]] = []  # (card number, order number)
    for number in cards:
        kit.make_card(number, balance_fen=100)
        orders.append((number, kit.start_order(client, card_number=number)))
    # Each order's notification four times: different orders and retries of each, interleaved.
    forms = [kit.notification(order_no, "100.00") for _, order_no in orders] * 4

    with kit.live_site(database, tmp_path, workers=4) as site:
        answers = post_together(f"{site.url}/pay/notify/sandbox", forms)
        assert_all_success(answers, site)

    for number, order_no in orders:
        found = kit.order(order_no)
        assert found.status == "credited", order_no
        assert kit.balance(number) == 100 + 10000, number
        assert recharge_entries(found.id) == 1, order_no
        assert callback_outcomes(order_no) == Counter({"credited": 1, "duplicate": 3}), order_no
    assert_books_balance(database, credited_orders=len(orders))


def test_notifications_for_many_orders_of_one_card_at_once_add_up(app: Flask, client: FlaskClient, database: str, tmp_path: Path) -> None:
    # Credits to one card from concurrent transactions must not overwrite each other (lost update).
    kit.make_card(balance_fen=100)
    order_nos = [kit.start_order(client) for _ in range(10)]
    forms = [kit.notification(order_no, "100.00") for order_no in order_nos] * 4

    with kit.live_site(database, tmp_path, workers=4) as site:
        answers = post_together(f"{site.url}/pay/notify/sandbox", forms)
        assert_all_success(answers, site)

    for order_no in order_nos:
        found = kit.order(order_no)
        assert found.status == "credited", order_no
        assert recharge_entries(found.id) == 1, order_no
    assert kit.balance() == 100 + 10 * 10000
    assert_books_balance(database, credited_orders=len(order_nos))
