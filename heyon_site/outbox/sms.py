"""SMS through the provider HEYON_SMS_PROVIDER names: ``log`` (the default: no provider, the
message goes to the log), ``aliyun`` (Alibaba Cloud SMS, ``SendSms``) or ``twilio``.

Alibaba Cloud sends only templates registered with it, so what goes there is the template's code
(HEYON_SMS_TEMPLATE_<NAME>) and the message's parameters; Twilio sends the text rendered here.
Both are told the outbox key: Alibaba Cloud as ``OutId`` (it comes back with delivery receipts;
it does not keep a message from being sent twice), Twilio as the idempotency token, under which
it accepts a repeated request without sending again.

What a refusal means: throttling, a provider that is down or unreachable, and anything we do not
know is tried again later (a misconfigured key then waits in the queue until it is fixed, or
until the tries run out); a number or a template the provider says is wrong goes to the dead
letters at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from heyon_site.billing.notices import TEMPLATES
from heyon_site.config import MissingSetting, setting
from heyon_site.ops.logs import mask_card_numbers, mask_contact
from heyon_site.outbox.channels import Channel, Outgoing, PermanentFailure, TemporaryFailure

PROVIDERS = ("log", "aliyun", "twilio")
#: (connect, read) seconds of each request to a provider.
TIMEOUT = (5.0, 20.0)

ALIYUN_ENDPOINT = "https://dysmsapi.aliyuncs.com"
ALIYUN_VERSION = "2017-05-25"
#: Codes of SendSms that are about this message (its number, its template, its parameters): it will
#: never go as it is. Every other code that is not OK is tried again: throttling
#: (isv.BUSINESS_LIMIT_CONTROL, isv.DAY_LIMIT_CONTROL, Throttling.User), the service being down
#: (ServiceUnavailable, isp.SYSTEM_ERROR), the account (isv.OUT_OF_SERVICE, isv.AMOUNT_NOT_ENOUGH)
#: and our keys (SignatureDoesNotMatch, InvalidAccessKeyId.NotFound) until a person fixes them.
ALIYUN_PERMANENT = frozenset(
    {
        "isv.MOBILE_NUMBER_ILLEGAL",
        "isv.MOBILE_COUNT_OVER_LIMIT",
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
        "isv.SMS_TEMPLATE_ILLEGAL",
        "isv.TEMPLATE_MISSING_PARAMETERS",
        "isv.TEMPLATE_PARAMS_ILLEGAL",
        "isv.INVALID_JSON_PARAM",
        "isv.INVALID_PARAMETERS",
        "isv.PARAM_LENGTH_LIMIT",
        "isv.PARAM_NOT_SUPPORT_URL",
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.SMS_SIGN_ILLEGAL",
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
        "isv.SMS_CONTENT_ILLEGAL",
        "isv.BLACK_KEY_CONTROL_LIMIT",
    }
)

TWILIO_API_BASE = "https://api.twilio.com"


def scrubbed(text: object, recipient: str) -> str:
    """A provider's answer as it may be logged and kept: they like to repeat the number."""
    out = str(text or "")
    if recipient:
        out = out.replace(recipient, mask_contact(recipient))
    return mask_card_numbers(out)[:160]


# ------------------------------------------------------------------ Alibaba Cloud


def percent_encode(value: str) -> str:
    """Alibaba Cloud's encoding for RPC signatures: UTF-8, then every byte but A-Z a-z 0-9 - _ . ~
    as %XY in capitals (a space is %20, never +; * is %2A)."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def aliyun_signature(params: Mapping[str, str], secret: str, method: str = "GET") -> str:
    """Signature version 1.0: Base64(HMAC-SHA1(secret + "&", METHOD&%2F&encoded canonical query))."""
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"
    mac = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


@dataclass(frozen=True)
class AliyunSettings:
    access_key_id: str
    access_key_secret: str
    sign_name: str
    templates: Mapping[str, str]  # our template name -> the code registered with Alibaba Cloud
    endpoint: str = ALIYUN_ENDPOINT

    def __repr__(self) -> str:
        return f"AliyunSettings(access_key_id={self.access_key_id!r}, endpoint={self.endpoint!r})"


class AliyunSms:
    name = "sms"

    def __init__(self, settings: AliyunSettings) -> None:
        self.settings = settings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AliyunSms:
        templates = {name: setting(config, f"HEYON_SMS_TEMPLATE_{name.upper()}") for name in TEMPLATES}
        return cls(
            AliyunSettings(
                access_key_id=setting(config, "HEYON_ALIYUN_ACCESS_KEY_ID"),
                access_key_secret=setting(config, "HEYON_ALIYUN_ACCESS_KEY_SECRET"),
                sign_name=setting(config, "HEYON_ALIYUN_SMS_SIGN_NAME"),
                templates=templates,
                endpoint=_base(config, "HEYON_ALIYUN_SMS_ENDPOINT", ALIYUN_ENDPOINT),
            )
        )

    def request_params(self, message: Outgoing, now: datetime | None = None) -> dict[str, str]:
        """Every parameter of the SendSms request, the signature included (a fresh nonce each time)."""
        s = self.settings
        code = s.templates.get(message.template)
        if not code:
            raise PermanentFailure(f"no Alibaba Cloud template code for {message.template}")
        params = {
            "AccessKeyId": s.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": message.key,
            "PhoneNumbers": message.recipient,
            "RegionId": "cn-hangzhou",
            "SignName": s.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": code,
            "TemplateParam": json.dumps(dict(message.params), ensure_ascii=False, sort_keys=True),
            "Timestamp": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": ALIYUN_VERSION,
        }
        params["Signature"] = aliyun_signature(params, s.access_key_secret)
        return params

    def send(self, message: Outgoing) -> None:
        params = self.request_params(message)
        url = f"{self.settings.endpoint}/?{canonical_query(params)}"
        try:
            answer = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            raise TemporaryFailure(f"aliyun unreachable: {type(exc).__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        code = str(body.get("Code") or "") if isinstance(body, dict) else ""
        if answer.status_code == 200 and code == "OK":
            return
        if not code:
            raise TemporaryFailure(f"aliyun answered HTTP {answer.status_code}")
        text = f"aliyun {code}: {scrubbed(body.get('Message') if isinstance(body, dict) else '', message.recipient)}"
        raise PermanentFailure(text) if code in ALIYUN_PERMANENT else TemporaryFailure(text)


# ------------------------------------------------------------------ Twilio


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    sender: str = ""  # HEYON_TWILIO_FROM: a number or alphanumeric sender id
    messaging_service_sid: str = ""
    api_base: str = TWILIO_API_BASE

    def __repr__(self) -> str:
        return f"TwilioSettings(account_sid={self.account_sid!r}, api_base={self.api_base!r})"


class TwilioSms:
    name = "sms"

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TwilioSms:
        sender = str(config.get("HEYON_TWILIO_FROM") or "").strip()
        service = str(config.get("HEYON_TWILIO_MESSAGING_SERVICE_SID") or "").strip()
        if not (sender or service):
            raise MissingSetting("HEYON_TWILIO_FROM (or HEYON_TWILIO_MESSAGING_SERVICE_SID) is not set")
        return cls(
            TwilioSettings(
                account_sid=setting(config, "HEYON_TWILIO_ACCOUNT_SID"),
                auth_token=setting(config, "HEYON_TWILIO_AUTH_TOKEN"),
                sender=sender,
                messaging_service_sid=service,
                api_base=_base(config, "HEYON_TWILIO_API_BASE", TWILIO_API_BASE),
            )
        )

    def send(self, message: Outgoing) -> None:
        s = self.settings
        form = {"To": message.recipient, "Body": message.text}
        # A Messaging Service picks the sender itself; else the configured number.
        form.update({"MessagingServiceSid": s.messaging_service_sid} if s.messaging_service_sid else {"From": s.sender})
        try:
            answer = requests.post(
                f"{s.api_base}/2010-04-01/Accounts/{quote(s.account_sid, safe='')}/Messages.json",
                data=form,
                auth=(s.account_sid, s.auth_token),
                headers={"I-Twilio-Idempotency-Token": message.key},
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TemporaryFailure(f"twilio unreachable: {type(exc).__name__}") from None
        status = answer.status_code
        if status in (200, 201):
            return
        try:
            body = answer.json()
        except ValueError:
            body = None
        error = body if isinstance(body, dict) else {}
        text = f"twilio {status} error {error.get('code', '-')}: {scrubbed(error.get('message'), message.recipient)}"
        # 400: Twilio will not take this request as it is (21211: not a valid To number, 21610: the
        # recipient opted out, ...). 401, 403, 404: our credentials or account, until fixed.
        raise PermanentFailure(text) if status == 400 else TemporaryFailure(text)


# ------------------------------------------------------------------ choosing


def _base(config: Mapping[str, Any], name: str, default: str) -> str:
    raw = str(config.get(name) or default).strip().rstrip("/")
    if not raw.startswith(("https://", "http://")):
        raise ValueError(f"{name} must be an http(s) address, not {raw!r}")
    return raw


def from_config(config: Mapping[str, Any]) -> Channel | None:
    """The configured SMS provider; None for ``log`` (the log channel is used). A provider whose
    settings are missing stops the worker at start-up, naming the setting."""
    provider = str(config.get("HEYON_SMS_PROVIDER") or "log").strip().lower()
    if provider == "log":
        return None
    if provider == "aliyun":
        return AliyunSms.from_config(config)
    if provider == "twilio":
        return TwilioSms.from_config(config)
    raise ValueError(f"HEYON_SMS_PROVIDER must be one of {', '.join(PROVIDERS)}, not {provider!r}")
