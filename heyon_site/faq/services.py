"""The FAQ as customers read it, and the starter set. Plain functions: no request, no templates."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy import func, or_, select

from heyon_site.extensions import db
from heyon_site.faq.markdown import render_markdown
from heyon_site.models import FaqEntry

MAX_QUERY = 100


@dataclass(frozen=True)
class Answer:
    question: str
    answer: Markup  # sanitised HTML


@dataclass(frozen=True)
class Section:
    category: str
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class StarterEntry:
    category: str
    question: str
    answer_md: str


def clean_query(text: str) -> str:
    """What a search box sent, made safe to search for: control characters become spaces
    (PostgreSQL refuses a NUL in text), runs of spaces one, and the length is capped."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return " ".join(text.split())[:MAX_QUERY].strip()


def sections(locale: str, query: str = "") -> list[Section]:
    """Published entries of one language, by category, each category where its first entry is."""
    stmt = (
        select(FaqEntry).where(FaqEntry.locale == locale, FaqEntry.published).order_by(FaqEntry.position, FaqEntry.id)
    )
    if query:
        # autoescape: the customer's % and _ are literal characters, not LIKE wildcards.
        stmt = stmt.where(
            or_(
                FaqEntry.question.icontains(query, autoescape=True),
                FaqEntry.answer_md.icontains(query, autoescape=True),
            )
        )
    grouped: dict[str, list[Answer]] = {}
    for entry in db.session.scalars(stmt):
        grouped.setdefault(entry.category, []).append(Answer(entry.question, render_markdown(entry.answer_md)))
    return [Section(category, tuple(answers)) for category, answers in grouped.items()]


def seed(locale: str, entries: Iterable[StarterEntry]) -> int:
    """Add ``entries`` in ``locale`` unless that language has any entry already (staff may have
    edited or unpublished the starter: it is never added twice). Returns how many were added."""
    if db.session.scalar(select(func.count()).select_from(FaqEntry).where(FaqEntry.locale == locale)):
        return 0
    rows = [
        FaqEntry(locale=locale, category=e.category, question=e.question, answer_md=e.answer_md, position=10 * (i + 1))
        for i, e in enumerate(entries)
    ]
    db.session.add_all(rows)
    db.session.flush()
    return len(rows)
