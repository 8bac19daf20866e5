"""Editor pages under /staff: the customer FAQ and the promotions.

Every change is one write transaction that also holds its audit row (who, what, before, after).
Pages work as plain forms; htmx adds click-to-edit on the FAQ list (the fragment convention of
``htmx.render``: the edit form and the row are named blocks of the page templates).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, abort, current_app, url_for
from flask_babel import gettext, lazy_gettext as _l
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import func, select
from wtforms.fields.choices import SelectChoice
from wtforms import BooleanField, HiddenField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from .. import page_cache
from ..billing.money import AmountError, parse_amount, yuan
from ..billing.promos import (MAX_TITLE, Editor, NewPromotion, NothingToApprove, PromoCaps, PromotionError, SameEditor,
                              Terms, approval_digest, approve, awaiting, create_promotion, describe, end_promotion,
                              live_state, may_approve, over_the_caps, pending_terms, reject, request_publication, state,
                              unpublish, update_promotion)
from ..billing.receipts import local_time
from ..content import render_markdown
from ..database import in_write_transaction
from ..extensions import db
from ..htmx import is_htmx, redirect_to, render
from ..models import PROMO_KINDS, FaqEntry, Promotion, StaffUser, utcnow
from .auth import audit, current_staff, require_role
from .forms import ActionForm
from .inputs import site_time_field
from .views import bp

FAQ_LOCALES = (("zh_Hans", "中文"), ("en", "English"))
MAX_ANSWER = 10_000
MAX_POSITION = 1_000_000
SUMMARY_VALUE = 80  # characters of one value in an audit summary


def _strip(text: str | None) -> str | None:
    return text.strip() if isinstance(text, str) else text


def _too_long() -> Any:
    return _l("Too long.")


class FaqForm(FlaskForm):
    locale = SelectField(_l("Language"), choices=[SelectChoice(c, label) for c, label in FAQ_LOCALES], default="zh_Hans")
    category = StringField(_l("Category"), [DataRequired(_l("Required.")), Length(max=80, message=_too_long())],
                           filters=[_strip], render_kw={"maxlength": "80"})
    question = StringField(_l("Question"), [DataRequired(_l("Required.")), Length(max=300, message=_too_long())],
                           filters=[_strip], render_kw={"maxlength": "300"})
    answer_md = TextAreaField(_l("Answer (Markdown)"),
                              [DataRequired(_l("Required.")), Length(max=MAX_ANSWER, message=_too_long())],
                              render_kw={"maxlength": str(MAX_ANSWER), "rows": "8"})
    position = IntegerField(_l("Position"), [InputRequired(_l("Required.")),
                                             NumberRange(0, MAX_POSITION, message=_l("Out of range."))],
                            render_kw={"inputmode": "numeric"})
    published = BooleanField(_l("Published"))


class PromotionForm(FlaskForm):
    title_zh = StringField(_l("Chinese title"), [DataRequired(_l("Required.")), Length(max=MAX_TITLE, message=_too_long())],
                           filters=[_strip], render_kw={"maxlength": str(MAX_TITLE)})
    title_en = StringField(_l("English title"), [DataRequired(_l("Required.")), Length(max=MAX_TITLE, message=_too_long())],
                           filters=[_strip], render_kw={"maxlength": str(MAX_TITLE)})
    kind = SelectField(_l("Kind"), choices=[SelectChoice(k, k) for k in PROMO_KINDS], default=PROMO_KINDS[0])
    threshold = StringField(_l("From amount (yuan)"), default="0", render_kw={"maxlength": "12", "inputmode": "decimal"})
    value = StringField(_l("Bonus (yuan, fixed_bonus)"), render_kw={"maxlength": "12", "inputmode": "decimal"})
    percent = StringField(_l("Percent (percent_bonus, discount)"), render_kw={"maxlength": "8", "inputmode": "decimal"})
    cap = StringField(_l("At most (yuan)"), render_kw={"maxlength": "12", "inputmode": "decimal"})
    # Within the years the site converts to UTC (inputs.EARLIEST to LATEST), so terms() cannot overflow.
    starts = site_time_field(_l("Starts"))
    ends = site_time_field(_l("Ends (exclusive)"))
    priority = IntegerField(_l("Priority"), [InputRequired(_l("Required.")),
                                             NumberRange(-1000, 1000, message=_l("Out of range."))], default=0)
    published = BooleanField(_l("Published"))

    def terms(self, zone: ZoneInfo) -> NewPromotion | None:
        """The promotion the form describes, times as naive UTC; ``None`` (and field errors) if
        an amount cannot be read. The terms themselves are checked by billing.promos."""
        amounts: dict[str, int | None] = {}
        for name, message in (("threshold", _l("Not an amount like 12.34.")), ("value", _l("Not an amount like 12.34.")),
                              ("cap", _l("Not an amount like 12.34.")), ("percent", _l("Not a percentage like 10 or 2.5."))):
            field = self[name]
            text = (field.data or "").strip()
            if name == "percent":
                text = text.removesuffix("%").strip()
            try:
                # Hundredths of a percent are basis points: "2.5" is exactly 250, no float.
                amounts[name] = parse_amount(text) if text else None
            except AmountError:
                field.errors = [*field.errors, message]
        if any(self[n].errors for n in ("threshold", "value", "cap", "percent")) or self.starts.data is None or self.ends.data is None:
            return None

        def utc(local: datetime) -> datetime:
            return local.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)

        return NewPromotion(title_zh=self.title_zh.data or "", title_en=self.title_en.data or "", kind=self.kind.data or "",
                            starts_at=utc(self.starts.data), ends_at=utc(self.ends.data),
                            threshold_fen=amounts["threshold"] or 0, value_fen=amounts["value"],
                            percent_bp=amounts["percent"], cap_fen=amounts["cap"], priority=self.priority.data or 0,
                            published=bool(self.published.data))


# ------------------------------------------------------------------ helpers


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["HEYON_TIMEZONE"])


def _actor() -> tuple[int, str]:
    user: StaffUser = current_staff()  # type: ignore[assignment]
    return user.id, user.username


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text
    return text if len(text) <= SUMMARY_VALUE else text[: SUMMARY_VALUE - 1] + "…"


def _diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str]:
    """``k=v`` of the fields that changed, before and after (every field for a new row)."""
    keys = [k for k in after if before.get(k, object()) != after[k]]
    return ("; ".join(f"{k}={_short(before[k])}" for k in keys if k in before),
            "; ".join(f"{k}={_short(after[k])}" for k in keys))


def _faq_fields(entry: FaqEntry) -> dict[str, Any]:
    return {"locale": entry.locale, "category": entry.category, "question": entry.question,
            "answer_md": entry.answer_md, "position": entry.position, "published": bool(entry.published)}


def _term_fields(t: Terms) -> dict[str, Any]:
    tz = _zone()
    return {"title_zh": t.title_zh.strip(), "title_en": t.title_en.strip(), "terms": describe(t),
            "starts": local_time(t.starts_at, tz), "ends": local_time(t.ends_at, tz), "priority": t.priority}


def _promo_fields(promo: Promotion) -> dict[str, Any]:
    change = pending_terms(promo)
    return {**_term_fields(promo), "state": state(promo, utcnow()), "changes": change and describe(change)}


def _after_post(list_endpoint: str) -> Response:
    return redirect_to(url_for(list_endpoint))


def _after_promo_change() -> Response:
    # This process shows the change at once; other processes within HEYON_PAGE_CACHE_SECONDS.
    page_cache.forget()
    return _after_post("staff.promo_list")


# ------------------------------------------------------------------ FAQ


def _faq_entries() -> dict[str, list[FaqEntry]]:
    grouped: dict[str, list[FaqEntry]] = {code: [] for code, _ in FAQ_LOCALES}
    for entry in db.session.scalars(select(FaqEntry).order_by(FaqEntry.locale, FaqEntry.position, FaqEntry.id)):
        grouped.setdefault(entry.locale, []).append(entry)
    return grouped


def _faq_page(block: str | None = None, status: int = 200, **context: Any) -> Response:
    return render("staff/faq.html", block, status, entries=_faq_entries(), locales=FAQ_LOCALES,
                  action_form=ActionForm(formdata=None), **context)


def _faq_or_404(entry_id: int) -> FaqEntry:
    return db.session.get(FaqEntry, entry_id, populate_existing=True) or abort(404)


def _faq_form_page(form: FaqForm, entry: FaqEntry | None, status: int = 200) -> Response:
    action = url_for("staff.faq_save", entry_id=entry.id) if entry else url_for("staff.faq_create")
    preview: Markup | None = render_markdown(form.answer_md.data) if form.answer_md.data else None
    return render("staff/faq_form.html", "edit_form", status, form=form, entry=entry, action=action, preview=preview)


@bp.get("/faq")
@require_role("editor")
def faq_list() -> Response:
    return _faq_page()


@bp.get("/faq/new")
@require_role("editor")
def faq_new() -> Response:
    top = db.session.scalar(select(func.max(FaqEntry.position))) or 0
    return _faq_form_page(FaqForm(formdata=None, position=top + 10, published=False), None)


@bp.post("/faq")
@require_role("editor")
def faq_create() -> Response:
    form = FaqForm()
    if not form.validate():
        return _faq_form_page(form, None, 422)
    staff_id, username = _actor()

    def work() -> None:
        entry = FaqEntry(locale=form.locale.data, category=form.category.data, question=form.question.data,
                         answer_md=form.answer_md.data, position=form.position.data,
                         published=bool(form.published.data), created_at=utcnow(), updated_at=utcnow())
        db.session.add(entry)
        db.session.flush()
        _, after = _diff({}, _faq_fields(entry))
        audit("faq.create", staff_id=staff_id, username=username, target=f"faq {entry.id}", after=after)

    in_write_transaction(work)
    return _after_post("staff.faq_list")


@bp.get("/faq/<int:entry_id>")
@require_role("editor")
def faq_row(entry_id: int) -> Response:
    """The row of one entry (htmx: cancel an edit); a browser is sent to the list."""
    entry = _faq_or_404(entry_id)
    if not is_htmx():
        return redirect_to(url_for("staff.faq_list"))
    return render("staff/faq.html", "faq_row", entry=entry, action_form=ActionForm(formdata=None))


@bp.get("/faq/<int:entry_id>/edit")
@require_role("editor")
def faq_edit(entry_id: int) -> Response:
    entry = _faq_or_404(entry_id)
    return _faq_form_page(FaqForm(formdata=None, obj=entry), entry)


@bp.post("/faq/<int:entry_id>")
@require_role("editor")
def faq_save(entry_id: int) -> Response:
    entry = _faq_or_404(entry_id)
    form = FaqForm()
    if not form.validate():
        return _faq_form_page(form, entry, 422)
    staff_id, username = _actor()

    def work() -> FaqEntry:
        row = _faq_or_404(entry_id)
        before = _faq_fields(row)
        form.populate_obj(row)
        row.published = bool(form.published.data)
        after = _faq_fields(row)
        if after != before:
            row.updated_at = utcnow()
            b, a = _diff(before, after)
            audit("faq.edit", staff_id=staff_id, username=username, target=f"faq {row.id}", before=b, after=a)
        return row

    saved = in_write_transaction(work)
    if is_htmx():
        return render("staff/faq.html", "faq_row", entry=saved, action_form=ActionForm(formdata=None))
    return _after_post("staff.faq_list")


def _faq_set_published(entry_id: int, published: bool) -> Response:
    _faq_or_404(entry_id)
    staff_id, username = _actor()

    def work() -> FaqEntry:
        row = _faq_or_404(entry_id)
        if bool(row.published) != published:
            row.published, row.updated_at = published, utcnow()
            audit("faq.publish" if published else "faq.unpublish", staff_id=staff_id, username=username,
                  target=f"faq {row.id}", before=f"published={not published}".lower(), after=f"published={published}".lower())
        return row

    saved = in_write_transaction(work)
    if is_htmx():
        return render("staff/faq.html", "faq_row", entry=saved, action_form=ActionForm(formdata=None))
    return _after_post("staff.faq_list")


@bp.post("/faq/<int:entry_id>/publish")
@require_role("editor")
def faq_publish(entry_id: int) -> Response:
    return _faq_set_published(entry_id, True)


@bp.post("/faq/<int:entry_id>/unpublish")
@require_role("editor")
def faq_unpublish(entry_id: int) -> Response:
    return _faq_set_published(entry_id, False)


@bp.post("/faq/<int:entry_id>/move/<direction>")
@require_role("editor")
def faq_move(entry_id: int, direction: str) -> Response:
    """Swap places with the neighbour above or below in the same language."""
    if direction not in ("up", "down"):
        abort(404)
    _faq_or_404(entry_id)
    staff_id, username = _actor()

    def work() -> None:
        row = _faq_or_404(entry_id)
        rows = list(db.session.scalars(select(FaqEntry).where(FaqEntry.locale == row.locale)
                                       .order_by(FaqEntry.position, FaqEntry.id).with_for_update()))
        i = next(n for n, r in enumerate(rows) if r.id == entry_id)
        j = i - 1 if direction == "up" else i + 1
        if not 0 <= j < len(rows):
            return  # already first or last: nothing changes, nothing to record
        a, b = rows[i], rows[j]
        before = f"faq {a.id} position={a.position}; faq {b.id} position={b.position}"
        if len({r.position for r in rows}) < len(rows):
            # Equal positions order by id, and swapping equals would change nothing: renumber first.
            for n, r in enumerate(rows):
                r.position = 10 * (n + 1)
        a.position, b.position = b.position, a.position
        a.updated_at = b.updated_at = utcnow()
        audit(f"faq.move_{direction}", staff_id=staff_id, username=username, target=f"faq {a.id}", before=before,
              after=f"faq {a.id} position={a.position}; faq {b.id} position={b.position}")

    in_write_transaction(work)
    if is_htmx():
        return _faq_page("faq_list")
    return _after_post("staff.faq_list")


# ------------------------------------------------------------------ promotions
# Two people put terms in force (billing.promos): editors draft and ask for publication, an admin
# who is not the last editor of the terms approves; ending and unpublishing need nobody else.


class ApproveForm(FlaskForm):
    """The approve button names the terms the admin was shown (``approval_digest``)."""

    terms = HiddenField()


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
    return PromoRow(promo, live_state(promo, now), pending_terms(promo),
                    approval_digest(promo) if admin and may_approve(promo, me.id) else None,
                    admin and awaiting(promo) is not None, None if over is None else gettext(over.message, **over.params))


def _promo_list_page(status: int = 200, error: str | None = None) -> Response:
    me: StaffUser = current_staff()  # type: ignore[assignment]
    now, caps = utcnow(), _caps()
    rows = [_promo_row(p, me, now, caps) for p in db.session.scalars(select(Promotion).order_by(Promotion.id.desc()))]
    return render("staff/promotions.html", None, status, rows=rows, describe=describe, error=error,
                  action_form=ActionForm(formdata=None), approve_form=ApproveForm(formdata=None))


def _promo_form_page(form: PromotionForm, promo: Promotion | None, status: int = 200, error: str | None = None) -> Response:
    action = url_for("staff.promo_save", promo_id=promo.id) if promo else url_for("staff.promo_create")
    return render("staff/promotion_form.html", None, status, form=form, promo=promo, action=action, error=error,
                  pending=promo is not None and promo.pending_terms is not None)


def _form_of(promo: Promotion) -> PromotionForm:
    """The form of the terms an editor continues from: a waiting change if there is one."""
    tz = _zone()
    t: Terms = pending_terms(promo) or promo

    def local(moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)

    fixed = t.kind == "fixed_bonus"
    return PromotionForm(formdata=None, title_zh=t.title_zh, title_en=t.title_en, kind=t.kind,
                         threshold=yuan(t.threshold_fen), value=yuan(t.value_fen or 0) if fixed else "",
                         percent="" if fixed else yuan(t.percent_bp or 0).removesuffix(".00"),
                         cap=yuan(t.cap_fen) if t.cap_fen is not None else "",
                         starts=local(t.starts_at), ends=local(t.ends_at), priority=t.priority,
                         published=bool(promo.published or promo.publish_requested))


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
    new = form.terms(_zone()) if form.validate() else None
    if new is None:
        return _promo_form_page(form, None, 422)
    editor = Editor(*_actor())

    def work() -> None:
        promo = create_promotion(new, _caps(), editor)
        _, after = _diff({}, {k: v for k, v in _promo_fields(promo).items() if v is not None})
        audit("promo.create", staff_id=editor.staff_id, username=editor.name, target=f"promotion {promo.id}", after=after)

    try:
        in_write_transaction(work)
    except PromotionError as e:
        return _promo_form_page(form, None, 422, gettext(e.message, **e.params))
    return _after_promo_change()


@bp.get("/promotions/<int:promo_id>/edit")
@require_role("editor")
def promo_edit(promo_id: int) -> Response:
    promo = _promo_or_404(promo_id)
    return _promo_form_page(_form_of(promo), promo)


# What each outcome of saving the form is called in the audit log.
SAVED = {"edited": "promo.edit", "unpublished": "promo.unpublish", "changes_requested": "promo.change_request",
         "changes_withdrawn": "promo.change_withdraw"}


@bp.post("/promotions/<int:promo_id>")
@require_role("editor")
def promo_save(promo_id: int) -> Response:
    promo = _promo_or_404(promo_id)
    form = PromotionForm()
    new = form.terms(_zone()) if form.validate() else None
    if new is None:
        return _promo_form_page(form, promo, 422)
    editor = Editor(*_actor())

    def work() -> None:
        row = _promo_or_404(promo_id)
        before, live = _promo_fields(row), _term_fields(row)
        outcome = update_promotion(promo_id, new, _caps(), editor) or abort(404)
        if outcome not in SAVED:
            return
        saved = _promo_or_404(promo_id)
        change = pending_terms(saved)
        # A waiting change is recorded as what it would change in the live terms.
        b, a = _diff(live, _term_fields(change)) if outcome == "changes_requested" and change else \
            _diff(before, _promo_fields(saved))
        audit(SAVED[outcome], staff_id=editor.staff_id, username=editor.name, target=f"promotion {promo_id}",
              before=b, after=f"{a} ({outcome})" if outcome != "edited" else a)

    try:
        in_write_transaction(work)
    except PromotionError as e:
        return _promo_form_page(form, promo, 422, gettext(e.message, **e.params))
    return _after_promo_change()


def _promo_step(promo_id: int, step: Callable[[], str], actions: dict[str, str]) -> Response:
    """One button's change, and its audit row when something changed (``actions``: the outcomes
    that change something, and their audit action)."""
    _promo_or_404(promo_id)
    staff_id, username = _actor()

    def work() -> None:
        before = _promo_fields(_promo_or_404(promo_id))
        outcome = step()
        if outcome in actions:
            b, a = _diff(before, _promo_fields(_promo_or_404(promo_id)))
            audit(actions[outcome], staff_id=staff_id, username=username, target=f"promotion {promo_id}",
                  before=b, after=f"{a} ({outcome})")

    in_write_transaction(work)
    return _after_promo_change()


@bp.post("/promotions/<int:promo_id>/publish")
@require_role("editor")
def promo_publish(promo_id: int) -> Response:
    """Ask for publication: an admin who did not edit the terms last approves it."""
    return _promo_step(promo_id, lambda: request_publication(promo_id), {"requested": "promo.publish_request"})


@bp.post("/promotions/<int:promo_id>/unpublish")
@require_role("editor")
def promo_unpublish(promo_id: int) -> Response:
    """Take it off, or withdraw the request to publish it: less given away, one person may."""
    return _promo_step(promo_id, lambda: unpublish(promo_id), {"unpublished": "promo.unpublish",
                                                               "withdrawn": "promo.unpublish"})


@bp.post("/promotions/<int:promo_id>/end")
@require_role("editor")
def promo_end(promo_id: int) -> Response:
    """End it now (one that has not started is withdrawn instead); orders keep their terms."""
    return _promo_step(promo_id, lambda: end_promotion(promo_id), {"ended": "promo.end", "withdrawn": "promo.end"})


@bp.post("/promotions/<int:promo_id>/reject")
@require_role("admin")
def promo_reject(promo_id: int) -> Response:
    """Turn down a publication or a change: nothing more is given away, so any admin may."""
    return _promo_step(promo_id, lambda: reject(promo_id), {"publication_rejected": "promo.reject",
                                                            "changes_rejected": "promo.reject"})


@bp.post("/promotions/<int:promo_id>/approve")
@require_role("admin")
def promo_approve(promo_id: int) -> Response:
    """The second person: publish a draft, or put a waiting change in force."""
    _promo_or_404(promo_id)
    approver, digest = Editor(*_actor()), ApproveForm().terms.data or ""

    def work() -> None:
        row = _promo_or_404(promo_id)
        before, live, change = _promo_fields(row), _term_fields(row), pending_terms(row)
        outcome = approve(promo_id, _caps(), approver, digest)
        saved = _promo_or_404(promo_id)
        b, a = _diff(live, _term_fields(saved)) if change else _diff(before, _promo_fields(saved))
        audit("promo.publish" if outcome == "published" else "promo.change_approve", staff_id=approver.staff_id,
              username=approver.name, target=f"promotion {promo_id}", before=b,
              after=f"{a} ({outcome}; edited by {saved.edited_by or '-'})")

    try:
        in_write_transaction(work)
    except SameEditor as e:
        return _promo_list_page(403, gettext(e.message, **e.params))
    except NothingToApprove as e:
        return _promo_list_page(409, gettext(e.message, **e.params))
    except PromotionError as e:  # over the caps in force: they were lowered since the terms were written
        return _promo_list_page(422, gettext(e.message, **e.params))
    return _after_promo_change()
