"""`flask payments reconcile`: ask the providers about pending orders; credit the paid, expire the unpaid."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from heyon_site.billing.money import yuan
from heyon_site.extensions import db
from heyon_site.models import REFUND_STATES, RechargeOrder, Refund
from heyon_site.payments.reconcile import reconcile
from heyon_site.payments.refunds import run as run_refunds
from heyon_site.providers import get as get_provider

payments = AppGroup("payments", help="Payment housekeeping: reconcile and expire pending orders.")


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
        current_app.logger.warning(
            "reconcile: %d order(s) could not be checked; they stay pending", counts["provider_unavailable"]
        )
    # Refunds: those the rules call for are asked for, and every pending one is pushed on.
    pushed = run_refunds(get_provider, timedelta(minutes=current_app.config["HEYON_AUTO_REFUND_MINUTES"]))
    if pushed:
        click.echo("refunds: " + ", ".join(f"{k} {v}" for k, v in sorted(pushed.items())))


refunds_group = AppGroup("refunds", help="Money sent back to payers: refunds and their states.")


@refunds_group.command("list")
@click.option("--status", type=click.Choice(REFUND_STATES), default=None, help="Only refunds in this state.")
def refunds_list(status: str | None) -> None:
    """One line per refund: order number, provider, amount (yuan), status."""
    query = select(RechargeOrder.order_no, Refund.provider, Refund.amount_fen, Refund.status).join(
        RechargeOrder, RechargeOrder.id == Refund.order_id
    )
    if status:
        query = query.where(Refund.status == status)
    for order_no, provider, amount_fen, state in db.session.execute(query.order_by(Refund.id)):
        click.echo(f"{order_no} {provider} {yuan(amount_fen)} {state}")
