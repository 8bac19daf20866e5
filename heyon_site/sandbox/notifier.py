"""The sandbox gateway's asynchronous notification, sent the way Alipay sends its own:
in the background, retried on a schedule until the site answers exactly ``success``."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

log = logging.getLogger(__name__)

Deliver = Callable[[str, Mapping[str, str]], str]


def notify_url(config: Mapping[str, Any], path: str) -> str | None:
    """Where the gateway posts: HEYON_SANDBOX_NOTIFY_URL as it is, else ``path`` (the notify
    route's) on HEYON_SITE_URL, else on HEYON_LISTEN_URL (the address this server listens on);
    None when none is set. Never the Host a request names: anyone can send any Host, and the
    signed notification of a real order would go there."""
    if config.get("HEYON_SANDBOX_NOTIFY_URL"):
        return str(config["HEYON_SANDBOX_NOTIFY_URL"])
    for name in ("HEYON_SITE_URL", "HEYON_LISTEN_URL"):
        if config.get(name):
            return str(config[name]).rstrip("/") + path
    return None


def post_form(url: str, fields: Mapping[str, str]) -> str:
    """POST the fields form-encoded; return the answer's body (or an error description)."""
    data = urlencode(fields).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - our own notify URL
            body: bytes = response.read(200)
            return body.decode("utf-8", errors="replace").strip()
    except (urllib.error.URLError, OSError) as exc:
        return f"error: {exc}"


def deliver_with_retries(
    url: str, fields: Mapping[str, str], schedule: Sequence[float], deliver: Deliver = post_form
) -> bool:
    """Send until ``success``; ``schedule`` holds the wait before each try."""
    for attempt, wait in enumerate(schedule, start=1):
        time.sleep(wait)
        answer = deliver(url, fields)
        if answer == "success":
            return True
        log.warning(
            "sandbox notification for %s, try %d: answered %r", fields.get("out_trade_no"), attempt, answer[:60]
        )
    return False


def send_in_background(url: str, fields: Mapping[str, str], schedule: Sequence[float]) -> threading.Thread:
    thread = threading.Thread(
        target=deliver_with_retries, args=(url, dict(fields), tuple(schedule)), name="sandbox-notify", daemon=True
    )
    thread.start()
    return thread
