"""/metrics: Prometheus text counted from the database (the same from any process), shown only to
internal peers or to the bearer of the token; /readyz and /metrics fail with the database."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from heyon_site import create_app
from heyon_site.ops import metrics
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, ProviderCallback, RechargeOrder, utcnow

from tests.kit import TEST_CONFIG, ServerLikeClient
from tests.kit import make_card, notification, order, start_order

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.get_data(as_text=True)) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def without_cost(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if k[0] != "heyon_metrics_query_seconds"}


def set_order(order_no: str, **values: object) -> None:
    in_write_transaction(lambda: db.session.execute(
        update(RechargeOrder).where(RechargeOrder.order_no == order_no).values(**values)))


# ------------------------------------------------------------------ who may read them


def test_internal_peers_may_read_them_and_nobody_else(app: Flask, client: FlaskClient) -> None:
    assert scrape(client)  # the test client is 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    for outside in ({"environ_base": {"REMOTE_ADDR": "8.8.8.8"}},
                    {"headers": {"X-Forwarded-For": "203.0.113.9"}},  # a proxy on this machine
                    {"headers": {"Forwarded": "for=203.0.113.9"}}):
        r = client.get("/metrics", **outside)  # type: ignore[arg-type]
        assert r.status_code == 404 and "heyon_" not in r.get_data(as_text=True)


def test_with_a_token_only_its_bearer_may_read_them(database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-scrape-token\n")
    built = create_app({**TEST_CONFIG, "DATABASE_URL": database, "HEYON_METRICS_TOKEN_FILE": str(secret)})
    built.test_client_class = ServerLikeClient
    c = built.test_client()
    assert c.get("/metrics").status_code == 404  # loopback is not enough once a token is set
    assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert c.get("/metrics", headers={"Authorization": "Basic s3cr3t-scrape-token"}).status_code == 404
    assert scrape(c, Authorization="Bearer s3cr3t-scrape-token")
    r = c.get("/metrics", headers={"Authorization": "bearer s3cr3t-scrape-token", "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200  # from anywhere, through a proxy too
    with built.app_context():
        db.engine.dispose()


# ------------------------------------------------------------------ what they say


def test_orders_callbacks_latency_and_the_pending_backlog(app: Flask, client: FlaskClient) -> None:
    make_card()
    paid, waiting, closed = start_order(client), start_order(client, amount="50"), start_order(client, amount="200")
    assert client.post("/pay/notify/sandbox", data=notification(paid, "100.00")).get_data(as_text=True) == "success"
    client.post("/pay/notify/sandbox", data=notification(closed, "200.00", status="TRADE_CLOSED"))
    client.post("/pay/notify/sandbox", data=notification(waiting, "50.00", secret="forged"))
    client.post("/pay/notify/sandbox", data=notification(waiting, "50.00", status="TRADE_WAIT_OF_NOTHING"))
    # The credit came 45 s after the order was made; the pending one is ten minutes old.
    credited_at = db.session.scalar(select(LedgerEntry.created_at).where(LedgerEntry.order_id == order(paid).id))
    set_order(paid, created_at=credited_at - timedelta(seconds=45))
    set_order(waiting, created_at=utcnow() - timedelta(minutes=10))

    m = scrape(client)
    states = {s: value(m, "heyon_recharge_orders", provider="sandbox", status=s)
              for s in ("pending", "credited", "failed", "expired", "review")}
    assert states == {"pending": 1, "credited": 1, "failed": 1, "expired": 0, "review": 0}
    outcomes = {"credited": 1, "failed": 1, "bad_signature": 1, "malformed": 1}
    assert {o: value(m, "heyon_provider_callbacks_total", provider="sandbox", outcome=o) for o in outcomes} == outcomes
    latency = {le: value(m, "heyon_credit_latency_seconds_bucket", provider="sandbox", le=le)
               for le in ("30.0", "60.0", "+Inf")}
    assert latency == {"30.0": 0, "60.0": 1, "+Inf": 1}
    assert value(m, "heyon_credit_latency_seconds_sum", provider="sandbox") == pytest.approx(45, abs=1)
    assert value(m, "heyon_oldest_pending_order_age_seconds", provider="sandbox") >= 9 * 60


def test_every_process_says_the_same(app: Flask, client: FlaskClient, database: str) -> None:
    make_card()
    for amount in ("50", "100"):
        order_no = start_order(client, amount=amount)
        client.post("/pay/notify/sandbox", data=notification(order_no, f"{amount}.00"))
    # Another worker, or another machine: its own app, the same database.
    other = create_app({**TEST_CONFIG, "DATABASE_URL": database})
    other.test_client_class = ServerLikeClient
    mine, theirs = without_cost(scrape(client)), without_cost(scrape(other.test_client()))
    assert mine == theirs and value(mine, "heyon_credit_latency_seconds_count", provider="sandbox") == 2
    with other.app_context():
        db.engine.dispose()


def test_settled_callbacks_are_tallied_once(app: Flask, client: FlaskClient) -> None:
    make_card()
    order_no = start_order(client)
    for _ in range(3):
        client.post("/pay/notify/sandbox", data=notification(order_no, "100.00", secret="forged"))
    in_write_transaction(lambda: db.session.execute(  # two of them long ago
        update(ProviderCallback).where(ProviderCallback.id <= 2).values(received_at=datetime(2020, 1, 1))))
    first = scrape(client)
    tally = metrics.tallies()["callbacks"]
    assert tally.last_id == 2 and tally.settled[("sandbox", "bad_signature")] == 2
    callbacks = "heyon_provider_callbacks_total"
    assert {k: v for k, v in scrape(client).items() if k[0] == callbacks} == \
        {k: v for k, v in first.items() if k[0] == callbacks}
    assert value(first, "heyon_provider_callbacks_total", provider="sandbox", outcome="bad_signature") == 3


def test_the_tally_stops_at_the_first_row_still_settling() -> None:
    now = datetime(2030, 1, 1)
    old, new = now - timedelta(hours=1), now - timedelta(seconds=5)
    rows = [(1, old, "a"), (2, new, "a"), (3, old, "b")]  # 3 is old, but 2 may still change

    def count(sums, item) -> None:  # type: ignore[no-untyped-def]
        sums[item] += 1

    tally = metrics.Tally(lambda last: [r for r in rows if r[0] > last], count)
    assert tally.read(now) == {"a": 2, "b": 1} and tally.last_id == 1
    assert tally.read(now) == {"a": 2, "b": 1} and tally.settled == {"a": 1}


# ------------------------------------------------------------------ without a database


def test_readiness_and_metrics_fail_with_the_database_and_keep_its_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    down = create_app({**TEST_CONFIG, "DATABASE_URL": "postgresql://heyon:pw-9f8e7d6c@127.0.0.1:1/heyon"})
    c = down.test_client()
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 503
    r = c.get("/metrics")
    assert r.status_code == 503 and r.get_data(as_text=True) == "database unavailable"
    assert "Traceback" in caplog.text and "pw-9f8e7d6c" not in caplog.text
