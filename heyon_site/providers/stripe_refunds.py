"""Stripe's Refund objects in our terms, without calling Stripe: what a refund's ``status`` means
for ``refund`` and ``refund_status``, which refund of a payment is ours, and what a verified
``refund.updated`` / ``refund.failed`` event states.

A refund this site asks for carries our numbers in its metadata (``refund_no``, ``order_no``),
set when it is created; Stripe keeps metadata as given and sends it in every event and answer
about the refund, so neither the notification path nor ``refund_status`` needs anything else.

Refund ``status`` (Stripe's Refunds API): ``succeeded`` (the money left for the card),
``pending`` (accepted, not done: the account's balance is short, the charge has not settled,
the bank is working on it), ``requires_action`` (the payer has to do something for some payment
methods, never for a card), ``failed`` (the bank refused it; ``failure_reason`` says why, such as
``expired_or_canceled_card``; the money comes back to the Stripe balance) and ``canceled``
(cancelled before it was paid). The last two are final and pay nothing back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from heyon_site.billing.events import EventKind, ProviderEvent
from heyon_site.providers.base import MalformedCallback, NothingToDo, ProviderUnavailable, RefundResult

CURRENCY = "cny"
PENDING_STATUSES = frozenset({"pending", "requires_action"})
FAILED_STATUSES = frozenset({"failed", "canceled"})
#: Error codes of a create that say this charge cannot give the money back, whatever is tried
#: again: all of it went back already, more than what is left was asked, the payer disputed it.
#: Any other error leaves the outcome unknown (asked again later).
REFUSED_CODES = frozenset({"charge_already_refunded", "amount_too_large", "charge_disputed"})
#: The events about a Refund object that this site reads.
REFUND_OBJECT_EVENTS = frozenset({"refund.updated", "refund.failed"})

# Stripe documents object ids as opaque strings of up to 255 characters; refunds of "payment"
# charges (non-card methods) have ``pyr_`` ids.
REFUND_ID = re.compile(r"(?:re|pyr)_[A-Za-z0-9_]{1,252}")
PAYMENT_INTENT_ID = re.compile(r"pi_[A-Za-z0-9_]{1,252}")
#: Our refund numbers (billing makes them of letters and digits); a metadata value of another
#: form is not one of ours.
REFUND_NO = re.compile(r"[A-Za-z0-9_-]{1,64}")
ORDER_NO = re.compile(r"\d{1,24}")


def result_of(refund: Mapping[str, Any]) -> RefundResult:
    """What a Refund object says now. A status Stripe does not document is not guessed at."""
    refund_id = refund.get("id")
    if refund.get("object") != "refund" or not isinstance(refund_id, str) or not REFUND_ID.fullmatch(refund_id):
        raise ProviderUnavailable("stripe refund: the answer is not a refund with an id")
    status = refund.get("status")
    if status == "succeeded":
        return RefundResult("succeeded", refund_id, "succeeded")
    if status in PENDING_STATUSES:
        # Why it waits (processing, insufficient_funds, charge_pending), when Stripe says.
        reason = refund.get("pending_reason")
        return RefundResult("pending", refund_id, f"{status}: {reason}"[:80] if isinstance(reason, str) else status)
    if status in FAILED_STATUSES:
        reason = refund.get("failure_reason")
        return RefundResult("failed", refund_id, reason[:80] if isinstance(reason, str) and reason else status)
    raise ProviderUnavailable(f"stripe refund: status {str(status)[:20]!r}")


def metadata_refund_no(refund: Mapping[str, Any]) -> str | None:
    """Our number of the refund, from its metadata; None for a refund made elsewhere (in the
    Stripe dashboard) or whose metadata is not of our form."""
    metadata = refund.get("metadata")
    refund_no = metadata.get("refund_no") if isinstance(metadata, dict) else None
    return refund_no if isinstance(refund_no, str) and REFUND_NO.fullmatch(refund_no) else None


def find_ours(refunds: Iterable[Mapping[str, Any]], refund_no: str) -> Mapping[str, Any] | None:
    """The refund of a payment made for our ``refund_no``. There is at most one (creates carry
    ``refund_no`` as their idempotency key, and ``refund`` looks before it creates); should there
    be more, the one that moved money tells the truth: succeeded, then pending, then failed."""
    rank = {"succeeded": 0, "pending": 1, "requires_action": 1}
    found = [r for r in refunds if isinstance(r, Mapping) and metadata_refund_no(r) == refund_no]
    return min(found, key=lambda r: rank.get(str(r.get("status")), 2)) if found else None


def latest_refund_no(charge: Mapping[str, Any]) -> str | None:
    """Our number of the refund a ``charge.refunded`` is about, when the charge says: accounts
    on an API version before 2022-11-15 get the charge's ``refunds`` list in the event (newest
    first; later versions leave it out, and then the event names no refund). The event is the
    charge as it was when the refund was made, so the newest refund in it is that refund."""
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    if not isinstance(data, list):
        return None
    listed = [r for r in data if isinstance(r, dict)]
    if not listed:
        return None
    # Newest by creation time; on a tie, the first in Stripe's order (newest first): max keeps it.
    newest = max(listed, key=_created)
    return metadata_refund_no(newest)


def _created(refund: Mapping[str, Any]) -> int:
    created = refund.get("created")
    return created if type(created) is int else -1


def refund_event(provider: str, event_type: str, data: Mapping[str, Any]) -> ProviderEvent:
    """The event a verified ``refund.updated`` or ``refund.failed`` states: ``refund_failed``
    when our refund failed or was cancelled, ``refunded`` when it went from pending to succeeded.

    ``refund.updated`` is also sent when nothing about the money changes (Stripe adds the
    card network's reference to a succeeded refund a day or so later): only an update whose
    ``previous_attributes`` name ``status`` is read. A refund made at once is already told by
    ``charge.refunded``; the txn_id of these events is the refund's id."""
    refund = data.get("object")
    if not isinstance(refund, dict) or refund.get("object") != "refund":
        raise MalformedCallback("not a refund")
    refund_id = refund.get("id")
    if not isinstance(refund_id, str) or not REFUND_ID.fullmatch(refund_id):
        raise MalformedCallback("refund id missing or not of its form")
    metadata = refund.get("metadata")
    order_no = metadata.get("order_no") if isinstance(metadata, dict) else None
    refund_no = metadata_refund_no(refund)
    if order_no is None or refund_no is None:
        # Made in the dashboard or by another integration: charge.refunded tells its money.
        raise NothingToDo(f"refund {refund_id} was not asked for by this site (no metadata refund_no, order_no)")
    if not isinstance(order_no, str) or not ORDER_NO.fullmatch(order_no):
        raise MalformedCallback("metadata.order_no not of our form")
    if refund.get("currency") != CURRENCY:
        raise MalformedCallback(f"currency {str(refund.get('currency'))[:10]!r} is not {CURRENCY}")
    amount = refund.get("amount")
    if type(amount) is not int or amount <= 0:
        raise MalformedCallback("amount missing or not a positive whole number of fen")
    status = refund.get("status")
    previous = data.get("previous_attributes")
    changed = isinstance(previous, dict) and "status" in previous
    if event_type == "refund.updated" and not changed:
        raise NothingToDo(f"refund {refund_id} updated, its status unchanged")
    if status in FAILED_STATUSES:
        kind: EventKind = "refund_failed"
    elif status == "succeeded" and event_type == "refund.updated":
        kind = "refunded"
    elif status in PENDING_STATUSES:
        raise NothingToDo(f"refund {refund_id} is {status}")
    else:
        raise MalformedCallback(f"{event_type} with status {str(status)[:20]!r}")
    return ProviderEvent(
        provider=provider, order_no=order_no, txn_id=refund_id, kind=kind, amount_fen=amount, refund_no=refund_no
    )
