"""Promotions: which are running, what one recharge amount earns or costs under them, and the
operator's create and end.

Integer fen and basis points only, never float or Decimal: a percentage is rounded down to the
fen, so a promise never depends on how a float happened to round. The promotion applied to an
order is copied onto it as a snapshot, so a later edit or the end of the promotion changes no
order already made.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from ..extensions import db
from ..models import PROMO_KINDS, Promotion, utcnow

BASIS = 10_000  # basis points in a whole: 1000 bp = 10 %
MAX_TITLE = 120  # the title columns' length


@dataclass(frozen=True)
class Quote:
    """What an amount costs and earns: pay ``pay_fen``, receive ``amount_fen + bonus_fen``."""

    amount_fen: int  # face value, credited as the recharge entry
    pay_fen: int  # what the provider must report as paid
    bonus_fen: int  # credited as its own bonus entry
    promo: dict[str, Any] | None = None  # snapshot of the promotion applied, JSON-able

    @classmethod
    def face_value(cls, amount_fen: int) -> Quote:
        """No promotion: pay the amount, receive the amount."""
        return cls(amount_fen, amount_fen, 0)

    @property
    def credited_fen(self) -> int:
        return self.amount_fen + self.bonus_fen

    def snapshot_json(self) -> str | None:
        """The text stored in ``RechargeOrder.promo_snapshot``."""
        return None if self.promo is None else json.dumps(self.promo, ensure_ascii=False, sort_keys=True)


def active_promotions(now: datetime) -> list[Promotion]:
    """Published promotions running at ``now`` (start inclusive, end exclusive), best first."""
    return list(db.session.scalars(
        select(Promotion)
        .where(Promotion.published.is_(True), Promotion.starts_at <= now, Promotion.ends_at > now)
        .order_by(Promotion.priority.desc(), Promotion.id)
    ))


def snapshot(promo: Promotion) -> dict[str, Any]:
    """Everything needed to explain later what was promised, whatever happens to the row."""
    return {
        "id": promo.id, "title_zh": promo.title_zh, "title_en": promo.title_en, "kind": promo.kind,
        "threshold_fen": promo.threshold_fen, "value_fen": promo.value_fen, "percent_bp": promo.percent_bp,
        "cap_fen": promo.cap_fen, "priority": promo.priority,
        "starts_at": promo.starts_at.isoformat(), "ends_at": promo.ends_at.isoformat(),
    }


def _applies(promo: Promotion, amount_fen: int, now: datetime) -> bool:
    # Checked here too, not only by the query: a list fetched earlier may hold one that has ended.
    return bool(promo.published) and promo.starts_at <= now < promo.ends_at and promo.threshold_fen <= amount_fen


def _benefit(promo: Promotion, amount_fen: int) -> int:
    """The bonus, or the discount, in whole fen: a percentage is rounded down, then capped."""
    raw = promo.value_fen if promo.kind == "fixed_bonus" else amount_fen * promo.percent_bp // BASIS
    return raw if promo.cap_fen is None else min(raw, promo.cap_fen)


def quote(amount_fen: int, promotions: Iterable[Promotion], now: datetime) -> Quote:
    """The terms for ``amount_fen``: the one applicable promotion of highest priority (the lower
    id on a tie) decides; promotions never stack."""
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise ValueError(f"an amount is a positive int of fen, not {amount_fen!r}")
    applicable = [p for p in promotions if _applies(p, amount_fen, now)]
    if not applicable:
        return Quote.face_value(amount_fen)
    best = min(applicable, key=lambda p: (-p.priority, p.id))
    benefit = _benefit(best, amount_fen)
    if best.kind == "discount":
        # A payment of 0 is no payment a provider accepts (and the schema refuses it).
        return Quote(amount_fen, max(1, amount_fen - benefit), 0, snapshot(best))
    return Quote(amount_fen, amount_fen, benefit, snapshot(best))


def offer_version(promotions: Iterable[Promotion]) -> str:
    """A short digest of the running promotions' terms. A page carries the version it was
    rendered with; an order made from a page of another version may carry terms the customer
    has not seen, so the customer confirms them first."""
    terms = [snapshot(p) for p in sorted(promotions, key=lambda p: p.id)]
    return hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()[:16]


def quote_token(q: Quote) -> str:
    """The terms of one quote as the recharge form echoes them back: what was shown."""
    return f"{q.amount_fen}:{q.pay_fen}:{q.bonus_fen}"


def current_quote(amount_fen: int, now: datetime | None = None) -> Quote:
    """The terms for ``amount_fen`` under the promotions running now."""
    now = now or utcnow()
    return quote(amount_fen, active_promotions(now), now)


# ------------------------------------------------------------------ operators


def N_(message: str) -> str:
    """Marks a message for translation without translating it: billing knows no languages,
    the page that shows the error translates it (``gettext(e.message, **e.params)``)."""
    return message


class PromotionError(ValueError):
    """A promotion that would not make sense. ``str(e)`` is the English sentence for the CLI;
    ``message`` and ``params`` let a page say it in the reader's language."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params)
        self.message, self.params = message, params


@dataclass(frozen=True)
class NewPromotion:
    """A new promotion as an operator describes it (times already naive UTC)."""

    title_zh: str
    title_en: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    threshold_fen: int = 0
    value_fen: int | None = None
    percent_bp: int | None = None
    cap_fen: int | None = None
    priority: int = 0
    published: bool = False


def _check(t: NewPromotion) -> None:
    for message, title in ((N_("The Chinese title needs 1 to %(n)s characters."), t.title_zh),
                           (N_("The English title needs 1 to %(n)s characters."), t.title_en)):
        if not title.strip() or len(title) > MAX_TITLE:
            raise PromotionError(message, n=MAX_TITLE)
    if t.kind not in PROMO_KINDS:
        raise PromotionError(N_("The kind is one of %(kinds)s."), kinds=", ".join(PROMO_KINDS))
    if t.kind == "fixed_bonus" and (not t.value_fen or t.percent_bp is not None or t.cap_fen is not None):
        raise PromotionError(N_("A fixed_bonus needs a bonus above 0, and takes no percent and no cap."))
    if t.kind != "fixed_bonus" and (t.value_fen is not None or not t.percent_bp or t.percent_bp > BASIS):
        raise PromotionError(N_("A %(kind)s needs a percent above 0 and at most 100, and takes no bonus."), kind=t.kind)
    if t.cap_fen is not None and t.cap_fen <= 0:
        raise PromotionError(N_("A cap must be above 0."))
    if t.threshold_fen < 0:
        raise PromotionError(N_("The from amount cannot be negative."))
    if t.ends_at <= t.starts_at:
        raise PromotionError(N_("The end must be after the start."))


def create_promotion(new: NewPromotion, now: datetime | None = None) -> Promotion:
    """Add a promotion after checking its terms make sense; the caller commits."""
    _check(new)
    now = now or utcnow()
    promo = Promotion(
        title_zh=new.title_zh.strip(), title_en=new.title_en.strip(), kind=new.kind,
        threshold_fen=new.threshold_fen, value_fen=new.value_fen or 0, percent_bp=new.percent_bp or 0,
        cap_fen=new.cap_fen, starts_at=new.starts_at, ends_at=new.ends_at, priority=new.priority,
        published=new.published, created_at=now, updated_at=now,
    )
    db.session.add(promo)
    db.session.flush()
    return promo


def end_promotion(promo_id: int, now: datetime | None = None) -> str:
    """End a promotion now: ``ended``, ``withdrawn`` (it had not started: unpublished instead,
    since an end before its start is no window), ``already_ended`` or ``unknown``. Orders made
    under it keep their snapshot."""
    now = now or utcnow()
    promo = db.session.get(Promotion, promo_id)
    if promo is None:
        return "unknown"
    if promo.ends_at <= now:
        return "already_ended"
    values: dict[str, Any] = {"ends_at": now} if promo.starts_at < now else {"published": False}
    db.session.execute(update(Promotion).where(Promotion.id == promo_id).values(updated_at=now, **values))
    return "ended" if "ends_at" in values else "withdrawn"


def update_promotion(promo_id: int, new: NewPromotion, now: datetime | None = None) -> Promotion | None:
    """Change a promotion's terms after the same checks as ``create_promotion``; the caller
    commits. Orders already made keep their snapshot, so nothing already promised changes.
    ``None`` when there is no such promotion."""
    _check(new)
    promo = db.session.get(Promotion, promo_id)
    if promo is None:
        return None
    promo.title_zh, promo.title_en, promo.kind = new.title_zh.strip(), new.title_en.strip(), new.kind
    promo.threshold_fen, promo.value_fen, promo.percent_bp = new.threshold_fen, new.value_fen or 0, new.percent_bp or 0
    promo.cap_fen, promo.starts_at, promo.ends_at = new.cap_fen, new.starts_at, new.ends_at
    promo.priority, promo.published, promo.updated_at = new.priority, new.published, now or utcnow()
    db.session.flush()
    return promo
