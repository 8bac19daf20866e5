"""WeChat Pay API v3 (direct merchant), written on ``cryptography`` and ``requests``.

Checkout calls the API: a computer gets a Native order (``code_url``, shown as a QR code for the
phone's WeChat to scan), a phone browser an H5 order (``h5_url``, WeChat's mobile page), and
WeChat's own browser a JSAPI order for the payer's openid (``prepay_id``, whose pay sheet the page
opens with ``getBrandWCPayRequest``; the parameters are signed here with the merchant key). A
JSAPI order is made under the official account's appid (``HEYON_WECHAT_MP_APPID``, the one the
openid belongs to), so notifications and queries may carry either appid.
``query`` and ``close`` ask by our order number (``out_trade_no``); ``refund`` and
``refund_status`` by our refund number (``out_refund_no``); the daily trade bill is fetched and
read by ``fetch_statement`` and ``parse_statement`` (the reading is in ``wechat_bill``).

Every request we send is signed with the merchant private key (``WECHATPAY2-SHA256-RSA2048``
over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``). Every successful answer, and every
notification, must carry WeChat's signature (``Wechatpay-Signature``, RSA-SHA256 over
``TIMESTAMP\\nNONCE\\nBODY\\n``) made with the key whose id is configured as the platform serial;
the serial and the timestamp (at most five minutes off) are checked first, then the signature,
and only then is the body read. A notification's ``resource`` is then decrypted with the APIv3
key (AEAD_AES_256_GCM). Nothing on the notification path touches the network.

No SDK: ``wechatpayv3`` downloads platform certificates when it meets an unknown serial (a
network call driven by whoever sends us a header) and does not check the timestamp; the checks
it leaves out are the ones that matter, and what it adds is a thin layer over the same
``cryptography`` calls.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import requests
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import url_for

from heyon_site.billing.events import EventKind, ProviderEvent
from heyon_site.config import MissingSetting, setting
from heyon_site.providers import rsa_signature, wechat_bill
from heyon_site.providers.base import (
    Acknowledgement,
    Checkout,
    Device,
    InvalidSignature,
    MalformedCallback,
    MalformedStatement,
    OrderRef,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    RefundState,
    StatementLine,
    StatementNotReady,
)

DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
#: WeChat Pay writes times in Beijing time with its offset (RFC 3339); we send them the same way.
BEIJING = ZoneInfo("Asia/Shanghai")
#: WeChat's own rule for signed answers and notifications: a timestamp further off is a replay.
MAX_SKEW = timedelta(minutes=5)
TIMEOUT = (5, 10)  # seconds to connect, to read

PAID_STATES = frozenset({"SUCCESS"})
#: The order can no longer be paid: CLOSED (closed by us or past time_expire), REVOKED.
CLOSED_STATES = frozenset({"CLOSED", "REVOKED"})
#: Not paid yet, or this attempt failed while the order stays payable until it is closed.
WAITING_STATES = frozenset({"NOTPAY", "USERPAYING", "PAYERROR"})
#: Close answers that mean "nothing left to close"; the query after a close tells which it was.
SETTLED_CLOSE_CODES = frozenset({"ORDER_CLOSED", "ORDERPAID", "ORDER_PAID", "ORDER_NOT_EXIST", "ORDERNOTEXIST"})
#: Refund notifications (event_type REFUND.<status>, resource original_type "refund"): SUCCESS, the
#: money is back with the payer; ABNORMAL, it was sent back and bounced (a closed bank card), and
#: the merchant must send it again by hand at WeChat Pay: it has left this order either way.
RETURNED_REFUND_STATES = frozenset({"SUCCESS", "ABNORMAL"})
#: CLOSED: the refund was closed without paying anything back (WeChat closes one that waited
#: seven days for the merchant's balance; it is asked again under a new number, by a person).
UNPAID_REFUND_STATES = frozenset({"CLOSED"})

REFUNDS_PATH = "/v3/refund/domestic/refunds"
#: A refund's ``status`` in the answers to 申请退款 and 查询单笔退款, in our terms. ABNORMAL is
#: "succeeded", as in notifications: the money has left this order (it bounced off the payer's
#: closed card and waits at WeChat to be sent on by hand); the detail keeps the word for staff.
REFUND_STATES: dict[str, RefundState] = {
    "SUCCESS": "succeeded",
    "ABNORMAL": "succeeded",
    "PROCESSING": "pending",
    "CLOSED": "failed",
}
#: Answers to 申请退款 that refuse this request and will not change by sending it again as it
#: is (WeChat's error table: "此状态代表退款申请失败"): the merchant's balance is short
#: (NOT_ENOUGH), the payer's account is closed (USER_ACCOUNT_ABNORMAL), the trade cannot be
#: refunded so (INVALID_REQUEST: already refunded in full, more than is left, past a year),
#: WeChat knows no such paid trade (RESOURCE_NOT_EXISTS), the request is not of its form
#: (PARAM_ERROR) or refunds are not allowed to this merchant (NO_AUTH). Any other answer
#: (SYSTEM_ERROR, FREQUENCY_LIMITED, SIGN_ERROR, a network error...) says nothing of the refund:
#: ProviderUnavailable, and the same out_refund_no is sent again, which WeChat refunds once.
REFUSED_REFUND_CODES = frozenset(
    {"NOT_ENOUGH", "USER_ACCOUNT_ABNORMAL", "INVALID_REQUEST", "RESOURCE_NOT_EXISTS", "PARAM_ERROR", "NO_AUTH"}
)
#: 申请交易账单's answers for a day without a bill: nothing happened that day, or not made yet
#: (WeChat makes the bill of a day the next morning, Beijing time).
NO_BILL_CODES = frozenset({"NO_STATEMENT_EXIST", "STATEMENT_CREATING"})

_ORDER_NO = re.compile(r"\d{1,24}")
_TXN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(r"\d{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REFUND_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREPAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: out_refund_no as WeChat admits it: digits, letters and _-|*@, at most 64 (in notifications).
_REFUND_NO = re.compile(r"[A-Za-z0-9_|*@-]{1,64}")
#: The part of it we send: it goes into a URL path as it is, and |*@ would be escaped there, which
#: changes what is signed. Ours are "RF" and digits.
_SENT_REFUND_NO = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA1 = re.compile(r"[0-9A-Fa-f]{40}")


class WaitingForPayment(MalformedCallback):
    """A verified notice about an order not paid (yet): nothing to credit and nothing to close.
    WeChat only notifies successful payments, so this is refused and left to reconciliation."""


def load_private_key(text: str, name: str) -> rsa.RSAPrivateKey:
    return rsa_signature.checked_key(
        lambda: serialization.load_pem_private_key(text.encode("ascii"), None),
        rsa.RSAPrivateKey,
        name,
        "an RSA private key",
    )


def load_platform_key(text: str, name: str, serial: str) -> rsa.RSAPublicKey:
    """WeChat Pay's public key (PEM, "public key" mode) or a platform certificate (PEM), whose
    serial must then be the configured one."""

    def load() -> object:
        if "CERTIFICATE" not in text:
            return serialization.load_pem_public_key(text.encode("ascii"))
        cert = x509.load_pem_x509_certificate(text.encode("ascii"))
        if f"{cert.serial_number:X}" != serial.upper().lstrip("0"):
            raise MissingSetting(f"{name} is a certificate whose serial is not HEYON_WECHAT_PLATFORM_SERIAL")
        return cert.public_key()

    return rsa_signature.checked_key(load, rsa.RSAPublicKey, name, "an RSA public key or certificate")


def rfc3339(moment: datetime) -> str:
    """``2026-05-20T13:29:35+08:00``, the form WeChat Pay reads."""
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by name, whatever its case (Werkzeug and requests ignore case; a dict does not)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value if isinstance(value, str) else ""


class WechatPayProvider:
    name = "wechat"
    # WeChat Pay's smallest payment: 1 fen.
    min_fen = 1
    # Told to WeChat as time_expire, so its page, the order page and reconciliation's close end
    # the order together; long enough to open WeChat and top up Change, short enough that an
    # abandoned order is settled while the customer may still be looking at it.
    pay_timeout = timedelta(minutes=30)

    def __init__(self, config: Mapping[str, Any], clock: Callable[[], datetime] | None = None) -> None:
        self._appid = setting(config, "HEYON_WECHAT_APPID").strip()
        self._mchid = setting(config, "HEYON_WECHAT_MCHID").strip()
        self._merchant_serial = setting(config, "HEYON_WECHAT_MERCHANT_SERIAL").strip()
        if not _SERIAL.fullmatch(self._merchant_serial):
            raise MissingSetting("HEYON_WECHAT_MERCHANT_SERIAL is not a certificate serial")
        self._private_key = load_private_key(setting(config, "HEYON_WECHAT_PRIVATE_KEY"), "HEYON_WECHAT_PRIVATE_KEY")
        api_v3_key = setting(config, "HEYON_WECHAT_API_V3_KEY").encode("utf-8")
        if len(api_v3_key) != 32:
            raise MissingSetting("HEYON_WECHAT_API_V3_KEY is not 32 bytes long")
        self._aead = AESGCM(api_v3_key)
        self._platform_serial = setting(config, "HEYON_WECHAT_PLATFORM_SERIAL").strip()
        if not _SERIAL.fullmatch(self._platform_serial):
            raise MissingSetting("HEYON_WECHAT_PLATFORM_SERIAL is not a key id or certificate serial")
        self._platform_key = load_platform_key(
            setting(config, "HEYON_WECHAT_PLATFORM_PUBLIC_KEY"),
            "HEYON_WECHAT_PLATFORM_PUBLIC_KEY",
            self._platform_serial,
        )
        # The usual mix-up: our own public key pasted where WeChat's belongs. Nothing would verify.
        if self._platform_key.public_numbers() == self._private_key.public_key().public_numbers():
            raise MissingSetting("HEYON_WECHAT_PLATFORM_PUBLIC_KEY is the merchant's own public key, not WeChat Pay's")
        self._api_base = (setting(config, "HEYON_WECHAT_API_BASE", required=False).strip() or DEFAULT_API_BASE).rstrip(
            "/"
        )
        if not self._api_base.startswith(("https://", "http://")):
            raise MissingSetting("HEYON_WECHAT_API_BASE is not an http(s) URL")
        self._notify_url = setting(config, "HEYON_WECHAT_NOTIFY_URL", required=False).strip()
        # The official account (or mini program) bound to the merchant, for JSAPI orders; may be
        # the same appid as HEYON_WECHAT_APPID.
        self.mp_appid = setting(config, "HEYON_WECHAT_MP_APPID", required=False).strip()
        self._appids = frozenset({self._appid, self.mp_appid} - {""})
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ WeChat's signatures

    def authorization(self, method: str, url: str, body: bytes) -> str:
        """The Authorization header for a request to ``url`` (its path and query are signed)."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        timestamp, nonce = str(int(self._clock().timestamp())), secrets.token_hex(16).upper()
        message = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = rsa_signature.sign(self._private_key, message)
        return (
            f'{AUTH_SCHEME} mchid="{self._mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{self._merchant_serial}"'
        )

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise InvalidSignature unless ``body`` is signed by WeChat Pay's configured key, now.

        Serial and time come first and are plain comparisons: an unknown serial is refused, never
        looked up, so a forged header cannot make us fetch anything."""
        serial = _header(headers, "Wechatpay-Serial")
        if serial != self._platform_serial:
            raise InvalidSignature("Wechatpay-Serial is missing or not the configured platform key's")
        kind = _header(headers, "Wechatpay-Signature-Type")
        if kind and kind != AUTH_SCHEME:
            raise InvalidSignature("Wechatpay-Signature-Type is not " + AUTH_SCHEME)
        timestamp, nonce = _header(headers, "Wechatpay-Timestamp"), _header(headers, "Wechatpay-Nonce")
        if not _TIMESTAMP.fullmatch(timestamp) or not _NONCE.fullmatch(nonce):
            raise InvalidSignature("Wechatpay-Timestamp or Wechatpay-Nonce missing or not of its form")
        if abs(self._clock().timestamp() - int(timestamp)) > MAX_SKEW.total_seconds():
            raise InvalidSignature("Wechatpay-Timestamp more than 5 minutes off (a replay?)")
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        if not rsa_signature.verify(self._platform_key, message, _header(headers, "Wechatpay-Signature")):
            raise InvalidSignature("signature does not verify with the platform key")

    # ------------------------------------------------------------------ the API

    def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> requests.Response:
        url = self._api_base + path
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Accept": "application/json",
            "Authorization": self.authorization(method, url, body),
            # Tells WeChat which of its keys we verify with, so it signs the answer with that one.
            "Wechatpay-Serial": self._platform_serial,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = requests.request(
                method, url, data=body or None, headers=headers, timeout=TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if 200 <= answer.status_code < 300:
            self._verified(answer, f"{method} {path}")
        return answer

    def _verified(self, answer: requests.Response, what: str) -> None:
        try:
            self.verify(answer.headers, answer.content)
        except InvalidSignature as exc:
            raise ProviderUnavailable(f"{what}: {exc}") from exc

    @staticmethod
    def _json(answer: requests.Response, what: str) -> dict[str, Any]:
        try:
            value = json.loads(answer.content)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProviderUnavailable(f"{what}: not JSON") from exc
        if not isinstance(value, dict):
            raise ProviderUnavailable(f"{what}: not a JSON object")
        return value

    def _error_code(self, answer: requests.Response, what: str) -> str:
        """The ``code`` of an error answer. WeChat's own SDKs verify only successful answers, and
        error answers may come unsigned; a signature that is there must still verify."""
        if _header(answer.headers, "Wechatpay-Signature"):
            self._verified(answer, what)
        try:
            code = json.loads(answer.content).get("code")
        except (UnicodeDecodeError, ValueError, AttributeError):
            code = None
        return code if isinstance(code, str) else ""

    def _failure(self, answer: requests.Response, what: str) -> ProviderUnavailable:
        try:
            detail = json.loads(answer.content)
            text = f"{str(detail.get('code'))[:40]} {str(detail.get('message'))[:80]}"
        except (UnicodeDecodeError, ValueError, AttributeError):
            text = "no error JSON"
        return ProviderUnavailable(f"{what}: HTTP {answer.status_code} {text}")

    # ------------------------------------------------------------------ checkout

    def checkout(self, order: OrderRef, device: Device) -> Checkout:
        payload: dict[str, Any] = {
            "appid": self.mp_appid if order.payer_openid else self._appid,
            "mchid": self._mchid,
            # WeChat takes at most 127 bytes of UTF-8; a cut character is dropped, not garbled.
            "description": order.subject.encode()[:127].decode("utf-8", "ignore"),
            "out_trade_no": order.order_no,
            "time_expire": rfc3339(self._clock() + self.pay_timeout),
            "notify_url": self._notify_url or url_for("payments.notify", name=self.name, _external=True),
            "amount": {"total": order.pay_fen, "currency": "CNY"},
        }
        if order.payer_openid:
            return self._jsapi(payload, order.payer_openid)
        if device == "desktop":
            what = "native order"
            answer = self._call("POST", "/v3/pay/transactions/native", payload)
            code_url = self._json(answer, what).get("code_url") if answer.status_code == 200 else None
            if not isinstance(code_url, str) or not code_url.startswith("weixin://"):
                raise self._failure(answer, what)
            return Checkout(qr_payload=code_url)
        what = "h5 order"
        payload["scene_info"] = {"payer_client_ip": order.payer_ip or "127.0.0.1", "h5_info": {"type": "Wap"}}
        answer = self._call("POST", "/v3/pay/transactions/h5", payload)
        h5_url = self._json(answer, what).get("h5_url") if answer.status_code == 200 else None
        if not isinstance(h5_url, str) or not h5_url.startswith("https://"):
            raise self._failure(answer, what)
        # WeChat's documented way back: its page sends the browser to redirect_url when done.
        joiner = "&" if "?" in h5_url else "?"
        return Checkout(redirect_url=f"{h5_url}{joiner}redirect_url={quote(order.return_url, safe='')}")

    def _jsapi(self, payload: dict[str, Any], openid: str) -> Checkout:
        what = "jsapi order"
        if not self.mp_appid:
            raise ProviderUnavailable(f"{what}: HEYON_WECHAT_MP_APPID is not set")
        payload["payer"] = {"openid": openid}
        answer = self._call("POST", "/v3/pay/transactions/jsapi", payload)
        prepay_id = self._json(answer, what).get("prepay_id") if answer.status_code == 200 else None
        if not isinstance(prepay_id, str) or not _PREPAY_ID.fullmatch(prepay_id):
            raise self._failure(answer, what)
        return Checkout(jsapi=self.pay_sheet(prepay_id))

    def pay_sheet(self, prepay_id: str) -> dict[str, str]:
        """``getBrandWCPayRequest``'s parameters: paySign is RSA-SHA256 with the merchant key over
        ``appId\ntimeStamp\nnonceStr\npackage\n`` (WeChat Pay's JSAPI "调起支付" rule)."""
        sheet = {
            "appId": self.mp_appid,
            "timeStamp": str(int(self._clock().timestamp())),
            "nonceStr": secrets.token_hex(16),
            "package": f"prepay_id={prepay_id}",
            "signType": "RSA",
        }
        message = "".join(f"{sheet[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")).encode()
        sheet["paySign"] = rsa_signature.sign(self._private_key, message)
        return sheet

    # ------------------------------------------------------------------ notifications

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        self.verify(headers, body)
        # Verified: WeChat Pay wrote this body. What follows reads it.
        try:
            notice = json.loads(body)
            resource = notice["resource"]
            if not isinstance(notice, dict) or not isinstance(resource, dict):
                raise TypeError
            event_type = notice.get("event_type")
            algorithm, ciphertext, nonce = (resource.get(k) for k in ("algorithm", "ciphertext", "nonce"))
            associated = resource.get("associated_data") or ""
            if not all(isinstance(v, str) for v in (event_type, algorithm, ciphertext, nonce, associated)):
                raise TypeError
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise MalformedCallback("not a notification with a resource") from None
        refund = str(event_type).startswith("REFUND.")
        if not refund and not str(event_type).startswith("TRANSACTION."):
            raise MalformedCallback(f"event_type {str(event_type)[:30]!r} is not about a payment or a refund")
        if algorithm != "AEAD_AES_256_GCM":
            raise MalformedCallback("resource is not AEAD_AES_256_GCM")
        try:
            # nonce and associated_data are plain text; only the ciphertext (with the 16-byte tag
            # at its end) is base64.
            # All three were checked to be str above (the check is one mypy cannot follow).
            nonce_text, ciphertext_text = cast(str, nonce), cast(str, ciphertext)
            plain = self._aead.decrypt(
                nonce_text.encode(), base64.b64decode(ciphertext_text, validate=True), associated.encode()
            )
            transaction = json.loads(plain)
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            # Signed by WeChat, so not a forgery: our APIv3 key is not the one WeChat holds.
            raise MalformedCallback("resource does not decrypt with HEYON_WECHAT_API_V3_KEY") from None
        if not isinstance(transaction, dict):
            raise MalformedCallback("resource is not a transaction")
        if refund:
            return self._refund(transaction, str(event_type))
        # Authentic, but about another app or merchant (a shared key, or our settings are wrong):
        # "malformed", so that "bad_signature" keeps meaning "not from WeChat Pay".
        if transaction.get("appid") not in self._appids:
            raise MalformedCallback("appid is not ours")
        if transaction.get("mchid") != self._mchid:
            raise MalformedCallback("mchid is not ours")
        return self._event(transaction)

    def _event(self, transaction: Mapping[str, Any]) -> ProviderEvent:
        state = transaction.get("trade_state")
        kind: EventKind
        if state in PAID_STATES:
            kind = "paid"
        elif state in CLOSED_STATES:
            kind = "closed"
        elif state in WAITING_STATES:
            raise WaitingForPayment(f"trade_state {state}")
        else:  # REFUND, or something new: paid once, but nothing to credit blindly
            raise MalformedCallback(f"trade_state {str(state)[:20]!r}")
        order_no, txn_id = transaction.get("out_trade_no"), transaction.get("transaction_id")
        if not isinstance(order_no, str) or not _ORDER_NO.fullmatch(order_no):
            raise MalformedCallback("out_trade_no missing or not of our form")
        if kind == "closed" and txn_id is None:
            txn_id = f"closed-{order_no}"  # never paid, so WeChat gave it no transaction_id
        if not isinstance(txn_id, str) or not _TXN_ID.fullmatch(txn_id):
            raise MalformedCallback("transaction_id missing or not of its form")
        # amount.total is the order's total in fen, what we asked for; payer_total is less when a
        # WeChat coupon paid part. We offer no coupons, and the order is for the total.
        amount = transaction.get("amount")
        if not isinstance(amount, dict):
            raise MalformedCallback("amount missing")
        total = amount.get("total")
        if type(total) is not int or not 0 <= total < 10**12:
            raise MalformedCallback("amount.total missing or not a whole number of fen")
        if amount.get("currency", "CNY") != "CNY":
            raise MalformedCallback("amount.currency is not CNY")
        return ProviderEvent(provider=self.name, order_no=order_no, txn_id=txn_id, kind=kind, amount_fen=total)

    def _refund(self, refund: Mapping[str, Any], event_type: str) -> ProviderEvent:
        """A refund notification's decrypted resource: mchid, out_trade_no, transaction_id,
        out_refund_no, refund_id, refund_status, amount {total, refund, payer_total, payer_refund}
        (a refund carries no appid). SUCCESS and ABNORMAL are "refunded", CLOSED "refund_failed";
        each names our refund request by its out_refund_no (one made in WeChat's console carries
        a number WeChat made, which matches no request of ours)."""
        if refund.get("mchid") != self._mchid:
            raise MalformedCallback("mchid is not ours")
        state = refund.get("refund_status")
        if event_type != f"REFUND.{state}":
            raise MalformedCallback(f"{event_type[:30]} with refund_status {str(state)[:20]!r}")
        order_no, refund_id = refund.get("out_trade_no"), refund.get("refund_id")
        if not isinstance(order_no, str) or not _ORDER_NO.fullmatch(order_no):
            raise MalformedCallback("out_trade_no missing or not of our form")
        if not isinstance(refund_id, str) or not _REFUND_ID.fullmatch(refund_id):
            raise MalformedCallback("refund_id missing or not of its form")
        refund_no = refund.get("out_refund_no")
        if refund_no is not None and (not isinstance(refund_no, str) or not _REFUND_NO.fullmatch(refund_no)):
            raise MalformedCallback("out_refund_no not of its form")
        kind: EventKind
        if state in RETURNED_REFUND_STATES:
            kind = "refunded"
        elif state in UNPAID_REFUND_STATES:
            kind = "refund_failed"
        else:
            raise MalformedCallback(f"refund_status {str(state)[:20]!r}")
        amount = refund.get("amount")
        returned = amount.get("refund") if isinstance(amount, dict) else None
        if type(returned) is not int or not 0 < returned < 10**12:
            raise MalformedCallback("amount.refund missing or not a whole number of fen")
        # One event per refund and state: a resent notice is a duplicate, and a bounced refund
        # that WeChat later pays out (ABNORMAL, then SUCCESS) is on record twice, as it happened.
        # CLOSED: amount.refund is what was asked for and never paid back.
        return ProviderEvent(
            provider=self.name,
            order_no=order_no,
            txn_id=f"{refund_id}:{state}",
            kind=kind,
            amount_fen=returned,
            refund_no=refund_no,
        )

    def acknowledge(self) -> Acknowledgement:
        # WeChat takes any 2xx as received; 204 with no body is its documented answer.
        return Acknowledgement("", status=204, content_type="application/json")

    def reject(self) -> Acknowledgement:
        # Any 4xx or 5xx makes WeChat send again later (over about a day); the body is its format.
        return Acknowledgement('{"code":"FAIL","message":"refused"}', status=400, content_type="application/json")

    # ------------------------------------------------------------------ query and close

    @staticmethod
    def _order_path(order_no: str) -> str:
        if not _ORDER_NO.fullmatch(order_no):
            raise ProviderUnavailable("not an order number of ours")
        return f"/v3/pay/transactions/out-trade-no/{order_no}"

    def query(self, order_no: str) -> ProviderEvent | None:
        what = "query"
        answer = self._call("GET", f"{self._order_path(order_no)}?mchid={quote(self._mchid, safe='')}")
        if answer.status_code == 404 and self._error_code(answer, what) == "ORDER_NOT_EXIST":
            return None  # never created there (checkout failed): nothing can have been paid
        if answer.status_code != 200:
            raise self._failure(answer, what)
        transaction = self._json(answer, what)
        if transaction.get("appid") not in self._appids or (
            transaction.get("mchid"),
            transaction.get("out_trade_no"),
        ) != (self._mchid, order_no):
            raise ProviderUnavailable(f"{what}: the answer is about another order or merchant")
        try:
            return self._event(transaction)
        except WaitingForPayment:
            return None
        except MalformedCallback as exc:
            # REFUND on an order we never credited, or a field out of form: a person decides.
            raise ProviderUnavailable(f"{what}: {exc}") from exc

    def close(self, order_no: str) -> None:
        what = "close"
        answer = self._call("POST", f"{self._order_path(order_no)}/close", {"mchid": self._mchid})
        if answer.status_code == 204:
            return
        # Already closed, already paid, or never created: nothing to close, and the query that
        # follows a close says which.
        if 400 <= answer.status_code < 500 and self._error_code(answer, what) in SETTLED_CLOSE_CODES:
            return
        raise self._failure(answer, what)

    # ------------------------------------------------------------------ refunds

    def refund(self, request: RefundRequest) -> RefundResult:
        """申请退款 (``POST /v3/refund/domestic/refunds``). A refusal (REFUSED_REFUND_CODES) is
        "failed" only once WeChat also says it holds no refund under this number: a request sent
        again after its first answer was lost is then never read as "not refunded"."""
        what = "refund"
        answer = self._call("POST", REFUNDS_PATH, self._refund_payload(request))
        if answer.status_code == 200:
            return self._refund_result(answer, request, what)
        code = self._error_code(answer, what) if 400 <= answer.status_code < 500 else ""
        if code not in REFUSED_REFUND_CODES:
            raise self._failure(answer, what)
        held = self._held_refund(request)
        return held if held is not None else RefundResult("failed", detail=code)

    def refund_status(self, request: RefundRequest) -> RefundResult:
        """查询单笔退款 (``GET /v3/refund/domestic/refunds/{out_refund_no}``).

        WeChat answering RESOURCE_NOT_EXISTS is never taken for a failure: the request may not
        have reached it, or the refund may not be visible to queries yet, moments after it was
        made. The same request is then sent again (one refund per out_refund_no, WeChat's rule),
        and its answer is the status: the refund as WeChat now holds it (made now, or found
        under this number), WeChat's refusal ("failed"), or ProviderUnavailable."""
        held = self._held_refund(request)
        return held if held is not None else self.refund(request)

    def _refund_path(self, request: RefundRequest) -> str:
        # Both go into WeChat's records (and the number into a URL path): checked before sending.
        if not _SENT_REFUND_NO.fullmatch(request.refund_no) or not _ORDER_NO.fullmatch(request.order_no):
            raise ProviderUnavailable("not a refund or order number WeChat Pay accepts")
        return f"{REFUNDS_PATH}/{request.refund_no}"

    def _refund_payload(self, request: RefundRequest) -> dict[str, Any]:
        self._refund_path(request)
        payload: dict[str, Any] = {
            "out_trade_no": request.order_no,
            "out_refund_no": request.refund_no,
            # Refund results come to the payments' notify URL (the notice says REFUND.*).
            "notify_url": self._notify_url or url_for("payments.notify", name=self.name, _external=True),
            "amount": {"refund": request.amount_fen, "total": request.total_fen, "currency": "CNY"},
        }
        if request.reason:
            # Shown to the payer; WeChat takes at most 80 (counted here in UTF-8 bytes, to be safe).
            payload["reason"] = request.reason.encode()[:80].decode("utf-8", "ignore")
        return payload

    def _held_refund(self, request: RefundRequest) -> RefundResult | None:
        """What WeChat holds under ``request.refund_no``; None when it holds nothing."""
        what = "refund query"
        answer = self._call("GET", self._refund_path(request))
        if answer.status_code == 404 and self._error_code(answer, what) == "RESOURCE_NOT_EXISTS":
            return None
        if answer.status_code != 200:
            raise self._failure(answer, what)
        return self._refund_result(answer, request, what)

    def _refund_result(self, answer: requests.Response, request: RefundRequest, what: str) -> RefundResult:
        """A refund as 申请退款 and 查询单笔退款 describe one: refund_id, out_refund_no,
        out_trade_no, status, amount {total, refund, currency, ...}."""
        found = self._json(answer, what)
        if (found.get("out_refund_no"), found.get("out_trade_no")) != (request.refund_no, request.order_no):
            raise ProviderUnavailable(f"{what}: the answer is about another refund or order")
        refund_id, status, amount = found.get("refund_id"), found.get("status"), found.get("amount")
        if not isinstance(refund_id, str) or not _REFUND_ID.fullmatch(refund_id):
            raise ProviderUnavailable(f"{what}: refund_id missing or not of its form")
        if not isinstance(amount, dict):
            amount = {}
        returned = amount.get("refund")
        if type(returned) is not int or returned != request.amount_fen or amount.get("currency", "CNY") != "CNY":
            # The number was used before for another amount: what left is not what is asked about.
            raise ProviderUnavailable(f"{what}: refund {refund_id} is not of {request.amount_fen} fen CNY")
        state = REFUND_STATES.get(status) if isinstance(status, str) else None
        if state is None:
            raise ProviderUnavailable(f"{what}: refund {refund_id} has status {str(status)[:20]!r}")
        return RefundResult(state, provider_refund_id=refund_id, detail=str(status))

    # ------------------------------------------------------------------ the daily statement

    def fetch_statement(self, day: date) -> tuple[str, bytes]:
        """申请交易账单 (``GET /v3/bill/tradebill``, ALL, gzip), then the file from its
        ``download_url`` with a signed GET. WeChat does not sign the file; the SHA1 it gave in
        its signed answer is checked instead, and a file that does not match is refused."""
        bill_date = f"{day:%Y-%m-%d}"
        what = f"trade bill of {bill_date}"
        answer = self._call("GET", f"/v3/bill/tradebill?bill_date={bill_date}&bill_type=ALL&tar_type=GZIP")
        if answer.status_code != 200:
            code = self._error_code(answer, what) if 400 <= answer.status_code < 500 else ""
            if code in NO_BILL_CODES:
                raise StatementNotReady(f"{what}: {code}")
            raise self._failure(answer, what)
        found = self._json(answer, what)
        url, hash_type, digest = (found.get(k) for k in ("download_url", "hash_type", "hash_value"))
        if hash_type != "SHA1" or not isinstance(digest, str) or not _SHA1.fullmatch(digest):
            raise ProviderUnavailable(f"{what}: hash_type and hash_value are not a SHA1")
        raw = self._download(url, what)
        try:
            matches = wechat_bill.digest_matches(raw, digest)
        except MalformedStatement as exc:
            raise ProviderUnavailable(f"{what}: the download {exc}") from exc
        if not matches:
            raise ProviderUnavailable(f"{what}: the download does not match its SHA1 (changed on the way?)")
        return f"wechat-tradebill-{bill_date}.csv.gz", raw

    def _download(self, url: object, what: str) -> bytes:
        if not isinstance(url, str):
            raise ProviderUnavailable(f"{what}: no download_url")
        parts, base = urlsplit(url), urlsplit(self._api_base)
        # From a signed answer; still, our signed request goes only over https or to the API itself.
        if parts.scheme != "https" and (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise ProviderUnavailable(f"{what}: download_url is not https")
        headers = {"Authorization": self.authorization("GET", url, b""), "Accept": "*/*"}
        raw = bytearray()
        try:
            with requests.get(url, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True) as answer:
                if answer.status_code != 200:
                    raise ProviderUnavailable(f"{what}: download HTTP {answer.status_code}")
                for chunk in answer.iter_content(chunk_size=1 << 16):
                    raw += chunk
                    if len(raw) > wechat_bill.MAX_BILL_BYTES:
                        raise ProviderUnavailable(f"{what}: the download is over {wechat_bill.MAX_BILL_BYTES} bytes")
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"{what}: download {type(exc).__name__}") from exc
        return bytes(raw)

    def parse_statement(self, raw: bytes) -> list[StatementLine]:
        return wechat_bill.parse_tradebill(raw, self._mchid)
