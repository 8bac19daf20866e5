"""`flask outbox work`: deliver the messages to customers (see worker.py)."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import AppGroup

from heyon_site.outbox.registry import channels_for
from heyon_site.outbox.worker import work_once

outbox = AppGroup("outbox", help="Messages to customers: deliver the outbox.")


@outbox.command("work")
@click.option("--once", is_flag=True, help="One round, then exit (for cron and tests).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds to wait when nothing is due.")
def outbox_work(once: bool, interval: float) -> None:
    """Send due messages through their channels, retrying with backoff, until stopped. Safe to
    run several at once, on several machines."""
    try:
        channels = channels_for(current_app.config)
    except ValueError as exc:  # a setting missing or unusable: named, never its value
        raise click.ClickException(str(exc)) from None
    while True:
        counts = work_once(channels)
        if once:
            click.echo("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing due"))
            return
        if not counts:
            time.sleep(interval)
