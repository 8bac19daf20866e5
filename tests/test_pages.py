"""Pages and their htmx faces: health, headers, the order status that polls until final, the receipt."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow

from tests.kit import ROOT
from tests.kit import CARD, deliver_outbox, make_card, order, recharge_form, start_order

HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"  # htmx.org 2.0.11, npm


def paid_order(app: Flask, client: FlaskClient) -> tuple[str, str]:
    """Order, pay on the sandbox, deliver the notification; return (order_no, order page path)."""
    make_card()
    order_no = start_order(client)
    page = client.get(f"/pay/sandbox/{order_no}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    location = client.post(f"/pay/sandbox/{order_no}", data={"csrf_token": token, "outcome": "pay"}).headers["Location"]
    return order_no, location


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_data(as_text=True) == "ok"
    assert client.get("/readyz").status_code == 200


def test_readiness_reports_a_database_that_is_gone(tmp_path) -> None:
    from heyon_site import create_app

    from tests.kit import TEST_CONFIG

    app = create_app({**TEST_CONFIG, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/x.db"})
    c = app.test_client()
    assert c.get("/healthz").status_code == 200  # liveness never touches the database
    assert c.get("/readyz").status_code == 503


def test_every_page_sends_security_headers_and_no_inline_script(client: FlaskClient) -> None:
    for path in ("/", "/recharge", "/faq", "/no-such-page"):
        r = client.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        body = r.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), path
        assert not re.search(r"\son[a-z]+=", body), path  # no inline event handlers
        assert "http://" not in body.replace("http://www.w3.org", "") and "https://" not in body  # no CDN


def test_htmx_is_vendored_pinned_and_cached_for_a_year(client: FlaskClient) -> None:
    path = ROOT / "static/js/htmx-2.0.11.min.js"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == HTMX_SHA256
    src = re.search(r'<script src="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    assert src.startswith("/static/js/htmx-2.0.11.min.js?v=")
    r = client.get(src)
    assert r.status_code == 200 and "max-age=31536000" in r.headers["Cache-Control"]
    assert "Accept-Language" not in r.headers.get("Vary", "")
    r.close()


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
