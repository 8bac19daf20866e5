"""The one interface every payment provider adapter implements.

Billing sees only ``ProviderEvent``; nothing provider-specific leaks past this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, Protocol

from heyon_site.billing.events import ProviderEvent

#: Where the payer is: a phone is sent to the provider's mobile page or app; a computer gets a
#: QR code to scan with the phone (Alipay, WeChat Pay) or the provider's desktop page.
Device = Literal["mobile", "desktop"]


class InvalidSignature(Exception):
    """The callback is not provably from the provider: its body must not be trusted."""


class MalformedCallback(Exception):
    """The callback is signed but lacks a field we need, or a field is not of its form."""


class NothingToDo(Exception):
    """A genuine, verified callback that asks nothing of us (the buyer has not paid yet, an event
    type we do not use): recorded as "ignored" and acknowledged, so the provider stops sending."""


class ProviderUnavailable(Exception):
    """The provider's API could not be asked or gave no usable answer (network, timeout, an
    error code). Nothing is known: the order stays as it is and is asked about again later."""


@dataclass(frozen=True)
class Checkout:
    """How the payer pays: a URL to send the browser to, and/or a text to show as a QR code on
    the order page for a phone to scan (then the order page polls while the phone pays)."""

    redirect_url: str | None = None
    qr_payload: str | None = None
    #: The provider's own id for this payment, kept on the order for ``query`` and ``close``.
    provider_ref: str | None = None
    #: Parameters for a payment sheet the page opens in the provider's own app browser (WeChat's
    #: ``getBrandWCPayRequest``: appId, timeStamp, nonceStr, package, signType, paySign).
    jsapi: Mapping[str, str] | None = None


@dataclass(frozen=True)
class OrderRef:
    """What an adapter needs to start a payment, without a database object."""

    order_no: str
    pay_fen: int
    subject: str
    return_url: str
    #: The payer's address, for providers that compare it with who opens their page (WeChat H5).
    payer_ip: str | None = None
    #: Who pays, as the provider's app knows them (a WeChat openid, read from WeChat's OAuth by
    #: the site, never from the browser): with it, WeChat Pay makes a JSAPI order.
    payer_openid: str | None = None


RefundState = Literal["pending", "succeeded", "failed"]


@dataclass(frozen=True)
class RefundRequest:
    """Money of one payment to send back to its payer, through the provider that took it.

    ``refund_no`` is ours and unique (the provider's out_refund_no / out_request_no, Stripe's
    idempotency key): sending the same request again never returns the money twice, so a refund
    whose answer was lost is simply asked again."""

    order_no: str
    refund_no: str
    #: What to return, and the payment's whole amount (WeChat Pay asks for both), in fen.
    amount_fen: int
    total_fen: int
    #: The provider's id of the payment (trade_no, transaction_id, the Checkout Session id).
    txn_id: str
    reason: str = ""


@dataclass(frozen=True)
class RefundResult:
    """What the provider says of a refund now. ``pending``: accepted, not finished (the final
    state comes by notification or query, never assumed); ``succeeded``: the money has left us
    for the payer; ``failed``: it will not be paid back this way (a person decides what next)."""

    state: RefundState
    provider_refund_id: str | None = None
    #: The provider's own words for the state (a status code), for staff; never a secret.
    detail: str = ""


class MalformedStatement(Exception):
    """A statement file that is not in the provider's published format (the message says where)."""


class StatementNotReady(Exception):
    """The provider has no statement for that day yet (they are made the next morning, Beijing
    time), or none at all because nothing happened that day (WeChat's NO_STATEMENT_EXIST)."""


@dataclass(frozen=True)
class StatementLine:
    """One line of a provider's daily statement, in our terms.

    payment: money in for ``order_no`` (the provider's id ``txn_id``); refund: money back out of
    it (``refund_no`` our request number when the provider echoes it, ``refund_id`` its own).
    Amounts are positive fen; ``fee_fen`` is the provider's service fee on the line (positive
    when charged, negative when a refund gives part of it back)."""

    kind: Literal["payment", "refund"]
    order_no: str
    txn_id: str
    amount_fen: int
    fee_fen: int
    at: datetime
    refund_no: str | None = None
    refund_id: str | None = None


class Statements(Protocol):
    """A provider whose daily statement can be fetched and read (providers without it are left
    out of settlement, and ``flask settlement run`` says so)."""

    name: str

    def fetch_statement(self, day: date) -> tuple[str, bytes]:
        """The statement of ``day`` (Beijing time) as the provider serves it: a file name for the
        archive and its raw bytes. Raises StatementNotReady or ProviderUnavailable."""
        ...

    def parse_statement(self, raw: bytes) -> list[StatementLine]:
        """The lines of a statement file as ``fetch_statement`` returned it (or as downloaded by
        hand from the provider's console). Raises MalformedStatement."""
        ...


@dataclass(frozen=True)
class Acknowledgement:
    """What the provider expects as the answer to a callback it should not send again."""

    body: str
    status: int = 200
    content_type: str = "text/plain"


class Provider(Protocol):
    name: str
    #: Smallest amount this channel accepts, stated to customers before they pay.
    min_fen: int
    #: How long the provider keeps an unpaid order payable; after it the order is closed with
    #: the provider (``close``), asked about once more, and expired.
    pay_timeout: timedelta

    def checkout(self, order: OrderRef, device: Device) -> Checkout:
        """May call the provider's API (raise ProviderUnavailable when it fails)."""
        ...

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verify the signature, then read the event; raise InvalidSignature or MalformedCallback."""
        ...

    def acknowledge(self) -> Acknowledgement: ...

    def reject(self) -> Acknowledgement: ...

    def query(self, order_no: str) -> ProviderEvent | None:
        """Ask the provider what became of an order (for reconciliation): a paid or closed event,
        None while it is still unpaid; raise ProviderUnavailable when the answer is unknown."""
        ...

    def close(self, order_no: str) -> None:
        """Tell the provider an unpaid order will not be paid, so a late payment is refused there
        (an order the provider does not know is fine); raise ProviderUnavailable on failure."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult:
        """Ask the provider to return money of a payment (idempotent by ``refund_no``); raise
        ProviderUnavailable when the answer is unknown (then the same request is sent again)."""
        ...

    def refund_status(self, request: RefundRequest) -> RefundResult:
        """Ask what became of a refund asked for before (by ``refund_no``); raise
        ProviderUnavailable when the answer is unknown."""
        ...
