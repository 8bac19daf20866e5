"""Recharge vouchers (充值卡): batches made and printed by staff, sold in shops, used once.

A voucher is a way to pay: using one makes a recharge order of its value with the method
``voucher`` and applies a verified ``paid`` event to it, named by the voucher's serial, through
the same path as any provider's payment (``billing.recharge.apply_event``). So the ledger, the
receipt, the "recharge credited" message and ``flask ledger verify`` treat it as every other
payment, and the payment events' unique key is a second guard that one voucher pays once.

PINs are 16 digits from ``secrets``; only their keyed digest (HMAC-SHA256 under the voucher key,
passed in by the caller) is stored. Every function runs in the caller's write transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, cast

from sqlalchemy import ColumnElement, Table, case, func, insert, select, update

from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.recharge import apply_event, start_recharge
from heyon_site.billing.refunds import N_
from heyon_site.database import DbSession, rowcount
from heyon_site.models import VOUCHER_METHOD, Card, RechargeOrder, Voucher, VoucherBatch, serial_text, utcnow

#: The method of an order paid with a voucher, and the "provider" of its payment event.
METHOD = VOUCHER_METHOD
PIN_DIGITS = 16
MAX_COUNT = 100_000
#: Vouchers made (and their PINs handed to the writer) per round: what memory holds at once.
CHUNK = 2_000
_VOUCHERS = cast(Table, Voucher.__table__)
_SEPARATORS = re.compile(r"[\s\-]+")
_PIN = re.compile(rf"\d{{{PIN_DIGITS}}}")
_SERIAL = re.compile(r"(\d{1,9})-(\d{1,6})|(\d{4,9})(\d{6})")


class VoucherError(ValueError):
    """A change that cannot be made. ``str(e)`` is the English sentence for the CLI; ``message``
    and ``params`` let a page say it in the reader's language."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params)
        self.message, self.params = message, params


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


def normalise_pin(text: str) -> str | None:
    """The 16 digits as typed (full-width digits, spaces and dashes accepted), or None."""
    digits = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text or ""))
    return digits if _PIN.fullmatch(digits) and digits.isascii() else None


def pin_digest(key: bytes, pin: str) -> str:
    return hmac.new(key, b"voucher-pin:" + pin.encode(), hashlib.sha256).hexdigest()


def parse_serial(text: str) -> tuple[int, int] | None:
    """(batch, serial) of a printed serial, with or without its dash; None if not one."""
    match = _SERIAL.fullmatch(_SEPARATORS.sub("-", unicodedata.normalize("NFKC", text or "").strip()))
    if match is None:
        return None
    batch, serial = (match[1], match[2]) if match[1] else (match[3], match[4])
    return (int(batch), int(serial)) if int(batch) and int(serial) else None


Writer = Callable[[Sequence[tuple[str, str]]], None]


def create_batch(
    s: DbSession,
    key: bytes,
    count: int,
    value_fen: int,
    expires_on: date,
    note: str,
    by: str,
    write: Writer,
    today: date,
    now: datetime | None = None,
) -> VoucherBatch:
    """Make a batch of ``count`` vouchers (state ``created``: worth nothing until activated) and
    hand each (serial, PIN) to ``write``, CHUNK at a time, the only time the PINs exist. The
    caller commits, and keeps what ``write`` got only if the commit succeeds."""
    if not 1 <= count <= MAX_COUNT:
        raise VoucherError(N_("A batch has 1 to %(most)s vouchers."), most=f"{MAX_COUNT:,}")
    if value_fen <= 0:
        raise VoucherError(N_("A voucher's value is more than zero."))
    if expires_on < today:
        raise VoucherError(N_("The expiry date has passed."))
    now = now or utcnow()
    batch = VoucherBatch(
        value_fen=value_fen, count=count, expires_on=expires_on, note=note[:200], created_by=by[:64], created_at=now
    )
    s.add(batch)
    s.flush()
    for first in range(1, count + 1, CHUNK):
        serials = range(first, min(first + CHUNK, count + 1))
        pins = _unused_pins(s, key, len(serials))
        s.execute(
            insert(_VOUCHERS),
            [
                {"batch_id": batch.id, "serial": n, "pin_digest": digest, "status": "created"}
                for n, (_, digest) in zip(serials, pins, strict=True)
            ],
        )
        write([(serial_text(batch.id, n), pin) for n, (pin, _) in zip(serials, pins, strict=True)])
    return batch


def _unused_pins(s: DbSession, key: bytes, n: int) -> list[tuple[str, str]]:
    """``n`` new PINs and their digests, none of which any voucher has (a PIN names one voucher:
    with 10**16 of them a repeat is rare, but it would fail the whole batch on the unique key)."""
    made: dict[str, str] = {}
    while len(made) < n:
        fresh = {}
        for _ in range(n - len(made)):
            pin = new_pin()
            fresh[pin_digest(key, pin)] = pin
        taken = set(s.scalars(select(Voucher.pin_digest).where(Voucher.pin_digest.in_(list(fresh)))))
        made.update((d, p) for d, p in fresh.items() if d not in taken)
    return [(pin, digest) for digest, pin in made.items()]


Activated = Literal["active", "requested"]


def activate(
    s: DbSession,
    batch_id: int,
    by: str,
    by_id: int | None,
    two_admins_above_fen: int,
    now: datetime | None = None,
) -> Activated:
    """Make a batch's vouchers usable (the shop has them). A batch worth more than
    ``two_admins_above_fen`` is activated by two people: the first call asks, and a signed-in
    admin who is not the one who asked approves (``by_id``: the staff account; None for the
    command line, which may ask but never approve)."""
    now = now or utcnow()
    batch = _batch(s, batch_id)
    if batch.state != "created":
        raise VoucherError(
            N_("Batch %(batch)s is %(state)s: only a new batch can be activated."), batch=batch_id, state=batch.state
        )
    if batch.total_fen > two_admins_above_fen:
        if batch.activation_requested_at is None:
            batch.activation_requested_at, batch.activation_requested_by = now, by[:64]
            batch.activation_requested_by_id = by_id
            s.flush()
            return "requested"
        if by_id is None:
            raise VoucherError(N_("A second admin approves this activation on the staff vouchers page."))
        if by_id == batch.activation_requested_by_id:
            raise VoucherError(N_("Another admin must approve the activation you asked for."))
    moved = s.execute(
        update(VoucherBatch)
        .where(VoucherBatch.id == batch_id, VoucherBatch.state == "created")
        .values(state="active", activated_at=now, activated_by=by[:64], activated_by_id=by_id)
        .execution_options(synchronize_session=False)
    )
    if rowcount(moved) != 1:
        raise VoucherError(N_("Batch %(batch)s was changed meanwhile; look again."), batch=batch_id)
    s.execute(
        update(_VOUCHERS)
        .where(_VOUCHERS.c.batch_id == batch_id, _VOUCHERS.c.status == "created")
        .values(status="active")
    )
    return "active"


def void_batch(s: DbSession, batch_id: int, now: datetime | None = None) -> int:
    """Void a batch (lost, stolen, never sold): every voucher of it not used is voided. Used ones
    stay what they are. Returns how many were voided."""
    now = now or utcnow()
    batch = _batch(s, batch_id)
    if batch.state == "voided":
        raise VoucherError(N_("Batch %(batch)s is voided already."), batch=batch_id)
    s.execute(
        update(VoucherBatch)
        .where(VoucherBatch.id == batch_id)
        .values(state="voided", voided_at=now)
        .execution_options(synchronize_session=False)
    )
    result = s.execute(
        update(_VOUCHERS)
        .where(_VOUCHERS.c.batch_id == batch_id, _VOUCHERS.c.status.in_(("created", "active")))
        .values(status="voided", voided_at=now)
    )
    return rowcount(result)


def void_voucher(s: DbSession, batch_id: int, serial: int, now: datetime | None = None) -> None:
    """Void one voucher (its PIN was seen, the card was damaged) unless it was used."""
    result = s.execute(
        update(_VOUCHERS)
        .where(
            _VOUCHERS.c.batch_id == batch_id,
            _VOUCHERS.c.serial == serial,
            _VOUCHERS.c.status.in_(("created", "active")),
        )
        .values(status="voided", voided_at=now or utcnow())
    )
    if rowcount(result) != 1:
        found = lookup(s, batch_id, serial)
        if found is None:
            raise VoucherError(N_("There is no voucher %(serial)s."), serial=serial_text(batch_id, serial))
        raise VoucherError(N_("Voucher %(serial)s is %(state)s already."), serial=found.serial, state=found.status)


def _batch(s: DbSession, batch_id: int) -> VoucherBatch:
    batch = s.get(VoucherBatch, batch_id, populate_existing=True)
    if batch is None:
        raise VoucherError(N_("There is no batch %(batch)s."), batch=batch_id)
    return batch


@dataclass(frozen=True)
class VoucherInfo:
    """What staff see of one voucher: never its PIN, which is not kept."""

    serial: str
    batch_id: int
    batch_state: str
    value_fen: int
    expires_on: date
    status: str
    used_at: datetime | None
    card_last4: str | None
    order_no: str | None
    voided_at: datetime | None

    def state_on(self, today: date) -> str:
        """Its status, or ``expired`` for one never used and past its last day on ``today``."""
        lapsed = self.status in ("created", "active") and self.expires_on < today
        return "expired" if lapsed else self.status


def lookup(s: DbSession, batch_id: int, serial: int) -> VoucherInfo | None:
    row = s.execute(
        select(
            VoucherBatch.state,
            VoucherBatch.value_fen,
            VoucherBatch.expires_on,
            Voucher.status,
            Voucher.used_at,
            Card.last4,
            RechargeOrder.order_no,
            Voucher.voided_at,
        )
        .join(VoucherBatch, VoucherBatch.id == Voucher.batch_id)
        .outerjoin(Card, Card.id == Voucher.card_id)
        .outerjoin(RechargeOrder, RechargeOrder.id == Voucher.order_id)
        .where(Voucher.batch_id == batch_id, Voucher.serial == serial)
    ).one_or_none()
    if row is None:
        return None
    state, value, expires, status, used_at, last4, order_no, voided_at = row
    return VoucherInfo(
        serial_text(batch_id, serial), batch_id, state, value, expires, status, used_at, last4, order_no, voided_at
    )


@dataclass(frozen=True)
class Outstanding:
    """One batch's vouchers by what they are worth to the books: those still usable are money the
    issuer owes (a liability), used ones were credited, expired and voided ones are owed no more."""

    batch_id: int
    state: str
    value_fen: int
    count: int
    expires_on: date
    usable: int
    used: int
    expired: int
    voided: int

    @property
    def outstanding_fen(self) -> int:
        return self.usable * self.value_fen


def outstanding(s: DbSession, today: date, batch_ids: Sequence[int] | None = None) -> list[Outstanding]:
    """Per batch, newest first: what is usable (active, not expired), used, expired and voided."""
    live = (Voucher.status == "active") & (VoucherBatch.expires_on >= today)
    lapsed = (Voucher.status.in_(("active", "created"))) & (VoucherBatch.expires_on < today)

    def n(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = (
        select(
            VoucherBatch.id,
            VoucherBatch.state,
            VoucherBatch.value_fen,
            VoucherBatch.count,
            VoucherBatch.expires_on,
            n(live),
            n(Voucher.status == "used"),
            n(lapsed),
            n(Voucher.status == "voided"),
        )
        .join(Voucher, Voucher.batch_id == VoucherBatch.id)
        .group_by(VoucherBatch.id)
        .order_by(VoucherBatch.id.desc())
    )
    if batch_ids is not None:
        query = query.where(VoucherBatch.id.in_(list(batch_ids)))
    return [
        Outstanding(bid, state, value, count, expires, int(usable), int(used), int(expired), int(voided))
        for bid, state, value, count, expires, usable, used, expired, voided in s.execute(query)
    ]


def redeem(
    s: DbSession,
    key: bytes,
    card_id: int,
    pin: str,
    locale: str,
    today: date,
    now: datetime | None = None,
    email: str | None = None,
) -> RechargeOrder | None:
    """Recharge the card with the voucher whose PIN this is: a credited order of its value, or
    None when there is no usable voucher with it, for whatever reason (none has that PIN, it is
    not active yet, voided, expired, used): a stranger learns nothing about which PINs exist.

    Exactly once: the voucher moves from ``active`` to ``used`` by a conditional update naming
    the order, so of two customers racing for one PIN one wins (on PostgreSQL the other waits
    for the row and finds it used; SQLite has one writer). The same card sending it again (a
    second press, a retried POST) gets the order its first use made."""
    now = now or utcnow()
    digits = normalise_pin(pin)
    if digits is None:
        return None
    row = s.execute(
        select(
            Voucher.id,
            Voucher.batch_id,
            Voucher.serial,
            Voucher.status,
            Voucher.card_id,
            Voucher.order_id,
            VoucherBatch.value_fen,
            VoucherBatch.expires_on,
        )
        .join(VoucherBatch, VoucherBatch.id == Voucher.batch_id)
        .where(Voucher.pin_digest == pin_digest(key, digits))
    ).one_or_none()
    if row is None:
        return None
    voucher_id, batch_id, serial, status, used_by, used_for, value_fen, expires_on = row
    if status == "used" and used_by == card_id and used_for is not None:
        return s.get(RechargeOrder, used_for)
    if status != "active" or expires_on < today:
        return None
    try:
        with s.begin_nested():
            order = start_recharge(s, card_id, value_fen, METHOD, locale, now=now, email=email)
            taken = s.execute(
                update(_VOUCHERS)
                .where(_VOUCHERS.c.id == voucher_id, _VOUCHERS.c.status == "active")
                .values(status="used", used_at=now, card_id=card_id, order_id=order.id)
            )
            if rowcount(taken) != 1:
                raise _Taken
    except _Taken:
        return None
    outcome = apply_event(
        s, ProviderEvent(METHOD, order.order_no, serial_text(batch_id, serial), "paid", value_fen), now
    )
    if outcome != "credited":
        # The event's unique key says this voucher paid before, which the update above rules
        # out: a broken invariant, never a second credit. Roll the whole transaction back.
        raise RuntimeError(f"voucher {serial_text(batch_id, serial)}: payment {outcome}, not credited")
    s.refresh(order)
    return order


class _Taken(Exception):
    """Another transaction used the voucher between reading and taking it."""
