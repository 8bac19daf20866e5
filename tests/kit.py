"""Test helpers: the site as tests run it (config, clients, the `flask` command), cards, orders,
the signed sandbox notification, and a live gunicorn site (started by tests/live.py)."""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from heyon_site import create_app
from heyon_site.billing.recharge import start_recharge
from heyon_site.cards.numbers import number_digest
from heyon_site.cards.services import create_card
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, LedgerEntry, PaymentEvent, ProviderCallback, RechargeOrder
from heyon_site.providers.sandbox import sign
from tests.live import LiveSite, free_port, gunicorn  # noqa: F401 - LiveSite and free_port: tests import them from here

# ------------------------------------------------------------------ the site as tests run it

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = str(ROOT / "migrations")


SANDBOX_SECRET = "test-sandbox-secret"


BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key",
    "HEYON_PROVIDERS": ("sandbox",),
    "HEYON_SANDBOX_SECRET": SANDBOX_SECRET,
    # Where the sandbox gateway sends its notifications (tests collect them: the `app` fixture).
    "HEYON_SITE_URL": "http://heyon.test",
    "SERVER_NAME": "heyon.test",
    # Cheap argon2id for speed; the parameters live in each hash, so verification still works.
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_COST": 1024,
    "ARGON2_PARALLELISM": 1,
    "RATELIMIT_ENABLED": False,
    # Tests send hundreds of wrong passwords in a burst; the site-wide budget for checks from
    # unknown browsers is proved by its own tests (tests/cards/test_check_budget.py), set low there.
    "HEYON_PASSWORD_CHECK_BUDGET": "100000 per second",
    # Each test sees its own changes at once; tests/web/test_page_cache.py switches the cache on.
    "HEYON_PAGE_CACHE_SECONDS": 0,
}


class ServerLikeClient(FlaskClient):
    """Runs every request in its own app context, as a real server does.

    The ``app`` fixture keeps one context pushed for the whole test (so tests can use the
    database directly), and Flask would reuse it for test requests: ``g`` would then carry
    Flask-Babel's locale and Flask-WTF's CSRF token from one request, or client, into the next.
    """

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        with self.application.app_context():
            return super().open(*args, **kwargs)


@contextmanager
def held(app: Flask) -> Iterator[Flask]:
    """``app`` as tests use it: its clients run each request as a server does, one app context
    is held for the test, and the engine is disposed of afterwards."""
    app.test_client_class = ServerLikeClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def site_for_tests(database: str, **overrides: Any) -> AbstractContextManager[Flask]:
    """The site on ``database`` with TEST_CONFIG and ``overrides``, held as tests use it."""
    return held(create_app({**TEST_CONFIG, "DATABASE_URL": database, **overrides}))


def new_client(app: Flask, htmx: bool = False) -> FlaskClient:
    """A fresh browser (its own cookies); with ``htmx``, one that asks as htmx does."""
    c = app.test_client()
    if htmx:
        c.environ_base["HTTP_HX_REQUEST"] = "true"
    return c


def flask_cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `flask` command of this checkout against a database, as an operator would."""
    full_env = {**os.environ, "FLASK_APP": "wsgi", "DATABASE_URL": url, "SECRET_KEY": "test-secret-key",
                "HEYON_PROVIDERS": "sandbox", "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, **(env or {})}
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


# Every card number and card password the tests type, the demo cards' included.
SUITE_SECRETS = ("8600000000001234", "246810", "8611223344556677", "97531864", "13572468",
                 "8600000000000101", "8600000000000119", "8600000000000127", "8600000000000135",
                 "8600000000000018", "135790", "8600000000000026", "246802", "8600000000000034", "112233")


def secrets_in(text: str) -> list[str]:
    """The secrets found as whole tokens: a PIN inside a longer run of digits or letters (a
    timestamp's microseconds, a request id) is not one."""
    return [s for s in SUITE_SECRETS if re.search(rf"(?<![0-9A-Za-z.]){s}(?![0-9A-Za-z])", text)]


# ------------------------------------------------------------------ cards, orders, notifications

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


def csrf_secret(token: str) -> str:
    """The session's secret inside a form token: the token is that secret, the second it was
    signed in and a signature, so two pages a second apart carry different tokens for one secret."""
    secret, _, _ = token.rsplit(".", 2)
    return secret


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


# ------------------------------------------------------------------ a real server (tests/live.py)


def live_site(database_url: str, tmp: Path, workers: int = 4,
              extra_env: dict[str, str] | None = None) -> AbstractContextManager[LiveSite]:
    """gunicorn serving this checkout's wsgi:app on 127.0.0.1, stopped afterwards."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key",
           "HEYON_PROVIDERS": "sandbox", "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, "PYTHONUNBUFFERED": "1",
           # Several workers with limits kept in each one's memory are refused at start-up; tests
           # about limits across workers pass RATELIMIT_ENABLED=true and a Redis storage URI.
           "RATELIMIT_ENABLED": "false",
           **(extra_env or {})}
    return gunicorn(database_url, tmp / f"gunicorn-{port}.log", env,
                    ["-w", str(workers), "--timeout", "60", "wsgi:app"], port=port)
