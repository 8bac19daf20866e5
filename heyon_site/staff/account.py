"""One's own account: password and second factor."""

from __future__ import annotations

from typing import Any, cast

from flask import Response, request, url_for
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import StaffUser, utcnow
from heyon_site.security import device_cookie
from heyon_site.staff import second_factor, services
from heyon_site.staff.auth import (
    actor,
    authenticate,
    check_code,
    current_staff,
    hash_password,
    require_role,
    start_session,
    throttle_states,
)
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import ActionForm, ChangePasswordForm, CodeForm
from heyon_site.staff.signin import codes_refused
from heyon_site.web.fragments import redirect_to, render
from heyon_site.web.limits import checks_secret, secret_failed


def _me() -> StaffUser:
    user = current_staff()
    assert user is not None  # every view here is behind require_role
    return user


@bp.get("/account")
@require_role(enrolling=True)
def account() -> Response:
    me = _me()
    return render(
        "staff/account.html",
        me=me,
        throttles=throttle_states(me.username),
        password_form=ChangePasswordForm(formdata=None),
    )


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
            new_hash, who = hash_password(form.new_password.data or ""), actor()
            in_write_transaction(lambda: services.change_own_password(who, new_hash))
            # This browser stays signed in with the new version; every other session has ended.
            start_session(
                cast(StaffUser, db.session.get(StaffUser, staff_id, populate_existing=True))
            )  # just authenticated
            return redirect_to(url_for("staff.account", done="password"))
    else:
        error = _l("Check the fields.")
    return render(
        "staff/account.html", None, 422, me=me, throttles=throttle_states(me.username), password_form=form, error=error
    )


def _totp_page(status: int = 200, form: CodeForm | None = None, error: object = None) -> Response:
    me = _me()
    context: dict[str, Any] = {
        "me": me,
        "form": form or CodeForm(formdata=None),
        "error": error,
        "off_form": ActionForm(formdata=None),
    }
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
    who, code = actor(), form.code.data or ""
    if not in_write_transaction(lambda: services.turn_on_second_factor(who, code, utcnow())):
        secret_failed()
        return _totp_page(
            422, CodeForm(formdata=None), _l("That code does not match. Check the phone's time and try the next code.")
        )
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
        error = (
            codes_refused(result.retry_after)
            if result.refused in ("throttled", "locked")
            else _l("That code is wrong or was used already.")
        )
        return _totp_page(403, CodeForm(formdata=None), error)

    who = actor()
    in_write_transaction(lambda: services.turn_off_second_factor(who))
    return redirect_to(url_for("staff.account"))
