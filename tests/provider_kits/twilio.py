"""Twilio's Messages API as tests see it: a throw-away account and a fake
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` that checks HTTP basic auth (the Account
SID and Auth Token) and the form as Twilio does, and answers in its JSON: 201 with the Message
resource, or an error object ``{"code", "message", "more_info", "status"}``.

A request carrying an ``I-Twilio-Idempotency-Token`` it has seen is answered with the message
the first one made and sends nothing more, so ``requests`` counts what the site asked and
``sent`` what reached a phone.
"""
from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from tests.fakes import FakeApi

ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
FROM = "+15005550006"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
E164 = re.compile(r"\+[1-9]\d{6,14}")
TOKEN_HEADER = "I-Twilio-Idempotency-Token"


def settings(base_url: str) -> dict[str, str]:
    """The site's configuration for this fake."""
    return {"HEYON_SMS_PROVIDER": "twilio", "HEYON_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "HEYON_TWILIO_AUTH_TOKEN": AUTH_TOKEN, "HEYON_TWILIO_FROM": FROM, "HEYON_TWILIO_API_BASE": base_url}


def error(status: int, code: int, message: str) -> Response:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    return Response(json.dumps(body), status=status, content_type="application/json")


@dataclass
class TwilioFake(FakeApi):
    """``requests``: (idempotency token, form) of every authenticated request; ``sent``: the
    messages that went out; ``answer_next``: (status, code) the next requests get instead."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    answer_next: list[tuple[int, int]] = field(default_factory=list)
    by_token: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.routes[("POST", MESSAGES)] = self.create

    def authorised(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        return hmac.compare_digest(request.headers.get("Authorization", ""), expected)

    def create(self, request: Request) -> Response:
        if not self.authorised(request):
            return error(401, 20003, "Authenticate")
        form = dict(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
        token = request.headers.get(TOKEN_HEADER, "")
        with self._lock:
            self.requests.append((token, form))
            if token and token in self.by_token:
                return Response(json.dumps(self.by_token[token]), status=201, content_type="application/json")
            if self.answer_next:
                status, code = self.answer_next.pop(0)
                return error(status, code, f"scripted error for {form.get('To', '')}")
            if not E164.fullmatch(form.get("To", "")):
                return error(400, 21211, f"The 'To' number {form.get('To', '')} is not a valid phone number.")
            if not (form.get("From") or form.get("MessagingServiceSid")):
                return error(400, 21603, "The 'From' phone number is required.")
            if not form.get("Body"):
                return error(400, 21602, "Message body is required.")
            now = format_datetime(datetime.now(UTC), usegmt=True)
            sid = "SM" + secrets.token_hex(16)
            message = {"sid": sid, "account_sid": ACCOUNT_SID, "to": form["To"],
                       "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
                       "body": form["Body"], "status": "queued", "direction": "outbound-api", "num_segments": "1",
                       "date_created": now, "date_updated": now, "date_sent": None, "error_code": None,
                       "error_message": None, "api_version": "2010-04-01", "uri": f"{MESSAGES[:-5]}/{sid}.json"}
            self.sent.append(message)
            if token:
                self.by_token[token] = message
        return Response(json.dumps(message), status=201, content_type="application/json")

    def tokens(self) -> list[str]:
        return [token for token, _ in self.requests]


def new_fake() -> TwilioFake:
    return TwilioFake(routes={})
