"""What the billing tests share: they run on a plain Session, so they commit by hand."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


def write(s: Session, work: Callable[[], T]) -> T:
    """Run ``work`` and commit, or roll back and raise: one write transaction."""
    try:
        result = work()
        s.commit()
        return result
    except BaseException:
        s.rollback()
        raise
