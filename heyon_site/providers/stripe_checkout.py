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

A refund, made here or in Stripe's dashboard, comes as ``charge.refunded`` (sent for every
refund, full or partial, when it is made). The charge names our order: Stripe copies the
PaymentIntent's metadata, which checkout sets (``payment_intent_data.metadata.order_no``), onto
the charge the PaymentIntent makes. It names our refund number only on accounts whose API
version still puts the charge's ``refunds`` list in the event (before 2022-11-15).

A refund this site asks for (``refund``) carries ``refund_no`` and ``order_no`` in its own
metadata, so ``refund.updated`` and ``refund.failed`` about it name our order and refund without
an API call on the notification path: a refund that failed or was cancelled is
``refund_failed``, one that went from pending to succeeded is ``refunded``. A refund made in the
dashboard has no such metadata; its refund.* events are acknowledged and ignored, as
charge.refunded already says what they would. Refunds and the daily statement are read in
``stripe_refunds`` and ``stripe_statement``, which call nothing.

The module is not called ``stripe.py`` so that ``import stripe`` inside it is the package.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import stripe
from sqlalchemy import select
from stripe.params import BalanceTransactionListParams, RefundCreateParams, RefundListParams
from stripe.params.checkout import SessionCreateParams, SessionListParams

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
    RefundRequest,
    RefundResult,
    StatementLine,
    StatementNotReady,
)
from heyon_site.providers.stripe_refunds import (
    PAYMENT_INTENT_ID,
    REFUND_NO,
    REFUND_OBJECT_EVENTS,
    REFUSED_CODES,
    find_ours,
    latest_refund_no,
    metadata_refund_no,
    refund_event,
    result_of,
)
from heyon_site.providers.stripe_statement import OURS, day_bounds, file_name, payment_intent_of
from heyon_site.providers.stripe_statement import parse_statement as parse_balance_transactions

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
#: The longest a Checkout Session stays payable (Stripe's bound on ``expires_at``): a charge of a
#: statement day comes from a session made at most this long before the day began.
SESSION_LIFETIME_MAX = timedelta(hours=24)
#: Stripe's largest page of a list; and a bound on pages, so a list that never ends is an error.
PAGE_SIZE = 100
MAX_PAGES = 1000
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


HANDLED_EVENTS = PAID_EVENTS | CLOSED_EVENTS | REFUND_EVENTS | REFUND_OBJECT_EVENTS


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
        data = event.get("data")
        session = data.get("object") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(session, dict):
            raise MalformedCallback("data.object missing")
        if kind_of_event in REFUND_OBJECT_EVENTS:
            return refund_event(self.name, kind_of_event, data)
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
        total refunded so far, so (charge, total) names each refund of it exactly once. Our
        refund number comes with it when the event carries the charge's refunds."""
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
            refund_no=latest_refund_no(charge),
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

    # ------------------------------------------------------------------ refunds

    def refund(self, request: RefundRequest) -> RefundResult:
        """Return money of a payment to its card: ``POST /v1/refunds`` on the PaymentIntent of the
        payment's Checkout Session, with our numbers in the refund's metadata and ``refund_no``
        as the idempotency key.

        Stripe keeps an idempotency key for at least 24 hours only, and replays a saved error
        for as long: the payment's refunds are looked through first, so a request sent again a
        day later, or after an error, finds the refund it made instead of making a second one.
        Errors that say the charge cannot give this back (``REFUSED_CODES``) are ``failed``
        with the code as detail; any other error, 429 and 5xx and a lost connection included,
        leaves the outcome unknown: ProviderUnavailable."""
        if request.amount_fen <= 0 or not REFUND_NO.fullmatch(request.refund_no or ""):
            return RefundResult("failed", detail="invalid_request")
        intent = self._payment_intent(request)
        if isinstance(intent, RefundResult):
            return intent
        found = find_ours(self._refunds_of(intent), request.refund_no)
        if found is not None:
            return result_of(found)
        params: RefundCreateParams = {
            "payment_intent": intent,
            "amount": request.amount_fen,
            "metadata": {"refund_no": request.refund_no, "order_no": request.order_no},
        }
        try:
            made = self._client.v1.refunds.create(params, {"idempotency_key": request.refund_no})
        except stripe.InvalidRequestError as exc:
            if exc.code in REFUSED_CODES:
                return RefundResult("failed", detail=str(exc.code))
            raise _unavailable("refund", exc) from None
        except stripe.StripeError as exc:
            # Among them IdempotencyError: the number was used before with other parameters.
            raise _unavailable("refund", exc) from None
        if not isinstance(made, stripe.StripeObject):
            raise ProviderUnavailable("stripe refund: unexpected answer")
        refund = made.to_dict()
        if metadata_refund_no(refund) != request.refund_no:
            raise ProviderUnavailable("stripe refund: the answer is about another refund")
        return result_of(refund)

    def refund_status(self, request: RefundRequest) -> RefundResult:
        """What became of a refund asked for before: the payment's refund whose metadata names
        ``refund_no`` (Stripe's refund id is not kept, and the list by PaymentIntent is one call
        for a payment's few refunds).

        No such refund is ``pending``, never ``failed``: the create may not have reached Stripe
        (the answer was lost before it was made), and sending ``refund`` again makes it once.
        Only Stripe saying a refund failed or was cancelled makes it ``failed``; the checks of
        the payment itself (not a session, another order's, unpaid, not in yuan) answer as
        ``refund`` does, since no refund of ours can exist on such a payment."""
        intent = self._payment_intent(request)
        if isinstance(intent, RefundResult):
            return intent
        found = find_ours(self._refunds_of(intent), request.refund_no)
        if found is None:
            return RefundResult("pending", detail="not_found")
        return result_of(found)

    def _payment_intent(self, request: RefundRequest) -> str | RefundResult:
        """The PaymentIntent that paid the request's Checkout Session (a payment's txn_id here),
        or the ``failed`` result saying why nothing of it can be refunded this way."""
        session_id = request.txn_id or ""
        if not _SESSION_ID.fullmatch(session_id):
            return RefundResult("failed", detail="not_a_checkout_session")
        session = self._call("retrieve", lambda: self._client.v1.checkout.sessions.retrieve(session_id))
        if session.get("client_reference_id") != request.order_no:
            return RefundResult("failed", detail="session_of_another_order")
        if session.get("currency") != CURRENCY:
            # Adaptive Pricing: the charge is in the payer's currency, and fen would be misread.
            return RefundResult("failed", detail=f"paid_in_{str(session.get('currency'))[:10]}")
        intent = session.get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        if isinstance(intent, str) and PAYMENT_INTENT_ID.fullmatch(intent):
            return intent
        if session.get("payment_status") != "paid":
            return RefundResult("failed", detail="session_not_paid")
        raise ProviderUnavailable("stripe retrieve: a paid session without a PaymentIntent")

    def _refunds_of(self, intent: str) -> list[dict[str, Any]]:
        def page(after: str | None) -> Any:
            params: RefundListParams = {"payment_intent": intent, "limit": PAGE_SIZE}
            if after:
                params["starting_after"] = after
            return self._client.v1.refunds.list(params)

        return self._pages("refunds", page)

    # ------------------------------------------------------------------ statement

    def fetch_statement(self, day: date) -> tuple[str, bytes]:
        """The balance transactions created on ``day`` (Beijing time), their sources expanded,
        over every page, each payment or refund of ours marked with its Checkout Session (see
        ``stripe_statement``). Stripe writes them as money moves: the day's list is complete
        once the day is over, and an empty list is a day without any."""
        start, end = day_bounds(day)
        if time.time() < end:
            raise StatementNotReady(f"stripe: {day.isoformat()} is not over yet in Beijing")

        def page(after: str | None) -> Any:
            params: BalanceTransactionListParams = {
                "created": {"gte": start, "lt": end},
                "limit": PAGE_SIZE,
                "expand": ["data.source"],
            }
            if after:
                params["starting_after"] = after
            return self._client.v1.balance_transactions.list(params)

        lines = self._pages("balance transactions", page)
        intents = {intent for line in lines if (intent := payment_intent_of(line)) is not None}
        sessions: dict[str, dict[str, str]] = {}
        if intents:
            # The day's payments in a few pages; a refund of an older payment asks by its own.
            sessions = self._sessions_made(start - int(SESSION_LIFETIME_MAX.total_seconds()), end, intents)
            for intent in sorted(intents - sessions.keys()):
                sessions.update(self._sessions_of(intent))
        for line in lines:
            ours = sessions.get(payment_intent_of(line) or "")
            if ours is not None:
                line[OURS] = ours
        return file_name(day), json.dumps(lines, ensure_ascii=False, indent=1, sort_keys=True).encode()

    def parse_statement(self, raw: bytes) -> list[StatementLine]:
        return parse_balance_transactions(raw)

    def _sessions_made(self, start: int, end: int, intents: set[str]) -> dict[str, dict[str, str]]:
        """Our completed sessions made in [start, end) whose PaymentIntent is in ``intents``."""

        def page(after: str | None) -> Any:
            params: SessionListParams = {"created": {"gte": start, "lt": end}, "status": "complete", "limit": PAGE_SIZE}
            if after:
                params["starting_after"] = after
            return self._client.v1.checkout.sessions.list(params)

        return _ours_by_intent(self._pages("checkout sessions", page), intents)

    def _sessions_of(self, intent: str) -> dict[str, dict[str, str]]:
        params: SessionListParams = {"payment_intent": intent, "limit": 10}
        answer = self._call("checkout sessions", lambda: self._client.v1.checkout.sessions.list(params), for_json=True)
        found = answer.get("data")
        return _ours_by_intent(found if isinstance(found, list) else [], {intent})

    # ------------------------------------------------------------------ plumbing

    def _call(self, what: str, request: Callable[[], Any], for_json: bool = False) -> dict[str, Any]:
        """A Stripe API call, its answer as plain dicts (the package's objects are not dicts);
        ``for_json``: decimals as text, as ``json.dumps`` takes them."""
        try:
            answer = request()
        except stripe.StripeError as exc:
            raise _unavailable(what, exc) from None
        if not isinstance(answer, stripe.StripeObject):
            raise ProviderUnavailable(f"stripe {what}: unexpected answer")
        return answer.to_dict(for_json=for_json)

    def _pages(self, what: str, page: Callable[[str | None], Any]) -> list[dict[str, Any]]:
        """Every item of a Stripe list, following ``starting_after`` while ``has_more``."""
        items: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            answer = self._call(what, partial(page, after), for_json=True)
            data = answer.get("data")
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise ProviderUnavailable(f"stripe {what}: the answer is not a list")
            items.extend(data)
            if answer.get("has_more") is not True:
                return items
            last = data[-1].get("id") if data else None
            if not isinstance(last, str) or last == after:
                raise ProviderUnavailable(f"stripe {what}: has_more without a next page")
            after = last
        raise ProviderUnavailable(f"stripe {what}: more than {MAX_PAGES} pages")


def _unavailable(what: str, exc: stripe.StripeError) -> ProviderUnavailable:
    # Type, status and error code only: a message may quote part of the key.
    return ProviderUnavailable(f"stripe {what}: {type(exc).__name__} {exc.http_status or ''} {exc.code or ''}".rstrip())


def _ours_by_intent(sessions: list[Any], intents: set[str]) -> dict[str, dict[str, str]]:
    """PaymentIntent -> what a statement line needs of its session, for sessions this site made."""
    found: dict[str, dict[str, str]] = {}
    for session in sessions:
        if not isinstance(session, dict):
            continue
        intent, session_id = session.get("payment_intent"), session.get("id")
        order_no = session.get("client_reference_id")
        metadata = session.get("metadata")
        if (
            isinstance(intent, str)
            and intent in intents
            and isinstance(session_id, str)
            and _SESSION_ID.fullmatch(session_id)
            and isinstance(order_no, str)
            and _ORDER_NO.fullmatch(order_no)
            and isinstance(metadata, dict)
            and metadata.get("order_no") == order_no
        ):
            found[intent] = {"checkout_session": session_id, "order_no": order_no}
    return found


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
