"""A promotion's life: drafted, asked for, approved by a second person (or rejected), changed under
approval, unpublished or ended. Each step is a plain function the staff screens and `flask promos`
share; the caller checks the role, commits and audits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from heyon_site.billing.promos import N_, NewPromotion, PromoCaps, PromotionError, check_terms
from heyon_site.extensions import db
from heyon_site.models import Promotion, utcnow


class SameEditor(PromotionError):
    """The approver edited the terms last: a second person must approve them."""


class NothingToApprove(PromotionError):
    """No publication asked for and no change waiting, or not the terms the approver was shown."""


@dataclass(frozen=True)
class Editor:
    """Who changes a promotion: a member of staff, or the command line (an editor of its own,
    never the same person as any staff account for the two-person rule)."""

    staff_id: int | None
    name: str


COMMAND_LINE = Editor(None, "(command line)")  # as the audit log names it


def _terms(t: NewPromotion | Promotion) -> dict[str, Any]:
    """The terms as stored, comparable and JSON-able: what an approval puts in force."""
    return {
        "title_zh": t.title_zh.strip(),
        "title_en": t.title_en.strip(),
        "kind": t.kind,
        "threshold_fen": t.threshold_fen,
        "value_fen": t.value_fen or 0,
        "percent_bp": t.percent_bp or 0,
        "cap_fen": t.cap_fen,
        "priority": t.priority,
        "starts_at": t.starts_at.isoformat(),
        "ends_at": t.ends_at.isoformat(),
    }


def _as_new(terms: Mapping[str, Any], published: bool) -> NewPromotion:
    fixed = terms["kind"] == "fixed_bonus"
    return NewPromotion(
        title_zh=terms["title_zh"],
        title_en=terms["title_en"],
        kind=terms["kind"],
        starts_at=datetime.fromisoformat(terms["starts_at"]),
        ends_at=datetime.fromisoformat(terms["ends_at"]),
        threshold_fen=terms["threshold_fen"],
        value_fen=terms["value_fen"] if fixed else None,
        percent_bp=None if fixed else terms["percent_bp"],
        cap_fen=terms["cap_fen"],
        priority=terms["priority"],
        published=published,
    )


def live_terms(promo: Promotion) -> NewPromotion:
    return _as_new(_terms(promo), bool(promo.published or promo.publish_requested))


def pending_terms(promo: Promotion) -> NewPromotion | None:
    """The change waiting for approval on a published promotion, if any."""
    return None if promo.pending_terms is None else _as_new(json.loads(promo.pending_terms), True)


def live_state(promo: Promotion, now: datetime) -> str:
    """``draft``, ``awaiting approval`` (its publication), ``scheduled``, ``running`` or ``ended``."""
    if not promo.published:
        return "awaiting approval" if promo.publish_requested else "draft"
    return "scheduled" if now < promo.starts_at else "ended" if now >= promo.ends_at else "running"


def state(promo: Promotion, now: datetime) -> str:
    """The live state, with ``(changes awaiting approval)`` when a change waits beside it."""
    live = live_state(promo, now)
    return f"{live} (changes awaiting approval)" if promo.pending_terms is not None else live


def awaiting(promo: Promotion) -> tuple[str, int | None] | None:
    """What waits for an admin: ``("publication", last editor)`` or ``("changes", their editor)``."""
    if promo.pending_terms is not None:
        return "changes", promo.pending_by_id
    if promo.publish_requested and not promo.published:
        return "publication", promo.edited_by_id
    return None


def may_approve(promo: Promotion, staff_id: int) -> bool:
    """Something waits, and ``staff_id`` did not write it (the role is the caller's to check)."""
    waiting = awaiting(promo)
    return waiting is not None and waiting[1] != staff_id


def approval_digest(promo: Promotion) -> str | None:
    """Names exactly what an approval would put in force: the approve button carries it, so an
    admin never approves terms someone changed after the page was shown."""
    waiting = awaiting(promo)
    if waiting is None:
        return None
    # "changes" waits exactly when pending_terms is set (awaiting).
    terms = json.loads(cast(str, promo.pending_terms)) if waiting[0] == "changes" else _terms(promo)
    text = json.dumps(
        {"what": waiting[0], "id": promo.id, "by": waiting[1], **terms}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _locked(promo_id: int) -> Promotion | None:
    # The row lock makes concurrent approvals and edits of one promotion take turns on PostgreSQL;
    # SQLite has one writer at a time anyway (the caller's write transaction).
    return db.session.get(Promotion, promo_id, populate_existing=True, with_for_update=True)


def _set_terms(promo: Promotion, t: NewPromotion) -> None:
    promo.title_zh, promo.title_en, promo.kind = t.title_zh.strip(), t.title_en.strip(), t.kind
    promo.threshold_fen, promo.value_fen, promo.percent_bp = t.threshold_fen, t.value_fen or 0, t.percent_bp or 0
    promo.cap_fen, promo.starts_at, promo.ends_at, promo.priority = t.cap_fen, t.starts_at, t.ends_at, t.priority


def _drop_pending(promo: Promotion) -> None:
    promo.pending_terms, promo.pending_by_id, promo.pending_by, promo.pending_at = None, None, None, None


def create_promotion(new: NewPromotion, caps: PromoCaps, by: Editor, now: datetime | None = None) -> Promotion:
    """Add a draft after checking its terms; ``new.published`` asks for it to be published
    (an admin other than ``by`` approves). The caller commits and audits."""
    check_terms(new, caps)
    now = now or utcnow()
    promo = Promotion(
        published=False,
        publish_requested=new.published,
        edited_by_id=by.staff_id,
        edited_by=by.name[:64],
        created_at=now,
        updated_at=now,
    )
    _set_terms(promo, new)
    db.session.add(promo)
    db.session.flush()
    return promo


def update_promotion(
    promo_id: int, new: NewPromotion, caps: PromoCaps, by: Editor, now: datetime | None = None
) -> str | None:
    """Save what an editor typed, after the same checks as ``create_promotion``; the caller
    commits. Orders already made keep their snapshot. ``None`` when there is no such promotion,
    else what happened:

    - a draft is edited in place (``edited``), its publication asked for or withdrawn by
      ``new.published``; ``unchanged`` if nothing differs;
    - a published promotion keeps its live terms: different terms wait for approval
      (``changes_requested``); its own live terms drop a waiting change (``changes_withdrawn``);
    - a published promotion saved as not published becomes a draft of the terms typed
      (``unpublished``), which gives less away and needs nobody else.
    """
    check_terms(new, caps)
    now = now or utcnow()
    promo = _locked(promo_id)
    if promo is None:
        return None
    typed, live = _terms(new), _terms(promo)
    if promo.published and new.published:
        if typed == live:
            if promo.pending_terms is None:
                return "unchanged"
            _drop_pending(promo)
            promo.updated_at = now
            db.session.flush()
            return "changes_withdrawn"
        if promo.pending_terms is not None and json.loads(promo.pending_terms) == typed:
            return "unchanged"  # the same change again: its editor stays who wrote it
        promo.pending_terms = json.dumps(typed, ensure_ascii=False, sort_keys=True)
        promo.pending_by_id, promo.pending_by, promo.pending_at, promo.updated_at = by.staff_id, by.name[:64], now, now
        db.session.flush()
        return "changes_requested"
    outcome = "unpublished" if promo.published else "edited"
    if outcome == "edited" and typed == live and bool(promo.publish_requested) == new.published:
        return "unchanged"
    if typed != live:
        _set_terms(promo, new)
        promo.edited_by_id, promo.edited_by = by.staff_id, by.name[:64]
    _drop_pending(promo)
    promo.published, promo.publish_requested, promo.updated_at = False, new.published, now
    db.session.flush()
    return outcome


def request_publication(promo_id: int, now: datetime | None = None) -> str:
    """Ask for a draft to be published: ``requested``, ``already`` (asked, or published) or ``unknown``."""
    promo = _locked(promo_id)
    if promo is None:
        return "unknown"
    if promo.published or promo.publish_requested:
        return "already"
    promo.publish_requested, promo.updated_at = True, now or utcnow()
    db.session.flush()
    return "requested"


def approve(promo_id: int, caps: PromoCaps, by: Editor, digest: str, now: datetime | None = None) -> str:
    """An admin's approval of what waits: ``published`` (a draft's publication) or
    ``changes_approved`` (a change now in force; its editor becomes the last editor of the live
    terms). Raises ``SameEditor`` when ``by`` wrote those terms, ``NothingToApprove`` when nothing
    waits or it is not what ``digest`` names, and ``PromotionError`` when the terms are over the
    caps in force (lowered since they were written). The caller checks the role, commits, audits."""
    promo = _locked(promo_id)
    waiting = None if promo is None else awaiting(promo)
    if promo is None or waiting is None or approval_digest(promo) != digest:
        raise NothingToApprove(
            N_("These terms changed or were approved or withdrawn since the page was shown: look at them again.")
        )
    if by.staff_id is None or waiting[1] == by.staff_id:
        raise SameEditor(N_("You edited these terms last: another admin must approve them."))
    now = now or utcnow()
    if waiting[0] == "publication":
        check_terms(live_terms(promo), caps)
        promo.published, promo.publish_requested, promo.updated_at = True, False, now
        db.session.flush()
        return "published"
    change = pending_terms(promo)
    assert change is not None
    check_terms(change, caps)
    _set_terms(promo, change)
    promo.edited_by_id, promo.edited_by = promo.pending_by_id, promo.pending_by
    _drop_pending(promo)
    promo.updated_at = now
    db.session.flush()
    return "changes_approved"


def reject(promo_id: int, now: datetime | None = None) -> str:
    """Turn down what waits, which gives nothing away: ``publication_rejected`` (the draft
    stays a draft), ``changes_rejected`` (the live terms stay), ``nothing`` or ``unknown``."""
    promo = _locked(promo_id)
    if promo is None:
        return "unknown"
    waiting = awaiting(promo)
    if waiting is None:
        return "nothing"
    if waiting[0] == "changes":
        _drop_pending(promo)
    else:
        promo.publish_requested = False
    promo.updated_at = now or utcnow()
    db.session.flush()
    return "changes_rejected" if waiting[0] == "changes" else "publication_rejected"


def unpublish(promo_id: int, now: datetime | None = None) -> str:
    """Take a promotion off (``unpublished``, any waiting change dropped), or withdraw the request
    to publish a draft (``withdrawn``); ``unchanged`` for a plain draft, ``unknown``. One person may."""
    promo = _locked(promo_id)
    if promo is None:
        return "unknown"
    if not promo.published and not promo.publish_requested:
        return "unchanged"
    outcome = "unpublished" if promo.published else "withdrawn"
    _drop_pending(promo)
    promo.published, promo.publish_requested, promo.updated_at = False, False, now or utcnow()
    db.session.flush()
    return outcome


def end_promotion(promo_id: int, now: datetime | None = None) -> str:
    """End a promotion now: ``ended``, ``withdrawn`` (it had not started: unpublished instead,
    since an end before its start is no window), ``already_ended`` or ``unknown``. Orders made
    under it keep their snapshot; a change waiting for approval is dropped with it."""
    now = now or utcnow()
    promo = _locked(promo_id)
    if promo is None:
        return "unknown"
    if promo.ends_at <= now:
        return "already_ended"
    _drop_pending(promo)
    promo.publish_requested, promo.updated_at = False, now
    if promo.starts_at < now:
        promo.ends_at = now
    else:
        promo.published = False
    db.session.flush()
    return "ended" if promo.ends_at == now else "withdrawn"
