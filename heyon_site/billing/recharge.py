"""Recharge orders: creation, the guarded state machine, and applying provider events.

The state machine is enforced by conditional UPDATEs (``... WHERE status = 'pending'``): of any
number of concurrent transactions only one can move an order out of ``pending``, on SQLite
(one writer at a time) and on PostgreSQL (the row lock makes the others re-check the WHERE).
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, Update, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from heyon_site.billing import notices, refunds
from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.ledger import credit
from heyon_site.billing.money import AmountError, parse_amount
from heyon_site.billing.promos import Quote
from heyon_site.database import DbSession, insert_unless_there, rowcount
from heyon_site.models import ORDER_STATES, PaymentEvent, RechargeOrder, utcnow

# Crediting runs as plain Core statements on the tables: the ORM's bulk-update bookkeeping and
# identity map add nothing to a conditional UPDATE, and they were a third of a notification.
_ORDERS = cast(Table, RechargeOrder.__table__)
_EVENTS = cast(Table, PaymentEvent.__table__)


class AmountOutOfRange(ValueError):
    def __init__(self, min_fen: int, max_fen: int) -> None:
        super().__init__(f"amount must be within {min_fen}..{max_fen} fen")
        self.min_fen, self.max_fen = min_fen, max_fen


@dataclass(frozen=True)
class AmountRules:
    presets_fen: tuple[int, ...]
    min_fen: int
    max_fen: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AmountRules:
        presets = tuple(parse_amount(p) for p in str(config["HEYON_PRESET_AMOUNTS"]).split(",") if p.strip())
        return cls(
            presets, parse_amount(str(config["HEYON_MIN_AMOUNT"])), parse_amount(str(config["HEYON_MAX_AMOUNT"]))
        )

    def check(self, amount_fen: int, channel_min_fen: int = 0) -> int:
        """The amount, if a preset or within the limits (and the channel's own minimum)."""
        low = max(self.min_fen, channel_min_fen)
        if amount_fen in self.presets_fen and amount_fen >= channel_min_fen:
            return amount_fen
        if not low <= amount_fen <= self.max_fen:
            raise AmountOutOfRange(low, self.max_fen)
        return amount_fen

    def parse(self, text: str, channel_min_fen: int = 0) -> int:
        """Parse and check; raises AmountError or AmountOutOfRange."""
        return self.check(parse_amount(text), channel_min_fen)


def new_order_no(now: datetime) -> str:
    """16 digits: the date (so support can find it by day) and 10 random digits."""
    return now.strftime("%y%m%d") + f"{secrets.randbelow(10**10):010d}"


def submission_key(form_id: str, card_id: int, amount_fen: int, provider: str) -> str:
    """What makes two posts the same recharge: one form, and the same card, amount and method.
    The same form sent again with another amount (back, change, send) is a new recharge."""
    return f"{form_id}:{card_id}:{amount_fen}:{provider}"


def start_recharge(
    s: DbSession,
    card_id: int,
    amount_fen: int,
    provider: str,
    locale: str,
    now: datetime | None = None,
    terms: Quote | None = None,
    form_id: str | None = None,
    needs_confirmation: bool = False,
    email: str | None = None,
) -> RechargeOrder:
    """A pending order for ``amount_fen`` on the quoted ``terms`` (none: pay the face value, no
    bonus); the caller commits. The terms are copied onto the order, so the promise it carries
    outlives any later change to the promotion.

    With the recharge form's one-time ``form_id``, a repeat of the same submission returns the
    order the first one made (``created_at`` then predates ``now``) instead of a second order;
    ``needs_confirmation`` marks terms the customer has not seen yet."""
    now = now or utcnow()
    terms = terms or Quote.face_value(amount_fen)
    if terms.amount_fen != amount_fen:
        raise ValueError(f"terms quoted for {terms.amount_fen} fen, not {amount_fen}")
    if terms.caps is None and (terms.bonus_fen or terms.pay_fen != amount_fen):
        raise ValueError("a bonus or a discount needs the promotion caps it was quoted under")
    key = submission_key(form_id, card_id, amount_fen, provider) if form_id else None
    if key is not None:
        made = _order_of_submission(s, key)
        if made is not None:
            return made
    order = RechargeOrder(
        order_no=new_order_no(now),
        token=secrets.token_urlsafe(18),
        card_id=card_id,
        provider=provider,
        status="pending",
        amount_fen=amount_fen,
        pay_fen=terms.pay_fen,
        bonus_fen=terms.bonus_fen,
        promo_snapshot=terms.snapshot_json(),
        bonus_cap_percent=None if terms.caps is None else terms.caps.bonus_percent,
        discount_cap_percent=None if terms.caps is None else terms.caps.discount_percent,
        locale=locale,
        created_at=now,
        updated_at=now,
        submission_key=key,
        needs_confirmation=needs_confirmation,
        email=email or None,
    )
    if key is None:
        s.add(order)
        s.flush()
        return order
    try:
        # A savepoint: on PostgreSQL a concurrent repeat of the same form waits for the first
        # insert, then fails on the unique key; the order the first one made is the answer.
        with s.begin_nested():
            s.add(order)
    except IntegrityError:
        made = _order_of_submission(s, key)
        if made is None:
            raise
        return made
    return order


def _order_of_submission(s: DbSession, key: str) -> RechargeOrder | None:
    return s.scalar(
        select(RechargeOrder).where(RechargeOrder.submission_key == key).execution_options(populate_existing=True)
    )


def accept_terms(s: DbSession, order_id: int) -> bool:
    """The customer accepted the terms the order page showed; True while the order can still be
    paid (a second press finds it accepted already, and goes on to the same payment)."""
    result = s.execute(
        update(RechargeOrder)
        .where(RechargeOrder.id == order_id, RechargeOrder.status == "pending")
        .values(needs_confirmation=False)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def _not_begun() -> tuple[ColumnElement[bool], ...]:
    """An order still pending, whose terms are accepted and with which no provider has been
    asked for anything: nothing can have been paid for it anywhere yet."""
    return (
        RechargeOrder.status == "pending",
        RechargeOrder.needs_confirmation.is_(False),
        RechargeOrder.pay_url.is_(None),
        RechargeOrder.pay_qr.is_(None),
        RechargeOrder.pay_jsapi.is_(None),
        RechargeOrder.provider_ref.is_(None),
    )


def await_sign_in(s: DbSession, order_id: int, state_digest: str) -> bool:
    """The order waits for this WeChat sign-in (the digest of its single-use ``state``); a newer
    one replaces it. False once the order can no longer be begun."""
    result = s.execute(
        update(RechargeOrder)
        .where(RechargeOrder.id == order_id, *_not_begun())
        .values(oauth_state=state_digest)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def end_sign_in(s: DbSession, order_id: int, state_digest: str) -> bool:
    """The sign-in the order waited for came back: True once for its ``state``, and only while
    nothing else has begun the payment; a replay, or a state of another order, is False."""
    result = s.execute(
        update(RechargeOrder)
        .where(RechargeOrder.id == order_id, RechargeOrder.oauth_state == state_digest, *_not_begun())
        .values(oauth_state=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def switch_method(s: DbSession, order_id: int, provider: str) -> bool:
    """Pay the order another way (the chosen one cannot pay where the customer is, or its sign-in
    failed): only while no provider has been asked for anything, so the order can never be paid
    twice. Amount and terms stay those the customer accepted."""
    result = s.execute(
        update(RechargeOrder)
        .where(RechargeOrder.id == order_id, *_not_begun())
        .values(provider=provider, oauth_state=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


ORDER_NO = re.compile(r"\d{16}")


TOKEN = re.compile(r"[A-Za-z0-9_-]{24}")


def find_order(s: DbSession, order_no: str) -> RechargeOrder | None:
    """The order with this number; None for anything not shaped like one (never a query)."""
    if not ORDER_NO.fullmatch(order_no or ""):
        return None
    return s.scalar(
        select(RechargeOrder).where(RechargeOrder.order_no == order_no).execution_options(populate_existing=True)
    )


def find_by_token(s: DbSession, token: str) -> RechargeOrder | None:
    if not TOKEN.fullmatch(token or ""):
        return None
    return s.scalar(select(RechargeOrder).where(RechargeOrder.token == token))


def _move(s: DbSession, order_id: int, sources: Iterable[str], target: str, now: datetime, **values: Any) -> bool:
    """The only way an order changes state: succeeds for exactly one of concurrent callers."""
    final = {"finalized_at": now} if target in ("credited", "failed", "expired") else {}
    fields = {"status": target, "updated_at": now, **final, **values}
    stmt = _move_statement(tuple(sources), tuple(sorted(fields)))
    result = s.execute(stmt, {"order": order_id, **{f"new_{name}": value for name, value in fields.items()}})
    return rowcount(result) == 1


@functools.cache
def _move_statement(sources: tuple[str, ...], columns: tuple[str, ...]) -> Update:
    """Built once for each kind of move (they are few) and kept: it runs on every payment."""
    o = _ORDERS.c
    return (
        update(_ORDERS)
        .where(o.id == bindparam("order"), o.status.in_(sources))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


def _record_event(s: DbSession, event: ProviderEvent, order_id: int, now: datetime) -> int | None:
    """Insert the event under its unique key; None when it was recorded before (a duplicate)."""
    added = s.execute(
        insert_unless_there(s, PaymentEvent, ("provider", "provider_txn_id", "kind")),
        {
            "provider": event.provider,
            "provider_txn_id": event.txn_id,
            "kind": event.kind,
            "order_id": order_id,
            "amount_fen": event.amount_fen,
            "outcome": "processing",
            "created_at": now,
        },
    )
    return added.scalar_one_or_none()


def apply_event(s: DbSession, event: ProviderEvent, now: datetime | None = None) -> str:
    """Apply a verified provider event inside the caller's write transaction; return the outcome.

    Outcomes: credited, duplicate, unknown_order, amount_mismatch, paid_again, review,
    failed, refunded, ignored, and for a refund this site asked for (``refund_no``):
    refund_succeeded, refund_failed. Only "credited" moves money, and only once per order.
    "refunded": the provider says money went back to the payer; the order is flagged for a
    person (``attention``) and nothing is debited: the caller raises the alarm.
    """
    now = now or utcnow()
    order = _due(s, event.order_no)
    if order is None or order.provider != event.provider:
        return "unknown_order"
    mine = refunds.ours(s, event) if event.kind in ("refunded", "refund_failed") else None
    covered = None
    if event.kind == "refunded" and mine is None and event.refund_no is None:
        covered = refunds.covering(s, event.order_no, event.provider, event.amount_fen)
    if event.kind == "refund_failed":
        # Nothing went back: only a refund of ours can be told so (its row is the record).
        if mine is None:
            return "ignored"
        return "refund_failed" if refunds.record_answer(s, mine.id, "failed", now, detail="failed") else "duplicate"
    event_id = _record_event(s, event, order.id, now)
    if event_id is None:
        return "duplicate"
    if event.kind == "paid":
        outcome = _paid(s, order, event, now)
    elif event.kind == "closed":
        outcome = _closed(s, order, now)
    elif mine is not None:
        # Money went back as two people (or a rule) decided: recorded, nobody to alarm.
        refunds.record_answer(s, mine.id, "succeeded", now, detail="notified")
        s.execute(_LINK_REFUND, {"event": event_id, "refund": mine.id})
        outcome = "refund_succeeded"
    elif covered is not None:
        # The same money told again without our number (a total so far): ours, no alarm; its
        # refund finishes by its own notice or query, never by this ambiguous one.
        s.execute(_LINK_REFUND, {"event": event_id, "refund": covered.id})
        outcome = "refund_succeeded"
    else:
        outcome = _refunded(s, order, now)
    s.execute(_SET_OUTCOME, {"event": event_id, "new_outcome": outcome})
    return outcome


_SET_OUTCOME = update(_EVENTS).where(_EVENTS.c.id == bindparam("event")).values(outcome=bindparam("new_outcome"))
_LINK_REFUND = update(_EVENTS).where(_EVENTS.c.id == bindparam("event")).values(refund_id=bindparam("refund"))


@dataclass(frozen=True)
class _Due:
    """What applying an event reads of its order."""

    id: int
    provider: str
    card_id: int
    pay_fen: int
    amount_fen: int
    bonus_fen: int


def _due(s: DbSession, order_no: str) -> _Due | None:
    if not ORDER_NO.fullmatch(order_no or ""):
        return None
    row = s.execute(_DUE, {"order_no": order_no}).one_or_none()
    return None if row is None else _Due(*row)


_DUE = select(*(_ORDERS.c[name] for name in ("id", "provider", "card_id", "pay_fen", "amount_fen", "bonus_fen"))).where(
    _ORDERS.c.order_no == bindparam("order_no")
)


def _paid(s: DbSession, order: _Due, event: ProviderEvent, now: datetime) -> str:
    if event.amount_fen != order.pay_fen:
        _move(
            s,
            order.id,
            ("pending", "failed", "expired"),
            "review",
            now,
            paid_fen=event.amount_fen,
            provider_txn_id=event.txn_id,
            status_reason="amount_mismatch",
        )
        return "amount_mismatch"
    if _move(s, order.id, ("pending",), "credited", now, paid_fen=event.amount_fen, provider_txn_id=event.txn_id):
        credit(s, order.card_id, order.amount_fen, "recharge", key=f"order:{order.id}:recharge", order_id=order.id)
        if order.bonus_fen:
            credit(s, order.card_id, order.bonus_fen, "bonus", key=f"order:{order.id}:bonus", order_id=order.id)
        notices.recharge_credited(s, order.id, now)  # the message commits with the credit, or neither
        return "credited"
    # Someone else moved it first. A second, different payment of a credited order, or a payment
    # of an order we already gave up on, is real money that needs a person: never credit blindly.
    if _move(
        s,
        order.id,
        ("failed", "expired"),
        "review",
        now,
        paid_fen=event.amount_fen,
        provider_txn_id=event.txn_id,
        status_reason="paid_after_close",
    ):
        return "review"
    current = s.scalar(select(_ORDERS.c.status).where(_ORDERS.c.id == order.id))
    return "paid_again" if current == "credited" else "review"


def _closed(s: DbSession, order: _Due, now: datetime) -> str:
    if _move(s, order.id, ("pending",), "failed", now, status_reason="closed_by_provider"):
        return "failed"
    # A provider closes a trade that was paid only by giving all of it back (Alipay's full
    # refund, the sandbox's close after success): on an order holding money, that is a refund,
    # whatever the adapter could tell from the message alone. Closed twice is nothing.
    if _flag(s, order.id, ("credited", "review"), now):
        return "refunded"
    return "ignored"


#: ``RechargeOrder.attention``: the provider reported money returned to the payer.
MONEY_RETURNED = "money_returned"


def _refunded(s: DbSession, order: _Due, now: datetime) -> str:
    """Money went back to the payer at the provider. Nothing is debited here: the card may have
    spent the credit, and whether to take it back (or accept the loss) is a person's decision.
    A pending order can never be credited afterwards: it waits for that person in review."""
    _move(s, order.id, ("pending",), "review", now, status_reason=MONEY_RETURNED)
    _flag(s, order.id, ORDER_STATES, now)
    return "refunded"


def _flag(s: DbSession, order_id: int, statuses: Iterable[str], now: datetime) -> bool:
    """Put the order in front of a person, if it is in one of ``statuses``. The first time it
    was flagged is kept: the dashboard lists the longest waiting first."""
    result = s.execute(
        update(_ORDERS)
        .where(_ORDERS.c.id == order_id, _ORDERS.c.status.in_(tuple(statuses)))
        .values(attention=MONEY_RETURNED, attention_at=func.coalesce(_ORDERS.c.attention_at, now))
    )
    return rowcount(result) == 1


__all__ = ["AmountError", "AmountOutOfRange", "AmountRules", "apply_event", "start_recharge"]
