"""Payments that credited nothing, on the staff order page: one person proposes to credit or to
refund, an admin who is not that person approves or rejects. Both are audit rows; nothing moves
on a proposal alone, and an approved refund is sent to the provider at once (and followed by
``flask payments reconcile`` until the provider says it is final)."""

from __future__ import annotations

from flask import Response, abort, current_app, request, url_for
from flask_babel import gettext

from heyon_site.billing import refunds
from heyon_site.billing.money import yuan
from heyon_site.billing.recharge import find_order
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, Resolution
from heyon_site.ops.audit import record
from heyon_site.payments.refunds import push
from heyon_site.providers import get as get_provider
from heyon_site.staff.auth import actor, current_staff, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import DecideForm, ProposeForm
from heyon_site.staff.orders import order_page
from heyon_site.web.fragments import redirect_to


@bp.post("/orders/<order_no>/payments/<int:event_id>/propose")
@require_role("cashier")
def propose_resolution(order_no: str, event_id: int) -> Response:
    order = find_order(db.session, order_no) or abort(404)
    if event_id not in refunds.uncredited_of(db.session, order.id):
        abort(404)  # not a payment of this order that credited nothing
    form = ProposeForm(formdata=request.form)
    if not form.validate():
        # Said at the top too: the payment's form may no longer be on the page (decided meanwhile).
        said = " ".join(str(e) for errors in form.errors.values() for e in errors)
        return order_page(order_no, 422, problem=said, propose_form=form, propose_for=event_id)
    staff = current_staff()
    assert staff is not None  # require_role
    who, action, reason, staff_id = actor(), form.action.data, form.reason.data or "", staff.id
    if action not in ("credit", "refund"):
        abort(400)

    def work() -> int:
        event = db.session.get(PaymentEvent, event_id)
        if event is None or event.order_id != order.id:
            abort(404)
        made = refunds.propose(db.session, event_id, action, reason, staff_id)
        record(
            who,
            "payment.propose",
            f"order {order_no} payment {event_id}",
            after=f"action={action}; amount={yuan(event.amount_fen)}; reason={reason[:200]}",
        )
        return made

    try:
        in_write_transaction(work)
    except refunds.RefundError as e:
        return order_page(order_no, 409, problem=gettext(e.message, **e.params))
    return redirect_to(url_for("staff.order", order_no=order_no))


@bp.post("/orders/<order_no>/resolutions/<int:resolution_id>")
@require_role("admin")
def decide_resolution(order_no: str, resolution_id: int) -> Response:
    order = find_order(db.session, order_no) or abort(404)
    form = DecideForm(formdata=request.form)
    if not form.validate():
        abort(400)
    staff = current_staff()
    assert staff is not None
    who, approve, staff_id = actor(), form.decision.data == "approve", staff.id

    def work() -> Resolution:
        found = db.session.get(Resolution, resolution_id)
        if found is None or found.order_id != order.id:
            abort(404)
        decided = refunds.decide(db.session, resolution_id, staff_id, approve)
        record(
            who,
            "payment.approve" if approve else "payment.reject",
            f"order {order_no} payment {decided.payment_event_id}",
            after=f"action={decided.action}; amount={yuan(decided.amount_fen)}",
        )
        return decided

    try:
        decided = in_write_transaction(work)
    except refunds.RefundError as e:
        return order_page(order_no, 409, problem=gettext(e.message, **e.params))
    if approve and decided.action == "refund":
        pending = [r.id for r in refunds.refunds_of(db.session, order.id) if r.status == "pending"]
        for refund_id in pending:
            state = push(refund_id, get_provider)
            current_app.logger.info("refund of order %s sent on approval: %s", order_no, state)
    return redirect_to(url_for("staff.order", order_no=order_no))
