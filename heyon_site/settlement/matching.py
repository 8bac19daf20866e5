"""Matching a provider's statement lines against our payments and refunds: plain functions of
plain values, so every rule is tested without a provider or a database.

A payment is the same on both sides when its order number and the provider's transaction id
agree; a refund when our refund number agrees (or, for a refund the provider does not echo our
number for, its own refund id). Then the amounts must agree to the fen. What only the provider
has is "missing here" (money we never recorded: the caller asks the provider through the normal
query, which credits it or sends it to review); what only we have is "missing there".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from heyon_site.providers.base import StatementLine

What = Literal["missing_here", "missing_there", "amount_differs"]


@dataclass(frozen=True)
class Ours:
    """A payment or a refund in our books, as a statement line would name it."""

    kind: Literal["payment", "refund"]
    order_no: str
    reference: str  # the provider's transaction id (payment) or our refund number (refund)
    amount_fen: int
    #: Inside the statement's day. Ours from just outside it are matched (a payment at 23:59:59
    #: may be on either day's statement) but never counted missing.
    in_day: bool = True
    provider_refund_id: str | None = None


@dataclass(frozen=True)
class Difference:
    what: What
    kind: str
    order_no: str
    reference: str
    ours_fen: int | None
    theirs_fen: int | None


@dataclass
class Report:
    matched: int = 0
    fees_fen: int = 0
    differences: list[Difference] = field(default_factory=list)
    #: Ours that the statement named (matched, or with another amount): they belong to its day.
    named: list[Ours] = field(default_factory=list)

    def count(self, what: What) -> int:
        return sum(1 for d in self.differences if d.what == what)

    @property
    def clean(self) -> bool:
        return not self.differences


def _key(kind: str, order_no: str, reference: str) -> tuple[str, str, str]:
    return kind, order_no, reference


def match(theirs: Iterable[StatementLine], ours: Iterable[Ours]) -> Report:
    report = Report()
    book: dict[tuple[str, str, str], Ours] = {}
    by_refund_id: dict[str, Ours] = {}
    for item in ours:
        book[_key(item.kind, item.order_no, item.reference)] = item
        if item.provider_refund_id:
            by_refund_id[item.provider_refund_id] = item
    seen: set[tuple[str, str, str]] = set()
    for line in theirs:
        report.fees_fen += line.fee_fen
        if line.kind == "payment":
            reference = line.txn_id
            found = book.get(_key("payment", line.order_no, reference))
        else:
            reference = line.refund_no or line.refund_id or ""
            found = book.get(_key("refund", line.order_no, line.refund_no or "")) if line.refund_no else None
            if found is None and line.refund_id:
                found = by_refund_id.get(line.refund_id)
        if found is None:
            report.differences.append(
                Difference("missing_here", line.kind, line.order_no, reference, None, line.amount_fen)
            )
            continue
        seen.add(_key(found.kind, found.order_no, found.reference))
        report.named.append(found)
        if found.amount_fen != line.amount_fen:
            report.differences.append(
                Difference("amount_differs", line.kind, line.order_no, reference, found.amount_fen, line.amount_fen)
            )
        else:
            report.matched += 1
    for key, item in book.items():
        if key not in seen and item.in_day:
            report.differences.append(
                Difference("missing_there", item.kind, item.order_no, item.reference, item.amount_fen, None)
            )
    return report
