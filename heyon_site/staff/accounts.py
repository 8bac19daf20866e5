"""Admin screens for every staff account: create, change, disable, set a password, reset a second factor."""

from __future__ import annotations

from dataclasses import asdict

from flask import Response, abort, request, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import StaffUser
from heyon_site.staff import services
from heyon_site.staff.auth import actor, find_staff, hash_password, require_role, throttle_states
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import AccountSettingsForm, ActionForm, NewAccountForm, SetPasswordForm
from heyon_site.web.fragments import redirect_to, render


def _account_or_404(staff_id: int) -> StaffUser:
    return db.session.get(StaffUser, staff_id, populate_existing=True) or abort(404)


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
    who, settings = actor(), form.settings()
    password_hash = hash_password(form.new_password.data or "")
    in_write_transaction(lambda: services.create_account(who, username, password_hash, settings))
    return redirect_to(url_for("staff.accounts"))


def _edit_page(
    user: StaffUser,
    status: int = 200,
    settings: AccountSettingsForm | None = None,
    password: SetPasswordForm | None = None,
    error: object = None,
) -> Response:
    if settings is None:
        settings = AccountSettingsForm(formdata=None, data=asdict(services.settings_of(user)))
    return render(
        "staff/account_edit.html",
        None,
        status,
        user=user,
        settings=settings,
        password_form=password or SetPasswordForm(formdata=None),
        reset_form=ActionForm(formdata=None),
        throttles=throttle_states(user.username),
        error=error,
    )


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
    new, who = form.settings(), actor()
    if user.id == who.staff_id and (new.role != "admin" or not new.active):
        # The last way back in must not be closed from inside: another admin, or the CLI, can.
        return _edit_page(user, 409, settings=form, error=_l("You cannot take away your own admin role or sign-in."))
    in_write_transaction(lambda: services.change_settings(who, user, new))
    return redirect_to(url_for("staff.accounts"))


@bp.post("/accounts/<int:staff_id>/password")
@require_role("admin")
def account_set_password(staff_id: int) -> Response:
    user = _account_or_404(staff_id)
    who = actor()
    if user.id == who.staff_id:
        return _edit_page(user, 409, error=_l("Change your own password on your account page."))
    form = SetPasswordForm(formdata=request.form)
    if not form.validate():
        return _edit_page(user, 422, password=form)
    new_hash = hash_password(form.new_password.data or "")
    in_write_transaction(lambda: services.set_password(who, user, new_hash))
    return redirect_to(url_for("staff.accounts"))


@bp.post("/accounts/<int:staff_id>/totp-reset")
@require_role("admin")
def account_reset_totp(staff_id: int) -> Response:
    """For a lost phone: the second factor is removed and set up again at the next sign-in
    (at once, if the account requires it)."""
    user = _account_or_404(staff_id)
    if not ActionForm(formdata=request.form).validate():
        abort(400)
    who = actor()
    in_write_transaction(lambda: services.reset_second_factor(who, user))
    if staff_id == who.staff_id:
        return redirect_to(url_for("staff.login"))
    return redirect_to(url_for("staff.accounts"))
