"""Two app servers, one PostgreSQL database, one Redis: the site as it runs on several machines.

Each server is a real ``gunicorn -w 2`` on 127.0.0.1, configured as production is: per-IP limits
in Redis, one trusted proxy hop (so each scenario can come from an address of its own through
``X-Forwarded-For``). Requests alternate between the servers, or hit both at once, and the
throttles, the limits and the books must behave exactly as they do on one server.
"""
from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from heyon_site.billing import ledger
from heyon_site.billing.promos import PromoCaps, current_quote
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, LedgerEntry, ProviderCallback, RechargeOrder, SandboxPayment

from tests import kit
from tests.kit import flask_cli

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason=(
        "PostgreSQL only: several machines share a database server, not a SQLite file; "
        "set TEST_DATABASE_URL (e.g. postgresql:///test)")),
    pytest.mark.parametrize("database", ["postgresql"], indirect=True),
]

IP_LIMIT = 6  # recharge posts per minute and client address, across both servers
Servers = tuple[kit.LiveSite, kit.LiveSite]


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[tuple[str, str]]:
    """The Redis URL and a key prefix of this run's own; only keys under it are removed after."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"no Redis at {url} ({exc}); set TEST_REDIS_URL")
    prefix = f"heyon-test-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    stale = list(client.scan_iter(match=f"*{prefix}/*", count=1000))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.fixture(scope="module")
def servers(postgres_url: str, shared_redis: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    url, prefix = shared_redis
    env = {"RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": url, "RATELIMIT_KEY_PREFIX": prefix,
           "HEYON_IP_LIMIT": f"{IP_LIMIT} per minute", "HEYON_PROXY_HOPS": "1"}
    tmp = tmp_path_factory.mktemp("two-servers")
    with kit.live_site(postgres_url, tmp, workers=2, extra_env=env) as a, \
            kit.live_site(postgres_url, tmp, workers=2, extra_env=env) as b:
        yield a, b
        for site in (a, b):
            assert "Traceback" not in site.log_text(), site.log_text()[-3000:]


class Browser:
    """One customer's browser at one client address, sent to whichever server the test says."""

    def __init__(self, servers: Servers, address: str) -> None:
        self.servers = servers
        self.session = requests.Session()
        self.session.headers["X-Forwarded-For"] = address  # what nginx would say
        # The session cookie from one server is good on the other: they share SECRET_KEY.
        page = self.session.get(f"{servers[0].url}/recharge?lang=en", timeout=30)
        self.token = kit.csrf_from(page.text)

    def recharge(self, server: int, **fields: str) -> requests.Response:
        form = {"csrf_token": self.token, "card_number": kit.CARD, "password": kit.PIN, "amount": "100",
                "custom_amount": "", "method": "sandbox", **fields}
        return self.session.post(f"{self.servers[server].url}/recharge", data=form, allow_redirects=False, timeout=30)

    def close(self) -> None:
        self.session.close()


def wrong_passwords(browser: Browser, card: str, servers_in_turn: list[int]) -> list[requests.Response]:
    return [browser.recharge(s, card_number=card, password="000000") for s in servers_in_turn]


def test_the_card_throttle_counts_attempts_on_both_servers_as_one(servers: Servers, app: Flask) -> None:
    other = "8600000000005678"
    kit.make_card()
    kit.make_card(other)
    free = app.config["HEYON_CARD_FREE_ATTEMPTS"]  # then a 2 s wait after one more failure
    turns = free + 2
    alternating, one_server = Browser(servers, "198.51.100.1"), Browser(servers, "198.51.100.2")
    try:
        across = wrong_passwords(alternating, kit.CARD, [i % 2 for i in range(turns)])
        alone = wrong_passwords(one_server, other, [0] * turns)
    finally:
        alternating.close()
        one_server.close()
    expected = [403] * (free + 1) + [429]
    assert [a.status_code for a in across] == [a.status_code for a in alone] == expected
    # The card's throttle refused the last one (each address is far below its own limit).
    assert "Too many wrong attempts for this card" in across[-1].text
    assert "Too many wrong attempts for this card" in alone[-1].text


def test_the_per_ip_limit_counts_requests_on_both_servers_as_one(servers: Servers, app: Flask) -> None:
    browser = Browser(servers, "198.51.100.3")
    try:
        # An amount that fails validation: every post is counted, none needs a card.
        answers = [browser.recharge(i % 2, amount="not an amount") for i in range(IP_LIMIT + 2)]
    finally:
        browser.close()
    assert [a.status_code for a in answers] == [422] * IP_LIMIT + [429, 429]
    # One count in Redis: each server's answer continues the other's.
    remaining = [int(a.headers["X-RateLimit-Remaining"]) for a in answers[:IP_LIMIT]]
    assert remaining == list(range(IP_LIMIT - 1, -1, -1))
    # Another address is not affected.
    other = Browser(servers, "198.51.100.4")
    try:
        assert other.recharge(1, amount="not an amount").status_code == 422
    finally:
        other.close()


def post_one(url: str, form: dict[str, str]) -> tuple[int, str]:
    answer = requests.post(url, data=form, timeout=120)
    return answer.status_code, answer.text


def post_together(posts: list[tuple[str, dict[str, str]]]) -> list[tuple[int, str]]:
    """Every (url, form) POSTed from its own thread, released together; answers in order."""
    barrier = threading.Barrier(len(posts))

    def fire(post: tuple[str, dict[str, str]]) -> tuple[int, str]:
        barrier.wait(timeout=30)
        return post_one(*post)

    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        return list(pool.map(fire, posts))


def callback_outcomes(order_no: str) -> Counter[str]:
    db.session.rollback()
    return Counter(db.session.scalars(select(ProviderCallback.outcome).where(ProviderCallback.order_no == order_no)))


def recharge_entries_by_order() -> Counter[int]:
    db.session.rollback()
    rows = db.session.execute(select(LedgerEntry.order_id, func.count()).where(LedgerEntry.kind == "recharge")
                              .group_by(LedgerEntry.order_id))
    return Counter({order_id: n for order_id, n in rows})


def assert_books_balance(database: str, credited_orders: int) -> None:
    db.session.rollback()
    verdict = ledger.verify(db.session)
    assert verdict.ok, verdict.violations
    checked = flask_cli(database, "ledger", "verify")
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    assert f"{credited_orders} credited orders" in checked.stdout, checked.stdout


def test_one_notification_delivered_to_both_servers_at_once_credits_once(
        servers: Servers, app: Flask, client: FlaskClient, database: str) -> None:
    kit.make_card(balance_fen=500)
    order_no = kit.start_order(client)
    form = kit.notification(order_no, "100.00")  # one delivery, retried: same ids, same signature
    copies = 20
    answers = post_together([(f"{site.url}/pay/notify/sandbox", form) for site in servers for _ in range(copies)])
    assert Counter(answers) == Counter({(200, "success"): 2 * copies})
    assert kit.order(order_no).status == "credited"
    assert kit.balance() == 500 + 10000
    assert recharge_entries_by_order() == Counter({kit.order(order_no).id: 1})
    assert callback_outcomes(order_no) == Counter({"credited": 1, "duplicate": 2 * copies - 1})
    assert_books_balance(database, credited_orders=1)


ORDERS = 20
WORKERS = 4  # two servers of two workers
SENDERS = 2 * WORKERS  # notifications posted at once; threaded workers take every one of them in


def paid_without_notification(card_id: int, count: int) -> list[tuple[str, dict[str, str]]]:
    """Orders the gateway has taken payment for but not yet told us about; with the
    notification each one's gateway would send (the very payment the reconcile query finds)."""
    paid = []
    for i in range(count):
        order = in_write_transaction(lambda: start_recharge(db.session, card_id, 10000, "sandbox", "zh_Hans",
                                                            terms=current_quote(db.session, 10000, caps=PromoCaps())))
        trade_no = f"SBXTWO{i:04d}"
        in_write_transaction(lambda order=order, trade_no=trade_no: db.session.add(SandboxPayment(
            order_no=order.order_no, trade_no=trade_no, amount_fen=order.pay_fen, status="TRADE_SUCCESS", notify=False)))
        paid.append((order.order_no, kit.notification(order.order_no, "100.00", trade_no=trade_no)))
    return paid


def waiting_for_locks() -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND wait_event_type = 'Lock'")) or 0)


def test_two_reconcilers_and_notifications_on_both_servers_credit_each_order_once(
        servers: Servers, app: Flask, database: str) -> None:
    card_id = kit.make_card(balance_fen=0)
    paid = paid_without_notification(card_id, ORDERS)
    reconcile = ("payments", "reconcile", "--older-than", "0")
    posts = [(f"{site.url}/pay/notify/sandbox", form) for _, form in reversed(paid) for site in servers]
    # Every credit raises the card's balance, so while this holds the card's row, each reconcile
    # run stops inside its first order's transaction and each worker thread inside a
    # notification's: once all ten wait, they are provably in flight together. Then they race.
    holder = db.engine.connect()
    try:
        holder.execute(select(Card.id).where(Card.id == card_id).with_for_update())
        with ThreadPoolExecutor(max_workers=2) as runs, ThreadPoolExecutor(max_workers=SENDERS) as senders:
            reconcilers = [runs.submit(flask_cli, database, *reconcile) for _ in range(2)]
            sent = [senders.submit(post_one, url, form) for url, form in posts]
            waited = 0
            while waiting_for_locks() < 2 + SENDERS and waited < 600:
                time.sleep(0.1)
                waited += 1
            together = waiting_for_locks()
            holder.rollback()
            answers = Counter(f.result() for f in sent)
            rounds = 1
            while not all(r.done() for r in reconcilers):  # and more deliveries while they run
                answers.update(senders.map(lambda post: post_one(*post), posts))
                rounds += 1
            results = [r.result() for r in reconcilers]
    finally:
        holder.close()
    assert together == 2 + SENDERS, "the reconcile runs and the notifications were never all in flight at once"
    assert answers == Counter({(200, "success"): len(posts) * rounds})
    for run in results:
        assert run.returncode == 0, (run.stdout, run.stderr)
    by_reconcile = sum(int(m.group(1)) for run in results for m in [re.search(r"credited (\d+)", run.stdout)] if m)

    db.session.rollback()
    orders = db.session.scalars(select(RechargeOrder).where(RechargeOrder.order_no.in_([no for no, _ in paid]))).all()
    assert {o.status for o in orders} == {"credited"}
    assert recharge_entries_by_order() == Counter({o.id: 1 for o in orders})
    assert kit.balance() == ORDERS * 10000
    by_notification = sum(callback_outcomes(no)["credited"] for no, _ in paid)
    assert by_reconcile + by_notification == ORDERS  # every credit came from exactly one of them
    assert_books_balance(database, credited_orders=ORDERS)
