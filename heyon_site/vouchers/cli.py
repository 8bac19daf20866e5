"""`flask vouchers`: make, activate, void, look up and report recharge vouchers from the server, as
the staff vouchers page does (each change an audit row by the command line).

``create`` writes the batch's PINs to a CSV file, their only copy: first to a temporary file of
mode 0600 beside it, moved into place only once the batch is committed (a batch that failed
leaves no file of PINs that do not exist), and never over an existing file (it may be another
batch's only copy). The command line may ask for a large batch's activation but never approve
it: that is a second admin, signed in on the staff vouchers page.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import IO

import click
from flask import current_app
from flask.cli import AppGroup
from flask_babel import force_locale

from heyon_site import sitetime
from heyon_site.billing import vouchers
from heyon_site.billing.money import AmountError, parse_amount, yuan, yuan_grouped
from heyon_site.billing.vouchers import MAX_COUNT, VoucherError
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import serial_text
from heyon_site.ops.audit import COMMAND_LINE
from heyon_site.vouchers import services
from heyon_site.vouchers.sheet import PinFile, read_pins, sheet

vouchers_cli = AppGroup("vouchers", help="Make, activate, void and look up recharge vouchers.")


def _fen(_ctx: click.Context, _param: click.Parameter, text: str) -> int:
    try:
        fen = parse_amount(text)
    except AmountError:
        raise click.BadParameter(f"{text!r} is not an amount like 50 or 49.50") from None
    if fen <= 0:
        raise click.BadParameter("a voucher is worth more than zero")
    return fen


def _day(_ctx: click.Context, _param: click.Parameter, text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter("a date as YYYY-MM-DD") from None


def _serial(text: str) -> tuple[int, int]:
    found = vouchers.parse_serial(text)
    if found is None:
        raise click.BadParameter(f"{text!r} is not a voucher serial like 0012-000034")
    return found


@contextmanager
def _private_file(path: Path) -> Iterator[tuple[IO[str], Path]]:
    """A new text file of mode 0600 beside ``path`` (so it can be renamed onto it), removed
    unless the caller moved it into place."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield out, temporary
    finally:
        temporary.unlink(missing_ok=True)


def _durable(out: IO[str]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _put_in_place(temporary: Path, path: Path) -> None:
    if path.exists():  # made meanwhile: never replaced, it may be another batch's only copy
        kept = path.with_name(path.name + f".{os.getpid()}.new")
        os.replace(temporary, kept)
        raise click.ClickException(f"{path} appeared meanwhile and was left alone; this batch's file is {kept}")
    os.replace(temporary, path)


def _refuse_existing(*paths: Path | None) -> None:
    for path in paths:
        if path is None:
            continue
        if path.exists():
            raise click.ClickException(f"{path} exists: a PIN file is never overwritten (it may be the only copy)")
        if not path.parent.is_dir():
            raise click.ClickException(f"{path.parent} is not a directory")


@vouchers_cli.command("create")
@click.option("--count", type=click.IntRange(1, MAX_COUNT), required=True, help="How many vouchers.")
@click.option("--value", "value_fen", required=True, callback=_fen, help="Each voucher's value in yuan, e.g. 50.")
@click.option("--expires", required=True, callback=_day, help="Last day of use, YYYY-MM-DD (site time).")
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write serial,pin,value,expires: the only copy of the PINs. Must not exist.",
)
@click.option("--note", default="", help="A note kept with the batch (the shop, the order).")
@click.option(
    "--sheet",
    "sheet_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the printable A4 sheet (HTML) here. Must not exist.",
)
def vouchers_create(
    count: int, value_fen: int, expires: date, csv_path: Path, note: str, sheet_path: Path | None
) -> None:
    """Make a batch (not active until `flask vouchers activate`); its id is the last line."""
    _refuse_existing(csv_path, sheet_path)
    today = services.site_today(current_app.config)
    with _private_file(csv_path) as (out, temporary):
        pins = PinFile(out, value_fen, expires)

        def work() -> tuple[int, int]:
            pins.start()
            batch = services.create(COMMAND_LINE, count, value_fen, expires, note, pins, today)
            _durable(out)  # on disk before the batch is committed: the PINs exist nowhere else
            return batch.id, batch.total_fen

        try:
            batch_id, total = in_write_transaction(work)
        except VoucherError as e:
            raise click.ClickException(str(e)) from None
        out.close()
        _put_in_place(temporary, csv_path)
    click.echo(
        f"batch {batch_id}: {count:,} vouchers of {yuan(value_fen)} (total {yuan_grouped(total)}), "
        f"usable until {expires.isoformat()} ({current_app.config['HEYON_TIMEZONE']}) once activated; "
        f"PINs in {csv_path}, their only copy"
    )
    if sheet_path is not None:
        try:
            _write_sheet(csv_path, sheet_path)
            click.echo(f"printable sheet in {sheet_path}")
        except (OSError, click.ClickException) as e:
            # The batch and its PIN file stand; the sheet can be made again from the file on the staff page.
            click.echo(f"the sheet was not written ({e}); upload {csv_path} on the staff vouchers page", err=True)
    click.echo(f"batch {batch_id}")


def _write_sheet(csv_path: Path, sheet_path: Path) -> None:
    with _private_file(sheet_path) as (out, temporary), csv_path.open(encoding="utf-8", newline="") as pins:
        # The page around the vouchers in the site's language (the vouchers speak Chinese and English).
        with force_locale(current_app.config["BABEL_DEFAULT_LOCALE"]):
            for part in sheet(read_pins(pins), standalone=True):
                out.write(part)
        out.close()
        _put_in_place(temporary, sheet_path)


@vouchers_cli.command("activate")
@click.argument("batch_id", metavar="BATCH", type=int)
def vouchers_activate(batch_id: int) -> None:
    """Activate a batch once the shop has it. Above HEYON_VOUCHER_TWO_ADMINS_ABOVE this asks, and a
    second admin approves on the staff vouchers page."""
    above = services.two_admins_above(current_app.config)
    try:
        outcome = in_write_transaction(lambda: services.activate(COMMAND_LINE, batch_id, above))
    except VoucherError as e:
        raise click.ClickException(str(e)) from None
    if outcome == "active":
        click.echo(f"batch {batch_id}: active")
    else:
        click.echo(f"batch {batch_id}: activation requested; a second admin approves it on the staff vouchers page")


@vouchers_cli.command("void")
@click.argument("serial", required=False)
@click.option("--batch", "batch_id", type=int, default=None, help="Void the whole batch (used vouchers stay used).")
def vouchers_void(serial: str | None, batch_id: int | None) -> None:
    """Void one voucher by its serial, or a whole batch with --batch."""
    if (serial is None) == (batch_id is None):
        raise click.UsageError("give a SERIAL or --batch BATCH, one of them")
    try:
        if batch_id is not None:
            voided = in_write_transaction(lambda: services.void_batch(COMMAND_LINE, batch_id))
            click.echo(f"batch {batch_id}: voided ({voided:,} vouchers voided)")
            return
        batch, number = _serial(serial or "")
        in_write_transaction(lambda: services.void_voucher(COMMAND_LINE, batch, number))
    except VoucherError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"voucher {serial_text(batch, number)}: voided")


@vouchers_cli.command("show")
@click.argument("serial")
def vouchers_show(serial: str) -> None:
    """A voucher's state, batch, value, expiry and, once used, the card and order (never a PIN)."""
    batch, number = _serial(serial)
    info = vouchers.lookup(db.session, batch, number)
    if info is None:
        raise click.ClickException(f"there is no voucher {serial_text(batch, number)}")
    tz = sitetime.zone(current_app.config)
    expired = info.state_on(services.site_today(current_app.config)) == "expired"
    lines = [
        f"voucher {info.serial}",
        f"state: {info.status}{' (expired)' if expired else ''}",
        f"batch: {info.batch_id} ({info.batch_state})",
        f"value: {yuan(info.value_fen)}",
        f"expires: {info.expires_on.isoformat()}",
    ]
    if info.used_at is not None:
        lines.append(f"used at: {sitetime.shown(info.used_at, tz)}")
    if info.card_last4 is not None:
        lines.append(f"card: **** {info.card_last4}")
    if info.order_no is not None:
        lines.append(f"order: {info.order_no}")
    if info.voided_at is not None:
        lines.append(f"voided at: {sitetime.shown(info.voided_at, tz)}")
    click.echo("\n".join(lines))


@vouchers_cli.command("report")
def vouchers_report() -> None:
    """Outstanding value per batch: what usable vouchers (active, not expired) are worth, money
    the issuer owes until they are used or expire. Newest batch first, then the total."""
    today = services.site_today(current_app.config)
    rows = vouchers.outstanding(db.session, today)
    click.echo(f"as of {today.isoformat()} ({current_app.config['HEYON_TIMEZONE']})")
    head = ("batch", "state", "value", "count", "expires", "usable", "used", "expired", "voided", "outstanding")
    table = [head] + [
        (
            str(r.batch_id),
            r.state,
            yuan(r.value_fen),
            str(r.count),
            r.expires_on.isoformat(),
            str(r.usable),
            str(r.used),
            str(r.expired),
            str(r.voided),
            yuan_grouped(r.outstanding_fen),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    left = (1, 4)  # state and date read from the left; numbers line up on the right
    for row in table:
        sized = enumerate(zip(row, widths, strict=True))
        cells = (cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in sized)
        click.echo("  ".join(cells).rstrip())
    click.echo(f"total outstanding: {yuan_grouped(sum(r.outstanding_fen for r in rows))}")
