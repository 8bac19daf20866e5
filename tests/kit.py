"""Test helpers: cards, orders, the signed sandbox notification, and a live gunicorn site."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from heyon_site.cards.services import create_card
from heyon_site.cards.numbers import number_digest
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, LedgerEntry, PaymentEvent, ProviderCallback, RechargeOrder
from heyon_site.providers.sandbox import sign

from .conftest import ROOT, SANDBOX_SECRET

CARD, PIN = "8600000000001234", "246810"
# What the payment tests start from: a card holding 5.00 and an order of 100.00 on it.
OPENING_FEN, ORDER_FEN = 500, 10000


def make_card(number: str = CARD, pin: str = PIN, balance_fen: int = 0) -> int:
    return in_write_transaction(lambda: create_card(number, pin, balance_fen).id)


def balance(number: str = CARD) -> int:
    db.session.rollback()
    return db.session.scalar(select(Card.balance_fen).where(Card.number_digest == number_digest(number))) or 0


def order(order_no: str) -> RechargeOrder:
    db.session.rollback()
    found = db.session.scalar(select(RechargeOrder).where(RechargeOrder.order_no == order_no))
    assert found is not None, order_no
    return found


def entries_of(order_no: str) -> int:
    """The ledger entries an order has booked (recharge and bonus)."""
    return db.session.scalar(select(func.count()).select_from(LedgerEntry)
                             .where(LedgerEntry.order_id == order(order_no).id)) or 0


def assert_not_credited(order_no: str) -> None:
    assert balance() == OPENING_FEN
    assert entries_of(order_no) == 0


def event_outcomes(order_id: int) -> Counter[str]:
    """The outcomes of the payment events kept for an order (credited, duplicate, ...)."""
    db.session.rollback()  # a live server wrote them in other processes: a fresh snapshot
    return Counter(db.session.scalars(select(PaymentEvent.outcome).where(PaymentEvent.order_id == order_id)))


def callbacks() -> list[ProviderCallback]:
    """Every provider callback received, as kept, oldest first."""
    db.session.rollback()
    return list(db.session.scalars(select(ProviderCallback).order_by(ProviderCallback.id)))


def as_refused(body: bytes) -> tuple[str, str, int]:
    """What is kept of a refused callback's body: its first KiB as text (a NUL written out), and
    the SHA-256 and size of the whole."""
    return (body[:1024].decode("utf-8", errors="replace").replace("\x00", "\\x00"), hashlib.sha256(body).hexdigest(),
            len(body))


def kept_body(row: ProviderCallback) -> tuple[str, str | None, int | None]:
    return row.body, row.body_sha256, row.body_size


def provider_order(provider: str, card: str = CARD, amount_fen: int = ORDER_FEN) -> str:
    """A pending order paid by ``provider`` on a new card holding OPENING_FEN; its number."""
    card_id = make_card(card, balance_fen=OPENING_FEN)
    return in_write_transaction(lambda: start_recharge(db.session, card_id, amount_fen, provider, "en").order_no)


def post_notification(path: str, client: FlaskClient, message: tuple[bytes, dict[str, str]]) -> tuple[int, str]:
    """A provider's notification (body, headers) posted to ``path``: the answer's status and text."""
    body, headers = message
    answer = client.post(path, data=body, headers=headers)
    return answer.status_code, answer.get_data(as_text=True)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token in the page"
    return match.group(1) or match.group(2)


def hidden_value(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    assert match, f"no {name} field in the page"
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else ""


def recharge_form(client: FlaskClient, **fields: str) -> dict[str, str]:
    """The recharge form as a browser sends it: its hidden fields (the token, the version of the
    promotions it showed, its one-time id) as the page gave them, then ``fields``."""
    html = client.get("/recharge?lang=en").get_data(as_text=True)
    data = {"csrf_token": csrf_from(html), "offer": hidden_value(html, "offer"), "form_id": hidden_value(html, "form_id"),
            "card_number": CARD, "password": PIN, "amount": "100", "custom_amount": "", "method": "sandbox"}
    data.update(fields)
    return data


# Where the recharge form sends a browser paying with the sandbox: its signed gateway page.
GATEWAY = re.compile(r"(?:https?://[^/]+)?/pay/sandbox/(\d+)\?sign=([0-9a-f]{64})")


def gateway_order_no(location: str) -> str:
    """The order number in the address of a sandbox gateway page (its signature checked)."""
    match = GATEWAY.fullmatch(location)
    assert match and match.group(2) == gateway_sign(match.group(1)), location
    return match.group(1)


def gateway_sign(order_no: str, secret: str = SANDBOX_SECRET) -> str:
    """The documented signature of the gateway's address, written independently of the site's."""
    return hmac.new(secret.encode(), f"gateway:{order_no}".encode(), hashlib.sha256).hexdigest()


def gateway_path(order_no: str) -> str:
    """The gateway page of an order as its signed link names it: what any browser can open."""
    return f"/pay/sandbox/{order_no}?sign={gateway_sign(order_no)}"


def start_order(client: FlaskClient, **fields: str) -> str:
    """Submit the recharge form as a browser; return the new order number."""
    r = client.post("/recharge", data=recharge_form(client, **fields))
    assert r.status_code == 303, (r.status_code, r.get_data(as_text=True)[:500])
    return gateway_order_no(r.headers["Location"])


def notification(order_no: str, yuan: str, *, status: str = "TRADE_SUCCESS", trade_no: str | None = None,
                 secret: str = SANDBOX_SECRET, **extra: str) -> dict[str, str]:
    fields = {
        "out_trade_no": order_no,
        "trade_no": trade_no or "SBX" + uuid.uuid4().hex[:20].upper(),
        "total_amount": yuan,
        "trade_status": status,
        "notify_id": uuid.uuid4().hex,
        "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "sign_type": "HMAC-SHA256",
        **extra,
    }
    fields["sign"] = sign(fields, secret)
    return fields


def deliver_outbox(app: Flask, client: FlaskClient) -> list[str]:
    """Deliver the sandbox gateway's queued notifications; return the site's answers."""
    outbox: list[tuple[str, dict[str, str]]] = app.extensions["heyon.test_outbox"]
    answers = []
    while outbox:
        url, fields = outbox.pop(0)
        answers.append(client.post(url, data=fields).get_data(as_text=True))
    return answers


def cli(runner: FlaskCliRunner, *args: str) -> Result:
    """Invoke a command in-process; a failure must be a clean exit, never a traceback."""
    result: Result = runner.invoke(args=list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


# ------------------------------------------------------------------ a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveSite:
    url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def live_site(database_url: str, tmp: Path, workers: int = 4, extra_env: dict[str, str] | None = None) -> Iterator[LiveSite]:
    """gunicorn serving this checkout's wsgi:app on 127.0.0.1, stopped afterwards."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key",
           "HEYON_PROVIDERS": "sandbox", "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, "PYTHONUNBUFFERED": "1",
           # Several workers with limits kept in each one's memory are refused at start-up; tests
           # about limits across workers pass RATELIMIT_ENABLED=true and a Redis storage URI.
           "RATELIMIT_ENABLED": "false",
           **(extra_env or {})}
    log = tmp / f"gunicorn-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "60", "wsgi:app"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    site = LiveSite(f"http://127.0.0.1:{port}", database_url, proc, log)
    try:
        _wait_until_up(site)
        yield site
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_until_up(site: LiveSite, seconds: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if site.process.poll() is not None:
            raise RuntimeError("gunicorn exited: " + site.log_text()[-2000:])
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(site.url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not come up: " + site.log_text()[-2000:])

