"""`flask promos`: operators create, list and end promotions from the server.

Times are typed and shown in the site's time zone (HEYON_TIMEZONE), as staff think of them; the
database keeps naive UTC like every other time. The command line is an editor like any other:
it drafts, and `--publish` asks for publication, which an admin approves on the staff
promotions page (billing.promos: two people put terms in force). Each change is an audit row.
"""

from __future__ import annotations

from datetime import datetime

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from heyon_site import sitetime
from heyon_site.billing.money import AmountError, parse_amount
from heyon_site.billing.promos import NewPromotion, PromoCaps, PromotionError, describe
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import PROMO_KINDS, Promotion, utcnow
from heyon_site.ops.audit import COMMAND_LINE
from heyon_site.promos import services
from heyon_site.promos.lifecycle import state

promos_cli = AppGroup("promos", help="Create, list and end promotions (times in HEYON_TIMEZONE).")

LOCAL_TIME = click.DateTime(formats=["%Y-%m-%d %H:%M", "%Y-%m-%d"])


def _fen(_ctx: click.Context, _param: click.Parameter, text: str | None) -> int | None:
    try:
        return None if text is None else parse_amount(text)
    except AmountError:
        raise click.BadParameter(f"{text!r} is not an amount like 12.34") from None


def _basis_points(_ctx: click.Context, _param: click.Parameter, text: str | None) -> int | None:
    # Hundredths of a percent are basis points, so the yuan parser (two decimals, no exponent,
    # full-width digits accepted) reads "2.5" as exactly 250 without any float.
    try:
        return None if text is None else parse_amount(text.strip().removesuffix("%"))
    except AmountError:
        raise click.BadParameter(f"{text!r} is not a percentage like 10 or 2.5") from None


def line(promo: Promotion, now: datetime) -> str:
    tz = sitetime.zone(current_app.config)
    return (
        f"{promo.id}  {state(promo, now)}  priority {promo.priority}  {describe(promo)}  "
        f"{sitetime.shown(promo.starts_at, tz)} .. {sitetime.shown(promo.ends_at, tz)}  "
        f"{promo.title_en} / {promo.title_zh}"
    )


@promos_cli.command("create")
@click.option("--title-zh", required=True, help="Title shown on Chinese pages.")
@click.option("--title-en", required=True, help="Title shown on English pages.")
@click.option("--kind", required=True, type=click.Choice(PROMO_KINDS))
@click.option("--threshold", default="0", callback=_fen, help="Applies to recharges of at least this many yuan.")
@click.option("--value", callback=_fen, help="fixed_bonus: the bonus in yuan.")
@click.option(
    "--percent", callback=_basis_points, help="percent_bonus, discount: percent of the amount, e.g. 10 or 2.5."
)
@click.option("--cap", callback=_fen, help="The bonus or discount is at most this many yuan.")
@click.option("--starts", type=LOCAL_TIME, help="Start, 'YYYY-MM-DD[ HH:MM]' site time; default now.")
@click.option("--ends", type=LOCAL_TIME, required=True, help="End (exclusive), 'YYYY-MM-DD[ HH:MM]' site time.")
@click.option(
    "--priority", type=int, default=0, show_default=True, help="Of the promotions that apply, the highest wins."
)
@click.option(
    "--publish",
    is_flag=True,
    help="Ask for it to be published; an admin approves it on the staff promotions page (otherwise a draft).",
)
def promos_create(
    title_zh: str,
    title_en: str,
    kind: str,
    threshold: int,
    value: int | None,
    percent: int | None,
    cap: int | None,
    starts: datetime | None,
    ends: datetime,
    priority: int,
    publish: bool,
) -> None:
    """Create a draft promotion (with --publish, one awaiting an admin's approval)."""
    now = utcnow()
    tz = sitetime.zone(current_app.config)
    new = NewPromotion(
        title_zh=title_zh,
        title_en=title_en,
        kind=kind,
        starts_at=sitetime.to_utc(starts, tz) if starts else now,
        ends_at=sitetime.to_utc(ends, tz),
        threshold_fen=threshold,
        value_fen=value,
        percent_bp=percent,
        cap_fen=cap,
        priority=priority,
        published=publish,
    )
    caps = PromoCaps.from_config(current_app.config)

    try:
        promo = in_write_transaction(lambda: services.create(COMMAND_LINE, new, caps, tz, now))
    except PromotionError as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"created {line(promo, now)}")


@promos_cli.command("list")
def promos_list() -> None:
    """Every promotion, newest last: id, state, priority, terms, window (site time), titles."""
    now = utcnow()
    for promo in db.session.scalars(select(Promotion).order_by(Promotion.id)):
        click.echo(line(promo, now))


@promos_cli.command("end")
@click.argument("promo_id", metavar="ID", type=int)
def promos_end(promo_id: int) -> None:
    """End a promotion now. Orders made under it keep what they were promised."""
    tz = sitetime.zone(current_app.config)
    outcome = in_write_transaction(lambda: services.end(COMMAND_LINE, promo_id, tz))
    if outcome == "unknown":
        raise click.ClickException(f"no promotion {promo_id}")
    click.echo(
        {
            "ended": f"promotion {promo_id} ended",
            "withdrawn": f"promotion {promo_id} had not started: withdrawn (now a draft)",
            "already_ended": f"promotion {promo_id} had ended already",
        }[outcome]
    )
