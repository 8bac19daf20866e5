"""Stripe's refunds, lists and balance transactions as tests see them, on top of the Checkout
Sessions fake of ``tests.provider_kits.stripe`` (same keys, same signing, same session store).

The fake keeps Stripe's books the way Stripe does: a payment is a session, its PaymentIntent
and one charge; a refund is made on the PaymentIntent and counts against the charge's
``amount_refunded`` from the moment it is made (pending or not), never above the charge's
amount, and gives the amount back when it fails or is cancelled. Every movement of money writes
a balance transaction, as Stripe's ledger does. Creates honour ``Idempotency-Key`` as Stripe's
v1 API does: the first answer is kept and replayed for the same key and parameters (errors
included), and the key with other parameters is an ``idempotency_error``.

Lists answer as Stripe's do: newest first, ``limit`` (at most 100, 10 when not given),
``starting_after`` and ``has_more``; ``created[gte]`` / ``created[lt]`` where Stripe filters by
time, and ``expand[]=data.source`` for balance transactions.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from tests.provider_kits.stripe import (
    API_VERSION,
    KIT,
    SESSIONS,
    StripeFake,
    keys,
    signature_header,
    stripe_error,
    stripe_id,
)

REFUNDS = "/v1/refunds"
BALANCE_TRANSACTIONS = "/v1/balance_transactions"
#: The fee this fake's Stripe charges on a card payment: 3.4% + 2.35 yuan, in the balance currency.
FEE_PER_MILLE = 34
FEE_FIXED = 235
Message = tuple[bytes, dict[str, str]]


def answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@dataclass
class StripeRefundsFake(StripeFake):
    """``charges`` by id, ``intents`` (PaymentIntent -> charge id), ``refunds`` by id and
    ``balance`` (balance transactions), each in the order made. ``next_statuses``: what the
    next refunds are made as (``succeeded`` when empty); ``throttle_refunds`` and
    ``lose_refund_answers``: the next N refund creates answer 429 (nothing made), or are made
    and answer 503 (the answer lost on its way back). ``clock``: the Unix time of what is made
    next (now when None). ``balance_currency`` / ``exchange_rate``: the account's settlement
    currency, and the rate from yuan to it."""

    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, str] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance: list[dict[str, Any]] = field(default_factory=list)
    refund_answers: dict[str, tuple[list[tuple[str, str]], int, str]] = field(default_factory=dict)
    refund_keys: list[str] = field(default_factory=list)
    next_statuses: list[str] = field(default_factory=list)
    throttle_refunds: int = 0
    lose_refund_answers: int = 0
    clock: int | None = None
    balance_currency: str = "cny"
    exchange_rate: str | None = None

    def now(self) -> int:
        return int(time.time()) if self.clock is None else self.clock

    # ------------------------------------------------------------------ what tests do at Stripe

    def pay(self, order_no: str, amount_fen: int) -> dict[str, Any]:
        """The customer pays the order's session (made if the site made none): the session is
        complete, its PaymentIntent made one charge with the order's number in its metadata
        (Stripe copies the PaymentIntent's), and the balance has a ``charge`` line with a fee."""
        KIT.pay(self, order_no, amount_fen)
        with self._lock:
            session = self.session_of(order_no)
            assert session is not None
            at = self.now()
            session["created"] = at - 60  # opened a minute before it was paid
            intent = session["payment_intent"]
            charge = {
                "id": stripe_id("ch_", 24), "object": "charge", "amount": amount_fen, "amount_captured": amount_fen,
                "amount_refunded": 0, "refunded": False, "captured": True, "paid": True, "status": "succeeded",
                "currency": "cny", "livemode": False, "metadata": {"order_no": order_no},
                "payment_intent": intent, "created": at, "balance_transaction": None,
            }
            self.charges[charge["id"]] = charge
            self.intents[intent] = charge["id"]
            charge["balance_transaction"] = self._book("charge", amount_fen, charge["id"], fee=True)["id"]
        return session

    def refund_in_dashboard(self, order_no: str, amount_fen: int) -> dict[str, Any]:
        """Someone refunds part or all of the order's payment in Stripe's dashboard: a refund
        without any metadata of ours."""
        session = self.session_of(order_no)
        assert session is not None and session["payment_intent"], order_no
        with self._lock:
            made = self._make_refund(session["payment_intent"], amount_fen, {})
        assert isinstance(made, dict), made
        return made

    def settle(self, refund_id: str, status: str, failure_reason: str | None = None) -> dict[str, Any]:
        """Stripe finishes a pending refund: succeeded, or failed / canceled (the amount is the
        charge's to refund again, and comes back to the balance)."""
        with self._lock:
            refund = self.refunds[refund_id]
            assert refund["status"] in ("pending", "requires_action"), refund["status"]
            refund["status"] = status
            if status in ("failed", "canceled"):
                refund["failure_reason"] = failure_reason or ("merchant_request" if status == "canceled" else "unknown")
                charge = self.charges[refund["charge"]]
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = False
                refund["failure_balance_transaction"] = self._book("refund_failure", refund["amount"], refund_id)["id"]
            return dict(refund)

    def ours(self, refund_no: str) -> list[dict[str, Any]]:
        return [r for r in self.refunds.values() if r["metadata"].get("refund_no") == refund_no]

    def refund_creates(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(body.decode())) for method, path, body in self.seen if (method, path) == ("POST", REFUNDS)]

    def book_payout(self, amount: int) -> None:
        """A payout to the bank: a balance line that is neither a payment nor a refund."""
        with self._lock:
            self._book("payout", -amount, stripe_id("po_", 24))

    # ------------------------------------------------------------------ the API

    def _refused(self, request: Request) -> Response | None:
        if not self.authorised(request):
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided")
        return None

    def create_refund(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        pairs = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
        key = request.headers.get("Idempotency-Key", "")
        with self._lock:
            self.refund_keys.append(key)
            if self.throttle_refunds > 0:
                self.throttle_refunds -= 1
                return stripe_error(429, "invalid_request_error", "Too many requests hit the API too quickly.",
                                    "rate_limit")
            if key in self.refund_answers:
                earlier, status, body = self.refund_answers[key]
                if earlier != pairs:
                    return stripe_error(400, "idempotency_error", "Keys for idempotent requests can only be used "
                                        "with the same parameters they were first used with.")
                return Response(body, status=status, content_type="application/json")
            form = dict(pairs)
            # A request that fails validation is not kept under its key, as at Stripe.
            if not form.get("payment_intent"):
                return stripe_error(400, "invalid_request_error", "One of charge or payment_intent is required.",
                                    "parameter_missing")
            if not form.get("amount", "").isdigit() or int(form["amount"]) < 1:
                return stripe_error(400, "invalid_request_error", "Invalid positive integer",
                                    "parameter_invalid_integer")
            metadata = {k[len("metadata["):-1]: v for k, v in pairs if k.startswith("metadata[")}
            made = self._make_refund(form["payment_intent"], int(form["amount"]), metadata)
            response = made if isinstance(made, Response) else answer(made)
            if key:
                self.refund_answers[key] = (pairs, response.status_code, response.get_data(as_text=True))
            if self.lose_refund_answers > 0:
                self.lose_refund_answers -= 1
                return stripe_error(503, "api_error", "the answer was lost")
        return response

    def _make_refund(self, intent: str, amount: int, metadata: dict[str, str]) -> dict[str, Any] | Response:
        charge_id = self.intents.get(intent)
        if charge_id is None:
            return stripe_error(404, "invalid_request_error", f"No such payment_intent: '{intent}'",
                                "resource_missing")
        charge = self.charges[charge_id]
        left = charge["amount"] - charge["amount_refunded"]
        if left <= 0:
            return stripe_error(400, "invalid_request_error", f"Charge {charge_id} has already been refunded.",
                                "charge_already_refunded")
        if amount > left:
            return stripe_error(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded "
                                f"amount on charge ({left})", "amount_too_large")
        status = self.next_statuses.pop(0) if self.next_statuses else "succeeded"
        refund: dict[str, Any] = {
            "id": stripe_id("re_", 24), "object": "refund", "amount": amount, "currency": "cny",
            "charge": charge_id, "payment_intent": intent, "metadata": metadata, "status": status,
            "failure_reason": None, "reason": None, "created": self.now(), "balance_transaction": None,
        }
        if status == "pending":
            refund["pending_reason"] = "processing"
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund["balance_transaction"] = self._book("refund", -amount, refund["id"])["id"]
        return dict(refund)

    def _book(self, kind: str, amount_fen: int, source: str, fee: bool = False) -> dict[str, Any]:
        """A balance transaction, in the balance currency (converted at ``exchange_rate``)."""
        rate = Decimal(self.exchange_rate) if self.exchange_rate else Decimal(1)
        amount = int((Decimal(amount_fen) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        charged = abs(amount) * FEE_PER_MILLE // 1000 + FEE_FIXED if fee else 0
        line = {
            "id": stripe_id("txn_", 24), "object": "balance_transaction", "amount": amount, "fee": charged,
            "net": amount - charged, "currency": self.balance_currency,
            "exchange_rate": float(rate) if self.exchange_rate else None,
            "type": kind, "reporting_category": kind, "source": source, "status": "available",
            "created": self.now(), "available_on": self.now() + 2 * 86400,
            "fee_details": [{"amount": charged, "currency": self.balance_currency, "type": "stripe_fee"}] if fee else [],
        }
        self.balance.append(line)
        return line

    def list_refunds(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        args = request.args
        with self._lock:
            found = [dict(r) for r in self.refunds.values()
                     if args.get("payment_intent") in (None, r["payment_intent"])
                     and args.get("charge") in (None, r["charge"])]
        return _page(found, args, REFUNDS)

    def list_sessions(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        args = request.args
        with self._lock:
            found = [dict(s) for s in self.sessions.values()
                     if args.get("payment_intent") in (None, s.get("payment_intent"))
                     and args.get("status") in (None, s.get("status")) and _in_time(s, args)]
        return _page(found, args, SESSIONS)

    def list_balance(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        args = request.args
        expand = [v for k, v in args.items(multi=True) if k == "expand[]" or k.startswith("expand[")]
        with self._lock:
            found = [dict(line) for line in self.balance if _in_time(line, args)]
            if "data.source" in expand:
                for line in found:
                    source = self.charges.get(line["source"]) or self.refunds.get(line["source"])
                    if source is not None:
                        line["source"] = dict(source)
        return _page(found, args, BALANCE_TRANSACTIONS)


def _in_time(item: dict[str, Any], args: Any) -> bool:
    created = int(item.get("created") or 0)
    for name, holds in (("gte", created.__ge__), ("gt", created.__gt__), ("lt", created.__lt__),
                        ("lte", created.__le__)):
        bound = args.get(f"created[{name}]")
        if bound is not None and not holds(int(bound)):
            return False
    return True


def _page(items_in_order_made: list[dict[str, Any]], args: Any, url: str) -> Response:
    """One page of a Stripe list: newest first (the order made settles a tie), from after
    ``starting_after``, at most ``limit``."""
    newest_first = [item for _, item in sorted(enumerate(items_in_order_made),
                                              key=lambda pair: (-int(pair[1].get("created") or 0), -pair[0]))]
    after = args.get("starting_after")
    if after is not None:
        ids = [item["id"] for item in newest_first]
        if after not in ids:
            return stripe_error(400, "invalid_request_error", f"No such object: '{after}'", "resource_missing")
        newest_first = newest_first[ids.index(after) + 1:]
    limit = int(args.get("limit", 10))
    if not 1 <= limit <= 100:
        return stripe_error(400, "invalid_request_error", "Invalid integer: limit", "parameter_invalid_integer")
    return answer({"object": "list", "url": url, "has_more": len(newest_first) > limit, "data": newest_first[:limit]})


def fake_api() -> StripeRefundsFake:
    """The Checkout Sessions fake with refunds, lists and the balance."""
    fake = StripeRefundsFake(routes={})
    fake.routes[("POST", SESSIONS)] = fake.create
    fake.routes[("GET", SESSIONS)] = fake.list_sessions
    fake.routes[("POST", REFUNDS)] = fake.create_refund
    fake.routes[("GET", REFUNDS)] = fake.list_refunds
    fake.routes[("GET", BALANCE_TRANSACTIONS)] = fake.list_balance
    return fake


# ------------------------------------------------------------------ webhooks


def signed_event(event_type: str, data: dict[str, Any], other_secret: bool = False) -> Message:
    """An event as Stripe POSTs it, signed as ``tests.provider_kits.stripe`` signs them."""
    event = {
        "id": stripe_id("evt_", 24), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
        "livemode": False, "type": event_type, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "data": data,
    }
    body = json.dumps(event, indent=2).encode()
    secret = keys().other_webhook_secret if other_secret else keys().webhook_secret
    return body, {"Content-Type": "application/json; charset=utf-8",
                  "Stripe-Signature": signature_header(body, secret, int(time.time()))}


def refund_event(refund: dict[str, Any], event_type: str = "refund.updated",
                 previous: dict[str, Any] | None = None, other_secret: bool = False) -> Message:
    """``refund.updated`` / ``refund.failed`` about a refund (as the fake holds it);
    ``previous``: the event's ``previous_attributes`` (what changed, with its former value)."""
    data: dict[str, Any] = {"object": dict(refund)}
    if previous is not None:
        data["previous_attributes"] = previous
    return signed_event(event_type, data, other_secret)


def charge_refunded(fake: StripeRefundsFake, refund: dict[str, Any], with_refunds: bool = True) -> Message:
    """``charge.refunded`` for a refund, the charge as it is at the fake; ``with_refunds``: as
    sent to an account on an API version before 2022-11-15, with the charge's refunds (newest
    first)."""
    charge = dict(fake.charges[refund["charge"]])
    if with_refunds:
        listed = [dict(r) for r in reversed(fake.refunds.values()) if r["charge"] == charge["id"]]
        charge["refunds"] = {"object": "list", "data": listed, "has_more": False,
                             "url": f"/v1/charges/{charge['id']}/refunds", "total_count": len(listed)}
    return signed_event("charge.refunded", {"object": charge, "previous_attributes": {"amount_refunded": 0}})
