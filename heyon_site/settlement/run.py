"""Running a day's settlement with one provider: fetch (or read) the statement, archive the raw
file, match it against our books, ask the provider about money we never recorded (through the
normal query, so it is credited or sent to review by ``apply_event``), and keep the result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import delete, select, update

from heyon_site.billing.recharge import apply_event
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import UNCREDITED_OUTCOMES, PaymentEvent, RechargeOrder, Refund, Settlement
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import Provider, ProviderUnavailable, StatementLine, Statements
from heyon_site.settlement.matching import Ours, Report, match

#: Providers write their statements by the day in Beijing time.
BEIJING = ZoneInfo("Asia/Shanghai")
#: Ours this close to the day's edges are matched against it too (a payment at 23:59:59 may be
#: on either day's statement), but never counted missing from it.
EDGE = timedelta(minutes=15)


class NoStatements(Exception):
    """The provider is not enabled, or has no statements this site can read."""


def bounds(day: date) -> tuple[datetime, datetime]:
    """The day in Beijing time as naive UTC (how times are stored)."""
    start = datetime.combine(day, time(), BEIJING).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return start, start + timedelta(days=1)


def statements_of(name: str) -> Statements:
    provider = get_provider(name)
    if provider is None:
        raise NoStatements(f"{name} is not an enabled provider")
    if not (hasattr(provider, "fetch_statement") and hasattr(provider, "parse_statement")):
        raise NoStatements(f"{name} has no statements to settle against")
    return provider  # type: ignore[return-value]  # checked above: Statements is structural


def our_books(provider: str, day: date, theirs: list[StatementLine] | None = None) -> list[Ours]:
    """Ours recorded in the day (and its edges), and, whenever we recorded them, the payments and
    refunds the statement names: one recorded days later (credited by a late notice, by
    reconciliation, or by this settlement's own query) is matched to the day it was paid."""
    start, end = bounds(day)
    found = _recorded_between(provider, day, start, end)
    known = {(o.kind, o.order_no, o.reference) for o in found}
    named = {line.order_no for line in theirs or []}
    for item in _of_orders(provider, sorted(named)):
        if (item.kind, item.order_no, item.reference) not in known:
            found.append(item)
    return found


def _of_orders(provider: str, order_nos: list[str]) -> list[Ours]:
    """Every payment and refund of these orders, as never missing from this day's statement."""
    found: list[Ours] = []
    for chunk in (order_nos[i : i + 500] for i in range(0, len(order_nos), 500)):
        found += [
            Ours("payment", order_no, txn_id, amount, False)
            for order_no, txn_id, amount in db.session.execute(
                select(RechargeOrder.order_no, PaymentEvent.provider_txn_id, PaymentEvent.amount_fen)
                .join(RechargeOrder, RechargeOrder.id == PaymentEvent.order_id)
                .where(
                    PaymentEvent.provider == provider,
                    PaymentEvent.kind == "paid",
                    PaymentEvent.outcome.in_(("credited", *UNCREDITED_OUTCOMES)),
                    RechargeOrder.order_no.in_(chunk),
                )
            )
        ]
        found += [
            Ours("refund", order_no, refund_no, amount, False, provider_refund_id)
            for order_no, refund_no, amount, provider_refund_id in db.session.execute(
                select(RechargeOrder.order_no, Refund.refund_no, Refund.amount_fen, Refund.provider_refund_id)
                .join(RechargeOrder, RechargeOrder.id == Refund.order_id)
                .where(Refund.provider == provider, Refund.status == "succeeded", RechargeOrder.order_no.in_(chunk))
            )
        ]
    return found


def _recorded_between(provider: str, day: date, start: datetime, end: datetime) -> list[Ours]:
    """Ours recorded in the day or at its edges, but for those another day's statement named."""
    lo, hi = start - EDGE, end + EDGE
    found = [
        Ours("payment", order_no, txn_id, amount, start <= at < end)
        for order_no, txn_id, amount, at in db.session.execute(
            select(
                RechargeOrder.order_no, PaymentEvent.provider_txn_id, PaymentEvent.amount_fen, PaymentEvent.created_at
            )
            .join(RechargeOrder, RechargeOrder.id == PaymentEvent.order_id)
            .where(
                PaymentEvent.provider == provider,
                PaymentEvent.kind == "paid",
                PaymentEvent.outcome.in_(("credited", *UNCREDITED_OUTCOMES)),
                PaymentEvent.created_at >= lo,
                PaymentEvent.created_at < hi,
                PaymentEvent.statement_day.is_(None) | (PaymentEvent.statement_day == day),
            )
        )
    ]
    found += [
        Ours("refund", order_no, refund_no, amount, at is not None and start <= at < end, provider_refund_id)
        for order_no, refund_no, amount, at, provider_refund_id in db.session.execute(
            select(
                RechargeOrder.order_no,
                Refund.refund_no,
                Refund.amount_fen,
                Refund.finished_at,
                Refund.provider_refund_id,
            )
            .join(RechargeOrder, RechargeOrder.id == Refund.order_id)
            .where(
                Refund.provider == provider,
                Refund.status == "succeeded",
                Refund.finished_at >= lo,
                Refund.finished_at < hi,
                Refund.statement_day.is_(None) | (Refund.statement_day == day),
            )
        )
    ]
    return found


def archive(provider: str, day: date, filename: str, raw: bytes) -> Path:
    """Keep the raw file (the providers keep theirs only 3 to 30 months): under
    HEYON_SETTLEMENT_DIR/<provider>/<year>/; a different file of the same name is kept beside it."""
    folder = Path(current_app.config["HEYON_SETTLEMENT_DIR"] or Path(current_app.instance_path) / "settlements")
    folder = folder / provider / f"{day:%Y}"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[:120] or f"{provider}-{day}.bin"
    target = folder / safe
    if target.exists() and target.read_bytes() != raw:
        target = folder / f"{target.stem}.{hashlib.sha256(raw).hexdigest()[:12]}{target.suffix}"
    if not target.exists():
        target.write_bytes(raw)
    return target


@dataclass(frozen=True)
class Outcome:
    provider: str
    day: date
    report: Report
    archived: Path
    #: What the normal query did with each payment only the provider had (order -> outcome).
    asked: dict[str, str]


def settle(name: str, day: date, raw: bytes | None = None, filename: str | None = None) -> Outcome:
    """Raises NoStatements, StatementNotReady, ProviderUnavailable, MalformedStatement."""
    provider = statements_of(name)
    if raw is None:
        filename, raw = provider.fetch_statement(day)
    kept = archive(name, day, filename or f"{name}-{day}.bin", raw)
    lines = provider.parse_statement(raw)
    db.session.rollback()
    report = match(lines, our_books(name, day, lines))
    asked = {
        d.order_no: _ask(name, d.order_no)
        for d in report.differences
        if d.what == "missing_here" and d.kind == "payment"
    }
    in_write_transaction(lambda: _keep(name, day, report, kept))
    return Outcome(name, day, report, kept, asked)


def _ask(name: str, order_no: str) -> str:
    """Money only the provider has: the normal path asks it about the order (a verified answer,
    never the statement's word) and applies what it says, credit or review."""
    provider: Provider | None = get_provider(name)
    if provider is None:
        return "provider_unavailable"
    try:
        event = provider.query(order_no)
    except ProviderUnavailable:
        return "provider_unavailable"
    if event is None:
        return "not_paid_there"
    return in_write_transaction(lambda: apply_event(db.session, event))


def _keep(name: str, day: date, report: Report, kept: Path) -> None:
    for chunk in (report.named[i : i + 500] for i in range(0, len(report.named), 500)):
        payments = [o.reference for o in chunk if o.kind == "payment"]
        refunds = [o.reference for o in chunk if o.kind == "refund"]
        if payments:
            db.session.execute(
                update(PaymentEvent)
                .where(
                    PaymentEvent.provider == name,
                    PaymentEvent.kind == "paid",
                    PaymentEvent.provider_txn_id.in_(payments),
                )
                .values(statement_day=day)
            )
        if refunds:
            db.session.execute(update(Refund).where(Refund.refund_no.in_(refunds)).values(statement_day=day))
    db.session.execute(delete(Settlement).where(Settlement.provider == name, Settlement.day == day))
    db.session.add(
        Settlement(
            provider=name,
            day=day,
            matched=report.matched,
            missing_here=report.count("missing_here"),
            missing_there=report.count("missing_there"),
            amount_differs=report.count("amount_differs"),
            fees_fen=report.fees_fen,
            archive=str(kept),
            differences=json.dumps([asdict(d) for d in report.differences], ensure_ascii=False),
        )
    )
