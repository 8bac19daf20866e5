"""Finance exports (cashiers): orders, payments received, refunds and ledger entries of a range
of days, as CSV files that Excel opens with their Chinese intact (UTF-8 with a byte order mark).

A year of ledger entries may be a million rows. The rows are read through a cursor in batches
(``yield_per``: a server-side cursor on PostgreSQL, SQLite's own row stepping) on a connection of
the download's own, and each batch is written out as it comes: neither the rows nor the file are
ever whole in memory, and the connection is closed when the download ends or is abandoned.

The header row and the columns are a contract with finance's spreadsheets: add columns at the
end, never rename or reorder them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from flask import Response, abort, current_app, request, stream_with_context, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, select
from wtforms import DateField, Field, SelectField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; types-WTForms 3.2 lacks it
from wtforms.validators import InputRequired, ValidationError

from heyon_site import sitetime
from heyon_site.billing.money import yuan
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, LedgerEntry, PaymentEvent, RechargeOrder, Refund
from heyon_site.ops.audit import record
from heyon_site.staff.auth import actor, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.staff.inputs import SiteDates
from heyon_site.web.forms import Form
from heyon_site.web.fragments import redirect_to, render

MAX_DAYS = 366  # a leap year, inclusive: a year's books in one file, and a bound on one request's work
BATCH = 1000  # rows fetched and written at a time

Query: TypeAlias = Select[*tuple[Any, ...]]
#: How a column's stored value becomes a cell: text as it is, fen as yuan, a UTC time as site time.
Kind = Literal["text", "money", "time"]

# A spreadsheet runs a cell that starts with one of these as a formula (or as the start of one):
# an order's provider reference or a ledger key must not become a formula on finance's computer.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralised(text: str) -> str:
    """``text`` as a spreadsheet shows it and never runs it: a leading apostrophe before a
    formula's first character (Excel hides the apostrophe)."""
    return "'" + text if text.startswith(FORMULA_START) else text


def site_iso(moment: datetime, tz: ZoneInfo) -> str:
    """A stored UTC time as ISO 8601 in the site's zone, with its offset: the hour a clock went
    back (where the zone keeps daylight saving) is then still unambiguous."""
    return moment.replace(tzinfo=UTC).astimezone(tz).isoformat(timespec="seconds")


def cell(kind: Kind, value: Any, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    if kind == "money":
        # Exactly from integer fen; a refund or adjustment below zero stays a number ("-5.00").
        return yuan(int(value))
    if kind == "time":
        return site_iso(value, tz)
    return neutralised(str(value))


@dataclass(frozen=True)
class Export:
    label: Any  # a lazy string: the reader's words for the kind
    columns: tuple[tuple[str, Kind], ...]
    query: Callable[[datetime, datetime], Query]  # the rows created in [start, end), in column order

    @property
    def header(self) -> list[str]:
        return [name for name, _ in self.columns]

    def line(self, row: Sequence[Any], tz: ZoneInfo) -> list[str]:
        return [cell(kind, value, tz) for (_, kind), value in zip(self.columns, row, strict=True)]


def _orders(start: datetime, end: datetime) -> Query:
    o = RechargeOrder
    return (
        select(
            o.order_no,
            o.created_at,
            o.status,
            o.status_reason,
            Card.last4,
            o.provider,
            o.amount_fen,
            o.pay_fen,
            o.bonus_fen,
            o.paid_fen,
            o.provider_txn_id,
        )
        .join(Card, Card.id == o.card_id)
        .where(o.created_at >= start, o.created_at < end)
        .order_by(o.created_at, o.id)
    )


def _payments(start: datetime, end: datetime) -> Query:
    e = PaymentEvent
    return (
        select(e.created_at, e.provider, RechargeOrder.order_no, e.provider_txn_id, e.amount_fen, e.outcome)
        .join(RechargeOrder, RechargeOrder.id == e.order_id)
        .where(e.kind == "paid", e.created_at >= start, e.created_at < end)
        .order_by(e.created_at, e.id)
    )


def _refunds(start: datetime, end: datetime) -> Query:
    r = Refund
    return (
        select(
            r.created_at,
            r.finished_at,
            r.refund_no,
            RechargeOrder.order_no,
            r.provider,
            r.amount_fen,
            r.status,
            r.origin,
            r.provider_refund_id,
        )
        .join(RechargeOrder, RechargeOrder.id == r.order_id)
        .where(r.created_at >= start, r.created_at < end)
        .order_by(r.created_at, r.id)
    )


def _ledger(start: datetime, end: datetime) -> Query:
    e = LedgerEntry
    return (
        select(e.created_at, Card.last4, RechargeOrder.order_no, e.kind, e.amount_fen, e.key)
        .join(Card, Card.id == e.card_id)
        .outerjoin(RechargeOrder, RechargeOrder.id == e.order_id)  # an opening or adjustment has no order
        .where(e.created_at >= start, e.created_at < end)
        .order_by(e.created_at, e.id)
    )


EXPORTS: Mapping[str, Export] = {
    "orders": Export(
        _l("Orders"),
        (
            ("order_no", "text"),
            ("created_at", "time"),
            ("status", "text"),
            ("status_reason", "text"),
            ("card_last4", "text"),
            ("provider", "text"),
            ("amount", "money"),
            ("pay", "money"),
            ("bonus", "money"),
            ("paid", "money"),
            ("provider_txn_id", "text"),
        ),
        _orders,
    ),
    "payments": Export(
        _l("Payments received"),
        (
            ("created_at", "time"),
            ("provider", "text"),
            ("order_no", "text"),
            ("provider_txn_id", "text"),
            ("amount", "money"),
            ("outcome", "text"),
        ),
        _payments,
    ),
    "refunds": Export(
        _l("Refunds"),
        (
            ("created_at", "time"),
            ("finished_at", "time"),
            ("refund_no", "text"),
            ("order_no", "text"),
            ("provider", "text"),
            ("amount", "money"),
            ("status", "text"),
            ("origin", "text"),
            ("provider_refund_id", "text"),
        ),
        _refunds,
    ),
    "ledger": Export(
        _l("Ledger entries"),
        (
            ("created_at", "time"),
            ("card_last4", "text"),
            ("order_no", "text"),
            ("kind", "text"),
            ("amount", "money"),
            ("key", "text"),
        ),
        _ledger,
    ),
}


class ExportForm(Form):
    """A GET form: a download changes nothing but the audit log, so it needs no CSRF token."""

    class Meta:
        csrf = False

    kind = SelectField(
        _l("What to export"),
        choices=[SelectChoice(code, export.label) for code, export in EXPORTS.items()],
        validators=[InputRequired(_l("Choose what to export."))],
    )
    date_from = DateField(_l("First day"), [InputRequired(_l("Enter the first day.")), SiteDates()])
    date_to = DateField(_l("Last day (included)"), [InputRequired(_l("Enter the last day.")), SiteDates()])

    def validate_date_to(self, field: Field) -> None:
        first, last = self.date_from.data, field.data
        if not isinstance(first, date) or not isinstance(last, date):
            return  # each field's own message says what is wrong
        if last < first:
            raise ValidationError(_l("The last day comes before the first day."))
        if (last - first).days + 1 > MAX_DAYS:
            raise ValidationError(_l("At most %(days)s days in one file.", days=MAX_DAYS))

    def days(self) -> tuple[date, date]:
        """The first and the last day, once the form validated."""
        first, last = self.date_from.data, self.date_to.data
        assert isinstance(first, date) and isinstance(last, date)  # required, and dates once valid
        return first, last


def _page(form: ExportForm, status: int = 200) -> Response:
    return render(
        "staff/exports.html",
        status=status,
        form=form,
        exports=EXPORTS,
        zone=current_app.config["HEYON_TIMEZONE"],
        max_days=MAX_DAYS,
    )


@bp.get("/exports")
@require_role("cashier")
def exports() -> Response:
    """The form; once sent, the file's own address (a link finance can bookmark or share)."""
    if not any(name in request.args for name in ("kind", "date_from", "date_to")):
        today = sitetime.today(sitetime.zone(current_app.config))
        return _page(ExportForm(formdata=None, kind="orders", date_from=today.replace(day=1), date_to=today))
    form = ExportForm(formdata=request.args)
    if not form.validate():
        return _page(form, 422)
    first, last = form.days()
    return redirect_to(
        url_for("staff.export_csv", kind=form.kind.data, date_from=first.isoformat(), date_to=last.isoformat())
    )


@bp.get("/exports/<kind>.csv")
@require_role("cashier")
def export_csv(kind: str) -> Response:
    export = EXPORTS.get(kind) or abort(404)
    asked = request.args.copy()
    asked["kind"] = kind
    form = ExportForm(formdata=asked)
    if not form.validate():
        return _page(form, 422)
    first, last = form.days()
    tz = sitetime.zone(current_app.config)
    # Days in the site's zone, both included: from the first one's midnight to the midnight after the last.
    start, end = sitetime.day_start(first, tz), sitetime.day_start(last + timedelta(days=1), tz)
    who = actor()
    in_write_transaction(lambda: record(who, "export.csv", f"{kind} {first.isoformat()}..{last.isoformat()}"))
    response = Response(stream_with_context(_csv(export, start, end, tz)), content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="heyon-{kind}-{first}-{last}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv(export: Export, start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[bytes]:
    """The file, a batch of rows at a time; the header first, so the download starts at once
    while the database is still sorting."""
    buffer = io.StringIO()
    out = csv.writer(buffer)  # RFC 4180: quoted where needed, CRLF line ends

    def taken() -> bytes:
        chunk = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return chunk

    buffer.write("\ufeff")  # the byte order mark: Excel reads the file as UTF-8 only with it
    out.writerow(export.header)
    yield taken()
    with db.engine.connect() as connection:
        result = connection.execute(export.query(start, end).execution_options(yield_per=BATCH))
        # Closed explicitly, also when the download is abandoned (GeneratorExit here): on
        # PostgreSQL the result is a server-side cursor, which the connection's return to the
        # pool would otherwise leave to the garbage collector.
        with result:
            for rows in result.partitions():
                out.writerows(export.line(row, tz) for row in rows)
                yield taken()
