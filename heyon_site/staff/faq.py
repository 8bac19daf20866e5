"""The FAQ editor screens: list, create, edit in place, publish, move. Each change is one
function of ``faq.editing``, which also writes the audit row, in one write transaction."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, url_for
from markupsafe import Markup

from heyon_site.database import in_write_transaction
from heyon_site.faq import editing
from heyon_site.faq.markdown import render_markdown
from heyon_site.models import FaqEntry
from heyon_site.staff.auth import actor, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import FAQ_LOCALES, ActionForm, FaqForm
from heyon_site.web.fragments import is_htmx, redirect_to, render


def _faq_page(block: str | None = None, status: int = 200, **context: Any) -> Response:
    entries = editing.entries_by_locale(tuple(code for code, _ in FAQ_LOCALES))
    return render(
        "staff/faq.html",
        block,
        status,
        entries=entries,
        locales=FAQ_LOCALES,
        action_form=ActionForm(formdata=None),
        **context,
    )


def _faq_or_404(entry_id: int) -> FaqEntry:
    return editing.find_entry(entry_id) or abort(404)


def _faq_form_page(form: FaqForm, entry: FaqEntry | None, status: int = 200) -> Response:
    action = url_for("staff.faq_save", entry_id=entry.id) if entry else url_for("staff.faq_create")
    preview: Markup | None = render_markdown(form.answer_md.data) if form.answer_md.data else None
    return render("staff/faq_form.html", "edit_form", status, form=form, entry=entry, action=action, preview=preview)


def _row_or_list(entry: FaqEntry) -> Response:
    """htmx swaps the row in place; a browser goes back to the list."""
    if is_htmx():
        return render("staff/faq.html", "faq_row", entry=entry, action_form=ActionForm(formdata=None))
    return redirect_to(url_for("staff.faq_list"))


@bp.get("/faq")
@require_role("editor")
def faq_list() -> Response:
    return _faq_page()


@bp.get("/faq/new")
@require_role("editor")
def faq_new() -> Response:
    return _faq_form_page(FaqForm(formdata=None, position=editing.next_position(), published=False), None)


@bp.post("/faq")
@require_role("editor")
def faq_create() -> Response:
    form = FaqForm()
    if not form.validate():
        return _faq_form_page(form, None, 422)
    who, new = actor(), form.fields()
    in_write_transaction(lambda: editing.create_entry(who, new))
    return redirect_to(url_for("staff.faq_list"))


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
    who, new = actor(), form.fields()
    return _row_or_list(in_write_transaction(lambda: editing.save_entry(who, entry_id, new)) or abort(404))


def _faq_set_published(entry_id: int, published: bool) -> Response:
    _faq_or_404(entry_id)
    who = actor()
    return _row_or_list(in_write_transaction(lambda: editing.set_published(who, entry_id, published)) or abort(404))


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
    who = actor()
    if not in_write_transaction(lambda: editing.move_entry(who, entry_id, direction)):
        abort(404)
    if is_htmx():
        return _faq_page("faq_list")
    return redirect_to(url_for("staff.faq_list"))
