"""The customer's order pages and their htmx faces: the order status that polls until final, the receipt."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from tests.kit import CARD, deliver_outbox, make_card, new_client, order, recharge_form, start_order


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


def test_an_unpaid_order_has_no_receipt_yet(app: Flask, client: FlaskClient) -> None:
    make_card()
    order_no = start_order(client)
    token = order(order_no).token
    r = client.get(f"/orders/{token}/receipt?lang=en")
    body = r.get_data(as_text=True)
    assert r.status_code == 404 and "No receipt yet" in body and "Waiting for payment" in body
    assert f'href="/orders/{token}"' in body and r.headers["Cache-Control"] == "no-store"
    assert "<svg" not in body  # no QR code, no amounts to print


def test_the_receipt_names_method_promotion_and_support_and_offers_a_print_button(app: Flask, client: FlaskClient) -> None:
    from tests.promos.kit import save

    save(value_fen=1000, threshold_fen=5000, title_en="Ten on top", title_zh="多送十元")
    order_no, location = paid_order(app, client)
    deliver_outbox(app, client)
    body = client.get(f"{location}/receipt?lang=en").get_data(as_text=True)
    assert "Sandbox (test payment)" in body and "Ten on top" in body and "¥10.00" in body
    assert "Support: 400-000-0000" in body and "REPRINT" not in body
    assert '<button type="button" id="print" hidden>Print</button>' in body  # shown by static/js/print.js
    assert "Print with your browser" in body  # without a script, the hint
    assert re.search(r"<script src=\"/static/js/print\.js\?v=[0-9a-f]+\"></script>", body)
    zh = client.get(f"{location}/receipt?lang=zh").get_data(as_text=True)
    assert "多送十元" in zh and "客服：" in zh  # full-width colon in Chinese
    assert order_no in zh


def test_a_receipt_link_without_a_paper_takes_the_shops_paper(app: Flask, client: FlaskClient) -> None:
    from heyon_site.billing.receipts import PAPERS
    from heyon_site.config import RECEIPT_PAPERS, receipt_paper

    assert RECEIPT_PAPERS == PAPERS  # the setting's papers are the receipt's (config cannot import billing's)
    assert receipt_paper(None) == "80" and receipt_paper(" A4 ") == "a4"
    with pytest.raises(ValueError, match="HEYON_RECEIPT_PAPER"):
        receipt_paper("letter")
    _, location = paid_order(app, client)
    deliver_outbox(app, client)
    assert 'class="paper-80"' in client.get(f"{location}/receipt").get_data(as_text=True)
    app.config["HEYON_RECEIPT_PAPER"] = "58"  # a shop with a 58 mm printer
    assert 'class="paper-58"' in client.get(f"{location}/receipt").get_data(as_text=True)
    assert 'class="paper-a4"' in client.get(f"{location}/receipt?paper=a4").get_data(as_text=True)


def test_a_credited_order_leads_to_recharge_again_with_the_card_number_kept(app: Flask, client: FlaskClient) -> None:
    order_no, location = paid_order(app, client)
    deliver_outbox(app, client)
    page = client.get(f"{location}?lang=en").get_data(as_text=True)
    assert "Balance now" in page and "<dd>¥100.00</dd>" in page  # an empty card, then 100.00 credited
    again = re.search(r'<a class="button" href="([^"]+)">Recharge again</a>', page)
    assert again and '<a class="button secondary" href="' + location + '/receipt">Receipt</a>' in page
    form = client.get(again.group(1).replace("&amp;", "&"))
    html = form.get_data(as_text=True)
    assert form.headers["Cache-Control"] == "no-store"
    assert f'value="{CARD}"' in html and re.search(r'<input[^>]*autofocus[^>]*id="password"|<input[^>]*id="password"[^>]*autofocus', html)
    assert f'value="{CARD}"' not in new_client(app).get(again.group(1)).get_data(as_text=True)  # another browser: blank
    assert 'value=""' in re.search(r'<input[^>]*id="password"[^>]*>', html).group(0)  # never the password


def test_one_refusal_summary_at_the_top_focused_and_linked_to_the_fields(app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    make_card()
    wrong = client.post("/recharge?lang=en", data=recharge_form(client, password="000000"))
    html = wrong.get_data(as_text=True)
    summary = re.search(r'<div class="alert" role="alert" tabindex="-1" autofocus id="recharge-errors">(.*?)</div>', html, re.S)
    assert wrong.status_code == 403 and summary and "wrong" in summary.group(1)
    assert html.index('id="recharge-errors"') < html.index('id="card_number"')  # above the fields
    assert re.search(r'<input[^>]*aria-describedby="recharge-errors"[^>]*id="card_number"', html)
    assert 'hx-preserve' not in re.search(r'<input[^>]*id="password"[^>]*>', html).group(0)  # a wrong password goes
    amount = hx.post("/recharge?lang=en", data=recharge_form(hx, amount="other", custom_amount="1"))
    fragment = amount.get_data(as_text=True)
    assert amount.status_code == 422 and 'autofocus id="recharge-errors"' in fragment
    assert '<a href="#custom_amount">' in fragment
    assert 'hx-preserve="true"' in re.search(r'<input[^>]*id="password"[^>]*>', fragment).group(0)  # kept as typed
