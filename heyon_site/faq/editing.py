"""Changing the FAQ: each function is one change a member of staff makes, with its audit row, in
the caller's write transaction. The staff screens call them; they never read the request."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from heyon_site.extensions import db
from heyon_site.models import FaqEntry, utcnow
from heyon_site.ops.audit import Actor, changes, record


@dataclass(frozen=True)
class EntryFields:
    """What an editor types for one entry."""

    locale: str
    category: str
    question: str
    answer_md: str
    position: int
    published: bool


def _fields(entry: FaqEntry) -> dict[str, Any]:
    return {
        "locale": entry.locale,
        "category": entry.category,
        "question": entry.question,
        "answer_md": entry.answer_md,
        "position": entry.position,
        "published": bool(entry.published),
    }


def entries_by_locale(locales: tuple[str, ...]) -> dict[str, list[FaqEntry]]:
    """Every entry, published or not, per language in the editor's order."""
    grouped: dict[str, list[FaqEntry]] = {code: [] for code in locales}
    for entry in db.session.scalars(select(FaqEntry).order_by(FaqEntry.locale, FaqEntry.position, FaqEntry.id)):
        grouped.setdefault(entry.locale, []).append(entry)
    return grouped


def find_entry(entry_id: int) -> FaqEntry | None:
    return db.session.get(FaqEntry, entry_id, populate_existing=True)


def next_position() -> int:
    """Where a new entry goes: after every other."""
    return (db.session.scalar(select(func.max(FaqEntry.position))) or 0) + 10


def create_entry(actor: Actor, new: EntryFields) -> FaqEntry:
    now = utcnow()
    entry = FaqEntry(**asdict(new), created_at=now, updated_at=now)
    db.session.add(entry)
    db.session.flush()
    _, after = changes({}, _fields(entry))
    record(actor, "faq.create", f"faq {entry.id}", after=after)
    return entry


def save_entry(actor: Actor, entry_id: int, new: EntryFields) -> FaqEntry | None:
    """The entry with ``new`` in force (an audit row only when something changed); None when
    there is no such entry."""
    entry = find_entry(entry_id)
    if entry is None:
        return None
    before, after = _fields(entry), asdict(new)
    if after != before:
        for name, value in after.items():
            setattr(entry, name, value)
        entry.updated_at = utcnow()
        b, a = changes(before, after)
        record(actor, "faq.edit", f"faq {entry.id}", before=b, after=a)
    return entry


def set_published(actor: Actor, entry_id: int, published: bool) -> FaqEntry | None:
    entry = find_entry(entry_id)
    if entry is None:
        return None
    if bool(entry.published) != published:
        entry.published, entry.updated_at = published, utcnow()
        record(
            actor,
            "faq.publish" if published else "faq.unpublish",
            f"faq {entry.id}",
            before=f"published={not published}".lower(),
            after=f"published={published}".lower(),
        )
    return entry


def move_entry(actor: Actor, entry_id: int, direction: str) -> bool:
    """Swap places with the neighbour above (``up``) or below (``down``) in the same language;
    False when there is no such entry (already first or last is no change, and True)."""
    entry = find_entry(entry_id)
    if entry is None:
        return False
    rows = list(
        db.session.scalars(
            select(FaqEntry)
            .where(FaqEntry.locale == entry.locale)
            .order_by(FaqEntry.position, FaqEntry.id)
            .with_for_update()
        )
    )
    i = next(n for n, r in enumerate(rows) if r.id == entry_id)
    j = i - 1 if direction == "up" else i + 1
    if not 0 <= j < len(rows):
        return True  # already first or last: nothing changes, nothing to record
    a, b = rows[i], rows[j]
    before = f"faq {a.id} position={a.position}; faq {b.id} position={b.position}"
    if len({r.position for r in rows}) < len(rows):
        # Equal positions order by id, and swapping equals would change nothing: renumber first.
        for n, r in enumerate(rows):
            r.position = 10 * (n + 1)
    a.position, b.position = b.position, a.position
    a.updated_at = b.updated_at = utcnow()
    record(
        actor,
        f"faq.move_{direction}",
        f"faq {a.id}",
        before=before,
        after=f"faq {a.id} position={a.position}; faq {b.id} position={b.position}",
    )
    return True
