"""`flask cards` and `flask seed-demo`: create, import, inspect and unblock cards."""

from __future__ import annotations

import csv
import io
from functools import partial
from pathlib import Path

import click
from flask.cli import AppGroup

from heyon_site.billing.money import AmountError, parse_amount, yuan
from heyon_site.cards.numbers import CardNumberError, find_card, mask, normalise_card_number
from heyon_site.cards.services import issue_cards, unblock
from heyon_site.database import in_write_transaction
from heyon_site.ops.audit import COMMAND_LINE
from heyon_site.security.passwords import normalise_password

cards = AppGroup("cards", help="Create, import and inspect Heyon cards.")


# Demo cards for `make run`; the README lists them. Numbers outside any real range.
DEMO_CARDS = (
    ("8600000000000018", "135790", "50.00"),
    ("8600000000000026", "246802", "0.00"),
    ("8600000000000034", "112233", "1280.50"),
)


def _amount(text: str) -> int:
    try:
        return parse_amount(text)
    except AmountError:
        raise click.BadParameter(f"{text!r} is not an amount like 12.34") from None


def _valid_password(password: str) -> str:
    pin = normalise_password(password)
    if not 4 <= len(pin) <= 64:
        raise click.BadParameter("a card password has 4 to 64 characters")
    return pin


@cards.command("create")
@click.argument("number")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The card password (PIN).")
@click.option("--balance", default="0", help="Opening balance in yuan, e.g. 12.34.")
def cards_create(number: str, password: str, balance: str) -> None:
    """Create a card with an opening balance (booked as a ledger entry)."""
    try:
        digits = normalise_card_number(number)
    except CardNumberError:
        raise click.BadParameter("a card number has 10 to 19 digits") from None
    fen, pin = _amount(balance), _valid_password(password)
    if find_card(digits):
        raise click.ClickException(f"card {mask(digits)} exists already")
    in_write_transaction(lambda: issue_cards(COMMAND_LINE, [(digits, pin, fen)]))
    click.echo(f"created card {mask(digits)} with balance {yuan(fen)}")


@cards.command("show")
@click.argument("number")
def cards_show(number: str) -> None:
    """Print a card's masked number, status and balance (last, as 12.34)."""
    try:
        card = find_card(normalise_card_number(number))
    except CardNumberError:
        card = None
    if card is None:
        raise click.ClickException("no such card")
    click.echo(f"card:    {mask(card.last4)}")
    click.echo(f"status:  {card.status}")
    click.echo(f"balance: {yuan(card.balance_fen)}")


@cards.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def cards_import(path: Path) -> None:
    """Import cards from a CSV with a header: number,password[,balance]. All or nothing."""
    rows: list[tuple[str, str, int]] = []
    errors: list[str] = []
    seen: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise click.ClickException("the file is not UTF-8 (save it as 'CSV UTF-8'); nothing imported") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or not {"number", "password"} <= set(reader.fieldnames):
        raise click.ClickException("the first line must name the columns: number,password[,balance]")
    for row in reader:
        line = reader.line_num
        try:
            digits = normalise_card_number(row.get("number") or "")
            pin = _valid_password(row.get("password") or "")
            fen = _amount((row.get("balance") or "0").strip() or "0")
        except (CardNumberError, click.BadParameter) as exc:
            errors.append(f"line {line}: {getattr(exc, 'message', None) or 'not a card number'}")
            continue
        if digits in seen or find_card(digits):
            errors.append(f"line {line}: card {mask(digits)} is listed twice or exists already")
        seen.add(digits)
        rows.append((digits, pin, fen))
    if errors:
        click.echo("\n".join(errors[:50]), err=True)
        raise click.ClickException(f"{len(errors)} line(s) refused; nothing imported")

    in_write_transaction(lambda: issue_cards(COMMAND_LINE, rows))
    click.echo(f"imported {len(rows)} card(s), total opening balance {yuan(sum(r[2] for r in rows))}")


@cards.command("unblock")
@click.argument("number")
def cards_unblock(number: str) -> None:
    """Set a blocked card active again and clear its password throttle, from every device
    (after support has checked who is asking)."""
    try:
        digits = normalise_card_number(number)
    except CardNumberError:
        raise click.BadParameter("a card number has 10 to 19 digits") from None

    cleared = in_write_transaction(lambda: unblock(COMMAND_LINE, digits))
    if cleared is None:
        raise click.ClickException("no such card")
    click.echo(f"card {mask(digits)} is active")
    if cleared:
        click.echo(f"password throttle cleared ({cleared} record(s))")


@click.command("seed-demo")
def seed_demo() -> None:
    """Create the demo cards the README lists (skips those that exist)."""
    for number, pin, balance in DEMO_CARDS:
        if find_card(number):
            click.echo(f"demo card {mask(number)} exists")
            continue
        fen = parse_amount(balance)
        in_write_transaction(partial(issue_cards, COMMAND_LINE, [(number, pin, fen)]))
        click.echo(f"demo card {number} password {pin} balance {balance}")
