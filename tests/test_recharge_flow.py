"""A customer recharges a card end to end, as a browser without JavaScript and as htmx."""
from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from heyon_site.billing import ledger

from .kit import balance, deliver_outbox, make_card, order, start_order


def test_recharge_page_has_the_english_labels(client: FlaskClient) -> None:
    page = client.get("/recharge?lang=en").get_data(as_text=True)
    for label in ("Card number", "Card password", "Amount", "Payment method", ">Recharge<"):
        assert label in page


def test_paying_on_the_sandbox_credits_the_card_once(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    order_no = start_order(client)
    gateway = client.get(f"/pay/sandbox/{order_no}")
    assert gateway.status_code == 200 and "100.00" in gateway.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', gateway.get_data(as_text=True)).group(1)
    paid = client.post(f"/pay/sandbox/{order_no}", data={"csrf_token": token, "outcome": "pay"})
    assert paid.status_code == 303
    assert order(order_no).status == "pending"  # nothing moves until the notification arrives
    assert deliver_outbox(app, client) == ["success"]
    assert order(order_no).status == "credited"
    assert balance() == 500 + 10000
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    assert order_no in page and "Receipt" in page
    assert ledger.verify().ok
