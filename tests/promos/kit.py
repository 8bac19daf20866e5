"""Helpers of the promotion tests: promotions saved directly, the staff promotion form, its
approval, and the quote line of the recharge form."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Promotion, utcnow
from tests.kit import csrf_from


def token(client: FlaskClient, page: str = "/staff/?lang=en") -> str:
    return csrf_from(client.get(page).get_data(as_text=True))


def local(delta: timedelta) -> str:
    """A site time (Asia/Shanghai, UTC+8) ``delta`` from now, as the datetime-local input sends it."""
    return (utcnow() + timedelta(hours=8) + delta).strftime("%Y-%m-%dT%H:%M")


def promo_fields(**over: str) -> dict[str, str]:
    return {"title_zh": "充值有礼", "title_en": "Recharge bonus", "kind": "fixed_bonus", "threshold": "100",
            "value": "10", "percent": "", "cap": "", "starts": local(-timedelta(days=1)),
            "ends": local(timedelta(days=1)), "priority": "2", "published": "y", **over}


def create_promo(client: FlaskClient, **over: str) -> None:
    r = client.post("/staff/promotions", data={"csrf_token": token(client), **promo_fields(**over)})
    assert r.status_code == 303, r.get_data(as_text=True)[:1500]


def the_promo() -> Promotion:
    db.session.rollback()
    promo = db.session.scalars(select(Promotion).order_by(Promotion.id.desc())).first()
    assert promo is not None
    return promo


def approve_button(client: FlaskClient, pid: int) -> dict[str, str] | None:
    """The fields of the approve button the promotions page shows ``client`` for ``pid``, if any."""
    page = client.get("/staff/promotions?lang=en").get_data(as_text=True)
    found = re.search(rf'<form method="post" action="/staff/promotions/{pid}/approve"[^>]*>(.*?)</form>', page, re.S)
    return dict(re.findall(r'<input[^>]*name="(\w+)"[^>]*value="([^"]*)"', found.group(1))) if found else None


def approve(client: FlaskClient, pid: int) -> TestResponse:
    """Press the approve button, as shown to ``client``."""
    fields = approve_button(client, pid)
    assert fields is not None and set(fields) == {"csrf_token", "terms"}, fields
    return client.post(f"/staff/promotions/{pid}/approve", data=fields)


NOW = datetime(2026, 12, 1, 4, 0)  # naive UTC, like every stored time


DAY = timedelta(days=1)


QUOTE = re.compile(r'<p id="quote"([^>]*)>(.*?)</p>', re.S)


def promo(now: datetime = NOW, **fields: Any) -> Promotion:
    """A published promotion running from a day before ``now`` to a day after; unsaved, as
    ``quote()`` needs no database."""
    values: dict[str, Any] = {
        "id": 1, "title_zh": "充值有礼", "title_en": "Recharge bonus", "kind": "fixed_bonus", "threshold_fen": 0,
        "value_fen": 0, "percent_bp": 0, "cap_fen": None, "priority": 0, "published": True,
        "starts_at": now - DAY, "ends_at": now + DAY,
    }
    return Promotion(**{**values, **fields})


def save(now: datetime | None = None, **fields: Any) -> int:
    """A promotion in the database (running now unless told otherwise); returns its id."""
    def add() -> int:
        row = promo(now or utcnow(), **{"id": None, **fields})
        db.session.add(row)
        db.session.flush()
        return row.id

    return in_write_transaction(add)


def quote_line(r: TestResponse) -> str:
    """The text of the quote line in a page or fragment ("" when there is none)."""
    found = QUOTE.search(r.get_data(as_text=True))
    return re.sub(r"<[^>]+>", "", found.group(2)).strip() if found else ""
