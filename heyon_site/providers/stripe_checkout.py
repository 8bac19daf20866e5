"""Stripe Checkout for bank cards (Visa, Mastercard, ... from anywhere), through the official
``stripe`` package.

A payment is a Checkout Session in ``payment`` mode for one line item priced in CNY fen
(Stripe's minor unit of the yuan is the fen). The session id is kept on the order
(``RechargeOrder.provider_ref``): Stripe cannot look a session up by our order number, so
``query`` and ``close`` read the id from there. An order without one never got a session, so
nothing can have been paid on it.

Webhooks are verified with the package's ``WebhookSignature.verify_header`` (HMAC-SHA256 with
the endpoint's ``whsec_`` secret over ``"<t>.<body>"``, at most 300 s old) before anything in
the body is read. The event's session id is the transaction id, so each session is credited
at most once however often, and under whatever event id, Stripe delivers it.

A refund made in Stripe comes as ``charge.refunded`` (sent for every refund, full or partial).
The charge names our order: Stripe copies the PaymentIntent's metadata, which checkout sets
(``payment_intent_data.metadata.order_no``), onto the charge the PaymentIntent makes.
``refund.*`` events carry only a refund and a charge id; tying them to an order would take an
API call on the notification path, and charge.refunded already says what they say.

The module is not called ``stripe.py`` so that ``import stripe`` inside it is the package.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import stripe
from sqlalchemy import select
from stripe.params.checkout import SessionCreateParams

from heyon_site.billing.events import EventKind, ProviderEvent
from heyon_site.billing.money import AmountError, parse_amount
from heyon_site.config import MissingSetting, setting
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.providers.base import (
    Acknowledgement,
    Checkout,
    Device,
    InvalidSignature,
    MalformedCallback,
    NothingToDo,
    OrderRef,
    ProviderUnavailable,
)

T = TypeVar("T")

DEFAULT_API_BASE = "https://api.stripe.com"
CURRENCY = "cny"
#: Stripe's table of minimum charges has no CNY row: the floor is that of the account's
#: settlement currency converted (USD 0.50, HKD 4.00, EUR 0.50, ...), and 4.00 yuan clears
#: the usual ones. HEYON_STRIPE_MIN_AMOUNT raises it for a settlement currency with a higher one.
DEFAULT_MIN_AMOUNT = "4.00"
#: Stripe refuses an ``expires_at`` under 30 minutes away when the request reaches it; one
#: minute more leaves room for a retried request and for clock skew.
PAY_TIMEOUT = timedelta(minutes=31)
WEBHOOK_TOLERANCE_SECONDS = 300
#: Seconds to connect and to read; one retry (same idempotency key) after a dropped connection
#: or a 5xx. The customer waits for ``checkout``, so the worst case stays well under a minute.
TIMEOUT = (3.0, 6.0)
NETWORK_RETRIES = 1

PAID_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
# A session that expired, or whose delayed payment failed, can never be paid any more.
CLOSED_EVENTS = frozenset({"checkout.session.expired", "checkout.session.async_payment_failed"})
# Money went back to the card: a refund, full or partial, of the charge a session made.
REFUND_EVENTS = frozenset({"charge.refunded"})

_ORDER_NO = re.compile(r"\d{1,24}")
# Stripe documents object ids as opaque strings of up to 255 characters.
_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,252}")
_CHARGE_ID = re.compile(r"(?:ch|py)_[A-Za-z0-9_]{1,252}")
_LOOPBACK_NAMES = frozenset({"localhost"})


class UnhandledEvent(NothingToDo):
    """Verified, but nothing for us: an event type we do not act on, or a session this site did
    not make (another integration on the same Stripe account). Acknowledged (Stripe retries a
    refusal for days) and kept on record as "ignored"."""


HANDLED_EVENTS = PAID_EVENTS | CLOSED_EVENTS | REFUND_EVENTS


def _api_base(config: Mapping[str, Any]) -> str:
    base = (setting(config, "HEYON_STRIPE_API_BASE", required=False) or DEFAULT_API_BASE).rstrip("/")
    parts = urlsplit(base)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return base
    # The secret key travels in every request: plain HTTP only to this machine (tests, a proxy).
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in _LOOPBACK_NAMES
    if parts.scheme == "http" and loopback:
        return base
    raise MissingSetting("HEYON_STRIPE_API_BASE must be an https:// URL (http:// only to localhost)")


class StripeCheckoutProvider:
    name = "stripe"
    pay_timeout = PAY_TIMEOUT

    def __init__(
        self, secret_key: str, webhook_secret: str, api_base: str = DEFAULT_API_BASE, min_fen: int = 400
    ) -> None:
        # Shapes only, never values, in the messages: they end up in the start-up log.
        if not re.fullmatch(r"(sk|rk)_(test|live)_[A-Za-z0-9]+", secret_key):
            raise MissingSetting("HEYON_STRIPE_SECRET_KEY is not a Stripe secret or restricted key (sk_... or rk_...)")
        if not re.fullmatch(r"whsec_[A-Za-z0-9+/=]+", webhook_secret):
            raise MissingSetting("HEYON_STRIPE_WEBHOOK_SECRET is not a webhook signing secret (whsec_...)")
        self._webhook_secret = webhook_secret
        # A test-mode key must only ever credit test-mode events, and a live key live ones.
        self._livemode = "_live_" in secret_key
        self.min_fen = min_fen
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=stripe.RequestsClient(timeout=TIMEOUT),
            max_network_retries=NETWORK_RETRIES,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeCheckoutProvider:
        try:
            min_fen = parse_amount(setting(config, "HEYON_STRIPE_MIN_AMOUNT", required=False) or DEFAULT_MIN_AMOUNT)
        except AmountError:
            raise MissingSetting("HEYON_STRIPE_MIN_AMOUNT is not an amount in yuan, like 4.00") from None
        return cls(
            setting(config, "HEYON_STRIPE_SECRET_KEY"),
            setting(config, "HEYON_STRIPE_WEBHOOK_SECRET"),
            _api_base(config),
            max(min_fen, 1),
        )

    # ------------------------------------------------------------------ paying

    def checkout(self, order: OrderRef, device: Device) -> Checkout:
        """The same hosted page on a phone and on a computer: a card is typed in where the
        customer is, there is nothing to scan."""
        params: SessionCreateParams = {
            "mode": "payment",
            "allowed_payment_method_types": ["card"],
            "line_items": [
                {
                    "price_data": {
                        "currency": CURRENCY,
                        "unit_amount": order.pay_fen,
                        "product_data": {"name": order.subject},
                    },
                    "quantity": 1,
                }
            ],
            # Our money is yuan: no localised price in another currency with its own rounding.
            "adaptive_pricing": {"enabled": False},
            "client_reference_id": order.order_no,
            "metadata": {"order_no": order.order_no},
            # So support finds the payment by order number in Stripe's dashboard.
            "payment_intent_data": {"metadata": {"order_no": order.order_no}, "description": order.subject},
            "success_url": order.return_url,
            "cancel_url": order.return_url,
            "expires_at": int(time.time() + PAY_TIMEOUT.total_seconds()),
        }
        # A create retried after a lost answer gets the session made the first time, never a
        # second one; Stripe refuses the key reused with other parameters (a second checkout of
        # the same order), which is reported as unavailable rather than paid twice.
        session = self._call(
            "create",
            lambda: self._client.v1.checkout.sessions.create(
                params, {"idempotency_key": f"heyon-checkout-{order.order_no}"}
            ),
        )
        session_id, url = session.get("id"), session.get("url")
        if (
            not isinstance(session_id, str)
            or not _SESSION_ID.fullmatch(session_id)
            or not isinstance(url, str)
            or not url.startswith("https://")
        ):
            raise ProviderUnavailable("stripe create: the answer has no session id or https url")
        return Checkout(redirect_url=url, provider_ref=session_id)

    # ------------------------------------------------------------------ webhooks

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        header = headers.get("Stripe-Signature") or ""
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature("body is not UTF-8") from None
        # compare_digest raises TypeError on non-ASCII text: refuse such a header up front.
        if not header.isascii() or len(header) > 2048:
            raise InvalidSignature("Stripe-Signature is not of its form")
        try:
            stripe.WebhookSignature.verify_header(payload, header, self._webhook_secret, WEBHOOK_TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, ValueError, TypeError) as exc:
            # The package's messages say which check failed (missing, mismatch, too old).
            raise InvalidSignature(str(exc)[:120]) from None
        try:
            event = json.loads(payload)
        except ValueError:
            raise MalformedCallback("body is not JSON") from None
        if not isinstance(event, dict) or event.get("object") != "event":
            raise MalformedCallback("not an event object")
        if event.get("livemode") is not self._livemode:
            raise MalformedCallback("livemode does not match the key's mode")
        kind_of_event = event.get("type")
        if kind_of_event not in HANDLED_EVENTS:
            raise UnhandledEvent(f"event type {str(kind_of_event)[:60]!r} is not handled")
        session = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
        if not isinstance(session, dict):
            raise MalformedCallback("data.object missing")
        if kind_of_event in REFUND_EVENTS:
            return self._refund(session)
        if kind_of_event in PAID_EVENTS:
            if session.get("payment_status") != "paid":
                raise MalformedCallback(f"payment_status {str(session.get('payment_status'))[:20]!r}")
            return self._event(session, "paid")
        return self._event(session, "closed")

    def _event(self, session: Mapping[str, Any], kind: EventKind) -> ProviderEvent:
        """The event a verified session object states; MalformedCallback if it lacks a field."""
        if session.get("object") != "checkout.session":
            raise MalformedCallback("not a checkout.session")
        session_id = session.get("id")
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise MalformedCallback("session id missing or not of its form")
        metadata = session.get("metadata")
        tagged = metadata.get("order_no") if isinstance(metadata, dict) else None
        if tagged is None:
            raise UnhandledEvent("a session this site did not make (no metadata.order_no)")
        order_no = session.get("client_reference_id")
        if not isinstance(order_no, str) or not _ORDER_NO.fullmatch(order_no) or tagged != order_no:
            raise MalformedCallback("client_reference_id missing, not of its form, or not metadata.order_no")
        return ProviderEvent(
            provider=self.name, order_no=order_no, txn_id=session_id, kind=kind, amount_fen=_amount_fen(session)
        )

    def _refund(self, charge: Mapping[str, Any]) -> ProviderEvent:
        """The refund a verified ``charge.refunded`` states: ``amount_refunded`` is the charge's
        total refunded so far, so (charge, total) names each refund of it exactly once."""
        if charge.get("object") != "charge":
            raise MalformedCallback("not a charge")
        charge_id = charge.get("id")
        if not isinstance(charge_id, str) or not _CHARGE_ID.fullmatch(charge_id):
            raise MalformedCallback("charge id missing or not of its form")
        metadata = charge.get("metadata")
        order_no = metadata.get("order_no") if isinstance(metadata, dict) else None
        if order_no is None:
            raise UnhandledEvent("a charge this site did not make (no metadata.order_no)")
        if not isinstance(order_no, str) or not _ORDER_NO.fullmatch(order_no):
            raise MalformedCallback("metadata.order_no not of our form")
        if charge.get("currency") != CURRENCY:
            raise MalformedCallback(f"currency {str(charge.get('currency'))[:10]!r} is not {CURRENCY}")
        refunded = charge.get("amount_refunded")
        if type(refunded) is not int or refunded <= 0:
            raise MalformedCallback("amount_refunded missing or not a positive whole number of fen")
        return ProviderEvent(
            provider=self.name,
            order_no=order_no,
            txn_id=f"{charge_id}:{refunded}",
            kind="refunded",
            amount_fen=refunded,
        )

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement('{"received": true}', content_type="application/json")

    def reject(self) -> Acknowledgement:
        return Acknowledgement('{"received": false}', status=400, content_type="application/json")

    # ------------------------------------------------------------------ reconciliation

    def query(self, order_no: str) -> ProviderEvent | None:
        session_id = _session_of(order_no)
        if session_id is None:
            return None  # no session was ever made for it: nothing can have been paid
        session = self._call("retrieve", lambda: self._client.v1.checkout.sessions.retrieve(session_id))
        if session.get("client_reference_id") != order_no:
            raise ProviderUnavailable("stripe retrieve: the session belongs to another order")
        status, payment_status = session.get("status"), session.get("payment_status")
        try:
            if status == "complete" and payment_status == "paid":
                event = self._event(session, "paid")
            elif status == "expired":
                event = self._event(session, "closed")
            elif status == "open" or (status == "complete" and payment_status == "unpaid"):
                return None  # not paid yet, or a delayed payment still on its way
            else:
                raise MalformedCallback(f"status {str(status)[:20]!r}, payment_status {str(payment_status)[:20]!r}")
        except MalformedCallback as exc:
            raise ProviderUnavailable(f"stripe retrieve: {exc}") from None
        return event

    def close(self, order_no: str) -> None:
        session_id = _session_of(order_no)
        if session_id is None:
            return
        try:
            self._client.v1.checkout.sessions.expire(session_id)
            return
        except stripe.InvalidRequestError:
            pass  # Stripe expires only open sessions: see whether it is already done with
        except stripe.StripeError as exc:
            raise _unavailable("expire", exc) from None
        session = self._call("retrieve", lambda: self._client.v1.checkout.sessions.retrieve(session_id))
        if session.get("status") not in ("complete", "expired"):
            raise ProviderUnavailable("stripe expire: refused, and the session is still open")

    # ------------------------------------------------------------------ plumbing

    def _call(self, what: str, request: Callable[[], Any]) -> dict[str, Any]:
        """A Stripe API call, its answer as plain dicts (the package's objects are not dicts)."""
        try:
            answer = request()
        except stripe.StripeError as exc:
            raise _unavailable(what, exc) from None
        if not isinstance(answer, stripe.StripeObject):
            raise ProviderUnavailable(f"stripe {what}: unexpected answer")
        return answer.to_dict()


def _unavailable(what: str, exc: stripe.StripeError) -> ProviderUnavailable:
    # Type, status and error code only: a message may quote part of the key.
    return ProviderUnavailable(f"stripe {what}: {type(exc).__name__} {exc.http_status or ''} {exc.code or ''}".rstrip())


def _amount_fen(session: Mapping[str, Any]) -> int:
    """What was paid, in fen. With Adaptive Pricing (off for our sessions, but an account
    setting could turn it on) the session is in the customer's currency and the yuan amount is
    in ``currency_conversion``."""
    conversion = session.get("currency_conversion")
    if isinstance(conversion, dict) and conversion.get("source_currency") == CURRENCY:
        amount = conversion.get("amount_total")
    elif session.get("currency") == CURRENCY:
        amount = session.get("amount_total")
    else:
        raise MalformedCallback(f"currency {str(session.get('currency'))[:10]!r} is not {CURRENCY}")
    if type(amount) is not int or amount < 0:
        raise MalformedCallback("amount_total missing or not a whole number of fen")
    return amount


def _session_of(order_no: str) -> str | None:
    """The session made for the order, kept by ``begin_payment`` when the checkout started."""
    session_id = db.session.scalar(select(RechargeOrder.provider_ref).where(RechargeOrder.order_no == order_no))
    if session_id is not None and not _SESSION_ID.fullmatch(session_id):
        raise ProviderUnavailable("the order's provider_ref is not a Checkout Session id")
    return session_id
