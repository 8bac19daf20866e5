"""`make bench`: throughput, latency, page weight and Lighthouse for the site, on this machine.

Serves the site under gunicorn (2 sync workers, as in production) on a fresh SQLite database,
and on a scratch PostgreSQL database too when BENCH_DATABASE_URL (or TEST_DATABASE_URL) names a
server; loads it from other processes on 127.0.0.1 (wrk, or a Python load generator where wrk is
missing or a step needs logic between requests); then runs Lighthouse (mobile) on the home and
recharge pages. Prints the tables and writes them to bench/results/ (latest.md, latest.json).

Settings (environment): BENCH_SECONDS (per endpoint, default 10), BENCH_CONNECTIONS (default 8),
BENCH_LIGHTHOUSE_RUNS (default 5; 0 skips Lighthouse), BENCH_NOTIFY_ORDERS (pending orders per client for
the notification row, default 2,500), BENCH_USAGE_BATCHES (usage batches of 1,000 charges per database,
default 5), BENCH_DATABASE_URL.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import live  # noqa: E402 - the project root first: one live-server helper for tests and bench

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
# Each row is measured in ROUNDS turns with /healthz (SECONDS / ROUNDS each), and its ratio is to
# the /healthz of its own turns: on this shared machine /healthz alone has measured 1,400 and
# 2,800 a second a minute apart, and a ratio to a yardstick taken minutes earlier meant little.
ROUNDS = 3
WARMUP = 2.0
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
WORKERS = 2
LIGHTHOUSE_RUNS = int(os.environ.get("BENCH_LIGHTHOUSE_RUNS", "5"))  # issue 13: median of 5
SANDBOX_SECRET = "bench-sandbox-secret"
BROWSER_ENCODINGS = "gzip, deflate, br, zstd"
CHROME = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
CHROME_FLAGS = ("--headless --no-sandbox --disable-gpu --disable-background-networking "
                "--disable-component-update --disable-sync --no-first-run")
# The demo cards of `flask seed-demo` (heyon_site/cards/cli.py); lookups rotate over them.
DEMO_CARDS = (("8600000000000018", "135790"), ("8600000000000026", "246802"), ("8600000000000034", "112233"))
# Issue 13's targets. LCP: at most 0.80 s, or at most 1.06 times a blank 1 KB page's LCP measured
# in the same run (Lighthouse's simulation scales with the machine's CPU).
TARGETS = {"lighthouse_score": 100, "lcp_ms": 800, "lcp_floor_ratio": 1.06, "page_ratio": 0.60,
           "order_ratio": 0.20, "notify_ratio": 0.25, "pin_check_ms": 5.0}
PAGE_ROWS = ("home /", "recharge form", "FAQ", "balance form")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ HTTP, stdlib only


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(base: str, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Answer:
    """One request on its own connection (gunicorn's sync workers close every connection)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body.encode() if body is not None else None, headers=hdrs)
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


CSRF_TOKEN = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')
OFFER = re.compile(rb'name="offer" type="hidden" value="([^"]*)"')


@dataclass
class Visitor:
    """A browser session: its session cookie and the CSRF token of the form it loaded."""

    cookie: str
    token: str
    offer: str = ""  # the recharge form's version of the promotions it showed (issue 11)


def open_form(base: str, path: str) -> Visitor:
    r = fetch(base, "GET", path)
    cookie = r.headers.get("set-cookie", "").split(";")[0]
    match = CSRF_TOKEN.search(r.body)
    if r.status != 200 or not cookie or not match:
        raise RuntimeError(f"GET {path}: no session or CSRF token ({r.status})")
    offer = OFFER.search(r.body)
    return Visitor(cookie, match.group(1).decode(), offer.group(1).decode() if offer else "")


def balance_body(v: Visitor, card: tuple[str, str]) -> str:
    return urlencode({"csrf_token": v.token, "card_number": card[0], "password": card[1]})


def recharge_body(v: Visitor, card: tuple[str, str]) -> str:
    # The offer the page showed, so the quoted terms go straight to payment; no form_id, so each
    # post of this body is a new order (one form, one order holds only for a form's one-time id).
    return urlencode({"csrf_token": v.token, "card_number": card[0], "password": card[1], "amount": "100",
                      "custom_amount": "", "method": "sandbox", "offer": v.offer})


def notification(order_no: str, yuan: str, *, status: str = "TRADE_SUCCESS", trade_no: str | None = None) -> str:
    """The sandbox provider's signed notification (README: Interfaces; tests/kit.py)."""
    fields = {"out_trade_no": order_no, "trade_no": trade_no or "SBX" + uuid.uuid4().hex[:20].upper(),
              "total_amount": yuan, "trade_status": status, "notify_id": uuid.uuid4().hex,
              "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"), "sign_type": "HMAC-SHA256"}
    message = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type") and v)
    fields["sign"] = hmac.new(SANDBOX_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


# ------------------------------------------------------------------ the site under test


def site_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "FLASK_APP": "wsgi", "DATABASE_URL": database_url, "SECRET_KEY": "bench-secret-key",
            "HEYON_PROVIDERS": "sandbox", "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, "PYTHONUNBUFFERED": "1",
            "HEYON_USAGE_CLIENTS": f"{USAGE_CLIENT}:{USAGE_KEY}"}


def prepare_database(database_url: str) -> None:
    env = site_env(database_url)
    for args in (("db", "upgrade"), ("seed-demo",), ("faq", "seed")):
        done = subprocess.run([PYTHON, "-m", "flask", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@contextlib.contextmanager
def serving(database_url: str, logfile: Path, *, workers: int = WORKERS, app: str = "bench.serve:app",
            extra_env: dict[str, str] | None = None, max_requests: int = 0) -> Iterator[str]:
    """gunicorn with the production config (gunicorn.conf.py), 2 workers unless told, on 127.0.0.1.
    Started, waited for and stopped by tests/live.py, as the tests' live servers are."""
    # --max-requests 0: production recycles a worker every ~2000 requests, and a worker
    # re-importing the app mid-run would show up as a latency spike of the endpoint it hit.
    args = ["-c", "gunicorn.conf.py", "-w", str(workers), "--max-requests", str(max_requests), app]
    with live.gunicorn(database_url, logfile, {**site_env(database_url), **(extra_env or {})}, args,
                       append_log=True, stop_seconds=20) as site:
        yield site.url


def scratch_postgres(server_url: str) -> contextlib.AbstractContextManager[str]:
    """A database of our own on that server, dropped afterwards."""
    from heyon_site.database import scratch_postgres as scratch

    return scratch(server_url, "heyon_bench")


# ------------------------------------------------------------------ load


@dataclass
class Load:
    backend: str
    name: str
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_sample: str = ""
    vs_healthz: float | None = None
    # /healthz measured by the same tool in turns with this row (ROUNDS each), requests a second.
    beside: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(base: str, path: str, seconds: float, cookie: str = "", bodies: tuple[str, ...] = ()) -> dict[str, int]:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "--timeout", "30s",
           "-s", str(BENCH / "wrk.lua"), base + path, "--", cookie, *bodies]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures:\n{done.stdout}{done.stderr}")
    figures: dict[str, int] = json.loads(line.removeprefix("BENCH_JSON "))
    return figures


def wrk_load(backend: str, name: str, base: str, path: str, cookie: str = "", bodies: tuple[str, ...] = (),
             beside: bool = True) -> Load:
    wrk(base, path, WARMUP, cookie, bodies)
    turns, healthz = [], []
    for _ in range(ROUNDS if beside else 1):
        if beside:
            healthz.append(wrk(base, "/healthz", SECONDS / ROUNDS))
        turns.append(wrk(base, path, SECONDS / ROUNDS if beside else SECONDS, cookie, bodies))
    f = {key: sum(t[key] for t in turns) for key in ("requests", "duration_us", "connect", "read", "write", "status",
                                                    "timeout")}
    errors = f["connect"] + f["read"] + f["write"] + f["status"] + f["timeout"]
    p50, p99 = (statistics.median(t[k] for t in turns) / 1000 for k in ("p50_us", "p99_us"))
    row = Load(backend, name, "wrk", f["requests"], f["duration_us"] / 1e6, p50, p99,
               errors, "" if not errors else f"connect {f['connect']} read {f['read']} write {f['write']} "
                                             f"status>=400 {f['status']} timeout {f['timeout']}")
    if healthz:
        row.beside = sum(h["requests"] for h in healthz) / (sum(h["duration_us"] for h in healthz) / 1e6)
    return row


Operation = Callable[[], object]  # one unit of work; raises on any unexpected answer


def python_load(backend: str, name: str, make_operation: Callable[[int], Operation], clients: int,
                beside: Callable[[int], Operation] | None = None) -> Load:
    """A closed-loop generator: each client thread runs its operation back to back, for the
    warm-up and then for SECONDS (in ROUNDS turns with ``beside``, /healthz, when given); every
    operation's latency is kept for the percentiles."""
    operations = [make_operation(i) for i in range(clients)]  # per-client setup, outside the clock
    yardstick = [beside(i) for i in range(clients)] if beside else []

    def drive(ops: list[Operation], seconds: float) -> tuple[list[float], int, str, float]:
        latencies: list[list[float]] = [[] for _ in ops]
        errors = [0] * len(ops)
        sample: list[str] = []
        start = time.perf_counter()
        deadline = start + seconds

        def client(i: int) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    ops[i]()
                except Exception as exc:  # noqa: BLE001 - every failure counts as an error; the first is shown
                    errors[i] += 1
                    if not sample:
                        sample.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                latencies[i].append(time.perf_counter() - t0)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(ops))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [x for xs in latencies for x in xs], sum(errors), sample[0] if sample else "", time.perf_counter() - start

    drive(operations, WARMUP)
    done: list[float] = []
    errors, sample, elapsed, healthz_done, healthz_elapsed = 0, "", 0.0, 0, 0.0
    for _ in range(ROUNDS if yardstick else 1):
        if yardstick:
            h_done, h_errors, _, h_elapsed = drive(yardstick, SECONDS / ROUNDS)
            healthz_done, healthz_elapsed = healthz_done + len(h_done) + h_errors, healthz_elapsed + h_elapsed
        d, e, sm, el = drive(operations, SECONDS / ROUNDS if yardstick else SECONDS)
        done, errors, sample, elapsed = done + d, errors + e, sample or sm, elapsed + el
    q = statistics.quantiles(done, n=100, method="inclusive") if len(done) >= 2 else [0.0] * 99
    row = Load(backend, name, "python", len(done) + errors, elapsed, q[49] * 1000, q[98] * 1000, errors, sample)
    if yardstick:
        row.beside = healthz_done / healthz_elapsed
    return row


def expect(answer: Answer, status: int, what: str) -> Answer:
    if answer.status != status:
        raise RuntimeError(f"{what}: {answer.status}, expected {status}")
    return answer


def get_operation(base: str, path: str) -> Callable[[int], Operation]:
    return lambda _i: lambda: expect(fetch(base, "GET", path, headers={"Accept-Encoding": BROWSER_ENCODINGS}), 200, path)


def order_operation(base: str) -> Callable[[int], Operation]:
    """Recharge form POST (303 to the sandbox checkout), then the provider's signed notification
    (answered `success`): one order created and credited."""

    def make(i: int) -> Operation:
        visitor = open_form(base, "/recharge")
        card = DEMO_CARDS[i % len(DEMO_CARDS)]
        body = recharge_body(visitor, card)

        def operation() -> None:
            r = expect(fetch(base, "POST", "/recharge", body, {"Cookie": visitor.cookie,
                                                               "Accept-Encoding": BROWSER_ENCODINGS}), 303, "recharge")
            match = re.search(r"/pay/sandbox/(\d+)(?:\?|$)", r.headers.get("location", ""))
            if not match:
                raise RuntimeError(f"recharge: Location {r.headers.get('location')!r}")
            ack = expect(fetch(base, "POST", "/pay/notify/sandbox", notification(match.group(1), "100.00")), 200, "notify")
            if ack.body != b"success":
                raise RuntimeError(f"notify answered {ack.body[:40]!r}")

        return operation

    return make


def pending_orders(database_url: str, count: int, tokens: bool = False) -> list[str]:
    """``count`` pending sandbox orders of 100 yuan on the demo cards, made in this process
    (outside any clock) through the same start_recharge the recharge form uses."""
    from heyon_site import create_app
    from heyon_site.billing.recharge import start_recharge
    from heyon_site.cards.numbers import find_card
    from heyon_site.extensions import db

    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "bench-secret-key", "HEYON_PROVIDERS": ("sandbox",),
                      "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, "RATELIMIT_ENABLED": False})
    numbers: list[str] = []
    with app.app_context():
        cards = [c.id for c in (find_card(number) for number, _ in DEMO_CARDS) if c is not None]
        for i in range(count):
            made = start_recharge(db.session, cards[i % len(cards)], 10_000, "sandbox", "en")
            numbers.append(made.token if tokens else made.order_no)
            if i % 500 == 499:
                db.session.commit()
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return numbers


def notify_operation(base: str, database_url: str) -> Callable[[int], Operation]:
    """The provider's signed notification alone, each for an order made beforehand."""
    per_client = int(os.environ.get("BENCH_NOTIFY_ORDERS", "2500"))
    log(f"making {per_client * CONNECTIONS} pending orders for the notification row")
    orders = pending_orders(database_url, per_client * CONNECTIONS)

    def make(i: int) -> Operation:
        mine = iter(orders[i::CONNECTIONS])

        def operation() -> None:
            order_no = next(mine, None)
            if order_no is None:
                raise RuntimeError("out of pending orders: raise BENCH_NOTIFY_ORDERS")
            ack = expect(fetch(base, "POST", "/pay/notify/sandbox", notification(order_no, "100.00")), 200, "notify")
            if ack.body != b"success":
                raise RuntimeError(f"notify answered {ack.body[:40]!r}")

        return operation

    return make


def load_suite(backend: str, base: str, use_wrk: bool, database_url: str) -> list[Load]:
    """Every endpoint of the table, each with the /healthz of its own tool as the yardstick."""
    visitor = open_form(base, "/balance")
    lookups = tuple(balance_body(visitor, card) for card in DEMO_CARDS)
    check = expect(fetch(base, "POST", "/balance", lookups[0], {"Cookie": visitor.cookie}), 200, "balance lookup")
    if b'id="balance"' not in check.body:
        raise RuntimeError("the balance lookup shows no balance")
    rows: list[Load] = []
    if use_wrk:
        log(f"[{backend}] wrk: /healthz, home, recharge form, balance lookup ({SECONDS:.0f} s each)")
        rows += [wrk_load(backend, "/healthz", base, "/healthz", beside=False),
                 wrk_load(backend, "home /", base, "/"),
                 wrk_load(backend, "recharge form", base, "/recharge"),
                 wrk_load(backend, "FAQ", base, "/faq"),
                 wrk_load(backend, "balance form", base, "/balance"),
                 wrk_load(backend, "balance lookup (POST)", base, "/balance", visitor.cookie, lookups)]
    else:
        log(f"[{backend}] wrk is missing: the Python generator loads the pages too")
        healthz = get_operation(base, "/healthz")
        rows += [python_load(backend, "home /", get_operation(base, "/"), CONNECTIONS, healthz),
                 python_load(backend, "recharge form", get_operation(base, "/recharge"), CONNECTIONS, healthz),
                 python_load(backend, "FAQ", get_operation(base, "/faq"), CONNECTIONS, healthz),
                 python_load(backend, "balance form", get_operation(base, "/balance"), CONNECTIONS, healthz)]
        # The balance lookup is a POST with a session: one visitor per client.
        rows.append(python_load(backend, "balance lookup (POST)", lambda i: _lookup(base, i), CONNECTIONS, healthz))
    log(f"[{backend}] python: /healthz and order created + credited ({SECONDS:.0f} s each)")
    healthz = get_operation(base, "/healthz")
    rows.append(python_load(backend, "/healthz", healthz, CONNECTIONS))
    rows.append(python_load(backend, "order created + credited", order_operation(base), CONNECTIONS, healthz))
    rows.append(python_load(backend, "notification alone", notify_operation(base, database_url), CONNECTIONS, healthz))
    for row in rows:
        if row.beside is not None:  # the /healthz measured in turns with it
            row.vs_healthz = row.rps / row.beside if row.beside else None
        else:  # a /healthz row itself
            row.vs_healthz = 1.0
    return rows


def _lookup(base: str, i: int) -> Operation:
    visitor = open_form(base, "/balance")
    body = balance_body(visitor, DEMO_CARDS[i % len(DEMO_CARDS)])
    return lambda: expect(fetch(base, "POST", "/balance", body, {"Cookie": visitor.cookie,
                                                                 "Accept-Encoding": BROWSER_ENCODINGS}),
                          200, "balance lookup")


def pin_check_ms() -> float:
    """CPU per card-PIN check as the site does it now (a keyed HMAC, security/pins.py), median of
    five rounds of 2,000."""
    from heyon_site.security.passwords import _hasher
    from heyon_site.security.pins import check_pin, hash_pin

    key, legacy = b"bench-pin-key", _hasher(1, 8, 1)
    stored = hash_pin(key, "135790")
    rounds = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(2000):
            check_pin(key, stored, "135790", legacy)
        rounds.append((time.process_time() - t0) / 2000)
    return statistics.median(rounds) * 1000


def argon2_verify_ms() -> float:
    """What one card-password check costs here with the site's argon2id settings."""
    from argon2 import PasswordHasher

    from heyon_site.config import Defaults

    h = PasswordHasher(time_cost=Defaults.ARGON2_TIME_COST, memory_cost=Defaults.ARGON2_MEMORY_COST,
                       parallelism=Defaults.ARGON2_PARALLELISM)
    stored = h.hash("135790")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        h.verify(stored, "135790")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


# ------------------------------------------------------------------ usage from the network

USAGE_CLIENT, USAGE_KEY = "bench-network", "bench-usage-key-0123456789"
USAGE_BATCHES = int(os.environ.get("BENCH_USAGE_BATCHES", "5"))
USAGE_BATCH = 1000  # the most one request may carry (README: Interfaces)
USAGE_CARDS = 200  # the charges of a batch spread over this many cards, as calls of many customers are
USAGE_KINDS = ("voice", "data", "sms")


@dataclass
class Usage:
    """Batches of USAGE_BATCH charges sent one after another by one client, as the network's
    charging system sends them: each answered in full before the next."""

    backend: str
    name: str
    batches: int
    seconds: float
    p50_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: int = 0
    error_sample: str = ""

    @property
    def batches_per_second(self) -> float:
        return self.batches / self.seconds if self.seconds else 0.0

    @property
    def charges_per_second(self) -> float:
        return self.batches_per_second * USAGE_BATCH


def usage_cards(database_url: str) -> list[str]:
    """USAGE_CARDS new cards holding 1,000 yuan each (enough for every batch), made in this
    process outside any clock, through the same create_card as `flask cards add`."""
    from heyon_site import create_app
    from heyon_site.cards.services import create_card
    from heyon_site.extensions import db

    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "bench-secret-key", "HEYON_PROVIDERS": ("sandbox",),
                      "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, "RATELIMIT_ENABLED": False})
    numbers = [f"8699{i:012d}" for i in range(USAGE_CARDS)]
    with app.app_context():
        for number in numbers:
            create_card(number, "135790", 100_000)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return numbers


def usage_body(cards: list[str], batch: str) -> str:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({"charges": [
        {"id": f"{batch}-{i:04d}", "card": cards[i % len(cards)], "amount": f"0.{1 + i % 9:02d}", "at": at,
         "kind": USAGE_KINDS[i % len(USAGE_KINDS)], "description": "bench usage"} for i in range(USAGE_BATCH)]})


def usage_signed(body: str) -> dict[str, str]:
    """The client's three headers (README: Interfaces): HMAC-SHA256 of "<timestamp>.<body>"."""
    stamp = str(int(time.time()))
    mac = hmac.new(USAGE_KEY.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Heyon-Client": USAGE_CLIENT, "X-Heyon-Timestamp": stamp,
            "X-Heyon-Signature": mac}


def usage_suite(backend: str, base: str, database_url: str) -> list[Usage]:
    """USAGE_BATCHES new batches (every charge applied), then the same batches sent again (every
    charge a duplicate, as when the network retries after a lost answer), after one warm-up batch."""
    log(f"[{backend}] usage: {USAGE_BATCHES} batches of {USAGE_BATCH:,} charges over {USAGE_CARDS} new cards, "
        "then the same again")
    cards = usage_cards(database_url)
    run = uuid.uuid4().hex[:8]
    send_batches(backend, base, [usage_body(cards, f"{run}-warm")], "applied", "warm-up")
    bodies = [usage_body(cards, f"{run}-{b}") for b in range(USAGE_BATCHES)]
    return [send_batches(backend, base, bodies, "applied", f"usage batch of {USAGE_BATCH:,}, applied"),
            send_batches(backend, base, bodies, "duplicate", f"usage batch of {USAGE_BATCH:,}, sent again")]


def send_batches(backend: str, base: str, bodies: list[str], expected: str, name: str) -> Usage:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors, sample = 0, ""
    start = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        r = fetch(base, "POST", "/api/v1/usage", body, usage_signed(body))
        latencies.append(time.perf_counter() - t0)
        found = [item["status"] for item in json.loads(r.body)["results"]] if r.status == 200 else []
        for status in found:
            statuses[status] = statuses.get(status, 0) + 1
        if r.status != 200 or found != [expected] * USAGE_BATCH:
            errors += 1
            sample = sample or f"{r.status}: {r.body[:200]!r}"
    elapsed = time.perf_counter() - start
    return Usage(backend, name, len(bodies), elapsed, statistics.median(latencies) * 1000, max(latencies) * 1000,
                 statuses, errors, sample)


def usage_markdown(usage: list[Usage]) -> list[str]:
    out = ["", "## Usage from the network (POST /api/v1/usage)", "",
           f"Batches of {USAGE_BATCH:,} charges over {USAGE_CARDS} cards, sent one after another by one client and "
           "each answered in full (chunks of 100 charges per write transaction) before the next; then the same "
           "batches again, every charge a duplicate.", "",
           "| database | batches | batches/s | charges/s | p50 ms per batch | max ms | answers | errors |",
           "|---|---|---:|---:|---:|---:|---|---:|"]
    for u in usage:
        answers = ", ".join(f"{k} {v:,}" for k, v in sorted(u.statuses.items()))
        out.append(f"| {u.backend} | {u.name} | {u.batches_per_second:.2f} | {u.charges_per_second:,.0f} | "
                   f"{u.p50_ms:.0f} | {u.max_ms:.0f} | {answers} | {u.errors} |")
    out += [f"\nErrors in {u.backend} {u.name}: {u.error_sample}" for u in usage if u.errors]
    return out


# ------------------------------------------------------------------ page weight


@dataclass
class Weight:
    page: str
    raw: int
    gzip: int
    br: int


def page_weights(base: str) -> list[Weight]:
    """Bytes of each customer page and static file as served: uncompressed, gzip and brotli."""
    order_operation(base)(0)()  # one credited order, so the order page and its receipt exist
    visitor = open_form(base, "/balance")
    lookup = balance_body(visitor, DEMO_CARDS[0])
    result = fetch(base, "POST", "/balance", lookup, {"Cookie": visitor.cookie}).body.decode()
    order = re.search(r'href="(/orders/[\w-]+)"', result)
    page = fetch(base, "GET", "/").body.decode()
    targets: list[tuple[str, str, str]] = [("home", "GET", "/"), ("recharge", "GET", "/recharge"), ("faq", "GET", "/faq"),
                                           ("balance form", "GET", "/balance"), ("balance result", "POST", "/balance")]
    if order:
        targets += [("order", "GET", order.group(1)), ("receipt", "GET", order.group(1) + "/receipt")]
    receipt = fetch(base, "GET", order.group(1) + "/receipt").body.decode() if order else ""
    for url in dict.fromkeys(re.findall(r'(?:href|src)="(/static/[^"]+)"', page + receipt)):
        targets.append((url.split("?")[0].removeprefix("/static/"), "GET", url))
    weights = []
    for name, method, path in targets:
        sizes = {}
        for encoding in ("identity", "gzip", "br"):
            headers = {"Accept-Encoding": encoding}
            body = None
            if method == "POST":
                headers["Cookie"] = visitor.cookie
                body = lookup
            r = expect(fetch(base, method, path, body, headers), 200, name)
            if r.headers.get("content-encoding", "identity") != encoding:
                raise RuntimeError(f"{name}: asked for {encoding}, got {r.headers.get('content-encoding')}")
            sizes[encoding] = len(r.body)
        weights.append(Weight(name, sizes["identity"], sizes["gzip"], sizes["br"]))
    return weights


# ------------------------------------------------------------------ Lighthouse


@dataclass
class Lighthouse:
    page: str
    runs: int
    score: float | None = None
    accessibility: float | None = None
    lcp_ms: float | None = None
    total_bytes: float | None = None
    requests: list[str] = field(default_factory=list)
    skipped: str = ""


def lighthouse_binary() -> Path | None:
    """bench/node_modules/.bin/lighthouse, installed from the lock file on first use."""
    binary = BENCH / "node_modules" / ".bin" / "lighthouse"
    if binary.exists():
        return binary
    if not shutil.which("npm"):
        return None
    log("installing Lighthouse into bench/node_modules (npm ci, pinned by bench/package-lock.json)")
    # --ignore-scripts: nothing may download a browser; Debian's Chromium is used.
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=BENCH, check=True,
                   stdout=subprocess.DEVNULL)
    return binary if binary.exists() else None


def chromium() -> str | None:
    if Path(CHROME).exists():
        return CHROME
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing Debian's chromium (apt-get install -y chromium)")
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return CHROME if Path(CHROME).exists() else None


def lighthouse(base: str, pages: dict[str, str], runs: int) -> list[Lighthouse]:
    if runs <= 0:
        return [Lighthouse(name, 0, skipped="BENCH_LIGHTHOUSE_RUNS=0") for name in pages]
    binary, chrome = lighthouse_binary(), chromium()
    if binary is None or chrome is None:
        why = "npm is missing" if binary is None else f"no Chromium at {CHROME}"
        return [Lighthouse(name, 0, skipped=why) for name in pages]
    results = []
    for name, path in pages.items():
        scores, a11y, lcps, totals, requests = [], [], [], [], []
        for i in range(runs):
            log(f"Lighthouse (mobile) {name}: run {i + 1} of {runs}")
            done = subprocess.run(
                [str(binary), base + path, "--quiet", "--output=json", "--output-path=stdout",
                 "--only-categories=performance,accessibility", f"--chrome-flags={CHROME_FLAGS}"],
                capture_output=True, text=True, timeout=180, env={**os.environ, "CHROME_PATH": chrome}, check=False)
            if done.returncode:
                raise RuntimeError(f"lighthouse failed:\n{done.stderr[-2000:]}")
            report = json.loads(done.stdout)
            audits = report["audits"]
            scores.append(report["categories"]["performance"]["score"] * 100)
            a11y.append(report["categories"]["accessibility"]["score"] * 100)
            lcps.append(audits["largest-contentful-paint"]["numericValue"])
            totals.append(audits["total-byte-weight"]["numericValue"])
            requests = [f"{item['url'].replace(base, '')} {item.get('statusCode')} {item.get('transferSize')} B"
                        for item in audits["network-requests"]["details"]["items"]]
        results.append(Lighthouse(name, runs, statistics.median(scores), statistics.median(a11y),
                                  statistics.median(lcps), statistics.median(totals), requests))
    return results


# ------------------------------------------------------------------ report


def markdown(loads: list[Load], weights: list[Weight], lighthouses: list[Lighthouse], argon2_ms: float,
             verdicts: list[tuple[str, str, bool | None]], usage: list[Usage]) -> str:
    setup = (f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, gunicorn {WORKERS} sync workers; "
             f"load from the same machine ({CONNECTIONS} connections, {SECONDS:.0f} s per row after a {WARMUP:.0f} s "
             f"warm-up). Requests send `Accept-Encoding: {BROWSER_ENCODINGS}` as a phone browser does. "
             f"One argon2id check (staff passwords; card PINs before the keyed scheme) costs {argon2_ms:.0f} ms here. "
             f"Load average before the run: {LOAD_BEFORE:.2f} (other work on the machine skews every figure).")
    out = [f"# Benchmark, {time.strftime('%Y-%m-%d %H:%M')}", "", setup, "",
           "## Throughput and latency", "",
           f"Each row but /healthz is measured in {ROUNDS} turns with /healthz (same tool), and its ratio is "
           "to that /healthz, given beside it: on a shared machine a yardstick taken minutes apart moves by half.",
           "",
           "| database | endpoint | load tool | req/s | p50 ms | p99 ms | errors | vs /healthz in turns (its req/s) |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in loads:
        ratio = f"{r.vs_healthz:.0%}" if r.vs_healthz is not None else "-"
        if r.beside is not None:
            ratio += f" ({r.beside:.0f})"
        out.append(f"| {r.backend} | {r.name} | {r.tool} | {r.rps:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
                   f"{r.errors} | {ratio} |")
    errors = [r for r in loads if r.errors]
    out += [f"\nErrors in {r.backend} {r.name}: {r.error_sample}" for r in errors]
    out += usage_markdown(usage)
    out += ["", "## Page weight (bytes as served)", "", "| page | raw | gzip | br |", "|---|---:|---:|---:|"]
    out += [f"| {w.page} | {w.raw} | {w.gzip} | {w.br} |" for w in weights]
    out += ["", "## Lighthouse, mobile (simulated slow 4G, 4x CPU), median of runs", "",
            "| page | runs | performance | accessibility | LCP ms | total bytes |", "|---|---:|---:|---:|---:|---:|"]
    for lh in lighthouses:
        if lh.skipped:
            out.append(f"| {lh.page} | skipped: {lh.skipped} | | | | |")
        else:
            out.append(f"| {lh.page} | {lh.runs} | {lh.score:.0f} | {lh.accessibility:.0f} | {lh.lcp_ms:.0f} | "
                       f"{lh.total_bytes:.0f} |")
    for lh in lighthouses:
        if lh.requests:
            out.append(f"\nRequests of {lh.page}: " + "; ".join(lh.requests))
    out += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {t} | {m} | {verdict(ok)} |" for t, m, ok in verdicts]
    return "\n".join(out) + "\n"


def verdict(ok: bool | None) -> str:
    return "met" if ok else "missed" if ok is False else "not measured"


def lighthouse_pages(base: str, database_url: str) -> dict[str, str]:
    """The customer pages in both languages, an order page, and the blank 1 KB floor."""
    order = order_token_path(base, database_url)
    pages = {BLANK: "/bench/blank"}
    for lang in ("en", "zh"):
        for name, path in (("home", "/"), ("recharge", "/recharge"), ("balance", "/balance"), ("faq", "/faq"),
                           ("order", order)):
            pages[f"{name} ({lang})"] = f"{path}?lang={lang}"
    return pages


def order_token_path(base: str, database_url: str) -> str:
    """A pending order's page, as the customer sees it while paying."""
    return "/orders/" + pending_orders(database_url, 1, tokens=True)[0]


def judge(loads: list[Load], lighthouses: list[Lighthouse], pin_ms: float,
          usage: list[Usage]) -> list[tuple[str, str, bool | None]]:
    verdicts: list[tuple[str, str, bool | None]] = [
        (f"card-PIN check <= {TARGETS['pin_check_ms']:.0f} ms of CPU", f"{pin_ms:.3f} ms",
         pin_ms <= TARGETS["pin_check_ms"])]
    floor = next((lh.lcp_ms for lh in lighthouses if lh.page == BLANK and not lh.skipped), None)
    for lh in lighthouses:
        measured = not lh.skipped
        if lh.page == BLANK:
            continue
        verdicts.append((f"Lighthouse mobile performance and accessibility {TARGETS['lighthouse_score']} on {lh.page}",
                         f"{lh.score:.0f} / {lh.accessibility:.0f}" if measured else lh.skipped,
                         lh.score is not None and lh.accessibility is not None
                         and min(lh.score, lh.accessibility) >= TARGETS["lighthouse_score"] if measured else None))
        ratio = lh.lcp_ms / floor if measured and floor and lh.lcp_ms is not None else None
        verdicts.append((f"LCP <= {TARGETS['lcp_ms'] / 1000:.2f} s or <= {TARGETS['lcp_floor_ratio']}x the blank "
                         f"page on {lh.page}",
                         f"{lh.lcp_ms / 1000:.2f} s" + (f", {ratio:.2f}x" if ratio else "")
                         if measured and lh.lcp_ms is not None else "-",
                         lh.lcp_ms is not None and (lh.lcp_ms <= TARGETS["lcp_ms"] or (ratio or 99)
                                                    <= TARGETS["lcp_floor_ratio"]) if measured else None))
    for r in loads:
        if r.name in PAGE_ROWS and r.vs_healthz is not None:
            verdicts.append((f"{r.backend} {r.name} >= {TARGETS['page_ratio']:.2f}x /healthz",
                             f"{r.vs_healthz:.2f}x", r.vs_healthz >= TARGETS["page_ratio"]))
        if r.name == "order created + credited" and r.vs_healthz is not None:
            verdicts.append((f"{r.backend} credited order >= {TARGETS['order_ratio']:.2f}x /healthz",
                             f"{r.vs_healthz:.3f}x", r.vs_healthz >= TARGETS["order_ratio"]))
        if r.name == "notification alone" and r.vs_healthz is not None:
            verdicts.append((f"{r.backend} notification alone >= {TARGETS['notify_ratio']:.2f}x /healthz",
                             f"{r.vs_healthz:.3f}x", r.vs_healthz >= TARGETS["notify_ratio"]))
    total_errors = sum(r.errors for r in loads)
    verdicts.append(("zero errors under load", str(total_errors), total_errors == 0))
    for u in usage:
        verdicts.append((f"{u.backend} {u.name}: every charge answered as expected",
                         f"{u.errors} batches otherwise", u.errors == 0))
    return verdicts


LOAD_BEFORE = os.getloadavg()[0]
BLANK = "blank 1 KB page"


def main() -> int:
    if LOAD_BEFORE > 0.5:
        log(f"warning: load average {LOAD_BEFORE:.2f}: something else is running, and the figures will show it")
    RESULTS.mkdir(exist_ok=True)
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (apt-get install -y wrk)")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk:
        log("wrk not found (apt-get install -y wrk): using the Python load generator for every row")
    loads: list[Load] = []
    weights: list[Weight] = []
    lighthouses: list[Lighthouse] = []
    usage: list[Usage] = []
    with tempfile.TemporaryDirectory(prefix="heyon-bench-") as tmp:
        logfile = Path(tmp) / "gunicorn.log"
        sqlite_url = f"sqlite:///{tmp}/bench.db"
        log("sqlite: building a fresh database (flask db upgrade, seed-demo, faq seed)")
        prepare_database(sqlite_url)
        with serving(sqlite_url, logfile) as base:
            weights = page_weights(base)
            lighthouses = lighthouse(base, lighthouse_pages(base, sqlite_url), LIGHTHOUSE_RUNS)
            loads += load_suite("sqlite", base, use_wrk, sqlite_url)
            usage += usage_suite("sqlite", base, sqlite_url)
        server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if server:
            with scratch_postgres(server) as pg_url:
                log("postgresql: scratch database " + pg_url.rsplit("/", 1)[-1])
                prepare_database(pg_url)
                with serving(pg_url, logfile) as base:
                    loads += load_suite("postgresql", base, use_wrk, pg_url)
                    usage += usage_suite("postgresql", base, pg_url)
        else:
            log("postgresql: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL, e.g. postgresql:///test)")
        argon2_ms, pin_ms = argon2_verify_ms(), pin_check_ms()
        verdicts = judge(loads, lighthouses, pin_ms, usage)
        report = markdown(loads, weights, lighthouses, argon2_ms, verdicts, usage)
        errors_in_log = [ln for ln in logfile.read_text(errors="replace").splitlines()
                         if "Traceback" in ln or "[ERROR]" in ln]
        if errors_in_log:
            report += "\nServer log errors:\n" + "\n".join(errors_in_log[:20]) + "\n"
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": SECONDS, "connections": CONNECTIONS,
        "workers": WORKERS, "argon2_verify_ms": argon2_ms, "pin_check_ms": pin_ms, "load_average_before": LOAD_BEFORE,
        "loads": [{**asdict(r), "rps": r.rps} for r in loads], "weights": [asdict(w) for w in weights],
        "lighthouse": [asdict(lh) for lh in lighthouses],
        "usage": [{**asdict(u), "batches_per_second": u.batches_per_second, "charges_per_second": u.charges_per_second}
                  for u in usage],
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in verdicts]}, indent=2))
    print(report)
    log(f"written: {RESULTS / 'latest.md'} and latest.json")
    for target, measured, ok in verdicts:
        print(f"{target}: {measured}: {verdict(ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
