"""What the staff home page shows: credited recharges per local day as a bar chart, and the
orders that wait for someone. Plain functions of their arguments; nothing here reads the request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from flask import Response, current_app
from sqlalchemy import case, func, select

from heyon_site import sitetime
from heyon_site.billing import refunds
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, StaffUser, utcnow
from heyon_site.staff.auth import current_staff, require_role
from heyon_site.staff.blueprint import bp
from heyon_site.web.fragments import render

CHART_DAYS = 14
WAITING_LIMIT = 20

# Chart geometry in SVG user units; the template scales it to the page width with a viewBox.
SLOT = 20  # one day: a bar and the gap after it
BAR = 14
TOP = 14  # room above the tallest bar for the scale label
PLOT = 80  # the tallest bar
LABEL_GAP = 13  # from the baseline down to the day-of-month labels


@dataclass(frozen=True)
class DayTotal:
    """Credited recharges of one calendar day in the site's time zone. Money in fen."""

    day: date
    count: int = 0
    paid_fen: int = 0
    bonus_fen: int = 0


def daily_totals(tz: ZoneInfo, today: date, days: int = CHART_DAYS) -> list[DayTotal]:
    """``days`` entries, oldest first, the last one ``today``; a day without recharges is zero.

    A recharge belongs to the day it was credited (``finalized_at``), not the day the order was
    started: that is when the money reached the card and the provider's settlement, and an
    order started at 23:58 and paid at 00:03 is the next day's money. Only ``credited`` orders
    count; a ``review`` order received money that nobody has accepted yet.
    """
    first = today - timedelta(days=days - 1)
    # Day boundaries are computed here, not with SQL date functions: the same query then runs on
    # SQLite and PostgreSQL, and a time zone with daylight saving still gets its 23 or 25 hours.
    bounds = [sitetime.day_start(first + timedelta(days=i), tz) for i in range(days + 1)]
    when = RechargeOrder.finalized_at
    slot = case(*((when < end, i) for i, end in enumerate(bounds[1:])))
    credited = (
        select(slot.label("slot"), RechargeOrder.paid_fen.label("paid"), RechargeOrder.bonus_fen.label("bonus"))
        .where(RechargeOrder.status == "credited", when >= bounds[0], when < bounds[-1])
        .subquery()
    )
    # Grouping on the subquery's column, not on the CASE itself: PostgreSQL sees a repeated CASE
    # as a different expression (its parameters are numbered anew) and would refuse the GROUP BY.
    rows = db.session.execute(
        select(
            credited.c.slot,
            func.count(),
            func.coalesce(func.sum(credited.c.paid), 0),
            func.coalesce(func.sum(credited.c.bonus), 0),
        ).group_by(credited.c.slot)
    ).all()
    # PostgreSQL sums BIGINT as NUMERIC (Decimal here): int() is exact, and money stays integer.
    found = {int(i): (int(n), int(paid), int(bonus)) for i, n, paid, bonus in rows}
    return [DayTotal(first + timedelta(days=i), *found.get(i, (0, 0, 0))) for i in range(days)]


@dataclass(frozen=True)
class Bar:
    total: DayTotal
    x: int
    y: int
    width: int
    height: int
    label_x: int  # the centre of the bar, for the day-of-month label


@dataclass(frozen=True)
class BarChart:
    """Integer geometry of a chart of the amount paid per day; the template only draws it."""

    bars: list[Bar]
    max_fen: int  # the value of the tallest bar: the scale
    width: int
    height: int
    top: int  # y of the scale line (the max value)
    baseline: int
    label_y: int

    @property
    def empty(self) -> bool:
        return self.max_fen == 0


def bar_height(value: int, peak: int, plot: int = PLOT) -> int:
    """Rounded to the nearest unit in integers; a day with any money gets at least one unit so it
    never looks like an empty day, and an empty chart (peak 0) divides by nothing."""
    if value <= 0 or peak <= 0:
        return 0
    return max(1, (value * plot + peak // 2) // peak)


def chart(days: Sequence[DayTotal]) -> BarChart:
    peak = max((d.paid_fen for d in days), default=0)
    baseline = TOP + PLOT
    bars = []
    for i, d in enumerate(days):
        height = bar_height(d.paid_fen, peak)
        x = i * SLOT + (SLOT - BAR) // 2
        bars.append(Bar(d, x, baseline - height, BAR, height, x + BAR // 2))
    label_y = baseline + LABEL_GAP
    return BarChart(bars, peak, max(1, len(days)) * SLOT, label_y + 4, TOP, baseline, label_y)


@dataclass(frozen=True)
class WaitingOrder:
    order_no: str
    last4: str
    pay_fen: int
    paid_fen: int | None
    reason: str | None
    waited: timedelta


@dataclass(frozen=True)
class Waiting:
    """The oldest orders of one status, and how many there are in all."""

    status: str
    total: int
    orders: list[WaitingOrder]


def waiting_orders(status: str, now: datetime, limit: int = WAITING_LIMIT) -> Waiting:
    """``pending`` orders by age since they were started, ``review`` orders by age since they
    were flagged (``updated_at``: nothing but a state change writes it). Oldest first."""
    since = RechargeOrder.created_at if status == "pending" else RechargeOrder.updated_at
    # Both filter on status first, which the (status, created_at) index serves; review orders
    # are few (each is a problem), so sorting them by updated_at costs nothing.
    total = db.session.scalar(select(func.count()).select_from(RechargeOrder).where(RechargeOrder.status == status))
    rows = db.session.scalars(
        select(RechargeOrder).where(RechargeOrder.status == status).order_by(since, RechargeOrder.id).limit(limit)
    )
    orders = [
        WaitingOrder(
            o.order_no,
            o.card.last4,
            o.pay_fen,
            o.paid_fen,
            o.status_reason,
            max(timedelta(0), now - (o.created_at if status == "pending" else o.updated_at)),
        )
        for o in rows
    ]
    return Waiting(status, total or 0, orders)


def returned_orders(now: datetime, limit: int = WAITING_LIMIT) -> Waiting:
    """Orders a provider says money went back on (``attention``), whatever their status, the
    longest flagged first. The reason shown is the order's status: "credited" means the card
    still holds money the site no longer has."""
    flagged = RechargeOrder.attention_at.is_not(None)
    total = db.session.scalar(select(func.count()).select_from(RechargeOrder).where(flagged))
    rows = db.session.scalars(
        select(RechargeOrder).where(flagged).order_by(RechargeOrder.attention_at, RechargeOrder.id).limit(limit)
    )
    orders = [
        WaitingOrder(
            o.order_no, o.card.last4, o.pay_fen, o.paid_fen, o.status, max(timedelta(0), now - (o.attention_at or now))
        )
        for o in rows
    ]
    return Waiting("attention", total or 0, orders)


@bp.get("/")
@require_role()
def dashboard() -> Response:
    tz, now = sitetime.zone(current_app.config), utcnow()
    days = daily_totals(tz, sitetime.local_day(now, tz))
    user = cast(StaffUser, current_staff())  # behind require_role: signed in
    # Only those who may open an order see the list of them; totals are for all staff.
    waiting = (
        [waiting_orders(s, now) for s in ("pending", "review")] + [returned_orders(now)]
        if user.role in ("cashier", "admin")
        else None
    )
    # Verified payments that credited nothing: each waits for people (or a rule) to decide.
    open_cases = refunds.uncredited(db.session, limit=WAITING_LIMIT) if waiting is not None else []
    return render("staff/dashboard.html", days=days, chart=chart(days), waiting=waiting, cases=open_cases)
