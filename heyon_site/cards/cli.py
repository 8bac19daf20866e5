"""`flask cards` and `flask seed-demo`: create, import, inspect and unblock cards, and forget their
owners' personal data."""

from __future__ import annotations

import csv
import io
from functools import partial
from pathlib import Path

import click
from flask.cli import AppGroup

from heyon_site.billing.money import AmountError, parse_amount, yuan
from heyon_site.cards.numbers import CardNumberError, find_card, mask, normalise_card_number
from heyon_site.cards.services import PhoneNumberError, forget, issue_cards, normalise_msisdn, unblock
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


def _msisdn(text: str | None) -> str | None:
    """A phone number as kept, or None for none given."""
    if not (text or "").strip():
        return None
    try:
        return normalise_msisdn(text or "")
    except PhoneNumberError:
        raise click.BadParameter(
            "a phone number is + and 6 to 15 digits (+8613800138000), or an 11-digit Chinese mobile number"
        ) from None


def _valid_password(password: str) -> str:
    pin = normalise_password(password)
    if not 4 <= len(pin) <= 64:
        raise click.BadParameter("a card password has 4 to 64 characters")
    return pin


@cards.command("create")
@click.argument("number")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="The card password (PIN).")
@click.option("--balance", default="0", help="Opening balance in yuan, e.g. 12.34.")
@click.option("--msisdn", default=None, help="The card's phone number, for messages: +8613800138000 or 13800138000.")
def cards_create(number: str, password: str, balance: str, msisdn: str | None) -> None:
    """Create a card with an opening balance (booked as a ledger entry)."""
    try:
        digits = normalise_card_number(number)
    except CardNumberError:
        raise click.BadParameter("a card number has 10 to 19 digits") from None
    fen, pin, phone = _amount(balance), _valid_password(password), _msisdn(msisdn)
    if find_card(digits):
        raise click.ClickException(f"card {mask(digits)} exists already")
    phones = {digits: phone} if phone else {}
    in_write_transaction(lambda: issue_cards(COMMAND_LINE, [(digits, pin, fen)], phones))
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
    """Import cards from a CSV with a header: number,password[,balance][,msisdn]. All or nothing."""
    rows: list[tuple[str, str, int]] = []
    phones: dict[str, str] = {}
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
            phone = _msisdn(row.get("msisdn"))
        except (CardNumberError, click.BadParameter) as exc:
            errors.append(f"line {line}: {getattr(exc, 'message', None) or 'not a card number'}")
            continue
        if digits in seen or find_card(digits):
            errors.append(f"line {line}: card {mask(digits)} is listed twice or exists already")
        seen.add(digits)
        rows.append((digits, pin, fen))
        if phone:
            phones[digits] = phone
    if errors:
        click.echo("\n".join(errors[:50]), err=True)
        raise click.ClickException(f"{len(errors)} line(s) refused; nothing imported")

    in_write_transaction(lambda: issue_cards(COMMAND_LINE, rows, phones))
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


@cards.command("forget")
@click.argument("number")
def cards_forget(number: str) -> None:
    """Delete a card owner's personal data: the card's phone number and reminder settings, the
    e-mail addresses given with its orders, its messages' recipients. One transaction, audited;
    the card, its money and its orders stay."""
    try:
        digits = normalise_card_number(number)
    except CardNumberError:
        raise click.BadParameter("a card number has 10 to 19 digits") from None
    if in_write_transaction(lambda: forget(COMMAND_LINE, digits)) is None:
        raise click.ClickException("no such card")
    click.echo(f"card {mask(digits)}: personal data forgotten")


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
