"""Starting a payment (QR code on a computer, redirect on a phone), "check payment now", and
reconciliation: no paid order left pending, no unpaid order closed before its time, and several
reconcilers at once asking about each order once (PostgreSQL) and crediting it once (both)."""
from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from heyon_site.billing import ledger
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, RechargeOrder, utcnow
from heyon_site.payments.checkout import device_of
from heyon_site.payments.reconcile import reconcile
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import Checkout, Device, OrderRef, ProviderUnavailable
from heyon_site.billing.events import ProviderEvent

from tests.kit import new_client
from tests.kit import CARD, balance, csrf_from, make_card, order, recharge_form

PHONE = "Mozilla/5.0 (Linux; Android 8.1.0; Redmi 6A) AppleWebKit/537.36 Chrome/80.0 Mobile Safari/537.36"
COMPUTER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


class FakePay:
    """A provider that pays or refuses as the test says, and counts what it is asked."""

    name = "fakepay"
    min_fen = 1
    pay_timeout = timedelta(minutes=30)

    def __init__(self) -> None:
        self.paid: dict[str, int] = {}
        self.closed: list[str] = []
        self.queries: Counter[str] = Counter()
        self.down = False
        self.pay_on_close: set[str] = set()  # paid in the instant between the query and the close
        self.lock = threading.Lock()

    def checkout(self, order: OrderRef, device: Device) -> Checkout:
        if self.down:
            raise ProviderUnavailable("down")
        url = f"https://pay.example/{order.order_no}"
        return Checkout(redirect_url=url, qr_payload=f"fakepay://{order.order_no}" if device == "desktop" else None,
                        provider_ref=f"ref-{order.order_no}")

    def parse_callback(self, body: bytes, headers: object) -> ProviderEvent:
        raise NotImplementedError

    def acknowledge(self) -> object:
        raise NotImplementedError

    def reject(self) -> object:
        raise NotImplementedError

    def query(self, order_no: str) -> ProviderEvent | None:
        with self.lock:
            self.queries[order_no] += 1
        if self.down:
            raise ProviderUnavailable("down")
        if order_no in self.paid:
            return ProviderEvent(self.name, order_no, f"T{order_no}", "paid", self.paid[order_no])
        return None

    def close(self, order_no: str) -> None:
        if self.down:
            raise ProviderUnavailable("down")
        self.closed.append(order_no)
        if order_no in self.pay_on_close:
            self.paid[order_no] = order(order_no).pay_fen


@pytest.fixture
def fake(app: Flask) -> FakePay:
    provider = FakePay()
    app.extensions["heyon.providers"]["fakepay"] = provider
    return provider


def begin(client: FlaskClient, ua: str = PHONE) -> tuple[str, object]:
    r = client.post("/recharge", data=recharge_form(client, method="fakepay"), headers={"User-Agent": ua})
    db.session.rollback()
    newest = db.session.scalar(select(RechargeOrder).order_by(RechargeOrder.id.desc()))
    assert newest is not None
    return newest.order_no, r


def age(order_no: str, minutes: int) -> None:
    in_write_transaction(lambda: db.session.execute(update(RechargeOrder).where(RechargeOrder.order_no == order_no)
                                                    .values(created_at=utcnow() - timedelta(minutes=minutes))))


def run(minutes_old: int = 5, expiry: int = 120) -> Counter[str]:
    return reconcile(get_provider, timedelta(minutes=minutes_old), timedelta(minutes=expiry))


# ------------------------------------------------------------------ starting a payment


@pytest.mark.parametrize(("ua", "device"), [
    (PHONE, "mobile"), (COMPUTER, "desktop"), ("", "mobile"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 12_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0", "mobile"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15", "desktop"),
])
def test_the_device_decides_redirect_or_qr(ua: str, device: str) -> None:
    assert device_of(ua) == device


def test_a_phone_goes_to_the_provider_and_a_computer_gets_a_qr_code(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    on_phone, r = begin(client, PHONE)
    assert r.status_code == 303 and r.headers["Location"] == f"https://pay.example/{on_phone}"  # type: ignore[attr-defined]
    on_computer, r = begin(client, COMPUTER)
    made = order(on_computer)
    assert (made.pay_qr, made.provider_ref) == (f"fakepay://{on_computer}", f"ref-{on_computer}")
    page_url = r.headers["Location"]  # type: ignore[attr-defined]
    assert page_url.endswith(f"/orders/{made.token}")
    page = client.get(page_url + "?lang=en").get_data(as_text=True)
    assert 'id="pay-qr"' in page and "<svg" in page and "Scan this code with your phone to pay." in page
    assert f'href="https://pay.example/{on_computer}"' in page and "Or pay on this device" in page
    plain = new_client(app)  # a web address in the QR code goes through a short link of ours
    in_write_transaction(lambda: db.session.execute(update(RechargeOrder).where(RechargeOrder.order_no == on_computer)
                                                    .values(pay_qr="https://pay.example/m/" + "x" * 1000)))
    r = plain.get(f"/orders/{made.token}/pay")
    assert r.status_code == 303 and r.headers["Location"] == "https://pay.example/m/" + "x" * 1000
    short = plain.get(page_url).get_data(as_text=True)
    side = int(re.search(r'viewBox="0 0 (\d+)', short).group(1))  # type: ignore[union-attr]
    assert side <= (37 + 4) * 3, side  # QR version 5 at most (37 modules), not version 26 (121)
    # The 3-second poll carries the status only: the QR code is sent once.
    poll = new_client(app, htmx=True).get(page_url).get_data(as_text=True)
    assert "<svg" not in poll and "order-status" in poll


def test_a_provider_that_does_not_answer_gets_a_clear_message(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    fake.down = True
    no, r = begin(client)
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert "not answering right now" in r.get_data(as_text=True)  # type: ignore[attr-defined]
    assert order(no).status == "pending" and balance() == 0


# ------------------------------------------------------------------ check payment now


def check_now(client: FlaskClient, token: str) -> object:
    page = client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    return client.post(f"/orders/{token}/check", data={"csrf_token": csrf_from(page)})


def test_check_payment_now_credits_a_paid_order_and_asks_at_most_every_ten_seconds(
        app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    no, _ = begin(client)
    token = order(no).token
    r = check_now(client, token)
    assert r.status_code == 303 and order(no).status == "pending" and fake.queries[no] == 1  # type: ignore[attr-defined]
    fake.paid[no] = order(no).pay_fen
    check_now(client, token)
    assert fake.queries[no] == 1 and order(no).status == "pending"  # asked less than 10 s ago: not again
    in_write_transaction(lambda: db.session.execute(update(RechargeOrder).where(RechargeOrder.order_no == no)
                                                    .values(checked_at=utcnow() - timedelta(seconds=11))))
    hx = new_client(app, htmx=True)
    page = hx.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    r = hx.post(f"/orders/{token}/check", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 200 and "Credited" in r.get_data(as_text=True)  # type: ignore[attr-defined]
    assert order(no).status == "credited" and balance() == 10000 and fake.queries[no] == 2
    assert fake.closed == []  # the customer's button never closes an order
    assert client.post(f"/orders/{token}/check", data={}).status_code == 400  # CSRF


def test_check_payment_now_is_rate_limited_per_ip(database: str, fake: FakePay, app: Flask) -> None:
    app.config["RATELIMIT_ENABLED"] = True
    from heyon_site.extensions import limiter
    limiter.init_app(app)  # re-read the settings: the fixture's app had limits switched off
    limiter.reset()
    make_card()
    client = new_client(app)
    no, _ = begin(client)
    token = order(no).token
    statuses = [check_now(client, token).status_code for _ in range(7)]  # type: ignore[attr-defined]
    assert statuses == [303] * 6 + [429]


# ------------------------------------------------------------------ reconciliation


def test_reconcile_credits_paid_closes_and_expires_unpaid(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    paid, unpaid_old, unpaid_young, raced, fresh = (begin(client)[0] for _ in range(5))
    fake.paid[paid] = order(paid).pay_fen
    fake.pay_on_close.add(raced)
    for no in (paid, unpaid_old, raced):
        age(no, 121)
    age(unpaid_young, 10)
    counts = run()
    assert counts == Counter({"credited": 2, "expired": 1, "still_pending": 1})
    assert [order(n).status for n in (paid, unpaid_old, unpaid_young, raced, fresh)] == \
           ["credited", "expired", "pending", "credited", "pending"]
    assert sorted(fake.closed) == sorted([unpaid_old, raced])
    assert fresh not in fake.queries  # younger than five minutes: left to its notification
    assert balance() == 20000 and ledger.verify(db.session).ok
    assert run() == Counter({"still_pending": 1})  # nothing left to do but wait


def test_no_order_is_closed_before_the_providers_own_timeout(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    no, _ = begin(client)
    age(no, 20)
    assert run(expiry=10) == Counter({"still_pending": 1})  # our expiry is 10 minutes, the provider's 30
    age(no, 31)
    assert run(expiry=10) == Counter({"expired": 1})


def test_an_unreachable_provider_leaves_orders_pending(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    no, _ = begin(client)
    age(no, 500)
    fake.down = True
    assert run() == Counter({"provider_unavailable": 1})
    assert order(no).status == "pending"  # unknown is not unpaid: never expire on a guess
    fake.down = False
    fake.paid[no] = order(no).pay_fen
    assert run() == Counter({"credited": 1})


def test_several_reconcilers_at_once_credit_each_order_once(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    orders = [begin(client)[0] for _ in range(30)]
    for i, no in enumerate(orders):
        age(no, 200)
        if i % 3:
            fake.paid[no] = order(no).pay_fen
    results: list[Counter[str]] = []

    def worker() -> None:
        with app.app_context():
            results.append(run())
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    total = sum(results, Counter())
    db.session.rollback()
    statuses = Counter(order(no).status for no in orders)
    assert statuses == Counter({"credited": 20, "expired": 10})
    assert db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.kind == "recharge").limit(1)) is not None
    assert balance(CARD) == 20 * 10000 and ledger.verify(db.session).ok
    assert total["credited"] == 20 and total["expired"] == 10
    if db.session.get_bind().dialect.name == "postgresql":
        # Row locks with SKIP LOCKED: no order was handled by two runs. A paid order is asked
        # once; an unpaid one twice (before and after its close) and closed once.
        assert all(fake.queries[no] == (2 if no in fake.closed else 1) for no in orders), fake.queries
        assert set(Counter(fake.closed).values()) == {1}


def test_reconcile_moves_a_wrong_amount_to_review(app: Flask, client: FlaskClient, fake: FakePay) -> None:
    make_card()
    no, _ = begin(client)
    fake.paid[no] = order(no).pay_fen - 1  # the provider says one fen less was paid
    age(no, 10)
    assert run() == Counter({"amount_mismatch": 1})
    assert (order(no).status, order(no).status_reason, order(no).paid_fen) == ("review", "amount_mismatch", 9999)
    assert balance() == 0 and ledger.verify(db.session).ok
