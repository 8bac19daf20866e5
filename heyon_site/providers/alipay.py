"""Alipay (open platform, RSA2 = SHA256withRSA), written on ``cryptography`` and ``requests``.

Checkout makes no API call: ``alipay.trade.wap.pay`` (phones) and ``alipay.trade.page.pay``
(computers) are signed GET links to the gateway. Notifications are form-encoded POSTs signed
with Alipay's key over the fields other than ``sign`` and ``sign_type``, sorted by name, joined
as ``k=v`` with ``&``, empty values left out; they are verified with the configured Alipay public
key and nothing else (no network). ``alipay.trade.query``, ``alipay.trade.close``, the refund
calls and the statement's address are signed POSTs whose JSON answers are verified over the exact
bytes Alipay signed; an answer that does not verify is no answer (ProviderUnavailable).

Refunds (``alipay.trade.refund``, synchronous) are named by our ``out_request_no``, so sending the
same request again never pays twice. What decides a refund's state:

- succeeded: the refund answer's ``fund_change`` Y, or the refund query's ``refund_status``
  REFUND_SUCCESS (with the amount asked);
- failed: only a signed refusal of the refund request itself (code 40004 with a sub_code in
  ``REFUND_REFUSED``: a retry would be refused the same way), with the sub_code as detail;
- pending: everything else that is an answer. A query that finds no finished refund under our
  number is never taken as "failed" (Alipay's docs: it may be in progress, or the query came too
  soon). ``refund_status`` then sends the same refund request again, as Alipay advises (same
  out_request_no, so never paid twice), and that request's answer decides: Y succeeded, a
  refusal failed, N (accepted, money not moved yet) still pending;
- ACQ.SYSTEM_ERROR, any other code or sub_code, and unsigned or unreadable answers raise
  ProviderUnavailable: nothing is known, and the same request is simply sent again.

The daily statement (bill_type ``trade``) is read and written by ``alipay_bill``.

No Alipay SDK: ``python-alipay-sdk`` stamps requests with the server's local time (Alipay reads
Beijing time) and brings pycryptodomex and pyOpenSSL; the official ``alipay-sdk-python`` signs
with the pure-Python ``rsa`` package; and both install the same ``alipay`` package.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import url_for

from heyon_site.billing.events import EventKind, ProviderEvent
from heyon_site.billing.money import AmountError, parse_amount, yuan
from heyon_site.config import MissingSetting, setting
from heyon_site.providers import alipay_bill, rsa_signature
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

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
#: Alipay reads and writes every timestamp in Beijing time, whatever the server's zone is.
BEIJING = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
CLOSED_STATUSES = frozenset({"TRADE_CLOSED"})
WAITING_STATUSES = frozenset({"WAIT_BUYER_PAY"})
#: Alipay retries an unanswered notification for about 25 hours (4m, 10m, 10m, 1h, 2h, 6h, 15h);
#: older than this it is a replay, not a retry. Ahead of our clock: only small clock drift.
MAX_NOTIFY_AGE = timedelta(hours=48)
MAX_NOTIFY_AHEAD = timedelta(minutes=15)
TIMEOUT = (5, 10)  # seconds to connect, to read
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
BILL_URL_QUERY = "alipay.data.dataservice.bill.downloadurl.query"
#: Sub_codes (with code 40004) by which Alipay refuses a refund request for good: sending it again
#: would be refused again, so the refund has failed and a person decides what next. Alipay's list
#: for alipay.trade.refund, without ACQ.SYSTEM_ERROR ("call again with the same parameters").
#: DISCORDANT_REPEAT_REQUEST: this out_request_no was used before with other parameters.
REFUND_REFUSED = frozenset(
    {
        "ACQ.TRADE_NOT_EXIST",
        "ACQ.TRADE_STATUS_ERROR",
        "ACQ.TRADE_HAS_FINISHED",
        "ACQ.TRADE_NOT_ALLOW_REFUND",
        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
        "ACQ.REASON_TRADE_REFUND_FEE_ERR",
        "ACQ.REFUND_FEE_ERROR",
        "ACQ.SELLER_BALANCE_NOT_ENOUGH",
        "ACQ.REASON_TRADE_BEEN_FREEZEN",
        "ACQ.DISCORDANT_REPEAT_REQUEST",
        "ACQ.INVALID_PARAMETER",
        "ACQ.ONLINE_TRADE_VOUCHER_NOT_ALLOW_REFUND",
        "ACQ.REFUND_CHARGE_ERROR",
    }
)
#: The statement query's "no bill for that day" (not made yet, or nothing happened that day).
BILL_NOT_EXIST = "isp.bill_not_exist"
# A day's statement of this site is kilobytes; a download this large is not one.
MAX_STATEMENT_BYTES = 64 * 1024 * 1024
# RefundResult.detail is kept in a column of 120 characters.
_DETAIL_LENGTH = 120

_ORDER_NO = re.compile(r"\d{1,24}")
_TRADE_NO = re.compile(r"[A-Za-z0-9_-]{1,64}")
# out_biz_no: the refund request's number (the merchant's out_request_no, or one Alipay makes for
# a refund made in its console), printable ASCII of at most 64 characters.
_REFUND_NO = re.compile(r"[!-~]{1,64}")
# Alipay's own form, exactly: "12.34". parse_amount alone would also take "¥12" or "1,234".
_AMOUNT = re.compile(r"\d{1,9}(?:\.\d{1,2})?", re.ASCII)


class WaitingForPayment(NothingToDo):
    """A verified notice that the buyer has not paid yet: nothing to credit and nothing to close.
    The right answer to Alipay is ``success`` (a retry would say the same)."""


def _trade(fields: Mapping[str, Any]) -> tuple[str, str]:
    """Our order number and Alipay's trade number, each of its form."""
    order_no, trade_no = fields.get("out_trade_no"), fields.get("trade_no")
    if not isinstance(order_no, str) or not _ORDER_NO.fullmatch(order_no):
        raise MalformedCallback("out_trade_no missing or not of our form")
    if not isinstance(trade_no, str) or not _TRADE_NO.fullmatch(trade_no):
        raise MalformedCallback("trade_no missing or not of its form")
    return order_no, trade_no


def _fen(fields: Mapping[str, Any], name: str) -> int:
    """An amount field in Alipay's own form, "12.34", in fen."""
    amount = fields.get(name)
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        raise MalformedCallback(f"{name} missing or not of its form")
    try:
        return parse_amount(amount)
    except AmountError as exc:
        raise MalformedCallback(name) from exc


def signing_content(fields: Mapping[str, str]) -> bytes:
    """What Alipay signs: every field but ``sign`` and ``sign_type``, sorted, ``k=v`` joined
    by ``&``, empty values left out; values as they are, not URL-encoded."""
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type") and v != "").encode(
        "utf-8"
    )


def _key_bytes(text: str) -> tuple[bool, bytes]:
    """(is PEM, bytes): Alipay's console hands keys out as bare base64 (DER), so take both."""
    if "-----BEGIN" in text:
        return True, text.encode("ascii")
    return False, base64.b64decode("".join(text.split()), validate=True)


def load_private_key(text: str, name: str) -> rsa.RSAPrivateKey:
    def load() -> object:
        pem, data = _key_bytes(text)
        return (serialization.load_pem_private_key if pem else serialization.load_der_private_key)(data, None)

    return rsa_signature.checked_key(load, rsa.RSAPrivateKey, name, "an RSA private key")


def load_public_key(text: str, name: str) -> rsa.RSAPublicKey:
    def load() -> object:
        pem, data = _key_bytes(text)
        return (serialization.load_pem_public_key if pem else serialization.load_der_public_key)(data)

    return rsa_signature.checked_key(load, rsa.RSAPublicKey, name, "an RSA public key")


def beijing_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def top_level_raw(text: str) -> dict[str, tuple[Any, str]]:
    """Each member of a JSON object with its value's exact text as received.

    Alipay signs the text of ``<method>_response`` as it wrote it; serialising the parsed value
    again would change escapes, spacing or key order and fail to verify a genuine answer.
    """
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")

    def skip(at: int) -> int:
        """The index after the whitespace at ``at`` (``ws`` matches empty text too, so always matches)."""
        return cast(re.Match[str], ws.match(text, at)).end()

    members: dict[str, tuple[Any, str]] = {}
    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not a JSON object")
    i = skip(i + 1)
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            if not isinstance(key, str) or text[i : i + 1] != ":":
                raise ValueError("not a JSON object")
            start = skip(i + 1)
            value, i = decoder.raw_decode(text, start)
            if key in members:
                raise ValueError(f"{key!r} appears twice")
            members[key] = (value, text[start:i])
            i = skip(i)
            if text[i : i + 1] == "}":
                i += 1
                break
            if text[i : i + 1] != ",":
                raise ValueError("not a JSON object")
            i = skip(i + 1)
    if text[skip(i) :]:
        raise ValueError("text after the JSON object")
    return members


class AlipayProvider:
    name = "alipay"
    # Alipay's smallest payment: 0.01 yuan.
    min_fen = 1
    # The customer is told to pay within this time, and Alipay is told the same (time_expire), so
    # the order page, Alipay's cashier and reconciliation's close all end the order together.
    # Thirty minutes is enough to open Alipay, sign in and top up a balance, and short enough that
    # an abandoned order is settled while the customer may still be looking at it.
    pay_timeout = timedelta(minutes=30)

    def __init__(self, config: Mapping[str, Any], clock: Callable[[], datetime] | None = None) -> None:
        self._app_id = setting(config, "HEYON_ALIPAY_APP_ID").strip()
        self._seller_id = setting(config, "HEYON_ALIPAY_SELLER_ID").strip()
        self._private_key = load_private_key(setting(config, "HEYON_ALIPAY_PRIVATE_KEY"), "HEYON_ALIPAY_PRIVATE_KEY")
        self._alipay_key = load_public_key(setting(config, "HEYON_ALIPAY_PUBLIC_KEY"), "HEYON_ALIPAY_PUBLIC_KEY")
        # The usual mix-up: our own public key pasted where Alipay's belongs. Nothing would verify.
        if self._alipay_key.public_numbers() == self._private_key.public_key().public_numbers():
            raise MissingSetting("HEYON_ALIPAY_PUBLIC_KEY is the app's own public key, not Alipay's")
        self._gateway = setting(config, "HEYON_ALIPAY_GATEWAY", required=False).strip() or DEFAULT_GATEWAY
        if not self._gateway.startswith(("https://", "http://")):
            raise MissingSetting("HEYON_ALIPAY_GATEWAY is not an http(s) URL")
        self._notify_url = setting(config, "HEYON_ALIPAY_NOTIFY_URL", required=False).strip()
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ requests we sign

    def _signed(self, method: str, biz: Mapping[str, Any], **extra: str) -> dict[str, str]:
        params = {
            "app_id": self._app_id,
            "method": method,
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": beijing_time(self._clock()),
            "version": "1.0",
            **extra,
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = rsa_signature.sign(self._private_key, signing_content(params))
        return params

    def _pay_link(self, method: str, product_code: str, order: OrderRef) -> str:
        biz = {
            "out_trade_no": order.order_no,
            "total_amount": yuan(order.pay_fen),
            "subject": order.subject,
            "product_code": product_code,
            # timeout_express counts from when the buyer opens the cashier, so a link opened late
            # would stay payable past our close; time_expire (which Alipay prefers when both are
            # given) ends it when the order ends.
            "timeout_express": f"{int(self.pay_timeout.total_seconds()) // 60}m",
            "time_expire": beijing_time(self._clock() + self.pay_timeout),
        }
        if method == "alipay.trade.wap.pay":
            biz["quit_url"] = order.return_url  # "back to the merchant" in the mobile cashier
        notify_url = self._notify_url or url_for("payments.notify", name=self.name, _external=True)
        params = self._signed(method, biz, notify_url=notify_url, return_url=order.return_url)
        return f"{self._gateway}?{urlencode(params)}"

    def checkout(self, order: OrderRef, device: Device) -> Checkout:
        mobile = self._pay_link("alipay.trade.wap.pay", "QUICK_WAP_WAY", order)
        if device == "mobile":
            return Checkout(redirect_url=mobile)
        # A computer gets both: the desktop cashier to pay right there, and the mobile link as a
        # QR code. Scanned by a phone it opens Alipay's mobile cashier for the same out_trade_no,
        # while the order page polls; Alipay accepts one payment per out_trade_no, so paying on
        # both cannot charge twice. No precreate call: it needs another product contract and would
        # put a network round trip in front of every desktop checkout.
        desktop = self._pay_link("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY", order)
        return Checkout(redirect_url=desktop, qr_payload=mobile)

    # ------------------------------------------------------------------ notifications

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=80,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidSignature("not a form-encoded body") from exc
        fields = dict(pairs)
        if len(fields) != len(pairs):
            raise InvalidSignature("a field is repeated")
        # sign_type is outside the signed content: it is checked, never trusted to pick a method.
        if fields.get("sign_type") != "RSA2":
            raise InvalidSignature("sign_type is not RSA2")
        if not rsa_signature.verify(self._alipay_key, signing_content(fields), fields.get("sign", "")):
            raise InvalidSignature("signature does not verify with the Alipay public key")
        # Verified: from Alipay. What follows are the checks Alipay asks merchants to make.
        self._check_fresh(fields.get("notify_time", ""))
        # Authentic, but about another app or merchant (a shared key, or our settings are wrong):
        # kept as "malformed" so "bad_signature" keeps meaning "not from Alipay".
        if fields.get("app_id") != self._app_id:
            raise MalformedCallback("app_id is not ours")
        if fields.get("seller_id") != self._seller_id:
            raise MalformedCallback("seller_id is not ours")
        if fields.get("refund_fee", "") != "" and _fen(fields, "refund_fee") > 0:
            return self._refund(fields)
        return self._event(fields, fields.get("trade_status", ""))

    def _check_fresh(self, notify_time: str) -> None:
        try:
            sent = datetime.strptime(notify_time, TIME_FORMAT).replace(tzinfo=BEIJING)
        except ValueError:
            raise MalformedCallback("notify_time missing or not of its form") from None
        now = self._clock()
        if not now - MAX_NOTIFY_AGE <= sent <= now + MAX_NOTIFY_AHEAD:
            raise InvalidSignature("notify_time outside the accepted window (a replay?)")

    def _event(self, fields: Mapping[str, Any], status: str) -> ProviderEvent:
        kind: EventKind
        if status in PAID_STATUSES:
            kind = "paid"
        elif status in CLOSED_STATUSES:
            kind = "closed"
        elif status in WAITING_STATUSES:
            raise WaitingForPayment(f"trade_status {status}")
        else:
            raise MalformedCallback(f"trade_status {str(status)[:20]!r}")
        order_no, trade_no = _trade(fields)
        return ProviderEvent(
            provider=self.name, order_no=order_no, txn_id=trade_no, kind=kind, amount_fen=_fen(fields, "total_amount")
        )

    def _refund(self, fields: Mapping[str, str]) -> ProviderEvent:
        """Money went back to the buyer. Alipay tells a refund on the payment's notify_url with
        refund_fee (the trade's total refunded so far), gmt_refund and out_biz_no (the refund
        request): a partial refund keeps trade_status TRADE_SUCCESS, a full one closes the trade
        (TRADE_CLOSED, which without refund_fee means "closed unpaid")."""
        status = fields.get("trade_status", "")
        if status not in PAID_STATUSES | CLOSED_STATUSES:
            raise MalformedCallback(f"refund_fee with trade_status {str(status)[:20]!r}")
        order_no, trade_no = _trade(fields)
        refunded_fen = _fen(fields, "refund_fee")
        # Keyed by the refund request, so a retry of this notice is a duplicate and the next
        # refund of the same trade is not. Without out_biz_no, the running total names the step:
        # it grows with every refund.
        # out_biz_no is our out_request_no for a refund this site asked for, so the event names
        # the refund request it settles; Alipay's own number for a console refund names none of ours.
        request_no = fields.get("out_biz_no", "")
        refund_no = request_no if _REFUND_NO.fullmatch(request_no) else None
        return ProviderEvent(
            provider=self.name,
            order_no=order_no,
            txn_id=alipay_bill.refund_id(trade_no, refund_no or f"total-{refunded_fen}"),
            kind="refunded",
            amount_fen=refunded_fen,
            refund_no=refund_no,
        )

    def acknowledge(self) -> Acknowledgement:
        return Acknowledgement("success")

    def reject(self) -> Acknowledgement:
        # Anything but "success" makes Alipay retry; the 400 is for our own logs.
        return Acknowledgement("fail", status=400)

    # ------------------------------------------------------------------ the open API

    def _call(self, method: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        """POST a signed request; the verified ``<method>_response`` object, whatever its code."""
        params = self._signed(method, biz)
        try:
            answer = requests.post(self._gateway, data=params, timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"{method}: {type(exc).__name__}") from exc
        if answer.status_code != 200:
            raise ProviderUnavailable(f"{method}: HTTP {answer.status_code}")
        try:
            members = top_level_raw(answer.content.decode("utf-8"))
            value, raw = members[method.replace(".", "_") + "_response"]
            signature = members["sign"][0]
        except (UnicodeDecodeError, ValueError, KeyError) as exc:
            raise ProviderUnavailable(f"{method}: not a signed answer") from exc
        if (
            not isinstance(value, dict)
            or not isinstance(signature, str)
            or not rsa_signature.verify(self._alipay_key, raw.encode("utf-8"), signature)
        ):
            raise ProviderUnavailable(f"{method}: the answer's signature does not verify")
        return value

    @staticmethod
    def _no_trade(answer: Mapping[str, Any]) -> bool:
        return answer.get("code") == "40004" and answer.get("sub_code") == "ACQ.TRADE_NOT_EXIST"

    @staticmethod
    def _failure(method: str, answer: Mapping[str, Any]) -> ProviderUnavailable:
        return ProviderUnavailable(f"{method}: {str(answer.get('code'))[:10]} {str(answer.get('sub_code'))[:60]}")

    def query(self, order_no: str) -> ProviderEvent | None:
        answer = self._call("alipay.trade.query", {"out_trade_no": order_no})
        if self._no_trade(answer):
            return None  # the buyer has not opened the cashier: no trade yet
        if answer.get("code") != "10000":
            raise self._failure("alipay.trade.query", answer)
        if answer.get("out_trade_no") != order_no:
            raise ProviderUnavailable("alipay.trade.query: the answer is about another order")
        status = answer.get("trade_status", "")
        if status in WAITING_STATUSES:
            return None
        try:
            return self._event(answer, status)
        except MalformedCallback as exc:
            raise ProviderUnavailable(f"alipay.trade.query: {exc}") from exc

    def close(self, order_no: str) -> None:
        answer = self._call("alipay.trade.close", {"out_trade_no": order_no})
        # No trade: the buyer never opened the cashier, and time_expire keeps the link from being
        # paid later. TRADE_STATUS_ERROR: already paid or closed, nothing left to close; the
        # query that follows a close says which.
        if (
            answer.get("code") == "10000"
            or self._no_trade(answer)
            or (answer.get("code") == "40004" and answer.get("sub_code") == "ACQ.TRADE_STATUS_ERROR")
        ):
            return
        raise self._failure("alipay.trade.close", answer)

    # ------------------------------------------------------------------ refunds

    def refund(self, request: RefundRequest) -> RefundResult:
        sent = self._send_refund(request)
        if sent is not None:
            return sent
        # fund_change N: no money moved by this request. Alipay's docs: an earlier identical
        # request (an answer we lost) already made the refund, or it is still being made; the
        # refund query says which.
        return self._find_refund(request) or _pending()

    def refund_status(self, request: RefundRequest) -> RefundResult:
        found = self._find_refund(request)
        if found is not None:
            return found
        # No finished refund under this number: not made yet, still being made, or the request
        # never arrived. Never assumed failed: Alipay advises sending the same request again (the
        # same out_request_no is never paid twice), and its answer to that decides.
        return self._send_refund(request) or _pending()

    def _send_refund(self, request: RefundRequest) -> RefundResult | None:
        """``alipay.trade.refund``: succeeded (fund_change Y), failed (refused for good), or None:
        accepted without moving money by this request (fund_change N)."""
        _check_refund(request)
        biz = {
            "out_trade_no": request.order_no,
            "trade_no": request.txn_id,
            "refund_amount": yuan(request.amount_fen),
            "out_request_no": request.refund_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:256]  # Alipay's limit
        answer = self._call(REFUND, biz)
        code, sub_code = answer.get("code"), answer.get("sub_code")
        if code == "40004" and sub_code in REFUND_REFUSED:
            return RefundResult("failed", detail=_detail(str(sub_code), answer.get("sub_msg")))
        if code != "10000":
            raise self._failure(REFUND, answer)
        self._check_same_trade(REFUND, answer, request)
        if answer.get("fund_change") != "Y":
            return None
        return RefundResult(
            "succeeded",
            provider_refund_id=alipay_bill.refund_id(request.txn_id, request.refund_no),
            detail=_detail("fund_change Y", answer.get("gmt_refund_pay")),
        )

    def _find_refund(self, request: RefundRequest) -> RefundResult | None:
        """``alipay.trade.fastpay.refund.query``: the refund's result when Alipay has a finished
        refund under our number, None when it has none (yet)."""
        _check_refund(request)
        answer = self._call(
            REFUND_QUERY,
            {
                "out_trade_no": request.order_no,
                "trade_no": request.txn_id,
                "out_request_no": request.refund_no,
                "query_options": ["gmt_refund_pay"],
            },
        )
        if self._no_trade(answer):
            return None  # so no refund of it either; the refund request says what Alipay thinks
        if answer.get("code") != "10000":
            raise self._failure(REFUND_QUERY, answer)
        self._check_same_trade(REFUND_QUERY, answer, request)
        # Code 10000 only says the query worked; without REFUND_SUCCESS there is no finished refund.
        if answer.get("refund_status") != "REFUND_SUCCESS":
            return None
        if answer.get("out_request_no", request.refund_no) != request.refund_no:
            raise ProviderUnavailable(f"{REFUND_QUERY}: the answer is about another refund")
        try:
            refunded_fen = _fen(answer, "refund_amount")
        except MalformedCallback as exc:
            raise ProviderUnavailable(f"{REFUND_QUERY}: {exc}") from exc
        if refunded_fen != request.amount_fen:
            # Money went back under our number, but not the amount asked: not this request's
            # refund as we know it. A person looks (the detail says what Alipay paid).
            return RefundResult(
                "failed",
                provider_refund_id=alipay_bill.refund_id(request.txn_id, request.refund_no),
                detail=f"REFUND_SUCCESS of {yuan(refunded_fen)}, not the {yuan(request.amount_fen)} asked",
            )
        return RefundResult(
            "succeeded",
            provider_refund_id=alipay_bill.refund_id(request.txn_id, request.refund_no),
            detail=_detail("REFUND_SUCCESS", answer.get("gmt_refund_pay")),
        )

    @staticmethod
    def _check_same_trade(method: str, answer: Mapping[str, Any], request: RefundRequest) -> None:
        """A verified answer is Alipay's, but must still be about the trade we asked about."""
        if (
            answer.get("out_trade_no", request.order_no) != request.order_no
            or answer.get("trade_no", request.txn_id) != request.txn_id
        ):
            raise ProviderUnavailable(f"{method}: the answer is about another trade")

    # ------------------------------------------------------------------ the daily statement

    def fetch_statement(self, day: date) -> tuple[str, bytes]:
        if day >= self._clock().astimezone(BEIJING).date():
            raise StatementNotReady(f"the statement of {day} is made after that day ends, Beijing time")
        answer = self._call(BILL_URL_QUERY, {"bill_type": "trade", "bill_date": day.isoformat()})
        if answer.get("code") == "40004" and answer.get("sub_code") == BILL_NOT_EXIST:
            raise StatementNotReady(f"Alipay has no statement of {day} (yet): {BILL_NOT_EXIST}")
        if answer.get("code") != "10000":
            raise self._failure(BILL_URL_QUERY, answer)
        url = answer.get("bill_download_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ProviderUnavailable(f"{BILL_URL_QUERY}: no bill_download_url")
        return f"alipay_trade_{day:%Y%m%d}.csv.zip", self._download(url)

    @staticmethod
    def _download(url: str) -> bytes:
        """The statement file behind a signed answer's link (valid for 30 seconds, a token in
        it: the link is never logged or put in a message)."""
        try:
            with requests.get(url, timeout=TIMEOUT, stream=True) as answer:
                if answer.status_code != 200:
                    raise ProviderUnavailable(f"statement download: HTTP {answer.status_code}")
                data = bytearray()
                for chunk in answer.iter_content(chunk_size=64 * 1024):
                    data += chunk
                    if len(data) > MAX_STATEMENT_BYTES:
                        raise ProviderUnavailable("statement download: larger than any statement")
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"statement download: {type(exc).__name__}") from None
        return bytes(data)

    def parse_statement(self, raw: bytes) -> list[StatementLine]:
        return alipay_bill.parse_statement(raw)


def _pending() -> RefundResult:
    return RefundResult("pending", detail="fund_change N: no finished refund under this number yet")


def _detail(words: str, more: object) -> str:
    """Alipay's words for a state, with its time or message when it gave one, cut to fit."""
    text = f"{words} {more}" if isinstance(more, str) and more else words
    return text[:_DETAIL_LENGTH]


def _check_refund(request: RefundRequest) -> None:
    """What this site sends is of Alipay's form; anything else is a bug here, not an answer."""
    if not _ORDER_NO.fullmatch(request.order_no) or not _TRADE_NO.fullmatch(request.txn_id):
        raise ValueError("a refund of an order or trade number not of its form")
    if not _REFUND_NO.fullmatch(request.refund_no):
        raise ValueError("refund_no is not Alipay's out_request_no form (printable ASCII, at most 64)")
    if not 0 < request.amount_fen <= request.total_fen:
        raise ValueError("a refund amount must be positive and at most the payment")
