"""A credited order's invoice (发票), on its order page: the request, and the PDF once staff have
issued it. The order's token in the address is what authorises both, as for the receipt."""

from __future__ import annotations

from flask import Response, abort, request, url_for
from flask_babel import gettext

from heyon_site.billing import invoices
from heyon_site.billing.recharge import find_by_token
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.forms import InvoiceForm
from heyon_site.customer.orders import order_page
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db, limiter
from heyon_site.web.fragments import is_htmx, redirect_to
from heyon_site.web.limits import ip_limit


@bp.post("/orders/<token>/invoice")
@limiter.limit(ip_limit)
def order_invoice(token: str) -> Response:
    found = find_by_token(db.session, token) or abort(404)
    if found.status != "credited":  # its page offers no invoice: a stale or made-up form
        problem = gettext("An invoice can be requested only for a credited order.")
        return order_page(found, 409, problem=problem)
    form = InvoiceForm(formdata=request.form)
    if not form.validate():
        return order_page(found, 422, block="invoice", invoice_form=form)
    order_id, kind = found.id, form.buyer_kind.data or ""
    name, code, email = form.buyer_name.data or "", form.code, form.email_address
    try:
        in_write_transaction(lambda: invoices.request_invoice(db.session, order_id, kind, name, code, email))
    except invoices.InvoiceError as e:
        return order_page(found, 409, block="invoice", invoice_problem=gettext(e.message, **e.params))
    if is_htmx():  # the invoice block, now saying the request is recorded
        return order_page(found, block="invoice")
    return redirect_to(url_for("customer.order", token=token) + "#invoice")


@bp.get("/orders/<token>/invoice.pdf")
def order_invoice_pdf(token: str) -> Response:
    found = find_by_token(db.session, token) or abort(404)
    asked = invoices.of_order(db.session, found.id)
    issued = invoices.pdf_of(db.session, asked.id) if asked is not None else None
    if issued is None:
        abort(404)
    order_no, pdf = issued
    return no_store(pdf_response(pdf, f"invoice-{order_no}.pdf"))


def pdf_response(pdf: bytes, filename: str) -> Response:
    """The PDF as a download, never shown inline: whatever it holds runs in no page of ours."""
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
