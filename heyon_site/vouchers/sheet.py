"""The two forms a batch's PINs leave the site in, the only times they exist: the printer's CSV
file (``serial,pin,value,expires``) and the printable A4 sheet made from it (10 vouchers a page
with cut lines, the PIN under a "scratch here" box).

Both go a chunk at a time: ``billing.vouchers.create_batch`` hands ``PinFile`` 2,000 PINs at a time,
and the sheet is rendered from a CSV file read a row at a time, so a batch of 100,000 never sits
in memory. The sheet is always made from a CSV (the one just written, or one uploaded): one
reader, one template.
"""

from __future__ import annotations

import csv
import hmac
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from flask import current_app, stream_template
from flask_babel import force_locale, gettext
from markupsafe import Markup
from sqlalchemy import select, tuple_

from heyon_site.billing.money import AmountError, parse_amount, yuan
from heyon_site.billing.refunds import N_
from heyon_site.billing.vouchers import normalise_pin, parse_serial, pin_digest
from heyon_site.database import DbSession
from heyon_site.models import Voucher, VoucherBatch, serial_text

HEADER = ("serial", "pin", "value", "expires")
PER_PAGE = 10  # 2 columns x 5 rows of A4
#: A sheet made on a web page has at most this many vouchers (1,000 pages); more: the CSV.
WEB_SHEET_MAX = 10_000
CSS = "css/vouchers.css"
CHECK_CHUNK = 1_000  # rows of an uploaded file checked against the database at a time
_STREAM_CHUNK = 64 * 1024  # characters of the sheet written at a time


class SheetError(ValueError):
    """A CSV that is not a batch's PIN file. ``message``/``params`` for the reader's language."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params)
        self.message, self.params = message, params


@dataclass(frozen=True)
class PrintedVoucher:
    serial: str
    pin: str
    value_fen: int
    expires_on: date

    @property
    def pin_groups(self) -> str:
        """The PIN as printed: four groups of four digits, easier to read and to type."""
        return " ".join(self.pin[i : i + 4] for i in range(0, len(self.pin), 4))

    @property
    def face(self) -> str:
        """The value as printed large: ¥50, or ¥49.50."""
        return "¥" + yuan(self.value_fen).removesuffix(".00")


class PinFile:
    """Where ``create_batch`` writes a batch's PINs: CSV rows added to an open text file (opened
    with ``newline=""``), each with the batch's value and expiry."""

    def __init__(self, out: IO[str], value_fen: int, expires_on: date) -> None:
        self.out, self.value, self.expires = out, yuan(value_fen), expires_on.isoformat()
        self._csv = csv.writer(out, lineterminator="\n")

    def start(self) -> None:
        """Empty the file and write the header: a transaction run again writes its PINs anew."""
        self.out.seek(0)
        self.out.truncate()
        self._csv.writerow(HEADER)

    def __call__(self, rows: Sequence[tuple[str, str]]) -> None:
        self._csv.writerows((serial, pin, self.value, self.expires) for serial, pin in rows)


def read_pins(lines: Iterable[str]) -> Iterator[PrintedVoucher]:
    """The vouchers of a PIN file, one by one. Raises SheetError at the first line that is not one
    (its number in the file)."""
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None or tuple(cell.strip().lower() for cell in header) != HEADER:
        raise SheetError(N_("The file does not start with the line %(header)s."), header=",".join(HEADER))
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue  # a blank line, as spreadsheets leave at the end
        voucher = _voucher(row)
        if voucher is None:
            raise SheetError(N_("Line %(line)s is not serial,pin,value,expires of a voucher."), line=rows.line_num)
        yield voucher


def _voucher(row: list[str]) -> PrintedVoucher | None:
    if len(row) != len(HEADER):
        return None
    serial, pin = parse_serial(row[0]), normalise_pin(row[1])
    try:
        value, expires = parse_amount(row[2]), date.fromisoformat(row[3].strip())
    except (AmountError, ValueError):
        return None
    if serial is None or pin is None or value <= 0:
        return None
    return PrintedVoucher(serial_text(*serial), pin, value, expires)


@dataclass(frozen=True)
class Checked:
    count: int
    batch_ids: tuple[int, ...]


def check_pins(s: DbSession, key: bytes, vouchers: Iterable[PrintedVoucher], most: int) -> Checked:
    """How many vouchers the file holds, and of which batches, once each is checked against what
    the site keeps: its serial exists, its PIN is the one whose digest is kept for it, its value
    and expiry are the batch's, the batch is not voided. A sheet printed from a wrong file would
    be vouchers that pay nothing. Raises SheetError; reads CHECK_CHUNK rows at a time, and at most
    ``most`` rows in all."""
    count, seen = 0, set[tuple[int, int]]()
    for chunk in _batched(vouchers):
        count += len(chunk)
        if count > most:
            raise SheetError(N_("A sheet holds at most %(most)s vouchers; print more from the CSV."), most=f"{most:,}")
        keys = [_serial(v) for v in chunk]
        kept = {
            (batch_id, serial): (digest, value, expires, state)
            for batch_id, serial, digest, value, expires, state in s.execute(
                select(
                    Voucher.batch_id,
                    Voucher.serial,
                    Voucher.pin_digest,
                    VoucherBatch.value_fen,
                    VoucherBatch.expires_on,
                    VoucherBatch.state,
                )
                .join(VoucherBatch, VoucherBatch.id == Voucher.batch_id)
                .where(tuple_(Voucher.batch_id, Voucher.serial).in_(keys))
            )
        }
        for voucher, where in zip(chunk, keys, strict=True):
            if where in seen:
                raise SheetError(N_("Voucher %(serial)s is in the file twice."), serial=voucher.serial)
            seen.add(where)
            found = kept.get(where)
            if found is None or not hmac.compare_digest(found[0], pin_digest(key, voucher.pin)):
                raise SheetError(N_("Voucher %(serial)s: this is not its PIN."), serial=voucher.serial)
            if (found[1], found[2]) != (voucher.value_fen, voucher.expires_on):
                raise SheetError(N_("Voucher %(serial)s: its value or expiry differs."), serial=voucher.serial)
            if found[3] == "voided":
                raise SheetError(N_("Voucher %(serial)s: its batch is voided."), serial=voucher.serial)
    if not count:
        raise SheetError(N_("The file holds no voucher."))
    return Checked(count, tuple(sorted({batch for batch, _ in seen})))


def _serial(voucher: PrintedVoucher) -> tuple[int, int]:
    found = parse_serial(voucher.serial)
    assert found is not None  # read_pins made it from a serial it read
    return found


def _batched(items: Iterable[PrintedVoucher]) -> Iterator[tuple[PrintedVoucher, ...]]:
    # itertools.batched is Python 3.12's.
    it = iter(items)
    while chunk := tuple(itertools.islice(it, CHECK_CHUNK)):
        yield chunk


def _pages(vouchers: Iterable[PrintedVoucher]) -> Iterator[list[PrintedVoucher]]:
    it = iter(vouchers)
    while page := list(itertools.islice(it, PER_PAGE)):
        yield page


def labels() -> list[dict[str, str]]:
    """A voucher's words in Chinese and in English: it is sold to customers of either, whatever
    the language of whoever prints it."""
    site = urlsplit(str(current_app.config.get("HEYON_SITE_URL") or "")).netloc
    out = []
    for locale, tag in (("zh_Hans", "zh-Hans"), ("en", "en")):
        with force_locale(locale):
            out.append(
                {
                    "lang": tag,
                    "brand": gettext("Heyon card"),
                    "title": gettext("Recharge voucher"),
                    "scratch": gettext("Scratch here"),
                    "serial": gettext("Serial"),
                    "expires": gettext("Use by"),
                    "how": gettext("Recharge at %(site)s: choose Voucher and enter the PIN.", site=site)
                    if site
                    else gettext("Recharge on the Heyon card site: choose Voucher and enter the PIN."),
                }
            )
    return out


def sheet(vouchers: Iterable[PrintedVoucher], standalone: bool = False) -> Iterator[str]:
    """The printable sheet, rendered as it is read, in pieces of about 64 KB. ``standalone``: a
    file of its own (the command line's), its stylesheet inside it; a page of the site links it
    (the CSP refuses styles inside a page)."""
    css = None
    if standalone:
        folder = Path(current_app.static_folder or "")
        css = Markup((folder / CSS).read_text(encoding="utf-8"))  # noqa: S704 (our own file)
    parts = stream_template("vouchers/sheet.html", pages=_pages(vouchers), labels=labels(), css=css, css_file=CSS)
    buffer: list[str] = []
    size = 0
    for part in parts:
        buffer.append(part)
        size += len(part)
        if size >= _STREAM_CHUNK:
            yield "".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer)
