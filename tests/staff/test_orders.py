"""The staff order pages: search (by the card's last four digits on its index), detail, reprints."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import ProviderCallback, utcnow
from tests.kit import CARD, csrf_from, make_card, new_client, notification, order, start_order
from tests.staff.kit import audit_rows, signed_in


def _credited_order(app: Flask, client: FlaskClient) -> str:
    order_no = start_order(client)
    r = client.post("/pay/notify/sandbox", data=notification(order_no, "100.00"))
    assert r.get_data(as_text=True) == "success"
    return order_no


def test_order_search_filters(app: Flask) -> None:
    make_card()
    make_card("8600000000005678")
    customer = new_client(app)
    paid = _credited_order(app, customer)
    other = start_order(customer, card_number="8600000000005678")
    client = signed_in(app, "cashier")
    hx = signed_in(app, "cashier", htmx=True)

    def found(**args: str) -> set[str]:
        r = client.get("/staff/orders", query_string=args)
        assert r.status_code == 200, r.status_code
        h = hx.get("/staff/orders", query_string=args)
        assert h.status_code == 200 and h.get_data(as_text=True).lstrip().startswith('<div id="order-results">')
        return set(re.findall(r"/staff/orders/(\d+)", r.get_data(as_text=True)))

    assert found(order_no=paid) == {paid}
    assert found(last4="1234") == {paid}
    assert found(last4="5678") == {other}
    assert found(status="pending") == {other}
    assert found(status="credited") == {paid}
    today = (utcnow() + timedelta(hours=8)).date()  # Asia/Shanghai
    assert found(date_from=today.isoformat(), date_to=today.isoformat()) == {paid, other}
    assert found(date_to=(today - timedelta(days=1)).isoformat()) == set()
    assert found(date_from=(today + timedelta(days=1)).isoformat()) == set()
    body = client.get("/staff/orders", query_string={"last4": "1234"}).get_data(as_text=True)
    assert "**** 1234" in body and CARD not in body
    assert client.get("/staff/orders", query_string={"last4": "12a4"}).status_code == 422


def test_order_detail_shows_events_callbacks_and_ledger_escaped(app: Flask) -> None:
    make_card()
    order_no = _credited_order(app, new_client(app))
    hostile = "out_trade_no=<script>alert(1)</script>"
    in_write_transaction(lambda: db.session.add(ProviderCallback(provider="sandbox", body=hostile, order_no=order_no,
                                                                 outcome="bad_signature")))
    r = signed_in(app, "cashier").get(f"/staff/orders/{order_no}")
    body = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # The callbacks in words, each raw body folded away (escaped) under it.
    assert "signature refused" in body and "payment succeeded, ¥100.00" in body and "Credited the card" in body
    assert "bad_signature" not in body
    assert "order:" in body and "recharge" in body  # the ledger entry's key
    assert CARD not in body and "**** 1234" in body
    assert signed_in(app, "cashier").get("/staff/orders/0000").status_code == 404


def test_reprint_is_audited_and_opens_the_receipt_marked_as_a_reprint(app: Flask) -> None:
    make_card()
    order_no = _credited_order(app, new_client(app))
    client = signed_in(app, "cashier")
    page = client.get(f"/staff/orders/{order_no}").get_data(as_text=True)
    assert '<option selected value="80">' in page  # the shop's paper: HEYON_RECEIPT_PAPER, 80 mm unless set
    r = client.post(f"/staff/orders/{order_no}/receipt", data={"csrf_token": csrf_from(page), "paper": "58"})
    assert r.status_code == 303
    assert r.headers["Location"].endswith(f"/staff/orders/{order_no}/receipt?paper=58")
    reprint = client.get(r.headers["Location"] + "&lang=en").get_data(as_text=True)
    assert "REPRINT" in reprint and order_no in reprint and 'class="paper-58"' in reprint
    own = new_client(app).get(f"/orders/{order(order_no).token}/receipt?lang=en").get_data(as_text=True)
    assert order_no in own and "REPRINT" not in own  # the customer's own copy is no reprint
    assert new_client(app).get(r.headers["Location"]).status_code in (302, 303)  # staff only: to sign-in
    [row] = audit_rows("receipt.print")
    assert (row.username, row.target, row.after_summary) == ("cashier-user", f"order {order_no}", "paper=58")
    assert client.post(f"/staff/orders/{order_no}/receipt",
                       data={"csrf_token": csrf_from(page), "paper": "letter"}).status_code == 400


def test_search_by_last_four_digits_uses_its_index(app: Flask) -> None:
    """Without it a million cards meant scanning every order (bench/scale.py); a plan, not a timing."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import event

    from heyon_site.staff.queries import search_orders

    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's planner scans tables this small whatever the indexes (make bench-scale shows its plans)")
    seen: list[tuple[str, object]] = []

    def grab(_conn: object, _cursor: object, statement: str, params: object, *_rest: object) -> None:
        if statement.lstrip().startswith("SELECT") and "recharge_orders" in statement:
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        search_orders(ZoneInfo("Asia/Shanghai"), last4="1234")
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    statement, params = seen[0]
    plan = " ".join(row[3] for row in db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
    assert "USING COVERING INDEX ix_cards_last4" in plan, plan
