"""Changing promotions: each function is one change (by an editor's or admin's screen, or
`flask promos`), the step of its life (``lifecycle``) and its audit row, in the caller's write
transaction. They never read the request: the caller passes the ``Actor``, the caps in force and
the site's zone (audit rows show times as staff read them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from heyon_site import sitetime
from heyon_site.billing.promos import NewPromotion, PromoCaps, Terms, describe
from heyon_site.extensions import db
from heyon_site.models import Promotion, utcnow
from heyon_site.ops.audit import Actor, changes, record
from heyon_site.promos import lifecycle

# What each outcome of saving the form is called in the audit log.
SAVED = {
    "edited": "promo.edit",
    "unpublished": "promo.unpublish",
    "changes_requested": "promo.change_request",
    "changes_withdrawn": "promo.change_withdraw",
}


def _editor(actor: Actor) -> lifecycle.Editor:
    return lifecycle.Editor(actor.staff_id, actor.username)


def _term_fields(t: Terms, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "title_zh": t.title_zh.strip(),
        "title_en": t.title_en.strip(),
        "terms": describe(t),
        "starts": sitetime.shown(t.starts_at, tz),
        "ends": sitetime.shown(t.ends_at, tz),
        "priority": t.priority,
    }


def _fields(promo: Promotion, tz: ZoneInfo) -> dict[str, Any]:
    change = lifecycle.pending_terms(promo)
    return {
        **_term_fields(promo, tz),
        "state": lifecycle.state(promo, utcnow()),
        "changes": change and describe(change),
    }


def _row(promo_id: int) -> Promotion | None:
    return db.session.get(Promotion, promo_id, populate_existing=True)


def create(actor: Actor, new: NewPromotion, caps: PromoCaps, tz: ZoneInfo, now: datetime | None = None) -> Promotion:
    """A draft (asking for publication when ``new.published``); raises PromotionError."""
    promo = lifecycle.create_promotion(new, caps, _editor(actor), now)
    _, after = changes({}, {k: v for k, v in _fields(promo, tz).items() if v is not None})
    record(actor, "promo.create", f"promotion {promo.id}", after=after)
    return promo


def save(actor: Actor, promo_id: int, new: NewPromotion, caps: PromoCaps, tz: ZoneInfo) -> str | None:
    """The edit form's terms: in force at once on a draft, waiting for approval on a published
    promotion. The outcome, or None when there is no such promotion; raises PromotionError."""
    row = _row(promo_id)
    if row is None:
        return None
    before, live = _fields(row, tz), _term_fields(row, tz)
    outcome = lifecycle.update_promotion(promo_id, new, caps, _editor(actor))
    if outcome not in SAVED:
        return outcome
    saved = _row(promo_id)
    assert saved is not None
    change = lifecycle.pending_terms(saved)
    # A waiting change is recorded as what it would change in the live terms.
    b, a = (
        changes(live, _term_fields(change, tz))
        if outcome == "changes_requested" and change
        else changes(before, _fields(saved, tz))
    )
    record(
        actor, SAVED[outcome], f"promotion {promo_id}", before=b, after=f"{a} ({outcome})" if outcome != "edited" else a
    )
    return outcome


def _step(actor: Actor, promo_id: int, tz: ZoneInfo, outcome: str, action: str | None, before: dict[str, Any]) -> str:
    """The audit row of a button's step, when it changed something (``action`` is not None)."""
    if action is not None:
        saved = _row(promo_id)
        assert saved is not None
        b, a = changes(before, _fields(saved, tz))
        record(actor, action, f"promotion {promo_id}", before=b, after=f"{a} ({outcome})")
    return outcome


def _button(actor: Actor, promo_id: int, tz: ZoneInfo, step: Any, actions: dict[str, str]) -> str:
    row = _row(promo_id)
    if row is None:
        return "unknown"
    before = _fields(row, tz)
    outcome = step(promo_id)
    return _step(actor, promo_id, tz, outcome, actions.get(outcome), before)


def request_publication(actor: Actor, promo_id: int, tz: ZoneInfo) -> str:
    """Ask for publication: an admin who did not edit the terms last approves it."""
    return _button(actor, promo_id, tz, lifecycle.request_publication, {"requested": "promo.publish_request"})


def unpublish(actor: Actor, promo_id: int, tz: ZoneInfo) -> str:
    """Take it off, or withdraw the request to publish it: less given away, one person may."""
    return _button(
        actor, promo_id, tz, lifecycle.unpublish, {"unpublished": "promo.unpublish", "withdrawn": "promo.unpublish"}
    )


def end(actor: Actor, promo_id: int, tz: ZoneInfo) -> str:
    """End it now (one that has not started is withdrawn instead); orders keep their terms."""
    return _button(actor, promo_id, tz, lifecycle.end_promotion, {"ended": "promo.end", "withdrawn": "promo.end"})


def reject(actor: Actor, promo_id: int, tz: ZoneInfo) -> str:
    """Turn down a publication or a change: nothing more is given away, so any admin may."""
    return _button(
        actor,
        promo_id,
        tz,
        lifecycle.reject,
        {"publication_rejected": "promo.reject", "changes_rejected": "promo.reject"},
    )


def approve(actor: Actor, promo_id: int, caps: PromoCaps, digest: str, tz: ZoneInfo) -> str:
    """The second person: publish a draft, or put a waiting change in force. Raises SameEditor,
    NothingToApprove, or PromotionError (terms over caps lowered since they were written)."""
    row = _row(promo_id)
    if row is None:
        raise lifecycle.NothingToApprove("no such promotion")
    before, live, change = _fields(row, tz), _term_fields(row, tz), lifecycle.pending_terms(row)
    outcome = lifecycle.approve(promo_id, caps, _editor(actor), digest)
    saved = _row(promo_id)
    assert saved is not None
    b, a = changes(live, _term_fields(saved, tz)) if change else changes(before, _fields(saved, tz))
    record(
        actor,
        "promo.publish" if outcome == "published" else "promo.change_approve",
        f"promotion {promo_id}",
        before=b,
        after=f"{a} ({outcome}; edited by {saved.edited_by or '-'})",
    )
    return outcome
