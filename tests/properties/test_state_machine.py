"""The books hold whatever happens, in whatever order: a stateful property test.

Hypothesis drives one card through random sequences of what really happens to orders: the
customer starts recharges (under whatever promotions run), pays, fails or walks away on the
sandbox gateway; notifications arrive late, twice, out of order, for amounts that differ, or
forged; the provider reports payments it never notified; reconciliation runs, now or after the
orders' expiry; staff start and end promotions and reprint receipts; two people decide to credit
or refund a payment that credited nothing, the rule refunds what can never be credited, and the
day is settled against the gateway's statement. A model written here (not
imported from the app) says what each step must do, and after every step the database is held
to it and to ``ledger.verify(db.session)``:

- each credited order is credited exactly once: one recharge entry and, if it has a bonus, one
  bonus entry, on its own card;
- the card's balance is the opening balance plus what its credited orders brought, and the sum
  of its ledger entries;
- a forged notification changes nothing;
- an order's price and bonus are the ones quoted when it was made, whatever promotions do later;
- a payment that credited nothing moves the balance only when two people decide to credit it, and
  a refund never touches the ledger (money credited to a card is never refunded).

One database per test (each backend), not one per example: every example gets a fresh card and
ids of its own, and at its end stops the promotions it started and closes its pending orders, so
that no example sees another's state.
"""
from __future__ import annotations

import re

import itertools
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, update

from heyon_site.billing import ledger
from heyon_site.billing.refunds import state_of as refund_state
from heyon_site.billing.usage import Charge, apply_charge
from heyon_site.cards.numbers import number_digest
from heyon_site.billing.money import yuan
from heyon_site.billing.promos import active_promotions
from heyon_site.promos.lifecycle import end_promotion
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import (AuditLog, Card, LedgerEntry, PaymentEvent, Promotion, RechargeOrder, Resolution,
                               SandboxPayment, utcnow)
from heyon_site.payments import refunds as refunding
from heyon_site.payments.reconcile import reconcile
from heyon_site.settlement.run import BEIJING, bounds, settle
from heyon_site.providers import get as get_provider
from heyon_site.staff.services import create_staff

from tests.kit import SANDBOX_SECRET, new_client
from tests.kit import PIN, csrf_from, gateway_order_no, hidden_value, make_card, notification

# Enough to reach long histories (an order paid, expired, paid again, reconciled) in a run of
# ten to twenty seconds per database; HEYON_STATEFUL_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("HEYON_STATEFUL_EXAMPLES", "30"))
STEPS = 40
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None)

OPENING_FEN = 500
STAFF_PASSWORD = "a-long-staff-password"
AMOUNTS = ("50", "100", "200", "10", "88.88")  # presets and typed amounts, yuan
LATE = timedelta(hours=3)  # past the order expiry (120 minutes) and the sandbox's own timeout
EXPIRY = timedelta(minutes=120)
BASIS = 10_000
# Few orders and promotions per example, so that steps go to what happens to them.
MAX_ORDERS, MAX_PROMOS = 4, 2
_numbers = itertools.count(1)


# ------------------------------------------------------------------ the model


@dataclass
class Promo:
    id: int
    kind: str
    threshold_fen: int
    value_fen: int  # fixed_bonus
    percent_bp: int  # percent_bonus, discount
    priority: int


@dataclass
class Order:
    order_no: str
    amount_fen: int
    pay_fen: int
    bonus_fen: int
    status: str = "pending"
    booked: tuple[str, str, int] | None = None  # the gateway's own book: trade_no, TRADE_*, fen
    reason: str | None = None  # why it is in review: amount_mismatch, paid_after_close
    refunded_fen: int = 0  # what the gateway's book has given back of it


@dataclass
class Payment:
    """A verified payment as the credit path must have taken it."""

    order_no: str
    txn_id: str
    fen: int
    outcome: str  # credited, amount_mismatch, review, paid_again
    settled: bool = False  # credited by decision, or refunded
    refund_tried: bool = False  # a refund was asked for (and failed, unless settled)
    credited_by_decision: bool = False

    @property
    def state(self) -> str:
        """Where billing.refunds.state_of must say this payment stands."""
        if self.credited_by_decision:
            return "credited"
        if self.settled:
            return "refunded"
        return "refund_failed" if self.refund_tried else "waiting"


@dataclass
class Model:
    opening_fen: int
    orders: dict[str, Order] = field(default_factory=dict)
    promos: dict[int, Promo] = field(default_factory=dict)
    events: set[tuple[str, str]] = field(default_factory=set)  # (txn_id, kind): unique per provider
    audit_rows: int = 0
    payments: dict[str, Payment] = field(default_factory=dict)  # by txn_id
    credits: list[tuple[str, int]] = field(default_factory=list)  # (order_no, fen) credited by decision
    debits: dict[str, int] = field(default_factory=dict)  # usage charge id -> fen, applied
    charges_sent: list[str] = field(default_factory=list)  # every usage charge id, applied or refused

    @property
    def adjusted_fen(self) -> int:
        return sum(fen for _, fen in self.credits)

    def open_payments(self) -> list[Payment]:
        return [p for p in self.payments.values() if p.outcome != "credited" and not p.settled]

    def refund(self, payment: Payment) -> bool:
        """A refund of ``payment`` asked of the gateway: settled if its book can give it back."""
        payment.refund_tried = True
        if not self.gateway_refunds(payment):
            return False
        self.orders[payment.order_no].refunded_fen += payment.fen
        payment.settled = True
        return True

    @staticmethod
    def within_caps(kind: str, threshold_fen: int, value_fen: int, percent_bp: int) -> bool:
        """The default caps: a bonus at most 50 % of the amount paid (a fixed one at its
        threshold), a discount at most 30 %. The site refuses terms beyond them."""
        if kind == "fixed_bonus":
            return value_fen * 100 <= threshold_fen * 50
        return percent_bp <= (3000 if kind == "discount" else 5000)

    def quote(self, amount_fen: int) -> tuple[int, int]:
        """(pay, bonus): of the running promotions that apply, the highest priority (then the
        oldest) decides; a percentage is rounded down to the fen."""
        applicable = [p for p in self.promos.values() if p.threshold_fen <= amount_fen]
        if not applicable:
            return amount_fen, 0
        best = min(applicable, key=lambda p: (-p.priority, p.id))
        benefit = best.value_fen if best.kind == "fixed_bonus" else amount_fen * best.percent_bp // BASIS
        if best.kind == "discount":
            return max(1, amount_fen - benefit), 0
        return amount_fen, benefit

    def event(self, order: Order, kind: str, txn_id: str, amount_fen: int) -> None:
        """A verified provider event about ``order``, as the credit path must take it."""
        if (txn_id, kind) in self.events:
            return  # a duplicate: acknowledged, nothing else
        self.events.add((txn_id, kind))
        if kind == "closed":
            if order.status == "pending":
                order.status = "failed"
            return
        if amount_fen != order.pay_fen:
            outcome = "amount_mismatch"
            if order.status in ("pending", "failed", "expired"):
                order.status, order.reason = "review", "amount_mismatch"
        elif order.status == "pending":
            order.status, outcome = "credited", "credited"
        elif order.status in ("failed", "expired"):
            # money after we gave up on the order: a person decides
            order.status, order.reason, outcome = "review", "paid_after_close", "review"
        else:
            outcome = "paid_again" if order.status == "credited" else "review"
        self.payments[txn_id] = Payment(order.order_no, txn_id, amount_fen, outcome)

    def refundable_by_rule(self, payment: Payment) -> bool:
        """A second payment of a credited order, or a payment of an order closed or expired."""
        order = self.orders[payment.order_no]
        return payment.outcome == "paid_again" or (payment.outcome == "review" and order.reason == "paid_after_close")

    def gateway_refunds(self, payment: Payment) -> bool:
        """Whether the gateway's book can give this payment back: it holds a payment of the
        order, and what it gave back stays within it."""
        order = self.orders[payment.order_no]
        return (order.booked is not None and order.booked[1] != "TRADE_CLOSED"
                and order.refunded_fen + payment.fen <= order.booked[2])

    def balance(self) -> int:
        credited = sum(o.amount_fen + o.bonus_fen for o in self.orders.values() if o.status == "credited")
        return self.opening_fen + credited + self.adjusted_fen - sum(self.debits.values())


def kind_of(trade_status: str) -> str:
    return "closed" if trade_status == "TRADE_CLOSED" else "paid"


# ------------------------------------------------------------------ the machine


class BooksMachine(RuleBasedStateMachine):
    app: Flask  # set by the test: one app, on one database, for every example

    orders = Bundle("orders")
    notes = Bundle("notes")  # genuine notifications already sent once: redelivered at will
    promos = Bundle("promos")

    def __init__(self) -> None:
        super().__init__()
        n = next(_numbers)
        self.tag = uuid.uuid4().hex[:8]
        self.card_number = f"86{n:014d}"
        make_card(self.card_number, PIN, OPENING_FEN)
        self.card_id = db.session.scalar(select(Card.id).where(Card.number_digest == number_digest(self.card_number)))
        self.model = Model(OPENING_FEN)
        self.outbox: list[tuple[str, dict[str, str]]] = self.app.extensions["heyon.test_outbox"]
        self.outbox.clear()
        self.customer = new_client(self.app)
        self.customer_token = csrf_from(self.customer.get("/recharge?lang=en").get_data(as_text=True))
        # Two admins: one drafts promotions, the other approves them (the two-person rule).
        self.staff, self.approver = self.signed_in(f"admin-{self.tag}"), self.signed_in(f"approver-{self.tag}")
        self.staff_token = csrf_from(self.staff.get("/staff/promotions/new").get_data(as_text=True))
        self.approver_token = csrf_from(self.approver.get("/staff/promotions/new").get_data(as_text=True))
        db.session.rollback()
        self.audit_before = db.session.scalar(select(func.count()).select_from(AuditLog)) or 0

    def signed_in(self, username: str) -> Any:
        in_write_transaction(lambda: create_staff(username, STAFF_PASSWORD, "admin"))
        client = new_client(self.app)
        page = client.get("/staff/login").get_data(as_text=True)
        r = client.post("/staff/login", data={"csrf_token": csrf_from(page), "username": username,
                                              "password": STAFF_PASSWORD})
        assert r.status_code == 303, r.get_data(as_text=True)[:300]
        return client

    def teardown(self) -> None:
        # The next example starts with no promotion running; orders keep their terms anyway.
        for promo_id in list(self.model.promos):
            in_write_transaction(lambda promo_id=promo_id: end_promotion(promo_id))  # type: ignore[misc]
        # Nor with this example's pending orders: reconciliation would check every one of them
        # again in every later example (a commit each), and nobody models them any more.
        card_id = self.card_id
        in_write_transaction(lambda: db.session.execute(
            update(RechargeOrder).where(RechargeOrder.card_id == card_id, RechargeOrder.status == "pending")
            .values(status="expired", status_reason="timeout", finalized_at=utcnow())))

    # -------------------------------------------------------------- the customer

    @initialize(target=orders, amount=st.sampled_from(AMOUNTS))
    def first_order(self, amount: str) -> str:
        return self.start_order(amount)

    @precondition(lambda self: len(self.model.orders) < MAX_ORDERS)
    @rule(target=orders, amount=st.sampled_from(AMOUNTS))
    def start_order(self, amount: str) -> str:
        # As a browser without JavaScript: the page's hidden fields, "Other" and the typed amount.
        page = self.customer.get("/recharge?lang=en").get_data(as_text=True)
        r = self.customer.post("/recharge", data={"csrf_token": self.customer_token, "card_number": self.card_number,
                                                  "offer": hidden_value(page, "offer"), "form_id": hidden_value(page, "form_id"),
                                                  "password": PIN, "amount": "other", "custom_amount": amount,
                                                  "method": "sandbox"})
        assert r.status_code == 303, r.get_data(as_text=True)[:500]
        if "/orders/" in r.headers["Location"]:
            # A promotion changes what this typed amount gets, and no quote line showed it (no
            # JavaScript): the order page shows the terms, and the customer accepts them.
            token = r.headers["Location"].rsplit("/", 1)[1]
            r = self.customer.post(f"/orders/{token}/start", data={"csrf_token": self.customer_token})
            assert r.status_code == 303, r.get_data(as_text=True)[:500]
        order_no = gateway_order_no(r.headers["Location"])
        amount_fen = round(float(amount) * 100)
        pay_fen, bonus_fen = self.model.quote(amount_fen)  # what the order must carry from now on
        self.model.orders[order_no] = Order(order_no, amount_fen, pay_fen, bonus_fen)
        return order_no

    @rule(target=notes, order_no=orders, outcome=st.sampled_from(("pay", "pay", "fail", "silent")))
    def use_the_gateway(self, order_no: str, outcome: str) -> Any:
        """Pay (or fail) on the gateway page. Its first answer is its book for the order, whatever
        the order's state; a notification goes out unless it was told to stay silent (a lost one)."""
        r = self.customer.post(f"/pay/sandbox/{order_no}", data={"csrf_token": self.customer_token, "outcome": outcome})
        assert r.status_code == 303
        order = self.model.orders[order_no]
        if order.booked is None:
            # Read from the gateway's own book, as the provider's side of the test.
            db.session.rollback()
            trade_no = db.session.scalar(select(SandboxPayment.trade_no).where(SandboxPayment.order_no == order_no))
            order.booked = (str(trade_no), "TRADE_CLOSED" if outcome == "fail" else "TRADE_SUCCESS", order.pay_fen)
        sent = [fields for _, fields in self.outbox]
        self.outbox.clear()
        return multiple(*sent)

    @rule(note=notes)
    def deliver(self, note: dict[str, str]) -> None:
        """A genuine notification arrives: for the first time, again, or after others."""
        r = self.customer.post("/pay/notify/sandbox", data=note)
        assert r.status_code == 200 and r.get_data(as_text=True) == "success"
        if note["out_trade_no"] not in self.model.orders:
            return  # a refund notice about an order of an earlier example: not this model's
        if "refund_fee" in note:  # the gateway's notice of a refund it made: recorded once
            self.model.events.add((f"refund-{note['out_biz_no']}", "refunded"))
            return
        self.model.event(self.model.orders[note["out_trade_no"]], kind_of(note["trade_status"]), note["trade_no"],
                         round(float(note["total_amount"]) * 100))

    def deliver_outbox(self) -> None:
        """Deliver what the gateway sent meanwhile (refund notices), once, now."""
        sent = [fields for _, fields in self.outbox]
        self.outbox.clear()
        for note in sent:
            self.deliver(note)

    @rule(target=notes, order_no=orders, off_by=st.sampled_from((0, 0, 0, 1, -1)),
          status=st.sampled_from(("TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED")), txn=st.integers(1, 3))
    def provider_notifies(self, order_no: str, off_by: int, status: str, txn: int) -> dict[str, str]:
        """The provider reports a payment of its own (not from the gateway page), perhaps of
        another amount, perhaps reusing a transaction id it sent about another order."""
        order = self.model.orders[order_no]
        fen = order.pay_fen + off_by if order.pay_fen + off_by > 0 else order.pay_fen
        note = notification(order_no, yuan(fen), status=status, trade_no=f"T{self.tag}{txn}")
        self.deliver(note)
        return note

    @rule(note=notes, forgery=st.sampled_from(("wrong-key", "amount-after-signing", "order-after-signing",
                                               "status-after-signing", "unsigned")), other=orders)
    def forge(self, note: dict[str, str], forgery: str, other: str) -> None:
        """A notification that is not the provider's: refused, and nothing changes."""
        fields = dict(note)
        if forgery == "wrong-key":
            fields = notification(note["out_trade_no"], note["total_amount"], trade_no=f"F{uuid.uuid4().hex[:12]}",
                                  secret=SANDBOX_SECRET + "-not")
        elif forgery == "amount-after-signing":
            fields["total_amount"] = yuan(round(float(note["total_amount"]) * 100) + 100)
        elif forgery == "order-after-signing":
            if other == note["out_trade_no"]:
                fields["trade_no"] += "x"
            fields["out_trade_no"] = other
        elif forgery == "status-after-signing":
            fields["trade_status"] = "TRADE_SUCCESS" if note["trade_status"] == "TRADE_CLOSED" else "TRADE_CLOSED"
        else:
            fields.pop("sign")
        r = self.customer.post("/pay/notify/sandbox", data=urlencode(fields),
                               content_type="application/x-www-form-urlencoded")
        assert r.status_code == 400 and r.get_data(as_text=True) == "fail"

    # -------------------------------------------------------------- reconciliation

    @rule(late=st.booleans())
    def cron_reconciles(self, late: bool) -> None:
        """The cron job asks the gateway's book about every pending order; past the expiry, an
        order it holds no payment for is expired."""
        reconcile(get_provider, timedelta(0), EXPIRY, now=utcnow() + (LATE if late else timedelta(0)))
        for order in self.model.orders.values():
            if order.status == "pending" and order.booked is not None:
                trade_no, status, fen = order.booked
                self.model.event(order, kind_of(status), trade_no, fen)
            elif order.status == "pending" and late:
                order.status = "expired"

    # -------------------------------------------------------------- money that credited nothing

    # These deliver the gateway's refund notices at once and keep none for redelivery: they also
    # act on earlier examples' payments (one database for all), so what they send varies between
    # runs of the same example, and a bundle must not.

    @rule(pick=st.integers(0, 7), action=st.sampled_from(("credit", "refund", "refund")))
    def people_decide(self, pick: int, action: str) -> None:
        """One admin proposes to credit or refund a payment that credited nothing; the other
        approves. Credited: the balance grows by what was paid. Refunded: the gateway gives it
        back if its book can, and the ledger never moves."""
        waiting = self.model.open_payments()
        if not waiting:
            return
        payment = waiting[pick % len(waiting)]
        db.session.rollback()
        event_id = db.session.scalar(select(PaymentEvent.id).where(
            PaymentEvent.provider_txn_id == payment.txn_id, PaymentEvent.kind == "paid"))
        r = self.staff.post(f"/staff/orders/{payment.order_no}/payments/{event_id}/propose",
                            data={"csrf_token": self.staff_token, "action": action, "reason": "looked at it"})
        assert r.status_code == 303, r.get_data(as_text=True)[:800]
        db.session.rollback()
        proposal = db.session.scalar(select(Resolution.id).where(
            Resolution.payment_event_id == event_id, Resolution.state == "proposed"))
        r = self.approver.post(f"/staff/orders/{payment.order_no}/resolutions/{proposal}",
                               data={"csrf_token": self.approver_token, "decision": "approve"})
        assert r.status_code == 303, r.get_data(as_text=True)[:800]
        self.model.audit_rows += 2
        if action == "credit":
            self.model.credits.append((payment.order_no, payment.fen))
            payment.settled = payment.credited_by_decision = True
        else:
            self.model.refund(payment)
        self.deliver_outbox()

    @rule()
    def the_rule_refunds(self) -> None:
        """`flask payments reconcile`'s refunds, with no wait: what can never be credited, and
        nobody decided about, goes back once."""
        refunding.run(get_provider, timedelta(0))
        for payment in list(self.model.payments.values()):
            if self.model.refundable_by_rule(payment) and not payment.settled and not payment.refund_tried:
                self.model.refund(payment)
        self.deliver_outbox()

    @rule()
    def settle_the_day(self) -> None:
        """The day's statement against our books: a payment only the gateway has is asked about
        through the normal query, and applied as its answer says."""
        day = datetime.now(BEIJING).date()
        settle("sandbox", day)
        start, end = bounds(day)
        db.session.rollback()
        booked_today = set(db.session.scalars(select(SandboxPayment.trade_no).where(
            SandboxPayment.created_at >= start, SandboxPayment.created_at < end)))
        for order in self.model.orders.values():
            if order.booked is not None and order.booked[1] != "TRADE_CLOSED" and order.booked[0] in booked_today \
                    and (order.booked[0], "paid") not in self.model.events:
                self.model.event(order, "paid", order.booked[0], order.booked[2])

    # -------------------------------------------------------------- the network

    @rule(fen=st.sampled_from((1, 120, 5000, 10**7)), again=st.booleans())
    def network_charges(self, fen: int, again: bool) -> None:
        """A usage charge from the charging system (perhaps sent twice): applied once if the
        balance holds it, refused alone otherwise; never below zero."""
        sent = self.model.charges_sent
        charge_id = sent[-1] if again and sent else f"{self.tag}-{len(sent)}"
        result = in_write_transaction(lambda: apply_charge(db.session, "network", Charge(
            charge_id, self.card_id, fen, utcnow(), "data"), datetime.now(BEIJING).date()))
        if charge_id in sent:
            assert result.status == "duplicate"
            return
        sent.append(charge_id)
        if fen <= self.model.balance():
            assert result.status == "applied", result
            self.model.debits[charge_id] = fen
        else:
            assert (result.status, result.reason) == ("refused", "insufficient_balance")

    # -------------------------------------------------------------- staff

    @precondition(lambda self: len(self.model.promos) < MAX_PROMOS)
    @rule(target=promos, kind=st.sampled_from(("fixed_bonus", "percent_bonus", "discount")),
          threshold=st.sampled_from((0, 50, 100, 150)), value=st.sampled_from((1, 5, 10)),
          percent=st.sampled_from(("2.5", "10", "30", "33.33", "50")), priority=st.integers(-2, 2))
    def start_promotion(self, kind: str, threshold: int, value: int, percent: str, priority: int) -> Any:
        local_now = utcnow() + timedelta(hours=8)  # the form speaks Asia/Shanghai
        fields = {"csrf_token": self.staff_token, "title_zh": "充值有礼", "title_en": f"Offer {self.tag}", "kind": kind,
                  "threshold": str(threshold), "value": str(value) if kind == "fixed_bonus" else "",
                  "percent": "" if kind == "fixed_bonus" else percent, "cap": "",
                  "starts": (local_now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
                  "ends": (local_now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
                  "priority": str(priority), "published": "y"}
        r = self.staff.post("/staff/promotions", data=fields)
        bp = 0 if kind == "fixed_bonus" else round(float(percent) * 100)
        if not self.model.within_caps(kind, threshold * 100, value * 100, bp):
            assert r.status_code == 422, r.get_data(as_text=True)[:800]  # refused: nothing stored, nothing audited
            return multiple()
        assert r.status_code == 303, r.get_data(as_text=True)[:800]
        db.session.rollback()
        promo_id = db.session.scalar(select(func.max(Promotion.id)))
        assert promo_id is not None
        assert promo_id not in [p.id for p in active_promotions(db.session, utcnow())]  # it waits for the second admin
        page = self.approver.get("/staff/promotions").get_data(as_text=True)
        button = re.search(rf'action="/staff/promotions/{promo_id}/approve"[^>]*>(.*?)</form>', page, re.S)
        assert button, page[-2000:]
        r = self.approver.post(f"/staff/promotions/{promo_id}/approve",
                               data=dict(re.findall(r'name="(\w+)"[^>]*value="([^"]*)"', button.group(1))))
        assert r.status_code == 303, r.get_data(as_text=True)[:800]
        self.model.promos[promo_id] = Promo(promo_id, kind, threshold * 100, value * 100, bp, priority)
        self.model.audit_rows += 2  # drafted and asked for, then approved
        return promo_id

    @rule(promo_id=promos)
    def end_a_promotion(self, promo_id: int) -> None:
        r = self.staff.post(f"/staff/promotions/{promo_id}/end", data={"csrf_token": self.staff_token})
        assert r.status_code == 303
        if self.model.promos.pop(promo_id, None) is not None:
            self.model.audit_rows += 1  # ending one that already ended changes nothing, audits nothing

    @rule(order_no=orders, paper=st.sampled_from(("58", "80", "a4")))
    def reprint(self, order_no: str, paper: str) -> None:
        r = self.staff.post(f"/staff/orders/{order_no}/receipt", data={"csrf_token": self.staff_token, "paper": paper})
        assert r.status_code == 303 and f"paper={paper}" in r.headers["Location"]
        self.model.audit_rows += 1

    # -------------------------------------------------------------- after every step

    # Each check starts a new read transaction (rollback): on SQLite an open one would keep
    # showing the database as it was before the step.

    @invariant()
    def the_books_balance(self) -> None:
        db.session.rollback()
        verdict = ledger.verify(db.session)
        assert verdict.ok, verdict.violations

    @invariant()
    def the_database_is_as_the_model_says(self) -> None:
        db.session.rollback()
        model = self.model
        # Each order: its state, and the price and bonus quoted when it was made.
        rows = db.session.execute(select(RechargeOrder.order_no, RechargeOrder.status, RechargeOrder.amount_fen,
                                         RechargeOrder.pay_fen, RechargeOrder.bonus_fen)
                                  .where(RechargeOrder.card_id == self.card_id)).all()
        assert {r.order_no: tuple(r[1:]) for r in rows} == \
            {o.order_no: (o.status, o.amount_fen, o.pay_fen, o.bonus_fen) for o in model.orders.values()}
        # Each credited order credited exactly once, a bonus as its own entry; nothing else.
        entries = db.session.execute(select(RechargeOrder.order_no, LedgerEntry.kind, LedgerEntry.amount_fen)
                                     .join(RechargeOrder, LedgerEntry.order_id == RechargeOrder.id)
                                     .where(LedgerEntry.card_id == self.card_id)).all()
        expected = [(o.order_no, kind, fen) for o in model.orders.values() if o.status == "credited"
                    for kind, fen in (("recharge", o.amount_fen), ("bonus", o.bonus_fen)) if fen]
        expected += [(order_no, "adjustment", fen) for order_no, fen in model.credits]
        # (Usage debits belong to no order: they are in the balance below, not in this list.)
        assert sorted(tuple(e) for e in entries) == sorted(expected)
        # The balance: the opening one plus the credits, and the sum of the card's entries.
        balance, total = db.session.execute(
            select(Card.balance_fen, select(func.sum(LedgerEntry.amount_fen)).where(LedgerEntry.card_id == Card.id)
                   .scalar_subquery()).where(Card.id == self.card_id)).one()
        assert balance == int(total or 0) == model.balance()
        # Each verified event recorded once (forged ones never); each staff action audited once.
        events = db.session.scalar(select(func.count()).select_from(PaymentEvent)
                                   .join(RechargeOrder, PaymentEvent.order_id == RechargeOrder.id)
                                   .where(RechargeOrder.card_id == self.card_id))
        assert events == len(model.events)
        # Each payment that credited nothing stands where the model says: waiting, credited by
        # two people, refunded, or with a failed refund.
        for payment in model.payments.values():
            if payment.outcome == "credited":
                continue
            event_id = db.session.scalar(select(PaymentEvent.id).where(
                PaymentEvent.provider_txn_id == payment.txn_id, PaymentEvent.kind == "paid"))
            assert refund_state(db.session, event_id) == payment.state, (payment, refund_state(db.session, event_id))
        audit_rows = db.session.scalar(select(func.count()).select_from(AuditLog))
        assert audit_rows == self.audit_before + model.audit_rows  # the sign-in is counted in audit_before


def test_the_books_hold_whatever_happens(app: Flask, tmp_path: Path) -> None:
    app.config["HEYON_SETTLEMENT_DIR"] = str(tmp_path / "statements")
    machine = type("Machine", (BooksMachine,), {"app": app})
    run_state_machine_as_test(machine, settings=SETTINGS)
