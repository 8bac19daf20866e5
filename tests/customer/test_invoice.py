"""Asking for an invoice on a credited order's page, with and without htmx: the form, its checks
(the tax id's check character), one request per order, and where the request stands. Issuing
and the PDF's download are proved with the staff screens (tests/staff/test_invoices.py)."""
from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import InvoiceRequest
from tests.kit import CARD, cli, csrf_from, make_card, notification, order, start_order

COMPANY = {"buyer_kind": "company", "buyer_name": "某某科技有限公司", "tax_id": "91350100M000100Y43",
           "email": "Buyer@Example.COM"}


def credited(client: FlaskClient) -> str:
    """A credited order of the test card; its token (the secret in its page's address)."""
    make_card()
    order_no = start_order(client)
    assert client.post("/pay/notify/sandbox", data=notification(order_no, "100.00")).get_data(as_text=True) == "success"
    return order(order_no).token


def form(client: FlaskClient, token: str, **fields: str) -> dict[str, str]:
    page = client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    return {"csrf_token": csrf_from(page), **COMPANY, **fields}


def requests() -> list[InvoiceRequest]:
    db.session.rollback()
    return list(db.session.scalars(select(InvoiceRequest)))


def test_a_credited_order_offers_the_form_and_a_plain_post_records_the_request(app: Flask, client: FlaskClient) -> None:
    token = credited(client)
    page = client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    assert '<section id="invoice"' in page and f'action="/orders/{token}/invoice"' in page
    assert 'name="csrf_token"' in page.split('<section id="invoice"')[1]  # the form carries its token
    for name in ("buyer_kind", "buyer_name", "tax_id", "email"):
        assert f'name="{name}"' in page
    r = client.post(f"/orders/{token}/invoice", data=form(client, token))
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/orders/{token}#invoice")
    [found] = requests()
    assert (found.buyer_kind, found.buyer_name, found.tax_id, found.email, found.state) == (
        "company", "某某科技有限公司", "91350100M000100Y43", "Buyer@example.com", "requested")
    after = client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    assert "Invoice requested for 某某科技有限公司" in after and 'name="tax_id"' not in after


def test_htmx_gets_the_invoice_block_alone(app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    token = credited(client)
    r = hx.post(f"/orders/{token}/invoice", data=form(hx, token, buyer_kind="personal", buyer_name="", tax_id=""))
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and body.lstrip().startswith('<section id="invoice"') and "<html" not in body
    assert "HX-Request" in r.headers["Vary"] and r.headers["Cache-Control"] == "no-store"
    assert "Invoice requested for 个人" in body
    chinese = hx.get(f"/orders/{token}?lang=zh").get_data(as_text=True)
    assert "已申请抬头为 个人 的发票" in chinese
    [found] = requests()
    assert (found.buyer_kind, found.buyer_name, found.tax_id) == ("personal", "个人", None)


def test_a_wrong_tax_id_is_refused_with_a_message_on_both_faces(app: Flask, client: FlaskClient,
                                                                 hx: FlaskClient) -> None:
    token = credited(client)
    bad = form(client, token, tax_id="911100001000074123")
    full = client.post(f"/orders/{token}/invoice", data=bad)
    assert full.status_code == 422
    page = full.get_data(as_text=True)
    assert "<html" in page and "not a valid unified social credit code" in page and 'aria-invalid="true"' in page
    fragment = hx.post(f"/orders/{token}/invoice", data=form(hx, token, tax_id="9135010"))
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 422 and text.lstrip().startswith('<section id="invoice"')
    assert "not a valid unified social credit code" in text and 'role="alert"' in text
    missing = client.post(f"/orders/{token}/invoice", data=form(client, token, tax_id="", buyer_name=""))
    assert missing.status_code == 422 and "Enter the company" in missing.get_data(as_text=True)
    no_mail = client.post(f"/orders/{token}/invoice", data=form(client, token, email="not an address"))
    assert no_mail.status_code == 422 and "name@example.com" in no_mail.get_data(as_text=True)
    assert requests() == []


def test_a_tax_id_left_in_the_box_of_a_personal_invoice_is_ignored(app: Flask, client: FlaskClient) -> None:
    token = credited(client)
    r = client.post(f"/orders/{token}/invoice", data=form(client, token, buyer_kind="personal", tax_id="nonsense"))
    assert r.status_code == 303
    assert [f.tax_id for f in requests()] == [None]


def test_a_second_request_is_refused(app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    token = credited(client)
    # Forms from pages opened before the first was taken.
    first, second, third = form(client, token), form(client, token, buyer_kind="personal"), form(hx, token)
    assert client.post(f"/orders/{token}/invoice", data=first).status_code == 303
    again = client.post(f"/orders/{token}/invoice", data=second)
    assert again.status_code == 409 and "one invoice per order" in again.get_data(as_text=True)
    fragment = hx.post(f"/orders/{token}/invoice", data=third)
    assert fragment.status_code == 409 and "one invoice per order" in fragment.get_data(as_text=True)
    assert len(requests()) == 1


def test_no_invoice_for_an_order_not_credited_and_none_without_the_token(app: Flask, client: FlaskClient) -> None:
    make_card()
    token = order(start_order(client)).token
    page = client.get(f"/orders/{token}?lang=en").get_data(as_text=True)
    assert '<section id="invoice"' not in page
    r = client.post(f"/orders/{token}/invoice", data={**COMPANY, "csrf_token": csrf_from(page)})
    assert r.status_code == 409 and "credited order" in r.get_data(as_text=True)
    unknown = client.post("/orders/" + "x" * 43 + "/invoice", data={**COMPANY, "csrf_token": csrf_from(page)})
    assert unknown.status_code == 404
    assert client.get(f"/orders/{token}/invoice.pdf").status_code == 404
    assert requests() == []


def test_the_form_needs_its_csrf_token(app: Flask, client: FlaskClient) -> None:
    token = credited(client)
    client.get(f"/orders/{token}?lang=en")
    assert client.post(f"/orders/{token}/invoice", data=COMPANY).status_code == 400
    assert requests() == []


def test_no_pdf_before_it_is_issued(app: Flask, client: FlaskClient) -> None:
    token = credited(client)
    assert client.get(f"/orders/{token}/invoice.pdf").status_code == 404
    client.post(f"/orders/{token}/invoice", data=form(client, token))
    assert client.get(f"/orders/{token}/invoice.pdf").status_code == 404


def test_forgetting_the_card_forgets_the_invoice_address_and_says_what_it_always_said(app: Flask, client: FlaskClient,
                                                                                     runner: object) -> None:
    token = credited(client)
    assert client.post(f"/orders/{token}/invoice", data=form(client, token)).status_code == 303
    result = cli(runner, "cards", "forget", CARD)  # type: ignore[arg-type]
    assert result.output == "card **** 1234: personal data forgotten\n"
    assert [(f.email, f.state) for f in requests()] == [("forgotten", "requested")]
