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
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from flask import url_for
from sqlalchemy import func, select

from heyon_site.billing.events import EventKind, ProviderEvent
from heyon_site.billing.money import AmountError, parse_amount
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import SandboxPayment, SandboxRefund
from heyon_site.providers import alipay_bill
from heyon_site.providers.base import (
    Acknowledgement,
    Checkout,
    Device,
    InvalidSignature,
    MalformedCallback,
    OrderRef,
    RefundRequest,
    RefundResult,
    StatementLine,
)

_ORDER_NO = re.compile(r"\d{1,24}")
_TXN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
BEIJING = ZoneInfo("Asia/Shanghai")
CLOSED_STATUSES = frozenset({"TRADE_CLOSED"})


def sign(fields: Mapping[str, str], secret: str) -> str:
    message = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type") and v != "")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def gateway_sign(order_no: str, secret: str) -> str:
    """The ``sign`` of the gateway page's address: HMAC-SHA256 over ``gateway:<order_no>`` (the
    prefix keeps it from ever equalling a notification's signature, whose message has ``=``)."""
    return hmac.new(secret.encode(), f"gateway:{order_no}".encode(), hashlib.sha256).hexdigest()


def _fee(amount_fen: int) -> int:
    return (amount_fen * 6 + 500) // 1000


def _at(stored: datetime) -> datetime:
    return stored.replace(tzinfo=UTC)


class SandboxProvider:
    name = "sandbox"
    min_fen = 1
    pay_timeout = timedelta(minutes=15)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("HEYON_SANDBOX_SECRET is empty")
        self._secret = secret
        #: Called after a refund is booked (the sandbox blueprint sends its notification).
        self.on_refund: Callable[[RefundRequest], None] | None = None

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
        if fields.get("refund_fee"):
            return self._refund(fields)
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

    def _refund(self, fields: Mapping[str, str]) -> ProviderEvent:
        """A refund notice, shaped like Alipay's: refund_fee (this refund, in yuan) and out_biz_no
        (the merchant's refund request number)."""
        order_no, refund_no = fields.get("out_trade_no", ""), fields.get("out_biz_no", "")
        if not _ORDER_NO.fullmatch(order_no) or not _TXN_ID.fullmatch(refund_no):
            raise MalformedCallback("out_trade_no or out_biz_no missing or not of its form")
        try:
            amount_fen = parse_amount(fields.get("refund_fee", ""))
        except AmountError as exc:
            raise MalformedCallback("refund_fee") from exc
        return ProviderEvent(
            provider=self.name,
            order_no=order_no,
            txn_id=f"refund-{refund_no}",
            kind="refunded",
            amount_fen=amount_fen,
            refund_no=refund_no,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        """The sandbox refunds at once what its book says was paid (never more), keeps the refund
        by its number (asked again, it is found, not made twice) and notifies like a payment."""
        paid = db.session.scalar(select(SandboxPayment).where(SandboxPayment.order_no == request.order_no))
        if paid is None or paid.status not in PAID_STATUSES:
            return RefundResult("failed", detail="TRADE_NOT_PAID")
        existing = self._refund_row(request.refund_no)
        if existing is None:
            returned = db.session.scalar(
                select(func.coalesce(func.sum(SandboxRefund.amount_fen), 0)).where(
                    SandboxRefund.order_no == request.order_no
                )
            )
            if int(returned or 0) + request.amount_fen > paid.amount_fen:
                return RefundResult("failed", detail="REFUND_AMT_TOO_LARGE")
            db.session.rollback()  # the book is written in a transaction of its own
            in_write_transaction(
                lambda: db.session.add(
                    SandboxRefund(refund_no=request.refund_no, order_no=request.order_no, amount_fen=request.amount_fen)
                )
            )
            if self.on_refund is not None:
                self.on_refund(request)
        return RefundResult("succeeded", provider_refund_id=f"SBXR-{request.refund_no}", detail="REFUND_SUCCESS")

    def refund_status(self, request: RefundRequest) -> RefundResult:
        if self._refund_row(request.refund_no) is None:
            return RefundResult("pending", detail="NOT_FOUND_YET")
        return RefundResult("succeeded", provider_refund_id=f"SBXR-{request.refund_no}", detail="REFUND_SUCCESS")

    @staticmethod
    def _refund_row(refund_no: str) -> SandboxRefund | None:
        return db.session.scalar(select(SandboxRefund).where(SandboxRefund.refund_no == refund_no))

    # ------------------------------------------------------------------ statements

    def fetch_statement(self, day: date) -> tuple[str, bytes]:
        """The day's statement from the sandbox's own books, in Alipay's format (a zip of GBK
        CSV), so `flask settlement run` shows settlement on `make run`. Its fee is Alipay's
        common rate, 0.6 % of each payment rounded to the fen, given back on a refund."""
        start = datetime.combine(day, time(), BEIJING).astimezone(UTC).replace(tzinfo=None)
        end = start + timedelta(days=1)
        paid = db.session.scalars(
            select(SandboxPayment).where(
                SandboxPayment.created_at >= start,
                SandboxPayment.created_at < end,
                SandboxPayment.status.in_(tuple(PAID_STATUSES)),
            )
        ).all()
        lines = [
            StatementLine("payment", p.order_no, p.trade_no, p.amount_fen, _fee(p.amount_fen), _at(p.created_at))
            for p in paid
        ]
        returned = db.session.execute(
            select(SandboxRefund, SandboxPayment.trade_no)
            .join(SandboxPayment, SandboxPayment.order_no == SandboxRefund.order_no)
            .where(SandboxRefund.created_at >= start, SandboxRefund.created_at < end)
        ).all()
        lines += [
            StatementLine(
                "refund",
                r.order_no,
                trade_no,
                r.amount_fen,
                -_fee(r.amount_fen),
                _at(r.created_at),
                refund_no=r.refund_no,
            )
            for r, trade_no in returned
        ]
        return f"sandbox_{day:%Y%m%d}.csv.zip", alipay_bill.write_statement(lines, day)

    def parse_statement(self, raw: bytes) -> list[StatementLine]:
        return alipay_bill.parse_statement(raw)

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
