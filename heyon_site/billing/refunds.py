"""Payments that credited nothing, and the money sent back.

A verified payment whose outcome credited nothing (``UNCREDITED_OUTCOMES``: an amount that
differs, a payment of an order closed or expired, a second payment of a credited order) ends in
exactly one of two ways: **credited** (two people decided: an ``adjustment`` ledger entry of the
amount actually paid, keyed by the payment) or **refunded** (two people decided, or a rule did
for a payment that can never be credited). Until then it waits for a person, listed on the staff
dashboard. Money credited to a card is never refunded: a payment that credited the card is not
one of these.

Every function here runs inside the caller's write transaction and never calls a provider: the
caller asks the provider between transactions and records what it said (``record_answer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Select, func, select, update

from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.ledger import credit, credit_key
from heyon_site.database import DbSession, rowcount, serialise_on
from heyon_site.models import (
    UNCREDITED_OUTCOMES,
    PaymentEvent,
    RechargeOrder,
    Refund,
    Resolution,
    utcnow,
)

Action = Literal["credit", "refund"]
#: After no answer from the provider: wait this long times 2**(attempts-1), at most a day.
RETRY_AFTER = timedelta(minutes=1)
RETRY_AT_MOST = timedelta(hours=24)
#: A refund the provider accepted but has not finished is asked about this often.
ASK_AGAIN_AFTER = timedelta(minutes=5)
#: order.status_reason of a payment that can never be credited by rule, refunded automatically.
PAID_AFTER_CLOSE = "paid_after_close"


class RefundError(ValueError):
    """A decision that cannot be taken. ``str(e)`` is the English sentence for the CLI;
    ``message`` and ``params`` let a page say it in the reader's language."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params)
        self.message, self.params = message, params


def N_(message: str) -> str:
    """Marks a message for extraction; translated where it is shown."""
    return message


@dataclass(frozen=True)
class Uncredited:
    """A verified payment that credited nothing, and where it stands."""

    event_id: int
    order_no: str
    provider: str
    amount_fen: int
    outcome: str
    paid_at: datetime
    #: "waiting" (for a person), "proposed" (one person decided), "refunding" (a refund is
    #: pending), "credited", "refunded" (done), or "refund_failed" (a person decides again).
    state: str


def _payment(s: DbSession, event_id: int) -> PaymentEvent:
    event = s.get(PaymentEvent, event_id, populate_existing=True)
    if event is None or event.kind != "paid" or event.outcome not in UNCREDITED_OUTCOMES:
        raise RefundError(N_("That payment credited the card, or is not a payment: there is nothing to decide."))
    return event


def _decided(s: DbSession, event_id: int, states: tuple[str, ...] = ("proposed", "approved")) -> Resolution | None:
    return s.scalar(select(Resolution).where(Resolution.payment_event_id == event_id, Resolution.state.in_(states)))


def propose(
    s: DbSession, event_id: int, action: Action, reason: str, staff_id: int, now: datetime | None = None
) -> int:
    """One member of staff proposes to credit the amount actually paid, or to refund it. Nothing
    moves until another approves. Returns the resolution's id."""
    serialise_on(f"payment:{event_id}")
    event = _payment(s, event_id)
    if action not in ("credit", "refund"):
        raise RefundError(N_("Choose to credit the payment or to refund it."))
    if not reason.strip():
        raise RefundError(N_("Say why: the reason stays with the decision."))
    if state_of(s, event_id) not in ("waiting", "refund_failed"):
        raise RefundError(N_("A decision about this payment is proposed or made already."))
    resolution = Resolution(
        payment_event_id=event_id,
        order_id=event.order_id,
        action=action,
        amount_fen=event.amount_fen,
        reason=reason.strip()[:500],
        state="proposed",
        proposed_by=staff_id,
        proposed_at=now or utcnow(),
    )
    s.add(resolution)
    s.flush()
    return resolution.id


def decide(s: DbSession, resolution_id: int, staff_id: int, approve: bool, now: datetime | None = None) -> Resolution:
    """An admin who did not propose it approves (the money moves: a credit now, a refund asked
    for) or rejects (the payment waits for a person again)."""
    now = now or utcnow()
    found = s.get(Resolution, resolution_id, populate_existing=True)
    if found is None:
        raise RefundError(N_("There is no such proposal."))
    serialise_on(f"payment:{found.payment_event_id}")
    if found.proposed_by == staff_id:
        raise RefundError(N_("Another person must approve or reject what you proposed."))
    moved = s.execute(
        update(Resolution)
        .where(Resolution.id == resolution_id, Resolution.state == "proposed", Resolution.proposed_by != staff_id)
        .values(state="approved" if approve else "rejected", decided_by=staff_id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(moved) != 1:
        raise RefundError(N_("That proposal was decided already."))
    s.refresh(found)
    if not approve:
        return found
    order = s.get(RechargeOrder, found.order_id)
    assert order is not None  # a foreign key
    if found.action == "credit":
        credit(
            s, order.card_id, found.amount_fen, "adjustment", key=credit_key(found.payment_event_id), order_id=order.id
        )
    else:
        _new_refund(s, found.payment_event_id, "resolution", now, resolution_id=found.id)
    return found


def _new_refund(s: DbSession, event_id: int, origin: str, now: datetime, resolution_id: int | None = None) -> Refund:
    event = _payment(s, event_id)
    order = s.get(RechargeOrder, event.order_id)
    assert order is not None
    earlier = s.scalar(select(func.count()).select_from(Refund).where(Refund.payment_event_id == event_id)) or 0
    refund = Refund(
        # Ours, unique, letters and digits only (what every provider accepts as its request
        # number): the payment and how many refunds of it were asked for before (a failed one
        # may be followed by another decision, under a new number).
        refund_no=f"RF{event_id:010d}{earlier + 1:02d}",
        payment_event_id=event_id,
        order_id=order.id,
        provider=event.provider,
        amount_fen=event.amount_fen,
        status="pending",
        origin=origin,
        resolution_id=resolution_id,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    s.add(refund)
    s.flush()
    return refund


def due_for_auto_refund(s: DbSession, older_than: datetime, limit: int = 100) -> list[int]:
    """Payments that can never be credited by rule (a second payment of a credited order, a
    payment of an order closed or expired), verified before ``older_than``, with no decision and
    no live refund: a person had time to intervene, and did not."""
    any_decision = select(Resolution.id).where(
        Resolution.payment_event_id == PaymentEvent.id, Resolution.state.in_(("proposed", "approved"))
    )  # a rejected proposal leaves the rule to act
    any_refund = select(Refund.id).where(Refund.payment_event_id == PaymentEvent.id)
    rows = s.scalars(
        select(PaymentEvent.id)
        .join(RechargeOrder, RechargeOrder.id == PaymentEvent.order_id)
        .where(
            PaymentEvent.kind == "paid",
            PaymentEvent.created_at <= older_than,
            (PaymentEvent.outcome == "paid_again")
            | ((PaymentEvent.outcome == "review") & (RechargeOrder.status_reason == PAID_AFTER_CLOSE)),
            ~any_decision.exists(),
            ~any_refund.exists(),
        )
        .order_by(PaymentEvent.id)
        .limit(limit)
    ).all()
    return list(rows)


def auto_refund(s: DbSession, event_id: int, now: datetime | None = None) -> Refund | None:
    """Ask for the refund of a payment that can never be credited (see ``due_for_auto_refund``);
    None when a person decided meanwhile or a refund exists."""
    serialise_on(f"payment:{event_id}")
    if state_of(s, event_id) != "waiting":
        return None  # a person decided meanwhile, or a refund exists (a failed one: people decide)
    return _new_refund(s, event_id, "auto", now or utcnow())


def refunds_due(s: DbSession, now: datetime, limit: int = 100) -> list[int]:
    """Pending refunds whose time to send (or to ask about) has come."""
    return list(
        s.scalars(
            select(Refund.id)
            .where(Refund.status == "pending", Refund.next_attempt_at <= now)
            .order_by(Refund.next_attempt_at, Refund.id)
            .limit(limit)
        ).all()
    )


def record_answer(
    s: DbSession,
    refund_id: int,
    state: str | None,
    now: datetime,
    provider_refund_id: str | None = None,
    detail: str = "",
) -> bool:
    """What the provider said of a pending refund: ``state`` pending, succeeded or failed, or
    None for no answer (asked again later, backing off). A final state is never moved."""
    refund = s.get(Refund, refund_id, populate_existing=True)
    if refund is None or refund.status != "pending":
        return False
    values: dict[str, object] = {"updated_at": now, "attempts": Refund.attempts + 1}
    if state is None:
        wait = min(RETRY_AFTER * 2 ** min(refund.attempts, 20), RETRY_AT_MOST)
        values["next_attempt_at"] = now + wait
    else:
        values.update(sent=True, detail=(detail or state)[:120])
        if provider_refund_id:
            values["provider_refund_id"] = provider_refund_id[:128]
        if state == "pending":
            values["next_attempt_at"] = now + ASK_AGAIN_AFTER
        else:
            values.update(status=state, finished_at=now, next_attempt_at=None)
    moved = s.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == "pending")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(moved) == 1


def ours(s: DbSession, event: ProviderEvent) -> Refund | None:
    """The refund of ours a provider's refund notice names (by our number, on its order)."""
    if not event.refund_no:
        return None
    return s.scalar(
        select(Refund)
        .join(RechargeOrder, RechargeOrder.id == Refund.order_id)
        .where(
            Refund.refund_no == event.refund_no,
            Refund.provider == event.provider,
            RechargeOrder.order_no == event.order_no,
        )
    )


def covering(s: DbSession, order_no: str, provider: str, returned_fen: int) -> Refund | None:
    """A refund notice that does not name our number (Stripe's charge.refunded on current API
    versions gives only the charge's total refunded so far): ours when our own refunds of the
    order, pending or done, add up to at least that total. The newest of them is named; its
    state is left to its own notice or query."""
    mine = s.scalars(
        select(Refund)
        .join(RechargeOrder, RechargeOrder.id == Refund.order_id)
        .where(
            RechargeOrder.order_no == order_no,
            Refund.provider == provider,
            Refund.status.in_(("pending", "succeeded")),
        )
        .order_by(Refund.id)
    ).all()
    if mine and sum(r.amount_fen for r in mine) >= returned_fen:
        return mine[-1]
    return None


def uncredited(s: DbSession, limit: int = 200, only_open: bool = True) -> list[Uncredited]:
    """Verified payments that credited nothing, oldest first, with where each stands."""
    query = (
        select(
            PaymentEvent.id,
            RechargeOrder.order_no,
            PaymentEvent.provider,
            PaymentEvent.amount_fen,
            PaymentEvent.outcome,
            PaymentEvent.created_at,
        )
        .join(RechargeOrder, RechargeOrder.id == PaymentEvent.order_id)
        .where(PaymentEvent.kind == "paid", PaymentEvent.outcome.in_(UNCREDITED_OUTCOMES))
        .order_by(PaymentEvent.id)
    )
    if only_open:  # settled ones (credited by decision, refunded) are history, not work
        credited = select(Resolution.id).where(
            Resolution.payment_event_id == PaymentEvent.id,
            Resolution.state == "approved",
            Resolution.action == "credit",
        )
        refunded = select(Refund.id).where(Refund.payment_event_id == PaymentEvent.id, Refund.status == "succeeded")
        query = query.where(~credited.exists(), ~refunded.exists()).limit(limit)
    return [Uncredited(*row, state=state_of(s, row[0])) for row in s.execute(query).all()]


def _of_order(order_id: int) -> Select[int, int]:
    """An order's payments that credited nothing (id, fen), settled or not, in order."""
    return (
        select(PaymentEvent.id, PaymentEvent.amount_fen)
        .where(
            PaymentEvent.order_id == order_id,
            PaymentEvent.kind == "paid",
            PaymentEvent.outcome.in_(UNCREDITED_OUTCOMES),
        )
        .order_by(PaymentEvent.id)
    )


def uncredited_of(s: DbSession, order_id: int) -> list[int]:
    """The ids of an order's payments that credited nothing, settled or not."""
    return [event_id for event_id, _ in s.execute(_of_order(order_id))]


def state_of(s: DbSession, event_id: int) -> str:
    credited = s.scalar(
        select(Resolution.id).where(
            Resolution.payment_event_id == event_id, Resolution.state == "approved", Resolution.action == "credit"
        )
    )
    if credited is not None:
        return "credited"
    refunds = s.scalars(select(Refund.status).where(Refund.payment_event_id == event_id)).all()
    if "succeeded" in refunds:
        return "refunded"
    if "pending" in refunds:
        return "refunding"
    if _decided(s, event_id, ("proposed",)) is not None:
        return "proposed"
    return "refund_failed" if refunds else "waiting"


def resolutions_of(s: DbSession, order_id: int) -> list[Resolution]:
    return list(s.scalars(select(Resolution).where(Resolution.order_id == order_id).order_by(Resolution.id)).all())


def refunds_of(s: DbSession, order_id: int) -> list[Refund]:
    return list(s.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)).all())


def what_became_of(s: DbSession, order_id: int) -> list[tuple[str, int]]:
    """For the customer's order page: each payment of the order that credited nothing, as
    (state, fen), the state one of ``state_of``'s."""
    return [(state_of(s, event_id), amount) for event_id, amount in s.execute(_of_order(order_id)).all()]
