"""`flask ledger verify`: the proof that the books balance, for operators and cron."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from heyon_site.billing import ledger
from heyon_site.billing.money import yuan
from heyon_site.billing.promos import PromoCaps
from heyon_site.extensions import db

ledger_cli = AppGroup("ledger", help="Prove the books balance.")


@ledger_cli.command("verify")
def ledger_verify() -> None:
    """Exit 0 with a one-line summary when every invariant holds; exit 1 naming each violation."""
    verdict = ledger.verify(db.session, caps=PromoCaps.from_config(current_app.config))
    db.session.rollback()
    if not verdict.ok:
        for line in verdict.violations:
            click.echo(f"VIOLATION {line}", err=True)
        click.echo(f"ledger FAILS: {len(verdict.violations)} violation(s)")
        sys.exit(1)
    click.echo(
        f"ledger ok: {verdict.cards} cards, {verdict.entries} entries, {verdict.credited_orders} credited orders, "
        f"total {yuan(verdict.total_fen)}"
    )
