"""Operator commands for the customer FAQ."""

from __future__ import annotations

from functools import partial

import click
from flask.cli import AppGroup

from heyon_site.database import in_write_transaction
from heyon_site.faq.services import seed
from heyon_site.faq.starter import STARTER

faq_cli = AppGroup("faq", help="The customer FAQ.")


@faq_cli.command("seed")
def faq_seed() -> None:
    """Add the starter FAQ to each language that has no entries yet (safe to run again)."""
    for locale, entries in STARTER.items():
        added = in_write_transaction(partial(seed, locale, entries))
        if added:
            click.echo(f"faq {locale}: added {added} starter entries")
        else:
            click.echo(f"faq {locale}: has entries already, nothing added")
