"""The invoice queue (cashier and admin): issuing a request by uploading the tax platform's PDF
(its content and size checked), which the customer then downloads from the order page and is
e-mailed about; refusing one with a reason the customer reads; audit rows; who may."""
from __future__ import annotations

import io
import json
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import InvoiceRequest, OutboxMessage
from heyon_site.outbox.templates import render
from tests.kit import csrf_from, make_card, new_client, notification, order, start_order
from tests.staff.kit import audit_rows, signed_in, token

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
QUEUE = "/staff/invoices?lang=en"


def requested(customer: FlaskClient, card: str = "8600000000001234", **fields: str) -> tuple[str, int]:
    """A credited order of ``card`` whose customer asked for a company invoice: (token, request id)."""
    make_card(card)
    order_no = start_order(customer, card_number=card)
    paid = customer.post("/pay/notify/sandbox", data=notification(order_no, "100.00"))
    assert paid.get_data(as_text=True) == "success"
    found = order(order_no)
    page = customer.get(f"/orders/{found.token}?lang=en").get_data(as_text=True)
    data = {"csrf_token": csrf_from(page), "buyer_kind": "company", "buyer_name": "某某科技有限公司",
            "tax_id": "91350100M000100Y43", "email": "buyer@example.com", **fields}
    assert customer.post(f"/orders/{found.token}/invoice", data=data).status_code == 303
    db.session.rollback()
    request_id = db.session.scalar(select(InvoiceRequest.id).where(InvoiceRequest.order_id == found.id))
    assert request_id is not None
    return found.token, request_id


def multipart(fields: dict[str, str], data: bytes, name: str, kind: str) -> tuple[bytes, str]:
    """A browser's multipart body with the file ``pdf``, encoded here: the test client would
    spool a large one to a temporary file it never closes."""
    boundary = "----heyon-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="pdf"; filename="{name}"\r\n'
                 f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(staff: FlaskClient, request_id: int, data: bytes, name: str = "invoice.pdf",
           kind: str = "application/pdf", csrf: str | None = None) -> tuple[int, str]:
    body, content_type = multipart({"csrf_token": token(staff, QUEUE) if csrf is None else csrf}, data, name, kind)
    r = staff.post(f"/staff/invoices/{request_id}/issue", data=body, content_type=content_type)
    return r.status_code, r.get_data(as_text=True)


def state(request_id: int) -> str:
    db.session.rollback()
    found = db.session.get(InvoiceRequest, request_id)
    assert found is not None
    return found.state


def outbox() -> list[OutboxMessage]:
    db.session.rollback()
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.template == "invoice_issued")))


def test_issuing_uploads_the_pdf_the_customer_downloads_and_is_emailed_about(app: Flask) -> None:
    customer = new_client(app)
    order_token, request_id = requested(customer)
    cashier = signed_in(app, "cashier")
    page = cashier.get(QUEUE).get_data(as_text=True)
    assert "某某科技有限公司" in page and "91350100M000100Y43" in page
    assert "b***@example.com" in page and "buyer@example.com" not in page  # masked on staff pages
    assert 'enctype="multipart/form-data"' in page and f'action="/staff/invoices/{request_id}/issue"' in page
    assert 'href="/staff/invoices" aria-current="page"' in page  # its section in the navigation

    status, body = upload(cashier, request_id, PDF)
    assert status == 303, body[:300]
    assert state(request_id) == "issued"
    # The customer: the order page says so, the PDF comes down as it went up.
    assert "Download the invoice (PDF)" in customer.get(f"/orders/{order_token}?lang=en").get_data(as_text=True)
    pdf = customer.get(f"/orders/{order_token}/invoice.pdf")
    assert pdf.status_code == 200 and pdf.data == PDF
    assert pdf.mimetype == "application/pdf" and pdf.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(r'attachment; filename="invoice-\d{16}\.pdf"', pdf.headers["Content-Disposition"])
    assert cashier.get(f"/staff/invoices/{request_id}.pdf").data == PDF
    # The e-mail, written with the decision, links to the order page on the site's address.
    [message] = outbox()
    assert (message.channel, message.recipient, message.status) == ("email", "buyer@example.com", "pending")
    subject, text = render(message.template, "en", json.loads(message.params))
    assert "invoice" in subject and f"http://heyon.test/orders/{order_token}" in text
    subject, text = render(message.template, "zh_Hans", json.loads(message.params))
    assert "发票" in subject and f"http://heyon.test/orders/{order_token}" in text
    [row] = audit_rows("invoice.issue")
    assert row.username == "cashier-user" and row.target and row.target.startswith("order ")
    assert row.after_summary and f"pdf_size={len(PDF)}" in row.after_summary
    # Issued once: a second upload is refused, and nothing changes.
    status, body = upload(cashier, request_id, PDF + b"\n")
    assert status == 409 and "already" in body
    assert len(outbox()) == 1 and customer.get(f"/orders/{order_token}/invoice.pdf").data == PDF


def test_an_upload_that_is_not_a_pdf_is_refused(app: Flask) -> None:
    _, request_id = requested(new_client(app))
    cashier = signed_in(app, "cashier")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
    for data, name, kind in ((png, "invoice.pdf", "application/pdf"),  # named and declared a PDF: not one
                             (b"%PDF-1.7 cut short", "invoice.pdf", "application/pdf"),
                             (b"", "invoice.pdf", "application/pdf")):
        status, body = upload(cashier, request_id, data, name, kind)
        assert status == 422, (name, status)
        assert 'role="alert"' in body and ("not a PDF" in body or "Choose the PDF" in body)
    assert state(request_id) == "requested" and outbox() == [] and audit_rows("invoice.issue") == []


def test_an_upload_too_large_is_refused_with_413(app: Flask) -> None:
    _, request_id = requested(new_client(app))
    cashier = signed_in(app, "cashier")
    limit = app.config["HEYON_INVOICE_MAX_BYTES"]
    assert limit == 5 * 1024 * 1024
    # Just over the limit: the page says how large a PDF may be.
    status, body = upload(cashier, request_id, PDF + b"\n" * (limit - len(PDF) + 1))
    assert status == 413 and "too large" in body and "5 MB" in body
    # Far over: refused as the body is read, before any view.
    status, body = upload(cashier, request_id, b"%PDF-" + b"0" * (limit + 200_000))
    assert status == 413 and "too large" in body
    assert state(request_id) == "requested" and outbox() == []
    # The size is a setting.
    app.config["HEYON_INVOICE_MAX_BYTES"] = 50
    status, body = upload(cashier, request_id, PDF)
    assert status == 413 and "at most 50 B" in body and state(request_id) == "requested"
    app.config["HEYON_INVOICE_MAX_BYTES"] = limit
    assert upload(cashier, request_id, PDF)[0] == 303


def test_other_forms_still_take_no_file(app: Flask) -> None:
    _, request_id = requested(new_client(app))
    cashier = signed_in(app, "cashier")
    fields = {"csrf_token": token(cashier, QUEUE), "reason": "no", "pdf": (io.BytesIO(PDF), "a.pdf", "application/pdf")}
    r = cashier.post(f"/staff/invoices/{request_id}/refuse", data=fields, content_type="multipart/form-data")
    assert r.status_code == 400 and state(request_id) == "requested"


def test_refusing_needs_a_reason_the_customer_then_reads(app: Flask) -> None:
    customer = new_client(app)
    order_token, request_id = requested(customer)
    admin = signed_in(app, "admin")
    r = admin.post(f"/staff/invoices/{request_id}/refuse", data={"csrf_token": token(admin, QUEUE), "reason": "  "})
    assert r.status_code == 422 and "Say why" in r.get_data(as_text=True)
    assert state(request_id) == "requested"
    reason = "The company name does not match the tax id."
    r = admin.post(f"/staff/invoices/{request_id}/refuse", data={"csrf_token": token(admin, QUEUE), "reason": reason})
    assert r.status_code == 303 and state(request_id) == "refused"
    page = customer.get(f"/orders/{order_token}?lang=en").get_data(as_text=True)
    assert "Your invoice request was refused." in page and reason in page
    assert customer.get(f"/orders/{order_token}/invoice.pdf").status_code == 404
    [row] = audit_rows("invoice.refuse")
    assert row.username == "admin-user" and row.after_summary == f"reason={reason}"
    assert outbox() == []
    assert upload(admin, request_id, PDF)[0] == 409  # decided already


def test_the_queue_puts_waiting_requests_first_and_filters_by_state(app: Flask) -> None:
    customer = new_client(app)
    _, first = requested(customer)
    _, second = requested(customer, card="8600000000005678")
    _, third = requested(customer, card="8611223344556677")
    cashier = signed_in(app, "cashier")
    assert upload(cashier, first, PDF)[0] == 303

    def shown(query: str = "") -> list[int]:
        r = cashier.get(f"/staff/invoices?lang=en{query}")
        assert r.status_code == 200
        return [int(n) for n in re.findall(r'<section class="panel" id="invoice-(\d+)">', r.get_data(as_text=True))]

    assert shown() == [second, third, first]
    assert shown("&state=requested") == [second, third]
    assert shown("&state=issued") == [first]
    assert shown("&state=refused") == []
    hx = signed_in(app, "cashier", htmx=True)
    fragment = hx.get("/staff/invoices?state=issued").get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="invoice-queue">') and "<html" not in fragment
    assert cashier.get("/staff/invoices?state=nonsense").status_code == 422


def test_only_cashiers_and_admins_and_never_a_visitor(app: Flask) -> None:
    customer = new_client(app)
    _, request_id = requested(customer)
    visitor = new_client(app)
    csrf = csrf_from(visitor.get("/staff/login?lang=en").get_data(as_text=True))
    for path in ("/staff/invoices", f"/staff/invoices/{request_id}.pdf"):
        r = visitor.get(path)
        assert r.status_code in (302, 303) and "/staff/login" in r.headers["Location"], path
    assert upload(visitor, request_id, PDF, csrf=csrf)[0] in (302, 303)
    r = visitor.post(f"/staff/invoices/{request_id}/refuse", data={"csrf_token": csrf, "reason": "no"})
    assert r.status_code in (302, 303)
    editor = signed_in(app, "editor")
    assert editor.get("/staff/invoices").status_code == 403
    assert upload(editor, request_id, PDF, csrf=token(editor))[0] == 403
    assert state(request_id) == "requested" and audit_rows("invoice.issue") == []
    # A form without its token is refused before anything is read into the request.
    cashier = signed_in(app, "cashier")
    assert upload(cashier, request_id, PDF, csrf="")[0] == 400
    assert state(request_id) == "requested"
    assert signed_in(app, "admin").get(QUEUE).status_code == 200
