"""Staff pages under /staff: sign-in, orders (cashier), the audit log (admin)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, request, url_for
from flask_babel import lazy_gettext as _l

from ..billing.money import yuan_grouped
from ..billing.receipts import local_time
from .. import device_cookie
from ..database import in_write_transaction
from ..extensions import limiter
from ..htmx import redirect_to, render
from ..limits import checks_secret, ip_limit
from ..models import StaffUser, utcnow
from . import dashboard as board
from . import queries
from .auth import audit, authenticate, current_staff, end_session, find_staff, require_role, start_second_step, start_session
from .forms import LoginForm, LogoutForm, OrderSearchForm, ReceiptForm
from .inputs import staff_page

bp = Blueprint("staff", __name__, url_prefix="/staff")
# Every staff form is limited per IP like the customer forms (sign-in has its own, stricter ones).
limiter.limit(ip_limit, methods=["POST"])(bp)


@bp.after_request
def _private(response: Response) -> Response:
    """Nothing a staff page shows may be cached or indexed."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


@bp.app_template_filter("datetime_local")
def datetime_local(moment: datetime | None) -> str:
    """A stored UTC time as the site's local time."""
    return local_time(moment, ZoneInfo(current_app.config["HEYON_TIMEZONE"]))


bp.add_app_template_filter(yuan_grouped, "yuan_grouped")


@bp.context_processor
def _staff_context() -> dict[str, object]:
    # formdata=None: the form must not read the request. This also runs for error pages, where the
    # body may be too large (413) or not a form at all, and reading it would fail again.
    return {"staff": current_staff(), "logout_form": LogoutForm(formdata=None)}


def safe_next(target: str | None) -> str:
    """Only a page of our own staff area (``inputs.staff_page``): never another host (open
    redirect), never a line break into the Location header; anything else goes home."""
    return staff_page(target, current_app.url_map) or url_for("staff.dashboard")


def _login_page(form: LoginForm, status: int = 200, error: object = None) -> Response:
    return render("staff/login.html", "login_form", status, form=form, error=error, next=request.args.get("next", ""))


@bp.get("/login")
def login() -> Response:
    if current_staff() is not None:
        return redirect_to(safe_next(request.args.get("next")))
    return _login_page(LoginForm(formdata=None))


@bp.post("/login")
@checks_secret
def login_submit() -> Response:
    form = LoginForm(formdata=request.form)
    if not form.validate():
        return _login_page(form, 422)
    username, password = (form.username.data or "").strip(), form.password.data or ""
    result = authenticate(username, password, device_cookie.presented())
    user = find_staff(username) if result.staff_id else None
    code_due = user is not None and bool(user.totp_secret)
    action = "login.password_ok" if code_due else "login.success" if user else f"login.{result.refused}"
    in_write_transaction(lambda: audit(action, staff_id=result.staff_id, username=username))
    if result.staff_id is None:
        if result.refused in ("throttled", "locked"):
            minutes = max(1, (result.retry_after + 59) // 60)
            return _login_page(LoginForm(formdata=None), 429,
                               _l("Too many failed sign-ins. Try again in %(n)s minute(s).", n=minutes))
        return _login_page(LoginForm(formdata=None), 403, _l("The username or password is wrong."))
    assert user is not None
    if code_due:
        start_second_step(user)
        return redirect_to(url_for("staff.login_code", next=request.args.get("next") or None))
    start_session(user)
    return redirect_to(safe_next(request.args.get("next")))


@bp.post("/logout")
def logout() -> Response:
    if not LogoutForm(formdata=request.form).validate():
        abort(400)
    user = current_staff()
    if user is not None:
        end_session(user)
    return redirect_to(url_for("staff.login"))


@bp.get("/")
@require_role()
def dashboard() -> Response:
    tz, now = ZoneInfo(current_app.config["HEYON_TIMEZONE"]), utcnow()
    days = board.daily_totals(tz, board.local_today(tz, now))
    user: StaffUser = current_staff()  # type: ignore[assignment]
    # Only those who may open an order see the list of them; totals are for all staff.
    waiting = ([board.waiting_orders(s, now) for s in ("pending", "review")] + [board.returned_orders(now)]
               if user.role in ("cashier", "admin") else None)
    return render("staff/dashboard.html", days=days, chart=board.chart(days), waiting=waiting)


@bp.get("/orders")
@require_role("cashier")
def orders() -> Response:
    form = OrderSearchForm(formdata=request.args)
    asked = any(v for k, v in request.args.items() if k in form._fields)
    found = None
    if asked and form.validate():
        found = queries.search_orders(ZoneInfo(current_app.config["HEYON_TIMEZONE"]), form.order_no.data or "",
                                      form.last4.data or "", form.date_from.data, form.date_to.data, form.status.data or "")
    return render("staff/orders.html", "results", 422 if asked and form.errors else 200, form=form, orders=found)


@bp.get("/orders/<order_no>")
@require_role("cashier")
def order(order_no: str) -> Response:
    detail = queries.order_detail(order_no) or abort(404)
    return render("staff/order.html", detail=detail, receipt_form=ReceiptForm(formdata=None))


@bp.post("/orders/<order_no>/receipt")
@require_role("cashier")
def print_receipt(order_no: str) -> Response:
    detail = queries.order_detail(order_no) or abort(404)
    form = ReceiptForm(formdata=request.form)
    if not form.validate():
        abort(400)
    user: StaffUser = current_staff()  # type: ignore[assignment]
    paper, staff_id, username = form.paper.data, user.id, user.username
    in_write_transaction(lambda: audit("receipt.print", staff_id=staff_id, username=username,
                                       target=f"order {order_no}", after=f"paper={paper}"))
    return redirect_to(url_for("customer.receipt", token=detail.order.token, paper=paper))


@bp.get("/audit")
@require_role("admin")
def audit_log() -> Response:
    page = request.args.get("page", 1, type=int) or 1
    return render("staff/audit.html", log=queries.audit_page(page))
