"""The vouchers screen: the batches and what their usable vouchers are worth (a liability), a new
batch whose PINs are handed over once in the answer, activation by one admin or (above
HEYON_VOUCHER_TWO_ADMINS_ABOVE) two, voiding, a sheet printed from a batch's CSV, and a voucher
found by its serial.

The PINs of a new batch go to an unnamed temporary file while the transaction runs (never a list
of them in memory), are sent after the commit, a piece at a time, and the file is gone once sent.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import IO

from flask import Response, abort, current_app, request, stream_with_context, url_for
from flask_babel import gettext
from sqlalchemy import select

from heyon_site.billing import vouchers
from heyon_site.billing.vouchers import Outstanding, VoucherError, VoucherInfo
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import StaffUser, VoucherBatch, serial_text
from heyon_site.ops.audit import record
from heyon_site.staff.auth import actor, current_staff, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.forms import ActionForm, VoucherBatchForm, VoucherLookupForm, VoucherSheetForm, VoucherVoidForm
from heyon_site.vouchers import services
from heyon_site.vouchers.sheet import WEB_SHEET_MAX, PinFile, SheetError, check_pins, read_pins, sheet
from heyon_site.web.fragments import redirect_to, render

_READ = 64 * 1024  # characters of the PIN file sent at a time
VOID_PREFIX = "void"  # the void form's fields, beside the lookup form's on one page


@dataclass(frozen=True)
class BatchRow:
    batch: VoucherBatch
    figures: Outstanding
    may_approve: bool  # activation asked for by someone else: this admin may approve it


def _me() -> StaffUser:
    me = current_staff()
    assert me is not None  # every view here is behind require_role
    return me


def _may_approve(batch: VoucherBatch, me: StaffUser) -> bool:
    """An admin approves an activation someone else asked for (billing checks it again)."""
    asked_by_another = batch.activation_requested_at is not None and batch.activation_requested_by_id != me.id
    return me.role == "admin" and batch.state == "created" and asked_by_another


def _rows(me: StaffUser, today: date) -> list[BatchRow]:
    figures = vouchers.outstanding(db.session, today)
    found = db.session.scalars(select(VoucherBatch).where(VoucherBatch.id.in_([f.batch_id for f in figures])))
    batches = {b.id: b for b in found}
    return [BatchRow(batches[f.batch_id], f, _may_approve(batches[f.batch_id], me)) for f in figures]


def _list_page(
    status: int = 200,
    problem: str | None = None,
    *,
    batch_form: VoucherBatchForm | None = None,
    lookup_form: VoucherLookupForm | None = None,
    sheet_form: VoucherSheetForm | None = None,
    void_form: VoucherVoidForm | None = None,
) -> Response:
    """The page, with the form that was refused (and what it said) in place of its empty one."""
    me, today = _me(), services.site_today(current_app.config)
    rows = _rows(me, today)
    return render(
        "staff/vouchers.html",
        status=status,
        rows=rows,
        total=sum(r.figures.outstanding_fen for r in rows),
        today=today,
        above=services.two_admins_above(current_app.config),
        problem=problem,
        web_sheet_max=WEB_SHEET_MAX,
        action_form=ActionForm(formdata=None),
        batch_form=batch_form or VoucherBatchForm(formdata=None),
        lookup_form=lookup_form or VoucherLookupForm(formdata=None),
        sheet_form=sheet_form or VoucherSheetForm(formdata=None),
        void_form=void_form or VoucherVoidForm(formdata=None, prefix=VOID_PREFIX),
    )


@bp.get("/vouchers")
@require_role("cashier")
def voucher_list() -> Response:
    return _list_page()


@bp.post("/vouchers")
@require_role("admin")
def voucher_create() -> Response:
    """A new batch; the answer is its PINs, as a CSV file or as the printable sheet, this once."""
    form = VoucherBatchForm()
    if not form.validate():
        return _list_page(422, batch_form=form)
    who, today, value_fen = actor(), services.site_today(current_app.config), form.value_fen()
    count, expires, note = form.count.data or 0, form.expires.data, form.note.data or ""
    assert expires is not None  # required
    # No name, so gone once closed: by the answer once sent, or below if the batch failed.
    out = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115 (outlives this view)
    try:
        pins = PinFile(out, value_fen, expires)

        def work() -> int:
            pins.start()  # a transaction run again writes its PINs anew
            return services.create(who, count, value_fen, expires, note, pins, today).id

        batch_id = in_write_transaction(work)
    except VoucherError as e:
        out.close()
        return _list_page(422, gettext(e.message, **e.params), batch_form=form)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return _sheet_answer(out) if form.output.data == "sheet" else _csv_answer(out, batch_id)


def _csv_answer(pins: IO[str], batch_id: int) -> Response:
    """The PIN file as a download, read a piece at a time; closed (so gone) once sent."""

    def pieces() -> Iterator[bytes]:
        try:
            while chunk := pins.read(_READ):
                yield chunk.encode()
        finally:
            pins.close()

    response = Response(pieces(), content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="heyon-vouchers-{batch_id:04d}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _sheet_answer(pins: IO[str]) -> Response:
    """The printable sheet of a PIN file, rendered as it is sent; the file is closed (and, if
    temporary, gone) afterwards."""

    def pages() -> Iterator[str]:
        try:
            yield from sheet(read_pins(pins))
        finally:
            pins.close()

    response = Response(stream_with_context(pages()), content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/vouchers/sheet")
@require_role("admin")
def voucher_sheet() -> Response:
    """The printable sheet of a batch's CSV file (the printer's), each PIN checked against the
    digest kept for its serial. Nothing is stored but the audit row."""
    form = VoucherSheetForm()
    if not form.validate():
        return _list_page(422, sheet_form=form)
    upload = form.csv.data
    assert upload is not None  # FileRequired
    # A copy of the answer's own: the request's files are closed before the sheet is sent.
    copy = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the answer, or below)
    shutil.copyfileobj(upload.stream, copy)
    copy.seek(0)
    text = io.TextIOWrapper(copy, encoding="utf-8-sig", newline="")
    try:
        checked = check_pins(db.session, services.pin_key(), read_pins(text), WEB_SHEET_MAX)
    except (SheetError, UnicodeDecodeError) as e:
        text.close()
        said = gettext(e.message, **e.params) if isinstance(e, SheetError) else gettext("The file is not UTF-8 text.")
        return _list_page(422, said, sheet_form=form)
    db.session.rollback()  # end the read before the audit row's write transaction
    who, target = actor(), "batch " + ",".join(str(b) for b in checked.batch_ids)
    in_write_transaction(lambda: record(who, "voucher.sheet", target[:200], after=f"count={checked.count}"))
    text.seek(0)
    return _sheet_answer(text)


def _batch_or_404(batch_id: int) -> None:
    if db.session.get(VoucherBatch, batch_id) is None:
        abort(404)


def _after_change(batch_id: int) -> Response:
    return redirect_to(url_for("staff.voucher_list", _anchor=f"batch-{batch_id}"))


@bp.post("/vouchers/<int:batch_id>/activate")
@require_role("admin")
def voucher_activate(batch_id: int) -> Response:
    """Activate; above the threshold, ask (the first admin) or approve (another admin)."""
    _batch_or_404(batch_id)
    if not ActionForm().validate():
        abort(400)
    who, above = actor(), services.two_admins_above(current_app.config)
    try:
        in_write_transaction(lambda: services.activate(who, batch_id, above))
    except VoucherError as e:
        return _list_page(409, gettext(e.message, **e.params))
    return _after_change(batch_id)


@bp.post("/vouchers/<int:batch_id>/void")
@require_role("admin")
def voucher_void_batch(batch_id: int) -> Response:
    """Void a batch (lost, stolen, never sold): its unused vouchers pay nothing from now on."""
    _batch_or_404(batch_id)
    if not ActionForm().validate():
        abort(400)
    who = actor()
    try:
        in_write_transaction(lambda: services.void_batch(who, batch_id))
    except VoucherError as e:
        return _list_page(409, gettext(e.message, **e.params))
    return _after_change(batch_id)


@bp.post("/vouchers/void")
@require_role("admin")
def voucher_void() -> Response:
    form = VoucherVoidForm(prefix=VOID_PREFIX)
    if not form.validate():
        return _list_page(422, void_form=form)
    batch_id, serial = form.batch_and_serial()
    if vouchers.lookup(db.session, batch_id, serial) is None:
        return _list_page(
            404,
            gettext("There is no voucher %(serial)s.", serial=serial_text(batch_id, serial)),
            void_form=form,
        )
    who = actor()
    try:
        in_write_transaction(lambda: services.void_voucher(who, batch_id, serial))
    except VoucherError as e:
        return _list_page(409, gettext(e.message, **e.params), void_form=form)
    return redirect_to(url_for("staff.voucher_lookup", serial=serial_text(batch_id, serial)))


@bp.get("/vouchers/lookup")
@require_role("cashier")
def voucher_lookup() -> Response:
    """A voucher by the serial printed on it: its state, batch, and the card and order it credited."""
    if "serial" not in request.args:
        return _list_page()  # the language switch keeps no serial: the page it was found from
    form = VoucherLookupForm(formdata=request.args)
    if not form.validate():
        return _list_page(422, lookup_form=form)
    batch_id, serial = form.batch_and_serial()
    info = vouchers.lookup(db.session, batch_id, serial)
    return render(
        "staff/voucher.html",
        status=200 if info else 404,
        serial=serial_text(batch_id, serial),
        info=info,
        state=_state(info),
        lookup_form=form,
        void_form=VoucherVoidForm(formdata=None, prefix=VOID_PREFIX, serial=serial_text(batch_id, serial)),
    )


def _state(info: VoucherInfo | None) -> str | None:
    """The voucher's state as staff need it: an unused one past its last day is expired."""
    return None if info is None else info.state_on(services.site_today(current_app.config))
