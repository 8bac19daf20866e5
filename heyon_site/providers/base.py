"""The one interface every payment provider adapter implements.

Billing sees only ``ProviderEvent``; nothing provider-specific leaks past this module.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

EventKind = Literal["paid", "closed"]


class InvalidSignature(Exception):
    """The callback is not provably from the provider: its body must not be trusted."""


class MalformedCallback(Exception):
    """The callback is signed but lacks a field we need, or a field is not of its form."""


@dataclass(frozen=True)
class ProviderEvent:
    """A verified statement from a provider about one of our orders."""

    provider: str
    order_no: str
    txn_id: str
    kind: EventKind
    amount_fen: int


@dataclass(frozen=True)
class Checkout:
    """Where to send the payer: a URL to redirect to (QR codes come with issue-specific adapters)."""

    redirect_url: str


@dataclass(frozen=True)
class OrderRef:
    """What an adapter needs to start a payment, without a database object."""

    order_no: str
    pay_fen: int
    subject: str
    return_url: str


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

    def checkout(self, order: OrderRef) -> Checkout: ...

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verify the signature, then read the event; raise InvalidSignature or MalformedCallback."""
        ...

    def acknowledge(self) -> Acknowledgement: ...

    def reject(self) -> Acknowledgement: ...

    def query(self, order_no: str) -> ProviderEvent | None:
        """Ask the provider what became of an order (for reconciliation); None if nothing yet."""
        ...
