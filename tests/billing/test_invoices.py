"""Invoices (billing/invoices.py): the tax id's check character (GB 32100-2015), one request per
credited order, a request that moves once (issued with its PDF and the customer's e-mail in the
same transaction, or refused), the queue's order, and what counts as a PDF.

On a plain SQLAlchemy Session (tests/billing/conftest.py): no application, no app context."""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from heyon_site.billing import invoices
from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.invoices import InvoiceError, normalise_tax_id, pdf_problem, tax_id_valid
from heyon_site.billing.recharge import apply_event, start_recharge
from heyon_site.models import Card, InvoiceRequest, OutboxMessage, RechargeOrder, utcnow
from tests.billing.kit import write

# The standard's own example, and codes of large companies as printed on their invoices and in
# the national enterprise credit registry.
PUBLISHED = ("91350100M000100Y43", "914403001922038216", "9144030071526726XG", "91330100799655058B")
# The standard's table, written out rather than computed: the characters (no I, O, S, V, Z) and
# the weights of positions 1 to 17.
CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
EMAIL = "buyer@example.com"


def with_check(first17: str) -> str:
    """A code made here, by the standard's table: the 17 characters and their check character."""
    check = 31 - sum(CHARS.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 31
    return first17 + CHARS[0 if check == 31 else check]


def link(token: str) -> str:
    return f"https://pay.example.com/orders/{token}"



def credited_order(s: Session, amount_fen: int = 5000) -> RechargeOrder:
    """A card and a sandbox order on it, paid and credited as a provider's event credits one."""
    def create() -> RechargeOrder:
        card = Card(number_digest=uuid.uuid4().hex, last4="1234", password_hash="not-checked-here", balance_fen=0)
        s.add(card)
        s.flush()
        order = start_recharge(s, card.id, amount_fen, "sandbox", "en")
        paid = ProviderEvent("sandbox", order.order_no, uuid.uuid4().hex, "paid", amount_fen)
        assert apply_event(s, paid) == "credited"
        return order

    order = write(s, create)
    s.refresh(order)
    assert order.status == "credited"
    return order


def ask(s: Session, order_id: int, kind: str = "company", name: str = "某某科技有限公司",
        tax_id: str | None = PUBLISHED[0], email: str = EMAIL) -> int:
    return write(s, lambda: invoices.request_invoice(s, order_id, kind, name, tax_id, email))


def messages(s: Session) -> list[OutboxMessage]:
    s.rollback()
    return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


# ------------------------------------------------------------------ the check character


def test_published_codes_pass_the_check() -> None:
    for code in PUBLISHED:
        assert tax_id_valid(code), code
        assert with_check(code[:17]) == code  # the table written out agrees with each


def test_codes_made_by_the_standards_table_pass_and_a_wrong_check_fails() -> None:
    for first17 in ("91110000600037341", "12100000400000624", "5233010032746530X"[:17], "Y1110105MA01A8B2C"):
        code = with_check(first17)
        assert normalise_tax_id(code) == code
        for other in CHARS:
            if other != code[17]:
                assert not tax_id_valid(code[:17] + other)
    assert not tax_id_valid("911100001000074123")  # a check character off by one digit


def test_every_single_character_changed_is_caught() -> None:
    code = PUBLISHED[0]
    for i in range(18):
        for c in CHARS:
            if c != code[i]:
                assert not tax_id_valid(code[:i] + c + code[i + 1 :]), (i, c)


@pytest.mark.parametrize("typed", ["91350100m000100y43", " 9135 0100 M000 100Y 43 ",
                                   "９１３５０１００Ｍ０００１００Ｙ４３",
                                   "91350100M000100Y43\u3000"])
def test_typed_forms_are_normalised(typed: str) -> None:
    assert normalise_tax_id(typed) == "91350100M000100Y43"


@pytest.mark.parametrize("bad", ["", "91350100M000100Y4", "91350100M000100Y433", "91350100I000100Y43",
                                 "91350100O000100Y43", "91350100Z000100Y43", "91350100S000100Y43",
                                 "91350100V000100Y43", "91350100-000100Y43", "9135010０M000100Y4３x", "\x00" * 18])
def test_malformed_codes_fail(bad: str) -> None:
    assert normalise_tax_id(bad) is None


# ------------------------------------------------------------------ requests


def test_one_request_per_credited_order(session: Session) -> None:
    order = credited_order(session)
    request_id = ask(session, order.id, tax_id="9135 0100 m000 100y43")
    found = session.get(InvoiceRequest, request_id)
    assert found is not None
    assert (found.state, found.tax_id, found.buyer_kind, found.email) == ("requested", PUBLISHED[0], "company", EMAIL)
    with pytest.raises(InvoiceError) as second:
        ask(session, order.id, kind="personal", tax_id=None)
    assert "one invoice per order" in str(second.value)
    assert session.scalar(select(func.count()).select_from(InvoiceRequest)) == 1


def test_a_person_needs_no_name_and_keeps_no_tax_id(session: Session) -> None:
    order = credited_order(session)
    found = session.get(InvoiceRequest, ask(session, order.id, kind="personal", name="  ", tax_id=PUBLISHED[1]))
    assert found is not None and (found.buyer_name, found.tax_id) == ("个人", None)


@pytest.mark.parametrize(("kind", "name", "tax_id", "email"), [
    ("company", "某某科技有限公司", "911100001000074123", EMAIL),  # wrong check character
    ("company", "某某科技有限公司", None, EMAIL),
    ("company", "", PUBLISHED[0], EMAIL),
    ("company", "x" * 201, PUBLISHED[0], EMAIL),
    ("company", "a\x00b", PUBLISHED[0], EMAIL),
    ("government", "某某", None, EMAIL),
    ("personal", "", None, ""),
])
def test_a_request_that_cannot_be_one_is_refused(session: Session, kind: str, name: str, tax_id: str | None,
                                                 email: str) -> None:
    order = credited_order(session)
    with pytest.raises(InvoiceError):
        ask(session, order.id, kind, name, tax_id, email)
    assert session.scalar(select(func.count()).select_from(InvoiceRequest)) == 0


def test_only_a_credited_order_can_have_an_invoice(session: Session) -> None:
    order = credited_order(session)
    pending = write(session, lambda: start_recharge(session, order.card_id, 3000, "sandbox", "en"))
    with pytest.raises(InvoiceError) as refused:
        ask(session, pending.id)
    assert "credited" in str(refused.value)


def test_the_database_itself_wants_a_tax_id_of_a_company_and_a_pdf_of_an_issued_invoice(session: Session) -> None:
    order = credited_order(session)
    row = {"o": order.id, "now": utcnow()}
    for sql in ("INSERT INTO invoice_requests (order_id, buyer_kind, buyer_name, email, state, requested_at) "
                "VALUES (:o, 'company', 'x', 'a@b.cn', 'requested', :now)",
                "INSERT INTO invoice_requests (order_id, buyer_kind, buyer_name, email, state, requested_at) "
                "VALUES (:o, 'personal', 'x', 'a@b.cn', 'issued', :now)"):
        with pytest.raises(IntegrityError):
            session.execute(text(sql), row)
            session.commit()
        session.rollback()


# ------------------------------------------------------------------ issue and refuse


def test_issuing_keeps_the_pdf_and_writes_the_email_in_the_same_transaction(session: Session) -> None:
    order = credited_order(session)
    request_id = ask(session, order.id)
    # Rolled back after issuing: neither the PDF nor the message stays.
    invoices.issue(session, request_id, PDF, "cashier-user", order_link=link)
    session.rollback()
    assert messages(session) == []
    assert session.get(InvoiceRequest, request_id).state == "requested"  # type: ignore[union-attr]

    assert write(session, lambda: invoices.issue(session, request_id, PDF, "cashier-user", order_link=link)) \
        == order.order_no
    found = session.get(InvoiceRequest, request_id)
    assert found is not None
    assert (found.state, found.decided_by, found.pdf_size) == ("issued", "cashier-user", len(PDF))
    assert found.pdf == PDF and found.pdf_sha256 == hashlib.sha256(PDF).hexdigest()
    sent = messages(session)
    assert [(m.channel, m.recipient, m.template, m.key, m.locale, m.card_id) for m in sent] == [
        ("email", EMAIL, "invoice_issued", f"invoice:{request_id}:issued:email", "en", order.card_id)]
    assert json.loads(sent[0].params) == {"order_no": order.order_no, "link": link(order.token)}
    assert invoices.pdf_of(session, request_id) == (order.order_no, PDF)


def test_a_request_moves_once(session: Session) -> None:
    order, other = credited_order(session), credited_order(session)
    issued, refused = ask(session, order.id), ask(session, other.id, kind="personal", tax_id=None)
    write(session, lambda: invoices.issue(session, issued, PDF, "a", order_link=link))
    write(session, lambda: invoices.refuse(session, refused, "  Not our\n order  ", "b"))
    for request_id in (issued, refused):
        with pytest.raises(InvoiceError, match="already"):
            write(session, lambda request_id=request_id: invoices.issue(session, request_id, PDF, "c", order_link=link))
        with pytest.raises(InvoiceError, match="already"):
            write(session, lambda request_id=request_id: invoices.refuse(session, request_id, "no", "c"))
    found = session.get(InvoiceRequest, refused)
    assert found is not None
    assert (found.state, found.refusal_reason, found.decided_by) == ("refused", "Not our order", "b")
    assert invoices.pdf_of(session, refused) is None
    assert len(messages(session)) == 1  # a refusal writes none
    with pytest.raises(InvoiceError, match="no such"):
        write(session, lambda: invoices.refuse(session, 999_999, "no", "c"))


def test_a_refusal_needs_a_reason_and_issuing_a_pdf(session: Session) -> None:
    request_id = ask(session, credited_order(session).id)
    for reason in ("", "   ", "x" * 501):
        with pytest.raises(InvoiceError):
            write(session, lambda reason=reason: invoices.refuse(session, request_id, reason, "b"))
    with pytest.raises(InvoiceError, match="not a PDF"):
        write(session, lambda: invoices.issue(session, request_id, b"\x89PNG\r\n\x1a\n", "a", order_link=link))
    assert session.get(InvoiceRequest, request_id).state == "requested"  # type: ignore[union-attr]


def test_the_queue_puts_waiting_requests_first_oldest_first(session: Session) -> None:
    ids = []
    for _ in range(4):
        ids.append(ask(session, credited_order(session).id))
    now = utcnow()
    for n, request_id in enumerate(ids):  # the last asked first
        session.execute(text("UPDATE invoice_requests SET requested_at = :at WHERE id = :id"),
                        {"at": now - timedelta(hours=n), "id": request_id})
    session.commit()
    write(session, lambda: invoices.refuse(session, ids[0], "no", "b", now=now - timedelta(minutes=5)))
    write(session, lambda: invoices.issue(session, ids[1], PDF, "a", now=now, order_link=link))
    assert [q.request.id for q in invoices.queue(session)] == [ids[3], ids[2], ids[1], ids[0]]
    assert [q.request.id for q in invoices.queue(session, "requested")] == [ids[3], ids[2]]
    assert [q.request.id for q in invoices.queue(session, "refused")] == [ids[0]]
    assert [q.request.id for q in invoices.queue(session, limit=3)] == [ids[3], ids[2], ids[1]]
    assert invoices.queue(session, "nonsense") == []
    first = invoices.queue(session)[0]
    assert first.paid_fen == 5000 and first.order_no


# ------------------------------------------------------------------ what counts as a PDF


@pytest.mark.parametrize(("data", "problem"), [
    (PDF, None),
    (PDF.rstrip(b"\n") , None),
    (PDF + b"\0" * 900, None),  # padding after the trailer, within the last KiB
    (b"", "Choose the PDF"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not a PDF"),
    (b"<html>%PDF-1.7 %%EOF</html>", "not a PDF"),
    (b"%PDF-1.7\nno trailer at all\n", "not a PDF"),
    (PDF + b"\0" * 2000, "not a PDF"),  # no %%EOF near the end: cut short, or something else
    (PDF + b"x" * 10_000, "too large"),
])
def test_a_pdf_is_judged_by_its_content_and_size(data: bytes, problem: str | None) -> None:
    found = pdf_problem(data, max_bytes=len(PDF) + 2000)
    assert (found is None) if problem is None else (found is not None and problem in found)
