"""`make soak`: minutes of mixed traffic against the site as production serves it, then proof
that the books still balance.

Serves wsgi:app under gunicorn on 127.0.0.1 with the per-IP limits kept in Redis, as production
must with more than one worker: on SQLite with 4 workers, and on a scratch PostgreSQL database
with two servers of 2 workers each (traffic spread over both) when BENCH_DATABASE_URL or
TEST_DATABASE_URL names a server. SOAK_CLIENTS threads mix, for SOAK_SECONDS per backend:

- customer pages: home, recharge form, amount quote, FAQ and its search, order pages, receipts;
- balance lookups with right passwords, and wrong passwords on a card of their own, whose
  per-card throttle engages (403 and 429 are the right answers there);
- recharges paid by signed sandbox notifications: some sent twice, some twice at once (to both
  servers), some held back and delivered after newer ones, some followed by a stale "closed"
  notice; "check payment now" on orders still pending;
- a signed-in admin creating, editing, publishing and unpublishing FAQ entries, and switching
  a bonus promotion on and off while customers recharge.

Then, per backend: no 5xx and no request left unanswered, every answer the one its request
expects, `flask ledger verify` exits 0, every order whose payment notification was answered
`success` credited exactly once (one recharge ledger entry) and no order more than once, every
FAQ entry whose creation was answered stored with its audit row. Prints requests, answers by
status class and p50/p99 latency per kind of request; writes bench/results/soak-latest.md and
.json; exits 1 if any check fails.

Settings (environment): SOAK_SECONDS (per backend, default 120), SOAK_CLIENTS (default 8),
SOAK_REDIS_URL (default redis://127.0.0.1:6379), SOAK_MAX_REQUESTS (default 300),
BENCH_DATABASE_URL or TEST_DATABASE_URL.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from run import (
    DEMO_CARDS,
    PYTHON,
    RESULTS,
    ROOT,
    Answer,
    fetch,
    log,
    notification,
    prepare_database,
    scratch_postgres,
    serving,
    site_env,
)

SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
REDIS_URL = os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
# Production recycles a worker every 2000 (+ up to 200) requests; far fewer here, so that every
# worker is replaced a few times under load, and a restart that loses a request or a credit shows.
MAX_REQUESTS = int(os.environ.get("SOAK_MAX_REQUESTS", "300"))
SQLITE_WORKERS = 4
PG_SERVERS, PG_WORKERS = 2, 2
STAFF_USER, STAFF_PASSWORD = "soak-admin", "soak-admin-password"
# Its own card, so that the throttle the wrong passwords set off never touches the cards that
# the right-password lookups and the recharges use.
THROTTLED_CARD = ("8600000000009991", "909090")
WRONG = "balance lookup, wrong password"  # the kind of request that sets its throttle off
FAQ_MARK = "Soak question"
FAQ_QUERIES = ("充值", "余额", "密码", "soak", "card", "退款")
LOAD_BEFORE = os.getloadavg()[0]
CSRF = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"')
APPROVE = re.compile(rb'<form method="post" action="(/staff/promotions/\d+/approve)"[^>]*>(.*?)</form>', re.S)
ORDER_LINK = re.compile(rb'href="/orders/([\w-]+)">(\d+)</a>')


def limit_env(storage_uri: str, prefix: str) -> dict[str, str]:
    """Rate limits for the servers under soak.

    The limits stay on, in Redis shared by every worker and both servers, as production runs
    them. But all the traffic comes from one address (127.0.0.1), and the per-IP limits count
    per address: at their production values they would refuse nearly every form after the first
    minute, so they are raised far above the soak's rate. The per-card password throttle is in
    the database and is untouched; the wrong-password traffic is what sets it off.
    """
    high = "1000000 per minute"
    return {"RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": storage_uri, "RATELIMIT_KEY_PREFIX": prefix,
            "HEYON_IP_LIMIT": high, "HEYON_IP_FAILURE_LIMIT": high, "HEYON_CHECK_LIMIT": high}


# ------------------------------------------------------------------ what the clients saw


@dataclass
class Hit:
    kind: str
    status: int  # 0: no answer (refused, reset, timed out)
    seconds: float
    unexpected: bool


@dataclass
class Told:
    """What the clients were told, to hold the database to afterwards."""

    acknowledged: set[str] = field(default_factory=set)  # orders whose payment notice got `success`
    faq_created: int = 0  # FAQ creations answered with the redirect to the list
    tokens: dict[str, str] = field(default_factory=dict)  # order number -> order page token


class Recorder:
    """Every request of every client: kind, status, latency; samples of the bad answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.samples: dict[str, str] = {}
        self.broken = 0  # steps a client could not take: the answer before lacked what they need
        self.book = Told()

    def request(self, kind: str, base: str, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200,),
                check: Callable[[Answer], str | None] | None = None) -> Answer | None:
        """One request; None when it got no answer, or not the answer its kind expects."""
        t0 = time.perf_counter()
        problem: str | None = None
        try:
            answer: Answer | None = fetch(base, method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            answer, problem = None, f"no answer: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        if answer is not None:
            problem = (f"status {answer.status}, expected {'/'.join(map(str, expect))}"
                       if answer.status not in expect else (check(answer) if check else None))
        status = answer.status if answer is not None else 0
        with self.lock:
            self.hits.append(Hit(kind, status, elapsed, problem is not None))
            if problem is not None:
                body_text = answer.body[:300].decode(errors="replace") if answer is not None else ""
                self.samples.setdefault(f"{kind}: {problem.split(',')[0]}",
                                        f"{method} {path} -> {problem}; body: {body_text!r}")
        return answer if problem is None else None


# ------------------------------------------------------------------ one client


class Browser:
    """A cookie jar of one: the site's signed session cookie, kept current."""

    def __init__(self) -> None:
        self.cookie = ""

    def headers(self, htmx: bool = False) -> dict[str, str]:
        h = {"Cookie": self.cookie} if self.cookie else {}
        return {**h, "HX-Request": "true"} if htmx else h

    def keep(self, answer: Answer | None) -> Answer | None:
        if answer is not None and answer.headers.get("set-cookie"):
            self.cookie = answer.headers["set-cookie"].split(";")[0]
        return answer


def token_of(answer: Answer) -> str:
    match = CSRF.search(answer.body)
    if not match:
        raise LookupError("no CSRF token in the page")
    return match.group(1).decode()


def needs(marker: bytes) -> Callable[[Answer], str | None]:
    return lambda a: None if marker in a.body else f"{marker.decode()!r} missing"


def acknowledged(answer: Answer) -> str | None:
    return None if answer.body == b"success" else f"answered {answer.body[:40]!r}"


def path_of(location: str) -> str:
    return urlsplit(location).path


@dataclass
class Notice:
    """A payment notification not delivered yet (held back so newer ones overtake it)."""

    order_no: str
    body: str


class Client:
    """One simulated person at a time: a customer, or the admin at the back office."""

    def __init__(self, n: int, bases: list[str], rec: Recorder, late: deque[Notice]) -> None:
        self.rng = random.Random(n)
        self.bases, self.rec, self.late = bases, rec, late
        self.customer, self.staff = Browser(), Browser()
        self.staff_signed_in = False

    def base(self) -> str:
        return self.rng.choice(self.bases)

    def run(self, deadline: float) -> None:
        actions: list[tuple[Callable[[], None], int]] = [
            (self.browse, 30), (self.lookup, 16), (self.wrong_password, 8), (self.recharge, 24),
            (self.order_page, 12), (self.staff_edit, 10)]
        work, weights = zip(*actions, strict=True)
        while time.monotonic() < deadline:
            try:
                self.rng.choices(work, weights)[0]()
            except LookupError as exc:  # an answer without what the next step needs
                with self.rec.lock:
                    self.rec.broken += 1
                    self.rec.samples.setdefault(f"(step broken off): {exc}", str(exc))

    # -------------------------------------------------------------- customer

    def browse(self) -> None:
        base, c = self.base(), self.customer
        page = self.rng.choice(("/", "/recharge", "/faq", "faq search", "faq search (htmx)", "quote (htmx)"))
        if page == "faq search":
            query = urlencode({"q": self.rng.choice(FAQ_QUERIES)})
            c.keep(self.rec.request("faq search", base, "GET", f"/faq?{query}", headers=c.headers()))
        elif page == "faq search (htmx)":
            query = urlencode({"q": self.rng.choice(FAQ_QUERIES)})
            c.keep(self.rec.request("faq search (htmx)", base, "GET", f"/faq?{query}", headers=c.headers(htmx=True)))
        elif page == "quote (htmx)":
            query = urlencode({"amount": self.rng.choice(("50", "100", "200")), "method": "sandbox"})
            c.keep(self.rec.request("amount quote (htmx)", base, "GET", f"/recharge/quote?{query}",
                                    headers=c.headers(htmx=True)))
        else:
            kind = {"/": "home", "/recharge": "recharge form", "/faq": "faq"}[page]
            c.keep(self.rec.request(kind, base, "GET", page, headers=c.headers()))

    def form_token(self, base: str, path: str, kind: str) -> str | None:
        page = self.customer.keep(self.rec.request(kind, base, "GET", path, headers=self.customer.headers(),
                                                   check=needs(b'name="csrf_token"')))
        return token_of(page) if page else None

    def lookup(self) -> None:
        base = self.base()
        token = self.form_token(base, "/balance", "balance form")
        if token is None:
            return
        card = self.rng.choice(DEMO_CARDS)
        body = urlencode({"csrf_token": token, "card_number": card[0], "password": card[1]})
        answer = self.rec.request("balance lookup", base, "POST", "/balance", body, self.customer.headers(),
                                  check=needs(b'id="balance"'))
        if answer is not None:
            found = {no.decode(): t.decode() for t, no in ORDER_LINK.findall(answer.body)}
            with self.rec.lock:
                self.rec.book.tokens.update(found)

    def wrong_password(self) -> None:
        base = self.base()
        token = self.form_token(base, "/balance", "balance form")
        if token is None:
            return
        pin = f"{self.rng.randrange(10**6):06d}"
        if pin == THROTTLED_CARD[1]:
            return
        body = urlencode({"csrf_token": token, "card_number": THROTTLED_CARD[0], "password": pin})
        # 403 while the card allows attempts, 429 once its throttle holds it back or locks it.
        self.rec.request(WRONG, base, "POST", "/balance", body, self.customer.headers(),
                         expect=(403, 429))

    def recharge(self) -> None:
        base = self.base()
        token = self.form_token(base, "/recharge", "recharge form")
        if token is None:
            return
        self.deliver_late()
        card = self.rng.choice(DEMO_CARDS)
        preset = self.rng.random() < 0.8
        body = urlencode({"csrf_token": token, "card_number": card[0], "password": card[1], "method": "sandbox",
                          "amount": self.rng.choice(("50", "100", "200")) if preset else "",
                          "custom_amount": "" if preset else f"{self.rng.randint(10, 500)}.{self.rng.randint(0, 99):02d}"})
        answer = self.rec.request("recharge (POST)", base, "POST", "/recharge", body, self.customer.headers(),
                                  expect=(303,), check=lambda a: None if "/pay/sandbox/" in a.headers.get("location", "")
                                  else f"Location {a.headers.get('location')!r}")
        if answer is None:
            return
        location = urlsplit(answer.headers["location"])
        gateway = f"{location.path}?{location.query}"  # the page's address is signed (?sign=)
        page = self.rec.request("sandbox payment page", self.base(), "GET", gateway, headers=self.customer.headers(),
                                check=needs(b'class="amount"'))
        amount = re.search(rb'class="amount">\D*([\d,]+\.\d\d)<', page.body) if page else None
        if amount is None:
            return
        self.pay(location.path.rsplit("/", 1)[1], amount.group(1).decode().replace(",", ""))

    def pay(self, order_no: str, yuan: str) -> None:
        """The provider's notification, delivered the ways real providers deliver them."""
        trade_no = "SBX" + uuid.uuid4().hex[:20].upper()
        body = notification(order_no, yuan, trade_no=trade_no)
        how = self.rng.random()
        if how < 0.15:  # held back: newer orders' notifications overtake it
            with self.rec.lock:
                self.late.append(Notice(order_no, body))
            return
        self.notify("notification", order_no, body, self.base())
        if how < 0.30:  # the provider did not hear our answer and sends it again, as a new message
            self.notify("notification, repeated", order_no, notification(order_no, yuan, trade_no=trade_no),
                        self.base())
        elif how < 0.45:  # two deliveries of one payment at the same moment, one to each server
            again = notification(order_no, yuan, trade_no=trade_no)
            other = threading.Thread(target=self.notify, args=("notification, twice at once", order_no, again,
                                                               self.bases[-1]))
            other.start()
            self.notify("notification, twice at once", order_no, again, self.bases[0])
            other.join()
        elif how < 0.55:  # a stale "closed" for the same trade arrives after the payment
            closed = notification(order_no, yuan, status="TRADE_CLOSED", trade_no=trade_no)
            self.rec.request("notification, closed after paid", self.base(), "POST", "/pay/notify/sandbox", closed,
                             check=acknowledged)

    def notify(self, kind: str, order_no: str, body: str, base: str) -> None:
        if self.rec.request(kind, base, "POST", "/pay/notify/sandbox", body, check=acknowledged) is not None:
            with self.rec.lock:
                self.rec.book.acknowledged.add(order_no)

    def deliver_late(self, keep: int = 3) -> None:
        """The oldest held-back notification, once a few newer ones have gone out before it."""
        with self.rec.lock:
            notice = self.late.popleft() if len(self.late) > keep else None
        if notice is not None:
            self.notify("notification, late (out of order)", notice.order_no, notice.body, self.base())

    def order_page(self) -> None:
        """An order the balance lookups listed: its page, then "check payment now" while it is
        pending, or its receipt once credited."""
        with self.rec.lock:
            known = list(self.rec.book.tokens.values())
        if not known:
            self.lookup()
            return
        base, c, token = self.base(), self.customer, self.rng.choice(known)
        page = c.keep(self.rec.request("order page", base, "GET", f"/orders/{token}", headers=c.headers()))
        if page is not None and b"/check" in page.body:
            body = urlencode({"csrf_token": token_of(page)})
            self.rec.request("check payment now", base, "POST", f"/orders/{token}/check", body, c.headers(),
                             expect=(303,))
        elif page is not None and b"/receipt" in page.body:
            self.rec.request("receipt", base, "GET", f"/orders/{token}/receipt", headers=c.headers())

    # -------------------------------------------------------------- staff

    def staff_request(self, kind: str, method: str, path: str, fields: dict[str, str] | None = None,
                      expect: tuple[int, ...] = (200,)) -> Answer | None:
        """A staff page or form; every staff page a GET fetches has a form whose token comes next."""
        body = urlencode(fields) if fields is not None else None
        check = needs(b'name="csrf_token"') if method == "GET" else None
        return self.staff.keep(self.rec.request(kind, self.base(), method, path, body, self.staff.headers(),
                                                expect=expect, check=check))

    def sign_in(self) -> bool:
        page = self.staff_request("staff sign-in page", "GET", "/staff/login")
        if page is None:
            return False
        done = self.staff_request("staff sign-in", "POST", "/staff/login", {
            "csrf_token": token_of(page), "username": STAFF_USER, "password": STAFF_PASSWORD}, expect=(303,))
        self.staff_signed_in = done is not None
        return self.staff_signed_in

    def staff_edit(self) -> None:
        if not self.staff_signed_in and not self.sign_in():
            return
        listing = self.staff_request("staff FAQ list", "GET", "/staff/faq", expect=(200,))
        if listing is None:
            return
        token = token_of(listing)
        ours = re.findall(rb'<li id="faq-(\d+)" class="faq-entry">\s*<p><strong>' + FAQ_MARK.encode()
                          + rb'.*?action="(/staff/faq/\d+/(?:un)?publish)"', listing.body, re.DOTALL)
        step = self.rng.random()
        if step < 0.3 or not ours:
            form = self.staff_request("staff FAQ new form", "GET", "/staff/faq/new")
            if form is not None and self.staff_request("staff FAQ create", "POST", "/staff/faq",
                                                       self.faq_fields(token_of(form)), expect=(303,)):
                with self.rec.lock:
                    self.rec.book.faq_created += 1
        elif step < 0.6:
            entry_id = self.rng.choice(ours)[0].decode()
            form = self.staff_request("staff FAQ edit form", "GET", f"/staff/faq/{entry_id}/edit")
            if form is not None:
                self.staff_request("staff FAQ save", "POST", f"/staff/faq/{entry_id}",
                                   self.faq_fields(token_of(form)), expect=(303,))
        elif step < 0.85:
            action = self.rng.choice(ours)[1].decode()
            self.staff_request("staff FAQ publish/unpublish", "POST", action, {"csrf_token": token}, expect=(303,))
        else:
            self.toggle_promotion()

    def faq_fields(self, token: str) -> dict[str, str]:
        fields = {"csrf_token": token, "locale": "zh_Hans", "category": "Soak",
                  "question": f"{FAQ_MARK} {self.rng.randrange(10**6)}",
                  "answer_md": "An answer with **bold** text and a [link](/recharge).\n\n- one\n- two",
                  "position": str(self.rng.randrange(1000, 2000))}
        return {**fields, "published": "y"} if self.rng.random() < 0.5 else fields

    def toggle_promotion(self) -> None:
        """The bonus switched on or off while customers are quoted and credited by it."""
        page = self.staff_request("staff promotions", "GET", "/staff/promotions")
        action = re.search(rb'action="(/staff/promotions/\d+/(?:un)?publish)"', page.body) if page else None
        if page is not None and action is not None:
            self.staff_request("staff promotion publish/unpublish", "POST", action.group(1).decode(),
                               {"csrf_token": token_of(page)}, expect=(303,))


def create_promotion(base: str) -> None:
    """A bonus of 1 yuan on every recharge (from 10 yuan, the smallest), drafted on the command line
    by ``prepare`` with --publish; the admin approves it here, as the second person must."""
    admin = Client(-1, [base], Recorder(), deque())
    if not admin.sign_in():
        raise RuntimeError("the staff account cannot sign in: " + "; ".join(admin.rec.samples.values()))
    listing = admin.staff_request("setup", "GET", "/staff/promotions")
    button = APPROVE.search(listing.body) if listing is not None else None
    if button is None:
        raise RuntimeError("no promotion to approve: " + "; ".join(admin.rec.samples.values()))
    fields = {name.decode(): value.decode() for name, value in re.findall(rb'name="(\w+)"[^>]*value="([^"]*)"', button.group(2))}
    if admin.staff_request("setup", "POST", button.group(1).decode(), fields, expect=(303,)) is None:
        raise RuntimeError("the promotion was not approved: " + "; ".join(admin.rec.samples.values()))


# ------------------------------------------------------------------ the site under soak


def flask(database_url: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "flask", *args], cwd=ROOT, env={**site_env(database_url), **env},
                          capture_output=True, text=True, check=False)


def prepare(database_url: str, env: dict[str, str]) -> None:
    """The bench's database (migrations, demo cards, FAQ), a card for the wrong passwords, an admin."""
    prepare_database(database_url)
    now = datetime.now()
    # A window of two days around now: its local times are right in any time zone of the site.
    window = ("--starts", (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
              "--ends", (now + timedelta(days=1)).strftime("%Y-%m-%d %H:%M"))
    for args in (("cards", "create", THROTTLED_CARD[0], "--password", THROTTLED_CARD[1], "--balance", "5"),
                 ("staff", "create", STAFF_USER, "--role", "admin", "--password", STAFF_PASSWORD),
                 ("promos", "create", "--title-zh", "浸泡测试赠送", "--title-en", "Soak bonus", "--kind", "fixed_bonus",
                  "--threshold", "10", "--value", "1", *window, "--publish")):
        done = flask(database_url, env, *args)
        if done.returncode:
            raise RuntimeError(f"flask {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")


@dataclass
class Storage:
    uri: str
    prefix: str
    db: int
    keys: Callable[[str], list[bytes]]  # the keys in that database whose names hold the text


@contextlib.contextmanager
def redis_storage() -> Iterator[Storage]:
    """A Redis database and key prefix of this run's own for the rate-limit counters.

    The highest-numbered empty database, so other users of this Redis (tests use the low ones)
    never share a counter with the soak; the prefix keeps two soaks apart even so. Only this
    run's keys are deleted afterwards, never a whole database (the card-spray alarm's counter,
    which the site does not prefix, expires within its minute).
    """
    import redis

    server = redis.Redis.from_url(REDIS_URL + "/0")
    try:
        server.ping()
        chosen = next((n for n in range(15, 0, -1) if redis.Redis.from_url(f"{REDIS_URL}/{n}").dbsize() == 0), 15)
    except redis.RedisError as exc:
        raise RuntimeError(f"Redis at {REDIS_URL} is needed for the shared rate limits (SOAK_REDIS_URL): {exc}") from exc
    prefix = f"heyon-soak-{uuid.uuid4().hex[:8]}"
    mine = redis.Redis.from_url(f"{REDIS_URL}/{chosen}")

    def keys(text: str) -> list[bytes]:
        return list(mine.scan_iter(match=f"*{text}*", count=500))

    try:
        yield Storage(f"{REDIS_URL}/{chosen}", prefix, chosen, keys)
    finally:
        if ours := keys(prefix):
            mine.delete(*ours)


@contextlib.contextmanager
def servers(database_url: str, count: int, workers: int, env: dict[str, str], logdir: Path) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(serving(database_url, logdir / f"gunicorn-{n}.log", workers=workers, app="wsgi:app",
                                           extra_env=env, max_requests=MAX_REQUESTS)) for n in range(count)]


def soak(bases: list[str]) -> Recorder:
    """SOAK_CLIENTS clients for SOAK_SECONDS, then the held-back notifications delivered."""
    rec, late = Recorder(), deque[Notice]()
    clients = [Client(n, bases, rec, late) for n in range(CLIENTS)]
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=c.run, args=(deadline,), name=f"soak-{n}") for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while late:
        clients[0].deliver_late(keep=0)
    return rec


# ------------------------------------------------------------------ the checks


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def invariants(database_url: str, env: dict[str, str], book: Told) -> list[Check]:
    """The books against the database, after the servers stopped."""
    from sqlalchemy import create_engine, text

    from heyon_site.config import database_url as normalised

    verify = flask(database_url, env, "ledger", "verify")
    checks = [Check("flask ledger verify exits 0", verify.returncode == 0, (verify.stdout + verify.stderr).strip()[-800:])]
    engine = create_engine(normalised(database_url, ROOT))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT o.order_no, o.status, COUNT(e.id) FROM recharge_orders o LEFT JOIN ledger_entries e"
                " ON e.order_id = o.id AND e.kind = 'recharge' GROUP BY o.id, o.order_no, o.status")).all()
            faq_rows = conn.scalar(text("SELECT COUNT(*) FROM faq_entries WHERE question LIKE :q"), {"q": FAQ_MARK + "%"})
            faq_audits = conn.scalar(text("SELECT COUNT(*) FROM audit_log WHERE action = 'faq.create'"))
            bonuses = conn.scalar(text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'bonus'"))
    finally:
        engine.dispose()
    orders = {no: (status, entries) for no, status, entries in rows}
    not_once = sorted(no for no in book.acknowledged if orders.get(no, ("missing", 0))[1] != 1)
    twice = sorted(no for no, (_, entries) in orders.items() if entries > 1)
    unpaid_credit = sorted(no for no, (status, entries) in orders.items() if (status == "credited") != (entries == 1))
    credited = sum(1 for status, _ in orders.values() if status == "credited")
    checks += [
        Check("every order whose notification was answered `success` is credited exactly once", not not_once,
              f"{len(book.acknowledged)} acknowledged, {credited} credited of {len(orders)} orders, "
              f"{bonuses} bonus entries" + (f"; not once: {not_once[:10]}" if not_once else "")),
        Check("no order has more than one recharge entry", not twice, ", ".join(twice[:10])),
        Check("an order is credited exactly when it has its recharge entry", not unpaid_credit,
              ", ".join(unpaid_credit[:10])),
        Check("every answered FAQ creation is stored, with its audit row",
              faq_rows == book.faq_created and faq_audits == book.faq_created,
              f"answered {book.faq_created}, stored {faq_rows}, audited {faq_audits}"),
    ]
    return checks


def server_log_errors(logdir: Path) -> list[str]:
    """ERROR and CRITICAL lines of the servers' logs (JSON lines, or gunicorn's own text)."""
    found = []
    for logfile in sorted(logdir.glob("gunicorn-*.log")):
        for line in logfile.read_text(errors="replace").splitlines():
            try:
                level = json.loads(line).get("level", "")
            except (ValueError, AttributeError):
                level = "ERROR" if "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line else ""
            if level in ("ERROR", "CRITICAL"):
                found.append(f"{logfile.name}: {line[:300]}")
    return found


def worker_boots(logdir: Path) -> int:
    """Workers gunicorn started: the first ones, and each replacement of a recycled or dead one."""
    return sum(logfile.read_text(errors="replace").count("Booting worker") for logfile in logdir.glob("gunicorn-*.log"))


# ------------------------------------------------------------------ report


@dataclass
class Row:
    kind: str
    requests: int
    classes: dict[str, int]
    statuses: dict[str, int]
    unexpected: int
    p50_ms: float
    p99_ms: float


STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "no answer")


def table(hits: list[Hit]) -> list[Row]:
    def row(kind: str, mine: list[Hit]) -> Row:
        classes = dict.fromkeys(STATUS_CLASSES, 0)
        for h in mine:
            classes["no answer" if h.status == 0 else f"{h.status // 100}xx"] += 1
        statuses = Counter(str(h.status) for h in mine)
        times = [h.seconds * 1000 for h in mine]
        q = statistics.quantiles(times, n=100, method="inclusive") if len(times) >= 2 else [sum(times)] * 99
        return Row(kind, len(mine), classes, dict(sorted(statuses.items())), sum(h.unexpected for h in mine),
                   q[49], q[98])

    kinds = sorted({h.kind for h in hits})
    return [row(k, [h for h in hits if h.kind == k]) for k in kinds] + [row("all requests", hits)]


@dataclass
class Backend:
    name: str
    setup: str
    seconds: float
    rows: list[Row]
    checks: list[Check]
    samples: dict[str, str]
    log_errors: list[str]
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def answer_checks(rows: list[Row], broken: int) -> list[Check]:
    total = rows[-1]
    wrong = next((r.statuses for r in rows if r.kind == WRONG), {})
    # 3 free attempts, then waits of 2, 4 ... 128 s: 10 failures without a 429 would take over
    # 4 minutes, so from 10 on in a soak of minutes, at least one must have been held back.
    judged = sum(wrong.values()) >= 10
    return [Check("the wrong-password card's throttle engaged (429)", wrong.get("429", 0) > 0 or not judged,
                  ", ".join(f"{n} answered {status}" for status, n in wrong.items())
                  + ("" if judged else " (fewer than 10 attempts: too few to judge)")),
            Check("no 5xx", total.classes["5xx"] == 0, str(total.classes["5xx"])),
            Check("every request answered", total.classes["no answer"] == 0, str(total.classes["no answer"])),
            Check("every answer the one its request expects", total.unexpected == 0 and broken == 0,
                  f"{total.unexpected} unexpected, {broken} steps broken off")]


def markdown(backends: list[Backend], storage: Storage) -> str:
    out = [f"# Soak, {time.strftime('%Y-%m-%d %H:%M')}", "",
           (f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average before the run "
            f"{LOAD_BEFORE:.2f}. {CLIENTS} clients for {SECONDS:.0f} s per backend, from 127.0.0.1; gunicorn "
            f"workers recycled every {MAX_REQUESTS}+ requests; per-IP limits in Redis db {storage.db} (raised: "
            "one address sends everything), the per-card throttle as in production.")]
    for b in backends:
        out += ["", f"## {b.name}", ""]
        if b.skipped:
            out.append(f"Skipped: {b.skipped}")
            continue
        rps = b.rows[-1].requests / b.seconds if b.seconds else 0.0
        out += [f"{b.setup}; {b.rows[-1].requests} requests in {b.seconds:.0f} s ({rps:.1f}/s).", "",
                "| request | count | 2xx | 3xx | 4xx | 5xx | no answer | unexpected | p50 ms | p99 ms |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in b.rows:
            name = f"**{r.kind}**" if r.kind == "all requests" else r.kind
            counts = " | ".join(str(r.classes[c]) for c in STATUS_CLASSES)
            out.append(f"| {name} | {r.requests} | {counts} | {r.unexpected} | {r.p50_ms:.0f} | {r.p99_ms:.0f} |")
        out += ["", "| check | result | detail |", "|---|---|---|"]
        out += [f"| {c.name} | {'ok' if c.ok else 'FAILED'} | {c.detail.replace('|', '/').replace(chr(10), ' ')} |"
                for c in b.checks]
        if b.samples:
            out += ["", "Unexpected answers (one sample of each):", ""]
            out += [f"- {k}: `{v}`" for k, v in sorted(b.samples.items())]
        if b.log_errors:
            out += ["", f"Server log: {len(b.log_errors)} ERROR line(s), the first ones:", ""]
            out += [f"- `{line}`" for line in b.log_errors[:10]]
    return "\n".join(out) + "\n"


def run_backend(name: str, database_url: str, storage: Storage, count: int, workers: int, tmp: Path) -> Backend:
    env = limit_env(storage.uri, f"{storage.prefix}-{name}")
    log(f"{name}: preparing the database")
    prepare(database_url, env)
    logdir = tmp / name
    logdir.mkdir()
    with servers(database_url, count, workers, env, logdir) as bases:
        create_promotion(bases[0])
        log(f"{name}: {CLIENTS} clients for {SECONDS:.0f} s on {', '.join(bases)}")
        started = time.monotonic()
        rec = soak(bases)
        elapsed = time.monotonic() - started
    counters = storage.keys(env["RATELIMIT_KEY_PREFIX"])
    rows = table(rec.hits)
    checks = [*answer_checks(rows, rec.broken),
              Check("per-IP limits counted in Redis, shared by every worker", bool(counters),
                    f"{len(counters)} counters under {env['RATELIMIT_KEY_PREFIX']} in db {storage.db}"),
              *invariants(database_url, env, rec.book)]
    restarts = worker_boots(logdir) - count * workers
    setup = (f"{count} gunicorn server(s) x {workers} sync workers" + (", traffic spread over both" if count > 1 else "")
             + f", {restarts} worker restart(s) during the run")
    return Backend(name, setup, elapsed, rows, checks, rec.samples, server_log_errors(logdir))


def main() -> int:
    sys.path.insert(0, str(ROOT))
    RESULTS.mkdir(exist_ok=True)
    if LOAD_BEFORE > 0.5:
        log(f"warning: load average {LOAD_BEFORE:.2f}: something else is running, and the latencies will show it")
    backends: list[Backend] = []
    with tempfile.TemporaryDirectory(prefix="heyon-soak-") as tmp_name, redis_storage() as storage:
        tmp = Path(tmp_name)
        backends.append(run_backend("sqlite", f"sqlite:///{tmp}/soak.db", storage, 1, SQLITE_WORKERS, tmp))
        server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if server:
            with scratch_postgres(server) as pg_url:
                backends.append(run_backend("postgresql", pg_url, storage, PG_SERVERS, PG_WORKERS, tmp))
        else:
            log("postgresql: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL, e.g. postgresql:///test)")
            backends.append(Backend("postgresql", "", 0, [], [], {}, [],
                                    skipped="set BENCH_DATABASE_URL or TEST_DATABASE_URL (e.g. postgresql:///test)"))
    report = markdown(backends, storage)
    (RESULTS / "soak-latest.md").write_text(report)
    (RESULTS / "soak-latest.json").write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": SECONDS, "clients": CLIENTS,
        "max_requests": MAX_REQUESTS, "load_average_before": LOAD_BEFORE, "redis_db": storage.db,
        "backends": [{"name": b.name, "setup": b.setup, "seconds": b.seconds, "skipped": b.skipped, "ok": b.ok,
                      "rows": [vars(r) for r in b.rows], "checks": [vars(c) for c in b.checks],
                      "unexpected_samples": b.samples, "server_log_errors": b.log_errors[:50]} for b in backends],
    }, indent=2, ensure_ascii=False))
    print(report)
    log(f"written: {RESULTS / 'soak-latest.md'} and soak-latest.json")
    failed = [f"{b.name}: {c.name}" for b in backends for c in b.checks if not c.ok]
    if failed:
        log("SOAK FAILED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
