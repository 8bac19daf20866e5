"""`flask settlement run`: each provider's statement of a day against our books."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click
from flask.cli import AppGroup

from heyon_site.billing.money import yuan
from heyon_site.providers import enabled
from heyon_site.providers.base import MalformedStatement, ProviderUnavailable, StatementNotReady
from heyon_site.settlement.run import NoStatements, settle

settlement = AppGroup("settlement", help="Settle the books against the providers' daily statements.")


def _day(_ctx: click.Context, _param: click.Parameter, value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter("a date as YYYY-MM-DD") from None


@settlement.command("run")
@click.option("--date", "day", required=True, callback=_day, help="The statement's day (Beijing time), YYYY-MM-DD.")
@click.option("--provider", default=None, help="Only this provider (required with --file).")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the statement from this file (as downloaded from the provider) instead of fetching it.",
)
def settlement_run(day: date, provider: str | None, path: Path | None) -> None:
    """Fetch (or read) each provider's statement of DATE, archive the raw file, match it line by
    line against our payments and refunds, and print one line per provider. Exits 1 when
    anything differs or a statement could not be had."""
    if path is not None and provider is None:
        raise click.UsageError("--file needs --provider: a file is one provider's statement")
    names = [provider] if provider else [n for n, p in enabled().items() if hasattr(p, "fetch_statement")]
    failed = False
    for name in names:
        try:
            raw = path.read_bytes() if path else None
            done = settle(name, day, raw, path.name if path else None)
        except (NoStatements, StatementNotReady, ProviderUnavailable, MalformedStatement) as exc:
            click.echo(f"settlement {name} {day}: no statement ({exc})")
            failed = True
            continue
        r = done.report
        click.echo(
            f"settlement {name} {day}: {r.matched} matched, {r.count('missing_here')} missing here, "
            f"{r.count('missing_there')} missing there, {r.count('amount_differs')} amount differs, "
            f"fees {yuan(r.fees_fen)}"
        )
        for order_no, outcome in sorted(done.asked.items()):
            click.echo(f"  asked {name} about order {order_no}: {outcome}")
        failed = failed or not r.clean
    if failed:
        raise SystemExit(1)
