"""Alibaba Cloud SMS (``SendSms``, API version 2017-05-25) as tests see it: throw-away keys and a
fake RPC endpoint that checks requests as the real one does and answers in its JSON.

The signature is written here again from Alibaba Cloud's documentation of RPC signature version
1.0, not taken from heyon_site.outbox.sms, so a mistake in one does not hide in the other:
the parameters but Signature sorted by name, names and values percent-encoded (UTF-8; A-Z a-z
0-9 - _ . ~ kept; everything else %XY in capitals, a space %20), joined as k=v with &; the
string to sign is ``GET&%2F&`` followed by that query percent-encoded once more; the signature is
Base64(HMAC-SHA1(AccessKeySecret + "&", string)). A nonce used once is refused after, and so is a
Timestamp more than 15 minutes from the fake's clock.

Alibaba Cloud does not document OutId as an idempotency key (it is the caller's reference,
returned with delivery receipts), so the fake sends a repeated OutId again, as the real one would;
``sent`` shows both.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from tests.fakes import FakeApi

ACCESS_KEY_ID = "LTAI5t" + secrets.token_hex(9)
ACCESS_KEY_SECRET = secrets.token_urlsafe(22)
SIGN_NAME = "禾云通信"
#: The templates registered at the fake: code -> the variables each needs.
TEMPLATES = {"SMS_480001": ("amount", "balance", "last4", "order_no"), "SMS_480002": ("balance", "last4")}
#: What the site is configured with for them (HEYON_SMS_TEMPLATE_<NAME>).
TEMPLATE_SETTINGS = {"HEYON_SMS_TEMPLATE_RECHARGE_CREDITED": "SMS_480001",
                     "HEYON_SMS_TEMPLATE_LOW_BALANCE": "SMS_480002"}
UNRESERVED = re.compile(r"[A-Za-z0-9\-_.~]")
# Mainland numbers with the prefixes SendSms accepts (none, 86, +86, 0086).
MOBILE = re.compile(r"(?:\+?86|0086)?1[3-9]\d{9}")
MAX_SKEW = timedelta(minutes=15)


def settings(base_url: str) -> dict[str, str]:
    """The site's configuration for this fake."""
    return {"HEYON_SMS_PROVIDER": "aliyun", "HEYON_ALIYUN_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "HEYON_ALIYUN_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, "HEYON_ALIYUN_SMS_SIGN_NAME": SIGN_NAME,
            "HEYON_ALIYUN_SMS_ENDPOINT": base_url, **TEMPLATE_SETTINGS}


def encode(value: str) -> str:
    return "".join(ch if UNRESERVED.fullmatch(ch) else "".join(f"%{b:02X}" for b in ch.encode()) for ch in value)


def reference_signature(params: dict[str, str], secret: str) -> str:
    query = "&".join(f"{encode(k)}={encode(params[k])}" for k in sorted(params))
    string_to_sign = "GET&" + encode("/") + "&" + encode(query)
    return base64.b64encode(hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()


def answer(status: int, code: str, message: str, **extra: str) -> Response:
    body = {"RequestId": str(uuid.uuid4()).upper(), "Code": code, "Message": message, **extra}
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json;charset=utf-8")


@dataclass
class AliyunSmsFake(FakeApi):
    """``requests``: every verified request's parameters; ``sent``: the messages it sent;
    ``answer_next``: codes the next verified SendSms requests get instead of sending
    (``isv.BUSINESS_LIMIT_CONTROL``, ``isv.MOBILE_NUMBER_ILLEGAL`` ...)."""

    requests: list[dict[str, str]] = field(default_factory=list)
    sent: list[dict[str, str]] = field(default_factory=list)
    answer_next: list[str] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    clock: datetime | None = None  # None: the real time

    def __post_init__(self) -> None:
        self.routes[("GET", "/")] = self.rpc

    def rpc(self, request: Request) -> Response:
        pairs = parse_qsl(request.query_string.decode(), keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs):
            return answer(400, "InvalidParameter", "a parameter is given twice")
        problem = self.check_signature(params)
        if problem is not None:
            return problem
        with self._lock:
            self.requests.append(params)
            if params.get("Action") != "SendSms" or params.get("Version") != "2017-05-25":
                return answer(404, "InvalidAction.NotFound", "Specified api is not found, please check your url "
                                                             "and method.")
            scripted = self.answer_next.pop(0) if self.answer_next else None
            if scripted == "ServiceUnavailable":
                return answer(503, scripted, "The request has failed due to a temporary failure of the server.")
            if scripted == "Throttling.User":
                return answer(400, scripted, "Request was denied due to user flow control.")
            if scripted:
                return answer(200, scripted, f"scripted {scripted} for {params.get('PhoneNumbers', '')}")
            problem = self.check_message(params)
            if problem is not None:
                return problem
            self.sent.append(params)
        return answer(200, "OK", "OK", BizId=f"{secrets.randbelow(10**15):015d}^0")

    def check_signature(self, params: dict[str, str]) -> Response | None:
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != ACCESS_KEY_ID:
            return answer(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if (params.get("SignatureMethod"), params.get("SignatureVersion")) != ("HMAC-SHA1", "1.0"):
            return answer(400, "InvalidParameter", "SignatureMethod or SignatureVersion is not supported")
        expected = reference_signature(params, ACCESS_KEY_SECRET)
        if not hmac.compare_digest(signature, expected):
            return answer(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        try:
            stamp = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return answer(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
        if abs((self.clock or datetime.now(UTC)) - stamp) > MAX_SKEW:
            return answer(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        with self._lock:
            nonce = params.get("SignatureNonce", "")
            if not nonce or nonce in self.nonces:
                return answer(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self.nonces.add(nonce)
        return None

    def check_message(self, params: dict[str, str]) -> Response | None:
        if not MOBILE.fullmatch(params.get("PhoneNumbers", "")):
            return answer(200, "isv.MOBILE_NUMBER_ILLEGAL", f"非法手机号 {params.get('PhoneNumbers', '')}")
        if params.get("SignName") != SIGN_NAME:
            return answer(200, "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        needed = TEMPLATES.get(params.get("TemplateCode", ""))
        if needed is None:
            return answer(200, "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            values = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return answer(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not isinstance(values, dict) or any(name not in values for name in needed):
            return answer(200, "isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")
        return None


def new_fake() -> AliyunSmsFake:
    return AliyunSmsFake(routes={})
