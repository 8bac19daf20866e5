"""Promotions: which are running, what one recharge amount earns or costs under them, and how
their terms are drafted, approved, changed and ended.

Integer fen and basis points only, never float or Decimal: a percentage is rounded down to the
fen, so a promise never depends on how a float happened to round. The promotion applied to an
order is copied onto it as a snapshot, so a later edit or the end of the promotion changes no
order already made.

Two limits hold whatever a promotion says (``PromoCaps``, from HEYON_PROMO_MAX_BONUS_PERCENT and
HEYON_PROMO_MAX_DISCOUNT_PERCENT): a bonus is at most that percent of the amount paid, a discount
at most that percent of the amount. Terms beyond them are refused when they are written, and a
quote is clamped to the caps in force when it is made, so lowering the caps takes effect at once
even for promotions published before. Each order records the caps it was quoted under, and the
schema checks its figures against them.

Two people put terms in force: an editor (or the command line) drafts them and may ask for them
to be published; an admin who is not the last editor of those terms approves. A change to a
published promotion waits beside the live terms until it is approved or rejected. Ending or
unpublishing gives less away, and one person may do it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from heyon_site.billing.money import yuan
from heyon_site.database import DbSession
from heyon_site.models import PROMO_KINDS, Promotion, utcnow

BASIS = 10_000  # basis points in a whole: 1000 bp = 10 %


MAX_TITLE = 120  # the title columns' length


# The highest caps there can be: a bonus of more than the amount paid, or a discount of the whole
# amount (a payment of 0 is no payment), is never a promotion. The schema's CHECKs say the same.
HIGHEST_BONUS_CAP, HIGHEST_DISCOUNT_CAP = 100, 99


@dataclass(frozen=True)
class PromoCaps:
    """What any promotion may give, in whole percent: the bonus of the amount paid, the discount
    of the amount. Read from the configuration by the caller and passed in."""

    bonus_percent: int = 50
    discount_percent: int = 30

    def __post_init__(self) -> None:
        for name, value, highest in (
            ("bonus", self.bonus_percent, HIGHEST_BONUS_CAP),
            ("discount", self.discount_percent, HIGHEST_DISCOUNT_CAP),
        ):
            if type(value) is not int or not 0 <= value <= highest:
                raise ValueError(f"a {name} cap is a whole percent from 0 to {highest}, not {value!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PromoCaps:
        return cls(int(config["HEYON_PROMO_MAX_BONUS_PERCENT"]), int(config["HEYON_PROMO_MAX_DISCOUNT_PERCENT"]))

    def bonus_limit(self, pay_fen: int) -> int:
        """The largest bonus on a payment of ``pay_fen``, in whole fen."""
        return pay_fen * self.bonus_percent // 100

    def discount_limit(self, amount_fen: int) -> int:
        """The largest discount on an amount of ``amount_fen``, in whole fen."""
        return amount_fen * self.discount_percent // 100


@dataclass(frozen=True)
class Quote:
    """What an amount costs and earns: pay ``pay_fen``, receive ``amount_fen + bonus_fen``."""

    amount_fen: int  # face value, credited as the recharge entry
    pay_fen: int  # what the provider must report as paid
    bonus_fen: int  # credited as its own bonus entry
    promo: dict[str, Any] | None = None  # snapshot of the promotion applied, JSON-able
    # The caps the figures were held to; recorded on the order. Not part of what the offer *is*:
    # two quotes with the same figures are the same offer.
    caps: PromoCaps | None = field(default=None, compare=False)

    @classmethod
    def face_value(cls, amount_fen: int, caps: PromoCaps | None = None) -> Quote:
        """No promotion: pay the amount, receive the amount."""
        return cls(amount_fen, amount_fen, 0, None, caps)

    @property
    def credited_fen(self) -> int:
        return self.amount_fen + self.bonus_fen

    def snapshot_json(self) -> str | None:
        """The text stored in ``RechargeOrder.promo_snapshot``."""
        return None if self.promo is None else json.dumps(self.promo, ensure_ascii=False, sort_keys=True)


def active_promotions(s: DbSession, now: datetime) -> list[Promotion]:
    """Published promotions running at ``now`` (start inclusive, end exclusive), best first."""
    return list(
        s.scalars(
            select(Promotion)
            .where(Promotion.published.is_(True), Promotion.starts_at <= now, Promotion.ends_at > now)
            .order_by(Promotion.priority.desc(), Promotion.id)
        )
    )


def snapshot(promo: Promotion) -> dict[str, Any]:
    """Everything needed to explain later what was promised, whatever happens to the row."""
    return {
        "id": promo.id,
        "title_zh": promo.title_zh,
        "title_en": promo.title_en,
        "kind": promo.kind,
        "threshold_fen": promo.threshold_fen,
        "value_fen": promo.value_fen,
        "percent_bp": promo.percent_bp,
        "cap_fen": promo.cap_fen,
        "priority": promo.priority,
        "starts_at": promo.starts_at.isoformat(),
        "ends_at": promo.ends_at.isoformat(),
    }


def _applies(promo: Promotion, amount_fen: int, now: datetime) -> bool:
    # Checked here too, not only by the query: a list fetched earlier may hold one that has ended.
    return bool(promo.published) and promo.starts_at <= now < promo.ends_at and promo.threshold_fen <= amount_fen


def _benefit(promo: Promotion, amount_fen: int) -> int:
    """The bonus, or the discount, in whole fen: a percentage is rounded down, then capped."""
    raw = promo.value_fen if promo.kind == "fixed_bonus" else amount_fen * promo.percent_bp // BASIS
    return raw if promo.cap_fen is None else min(raw, promo.cap_fen)


def quote(amount_fen: int, promotions: Iterable[Promotion], now: datetime, *, caps: PromoCaps) -> Quote:
    """The terms for ``amount_fen``: the one applicable promotion of highest priority (the lower
    id on a tie) decides; promotions never stack. The benefit is held to ``caps``, whatever the
    promotion says: terms published under higher caps give no more than the caps in force."""
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise ValueError(f"an amount is a positive int of fen, not {amount_fen!r}")
    applicable = [p for p in promotions if _applies(p, amount_fen, now)]
    if not applicable:
        return Quote.face_value(amount_fen, caps)
    best = min(applicable, key=lambda p: (-p.priority, p.id))
    benefit = _benefit(best, amount_fen)
    if best.kind == "discount":
        discount = min(benefit, caps.discount_limit(amount_fen))
        # A payment of 0 is no payment a provider accepts (and the schema refuses it).
        return Quote(amount_fen, max(1, amount_fen - discount), 0, snapshot(best), caps)
    return Quote(amount_fen, amount_fen, min(benefit, caps.bonus_limit(amount_fen)), snapshot(best), caps)


def offer_version(promotions: Iterable[Promotion], caps: PromoCaps) -> str:
    """A short digest of the running promotions' terms and the caps they are held to. A page
    carries the version it was rendered with; an order made from a page of another version may
    carry terms the customer has not seen, so the customer confirms them first."""
    terms = [snapshot(p) for p in sorted(promotions, key=lambda p: p.id)]
    held = [caps.bonus_percent, caps.discount_percent]
    return hashlib.sha256(json.dumps([terms, held], sort_keys=True).encode()).hexdigest()[:16]


def quote_token(q: Quote) -> str:
    """The terms of one quote as the recharge form echoes them back: what was shown."""
    return f"{q.amount_fen}:{q.pay_fen}:{q.bonus_fen}"


def current_quote(s: DbSession, amount_fen: int, now: datetime | None = None, *, caps: PromoCaps) -> Quote:
    """The terms for ``amount_fen`` under the promotions running now."""
    now = now or utcnow()
    return quote(amount_fen, active_promotions(s, now), now, caps=caps)


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
    """A new promotion as an operator describes it (times already naive UTC). ``published``:
    the operator asks for it to be published (it is, once an admin approves)."""

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


# A promotion's terms, as a row or as a ``NewPromotion`` holds them.
Terms = NewPromotion | Promotion


def describe(t: Terms) -> str:
    """The terms in one line, e.g. ``percent_bonus 10% up to 20.00, from 100.00``."""
    size = yuan(t.value_fen or 0) if t.kind == "fixed_bonus" else yuan(t.percent_bp or 0).removesuffix(".00") + "%"
    cap = f" up to {yuan(t.cap_fen)}" if t.cap_fen is not None else ""
    return f"{t.kind} {size}{cap}, from {yuan(t.threshold_fen)}"


def _check_sense(t: NewPromotion) -> None:
    for message, title in (
        (N_("The Chinese title needs 1 to %(n)s characters."), t.title_zh),
        (N_("The English title needs 1 to %(n)s characters."), t.title_en),
    ):
        if not title.strip() or len(title) > MAX_TITLE:
            raise PromotionError(message, n=MAX_TITLE)
    if t.kind not in PROMO_KINDS:
        raise PromotionError(N_("The kind is one of %(kinds)s."), kinds=", ".join(PROMO_KINDS))
    # Each kind named in words: these messages reach the staff form as well as the command line.
    if t.kind == "fixed_bonus" and (not t.value_fen or t.percent_bp is not None or t.cap_fen is not None):
        raise PromotionError(N_("A fixed bonus needs a bonus above 0, and takes no percent and no cap."))
    if t.kind != "fixed_bonus" and (t.value_fen is not None or not t.percent_bp or t.percent_bp > BASIS):
        if t.kind == "discount":
            raise PromotionError(N_("A discount needs a percent above 0 and at most 100, and takes no bonus."))
        raise PromotionError(N_("A percentage bonus needs a percent above 0 and at most 100, and takes no bonus."))
    if t.cap_fen is not None and t.cap_fen <= 0:
        raise PromotionError(N_("A cap must be above 0."))
    if t.threshold_fen < 0:
        raise PromotionError(N_("The from amount cannot be negative."))
    if t.ends_at <= t.starts_at:
        raise PromotionError(N_("The end must be after the start."))


def over_the_caps(t: Terms, caps: PromoCaps) -> PromotionError | None:
    """Why these terms could give more than ``caps`` allow, or None.

    A percentage is judged by its rate. A fixed bonus is judged at the smallest amount it applies
    to, its from amount: the bonus is the same on every amount, so it is the largest share there.
    A fixed bonus from 0 is therefore always over any cap; it needs a from amount.
    """
    if t.kind == "discount":
        if (t.percent_bp or 0) > caps.discount_percent * 100:
            return PromotionError(
                N_("A discount is at most %(cap)s%% of the amount (HEYON_PROMO_MAX_DISCOUNT_PERCENT)."),
                cap=caps.discount_percent,
            )
        return None
    if t.kind == "percent_bonus":
        if (t.percent_bp or 0) > caps.bonus_percent * 100:
            return PromotionError(
                N_("A bonus is at most %(cap)s%% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT)."),
                cap=caps.bonus_percent,
            )
        return None
    value = t.value_fen or 0
    if value * 100 <= t.threshold_fen * caps.bonus_percent:
        return None
    if caps.bonus_percent == 0:
        return PromotionError(
            N_("A bonus is at most %(cap)s%% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT)."),
            cap=caps.bonus_percent,
        )
    least = -(-value * 100 // caps.bonus_percent)  # the ceiling, in whole fen
    return PromotionError(
        N_(
            "A bonus is at most %(cap)s%% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT): "
            "a bonus of %(bonus)s needs a from amount of at least %(least)s."
        ),
        cap=caps.bonus_percent,
        bonus=yuan(value),
        least=yuan(least),
    )


def check_terms(t: NewPromotion, caps: PromoCaps) -> None:
    """Refuse terms that make no sense or could give more than the caps allow."""
    _check_sense(t)
    problem = over_the_caps(t, caps)
    if problem is not None:
        raise problem
