"""The voucher changes the staff screen and the command line make alike, each with its audit row
in the same transaction (``billing.vouchers`` makes the change, this names who and records it).
Every function runs in the caller's write transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from flask import current_app

from heyon_site import sitetime
from heyon_site.billing import vouchers
from heyon_site.billing.money import parse_amount, yuan
from heyon_site.extensions import db
from heyon_site.models import VoucherBatch, serial_text
from heyon_site.ops.audit import Actor, record, summary


def pin_key() -> bytes:
    """The key the PINs' digests are kept under (config.voucher_pin_key)."""
    key: bytes = current_app.extensions["heyon.voucher_key"]
    return key


def site_today(config: Mapping[str, Any]) -> date:
    """Today in the site's time zone: a voucher is good until the end of its expiry day there."""
    return sitetime.today(sitetime.zone(config))


def two_admins_above(config: Mapping[str, Any]) -> int:
    """HEYON_VOUCHER_TWO_ADMINS_ABOVE (yuan) in fen: a batch worth more is activated by two admins."""
    return parse_amount(str(config["HEYON_VOUCHER_TWO_ADMINS_ABOVE"]))


def create(
    actor: Actor,
    count: int,
    value_fen: int,
    expires_on: date,
    note: str,
    write: vouchers.Writer,
    today: date,
) -> VoucherBatch:
    """A new batch (not active yet); its PINs go to ``write`` and nowhere else."""
    batch = vouchers.create_batch(
        db.session, pin_key(), count, value_fen, expires_on, note, actor.username, write, today
    )
    after = summary(
        {
            "count": count,
            "value": yuan(value_fen),
            "expires": expires_on.isoformat(),
            "total": yuan(batch.total_fen),
            "note": note[:80],
        }
    )
    record(actor, "voucher.create", f"batch {batch.id}", after=after)
    return batch


def activate(actor: Actor, batch_id: int, above_fen: int) -> vouchers.Activated:
    """Activate, ask for activation, or approve another admin's request (billing decides which)."""
    outcome = vouchers.activate(db.session, batch_id, actor.username, actor.staff_id, above_fen)
    batch = db.session.get(VoucherBatch, batch_id)
    assert batch is not None  # activate() found it
    if outcome == "requested":
        action = "voucher.activate_request"
    else:
        action = "voucher.activate_approve" if batch.activation_requested_at else "voucher.activate"
    record(actor, action, f"batch {batch_id}", after=summary({"total": yuan(batch.total_fen)}))
    return outcome


def void_batch(actor: Actor, batch_id: int) -> int:
    """Void a batch; how many of its vouchers were voided (used ones stay used)."""
    voided = vouchers.void_batch(db.session, batch_id)
    record(actor, "voucher.void_batch", f"batch {batch_id}", after=summary({"voided": voided}))
    return voided


def void_voucher(actor: Actor, batch_id: int, serial: int) -> None:
    vouchers.void_voucher(db.session, batch_id, serial)
    record(actor, "voucher.void", f"voucher {serial_text(batch_id, serial)}")
