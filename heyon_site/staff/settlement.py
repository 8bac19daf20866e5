"""The daily settlements: each provider's statement against our books, and the differences to
act on, each linking to its order (cashier and admin)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import Settlement
from heyon_site.staff.auth import require_role
from heyon_site.staff.blueprint import bp
from heyon_site.web.fragments import render

SHOWN_DAYS = 60


@bp.get("/settlement")
@require_role("cashier")
def settlement_list() -> Response:
    rows = db.session.scalars(
        select(Settlement).order_by(Settlement.day.desc(), Settlement.provider).limit(SHOWN_DAYS * 4)
    ).all()
    return render("staff/settlement.html", rows=[(row, differences(row)) for row in rows])


def differences(row: Settlement) -> list[dict[str, Any]]:
    found = json.loads(row.differences or "[]")
    return found if isinstance(found, list) else []
