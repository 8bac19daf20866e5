"""The ledger: the only code that writes money movements, and the proof that the books balance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.sql.expression import Exists

from heyon_site.billing.promos import PromoCaps
from heyon_site.database import DbSession, insert_unless_there
from heyon_site.models import (
    UNCREDITED_OUTCOMES,
    VOUCHER_METHOD,
    Card,
    LedgerEntry,
    PaymentEvent,
    RechargeOrder,
    Refund,
    Resolution,
    UsageCharge,
    Voucher,
    VoucherBatch,
    serial_text,
    utcnow,
)


def credit(s: DbSession, card_id: int, amount_fen: int, kind: str, key: str, order_id: int | None = None) -> bool:
    """Add one ledger entry and raise the card's cached balance by the same amount.

    Idempotent by ``key``: the insert is ``ON CONFLICT (key) DO NOTHING``, so a second call
    with the same key (even from a concurrent transaction, which waits for the first to
    commit) writes nothing and returns False. The caller commits; this only flushes.
    """
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen == 0:
        raise ValueError(f"a credit is a non-zero int of fen, not {amount_fen!r}")
    entry = {
        "card_id": card_id,
        "order_id": order_id,
        "kind": kind,
        "amount_fen": amount_fen,
        "key": key,
        "created_at": utcnow(),
    }
    added = s.execute(insert_unless_there(s, LedgerEntry, ("key",)), entry)
    if added.scalar_one_or_none() is None:
        return False
    # Relative update: concurrent credits to one card cannot overwrite each other.
    s.execute(_RAISE_BALANCE, {"card": card_id, "amount": amount_fen})
    return True


# On the table, not the class (the ORM's bookkeeping is for objects loaded here, and there are
# none), and built once: it runs on every credit.
_CARDS = cast(Table, Card.__table__)
_RAISE_BALANCE = (
    update(_CARDS)
    .where(_CARDS.c.id == bindparam("card"))
    .values(balance_fen=_CARDS.c.balance_fen + bindparam("amount"))
)


def credit_key(event_id: int) -> str:
    """The key of a payment credited by two people's decision (billing.refunds): one, ever."""
    return f"payment:{event_id}:credit"


def balance_of(s: DbSession, card_id: int) -> int:
    total = s.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(LedgerEntry.card_id == card_id))
    return int(total or 0)


@dataclass(frozen=True)
class Verdict:
    cards: int
    entries: int
    total_fen: int
    credited_orders: int
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


def verify(s: DbSession, limit: int = 50, caps: PromoCaps | None = None) -> Verdict:
    """Check every invariant of the books; report at most ``limit`` violations of each kind.

    ``caps``: the promotion caps configured now (``PromoCaps()``'s defaults if not given), which
    hold orders quoted before orders recorded their own."""

    problems: list[str] = []

    sums = (
        select(LedgerEntry.card_id, func.sum(LedgerEntry.amount_fen).label("total"))
        .group_by(LedgerEntry.card_id)
        .subquery()
    )
    mismatched = s.execute(
        select(Card.last4, Card.balance_fen, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.card_id == Card.id)
        .where(Card.balance_fen != func.coalesce(sums.c.total, 0))
        .limit(limit)
    ).all()
    problems += [
        f"card *{last4}: cached balance {bal} fen != ledger sum {total} fen" for last4, bal, total in mismatched
    ]

    negative = s.scalars(select(Card.last4).where(Card.balance_fen < 0).limit(limit)).all()
    problems += [f"card *{last4}: negative balance" for last4 in negative]

    # Each credited order: exactly one recharge entry of its amount, one bonus entry iff it has a
    # bonus, both on the order's own card; no entries at all on orders that are not credited.
    entry_stats = (
        select(
            LedgerEntry.order_id,
            func.sum(case((LedgerEntry.kind == "recharge", 1), else_=0)).label("n_recharge"),
            func.sum(case((LedgerEntry.kind == "bonus", 1), else_=0)).label("n_bonus"),
            func.sum(LedgerEntry.amount_fen).label("total"),
            func.max(LedgerEntry.card_id).label("max_card"),
            func.min(LedgerEntry.card_id).label("min_card"),
        )
        # An adjustment on an order is a payment of it credited by two people's decision
        # (billing.refunds), checked against its decision below, not against the order's terms.
        .where(LedgerEntry.order_id.is_not(None), LedgerEntry.kind.in_(("recharge", "bonus")))
        .group_by(LedgerEntry.order_id)
        .subquery()
    )
    rows = s.execute(
        select(
            RechargeOrder.order_no,
            RechargeOrder.status,
            RechargeOrder.card_id,
            RechargeOrder.amount_fen,
            RechargeOrder.bonus_fen,
            entry_stats.c.n_recharge,
            entry_stats.c.n_bonus,
            entry_stats.c.total,
            entry_stats.c.min_card,
            entry_stats.c.max_card,
        )
        .outerjoin(entry_stats, entry_stats.c.order_id == RechargeOrder.id)
        .where((RechargeOrder.status == "credited") | entry_stats.c.order_id.is_not(None))
    ).all()
    credited = 0
    for no, status, card_id, amount, bonus, n_rec, n_bonus, total, min_card, max_card in rows:
        if status != "credited":
            problems.append(f"order {no}: status {status} but has ledger entries")
            continue
        credited += 1
        want_bonus = 1 if bonus else 0
        if n_rec is None:
            problems.append(f"order {no}: credited but has no ledger entries")
        elif n_rec != 1 or n_bonus != want_bonus or total != amount + bonus:
            problems.append(
                f"order {no}: entries ({n_rec} recharge, {n_bonus} bonus, {total} fen) "
                f"do not match the order ({amount} + {bonus} fen)"
            )
        elif min_card != card_id or max_card != card_id:
            problems.append(f"order {no}: entries on another card")
        if len(problems) > 4 * limit:
            break

    # Each credited order was paid: a verified payment event of the amount the customer paid.
    unpaid = s.scalars(
        select(RechargeOrder.order_no)
        .where(
            RechargeOrder.status == "credited",
            ~select(PaymentEvent.id)
            .where(
                PaymentEvent.order_id == RechargeOrder.id,
                PaymentEvent.kind == "paid",
                PaymentEvent.amount_fen == RechargeOrder.pay_fen,
            )
            .exists(),
        )
        .limit(limit)
    ).all()
    problems += [f"order {no}: credited without a matching verified payment" for no in unpaid]

    # Money a provider says went back (a refund; a close of a credited order) leaves the books
    # as they were, since nothing is debited by itself: it is a case for a person, so the order
    # must be flagged for one. Unflagged, it would be a refund nobody knows about.
    def reported(kind: str) -> Exists:
        return (
            select(PaymentEvent.id).where(PaymentEvent.order_id == RechargeOrder.id, PaymentEvent.kind == kind).exists()
        )

    # A refund this site asked for (its event names our refund) was decided by people or a rule.
    returned_outside = (
        select(PaymentEvent.id)
        .where(
            PaymentEvent.order_id == RechargeOrder.id,
            PaymentEvent.kind == "refunded",
            PaymentEvent.refund_id.is_(None),
        )
        .exists()
    )
    unflagged = s.scalars(
        select(RechargeOrder.order_no)
        .where(
            RechargeOrder.attention_at.is_(None),
            returned_outside | ((RechargeOrder.status == "credited") & reported("closed")),
        )
        .limit(limit)
    ).all()
    problems += [
        f"order {no}: the provider reports money returned, but the order is not flagged for staff" for no in unflagged
    ]

    problems += _over_the_caps(s, caps or PromoCaps(), limit)
    problems += _payments_accounted_for(s, limit)
    problems += _usage_accounted_for(s, limit)
    problems += _vouchers_accounted_for(s, limit)

    kinds_without_order = s.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.order_id.is_(None), LedgerEntry.kind.in_(("recharge", "bonus")))
    )
    if kinds_without_order:
        problems.append(f"{kinds_without_order} recharge/bonus entries belong to no order")

    return Verdict(
        cards=s.scalar(select(func.count()).select_from(Card)) or 0,
        entries=s.scalar(select(func.count()).select_from(LedgerEntry)) or 0,
        total_fen=int(s.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))) or 0),
        credited_orders=credited,
        violations=problems,
    )


def _over_the_caps(s: DbSession, caps: PromoCaps, limit: int) -> list[str]:
    """Credited orders whose bonus or discount is more than the caps in force when they were
    quoted (recorded on the order; ``caps`` for orders made before that was recorded)."""
    bonus_cap = func.coalesce(RechargeOrder.bonus_cap_percent, caps.bonus_percent)
    discount_cap = func.coalesce(RechargeOrder.discount_cap_percent, caps.discount_percent)
    discount = RechargeOrder.amount_fen - RechargeOrder.pay_fen
    rows = s.execute(
        select(
            RechargeOrder.order_no,
            RechargeOrder.amount_fen,
            RechargeOrder.pay_fen,
            RechargeOrder.bonus_fen,
            bonus_cap,
            discount_cap,
            RechargeOrder.bonus_cap_percent.is_(None),
        )
        .where(
            RechargeOrder.status == "credited",
            (RechargeOrder.bonus_fen * 100 > RechargeOrder.pay_fen * bonus_cap)
            | (discount * 100 > RechargeOrder.amount_fen * discount_cap),
        )
        .order_by(RechargeOrder.id)
        .limit(limit)
    ).all()
    problems = []
    for no, amount, pay, bonus, bonus_pct, discount_pct, unrecorded in rows:
        whose = "configured caps (none recorded on the order)" if unrecorded else "caps recorded on the order"
        if bonus * 100 > pay * bonus_pct:
            problems.append(f"order {no}: bonus {bonus} fen is more than {bonus_pct}% of the {pay} fen paid ({whose})")
        if (amount - pay) * 100 > amount * discount_pct:
            problems.append(
                f"order {no}: discount {amount - pay} fen is more than {discount_pct}% of the {amount} fen "
                f"amount ({whose})"
            )
    return problems


def _payments_accounted_for(s: DbSession, limit: int) -> list[str]:
    """Every verified payment is exactly one of: credited (its order, or two people's decision),
    refunded in full (a succeeded refund of ours), or waiting for a person; and per provider and
    day, the payments add up to what was credited, refunded and is waiting, each summed from its
    own table."""
    problems: list[str] = []
    paid = PaymentEvent.kind == "paid"
    uncredited = PaymentEvent.outcome.in_(UNCREDITED_OUTCOMES)
    approved_credit = (Resolution.state == "approved") & (Resolution.action == "credit")

    # A decided credit has its one ledger entry, of its amount; and every such entry its decision.
    decided = dict(s.execute(select(Resolution.payment_event_id, Resolution.amount_fen).where(approved_credit)).all())
    entered = dict(
        s.execute(
            select(LedgerEntry.key, LedgerEntry.amount_fen).where(
                LedgerEntry.kind == "adjustment", LedgerEntry.key.like("payment:%:credit")
            )
        ).all()
    )
    for event_id, amount in decided.items():
        if entered.get(credit_key(event_id)) != amount:
            problems.append(
                f"payment {event_id}: credit approved for {amount} fen, ledger has {entered.get(credit_key(event_id))}"
            )
    keys = {credit_key(e) for e in decided}
    problems += [f"ledger entry {k}: a payment credited without an approved decision" for k in entered if k not in keys]

    # Refunds: only of payments that credited nothing, of their whole amount when succeeded, and
    # never of a payment that was also credited.
    rows = s.execute(
        select(
            Refund.refund_no,
            Refund.amount_fen,
            Refund.status,
            PaymentEvent.id,
            PaymentEvent.amount_fen,
            PaymentEvent.outcome,
        )
        .join(PaymentEvent, PaymentEvent.id == Refund.payment_event_id)
        .where(Refund.status != "failed")
    ).all()
    credited_by_decision = set(decided)
    for refund_no, amount, status, event_id, paid_fen, outcome in rows:
        if outcome not in UNCREDITED_OUTCOMES:
            problems.append(f"refund {refund_no}: of payment {event_id}, which credited the card")
        elif event_id in credited_by_decision:
            problems.append(f"refund {refund_no}: payment {event_id} was credited by decision too")
        elif status == "succeeded" and amount != paid_fen:
            problems.append(f"refund {refund_no}: {amount} fen returned of a payment of {paid_fen}")
        if len(problems) > 4 * limit:
            return problems

    # Per provider and day of the payment: payments = credited + decided credits + refunded + waiting.
    day = func.date(PaymentEvent.created_at)
    paid_in = {
        (p, str(d)): int(t)
        for p, d, t in s.execute(
            select(PaymentEvent.provider, day, func.sum(PaymentEvent.amount_fen))
            .where(paid, (PaymentEvent.outcome == "credited") | uncredited)
            .group_by(PaymentEvent.provider, day)
        )
    }
    parts: dict[tuple[str, str], int] = {}

    def add(query: Any) -> None:
        for provider, d, total in s.execute(query):
            parts[(provider, str(d))] = parts.get((provider, str(d)), 0) + int(total or 0)

    add(  # credited by their order: the order's price, from the order
        select(PaymentEvent.provider, day, func.sum(RechargeOrder.pay_fen))
        .join(RechargeOrder, RechargeOrder.id == PaymentEvent.order_id)
        .where(paid, PaymentEvent.outcome == "credited", RechargeOrder.status == "credited")
        .group_by(PaymentEvent.provider, day)
    )
    add(  # credited by decision: from the decisions
        select(PaymentEvent.provider, day, func.sum(Resolution.amount_fen))
        .join(Resolution, Resolution.payment_event_id == PaymentEvent.id)
        .where(approved_credit)
        .group_by(PaymentEvent.provider, day)
    )
    add(  # refunded: from the refunds
        select(PaymentEvent.provider, day, func.sum(Refund.amount_fen))
        .join(Refund, Refund.payment_event_id == PaymentEvent.id)
        .where(Refund.status == "succeeded")
        .group_by(PaymentEvent.provider, day)
    )
    settled = (
        select(Resolution.id).where(Resolution.payment_event_id == PaymentEvent.id, approved_credit).exists()
        | select(Refund.id).where(Refund.payment_event_id == PaymentEvent.id, Refund.status == "succeeded").exists()
    )
    add(  # waiting for a person (or a refund under way)
        select(PaymentEvent.provider, day, func.sum(PaymentEvent.amount_fen))
        .where(paid, uncredited, ~settled)
        .group_by(PaymentEvent.provider, day)
    )
    for key in sorted(set(paid_in) | set(parts)):
        if paid_in.get(key, 0) != parts.get(key, 0):
            problems.append(
                f"{key[0]} {key[1]}: payments {paid_in.get(key, 0)} fen != credited, refunded and waiting "
                f"{parts.get(key, 0)} fen"
            )
    return problems[: 4 * limit]


def _usage_accounted_for(s: DbSession, limit: int) -> list[str]:
    """Every applied usage charge has exactly one ``usage`` entry, of minus its amount, on its
    card; every ``usage`` entry has its applied charge; a refused charge has none."""
    charges = {
        f"usage:{client}:{charge_id}": (status, -amount, card)
        for client, charge_id, status, amount, card in s.execute(
            select(
                UsageCharge.client,
                UsageCharge.charge_id,
                UsageCharge.status,
                UsageCharge.amount_fen,
                UsageCharge.card_id,
            )
        )
    }
    entries = {
        key: (amount, card)
        for key, amount, card in s.execute(
            select(LedgerEntry.key, LedgerEntry.amount_fen, LedgerEntry.card_id).where(LedgerEntry.kind == "usage")
        )
    }
    problems = []
    for key, (status, debit, card) in charges.items():
        entry = entries.get(key)
        if status == "applied" and entry != (debit, card):
            problems.append(f"{key}: applied, but the ledger has {entry} for ({debit}, card {card})")
        elif status == "refused" and entry is not None:
            problems.append(f"{key}: refused, but the ledger has a debit")
    problems += [f"ledger entry {key}: a usage debit without its charge" for key in entries if key not in charges]
    return problems[: 4 * limit]


def _vouchers_accounted_for(s: DbSession, limit: int) -> list[str]:
    """Every used voucher credited exactly one order of its value, on its card, paid by an event
    naming it; every order paid by voucher has its voucher; no voucher paid twice."""
    problems: list[str] = []
    used = s.execute(
        select(Voucher.batch_id, Voucher.serial, Voucher.card_id, Voucher.order_id, VoucherBatch.value_fen)
        .join(VoucherBatch, VoucherBatch.id == Voucher.batch_id)
        .where(Voucher.status == "used")
    ).all()
    orders = {
        oid: (status, card, amount, pay, bonus)
        for oid, status, card, amount, pay, bonus in s.execute(
            select(
                RechargeOrder.id,
                RechargeOrder.status,
                RechargeOrder.card_id,
                RechargeOrder.amount_fen,
                RechargeOrder.pay_fen,
                RechargeOrder.bonus_fen,
            ).where(RechargeOrder.provider == VOUCHER_METHOD)
        )
    }
    events: dict[str, list[int | None]] = {}
    for txn, event_order in s.execute(
        select(PaymentEvent.provider_txn_id, PaymentEvent.order_id).where(
            PaymentEvent.provider == VOUCHER_METHOD, PaymentEvent.kind == "paid"
        )
    ):
        events.setdefault(txn, []).append(event_order)
    accounted: set[int | None] = set()
    for batch_id, serial, card_id, order_id, value in used:
        name = serial_text(batch_id, serial)
        order = orders.get(order_id) if order_id is not None else None
        if order is None:
            problems.append(f"voucher {name}: used, but its order is not an order paid by voucher")
        elif order != ("credited", card_id, value, value, 0):
            status, card, amount, pay, bonus = order
            problems.append(
                f"voucher {name}: worth {value} fen, but its order is {status} for {amount} + {bonus} fen "
                f"(paid {pay}) on {'its' if card == card_id else 'another'} card"
            )
        if events.get(name) != [order_id]:
            problems.append(f"voucher {name}: paid by {len(events.get(name, []))} events, not one of its order")
        accounted.add(order_id)
        if len(problems) > limit:
            return problems
    for order_id, (status, *_rest) in orders.items():
        if status == "credited" and order_id not in accounted:
            problems.append(f"order id {order_id}: credited as paid by voucher, but no voucher was used for it")
    known = {serial_text(b, n) for b, n, *_rest in used}
    problems += [f"voucher {txn}: a payment event, but the voucher is not used" for txn in events if txn not in known]
    return problems[: 2 * limit]
