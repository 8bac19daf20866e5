"""The promotion screens: list, draft, edit, ask for publication, approve or reject (two people), end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from zoneinfo import ZoneInfo

from flask import Response, abort, current_app, url_for
from flask_babel import gettext
from sqlalchemy import select

from heyon_site import sitetime
from heyon_site.billing.money import yuan
from heyon_site.billing.promos import NewPromotion, PromoCaps, PromotionError, Terms, describe, over_the_caps
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Promotion, StaffUser, utcnow
from heyon_site.ops.audit import Actor
from heyon_site.promos import services
from heyon_site.promos.lifecycle import (
    NothingToApprove,
    SameEditor,
    approval_digest,
    awaiting,
    live_state,
    may_approve,
    pending_terms,
)
from heyon_site.staff.auth import actor, current_staff, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import ActionForm, ApproveForm, PromotionForm
from heyon_site.web.fragments import redirect_to, render


def _after_promo_change() -> Response:
    # The customer pages show the change (staff/blueprint.py forgets the page cache after it).
    return redirect_to(url_for("staff.promo_list"))


@dataclass(frozen=True)
class PromoRow:
    promo: Promotion
    live_state: str
    pending: NewPromotion | None
    approve_digest: str | None  # set when this admin may approve what waits
    may_reject: bool
    over_caps: str | None  # why the terms are beyond the caps in force (quotes are clamped)


def _promo_or_404(promo_id: int) -> Promotion:
    return db.session.get(Promotion, promo_id, populate_existing=True) or abort(404)


def _caps() -> PromoCaps:
    return PromoCaps.from_config(current_app.config)


def _promo_row(promo: Promotion, me: StaffUser, now: datetime, caps: PromoCaps) -> PromoRow:
    admin = me.role == "admin"
    over = over_the_caps(promo, caps) if promo.published or promo.publish_requested else None
    return PromoRow(
        promo,
        live_state(promo, now),
        pending_terms(promo),
        approval_digest(promo) if admin and may_approve(promo, me.id) else None,
        admin and awaiting(promo) is not None,
        None if over is None else gettext(over.message, **over.params),
    )


def _promo_list_page(status: int = 200, error: str | None = None) -> Response:
    me = cast(StaffUser, current_staff())  # the views that show this list are behind require_role
    now, caps = utcnow(), _caps()
    rows = [_promo_row(p, me, now, caps) for p in db.session.scalars(select(Promotion).order_by(Promotion.id.desc()))]
    return render(
        "staff/promotions.html",
        None,
        status,
        rows=rows,
        describe=describe,
        error=error,
        action_form=ActionForm(formdata=None),
        approve_form=ApproveForm(formdata=None),
    )


def _promo_form_page(
    form: PromotionForm, promo: Promotion | None, status: int = 200, error: str | None = None
) -> Response:
    action = url_for("staff.promo_save", promo_id=promo.id) if promo else url_for("staff.promo_create")
    return render(
        "staff/promotion_form.html",
        None,
        status,
        form=form,
        promo=promo,
        action=action,
        error=error,
        pending=promo is not None and promo.pending_terms is not None,
    )


def _form_of(promo: Promotion) -> PromotionForm:
    """The form of the terms an editor continues from: a waiting change if there is one."""
    tz = sitetime.zone(current_app.config)
    t: Terms = pending_terms(promo) or promo

    fixed = t.kind == "fixed_bonus"
    return PromotionForm(
        formdata=None,
        title_zh=t.title_zh,
        title_en=t.title_en,
        kind=t.kind,
        threshold=yuan(t.threshold_fen),
        value=yuan(t.value_fen or 0) if fixed else "",
        percent="" if fixed else yuan(t.percent_bp or 0).removesuffix(".00"),
        cap=yuan(t.cap_fen) if t.cap_fen is not None else "",
        starts=sitetime.to_local(t.starts_at, tz),
        ends=sitetime.to_local(t.ends_at, tz),
        priority=t.priority,
        published=bool(promo.published or promo.publish_requested),
    )


@bp.get("/promotions")
@require_role("editor")
def promo_list() -> Response:
    return _promo_list_page()


@bp.get("/promotions/new")
@require_role("editor")
def promo_new() -> Response:
    return _promo_form_page(PromotionForm(formdata=None), None)


@bp.post("/promotions")
@require_role("editor")
def promo_create() -> Response:
    form = PromotionForm()
    tz = sitetime.zone(current_app.config)
    new = form.terms(tz) if form.validate() else None
    if new is None:
        return _promo_form_page(form, None, 422)
    who, caps = actor(), _caps()
    try:
        in_write_transaction(lambda: services.create(who, new, caps, tz))
    except PromotionError as e:
        return _promo_form_page(form, None, 422, gettext(e.message, **e.params))
    return _after_promo_change()


@bp.get("/promotions/<int:promo_id>/edit")
@require_role("editor")
def promo_edit(promo_id: int) -> Response:
    promo = _promo_or_404(promo_id)
    return _promo_form_page(_form_of(promo), promo)


@bp.post("/promotions/<int:promo_id>")
@require_role("editor")
def promo_save(promo_id: int) -> Response:
    promo = _promo_or_404(promo_id)
    form = PromotionForm()
    tz = sitetime.zone(current_app.config)
    new = form.terms(tz) if form.validate() else None
    if new is None:
        return _promo_form_page(form, promo, 422)
    who, caps = actor(), _caps()
    try:
        in_write_transaction(lambda: services.save(who, promo_id, new, caps, tz) or abort(404))
    except PromotionError as e:
        return _promo_form_page(form, promo, 422, gettext(e.message, **e.params))
    return _after_promo_change()


def _promo_step(promo_id: int, step: Callable[[Actor, int, ZoneInfo], str]) -> Response:
    """One button's change (the service writes its audit row when something changed)."""
    _promo_or_404(promo_id)
    who, tz = actor(), sitetime.zone(current_app.config)
    in_write_transaction(lambda: step(who, promo_id, tz))
    return _after_promo_change()


@bp.post("/promotions/<int:promo_id>/publish")
@require_role("editor")
def promo_publish(promo_id: int) -> Response:
    """Ask for publication: an admin who did not edit the terms last approves it."""
    return _promo_step(promo_id, services.request_publication)


@bp.post("/promotions/<int:promo_id>/unpublish")
@require_role("editor")
def promo_unpublish(promo_id: int) -> Response:
    """Take it off, or withdraw the request to publish it: less given away, one person may."""
    return _promo_step(promo_id, services.unpublish)


@bp.post("/promotions/<int:promo_id>/end")
@require_role("editor")
def promo_end(promo_id: int) -> Response:
    """End it now (one that has not started is withdrawn instead); orders keep their terms."""
    return _promo_step(promo_id, services.end)


@bp.post("/promotions/<int:promo_id>/reject")
@require_role("admin")
def promo_reject(promo_id: int) -> Response:
    """Turn down a publication or a change: nothing more is given away, so any admin may."""
    return _promo_step(promo_id, services.reject)


@bp.post("/promotions/<int:promo_id>/approve")
@require_role("admin")
def promo_approve(promo_id: int) -> Response:
    """The second person: publish a draft, or put a waiting change in force."""
    _promo_or_404(promo_id)
    who, digest = actor(), ApproveForm().terms.data or ""
    caps, tz = _caps(), sitetime.zone(current_app.config)
    try:
        in_write_transaction(lambda: services.approve(who, promo_id, caps, digest, tz))
    except SameEditor as e:
        return _promo_list_page(403, gettext(e.message, **e.params))
    except NothingToApprove as e:
        return _promo_list_page(409, gettext(e.message, **e.params))
    except PromotionError as e:  # over the caps in force: they were lowered since the terms were written
        return _promo_list_page(422, gettext(e.message, **e.params))
    return _after_promo_change()
