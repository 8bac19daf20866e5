"""The staff home page: credited recharges per local day, the SVG chart, and orders waiting."""
from __future__ import annotations

import itertools
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow
from heyon_site.staff.dashboard import BAR, PLOT, SLOT, DayTotal, bar_height, chart, daily_totals, waiting_orders

from tests.kit import ROOT, new_client
from tests.kit import make_card, notification, start_order
from tests.staff.kit import signed_in

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2025, 3, 16)
_serial = itertools.count(1)


def shanghai(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A Shanghai wall-clock time as stored: naive UTC."""
    local = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SHANGHAI)
    return local.astimezone(UTC).replace(tzinfo=None)


def add_order(card_id: int, status: str, *, finalized_at: datetime | None = None, created_at: datetime | None = None,
              updated_at: datetime | None = None, pay_fen: int = 10000, bonus_fen: int = 0,
              reason: str | None = None) -> str:
    """An order written straight to the table, at the times a test needs."""
    order_no = f"2025{next(_serial):012d}"
    created = created_at or finalized_at or utcnow()
    paid = pay_fen if status in ("credited", "review") else None
    in_write_transaction(lambda: db.session.add(RechargeOrder(
        order_no=order_no, token=secrets.token_urlsafe(18), card_id=card_id, provider="sandbox", status=status,
        amount_fen=pay_fen, pay_fen=pay_fen, bonus_fen=bonus_fen, paid_fen=paid, status_reason=reason,
        created_at=created, updated_at=updated_at or finalized_at or created, finalized_at=finalized_at)))
    return order_no


def totals(*days: DayTotal) -> list[tuple[date, int, int, int]]:
    return [(d.day, d.count, d.paid_fen, d.bonus_fen) for d in days]


def bars(body: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'(\w+)="([^"]*)"', rect)) for rect in re.findall(r"<rect [^>]*>", body)]


# ------------------------------------------------------------------ totals per local day


def test_totals_follow_the_shanghai_calendar_day_of_crediting(app: Flask) -> None:
    card = make_card()
    first = TODAY - timedelta(days=13)
    late, early = shanghai(TODAY - timedelta(days=1), 23, 59), shanghai(TODAY, 0, 1)
    assert late.date() == early.date()  # one UTC day, two local days: the case that matters
    add_order(card, "credited", finalized_at=late, pay_fen=10000, bonus_fen=500)
    # Started yesterday, credited today: today's money.
    add_order(card, "credited", finalized_at=early, created_at=shanghai(TODAY - timedelta(days=1), 23, 50), pay_fen=5000)
    add_order(card, "credited", finalized_at=shanghai(TODAY, 12), pay_fen=2000, bonus_fen=100)
    add_order(card, "credited", finalized_at=shanghai(first), pay_fen=300)  # the first instant counts
    add_order(card, "credited", finalized_at=shanghai(first - timedelta(days=1), 23, 59, 59), pay_fen=1)
    add_order(card, "credited", finalized_at=shanghai(TODAY + timedelta(days=1)), pay_fen=2)
    # No money was accepted for these, whatever their times.
    add_order(card, "failed", finalized_at=shanghai(TODAY, 10), pay_fen=9900)
    add_order(card, "expired", finalized_at=shanghai(TODAY, 11), pay_fen=9800)
    add_order(card, "pending", created_at=shanghai(TODAY, 9), pay_fen=9700)
    add_order(card, "review", updated_at=shanghai(TODAY, 8), created_at=shanghai(TODAY, 7), pay_fen=9600)

    days = daily_totals(SHANGHAI, TODAY)

    expected = [DayTotal(first + timedelta(days=i)) for i in range(14)]
    expected[0] = DayTotal(first, 1, 300, 0)
    expected[12] = DayTotal(TODAY - timedelta(days=1), 1, 10000, 500)
    expected[13] = DayTotal(TODAY, 2, 7000, 100)
    assert totals(*days) == totals(*expected)
    assert all(type(v) is int for d in days for v in (d.count, d.paid_fen, d.bonus_fen))  # never Decimal


def test_one_day_window_and_an_empty_database(app: Flask) -> None:
    assert totals(*daily_totals(SHANGHAI, TODAY, days=1)) == [(TODAY, 0, 0, 0)]
    assert [d.day for d in daily_totals(SHANGHAI, TODAY)] == [TODAY - timedelta(days=13 - i) for i in range(14)]


# ------------------------------------------------------------------ the chart's geometry


def test_bars_are_proportional_and_aligned() -> None:
    paid = [0] * 11 + [10000, 5000, 2500]
    c = chart([DayTotal(TODAY - timedelta(days=13 - i), 1 if p else 0, p) for i, p in enumerate(paid)])
    assert len(c.bars) == 14 and c.max_fen == 10000 and not c.empty
    assert [b.height for b in c.bars] == [0] * 11 + [PLOT, PLOT // 2, PLOT // 4]
    assert {b.y + b.height for b in c.bars} == {c.baseline} and c.baseline - c.top == PLOT
    assert [b.x for b in c.bars] == [i * SLOT + (SLOT - BAR) // 2 for i in range(14)]
    assert all(b.width == BAR and b.label_x == b.x + BAR // 2 for b in c.bars)
    assert c.width == 14 * SLOT and c.label_y > c.baseline and c.height > c.label_y


def test_all_zero_days_and_rounding() -> None:
    c = chart([DayTotal(TODAY - timedelta(days=i)) for i in range(14)])
    assert c.empty and c.max_fen == 0 and [b.height for b in c.bars] == [0] * 14
    assert chart([]).bars == []
    assert bar_height(1, 3, 80) == 27  # 26.67 rounds up, in integers
    assert bar_height(1, 1_000_000) == 1  # one fen is still visible
    assert bar_height(0, 0) == 0


# ------------------------------------------------------------------ orders waiting


def test_waiting_orders_are_the_oldest_and_counted(app: Flask) -> None:
    card = make_card()
    now = utcnow()
    numbers = [add_order(card, "pending", created_at=now - timedelta(minutes=60 - i)) for i in range(25)]
    add_order(card, "review", created_at=now - timedelta(days=2), updated_at=now - timedelta(hours=3), reason="amount_mismatch")
    add_order(card, "credited", finalized_at=now)

    pending = waiting_orders("pending", now)
    assert pending.total == 25 and [o.order_no for o in pending.orders] == numbers[:20]
    assert pending.orders[0].waited == timedelta(minutes=60)
    [review] = waiting_orders("review", now).orders
    assert review.waited == timedelta(hours=3) and review.reason == "amount_mismatch"  # since it was flagged

    body = signed_in(app, "cashier").get("/staff/?lang=en").get_data(as_text=True)
    assert "Waiting for payment (25)" in body and "The oldest 20 of 25." in body
    assert numbers[0] in body and numbers[19] in body and numbers[20] not in body


# ------------------------------------------------------------------ the page


def _credit(client: object, order_no: str, yuan: str) -> str:
    return client.post("/pay/notify/sandbox", data=notification(order_no, yuan)).get_data(as_text=True)  # type: ignore[attr-defined]


def test_cashier_sees_today_the_chart_and_orders_waiting(app: Flask) -> None:
    make_card()
    customer = new_client(app)
    paid = start_order(customer)
    assert _credit(customer, paid, "100.00") == "success"
    pending = start_order(customer)
    review = start_order(customer)
    _credit(customer, review, "1.00")  # a wrong amount: a person must look at it

    r = signed_in(app, "cashier").get("/staff/?lang=en")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and '<html lang="en">' in body
    assert re.search(r"<dt>Recharges</dt><dd>1</dd>\s*<dt>Paid</dt><dd>¥100.00</dd>", body)

    rects = bars(body)
    assert len(rects) == 14 and [r["class"] for r in rects] == ["bar"] * 13 + ["bar today"]
    assert [int(r["height"]) for r in rects] == [0] * 13 + [PLOT]
    assert body.count("<title>") == 14 + 1  # a title per bar, and the page's
    svg = re.search(r"<svg [^>]*>", body)
    assert svg and 'role="img"' in svg.group(0)
    labelled_by = re.search(r'aria-labelledby="([^"]+)"', svg.group(0))
    assert labelled_by and all(f'id="{i}"' in body for i in labelled_by.group(1).split())
    assert len(re.findall(r'<tr><th scope="row">', body)) == 14

    assert f"/staff/orders/{pending}" in body and f"/staff/orders/{review}" in body
    assert f"/staff/orders/{paid}" not in body
    assert "Waiting for payment (1)" in body and "Needs review (1)" in body
    # Why it waits, in words: the stored reason (amount_mismatch) is a code, not for people.
    assert "the amount paid differs from the order" in body and "amount_mismatch" not in body
    # The chart has no style of its own: the only <style> is the site's stylesheet, which the
    # CSP allows by its hash.
    site_css = (ROOT / "static" / "css" / "site.css").read_text()
    assert not re.search(r"\sstyle=", body) and "<style" not in body.replace(f"<style>{site_css}</style>", "")


def test_editor_sees_totals_but_no_orders(app: Flask) -> None:
    make_card()
    customer = new_client(app)
    paid = start_order(customer)
    assert _credit(customer, paid, "100.00") == "success"
    pending = start_order(customer)

    r = signed_in(app, "editor").get("/staff/?lang=zh")  # sign-in left an English cookie
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and '<html lang="zh-Hans">' in body
    assert len(bars(body)) == 14 and "¥100.00" in body
    assert pending not in body and "/staff/orders" not in body and 'id="waiting-' not in body


def test_all_zero_dashboard(app: Flask) -> None:
    body = signed_in(app, "admin").get("/staff/?lang=en").get_data(as_text=True)
    assert "No credited recharges in these days." in body
    assert [r["height"] for r in bars(body)] == ["0"] * 14
    assert 'class="scale"' not in body  # no max to show
    assert "Waiting for payment (0)" in body and "Needs review (0)" in body
    assert not re.search(r"\sstyle=", body)
