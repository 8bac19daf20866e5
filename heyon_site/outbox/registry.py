"""Which channel carries each kind of message, from the configuration (the channels themselves
import ``channels``; this module, above them, picks among them, so no import runs back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heyon_site.outbox import email, sms
from heyon_site.outbox.channels import Channel, LogChannel


def channels_for(config: Mapping[str, Any]) -> dict[str, Channel]:
    """The configured channel of each kind: e-mail over SMTP when HEYON_SMTP_URL is set, SMS
    through HEYON_SMS_PROVIDER (``log``, ``aliyun``, ``twilio``); the log otherwise."""
    return {
        "email": email.from_config(config) or LogChannel("email"),
        "sms": sms.from_config(config) or LogChannel("sms"),
    }
