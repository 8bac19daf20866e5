"""Invoice requests (cashier and admin): the queue, those waiting first and oldest first; issuing
one by uploading the PDF the tax platform produced, or refusing it with a reason the customer
reads. Each decision is an audit row; issuing also writes the customer's e-mail (billing.invoices)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flask import Response, abort, current_app, request, url_for
from flask_babel import gettext

from heyon_site.billing import invoices
from heyon_site.customer.invoice import pdf_response
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.ops.audit import record
from heyon_site.staff.auth import actor, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import InvoiceFilterForm, IssueInvoiceForm, RefuseInvoiceForm
from heyon_site.web.fragments import redirect_to, render

SHOWN = 200  # requests on the page


@bp.get("/invoices")
@require_role("cashier")
def invoices_queue() -> Response:
    return queue_page()


def queue_page(
    status: int = 200,
    problem: str | None = None,
    refuse_form: RefuseInvoiceForm | None = None,
    refuse_for: int | None = None,
) -> Response:
    """The queue; ``problem`` (and a refusal form with its errors) when a decision was not taken."""
    search = InvoiceFilterForm(formdata=request.args)
    state = (search.state.data or None) if search.validate() else None
    return render(
        "staff/invoices.html",
        "queue",
        422 if search.errors and status == 200 else status,
        search=search,
        found=invoices.queue(db.session, state, SHOWN),
        shown=SHOWN,
        issue_form=IssueInvoiceForm(formdata=None),
        refuse_form=refuse_form,
        refuse_for=refuse_for,
        new_refusal=RefuseInvoiceForm(formdata=None),
        problem=problem,
        max_size=invoices.size_text(current_app.config["HEYON_INVOICE_MAX_BYTES"]),
        size_text=invoices.size_text,
    )


def order_link(token: str) -> str:
    """The order page as the customer reaches it: on HEYON_SITE_URL when set, never on whatever
    address staff happen to use (an internal name would reach no customer)."""
    site = current_app.config.get("HEYON_SITE_URL") or ""
    if site:
        return site + url_for("customer.order", token=token)
    return url_for("customer.order", token=token, _external=True)


@bp.post("/invoices/<int:request_id>/issue")
@require_role("cashier")
def invoice_issue(request_id: int) -> Response:
    form = IssueInvoiceForm()
    if not form.validate() or form.pdf.data is None:
        return queue_page(422, problem=" ".join(str(e) for e in form.pdf.errors) or None)
    limit = int(current_app.config["HEYON_INVOICE_MAX_BYTES"])
    pdf = form.pdf.data.stream.read(limit + 1)  # one byte more tells a file over the limit
    problem = invoices.pdf_problem(pdf, limit)
    if problem:
        return queue_page(413 if len(pdf) > limit else 422, problem=gettext(problem, size=invoices.size_text(limit)))
    who = actor()

    def work() -> None:
        order_no = invoices.issue(db.session, request_id, pdf, who.username, order_link=order_link)
        after = f"pdf_size={len(pdf)}; pdf_sha256={hashlib.sha256(pdf).hexdigest()}"
        record(who, "invoice.issue", f"order {order_no}", after=after)

    return _decided(work)


@bp.post("/invoices/<int:request_id>/refuse")
@require_role("cashier")
def invoice_refuse(request_id: int) -> Response:
    form = RefuseInvoiceForm()
    if not form.validate():
        said = " ".join(str(e) for e in form.reason.errors)
        return queue_page(422, problem=said, refuse_form=form, refuse_for=request_id)
    who, reason = actor(), form.reason.data or ""

    def work() -> None:
        order_no = invoices.refuse(db.session, request_id, reason, who.username)
        record(who, "invoice.refuse", f"order {order_no}", after=f"reason={' '.join(reason.split())[:200]}")

    return _decided(work)


def _decided(work: Callable[[], None]) -> Response:
    try:
        in_write_transaction(work)
    except invoices.InvoiceError as e:
        return queue_page(409, problem=gettext(e.message, **e.params))
    return redirect_to(url_for("staff.invoices_queue"))


@bp.get("/invoices/<int:request_id>.pdf")
@require_role("cashier")
def invoice_pdf(request_id: int) -> Response:
    issued = invoices.pdf_of(db.session, request_id) or abort(404)
    order_no, pdf = issued
    return pdf_response(pdf, f"invoice-{order_no}.pdf")
