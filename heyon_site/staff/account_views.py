"""Staff accounts under /staff: the second sign-in step, one's own password and second factor,
and the admin pages that create, change, disable and reset accounts.

Every change is one write transaction holding its audit row. Changes that take something away
(password, second factor, the account itself) end the account's sessions everywhere.
"""
from __future__ import annotations

from typing import Any

from flask import Response, abort, request, url_for
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import select, update

from .. import device_cookie
from ..database import in_write_transaction
from ..extensions import db
from ..htmx import redirect_to, render
from ..limits import checks_secret, secret_failed
from ..models import StaffUser, utcnow
from . import second_factor
from .auth import (
    audit, authenticate, check_code, clear_throttle, current_staff, end_all_sessions, find_staff,
    hash_password, require_role, second_step_user, start_session, throttle_states,
)
from .forms import AccountSettingsForm, ActionForm, ChangePasswordForm, CodeForm, NewAccountForm, SetPasswordForm
from .views import bp, safe_next


def _me() -> StaffUser:
    user = current_staff()
    assert user is not None  # every view here is behind require_role
    return user


def _refused_code(retry_after: int) -> Any:
    minutes = max(1, (retry_after + 59) // 60)
    return _l("Too many wrong codes. Try again in %(n)s minute(s).", n=minutes)


# ------------------------------------------------------------------ second sign-in step


def _code_page(form: CodeForm, status: int = 200, error: object = None) -> Response:
    return render("staff/login_code.html", "code_form", status, form=form, error=error, next=request.args.get("next", ""))


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
    in_write_transaction(lambda: audit("login.success" if result.staff_id else f"login.code_{result.refused}",
                                       staff_id=staff_id, username=username))
    if result.staff_id is None:
        if result.refused in ("throttled", "locked"):
            return _code_page(CodeForm(formdata=None), 429, _refused_code(result.retry_after))
        return _code_page(CodeForm(formdata=None), 403, _l("That code is wrong or was used already."))
    start_session(db.session.get(StaffUser, staff_id, populate_existing=True))  # type: ignore[arg-type]
    return redirect_to(safe_next(request.args.get("next")))


# ------------------------------------------------------------------ one's own account


@bp.get("/account")
@require_role(enrolling=True)
def account() -> Response:
    me = _me()
    return render("staff/account.html", me=me, throttles=throttle_states(me.username),
                  password_form=ChangePasswordForm(formdata=None))


@bp.post("/account/password")
@checks_secret
@require_role()
def account_password() -> Response:
    me = _me()
    form = ChangePasswordForm(formdata=request.form)
    error = None
    if form.validate():
        staff_id, username = me.id, me.username
        if authenticate(username, form.current.data or "", device_cookie.presented()).staff_id is None:
            secret_failed()
            form.current.errors = [_l("The current password is wrong.")]
        else:
            new_hash = hash_password(form.new_password.data or "")

            def work() -> None:
                db.session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(password_hash=new_hash))
                end_all_sessions(staff_id)
                audit("account.password", staff_id=staff_id, username=username, target=f"staff {username}")

            in_write_transaction(work)
            # This browser stays signed in with the new version; every other session has ended.
            start_session(db.session.get(StaffUser, staff_id, populate_existing=True))  # type: ignore[arg-type]
            return redirect_to(url_for("staff.account", done="password"))
    else:
        error = _l("Check the fields.")
    return render("staff/account.html", None, 422, me=me, throttles=throttle_states(me.username),
                  password_form=form, error=error)


def _totp_page(status: int = 200, form: CodeForm | None = None, error: object = None) -> Response:
    me = _me()
    context: dict[str, Any] = {"me": me, "form": form or CodeForm(formdata=None), "error": error,
                               "off_form": ActionForm(formdata=None)}
    if not me.totp_secret:
        staff_id = me.id
        secret = in_write_transaction(lambda: second_factor.start_enrolment(staff_id))
        uri = second_factor.provisioning_uri(secret, me.username)
        # segno escapes what it writes into the SVG; the username is in the URI only.
        context.update(secret=second_factor.grouped(secret), qr=Markup(second_factor.qr_svg(uri)))
    return render("staff/totp.html", None, status, **context)


@bp.get("/account/totp")
@require_role(enrolling=True)
def totp_setup() -> Response:
    return _totp_page()


@bp.post("/account/totp")
@checks_secret
@require_role(enrolling=True)
def totp_confirm() -> Response:
    me = _me()
    form = CodeForm(formdata=request.form)
    # On already, or no key shown yet (the page was never opened): nothing to confirm, and a
    # refusal here must not make a key (showing the page again would).
    if me.totp_secret or not me.totp_pending:
        return redirect_to(url_for("staff.totp_setup"))
    if not form.validate():
        return _totp_page(422, form)
    staff_id, username, code = me.id, me.username, form.code.data or ""

    def work() -> bool:
        if not second_factor.confirm_enrolment(staff_id, code, utcnow()):
            return False
        audit("account.totp_on", staff_id=staff_id, username=username, target=f"staff {username}")
        return True

    if not in_write_transaction(work):
        secret_failed()
        return _totp_page(422, CodeForm(formdata=None), _l("That code does not match. Check the phone's time and try the next code."))
    return redirect_to(url_for("staff.account", done="totp"))


@bp.post("/account/totp/off")
@checks_secret
@require_role()
def totp_off() -> Response:
    """Turning it off takes a current code, and is not possible where an admin requires it."""
    me = _me()
    form = CodeForm(formdata=request.form)
    if me.totp_required:
        return _totp_page(409, form, _l("An admin requires a second factor for this account."))
    if not me.totp_secret:  # nothing to turn off (a stale page): the page shows it is off
        return redirect_to(url_for("staff.totp_setup"))
    if not form.validate():
        return _totp_page(422, form)
    staff_id, username, secret = me.id, me.username, me.totp_secret
    result = check_code(staff_id, username, secret, form.code.data or "", device_cookie.presented())
    if result.staff_id is None:
        error = (_refused_code(result.retry_after) if result.refused in ("throttled", "locked")
                 else _l("That code is wrong or was used already."))
        return _totp_page(403, CodeForm(formdata=None), error)

    def work() -> None:
        second_factor.remove(staff_id)
        audit("account.totp_off", staff_id=staff_id, username=username, target=f"staff {username}")

    in_write_transaction(work)
    return redirect_to(url_for("staff.account"))


# ------------------------------------------------------------------ admin: every account


def _account_or_404(staff_id: int) -> StaffUser:
    return db.session.get(StaffUser, staff_id, populate_existing=True) or abort(404)


def _settings(user: StaffUser) -> dict[str, Any]:
    return {"role": user.role, "active": bool(user.active), "totp_required": bool(user.totp_required)}


def _summary(values: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in values.items())


@bp.get("/accounts")
@require_role("admin")
def accounts() -> Response:
    users = list(db.session.scalars(select(StaffUser).order_by(StaffUser.username)))
    return render("staff/accounts.html", users=users, throttles={u.id: throttle_states(u.username) for u in users})


def _new_account_page(form: NewAccountForm, status: int = 200) -> Response:
    return render("staff/account_new.html", None, status, form=form)


@bp.get("/accounts/new")
@require_role("admin")
def account_new() -> Response:
    return _new_account_page(NewAccountForm(formdata=None))


@bp.post("/accounts")
@require_role("admin")
def account_create() -> Response:
    form = NewAccountForm(formdata=request.form)
    if not form.validate():
        return _new_account_page(form, 422)
    username = form.username.data or ""
    if find_staff(username) is not None:
        form.username.errors = [_l("This username is taken.")]
        return _new_account_page(form, 409)
    actor = _me()
    actor_id, actor_name = actor.id, actor.username
    values = {"role": form.role.data or "", "active": bool(form.active.data), "totp_required": bool(form.totp_required.data)}
    password_hash = hash_password(form.new_password.data or "")

    def work() -> None:
        db.session.add(StaffUser(username=username, password_hash=password_hash, **values))
        db.session.flush()
        audit("staff.create", staff_id=actor_id, username=actor_name, target=f"staff {username}", after=_summary(values))

    in_write_transaction(work)
    return redirect_to(url_for("staff.accounts"))


def _edit_page(user: StaffUser, status: int = 200, settings: AccountSettingsForm | None = None,
               password: SetPasswordForm | None = None, error: object = None) -> Response:
    if settings is None:
        settings = AccountSettingsForm(formdata=None, data=_settings(user))
    return render("staff/account_edit.html", None, status, user=user, settings=settings,
                  password_form=password or SetPasswordForm(formdata=None), reset_form=ActionForm(formdata=None),
                  throttles=throttle_states(user.username), error=error)


@bp.get("/accounts/<int:staff_id>")
@require_role("admin")
def account_edit(staff_id: int) -> Response:
    return _edit_page(_account_or_404(staff_id))


@bp.post("/accounts/<int:staff_id>")
@require_role("admin")
def account_save(staff_id: int) -> Response:
    user = _account_or_404(staff_id)
    form = AccountSettingsForm(formdata=request.form)
    if not form.validate():
        return _edit_page(user, 422, settings=form)
    after = {"role": form.role.data or "", "active": bool(form.active.data), "totp_required": bool(form.totp_required.data)}
    actor = _me()
    if user.id == actor.id and (after["role"] != "admin" or not after["active"]):
        # The last way back in must not be closed from inside: another admin, or the CLI, can.
        return _edit_page(user, 409, settings=form, error=_l("You cannot take away your own admin role or sign-in."))
    before = _settings(user)
    changed = {k: v for k, v in after.items() if before[k] != v}
    actor_id, actor_name, username = actor.id, actor.username, user.username

    def work() -> None:
        if not changed:
            return
        db.session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(**changed))
        if changed.get("active") is False or "role" in changed:
            end_all_sessions(staff_id)
        audit("staff.edit", staff_id=actor_id, username=actor_name, target=f"staff {username}",
              before=_summary({k: before[k] for k in changed}), after=_summary(changed))

    in_write_transaction(work)
    return redirect_to(url_for("staff.accounts"))


@bp.post("/accounts/<int:staff_id>/password")
@require_role("admin")
def account_set_password(staff_id: int) -> Response:
    user = _account_or_404(staff_id)
    actor = _me()
    if user.id == actor.id:
        return _edit_page(user, 409, error=_l("Change your own password on your account page."))
    form = SetPasswordForm(formdata=request.form)
    if not form.validate():
        return _edit_page(user, 422, password=form)
    new_hash = hash_password(form.new_password.data or "")
    actor_id, actor_name, username = actor.id, actor.username, user.username

    def work() -> None:
        db.session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(password_hash=new_hash))
        clear_throttle(username)  # the way back in: no wait left from anyone's failures
        end_all_sessions(staff_id)
        audit("staff.password_reset", staff_id=actor_id, username=actor_name, target=f"staff {username}")

    in_write_transaction(work)
    return redirect_to(url_for("staff.accounts"))


@bp.post("/accounts/<int:staff_id>/totp-reset")
@require_role("admin")
def account_reset_totp(staff_id: int) -> Response:
    """For a lost phone: the second factor is removed and set up again at the next sign-in
    (at once, if the account requires it)."""
    user = _account_or_404(staff_id)
    if not ActionForm(formdata=request.form).validate():
        abort(400)
    actor = _me()
    actor_id, actor_name, username = actor.id, actor.username, user.username

    def work() -> None:
        second_factor.remove(staff_id)
        clear_throttle(username, password=False)  # the codes' throttle was about the removed secret
        end_all_sessions(staff_id)
        audit("staff.totp_reset", staff_id=actor_id, username=actor_name, target=f"staff {username}")

    in_write_transaction(work)
    if staff_id == actor_id:
        return redirect_to(url_for("staff.login"))
    return redirect_to(url_for("staff.accounts"))
