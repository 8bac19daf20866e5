"""Operator commands: cards, demo data, the ledger proof, payment housekeeping."""
from __future__ import annotations

import csv
import io
import sys
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import update

from . import backup
from .billing import ledger
from .billing.cards import (
    CardNumberError, clear_throttle, create_card, find_card, mask, normalise_card_number, normalise_password, number_digest,
)
from .billing.money import AmountError, parse_amount, yuan
from .billing.promos import PromoCaps
from .database import in_write_transaction
from .extensions import db
from .faq_cli import faq_cli
from .models import Card
from .promos_cli import promos_cli
from .staff.cli import staff_cli
from .payments.reconcile import reconcile
from .providers import get as get_provider

cards = AppGroup("cards", help="Create, import and inspect Heyon cards.")
ledger_cli = AppGroup("ledger", help="Prove the books balance.")
payments = AppGroup("payments", help="Payment housekeeping: reconcile and expire pending orders.")

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
    in_write_transaction(lambda: create_card(digits, pin, fen))
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

    def add_all() -> None:
        for digits, pin, fen in rows:
            create_card(digits, pin, fen)

    in_write_transaction(add_all)
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

    def work() -> tuple[int, int]:
        found = db.session.execute(update(Card).where(Card.number_digest == number_digest(digits))
                                   .values(status="active")).rowcount  # type: ignore[attr-defined]
        return found, clear_throttle(digits) if found else 0

    done, cleared = in_write_transaction(work)
    if not done:
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
        in_write_transaction(lambda n=number, p=pin, f=fen: create_card(n, p, f))
        click.echo(f"demo card {number} password {pin} balance {balance}")


@ledger_cli.command("verify")
def ledger_verify() -> None:
    """Exit 0 with a one-line summary when every invariant holds; exit 1 naming each violation."""
    verdict = ledger.verify(caps=PromoCaps.from_config(current_app.config))
    db.session.rollback()
    if not verdict.ok:
        for line in verdict.violations:
            click.echo(f"VIOLATION {line}", err=True)
        click.echo(f"ledger FAILS: {len(verdict.violations)} violation(s)")
        sys.exit(1)
    click.echo(f"ledger ok: {verdict.cards} cards, {verdict.entries} entries, {verdict.credited_orders} credited orders, "
               f"total {yuan(verdict.total_fen)}")


@payments.command("reconcile")
@click.option("--older-than", default=5, show_default=True, help="Only orders pending at least this many minutes.")
def payments_reconcile(older_than: int) -> None:
    """Ask the providers about pending orders: credit the paid ones through the one credit path;
    past HEYON_ORDER_EXPIRY_MINUTES (and the provider's own timeout) close the unpaid ones with
    the provider and expire them. Safe to run on several machines at once."""
    expiry = timedelta(minutes=current_app.config["HEYON_ORDER_EXPIRY_MINUTES"])
    counts = reconcile(get_provider, timedelta(minutes=older_than), expiry)
    counts["expired"] += 0  # always stated, so "expired 0" shows the run found nothing to expire
    click.echo("reconcile: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if counts["provider_unavailable"]:
        current_app.logger.warning("reconcile: %d order(s) could not be checked; they stay pending",
                                   counts["provider_unavailable"])


def init_app(app: Flask) -> None:
    for command in (cards, ledger_cli, payments, seed_demo, faq_cli, promos_cli, staff_cli):
        app.cli.add_command(command)
    backup.init_app(app)  # `flask db backup`
