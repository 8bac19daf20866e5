"""``GET /metrics`` for Prometheus, counted from the database at scrape time.

Why the database and not counters kept in the process: money moves in every gunicorn worker on
every machine, and in ``flask payments reconcile`` run from cron, which exits before anyone could
scrape it. Per-process counters would each hold a slice (prometheus_client's multiprocess mode
joins the workers of one machine, not the cron runs nor the other machines). The rows are shared
by all of them, so any worker of any machine answers a scrape with the same, complete numbers.
They are numbers for the whole site: scrape one target, or take ``max`` over instances, never
``sum``.

What a scrape reads: a grouped count of orders by provider and status, the pending orders, the
outbox's messages by status (its index leads with the status), and
the rows added since the last scrape to the two append-only tables, the ledger and the raw
callbacks. Those are tallied per process (``Tally``), so the histogram and the callback counter
do not re-read history on every scrape. ``heyon_metrics_query_seconds`` shows the cost.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from sqlalchemy import func, select

from heyon_site.config import setting
from heyon_site.extensions import db
from heyon_site.models import (
    ORDER_STATES,
    OUTBOX_STATES,
    LedgerEntry,
    OutboxMessage,
    ProviderCallback,
    RechargeOrder,
    utcnow,
)

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Order creation to the credit's ledger entry, seconds: what the customer waits, from pressing
# Recharge to money on the card. It includes their time on the provider's page, so a slow
# notification shows as weight moving right, and an order rescued by reconciliation (minutes)
# lands in the upper buckets.
LATENCY_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# Outcomes shown as 0 before the first one arrives, so increase() sees the first failure.
WATCHED_OUTCOMES = ("credited", "bad_signature", "malformed")
# Headers by which a proxy says the request is someone else's.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
# A row this old is committed, and its outcome final: a callback's is set within its request
# (gunicorn's timeout is 30 s), a ledger entry never changes.
SETTLED_AFTER = timedelta(minutes=5)

Row = tuple[int, datetime, Any]  # id, when written, what it counts for
Sums = Counter[tuple[str, Any]]  # (provider, what is counted: a status, outcome, bucket bound or total)


class Tally:
    """Sums over an append-only table, kept per process and advanced by id.

    Rows older than ``SETTLED_AFTER`` are added once and remembered; newer ones are read again
    at every scrape. Ids grow in insert order (a PostgreSQL sequence; SQLite's single writer),
    so once a settled row is passed, no row with a smaller id can still be committing.
    """

    def __init__(self, rows_after: Callable[[int], Iterable[Row]], count: Callable[[Sums, Any], None]) -> None:
        self.rows_after, self.count = rows_after, count
        self.last_id = 0
        self.settled: Sums = Counter()
        self.lock = threading.Lock()  # threaded workers may scrape at once

    def read(self, now: datetime) -> Sums:
        with self.lock:
            fresh: Sums = Counter()
            settling = True
            for row_id, written, item in self.rows_after(self.last_id):
                settling = settling and written <= now - SETTLED_AFTER
                if settling:
                    self.count(self.settled, item)
                    self.last_id = row_id
                else:
                    self.count(fresh, item)
            return self.settled + fresh


def _credits_after(last_id: int) -> Iterable[Row]:
    e, o = LedgerEntry, RechargeOrder
    query = (
        select(e.id, e.created_at, o.provider, o.created_at)
        .join(o, e.order_id == o.id)
        .where(e.id > last_id, e.kind == "recharge")
        .order_by(e.id)
        .execution_options(yield_per=5000)
    )
    for row_id, credited_at, provider, ordered_at in db.session.execute(query):
        yield row_id, credited_at, (provider, (credited_at - ordered_at).total_seconds())


def _count_credit(sums: Sums, item: tuple[str, float]) -> None:
    provider, seconds = item
    sums[provider, "count"] += 1
    sums[provider, "sum"] += max(seconds, 0.0)  # type: ignore[assignment]  # a Counter adds floats; typeshed types its values as int
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            sums[provider, bound] += 1


def _callbacks_after(last_id: int) -> Iterable[Row]:
    c = ProviderCallback
    query = (
        select(c.id, c.received_at, c.provider, c.outcome)
        .where(c.id > last_id)
        .order_by(c.id)
        .execution_options(yield_per=5000)
    )
    for row_id, received_at, provider, outcome in db.session.execute(query):
        yield row_id, received_at, (provider, outcome)


def _count_callback(sums: Sums, item: tuple[str, str]) -> None:
    sums[item] += 1


def tallies() -> dict[str, Tally]:
    """This app's tallies (one per database, so every test app starts from nothing)."""
    found: dict[str, Tally] = current_app.extensions.setdefault(
        "heyon.metrics",
        {
            "credits": Tally(_credits_after, _count_credit),
            "callbacks": Tally(_callbacks_after, _count_callback),
        },
    )
    return found


def order_counts() -> dict[tuple[str, str], int]:
    o = RechargeOrder
    rows = db.session.execute(select(o.provider, o.status, func.count()).group_by(o.provider, o.status))
    return {(p, s): int(n) for p, s, n in rows}


def oldest_pending() -> dict[str, datetime]:
    o = RechargeOrder
    rows = db.session.execute(
        select(o.provider, func.min(o.created_at)).where(o.status == "pending").group_by(o.provider)
    )
    return {p: oldest for p, oldest in rows}  # noqa: C416 - dict(rows) would take the Result for a mapping (it has keys())


def outbox_counts() -> dict[str, int]:
    m = OutboxMessage
    return {status: int(n) for status, n in db.session.execute(select(m.status, func.count()).group_by(m.status))}


class SiteCollector:
    """A prometheus_client collector whose every sample comes from the database."""

    def __init__(self, providers: Iterable[str]) -> None:
        self.providers = tuple(providers)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = utcnow()
        counts, pending, messages = order_counts(), oldest_pending(), outbox_counts()
        credits, callbacks = (t.read(now) for t in tallies().values())
        db.session.rollback()
        providers = sorted({*self.providers, *(p for p, _ in counts), *(k[0] for k in callbacks)})

        by_status = GaugeMetricFamily(
            "heyon_recharge_orders",
            'Recharge orders by provider and current status; status="pending" is the pending gauge.',
            labels=["provider", "status"],
        )
        oldest = GaugeMetricFamily(
            "heyon_oldest_pending_order_age_seconds",
            "Age of the oldest pending order (0 when none).",
            labels=["provider"],
        )
        latency = HistogramMetricFamily(
            "heyon_credit_latency_seconds", "Order creation to the credit on the card.", labels=["provider"]
        )
        received = CounterMetricFamily(
            "heyon_provider_callbacks",
            "Provider callbacks by what became of them; bad_signature and malformed "
            "are notifications that failed verification.",
            labels=["provider", "outcome"],
        )
        for p in providers:
            for status in ORDER_STATES:
                by_status.add_metric([p, status], counts.get((p, status), 0))
            oldest.add_metric([p], max((now - pending[p]).total_seconds(), 0.0) if p in pending else 0.0)
            buckets = [(str(b), credits[p, b]) for b in LATENCY_BUCKETS]
            latency.add_metric([p], [*buckets, ("+Inf", credits[p, "count"])], sum_value=credits[p, "sum"])
            for outcome in sorted({*WATCHED_OUTCOMES, *(o for q, o in callbacks if q == p)}):
                received.add_metric([p, outcome], callbacks[p, outcome])

        outbox = GaugeMetricFamily(
            "heyon_outbox_messages",
            'Messages to customers by status; status="dead" were given up and wait for a person (/staff/outbox).',
            labels=["status"],
        )
        for status in OUTBOX_STATES:
            outbox.add_metric([status], messages.get(status, 0))

        cost = GaugeMetricFamily("heyon_metrics_query_seconds", "Time this scrape spent reading the database.")
        cost.add_metric([], time.perf_counter() - started)
        yield from (by_status, oldest, latency, received, outbox, cost)


# ------------------------------------------------------------------ who may read them


def _internal_peer() -> bool:
    """A direct request from loopback or a private network. A proxy on this machine forwards the
    whole internet from 127.0.0.1, so any forwarding header means "not internal"."""
    if any(h in request.headers for h in FORWARDING_HEADERS):
        return False
    try:
        peer = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return peer.is_loopback or peer.is_private


def allowed() -> bool:
    """With ``HEYON_METRICS_TOKEN`` set, the bearer token and nothing else; without, internal
    peers only."""
    token: str = current_app.extensions["heyon.metrics_token"]
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return _internal_peer()


@bp.get("/metrics")
def metrics() -> Response:
    if not allowed():
        abort(404)  # as if there were no such page
    collector = SiteCollector(current_app.extensions.get("heyon.providers", {}))
    try:
        body = generate_latest(collector)
    except Exception:  # a scrape that cannot read the database fails, like /readyz
        current_app.logger.exception("metrics: database unavailable")
        db.session.rollback()
        return Response("database unavailable", 503, content_type="text/plain", headers={"Cache-Control": "no-store"})
    return Response(body, 200, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    # Read once: a token given as a file is not read again on every scrape.
    app.extensions["heyon.metrics_token"] = setting(app.config, "HEYON_METRICS_TOKEN", required=False)
    app.register_blueprint(bp)
