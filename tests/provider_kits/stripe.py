"""Stripe as tests see it: throw-away keys, signed webhooks, and a fake Checkout Sessions API.

The webhook signature is written here again from Stripe's documentation (HMAC-SHA256 with the
endpoint secret over ``"<t>.<body>"``, sent as ``Stripe-Signature: t=<t>,v1=<hex>``) rather
than taken from the adapter or the package, so a mistake in one does not hide in both.
Stripe does not sign its API answers (TLS only), so the fake's answers are plain JSON.

This module never imports the ``stripe`` package: it is only ever imported as
``tests.provider_kits.stripe``, which does not shadow it.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from tests.fakes import FakeApi

SESSIONS = "/v1/checkout/sessions"
CHECKOUT_PAGE = "https://checkout.stripe.com/c/pay/"
API_VERSION = "2026-10-28.endive"
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Keys:
    secret_key: str
    webhook_secret: str
    other_webhook_secret: str


@functools.cache
def keys() -> Keys:
    """Made once per test session; nothing real ever sees them."""
    return Keys("sk_test_" + secrets.token_hex(24), "whsec_" + secrets.token_hex(16), "whsec_" + secrets.token_hex(16))


def stripe_id(prefix: str, length: int) -> str:
    """An id shaped like Stripe's (a Checkout Session id is 66 characters)."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def signature_header(body: bytes, secret: str, timestamp: int, scheme: str = "v1") -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{scheme}={mac}"


def stripe_error(status: int, kind: str, message: str, code: str | None = None) -> Response:
    return Response(json.dumps({"error": {"type": kind, "message": message, "code": code}}), status=status,
                    content_type="application/json")


def session_json(session: dict[str, Any]) -> Response:
    return Response(json.dumps(session), content_type="application/json")


@dataclass
class StripeFake(FakeApi):
    """The Checkout Sessions endpoints: create, retrieve, expire. ``sessions`` by id;
    ``lose_answers`` makes the next N creates succeed but answer 503, as when the answer is lost
    on its way back (the client retries with the same idempotency key)."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, tuple[list[tuple[str, str]], str]] = field(default_factory=dict)
    lose_answers: int = 0

    def authorised(self, request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {keys().secret_key}")

    def add_session(self, session: dict[str, Any]) -> None:
        sid = session["id"]
        self.sessions[sid] = session
        self.routes[("GET", f"{SESSIONS}/{sid}")] = self.retrieve
        self.routes[("POST", f"{SESSIONS}/{sid}/expire")] = self.expire

    def create(self, request: Request) -> Response:
        if not self.authorised(request):
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided")
        pairs = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
        key = request.headers.get("Idempotency-Key", "")
        with self._lock:
            if key in self.idempotency:
                earlier, sid = self.idempotency[key]
                if earlier != pairs:
                    return stripe_error(400, "idempotency_error", "Keys for idempotent requests can only be used "
                                        "with the same parameters they were first used with.")
                return session_json(self.sessions[sid])
            form = dict(pairs)
            problem = _check_create(form)
            if problem:
                return stripe_error(400, "invalid_request_error", problem)
            order_no = form["client_reference_id"]
            session = {
                "id": stripe_id("cs_test_", 58), "object": "checkout.session", "livemode": False, "mode": "payment",
                "status": "open", "payment_status": "unpaid", "payment_intent": None,
                "amount_subtotal": int(form["line_items[0][price_data][unit_amount]"]),
                "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                "currency": form["line_items[0][price_data][currency]"], "currency_conversion": None,
                "client_reference_id": order_no, "metadata": {"order_no": form["metadata[order_no]"]},
                "success_url": form["success_url"], "cancel_url": form["cancel_url"],
                "created": int(time.time()), "expires_at": int(form["expires_at"]),
            }
            session["url"] = CHECKOUT_PAGE + session["id"]
            self.add_session(session)
            if key:
                self.idempotency[key] = (pairs, session["id"])
            if self.lose_answers > 0:
                self.lose_answers -= 1
                return stripe_error(503, "api_error", "the answer was lost")
        return session_json(session)

    def _session(self, request: Request) -> dict[str, Any] | None:
        sid = request.path.removeprefix(SESSIONS + "/").removesuffix("/expire")
        return self.sessions.get(sid)

    def retrieve(self, request: Request) -> Response:
        if not self.authorised(request):
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided")
        session = self._session(request)
        if session is None:
            return stripe_error(404, "invalid_request_error", "No such checkout.session", "resource_missing")
        return session_json(session)

    def expire(self, request: Request) -> Response:
        if not self.authorised(request):
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided")
        with self._lock:
            session = self._session(request)
            if session is None:
                return stripe_error(404, "invalid_request_error", "No such checkout.session", "resource_missing")
            if session["status"] != "open":
                return stripe_error(400, "invalid_request_error",
                                    'Only Checkout Sessions with a status in ["open"] can be expired.')
            session["status"] = "expired"
        return session_json(session)

    def session_of(self, order_no: str) -> dict[str, Any] | None:
        """The latest session made for the order."""
        found = [s for s in self.sessions.values() if s["client_reference_id"] == order_no]
        return found[-1] if found else None


def _check_create(form: dict[str, str]) -> str:
    """What Stripe would refuse in a create, as far as this site's requests go."""
    needed = ("mode", "line_items[0][price_data][currency]", "line_items[0][price_data][unit_amount]",
              "line_items[0][price_data][product_data][name]", "line_items[0][quantity]", "client_reference_id",
              "metadata[order_no]", "success_url", "cancel_url", "expires_at")
    missing = [name for name in needed if not form.get(name)]
    if missing:
        return f"Missing required param: {missing[0]}."
    # Not required by Stripe, but how a charge (and so a refund of it) names the order: Stripe
    # copies the PaymentIntent's metadata onto the charge it makes.
    if form.get("payment_intent_data[metadata][order_no]") != form["client_reference_id"]:
        return "the PaymentIntent would not carry the order number"
    if form["mode"] != "payment" or form["line_items[0][quantity]"] != "1":
        return "unexpected mode or quantity"
    if not form["line_items[0][price_data][unit_amount]"].isdigit():
        return "Invalid integer: unit_amount"
    now = time.time()
    if not now + 30 * 60 <= int(form["expires_at"]) <= now + 24 * 3600:
        return "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation."
    return ""


class StripeKit:
    name = "stripe"

    def config(self, base_url: str) -> dict[str, str]:
        k = keys()
        return {"HEYON_STRIPE_SECRET_KEY": k.secret_key, "HEYON_STRIPE_WEBHOOK_SECRET": k.webhook_secret,
                "HEYON_STRIPE_API_BASE": base_url}

    def fake_api(self) -> StripeFake:
        fake = StripeFake(routes={})
        fake.routes[("POST", SESSIONS)] = fake.create
        return fake

    def pay(self, fake: FakeApi, order_no: str, amount_fen: int) -> str:
        """The customer pays the order's session (one is made if the site made none)."""
        assert isinstance(fake, StripeFake)
        with fake._lock:
            session = fake.session_of(order_no)
            if session is None:
                session = {"id": stripe_id("cs_test_", 58), "object": "checkout.session", "livemode": False,
                           "currency": "cny", "currency_conversion": None, "client_reference_id": order_no,
                           "metadata": {"order_no": order_no}, "created": int(time.time())}
                fake.add_session(session)
            session.update(status="complete", payment_status="paid", amount_total=amount_fen,
                           payment_intent=stripe_id("pi_", 24))
        return str(session["id"])

    def expire(self, fake: StripeFake, order_no: str) -> str:
        """Stripe expires the order's session (its ``expires_at`` passed)."""
        session = fake.session_of(order_no)
        assert session is not None, order_no
        session["status"] = "expired"
        return str(session["id"])

    def notification(self, order_no: str, amount_fen: int, txn_id: str, **tamper: Any) -> tuple[bytes, dict[str, str]]:
        """A webhook as Stripe POSTs it; ``tamper``: event_type, payment_status (or unpaid=True),
        currency, livemode, metadata, event_id, other_secret, stale (6 minutes old), scheme ("v0"
        is not Stripe's live scheme), signature (the header as given), amount (changed after
        signing), currency_conversion (as Adaptive Pricing writes it)."""
        event_type = tamper.get("event_type", "checkout.session.completed")
        expired = event_type == "checkout.session.expired"
        session = {
            "id": txn_id, "object": "checkout.session", "livemode": tamper.get("livemode", False), "mode": "payment",
            "status": "expired" if expired else "complete",
            "payment_status": "unpaid" if expired or tamper.get("unpaid") else tamper.get("payment_status", "paid"),
            "amount_subtotal": amount_fen, "amount_total": amount_fen, "currency": tamper.get("currency", "cny"),
            "currency_conversion": tamper.get("currency_conversion"), "client_reference_id": order_no,
            "metadata": tamper.get("metadata", {"order_no": order_no}),
            "payment_intent": None if expired else stripe_id("pi_", 24),
        }
        event = {
            "id": tamper.get("event_id") or stripe_id("evt_", 24), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "livemode": tamper.get("livemode", False), "type": event_type,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "data": {"object": session},
        }
        body = json.dumps(event, indent=2).encode()
        k = keys()
        secret = k.other_webhook_secret if tamper.get("other_secret") else k.webhook_secret
        timestamp = int(time.time()) - (360 if tamper.get("stale") else 0)
        header = tamper.get("signature", signature_header(body, secret, timestamp, tamper.get("scheme", "v1")))
        if "amount" in tamper:
            session["amount_total"] = tamper["amount"]
            body = json.dumps(event, indent=2).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        if header:
            headers["Stripe-Signature"] = header
        return body, headers

    def refund_notification(self, order_no: str, refunded_fen: int, *, charge_id: str, amount_fen: int = 10000,
                            metadata: dict[str, str] | None = None, other_secret: bool = False,
                            currency: str = "cny") -> tuple[bytes, dict[str, str]]:
        """``charge.refunded`` as Stripe POSTs it: the charge a session's PaymentIntent made, with
        the PaymentIntent's metadata copied onto it and ``amount_refunded`` the total so far.
        Since API version 2022-11-15 the charge's ``refunds`` list is not in the event."""
        charge = {
            "id": charge_id, "object": "charge", "amount": amount_fen, "amount_captured": amount_fen,
            "amount_refunded": refunded_fen, "captured": True, "currency": currency, "livemode": False,
            "metadata": {"order_no": order_no} if metadata is None else metadata, "paid": True,
            "payment_intent": stripe_id("pi_", 24), "refunded": refunded_fen >= amount_fen, "status": "succeeded",
            "description": "Heyon card recharge", "created": int(time.time()) - 600,
        }
        event = {
            "id": stripe_id("evt_", 24), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
            "livemode": False, "type": "charge.refunded", "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": charge, "previous_attributes": {"amount_refunded": 0, "refunded": False}},
        }
        body = json.dumps(event, indent=2).encode()
        secret = keys().other_webhook_secret if other_secret else keys().webhook_secret
        return body, {"Content-Type": "application/json; charset=utf-8",
                      "Stripe-Signature": signature_header(body, secret, int(time.time()))}


KIT = StripeKit()
