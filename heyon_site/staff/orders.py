"""Staff order screens: search, one order's detail, receipt reprints (cashiers)."""

from __future__ import annotations

from flask import Response, abort, current_app, request, url_for

from heyon_site import sitetime
from heyon_site.billing.recharge import find_order
from heyon_site.customer.receipt import receipt_response
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.ops.audit import record
from heyon_site.staff import queries
from heyon_site.staff.auth import actor, current_staff, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.cases import cases_of
from heyon_site.staff.forms import DecideForm, OrderSearchForm, ProposeForm, ReceiptForm
from heyon_site.web.fragments import redirect_to, render


@bp.get("/orders")
@require_role("cashier")
def orders() -> Response:
    form = OrderSearchForm(formdata=request.args)
    asked = any(v for k, v in request.args.items() if k in form._fields)
    found = None
    if asked and form.validate():
        found = queries.search_orders(
            sitetime.zone(current_app.config),
            form.order_no.data or "",
            form.last4.data or "",
            form.date_from.data,
            form.date_to.data,
            form.status.data or "",
        )
    return render("staff/orders.html", "results", 422 if asked and form.errors else 200, form=form, orders=found)


@bp.get("/orders/<order_no>")
@require_role("cashier")
def order(order_no: str) -> Response:
    return order_page(order_no)


def order_page(
    order_no: str,
    status: int = 200,
    problem: str | None = None,
    propose_form: ProposeForm | None = None,
    propose_for: int | None = None,
) -> Response:
    """One order's page; ``problem`` and a proposal form sent back with its errors when a
    decision about one of its payments could not be taken."""
    detail = queries.order_detail(order_no) or abort(404)
    staff = current_staff()
    return render(
        "staff/order.html",
        status=status,
        detail=detail,
        receipt_form=receipt_form(),
        cases=cases_of(detail.order.id),
        propose_form=propose_form,
        propose_for=propose_for,
        new_proposal=ProposeForm(formdata=None),
        decide_form=DecideForm(formdata=None),
        me=staff.id if staff else None,
        admin=bool(staff and staff.role == "admin"),
        problem=problem,
    )


@bp.post("/orders/<order_no>/receipt")
@require_role("cashier")
def print_receipt(order_no: str) -> Response:
    find_order(db.session, order_no) or abort(404)
    form = ReceiptForm(formdata=request.form)
    if not form.validate():
        abort(400)
    paper, who = form.paper.data, actor()
    in_write_transaction(lambda: record(who, "receipt.print", f"order {order_no}", after=f"paper={paper}"))
    return redirect_to(url_for("staff.reprint", order_no=order_no, paper=paper))


def receipt_form() -> ReceiptForm:
    """The reprint form, set to the shop's paper (HEYON_RECEIPT_PAPER)."""
    return ReceiptForm(formdata=None, paper=current_app.config["HEYON_RECEIPT_PAPER"])


@bp.get("/orders/<order_no>/receipt")
@require_role("cashier")
def reprint(order_no: str) -> Response:
    """The customer's receipt as staff print it for the counter: marked as a reprint."""
    return receipt_response(find_order(db.session, order_no) or abort(404), request.args.get("paper", ""), reprint=True)
