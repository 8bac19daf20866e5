"""Refunds and settlement with each real provider, against the local fakes of their APIs that keep
the provider's books (``tests/provider_kits``): a payment that credited nothing is refunded by two
people through the staff pages and the provider's fake holds exactly that one refund; a day's
statement, fetched through the adapter (or read from a saved file), is matched against our books,
archived as served, and a payment only the provider has is asked about and credited through the
normal path. Alipay, WeChat Pay and Stripe, on every database, the books proving after each test.

Each provider's part is a small ``Books`` adapter here: how a payment becomes known to the fake
(and when, by the fake's clock), its signed notifications, how a refund is finished, and how the
fake's statement of a day is produced. The statements are of a day two days back (Alipay and
Stripe make a day's statement only once it is over); what the fakes record is stamped at noon of
the chosen days (Beijing), and our records are pinned to the times the fake recorded, so no
payment is near a day's edge, whenever the tests run.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.wrappers import Request, Response

from heyon_site.billing import refunds
from heyon_site.billing.money import yuan
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, PaymentEvent, RechargeOrder, Refund, Resolution, Settlement, utcnow

from tests import kit
from tests.fakes import FakeApi, serving
from tests.kit import cli, csrf_from, make_card, new_client, recharge_form, site_for_tests
from tests.provider_kits import alipay, alipay_refunds, stripe, stripe_refunds, wechat, wechat_refunds
from tests.staff.kit import add_staff, sign_in

pytestmark = pytest.mark.usefixtures("books_balance")

BEIJING = ZoneInfo("Asia/Shanghai")
Message = tuple[bytes, dict[str, str]]
PHONE = "Mozilla/5.0 (Linux; Android 9; Redmi 7A) AppleWebKit/537.36 Chrome/90.0 Mobile Safari/537.36"


def beijing_day(moment: datetime) -> date:
    return moment.astimezone(BEIJING).date()


def noon(day: date) -> datetime:
    """Noon of a Beijing day, in UTC: as far from both of the day's edges as can be."""
    return datetime.combine(day, time(12), BEIJING).astimezone(UTC)


def two_days_back() -> date:
    """A day whose statement every provider serves (Alipay and Stripe: only once it is over), and
    far enough back that nothing recorded while a test runs is within 15 minutes of its end."""
    return datetime.now(BEIJING).date() - timedelta(days=2)


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)  # how the site stores times


def recording(handler: Callable[[Request], Response], kept: list[bytes]) -> Callable[[Request], Response]:
    """A route that keeps the body of every file it serves (what settlement must archive)."""

    def handle(request: Request) -> Response:
        answer = handler(request)
        if answer.status_code == 200:
            kept.append(answer.get_data())
        return answer

    return handle


# ------------------------------------------------------------------ each provider's books


class Books(Protocol):
    """One provider as these tests drive it: its fake (the provider's books), and what the
    provider does. Times: what the fake records next happens at ``at(moment)``."""

    name: str
    #: How the site answers the provider's notification it accepted.
    received: tuple[int, str]
    #: The payment of this provider that credits nothing, refunded in these tests: a second
    #: payment of a credited order where the provider allows one (Stripe: another Checkout
    #: Session of the same order); where one order number is paid at most once (Alipay, WeChat
    #: Pay), a payment of an order that had expired here, or one of another amount.
    uncredited: str
    served: list[bytes]

    @property
    def fake(self) -> FakeApi: ...
    def config(self) -> dict[str, str]: ...
    def at(self, moment: datetime) -> None: ...
    def pay(self, order_no: str, amount_fen: int) -> str: ...
    def notification(self, order_no: str, amount_fen: int, txn: str) -> Message: ...
    def new_txn(self) -> str: ...
    def paid_at(self, txn: str) -> datetime | None: ...
    def refunded_at(self, refund_no: str) -> datetime | None: ...
    #: (our refund number, amount, "succeeded" | "pending" | another state) of every refund held.
    def refunds_held(self) -> list[tuple[str, int, str]]: ...
    def finish_later(self) -> None: ...
    def finish(self, refund_no: str) -> None: ...
    #: The provider's notifications of a refund, in the order it sends them.
    def refund_notices(self, refund_no: str) -> list[Message]: ...
    def change_amount(self, order_no: str, amount_fen: int) -> None: ...
    #: The day's statement is made (from the fake's books, as they are now).
    def publish(self, day: date) -> None: ...
    def fee(self, kind: str, amount_fen: int) -> int: ...
    #: How often the site asked the provider about the order (its order query).
    def queries(self, order_no: str) -> int: ...
    def assert_archived_as_served(self, raw: bytes, day: date) -> None: ...


class AlipayBooks:
    name, received, uncredited = "alipay", (200, "success"), "paid_after_close"

    def __init__(self) -> None:
        self.fake = alipay_refunds.REFUNDS_KIT.fake_api()
        self.served: list[bytes] = []
        self.fake.routes[("GET", alipay_refunds.BILL_PATH)] = recording(
            self.fake.routes[("GET", alipay_refunds.BILL_PATH)], self.served)
        self.moment: datetime | None = None

    def config(self) -> dict[str, str]:
        return alipay.KIT.config(self.fake.base_url)

    def at(self, moment: datetime) -> None:
        self.moment = moment
        self.fake.clock = lambda: moment  # when refunds are made

    def pay(self, order_no: str, amount_fen: int) -> str:
        return alipay_refunds.REFUNDS_KIT.pay(self.fake, order_no, amount_fen, at=self.moment)

    def notification(self, order_no: str, amount_fen: int, txn: str) -> Message:
        return alipay.KIT.notification(order_no, amount_fen, txn)

    def new_txn(self) -> str:
        return alipay.new_trade_no()

    def _order_of(self, txn: str) -> str | None:
        return next((no for no, trade in self.fake.trades.items() if trade.trade_no == txn), None)

    def paid_at(self, txn: str) -> datetime | None:
        order_no = self._order_of(txn)
        payment = self.fake.paid.get(order_no or "")
        return payment.paid_at if payment is not None else None

    def _refund(self, refund_no: str) -> alipay_refunds.RefundRecord:
        [record] = [r for r in self.fake.refunds.values() if r.out_request_no == refund_no]
        return record

    def refunded_at(self, refund_no: str) -> datetime | None:
        record = self._refund(refund_no)
        return record.at if record.done else None

    def refunds_held(self) -> list[tuple[str, int, str]]:
        return [(r.out_request_no, r.amount_fen, "succeeded" if r.done else "pending")
                for r in self.fake.refunds.values()]

    def finish_later(self) -> None:
        self.fake.finish_refunds = False  # accepted (fund_change N), paid back later

    def finish(self, refund_no: str) -> None:
        self.fake.finish_pending()

    def refund_notices(self, refund_no: str) -> list[Message]:
        record = self._refund(refund_no)
        total = alipay_refunds._fen(self.fake.trades[record.out_trade_no].total_amount)
        return [alipay_refunds.REFUNDS_KIT.refund_notification(
            record.out_trade_no, total, record.trade_no, self.fake.refunded_fen(record.out_trade_no, done_only=True),
            record.out_request_no)]

    def change_amount(self, order_no: str, amount_fen: int) -> None:
        self.fake.trades[order_no].total_amount = alipay.yuan(amount_fen)

    def publish(self, day: date) -> None:
        pass  # Alipay writes the day's file from its books when the site asks for it

    def fee(self, kind: str, amount_fen: int) -> int:
        charged = alipay_refunds.fee_of(amount_fen)
        return charged if kind == "payment" else -charged

    def queries(self, order_no: str) -> int:
        asked = [dict(parse_qsl(body.decode())) for verb, _, body in self.fake.seen if verb == "POST"]
        return sum(1 for p in asked if p.get("method") == "alipay.trade.query"
                   and json.loads(p.get("biz_content", "{}")).get("out_trade_no") == order_no)

    def assert_archived_as_served(self, raw: bytes, day: date) -> None:
        assert raw == self.served[-1]
        assert alipay_refunds.read_statement(raw).names[-1].endswith(f"_{day:%Y%m%d}_业务明细.csv")


@dataclass(eq=False)
class WechatWithTimes(wechat_refunds.WechatRefundFake):
    """The kit's WeChat Pay fake, with the times a bill prints: when each payment was made
    (the kit keeps none) and when each refund succeeded, by ``clock`` (the kit's: the real time)."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    paid_at: dict[str, datetime] = field(default_factory=dict)  # by transaction_id

    def settle(self, out_refund_no: str, status: str) -> wechat_refunds.HeldRefund:
        held = super().settle(out_refund_no, status)
        if status == "SUCCESS":
            held.succeeded = self.clock()
        return held


def _stamped(fake: WechatWithTimes, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """申请退款, with the refunds it makes stamped by the fake's clock."""

    def handle(request: Request) -> Response:
        before = set(fake.refunds)
        answer = handler(request)
        for number in set(fake.refunds) - before:
            held = fake.refunds[number]
            held.created = fake.clock()
            if held.status == "SUCCESS":
                held.succeeded = held.created
        return answer

    return handle


class WechatBooks:
    name, received, uncredited = "wechat", (204, ""), "amount_mismatch"

    def __init__(self) -> None:
        self.fake = fake = WechatWithTimes(routes={})
        fake.routes = wechat_refunds._RefundRoutes(fake)
        fake.routes[("POST", wechat_refunds.REFUNDS)] = _stamped(fake, fake.routes[("POST", wechat_refunds.REFUNDS)])
        self.served: list[bytes] = []
        fake.routes[("GET", wechat_refunds.DOWNLOAD)] = recording(fake.routes[("GET", wechat_refunds.DOWNLOAD)],
                                                                  self.served)
        fake.new_refund_status = "SUCCESS"  # to Change: paid back at once

    def config(self) -> dict[str, str]:
        return wechat.KIT.config(self.fake.base_url)

    def at(self, moment: datetime) -> None:
        self.fake.clock = lambda: moment

    def pay(self, order_no: str, amount_fen: int) -> str:
        txn = wechat.KIT.pay(self.fake, order_no, amount_fen)
        self.fake.paid_at[txn] = self.fake.clock()
        return txn

    def notification(self, order_no: str, amount_fen: int, txn: str) -> Message:
        return wechat.KIT.notification(order_no, amount_fen, txn)

    def new_txn(self) -> str:
        return wechat.new_transaction_id()

    def paid_at(self, txn: str) -> datetime | None:
        return self.fake.paid_at.get(txn)

    def refunded_at(self, refund_no: str) -> datetime | None:
        return self.fake.refunds[refund_no].succeeded

    def refunds_held(self) -> list[tuple[str, int, str]]:
        states = {"SUCCESS": "succeeded", "PROCESSING": "pending"}
        return [(number, held.amount_fen, states.get(held.status, held.status))
                for number, held in self.fake.refunds.items()]

    def finish_later(self) -> None:
        self.fake.new_refund_status = "PROCESSING"  # to a bank card: takes a while

    def finish(self, refund_no: str) -> None:
        self.fake.settle(refund_no, "SUCCESS")

    def refund_notices(self, refund_no: str) -> list[Message]:
        held = self.fake.refunds[refund_no]
        return [wechat_refunds.refund_notice(held.order_no, held.transaction_id or "", held.amount_fen,
                                             held.total_fen, refund_id=held.refund_id, out_refund_no=refund_no)]

    def change_amount(self, order_no: str, amount_fen: int) -> None:
        self.fake.trades[order_no].amount_fen = amount_fen

    def publish(self, day: date) -> None:
        """The ALL trade bill of ``day`` from WeChat's books: a line per payment made that day and
        per refund that succeeded that day. WeChat makes no bill of a day without either."""
        lines = []
        for order_no, trade in self.fake.trades.items():
            at = self.fake.paid_at.get(trade.transaction_id or "")
            if at is not None and beijing_day(at) == day:
                lines.append(wechat_refunds.BillLine(at, order_no, trade.transaction_id or "", trade.amount_fen,
                                                     self.fee("payment", trade.amount_fen)))
        for held in self.fake.refunds.values():
            if held.status == "SUCCESS" and held.succeeded is not None and beijing_day(held.succeeded) == day:
                lines.append(wechat_refunds.BillLine(held.succeeded, held.order_no, held.transaction_id or "",
                                                     held.amount_fen, self.fee("refund", held.amount_fen),
                                                     refund_id=held.refund_id, refund_no=held.out_refund_no))
        if lines:
            self.fake.bills[day.isoformat()] = wechat_refunds.bill_csv(sorted(lines, key=lambda line: line.at))

    def fee(self, kind: str, amount_fen: int) -> int:
        charged = (amount_fen * 6 + 500) // 1000  # 0.60%, half up to the fen; a refund gives its share back
        return charged if kind == "payment" else -charged

    def queries(self, order_no: str) -> int:
        return sum(1 for verb, path, _ in self.fake.seen
                   if verb == "GET" and path == f"/v3/pay/transactions/out-trade-no/{order_no}")

    def assert_archived_as_served(self, raw: bytes, day: date) -> None:
        assert raw == self.served[-1]
        assert gzip.decompress(raw) == self.fake.bills[day.isoformat()]


class StripeBooks:
    name, received, uncredited = "stripe", (200, '{"received": true}'), "paid_again"

    def __init__(self) -> None:
        self.fake: stripe_refunds.StripeRefundsFake = stripe_refunds.fake_api()
        self.served: list[bytes] = []  # Stripe serves no file: the adapter writes the day's balance transactions
        self.pending_first: set[str] = set()

    def config(self) -> dict[str, str]:
        return stripe.KIT.config(self.fake.base_url)

    def at(self, moment: datetime) -> None:
        self.fake.clock = int(moment.timestamp())

    def pay(self, order_no: str, amount_fen: int) -> str:
        session = self.fake.session_of(order_no)
        if session is not None and session.get("payment_status") == "paid":
            # Paid before in another Checkout Session of the same order (a second tab): Stripe
            # takes the money again.
            self.fake.add_session({
                "id": stripe.stripe_id("cs_test_", 58), "object": "checkout.session", "livemode": False,
                "mode": "payment", "status": "open", "payment_status": "unpaid", "currency": "cny",
                "currency_conversion": None, "client_reference_id": order_no, "metadata": {"order_no": order_no},
                "created": self.fake.now()})
        return str(self.fake.pay(order_no, amount_fen)["id"])

    def notification(self, order_no: str, amount_fen: int, txn: str) -> Message:
        return stripe.KIT.notification(order_no, amount_fen, txn)

    def new_txn(self) -> str:
        return stripe.stripe_id("cs_test_", 58)

    def _charge_of(self, txn: str) -> dict[str, Any] | None:
        session = self.fake.sessions.get(txn)
        intent = session.get("payment_intent") if session is not None else None
        return self.fake.charges[self.fake.intents[intent]] if intent in self.fake.intents else None

    def paid_at(self, txn: str) -> datetime | None:
        charge = self._charge_of(txn)
        return datetime.fromtimestamp(charge["created"], UTC) if charge is not None else None

    def refunded_at(self, refund_no: str) -> datetime | None:
        [refund] = self.fake.ours(refund_no)
        return datetime.fromtimestamp(refund["created"], UTC) if refund["status"] == "succeeded" else None

    def refunds_held(self) -> list[tuple[str, int, str]]:
        return [(r["metadata"].get("refund_no", ""), r["amount"], r["status"]) for r in self.fake.refunds.values()]

    def finish_later(self) -> None:
        self.fake.next_statuses.append("pending")

    def finish(self, refund_no: str) -> None:
        [refund] = self.fake.ours(refund_no)
        self.pending_first.add(refund_no)
        self.fake.settle(refund["id"], "succeeded")

    def refund_notices(self, refund_no: str) -> list[Message]:
        # charge.refunded as soon as the refund is made (on current API versions without the
        # charge's refunds, so without our number), refund.updated when a pending one succeeds.
        [refund] = self.fake.ours(refund_no)
        notices = [stripe_refunds.charge_refunded(self.fake, refund, with_refunds=False)]
        if refund_no in self.pending_first:
            notices.append(stripe_refunds.refund_event(refund, previous={"status": "pending"}))
        return notices

    def change_amount(self, order_no: str, amount_fen: int) -> None:
        session = self.fake.session_of(order_no)
        assert session is not None
        charge = self.fake.charges[self.fake.intents[session["payment_intent"]]]
        charge["amount"] = charge["amount_captured"] = amount_fen
        fee = self.fee("payment", amount_fen)  # as Stripe charges on that amount
        for line in self.fake.balance:
            if line["source"] == charge["id"]:
                line.update(amount=amount_fen, fee=fee, net=amount_fen - fee)
                line["fee_details"][0]["amount"] = fee

    def publish(self, day: date) -> None:
        pass  # the day's statement is the balance transactions the adapter lists

    def fee(self, kind: str, amount_fen: int) -> int:
        if kind != "payment":
            return 0  # Stripe keeps its fee when a payment is refunded
        return amount_fen * stripe_refunds.FEE_PER_MILLE // 1000 + stripe_refunds.FEE_FIXED

    def queries(self, order_no: str) -> int:
        sessions = {s["id"] for s in self.fake.sessions.values() if s["client_reference_id"] == order_no}
        return sum(1 for verb, path, _ in self.fake.seen
                   if verb == "GET" and path.removeprefix(stripe.SESSIONS + "/") in sessions)

    def assert_archived_as_served(self, raw: bytes, day: date) -> None:
        """Stripe serves balance transactions page by page; the archive keeps every one of the
        day's, as Stripe gave it (its source expanded), and nothing else."""
        start, end = (int(moment.timestamp()) for moment in (noon(day) - timedelta(hours=12),
                                                              noon(day) + timedelta(hours=12)))
        kept = json.loads(raw)
        served = {line["id"]: line for line in self.fake.balance if start <= line["created"] < end}
        assert sorted(line["id"] for line in kept) == sorted(served)
        for line in kept:
            source = line.pop("source")
            line.pop("heyon", None)  # what the adapter adds: the line's Checkout Session and order
            assert line == {k: v for k, v in served[line["id"]].items() if k != "source"}
            assert source["id"] == served[line["id"]]["source"]


BOOKS: dict[str, Callable[[], Books]] = {"alipay": AlipayBooks, "wechat": WechatBooks, "stripe": StripeBooks}


@pytest.fixture(params=list(BOOKS))
def books(request: pytest.FixtureRequest) -> Iterator[Books]:
    made = BOOKS[request.param]()
    with serving(made.fake):
        yield made


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def app(database: str, books: Books, archive_dir: Path) -> Iterator[Flask]:
    with site_for_tests(database, HEYON_PROVIDERS=(books.name,), HEYON_SETTLEMENT_DIR=str(archive_dir),
                        **books.config()) as app:
        yield app


# ------------------------------------------------------------------ paying, as customers and providers do


def start_order(buyer: FlaskClient, books: Books, amount: str = "100") -> str:
    """The recharge form sent from a phone: the order is made and its payment begun with the
    provider (Stripe: a Checkout Session, WeChat Pay: an H5 order)."""
    r = buyer.post("/recharge", data=recharge_form(buyer, method=books.name, amount=amount),
                   headers={"User-Agent": PHONE})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    db.session.rollback()
    order_no = db.session.scalar(select(RechargeOrder.order_no).order_by(RechargeOrder.id.desc()))
    assert order_no is not None
    return order_no


def notify(client: FlaskClient, books: Books, message: Message) -> str:
    """Post the provider's signed notification; the outcome kept for it."""
    assert kit.post_notification(f"/pay/notify/{books.name}", client, message) == books.received
    return kit.callbacks()[-1].outcome


def paid_order(buyer: FlaskClient, books: Books, amount: str = "100") -> tuple[str, str]:
    """An order paid at the provider and credited on its notification: (order_no, txn)."""
    order_no = start_order(buyer, books, amount)
    fen = kit.order(order_no).pay_fen
    txn = books.pay(order_no, fen)
    assert notify(buyer, books, books.notification(order_no, fen, txn)) == "credited"
    return order_no, txn


def expire(app: Flask, order_no: str) -> None:
    """The order's time runs out unpaid: reconcile closes it with the provider and expires it."""
    older = utcnow() - timedelta(minutes=app.config["HEYON_ORDER_EXPIRY_MINUTES"] + 1)
    in_write_transaction(lambda: db.session.execute(
        update(RechargeOrder).where(RechargeOrder.order_no == order_no).values(created_at=older)))
    assert cli(app.test_cli_runner(), "payments", "reconcile").output.strip() == "reconcile: expired 1"
    assert kit.order(order_no).status == "expired"


def uncredited_payment(app: Flask, buyer: FlaskClient, books: Books) -> PaymentEvent:
    """A payment the provider's books hold and that credited nothing here (``books.uncredited``)."""
    if books.uncredited == "paid_again":
        order_no, _ = paid_order(buyer, books)
        fen = kit.order(order_no).pay_fen
    elif books.uncredited == "paid_after_close":
        order_no = start_order(buyer, books)
        expire(app, order_no)
        fen = kit.order(order_no).pay_fen
    else:
        order_no, fen = start_order(buyer, books), 9000  # the order is of 100.00
    txn = books.pay(order_no, fen)
    outcome = notify(buyer, books, books.notification(order_no, fen, txn))
    assert outcome == ("review" if books.uncredited == "paid_after_close" else books.uncredited)
    db.session.rollback()
    event = db.session.scalar(select(PaymentEvent).where(PaymentEvent.provider_txn_id == txn,
                                                         PaymentEvent.kind == "paid"))
    assert event is not None and event.amount_fen == fen
    return event


# ------------------------------------------------------------------ two people


def staff_member(app: Flask, username: str, role: str) -> FlaskClient:
    add_staff(username, role)
    client = new_client(app)
    assert sign_in(client, username).status_code in (303, 204)
    return client


def order_page_token(client: FlaskClient, order_no: str) -> str:
    return csrf_from(client.get(f"/staff/orders/{order_no}?lang=en").get_data(as_text=True))


def refunded_by_two_people(app: Flask, event: PaymentEvent) -> Refund:
    """A cashier proposes to refund the payment, an admin approves it (the refund is sent to the
    provider at once); the refund as it then stands."""
    order_no = db.session.scalar(select(RechargeOrder.order_no).where(RechargeOrder.id == event.order_id))
    assert order_no is not None
    cashier = staff_member(app, "cashier-r", "cashier")
    admin = staff_member(app, "admin-r", "admin")
    r = cashier.post(f"/staff/orders/{order_no}/payments/{event.id}/propose",
                     data={"csrf_token": order_page_token(cashier, order_no), "action": "refund",
                           "reason": "paid for nothing: the customer asked for it back"})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    db.session.rollback()
    assert db.session.scalar(select(Refund)) is None  # nothing is sent on a proposal alone
    proposal = db.session.scalar(select(Resolution.id).where(Resolution.payment_event_id == event.id,
                                                             Resolution.state == "proposed"))
    r = admin.post(f"/staff/orders/{order_no}/resolutions/{proposal}",
                   data={"csrf_token": order_page_token(admin, order_no), "decision": "approve"})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    db.session.rollback()
    [refund] = db.session.scalars(select(Refund)).all()
    assert (refund.payment_event_id, refund.amount_fen, refund.origin) == (event.id, event.amount_fen, "resolution")
    return refund


def ledger_now() -> tuple[int, int]:
    """The card's balance and how many ledger entries there are."""
    return kit.balance(), db.session.scalar(select(func.count()).select_from(LedgerEntry)) or 0


def refund_row(refund_id: int) -> Refund:
    db.session.rollback()
    found = db.session.get(Refund, refund_id)
    assert found is not None
    return found


@pytest.mark.parametrize("ending", ["at_once", "notified", "reconciled"])
def test_a_payment_that_credited_nothing_is_refunded_once_by_two_people(
        app: Flask, client: FlaskClient, books: Books, ending: str) -> None:
    """The refund ends as the provider says: in its answer, by its signed notification naming
    our refund number, or by the query `flask payments reconcile` makes."""
    make_card()
    event = uncredited_payment(app, new_client(app), books)
    order_no = db.session.scalar(select(RechargeOrder.order_no).where(RechargeOrder.id == event.order_id))
    assert order_no is not None
    before = ledger_now()
    if ending != "at_once":
        books.finish_later()

    refund = refunded_by_two_people(app, event)
    assert refund.status == ("succeeded" if ending == "at_once" else "pending"), (refund.status, refund.detail)
    if ending != "at_once":
        assert refunds.state_of(db.session, event.id) == "refunding"
        books.finish(refund.refund_no)
    if ending == "reconciled":
        # Its notification is lost. Five minutes on the refund is due to be asked about again.
        in_write_transaction(lambda: db.session.execute(
            update(Refund).values(next_attempt_at=utcnow() - timedelta(seconds=1))))
        assert "refunds: succeeded 1" in cli(app.test_cli_runner(), "payments", "reconcile").output
        assert refund_row(refund.id).status == "succeeded"
    # The provider's notifications of the refund: in the "notified" ending they finish it, in the
    # others they come once it is final. Each is known for ours: nobody is alarmed.
    for message in books.refund_notices(refund.refund_no):
        assert notify(client, books, message) == "refund_succeeded"

    refund = refund_row(refund.id)
    assert refund.status == "succeeded" and refund.finished_at is not None
    if ending == "notified":
        assert refund.detail == "notified"  # finished by the notification, not by an answer
    assert refunds.state_of(db.session, event.id) == "refunded"
    # The provider holds exactly one refund: ours, of the payment's amount, paid back.
    assert books.refunds_held() == [(refund.refund_no, event.amount_fen, "succeeded")]
    listed = cli(app.test_cli_runner(), "refunds", "list").output
    assert listed.strip() == f"{order_no} {books.name} {yuan(event.amount_fen)} succeeded"
    found = kit.order(order_no)
    assert (found.attention, found.attention_at) == (None, None)  # money we sent back alarms nobody
    assert ledger_now() == before  # a refund of money never credited moves nothing in the books


# ------------------------------------------------------------------ settlement


def pin_ours_to_theirs(books: Books) -> None:
    """Our payments and finished refunds carry the time the provider recorded for them (the
    fake's clock), as if we had heard of each at once: the days of both books agree."""

    def work() -> None:
        for event_id, txn in db.session.execute(select(PaymentEvent.id, PaymentEvent.provider_txn_id)
                                                .where(PaymentEvent.kind == "paid")).all():
            at = books.paid_at(txn)
            if at is not None:
                db.session.execute(update(PaymentEvent).where(PaymentEvent.id == event_id)
                                   .values(created_at=naive_utc(at)))
        for refund_id, refund_no in db.session.execute(select(Refund.id, Refund.refund_no)
                                                       .where(Refund.status == "succeeded")).all():
            at = books.refunded_at(refund_no)
            if at is not None:
                db.session.execute(update(Refund).where(Refund.id == refund_id).values(finished_at=naive_utc(at)))

    in_write_transaction(work)


def pin_payment(txn: str, moment: datetime) -> None:
    in_write_transaction(lambda: db.session.execute(
        update(PaymentEvent).where(PaymentEvent.provider_txn_id == txn).values(created_at=naive_utc(moment))))


def settle(app: Flask, books: Books, day: date, *more: str) -> tuple[int, str]:
    """`flask settlement run --date DAY --provider P [...]`: its exit code and output."""
    books.publish(day)
    result = cli(app.test_cli_runner(), "settlement", "run", "--date", day.isoformat(), "--provider", books.name,
                 *more)
    code = result.exception.code if isinstance(result.exception, SystemExit) else result.exit_code
    return int(code or 0), result.output


def line(books: Books, day: date, matched: int, here: int, there: int, differs: int, fees_fen: int) -> str:
    return (f"settlement {books.name} {day}: {matched} matched, {here} missing here, {there} missing there, "
            f"{differs} amount differs, fees {yuan(fees_fen)}")


def differences(books: Books, day: date) -> list[dict[str, Any]]:
    db.session.rollback()
    row = db.session.scalar(select(Settlement).where(Settlement.provider == books.name, Settlement.day == day))
    assert row is not None
    return list(json.loads(row.differences))


@dataclass(frozen=True)
class AgreeingDay:
    day: date
    line: str
    refunded: PaymentEvent
    refunded_on: date


def a_day_with_a_payment_and_a_refund(app: Flask, books: Books) -> AgreeingDay:
    """The day before: a payment that credited nothing. The day: two people refund it, and
    another order is paid and credited. Their statement lines: a payment and a refund."""
    day = two_days_back()
    make_card()
    buyer = new_client(app)
    books.at(noon(day - timedelta(days=1)))
    event = uncredited_payment(app, buyer, books)
    books.at(noon(day))
    refund = refunded_by_two_people(app, event)
    assert refund.status == "succeeded"
    _, txn = paid_order(buyer, books, amount="50")
    pin_ours_to_theirs(books)
    paid_on = books.paid_at(txn)
    assert paid_on is not None and beijing_day(paid_on) == day  # the day as the provider recorded it
    refunded_paid_on = books.paid_at(event.provider_txn_id)
    assert refunded_paid_on is not None
    fees = books.fee("payment", 5000) + books.fee("refund", event.amount_fen)
    return AgreeingDay(day, line(books, day, 2, 0, 0, 0, fees), event, beijing_day(refunded_paid_on))


def test_a_day_with_a_payment_and_a_refund_agrees_and_its_file_is_kept_as_served(
        app: Flask, books: Books, archive_dir: Path) -> None:
    agreed = a_day_with_a_payment_and_a_refund(app, books)
    code, out = settle(app, books, agreed.day)
    assert out.splitlines() == [agreed.line]
    assert code == 0
    [archived] = [p for p in archive_dir.rglob("*") if p.is_file()]
    assert archived.parent == archive_dir / books.name / f"{agreed.day:%Y}"
    books.assert_archived_as_served(archived.read_bytes(), agreed.day)
    db.session.rollback()
    row = db.session.scalar(select(Settlement))
    assert row is not None and (row.day, row.matched, row.archive) == (agreed.day, 2, str(archived))
    assert differences(books, agreed.day) == []
    # The refunded payment is on the statement of the day it was paid (with the credited first
    # payment of its order, where there was one), matched there.
    payments = 2 if books.uncredited == "paid_again" else 1
    fees = payments * books.fee("payment", agreed.refunded.amount_fen)
    code, out = settle(app, books, agreed.refunded_on)
    assert agreed.refunded_on == agreed.day - timedelta(days=1)
    assert (code, out.splitlines()) == (0, [line(books, agreed.refunded_on, payments, 0, 0, 0, fees)])


def test_a_statement_saved_to_a_file_reads_as_the_one_fetched(app: Flask, books: Books, archive_dir: Path,
                                                              tmp_path: Path) -> None:
    agreed = a_day_with_a_payment_and_a_refund(app, books)
    code, out = settle(app, books, agreed.day)
    assert (code, out.splitlines()) == (0, [agreed.line])
    [archived] = [p for p in archive_dir.rglob("*") if p.is_file()]
    saved = tmp_path / "downloads" / f"by-hand-{archived.name}"
    saved.parent.mkdir()
    saved.write_bytes(archived.read_bytes())
    asked = len(books.fake.seen)
    code, out = settle(app, books, agreed.day, "--file", str(saved))
    assert (code, out.splitlines()) == (0, [agreed.line])
    assert len(books.fake.seen) == asked  # read from the file: the provider was not asked
    kept = sorted(p.name for p in archive_dir.rglob("*") if p.is_file())
    assert kept == sorted([archived.name, saved.name])  # the file read is archived too


def test_a_payment_only_the_provider_has_is_asked_about_and_credited(app: Flask, books: Books) -> None:
    """Its notification was lost: the statement has it, we did not. The provider is asked
    through its order query (never the statement's word) and the order is credited through
    the one credit path."""
    day = two_days_back()
    make_card()
    buyer = new_client(app)
    books.at(noon(day))
    paid_order(buyer, books)
    lost = start_order(buyer, books)
    txn = books.pay(lost, 10000)  # the provider took the money; its notification never came
    pin_ours_to_theirs(books)
    assert kit.order(lost).status == "pending" and books.queries(lost) == 0
    code, out = settle(app, books, day)
    assert out.splitlines() == [line(books, day, 1, 1, 0, 0, 2 * books.fee("payment", 10000)),
                                f"  asked {books.name} about order {lost}: credited"]
    assert code == 1
    assert books.queries(lost) == 1
    found = kit.order(lost)
    assert (found.status, found.provider_txn_id, found.paid_fen) == ("credited", txn, 10000)
    assert kit.balance() == 20000 and kit.entries_of(lost) == 1
    assert [(d["what"], d["kind"], d["order_no"], d["reference"]) for d in differences(books, day)] == [
        ("missing_here", "payment", lost, txn)]


def test_the_next_run_of_a_day_agrees_once_the_asked_payment_is_credited(app: Flask, books: Books) -> None:
    day = two_days_back()
    make_card()
    buyer = new_client(app)
    books.at(noon(day))
    lost = start_order(buyer, books)
    books.pay(lost, 10000)
    code, out = settle(app, books, day)
    assert code == 1 and f"  asked {books.name} about order {lost}: credited" in out.splitlines()
    code, out = settle(app, books, day)  # the statement is the same; our books now have it
    assert out.splitlines() == [line(books, day, 1, 0, 0, 0, books.fee("payment", 10000))]
    assert code == 0


def test_a_payment_only_we_have_is_missing_there(app: Flask, books: Books) -> None:
    """A notification (genuinely signed) of a payment the provider's books do not hold."""
    day = two_days_back()
    make_card()
    buyer = new_client(app)
    books.at(noon(day))
    paid_order(buyer, books)
    ours_only = start_order(buyer, books)
    txn = books.new_txn()
    assert notify(buyer, books, books.notification(ours_only, 10000, txn)) == "credited"
    pin_ours_to_theirs(books)
    pin_payment(txn, noon(day))  # the provider recorded no time for it: we heard of it at noon
    code, out = settle(app, books, day)
    assert out.splitlines() == [line(books, day, 1, 0, 1, 0, books.fee("payment", 10000))]
    assert code == 1
    assert [(d["what"], d["order_no"], d["reference"], d["ours_fen"], d["theirs_fen"])
            for d in differences(books, day)] == [("missing_there", ours_only, txn, 10000, None)]
    assert books.queries(ours_only) == 0  # only money we never recorded is asked about


def test_an_amount_that_differs_is_named(app: Flask, books: Books) -> None:
    day = two_days_back()
    make_card()
    books.at(noon(day))
    order_no, txn = paid_order(new_client(app), books)
    books.change_amount(order_no, 9999)  # the provider's books say 99.99 of the 100.00 we credited
    pin_ours_to_theirs(books)
    code, out = settle(app, books, day)
    assert out.splitlines() == [line(books, day, 0, 0, 0, 1, books.fee("payment", 9999))]
    assert code == 1
    assert [(d["what"], d["order_no"], d["reference"], d["ours_fen"], d["theirs_fen"])
            for d in differences(books, day)] == [("amount_differs", order_no, txn, 10000, 9999)]
    assert kit.order(order_no).status == "credited" and kit.balance() == 10000  # nothing moves by itself
