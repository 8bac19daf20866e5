"""`make bench-scale`: do the customer pages and the staff search stay flat at a million cards?

Builds two databases of the same shape, one of SCALE_SMALL_CARDS cards (default 10,000) and one of
SCALE_CARDS (default 1,000,000), on SQLite (files in a temporary directory) and on a scratch
PostgreSQL database when BENCH_DATABASE_URL (or TEST_DATABASE_URL) names a server; every database
is deleted or dropped afterwards. Each card has an opening balance, three credited recharge orders
(the first with a bonus), each with its verified payment event, and one order that was not
credited: 4 orders, 5 ledger entries and 3 payment events per card, so 1M cards make 4M orders,
5M ledger entries and 3M payment events, which satisfy every invariant of `flask ledger verify`
(checked at both sizes). Orders are spread evenly over two years, each card's four orders a
quarter of that apart, as cards bought over time are recharged now and then.

Then it measures, at both sizes, the same operations through the real code with production
settings (argon2id at the RFC 9106 cost), and writes the figures side by side with their ratio and
the query plans at the large size to bench/results/scale-latest.md and .json:

- balance lookup: POST /balance with the right password (the Flask test client), and its database
  part alone (find_card, summary);
- the order page: GET /orders/<token>;
- staff order search (heyon_site.staff.queries.search_orders) by order number, by the card's last
  four digits, by a day and a status, by a day alone, and by a status alone.

Settings (environment): SCALE_CARDS, SCALE_SMALL_CARDS, SCALE_SAMPLES (requests per operation,
default 300), SCALE_LOOKUPS (balance lookups, default 200: each costs one argon2id check),
SCALE_SECONDS (time cap per operation, default 20), SCALE_VERIFY (0 skips `ledger verify` at the
large size), SCALE_BACKENDS (default "sqlite,postgresql"), BENCH_DATABASE_URL.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# After the path, so `python bench/scale.py` finds the package.
import brotli
from flask import Flask
from sqlalchemy import Engine, event, select

from heyon_site import create_app
from heyon_site.billing import ledger
from heyon_site.cards.services import summary
from heyon_site.cards.numbers import find_card
from heyon_site.cards.auth import hash_card_pin
from heyon_site.config import card_number_digest
from heyon_site.database import scratch_postgres
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from heyon_site.staff.queries import search_orders

RESULTS = ROOT / "bench" / "results"
LARGE = int(os.environ.get("SCALE_CARDS", "1000000"))
SMALL = int(os.environ.get("SCALE_SMALL_CARDS", "10000"))
SAMPLES = int(os.environ.get("SCALE_SAMPLES", "300"))
LOOKUPS = int(os.environ.get("SCALE_LOOKUPS", "200"))
SECONDS = float(os.environ.get("SCALE_SECONDS", "20"))
VERIFY_LARGE = os.environ.get("SCALE_VERIFY", "1") != "0"
BACKENDS = tuple(b.strip() for b in os.environ.get("SCALE_BACKENDS", "sqlite,postgresql").split(",") if b.strip())
WARMUP = 5
PASSWORD = "135790"
# The site's card key for this run: the generated rows carry the digests the site will look up.
CARD_KEY = b"scale-bench-card-key"
TIMEZONE = "Asia/Shanghai"
BROWSER_ENCODINGS = "gzip, deflate, br, zstd"
# Disk per card, measured: SQLite about 2.9 KB, PostgreSQL 3.7 KB (one database exists at a time).
# The run refuses to start without room for the larger one, twice over.
BYTES_PER_CARD = 4_000
BATCH = 50_000

# The shape of the data: per card, an opening entry and ORDERS orders, all credited (the first
# of them with a bonus) but one, which is in a state that moves no money.
ORDERS = 4
CREDITED = ORDERS - 1
SPAN = timedelta(days=730)
PRESETS_FEN = (5_000, 10_000, 20_000)
OTHER_STATES = ("expired",) * 5 + ("failed",) * 3 + ("pending", "review")
REASONS = {"expired": "timeout", "failed": "closed_by_provider", "review": "paid_after_close", "pending": None}
PROMO = json.dumps({"id": 1, "kind": "percent_bonus", "percent_bp": 500, "title_en": "5% bonus"}, sort_keys=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the data


def stamp(t: datetime) -> str:
    """A time as SQLAlchemy stores it on SQLite (always with microseconds, so text order is time
    order), which PostgreSQL's COPY reads as a timestamp too."""
    return t.isoformat(" ", "microseconds")


@dataclass(frozen=True)
class Shape:
    """Every row is a function of the card count, so both databases hold the same data."""

    cards: int
    end: datetime  # when the newest order was created

    @property
    def orders(self) -> int:
        return self.cards * ORDERS

    @property
    def start(self) -> datetime:
        return self.end - SPAN

    def number(self, card_id: int) -> str:
        # Sequential ids end in every last-four equally often: one card in 10,000 shares them.
        return f"86{card_id:014d}"

    def opening_fen(self, card_id: int) -> int:
        return 1_000 + (card_id % 50) * 100

    def order_id(self, card_id: int, nth: int) -> int:
        # Round by round: a card's orders lie a quarter of the span apart, as in real life.
        return nth * self.cards + card_id

    def amount_fen(self, order_id: int) -> int:
        return PRESETS_FEN[order_id % len(PRESETS_FEN)]

    def card_of(self, order_id: int) -> tuple[int, int]:
        """The card of an order, and which of its orders it is (from 0)."""
        nth, rest = divmod(order_id - 1, self.cards)
        return rest + 1, nth

    def status(self, order_id: int) -> str:
        # Which order moved no money changes from card to card, so any day has orders in every
        # state, the newest days included.
        card_id, nth = self.card_of(order_id)
        if nth != card_id % ORDERS:
            return "credited"
        return OTHER_STATES[(card_id // ORDERS) % len(OTHER_STATES)]

    def bonus_fen(self, order_id: int) -> int:
        """A card's first credited order carried a 5% bonus."""
        card_id, nth = self.card_of(order_id)
        return self.amount_fen(order_id) // 20 if nth == (1 if card_id % ORDERS == 0 else 0) else 0

    @cached_property
    def step(self) -> timedelta:
        return SPAN / self.orders

    def order_time(self, order_id: int) -> datetime:
        return self.start + self.step * (order_id - 1)

    def card_time(self, card_id: int) -> datetime:
        return self.start - timedelta(days=30) + timedelta(days=30) * (card_id - 1) / self.cards

    def balance_fen(self, card_id: int) -> int:
        ids = [self.order_id(card_id, nth) for nth in range(ORDERS)]
        return self.opening_fen(card_id) + sum(self.amount_fen(i) + self.bonus_fen(i) for i in ids
                                               if self.status(i) == "credited")

    def order_no(self, order_id: int, created: datetime | None = None) -> str:
        t = created or self.order_time(order_id)
        return f"{t.year % 100:02d}{t.month:02d}{t.day:02d}{order_id:010d}"

    # -------------------------------------------------------------- rows, table by table

    def card_rows(self, password_hash: str) -> Iterator[tuple[Any, ...]]:
        for c in range(1, self.cards + 1):
            number = self.number(c)
            yield (c, card_number_digest(CARD_KEY, number), number[-4:], password_hash,
                   "active", self.balance_fen(c), stamp(self.card_time(c)))

    def order_rows(self) -> Iterator[tuple[Any, ...]]:
        rng = random.Random(self.cards)  # the tokens are random, as the site's are, but repeatable
        token = base64.urlsafe_b64encode
        after = {"credited": timedelta(seconds=90), "failed": timedelta(seconds=90), "expired": timedelta(hours=2)}
        created = self.start
        for i in range(1, self.orders + 1):
            status = self.status(i)
            amount, bonus = self.amount_fen(i), self.bonus_fen(i)
            paid = status in ("credited", "review")
            final = created + after[status] if status in after else None
            at = stamp(created)
            yield (i, self.order_no(i, created), token(rng.randbytes(18)).decode(), (i - 1) % self.cards + 1, "sandbox",
                   status, amount, amount, bonus, PROMO if bonus else None, f"SBX{i:012d}" if paid else None,
                   amount if paid else None, REASONS.get(status), "zh_Hans", at, stamp(final) if final else at,
                   stamp(final) if final else None)
            created += self.step

    def entry_rows(self) -> Iterator[tuple[Any, ...]]:
        entry_id = 0
        for c in range(1, self.cards + 1):
            entry_id += 1
            yield entry_id, c, None, "opening", self.opening_fen(c), f"card:{c}:opening", stamp(self.card_time(c))
        for i in range(1, self.orders + 1):
            if self.status(i) != "credited":
                continue
            card_id, at = (i - 1) % self.cards + 1, stamp(self.order_time(i) + timedelta(seconds=90))
            entry_id += 1
            yield entry_id, card_id, i, "recharge", self.amount_fen(i), f"order:{i}:recharge", at
            if self.bonus_fen(i):
                entry_id += 1
                yield entry_id, card_id, i, "bonus", self.bonus_fen(i), f"order:{i}:bonus", at

    def event_rows(self) -> Iterator[tuple[Any, ...]]:
        event_id = 0
        for i in range(1, self.orders + 1):
            if self.status(i) == "credited":
                event_id += 1
                yield (event_id, "sandbox", f"SBX{i:012d}", "paid", i, self.amount_fen(i), "credited",
                       stamp(self.order_time(i) + timedelta(seconds=90)))


TABLES: dict[str, tuple[str, ...]] = {
    "cards": ("id", "number_digest", "last4", "password_hash", "status", "balance_fen", "created_at"),
    "recharge_orders": ("id", "order_no", "token", "card_id", "provider", "status", "amount_fen", "pay_fen",
                        "bonus_fen", "promo_snapshot", "provider_txn_id", "paid_fen", "status_reason", "locale",
                        "created_at", "updated_at", "finalized_at"),
    "ledger_entries": ("id", "card_id", "order_id", "kind", "amount_fen", "key", "created_at"),
    "payment_events": ("id", "provider", "provider_txn_id", "kind", "order_id", "amount_fen", "outcome",
                       "created_at"),
}


def rows_of(shape: Shape, table: str, password_hash: str) -> Iterator[tuple[Any, ...]]:
    return {"cards": lambda: shape.card_rows(password_hash), "recharge_orders": shape.order_rows,
            "ledger_entries": shape.entry_rows, "payment_events": shape.event_rows}[table]()


def batches(rows: Iterable[tuple[Any, ...]], size: int = BATCH) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------ scratch databases and loading


@dataclass
class Database:
    backend: str
    cards: int
    url: str = ""
    load_seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    table_bytes: dict[str, int] = field(default_factory=dict)
    verify_seconds: float | None = None
    verify_ok: bool | None = None
    verify_violations: list[str] = field(default_factory=list)

    @property
    def load_total(self) -> float:
        return sum(self.load_seconds.values())


def migrate(url: str) -> None:
    """The schema exactly as production has it: the real migrations, triggers and all."""
    from flask_migrate import upgrade

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "scale-bench", "HEYON_CARD_KEY": CARD_KEY.decode(), "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


def load_sqlite(path: Path, shape: Shape, password_hash: str, into: Database) -> None:
    """executemany in one transaction per table, with the journal and fsync off for the load only:
    a crash mid-load loses nothing but a scratch file. The app's own connections put WAL and
    synchronous=NORMAL back when they open it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1048576", "temp_store=MEMORY"):
            conn.execute(f"PRAGMA {pragma}")
        for table, columns in TABLES.items():
            t0 = time.perf_counter()
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            count = 0
            conn.execute("BEGIN")
            for batch in batches(rows_of(shape, table, password_hash)):
                conn.executemany(sql, batch)
                count += len(batch)
            conn.execute("COMMIT")
            into.load_seconds[table] = time.perf_counter() - t0
            into.rows[table] = count
            log(f"  {table}: {count:,} rows in {into.load_seconds[table]:.1f} s")
        # The load ran without foreign keys (a raw connection has them off): check them all now.
        t0 = time.perf_counter()
        broken = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
        if broken:
            raise RuntimeError(f"generated rows break foreign keys: {broken}")
        into.load_seconds["foreign keys"] = time.perf_counter() - t0
        log(f"  foreign keys checked: {into.load_seconds['foreign keys']:.1f} s")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def load_postgres(url: str, shape: Shape, password_hash: str, into: Database) -> None:
    """COPY, table by table, with the indexes and CHECK and UNIQUE constraints in place. The
    foreign keys are dropped for the load and added back, as the migration defined them, after
    it: adding one checks every row in a single join, where keeping it checks each row on its
    own (half the load time). Then the sequences are moved past the ids given, and VACUUM ANALYZE
    does what autovacuum would do in the minutes after such a load."""
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        foreign_keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)", (list(TABLES),)).fetchall()
        for table, name, _definition in foreign_keys:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for table, columns in TABLES.items():
            t0 = time.perf_counter()
            count = 0
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows_of(shape, table, password_hash):
                        copy.write_row(row)
                        count += 1
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {count})")
            into.load_seconds[table] = time.perf_counter() - t0
            into.rows[table] = count
            log(f"  {table}: {count:,} rows in {into.load_seconds[table]:.1f} s")
        t0 = time.perf_counter()
        for table, name, definition in foreign_keys:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        into.load_seconds["foreign keys"] = time.perf_counter() - t0
        log(f"  foreign keys added back and checked: {into.load_seconds['foreign keys']:.1f} s")
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        into.load_seconds["vacuum analyze"] = time.perf_counter() - t0
        log(f"  vacuum analyze: {into.load_seconds['vacuum analyze']:.1f} s")
        into.size_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        for table in TABLES:
            into.table_bytes[table] = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]


@contextlib.contextmanager
def sqlite_database(tmp: Path, shape: Shape, password_hash: str) -> Iterator[Database]:
    path = tmp / f"scale-{shape.cards}.db"
    found = Database("sqlite", shape.cards, f"sqlite:///{path}")
    try:
        migrate(found.url)
        load_sqlite(path, shape, password_hash, found)
        found.size_bytes = sum(p.stat().st_size for p in tmp.glob(path.name + "*"))
        yield found
    finally:
        for p in tmp.glob(path.name + "*"):
            p.unlink()


@contextlib.contextmanager
def postgres_database(server: str, shape: Shape, password_hash: str) -> Iterator[Database]:
    """A database of our own on that server, loaded, and dropped afterwards."""
    with scratch_postgres(server, "heyon_scale") as url:
        found = Database("postgresql", shape.cards, url)
        migrate(found.url)
        load_postgres(found.url, shape, password_hash, found)
        yield found


# ------------------------------------------------------------------ measuring


@dataclass
class Timing:
    backend: str
    cards: int
    operation: str
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentiles(ms: list[float]) -> tuple[float, float, float]:
    if len(ms) < 2:
        return (ms[0], ms[0], ms[0]) if ms else (0.0, 0.0, 0.0)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[98], max(ms)


def interleaved(name: str, small: Callable[[int], None], large: Callable[[int], None],
                samples: int) -> tuple[list[float], list[float]]:
    """``small(i)`` and ``large(i)`` by turns (which goes first alternates), each timed: whatever
    else the machine does at that moment weighs on both sizes alike. Stops after SECONDS once both
    have 20 samples: a slow operation is reported from fewer samples (the count is shown)."""
    for i in range(min(WARMUP, samples)):
        small(samples + i)
        large(samples + i)
    done: tuple[list[float], list[float]] = ([], [])
    deadline = time.perf_counter() + SECONDS
    for i in range(samples):
        for side in ((0, 1) if i % 2 else (1, 0)):
            t0 = time.perf_counter()
            (small, large)[side](i)
            done[side].append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() > deadline and i + 1 >= 20:
            log(f"  {name}: time cap reached after {i + 1} samples")
            break
    return done


def site(url: str) -> Flask:
    """The app as production configures it (argon2id at full cost), minus the per-IP limits: one
    client sending hundreds of lookups would measure the limiter's 429s (as bench/serve.py)."""
    return create_app({"DATABASE_URL": url, "SECRET_KEY": "scale-bench", "HEYON_CARD_KEY": CARD_KEY.decode(), "RATELIMIT_ENABLED": False,
                       "HEYON_PROVIDERS": ("sandbox",), "HEYON_SANDBOX_SECRET": "scale-bench",
                       "HEYON_TIMEZONE": TIMEZONE, "HEYON_LOG_LEVEL": "WARNING"})


@dataclass
class Plan:
    backend: str
    operation: str
    statement: str
    parameters: str
    plan: str


class Captured:
    """The SELECTs the real code sends while it runs, with their parameters, to explain them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []

    def _hook(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            self.statements.append((statement, parameters))

    def __enter__(self) -> Self:
        event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)


def explain(backend: str, operation: str, statements: list[tuple[str, Any]]) -> list[Plan]:
    plans = []
    seen: set[str] = set()
    with db.engine.connect() as conn:
        for statement, parameters in statements:
            if statement in seen:
                continue
            seen.add(statement)
            if backend == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
                depth: dict[int, int] = {0: 0}
                lines = []
                for node, parent, _unused, detail in rows:
                    depth[node] = depth.get(parent, 0) + 1
                    lines.append("  " * (depth[node] - 1) + detail)
            else:
                lines = [r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)]
            plans.append(Plan(backend, operation, " ".join(statement.split()), repr(parameters), "\n".join(lines)))
            conn.rollback()
    return plans


def csrf_token(body: bytes) -> str:
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', body)
    if not match:
        raise RuntimeError("the balance form carries no CSRF token")
    return match.group(1).decode()


@dataclass
class Subject:
    """One database under measurement: its app and each operation as ``operation(i)``, the i-th
    sample (cards, orders and days drawn at random beforehand, so each call does only its work)."""

    found: Database
    shape: Shape
    app: Flask
    operations: dict[str, Callable[[int], None]]
    searches: tuple[str, ...]


def subject(found: Database, shape: Shape) -> Subject:
    app = site(found.url)
    rng = random.Random(20260101 + shape.cards)
    tz = ZoneInfo(TIMEZONE)
    cards = [rng.randint(1, shape.cards) for _ in range(max(SAMPLES, LOOKUPS) + WARMUP)]
    order_ids = [rng.randint(1, shape.orders) for _ in range(SAMPLES + WARMUP)]
    # Days inside the span, in the site's time zone; both ends of the range are that one day.
    days = [(shape.start + timedelta(days=rng.randint(2, SPAN.days - 2))).date() for _ in range(SAMPLES + WARMUP)]
    with app.app_context():
        tokens = dict(db.session.execute(select(RechargeOrder.id, RechargeOrder.token)
                                         .where(RechargeOrder.id.in_(order_ids))).all())
        db.session.remove()

    client = app.test_client()
    headers = {"Accept-Encoding": BROWSER_ENCODINGS}
    token = csrf_token(client.get("/balance").data)

    def lookup(i: int) -> None:
        r = client.post("/balance", headers=headers, data={"csrf_token": token, "card_number": shape.number(cards[i]),
                                                           "password": PASSWORD})
        body = r.get_data()
        body = brotli.decompress(body) if r.headers.get("Content-Encoding") == "br" else body
        if r.status_code != 200 or b'id="balance"' not in body:
            raise RuntimeError(f"balance lookup answered {r.status_code}")

    def order_page(i: int) -> None:
        r = client.get(f"/orders/{tokens[order_ids[i]]}", headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"order page answered {r.status_code}")

    def in_context(work: Callable[[int], object]) -> Callable[[int], None]:
        """Each call in its own app context and session, as each request has."""
        def call(i: int) -> None:
            with app.app_context():
                try:
                    work(i)
                finally:
                    db.session.remove()
        return call

    def find(i: int) -> None:
        if find_card(shape.number(cards[i])) is None:
            raise RuntimeError("card not found")

    day: Callable[[int], date] = lambda i: days[i]
    searches: dict[str, Callable[[int], object]] = {
        "staff search: order number": lambda i: search_orders(tz, order_no=shape.order_no(order_ids[i])),
        "staff search: card last 4 digits": lambda i: search_orders(tz, last4=shape.number(cards[i])[-4:]),
        "staff search: one day + status credited": lambda i: search_orders(tz, date_from=day(i), date_to=day(i),
                                                                           status="credited"),
        "staff search: one day, any status": lambda i: search_orders(tz, date_from=day(i), date_to=day(i)),
        "staff search: status pending": lambda i: search_orders(tz, status="pending"),
    }
    operations: dict[str, Callable[[int], None]] = {
        LOOKUP: lookup,
        "order page, GET /orders/<token>": order_page,
        "balance DB part: find_card(number)": in_context(find),
        "balance DB part: summary(card_id)": in_context(lambda i: summary(cards[i])),
        **{name: in_context(work) for name, work in searches.items()},
    }
    return Subject(found, shape, app, operations, tuple(searches))


LOOKUP = "balance lookup, POST /balance"


def measure(small: Subject, large: Subject) -> list[Timing]:
    timings = []
    for name in small.operations:
        got = interleaved(name, small.operations[name], large.operations[name], LOOKUPS if name == LOOKUP else SAMPLES)
        for who, ms in zip((small, large), got, strict=True):
            p50, p99, top = percentiles(ms)
            timings.append(Timing(who.found.backend, who.shape.cards, name, len(ms), p50, p99, top))
        log(f"  {name}: p50 {timings[-2].p50_ms:.2f} ms -> {timings[-1].p50_ms:.2f} ms, "
            f"p99 {timings[-2].p99_ms:.2f} ms -> {timings[-1].p99_ms:.2f} ms")
    return timings


def plans_of(large: Subject) -> list[Plan]:
    """The plan of every SELECT that one run of each operation sends (the balance lookup's database
    part is the lookup's own queries, so it is not explained twice)."""
    with large.app.app_context():
        engine = db.engine
    plans: list[Plan] = []
    for name, run in large.operations.items():
        if "DB part" in name:
            continue
        with Captured(engine) as seen:
            run(0)
        with large.app.app_context():
            plans += explain(large.found.backend, name, seen.statements)
    return plans


def dispose(who: Subject) -> None:
    with who.app.app_context():
        db.engine.dispose()


def verify(found: Database) -> None:
    """`flask ledger verify` on the generated books: the proof that the data is consistent."""
    app = site(found.url)
    with app.app_context():
        t0 = time.perf_counter()
        verdict = ledger.verify(db.session)
        found.verify_seconds = time.perf_counter() - t0
        found.verify_ok = verdict.ok
        found.verify_violations = verdict.violations[:10]
        db.session.remove()
        db.engine.dispose()
    log(f"  ledger verify: {'ok' if verdict.ok else 'VIOLATIONS'} in {found.verify_seconds:.1f} s "
        f"({verdict.cards:,} cards, {verdict.entries:,} entries, {verdict.credited_orders:,} credited orders)")
    if not verdict.ok:
        raise RuntimeError("the generated data breaks the ledger's invariants:\n" + "\n".join(verdict.violations[:10]))


# ------------------------------------------------------------------ report


def flat(small: Timing, large: Timing) -> bool:
    """Flat: the median at most doubles, or grows by less than a millisecond (below that, a ratio
    of two tiny figures says more about the machine than about the data)."""
    return large.p50_ms <= 2 * small.p50_ms or large.p50_ms - small.p50_ms < 1.0


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def markdown(databases: list[Database], timings: list[Timing], plans: list[Plan], pin_hash_ms: float) -> str:
    out = [f"# Scale benchmark, {time.strftime('%Y-%m-%d %H:%M')}", "",
           (f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}. "
           f"Load average before the run: {LOAD_BEFORE:.2f}. Per card: an opening entry, {CREDITED} credited "
           f"orders (the first with a bonus) each with its payment event, 1 order in another state: "
           f"{ORDERS} orders, {CREDITED + 2} ledger entries, {CREDITED} payment events. Orders spread over "
           f"{SPAN.days} days. Every card has the same keyed PIN hash, computed once ({pin_hash_ms:.2f} ms; "
           "checking a PIN costs the same whichever card's salt it is)."), "",
           ("Latency through the Flask test client in this process, one request at a time, production settings "
           "(keyed PIN check; rate limits off as in `make bench`): what changes with the size of the "
           "data is the database work, and gunicorn plus a load generator on the same cores would add a constant "
           "cost and noise to both sizes. The database parts are the same functions the views call, each in its "
           f"own app context and session. Both sizes are open at once and each operation is timed on them by "
           f"turns, so that other work on the machine weighs on both alike: {WARMUP} warm-up calls, then up to "
           f"{SAMPLES} samples ({LOOKUPS} for the balance lookup) on random cards, orders and days, stopped after "
           f"{SECONDS:.0f} s (with at least 20 samples)."), "",
           "## Generation", "",
           "| database | cards | rows: cards / orders / ledger / events | seconds per table | total s | size |",
           "|---|---:|---|---|---:|---:|"]
    for d in databases:
        rows = " / ".join(f"{d.rows.get(t, 0):,}" for t in TABLES)
        secs = ", ".join(f"{t} {s:.1f}" for t, s in d.load_seconds.items())
        out.append(f"| {d.backend} | {d.cards:,} | {rows} | {secs} | {d.load_total:.0f} | {mib(d.size_bytes)} |")
    for d in databases:
        if d.table_bytes:
            out.append(f"\n{d.backend} {d.cards:,} cards, tables with their indexes: "
                       + ", ".join(f"{t} {mib(b)}" for t, b in d.table_bytes.items()))
    out += ["", "`flask ledger verify` on the generated books:", ""]
    for d in databases:
        if d.verify_seconds is not None:
            out.append(f"- {d.backend}, {d.cards:,} cards: {'ok' if d.verify_ok else 'violations'} "
                       f"in {d.verify_seconds:.1f} s")
        else:
            out.append(f"- {d.backend}, {d.cards:,} cards: not run (SCALE_VERIFY=0)")
    out += ["", f"## Latency, {SMALL:,} cards against {LARGE:,} cards", "",
            "| database | operation | samples | small p50 / p99 ms | large p50 / p99 ms | p50 ratio | p99 ratio | flat |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for t in timings:
        if t.cards != LARGE:
            continue
        small = next((s for s in timings if s.cards == SMALL and s.backend == t.backend and s.operation == t.operation), None)
        if small is None:
            continue
        out.append(f"| {t.backend} | {t.operation} | {small.samples} / {t.samples} | {small.p50_ms:.2f} / "
                   f"{small.p99_ms:.2f} | {t.p50_ms:.2f} / {t.p99_ms:.2f} | {t.p50_ms / small.p50_ms:.2f} | "
                   f"{t.p99_ms / small.p99_ms:.2f} | {'yes' if flat(small, t) else '**no**'} |")
    out += ["", "Flat: the median at most doubles, or grows by less than 1 ms.", "",
            f"## Query plans at {LARGE:,} cards", "",
            ("Every SELECT the code sent for one run of each operation (SQLite: `EXPLAIN QUERY PLAN`, without "
            "`ANALYZE` statistics, as the site runs; PostgreSQL: `EXPLAIN (ANALYZE, BUFFERS)` after "
            "`VACUUM ANALYZE`). Writes (the card-password throttle) are left out.")]
    for p in plans:
        out += ["", f"### {p.backend}: {p.operation}", "", "```sql", p.statement, "-- " + p.parameters, "```", "",
                "```", p.plan, "```"]
    return "\n".join(out) + "\n"


LOAD_BEFORE = os.getloadavg()[0]


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    if SMALL >= LARGE:
        raise SystemExit("SCALE_SMALL_CARDS must be below SCALE_CARDS")
    tmp_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_root).free
    if free < 2 * BYTES_PER_CARD * LARGE:
        raise SystemExit(f"{mib(free)} free in {tmp_root}: {LARGE:,} cards need about {mib(BYTES_PER_CARD * LARGE)}")
    if LOAD_BEFORE > 0.5:
        log(f"warning: load average {LOAD_BEFORE:.2f}: something else is running, and the figures will show it")
    t_start = time.perf_counter()
    with site("sqlite://").app_context():
        t0 = time.perf_counter()
        # Every card shares one keyed PIN hash (the site's key, derived from SECRET_KEY here):
        # a lookup then costs what it costs on a site whose cards were issued after the change.
        password_hash = hash_card_pin(PASSWORD)
        pin_hash_ms = (time.perf_counter() - t0) * 1000
    # The newest order an hour ago, so "today" in the site's time zone has orders too.
    end = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    databases: list[Database] = []
    timings: list[Timing] = []
    plans: list[Plan] = []
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    backends = [b for b in BACKENDS if b == "sqlite" or server]
    if "postgresql" in BACKENDS and not server:
        log("postgresql: skipped (set BENCH_DATABASE_URL or TEST_DATABASE_URL, e.g. postgresql:///test)")
    with tempfile.TemporaryDirectory(prefix="heyon-scale-") as tmp:
        for backend in backends:
            # Both sizes exist at once (the small one is a few MiB), so they can be measured by turns.
            with contextlib.ExitStack() as stack:
                pair = []
                for cards in (SMALL, LARGE):
                    shape = Shape(cards, end)
                    log(f"[{backend}] {cards:,} cards: generating")
                    found = stack.enter_context(sqlite_database(Path(tmp), shape, password_hash) if backend == "sqlite"
                                                else postgres_database(server or "", shape, password_hash))
                    log(f"[{backend}] {cards:,} cards: {found.load_total:.0f} s, {mib(found.size_bytes)}")
                    databases.append(found)
                    pair.append(subject(found, shape))
                small, large = pair
                log(f"[{backend}] measuring {SMALL:,} and {LARGE:,} cards by turns")
                timings += measure(small, large)
                plans += plans_of(large)
                for who in pair:
                    dispose(who)
                    if who is small or VERIFY_LARGE:
                        verify(who.found)
    report = markdown(databases, timings, plans, pin_hash_ms)
    report += f"\nWhole run: {(time.perf_counter() - t_start) / 60:.1f} minutes.\n"
    (RESULTS / "scale-latest.md").write_text(report)
    (RESULTS / "scale-latest.json").write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "small_cards": SMALL, "large_cards": LARGE,
        "load_average_before": LOAD_BEFORE, "pin_hash_ms": pin_hash_ms,
        "databases": [{**asdict(d), "url": d.url.rsplit("/", 1)[-1]} for d in databases],
        "timings": [asdict(t) for t in timings], "plans": [asdict(p) for p in plans]}, indent=2))
    print(report)
    log(f"written: {RESULTS / 'scale-latest.md'} and scale-latest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
