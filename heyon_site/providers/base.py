"""The one interface every payment provider adapter implements.

Billing sees only ``ProviderEvent``; nothing provider-specific leaks past this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
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
