"""Staff sign-in and sign-out."""

from __future__ import annotations

from typing import cast

from flask import Response, abort, current_app, request, url_for
from flask_babel import lazy_gettext as _l

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import StaffUser
from heyon_site.ops.audit import Actor, record
from heyon_site.security import device_cookie
from heyon_site.security.throttle import whole_minutes
from heyon_site.staff.auth import (
    authenticate,
    check_code,
    current_staff,
    end_session,
    find_staff,
    second_step_user,
    start_second_step,
    start_session,
)
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import CodeForm, LoginForm, LogoutForm
from heyon_site.staff.inputs import staff_page
from heyon_site.web.fragments import redirect_to, render
from heyon_site.web.limits import checks_secret


def codes_refused(retry_after: int) -> object:
    """What a member is told when second-factor codes are refused for a while."""
    return _l("Too many wrong codes. Try again in %(n)s minute(s).", n=whole_minutes(retry_after))


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
    in_write_transaction(lambda: record(Actor(result.staff_id, username, request.remote_addr), action))
    if result.staff_id is None:
        if result.refused in ("throttled", "locked"):
            return _login_page(
                LoginForm(formdata=None),
                429,
                _l("Too many failed sign-ins. Try again in %(n)s minute(s).", n=whole_minutes(result.retry_after)),
            )
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


def _code_page(form: CodeForm, status: int = 200, error: object = None) -> Response:
    return render(
        "staff/login_code.html", "code_form", status, form=form, error=error, next=request.args.get("next", "")
    )


@bp.get("/login/code")
def login_code() -> Response:
    if second_step_user() is None:
        return redirect_to(url_for("staff.login"))
    return _code_page(CodeForm(formdata=None))


@bp.post("/login/code")
@checks_secret
def login_code_submit() -> Response:
    form = CodeForm(formdata=request.form)
    if not form.validate():
        return _code_page(form, 422)
    user = second_step_user()
    if user is None:  # took longer than five minutes, or the account changed meanwhile
        return redirect_to(url_for("staff.login"))
    staff_id, username, secret = user.id, user.username, user.totp_secret or ""
    result = check_code(staff_id, username, secret, form.code.data or "", device_cookie.presented())
    in_write_transaction(
        lambda: record(
            Actor(staff_id, username, request.remote_addr),
            "login.success" if result.staff_id else f"login.code_{result.refused}",
        )
    )
    if result.staff_id is None:
        if result.refused in ("throttled", "locked"):
            return _code_page(CodeForm(formdata=None), 429, codes_refused(result.retry_after))
        return _code_page(CodeForm(formdata=None), 403, _l("That code is wrong or was used already."))
    start_session(cast(StaffUser, db.session.get(StaffUser, staff_id, populate_existing=True)))  # just authenticated
    return redirect_to(safe_next(request.args.get("next")))
