"""The customer's order pages and their htmx faces: the order status that polls until final, the receipt."""
from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from tests.kit import CARD, deliver_outbox, make_card, order, recharge_form, start_order


def paid_order(app: Flask, client: FlaskClient) -> tuple[str, str]:
    """Order, pay on the sandbox, deliver the notification; return (order_no, order page path)."""
    make_card()
    order_no = start_order(client)
    page = client.get(f"/pay/sandbox/{order_no}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    location = client.post(f"/pay/sandbox/{order_no}", data={"csrf_token": token, "outcome": "pay"}).headers["Location"]
    return order_no, location


def test_htmx_recharge_navigates_with_hx_redirect(client: FlaskClient, hx: FlaskClient) -> None:
    make_card()
    r = hx.post("/recharge", data=recharge_form(hx))
    assert r.status_code == 204 and re.fullmatch(r"/pay/sandbox/\d{16}\?sign=[0-9a-f]{64}", r.headers["HX-Redirect"])
    invalid = hx.post("/recharge", data=recharge_form(hx, card_number="12"))
    body = invalid.get_data(as_text=True)
    assert invalid.status_code == 422 and body.lstrip().startswith("<form") and "<html" not in body
    assert "HX-Request" in invalid.headers["Vary"]
    full = client.post("/recharge", data=recharge_form(client, card_number="12"))
    assert full.status_code == 422 and "<html" in full.get_data(as_text=True)


def test_order_page_polls_while_pending_and_stops_when_credited(app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    order_no, location = paid_order(app, client)
    pending = client.get(location)
    html = pending.get_data(as_text=True)
    assert order_no in html and 'hx-trigger="every 3s"' in html
    assert '<meta http-equiv="refresh"' in html  # inside <noscript>: the no-JS face refreshes itself
    assert pending.headers["Cache-Control"] == "no-store"
    fragment = hx.get(location).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="order-status"') and "<html" not in fragment
    assert deliver_outbox(app, client) == ["success"]
    done = hx.get(location).get_data(as_text=True)
    assert "hx-trigger" not in done and "收据" in done  # zh-Hans by default: "Receipt"
    assert "hx-get" not in done
    restore = hx.get(location, headers={"HX-History-Restore-Request": "true"}).get_data(as_text=True)
    assert "<html" in restore  # a history restore gets the whole page


def test_after_30_minutes_pending_the_page_points_to_support(app: Flask, client: FlaskClient) -> None:
    make_card()
    order_no = start_order(client)
    token = order(order_no).token
    assert "contact support" not in client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    db.session.execute(update(RechargeOrder).where(RechargeOrder.order_no == order_no)
                       .values(created_at=utcnow() - timedelta(minutes=31)))
    db.session.commit()
    page = client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    assert "contact support" in page and order_no in page and "/faq" in page


def test_receipt_masks_the_card_and_prints_on_three_papers(app: Flask, client: FlaskClient) -> None:
    order_no, location = paid_order(app, client)
    deliver_outbox(app, client)
    token = location.rsplit("/", 1)[1]
    for paper in ("58", "80", "a4"):
        r = client.get(f"/orders/{token}/receipt?paper={paper}&lang=en")
        body = r.get_data(as_text=True)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
        assert f'class="paper-{paper}"' in body
        assert order_no in body and "**** 1234" in body and CARD not in re.sub(r"\D", "", body)
        assert "<svg" in body and "100.00" in body and "Asia/Shanghai" in body
        assert "TEST MODE" in body  # a sandbox receipt says so, on paper too
        txn = order(order_no).provider_txn_id
        assert txn and txn in body


def test_order_and_receipt_urls_are_unguessable(app: Flask, client: FlaskClient) -> None:
    make_card()
    order_no = start_order(client)
    token = order(order_no).token
    assert len(token) == 24 and order_no not in token
    assert client.get(f"/orders/{order_no}").status_code == 404  # the number alone opens nothing
