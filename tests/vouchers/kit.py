"""Helpers of the voucher tests: site days, batches made directly, a voucher used, the tables as text."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import text

from heyon_site.billing.vouchers import redeem
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, VoucherBatch
from heyon_site.ops.audit import COMMAND_LINE
from heyon_site.vouchers import services

HEADER = ["serial", "pin", "value", "expires"]


def today() -> date:
    return services.site_today(current_app.config)


def day(days: int) -> str:
    """A site day ``days`` from today, as typed."""
    return (today() + timedelta(days=days)).isoformat()


def rows_of(csv_text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_text)))


def make_batch(count: int, value_fen: int = 5_000, days: int = 365) -> tuple[int, list[tuple[str, str]]]:
    """A batch made as the command line makes it: its id, and its (serial, PIN) pairs."""
    got: list[tuple[str, str]] = []

    def work() -> int:
        got.clear()
        return services.create(COMMAND_LINE, count, value_fen, today() + timedelta(days=days), "", got.extend,
                               today()).id

    return in_write_transaction(work), got


def activate(batch_id: int) -> str:
    return in_write_transaction(lambda: services.activate(COMMAND_LINE, batch_id, 10**12))


def use(pin: str, card_id: int) -> RechargeOrder:
    """Recharge the card with the voucher of this PIN, as the customer's page does."""
    key = current_app.extensions["heyon.voucher_key"]
    order = in_write_transaction(lambda: redeem(db.session, key, card_id, pin, "en", today()))
    assert order is not None, "the voucher paid nothing"
    return order


def batch(batch_id: int) -> VoucherBatch:
    db.session.rollback()
    found = db.session.get(VoucherBatch, batch_id, populate_existing=True)
    assert found is not None
    return found


def dump(tables: Sequence[str] = ("vouchers", "voucher_batches", "audit_log", "payment_events",
                                  "recharge_orders")) -> str:
    """Every row of these tables as text: what a copy of the database would show."""
    db.session.rollback()
    return "\n".join(repr(tuple(row)) for table in tables for row in db.session.execute(text(f"SELECT * FROM {table}")))
