"""The sandbox provider: a built-in stand-in for a hosted payment page, shaped like Alipay.

Notifications are form-encoded and signed with HMAC-SHA256 (key ``HEYON_SANDBOX_SECRET``) over
the fields other than ``sign`` and ``sign_type``, sorted by name, joined as ``k=v`` with ``&``,
empty values left out. The gateway page's address carries ``sign``, HMAC-SHA256 with the same
key over ``gateway:<order number>``. Anyone can "pay" on its page, so it is only on when
configured, and never beside a real provider (config.refuse_sandbox_beside_real_providers).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import parse_qsl

from flask import url_for
from sqlalchemy import select

from heyon_site.billing.events import EventKind, ProviderEvent
from heyon_site.billing.money import AmountError, parse_amount
from heyon_site.extensions import db
from heyon_site.models import SandboxPayment
from heyon_site.providers.base import Acknowledgement, Checkout, Device, InvalidSignature, MalformedCallback, OrderRef

_ORDER_NO = re.compile(r"\d{1,24}")
_TXN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
CLOSED_STATUSES = frozenset({"TRADE_CLOSED"})


def sign(fields: Mapping[str, str], secret: str) -> str:
    message = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type") and v != "")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def gateway_sign(order_no: str, secret: str) -> str:
    """The ``sign`` of the gateway page's address: HMAC-SHA256 over ``gateway:<order_no>`` (the
    prefix keeps it from ever equalling a notification's signature, whose message has ``=``)."""
    return hmac.new(secret.encode(), f"gateway:{order_no}".encode(), hashlib.sha256).hexdigest()


class SandboxProvider:
    name = "sandbox"
    min_fen = 1
    pay_timeout = timedelta(minutes=15)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("HEYON_SANDBOX_SECRET is empty")
        self._secret = secret

    def checkout(self, order: OrderRef, device: Device) -> Checkout:
        # Every device goes to the gateway page: the sandbox stands in for a hosted page, whose
        # address is signed as a real provider's is, so only its holder can open it.
        return Checkout(
            redirect_url=url_for("sandbox.gateway", order_no=order.order_no, sign=self.gateway_sign(order.order_no))
        )

    def sign(self, fields: Mapping[str, str]) -> str:
        return sign(fields, self._secret)

    def gateway_sign(self, order_no: str) -> str:
        return gateway_sign(order_no, self._secret)

    def gateway_sign_matches(self, order_no: str, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.gateway_sign(order_no).encode())

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=40)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidSignature("not a form-encoded body") from exc
        fields = dict(pairs)
        if len(fields) != len(pairs):
            raise InvalidSignature("a field is repeated")
        given = fields.get("sign", "")
        if fields.get("sign_type") != "HMAC-SHA256" or not hmac.compare_digest(
            given.encode(), self.sign(fields).encode()
        ):
            raise InvalidSignature("signature does not verify")
        status = fields.get("trade_status", "")
        kind: EventKind
        if status in PAID_STATUSES:
            kind = "paid"
        elif status in CLOSED_STATUSES:
            kind = "closed"
        else:
            raise MalformedCallback(f"trade_status {status[:20]!r}")
        order_no, txn_id = fields.get("out_trade_no", ""), fields.get("trade_no", "")
        if not _ORDER_NO.fullmatch(order_no) or not _TXN_ID.fullmatch(txn_id):
            raise MalformedCallback("out_trade_no or trade_no missing or not of its form")
        try:
            amount_fen = parse_amount(fields.get("total_amount", ""))
        except AmountError as exc:
            raise MalformedCallback("total_amount") from exc
        return ProviderEvent(provider=self.name, order_no=order_no, txn_id=txn_id, kind=kind, amount_fen=amount_fen)

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement("success")

    def reject(self) -> Acknowledgement:
        return Acknowledgement("fail", status=400)

    def query(self, order_no: str) -> ProviderEvent | None:
        row = db.session.scalar(select(SandboxPayment).where(SandboxPayment.order_no == order_no))
        if row is None:
            return None
        kind: EventKind = "paid" if row.status in PAID_STATUSES else "closed"
        return ProviderEvent(
            provider=self.name, order_no=order_no, txn_id=row.trade_no, kind=kind, amount_fen=row.amount_fen
        )

    def close(self, order_no: str) -> None:
        """The gateway page refuses an order that is no longer pending; nothing to tell."""
