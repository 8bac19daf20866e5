"""Stripe's daily statement, read from its balance transactions.

Stripe has no daily statement file to download through the API: the statement of a day is the
list of the account's balance transactions created that day (Beijing time), each with its
``source`` expanded (the charge or refund it records). ``fetch_statement`` gathers them over
every page and stores them as one JSON list, so what settlement reads can be archived and read
again as it was.

What a Stripe object does not say is added by ``fetch_statement`` under one key of ours,
``heyon``, on the lines it concerns: ``checkout_session`` (our payments' txn_id is the Checkout
Session id, which neither a charge nor a refund names) and ``order_no`` (the session's
client_reference_id, for a refund made in the dashboard, which carries no metadata of ours).

Lines (``type``): ``charge`` and ``payment`` (a card, another payment method) are payments,
``refund`` and ``payment_refund`` refunds. Everything else (payouts, Stripe's own fees billed
apart, adjustments, ``refund_failure``, which gives back the money of a refund that failed)
is not a line of ``StatementLine``'s two kinds and is left out. A payment or refund of a charge
that no order of ours made (no ``order_no`` in the charge's or the refund's metadata, no session
of ours) belongs to another integration on the account and is left out too.

Amounts: a balance transaction is in the account's balance currency. When that is the yuan,
``amount`` and ``fee`` are fen as they are. Otherwise (Stripe settles a Hong Kong account in
HKD or USD) the yuan amount is the charge's or refund's own ``amount`` (in CNY fen, as paid)
and the fee, charged in the balance currency, is converted back with the line's
``exchange_rate`` and rounded to the nearest fen: the best Stripe's data allows, not exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from heyon_site.providers.base import MalformedStatement, StatementLine
from heyon_site.providers.stripe_refunds import CURRENCY, ORDER_NO, metadata_refund_no

#: Statement days are days in Beijing, as for every provider here.
BEIJING = ZoneInfo("Asia/Shanghai")
PAYMENT_TYPES = frozenset({"charge", "payment"})
REFUND_TYPES = frozenset({"refund", "payment_refund"})
#: The key of what ``fetch_statement`` adds to a line (see the module's docstring).
OURS = "heyon"


def day_bounds(day: date) -> tuple[int, int]:
    """The day in Beijing as Unix times: [start, end)."""
    start = datetime.combine(day, time(), BEIJING)
    end = datetime.combine(day + timedelta(days=1), time(), BEIJING)
    return int(start.timestamp()), int(end.timestamp())


def file_name(day: date) -> str:
    return f"stripe-{day.isoformat()}.json"


def payment_intent_of(line: Mapping[str, Any]) -> str | None:
    """The PaymentIntent of a payment or refund line (its expanded source names it)."""
    if line.get("type") not in PAYMENT_TYPES | REFUND_TYPES:
        return None
    source = line.get("source")
    intent = source.get("payment_intent") if isinstance(source, dict) else None
    if isinstance(intent, dict):
        intent = intent.get("id")
    return intent if isinstance(intent, str) else None


def parse_statement(raw: bytes) -> list[StatementLine]:
    """The payment and refund lines of a file as ``fetch_statement`` made it, oldest first."""
    try:
        lines = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedStatement("not a JSON text") from None
    if not isinstance(lines, list):
        raise MalformedStatement("not a JSON list of balance transactions")
    found: list[StatementLine] = []
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, dict) or line.get("object") != "balance_transaction":
            raise MalformedStatement(f"item {number}: not a balance transaction")
        kind = line.get("type")
        if kind not in PAYMENT_TYPES | REFUND_TYPES:
            continue
        where = f"item {number} ({str(line.get('id'))[:40]})"
        read = _line(line, "payment" if kind in PAYMENT_TYPES else "refund", where)
        if read is not None:
            found.append(read)
    # Stripe lists the newest first; a statement reads from the morning on.
    found.sort(key=lambda s: s.at)
    return found


def _line(line: Mapping[str, Any], kind: str, where: str) -> StatementLine | None:
    source = line.get("source")
    if not isinstance(source, dict):
        raise MalformedStatement(f"{where}: source not expanded (fetch with expand[]=data.source)")
    added = line.get(OURS)
    ours: Mapping[str, Any] = added if isinstance(added, dict) else {}
    metadata = source.get("metadata")
    tagged = metadata.get("order_no") if isinstance(metadata, dict) else None
    known = ours.get("order_no")
    if tagged is not None and known is not None and tagged != known:
        raise MalformedStatement(f"{where}: metadata.order_no is not its Checkout Session's order")
    order_no = tagged if tagged is not None else known
    if not isinstance(order_no, str) or not ORDER_NO.fullmatch(order_no):
        return None  # not a payment of ours: another integration on the same account
    session = ours.get("checkout_session")
    # Without a session of ours (none was found), the PaymentIntent names the payment: a txn_id
    # no order has, so settlement puts the line in front of a person.
    txn_id = session if isinstance(session, str) else payment_intent_of(line)
    if txn_id is None:  # a charge made without a PaymentIntent: the charge itself
        txn_id = source.get("id") if kind == "payment" else source.get("charge")
    if not isinstance(txn_id, str) or not txn_id:
        raise MalformedStatement(f"{where}: names no payment")
    amount_fen, fee_fen = _fen(line, source, kind, where)
    created = line.get("created")
    if type(created) is not int:
        raise MalformedStatement(f"{where}: created is not a Unix time")
    at = datetime.fromtimestamp(created, UTC).replace(tzinfo=None)  # stored times are naive UTC
    if kind == "payment":
        return StatementLine("payment", order_no, txn_id, amount_fen, fee_fen, at)
    refund_id = source.get("id")
    return StatementLine(
        "refund",
        order_no,
        txn_id,
        amount_fen,
        fee_fen,
        at,
        refund_no=metadata_refund_no(source),
        refund_id=refund_id if isinstance(refund_id, str) else None,
    )


def _fen(line: Mapping[str, Any], source: Mapping[str, Any], kind: str, where: str) -> tuple[int, int]:
    """(amount, fee) in fen: the amount positive, the fee as Stripe charged it (negative when a
    refund gives part of it back)."""
    amount, fee = line.get("amount"), line.get("fee")
    if type(amount) is not int or type(fee) is not int:
        raise MalformedStatement(f"{where}: amount or fee is not a whole number")
    # Money in is positive, money sent back negative.
    if (kind == "payment" and amount <= 0) or (kind == "refund" and amount >= 0):
        raise MalformedStatement(f"{where}: a {kind} of {amount}")
    if line.get("currency") == CURRENCY:
        return abs(amount), fee
    paid = source.get("amount")
    if source.get("currency") != CURRENCY or type(paid) is not int or paid <= 0:
        raise MalformedStatement(f"{where}: the {kind} is not an amount in {CURRENCY}")
    try:
        rate = Decimal(str(line.get("exchange_rate")))
    except InvalidOperation:
        rate = Decimal(0)
    if not rate.is_finite() or rate <= 0:
        raise MalformedStatement(f"{where}: in {str(line.get('currency'))[:10]} without an exchange_rate")
    return paid, int((Decimal(fee) / rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
