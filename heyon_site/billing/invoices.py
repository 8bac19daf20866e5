"""Invoices (发票) of credited orders: requested by the customer, issued by staff on the tax
platform, whose PDF is kept here and handed to the customer.

This site issues nothing and computes no tax: it records who the invoice is for, checks the
buyer's tax id by its check character, stores the PDF staff bring back from the tax platform and
tells the customer by e-mail. One request per order (the unique ``order_id``); it moves once,
from ``requested`` to ``issued`` or ``refused``, by a conditional update.

Every function runs inside the caller's write transaction and never reads a request.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from heyon_site.billing.notices import enqueue
from heyon_site.billing.refunds import N_
from heyon_site.database import DbSession, insert_unless_there, rowcount
from heyon_site.models import INVOICE_BUYERS, INVOICE_STATES, InvoiceRequest, RechargeOrder, utcnow

#: The outbox template of "your invoice is ready" (outbox/templates.py words it). E-mail only, so
#: it is not one of ``notices.TEMPLATES``, which every SMS provider must have registered.
INVOICE_ISSUED = "invoice_issued"
MAX_NAME = 200
MAX_EMAIL = 254
MAX_REASON = 500
#: A personal invoice's buyer, as the tax platform spells it when no name is given.
PERSONAL = "个人"

# GB 32100-2015, the unified social credit code (统一社会信用代码): 18 characters of these 31
# (the digits and the capitals but I, O, S, V, Z), the last a check character over the first 17
# with the weights 3**i mod 31.
CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# What the tax platform's PDF starts with, and ends with (a trailer within its last KiB).
PDF_START = b"%PDF-"
PDF_END = b"%%EOF"
PDF_TAIL = 1024


class InvoiceError(ValueError):
    """A request or decision that cannot be taken. ``str(e)`` is the English sentence for the CLI;
    ``message`` and ``params`` let a page say it in the reader's language."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params)
        self.message, self.params = message, params


def normalise_tax_id(text: str) -> str | None:
    """The code as kept (18 capitals and digits), or None when its check character is wrong.
    Full-width characters, lower case and spaces, as people type them, are accepted."""
    code = "".join(unicodedata.normalize("NFKC", text or "").upper().split())
    if len(code) != 18 or any(c not in CODE_CHARS for c in code):
        return None
    total = sum(CODE_CHARS.index(c) * w for c, w in zip(code[:17], _WEIGHTS, strict=True))
    check = (31 - total % 31) % 31
    return code if CODE_CHARS[check] == code[17] else None


def tax_id_valid(text: str) -> bool:
    return normalise_tax_id(text) is not None


def not_a_pdf(data: bytes) -> bool:
    """Judged by the content, never by a file name or a declared type: a PDF starts with
    ``%PDF-`` and ends with ``%%EOF`` (some writers add a line or padding after it)."""
    return not data.startswith(PDF_START) or PDF_END not in data[-PDF_TAIL:]


def size_text(n: int) -> str:
    """A size as people read it: "5 MB", "300 KB", "50 B"."""
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + " " + unit
    return f"{n} B"


def pdf_problem(data: bytes, max_bytes: int) -> str | None:
    """Why ``data`` cannot be an invoice's PDF, or None: a message to translate where it is shown,
    with ``%(size)s`` (the limit, ``size_text(max_bytes)``) to fill in."""
    if not data:
        return N_("Choose the PDF file of the invoice.")
    if len(data) > max_bytes:
        return N_("That file is too large: an invoice's PDF is at most %(size)s.")
    if not_a_pdf(data):
        return N_("That file is not a PDF. Upload the PDF the tax platform produced.")
    return None


def of_order(s: DbSession, order_id: int) -> InvoiceRequest | None:
    """The order's invoice request, if any (its PDF is not read)."""
    return s.scalar(
        select(InvoiceRequest).where(InvoiceRequest.order_id == order_id).execution_options(populate_existing=True)
    )


def request_invoice(
    s: DbSession,
    order_id: int,
    buyer_kind: str,
    buyer_name: str,
    tax_id: str | None,
    email: str,
    now: datetime | None = None,
) -> int:
    """Record the customer's request for an invoice of a credited order; its id. A company gives
    its tax id; a person's invoice is for ``PERSONAL`` unless a name is given."""
    order = s.get(RechargeOrder, order_id, populate_existing=True)
    if order is None or order.status != "credited":
        raise InvoiceError(N_("An invoice can be requested only for a credited order."))
    if buyer_kind not in INVOICE_BUYERS:
        raise InvoiceError(N_("Choose a personal or a company invoice."))
    name = " ".join((buyer_name or "").split()) or (PERSONAL if buyer_kind == "personal" else "")
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvoiceError(N_("Give the buyer's name, as it is registered (at most %(n)s characters)."), n=MAX_NAME)
    code = None
    if buyer_kind == "company":
        code = normalise_tax_id(tax_id or "")
        if code is None:
            raise InvoiceError(N_("That is not a valid unified social credit code: check its 18 characters."))
    if "@" not in (email or "") or len(email) > MAX_EMAIL:
        raise InvoiceError(N_("Give the e-mail address the invoice goes to."))
    # The unique order_id decides between two requests sent at once: the second inserts nothing.
    added = s.execute(
        insert_unless_there(s, InvoiceRequest, ("order_id",)),
        {
            "order_id": order_id,
            "buyer_kind": buyer_kind,
            "buyer_name": name,
            "tax_id": code,
            "email": email,
            "state": "requested",
            "requested_at": now or utcnow(),
        },
    ).scalar_one_or_none()
    if added is None:
        raise InvoiceError(N_("An invoice was requested for this order already: one invoice per order."))
    return int(added)


def _decide(s: DbSession, request_id: int, **values: object) -> InvoiceRequest:
    moved = s.execute(
        update(InvoiceRequest)
        .where(InvoiceRequest.id == request_id, InvoiceRequest.state == "requested")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    found = s.get(InvoiceRequest, request_id, populate_existing=True)
    if found is None:
        raise InvoiceError(N_("There is no such invoice request."))
    if rowcount(moved) != 1:
        raise InvoiceError(N_("This invoice request was issued or refused already."))
    return found


def issue(
    s: DbSession,
    request_id: int,
    pdf: bytes,
    by: str,
    now: datetime | None = None,
    *,
    order_link: Callable[[str], str],
) -> str:
    """Keep the tax platform's PDF with the request, now issued, and write the e-mail that tells
    the customer, in the same transaction. ``order_link`` makes the order page's address from the
    order's token (the caller knows the site's address). Returns the order number."""
    if not_a_pdf(pdf):
        raise InvoiceError(N_("That file is not a PDF. Upload the PDF the tax platform produced."))
    now = now or utcnow()
    found = _decide(
        s,
        request_id,
        state="issued",
        pdf=pdf,
        pdf_size=len(pdf),
        pdf_sha256=hashlib.sha256(pdf).hexdigest(),
        decided_at=now,
        decided_by=by[:64],
    )
    order = s.get(RechargeOrder, found.order_id)
    assert order is not None  # a foreign key
    params = {"order_no": order.order_no, "link": order_link(order.token)}
    key = f"invoice:{request_id}:issued:email"
    enqueue(s, key, "email", found.email, INVOICE_ISSUED, params, order.locale, order.card_id, now)
    return order.order_no


def refuse(s: DbSession, request_id: int, reason: str, by: str, now: datetime | None = None) -> str:
    """Refuse the request with a reason the customer reads on the order page; the order number."""
    text = " ".join((reason or "").split())
    if not text:
        raise InvoiceError(N_("Say why: the customer reads the reason on the order page."))
    if len(text) > MAX_REASON:
        raise InvoiceError(N_("The reason is at most %(n)s characters."), n=MAX_REASON)
    found = _decide(s, request_id, state="refused", refusal_reason=text, decided_at=now or utcnow(), decided_by=by[:64])
    order_no = s.scalar(select(RechargeOrder.order_no).where(RechargeOrder.id == found.order_id))
    assert order_no is not None
    return order_no


@dataclass(frozen=True)
class Queued:
    """A request as staff see it in the queue, with its order."""

    request: InvoiceRequest
    order_no: str
    paid_fen: int


def queue(s: DbSession, state: str | None = None, limit: int = 200) -> Sequence[Queued]:
    """Requests to act on first, oldest first; then the decided ones, latest decision first.
    ``state``: only those in it."""
    if state is not None and state not in INVOICE_STATES:
        return []
    base = select(InvoiceRequest, RechargeOrder.order_no, RechargeOrder.pay_fen).join(
        RechargeOrder, RechargeOrder.id == InvoiceRequest.order_id
    )
    waiting = base.where(InvoiceRequest.state == "requested").order_by(InvoiceRequest.requested_at, InvoiceRequest.id)
    decided = base.where(InvoiceRequest.state != "requested").order_by(
        InvoiceRequest.decided_at.desc(), InvoiceRequest.id.desc()
    )
    if state is not None:
        decided = decided.where(InvoiceRequest.state == state)
    found: list[Queued] = []
    for statement in (waiting,) if state == "requested" else (decided,) if state else (waiting, decided):
        rows = s.execute(statement.limit(limit - len(found))).all() if len(found) < limit else []
        found.extend(Queued(request, order_no, paid) for request, order_no, paid in rows)
    return found


def pdf_of(s: DbSession, request_id: int) -> tuple[str, bytes] | None:
    """(order number, PDF) of an issued request; None for any other."""
    row = s.execute(
        select(RechargeOrder.order_no, InvoiceRequest.pdf)
        .join(RechargeOrder, RechargeOrder.id == InvoiceRequest.order_id)
        .where(InvoiceRequest.id == request_id, InvoiceRequest.state == "issued")
    ).first()
    if row is None or row[1] is None:
        return None
    return row[0], row[1]
