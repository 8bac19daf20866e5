"""What a provider may say about one of our orders, once its signature is verified: the only
provider type billing knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: paid: money came in for the order. closed: the order can no longer be paid (never paid, or,
#: after a payment, closed by returning all of it). refunded: money went back to the payer; its
#: ``txn_id`` names that return (the provider's refund id), so each refund is recorded once.
#: refund_failed: a refund we asked for will not be paid back (WeChat's REFUND.CLOSED, Stripe's
#: failed or canceled refund).
EventKind = Literal["paid", "closed", "refunded", "refund_failed"]


@dataclass(frozen=True)
class ProviderEvent:
    """A verified statement from a provider about one of our orders.

    ``amount_fen`` is what was paid (paid, closed) or what the provider says went back
    (refunded: this refund, or the payment's total refunded so far where that is all the
    provider tells, as Alipay's refund_fee and Stripe's amount_refunded)."""

    provider: str
    order_no: str
    txn_id: str
    kind: EventKind
    amount_fen: int
    #: refunded, refund_failed: our own number of the refund request (out_refund_no,
    #: out_request_no / out_biz_no, the refund's metadata), when the provider tells it; None for
    #: a refund made outside this site (in the provider's console), which a person looks at.
    refund_no: str | None = None
