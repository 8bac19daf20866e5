"""Finance exports: each kind's columns and rows for a range of days in the site's time zone, as
UTF-8 CSV with a BOM, exact amounts, no formula a spreadsheet would run, cashiers and admins only,
one audit row per file; and a large export streamed in little memory."""
from __future__ import annotations

import codecs
import csv
import gc
import io
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, PaymentEvent, RechargeOrder, Refund
from heyon_site.staff import exports
from tests.kit import CARD, make_card, new_client
from tests.staff.kit import audit_rows, signed_in

# The range asked for: two days in the site's zone (Asia/Shanghai, UTC+8 all year), as stored (UTC).
RANGE = {"date_from": "2025-03-01", "date_to": "2025-03-02"}
BEFORE = datetime(2025, 2, 28, 15, 59, 59)  # 23:59:59 on 28 February there: out
FIRST = datetime(2025, 2, 28, 16, 0, 0)  # midnight starting 1 March there: in
MIDDLE = datetime(2025, 3, 1, 4, 0, 0)  # noon on 1 March there
LAST = datetime(2025, 3, 2, 15, 59, 59)  # the last second of 2 March there: in
AFTER = datetime(2025, 3, 2, 16, 0, 0)  # midnight starting 3 March there: out
MOST = 99_999_999_99  # fen: 99999999.99 yuan, more than any order, to prove nothing rounds

# What the header rows must stay: finance's spreadsheets read the columns by these names.
HEADERS = {
    "orders": ["order_no", "created_at", "status", "status_reason", "card_last4", "provider", "amount", "pay",
               "bonus", "paid", "provider_txn_id"],
    "payments": ["created_at", "provider", "order_no", "provider_txn_id", "amount", "outcome"],
    "refunds": ["created_at", "finished_at", "refund_no", "order_no", "provider", "amount", "status", "origin",
                "provider_refund_id"],
    "ledger": ["created_at", "card_last4", "order_no", "kind", "amount", "key"],
}


def _order(card_id: int, order_no: str, at: datetime, fen: int, **over: object) -> int:
    row = RechargeOrder(order_no=order_no, token=uuid.uuid4().hex, card_id=card_id, provider="sandbox",
                        status="credited", amount_fen=fen, pay_fen=fen, bonus_fen=0, created_at=at, updated_at=at)
    for name, value in over.items():
        setattr(row, name, value)
    db.session.add(row)
    db.session.flush()
    return row.id


def _event(order_id: int, txn: str, at: datetime, fen: int, kind: str = "paid") -> int:
    row = PaymentEvent(provider="sandbox", provider_txn_id=txn, kind=kind, order_id=order_id, amount_fen=fen,
                       outcome="credited", created_at=at)
    db.session.add(row)
    db.session.flush()
    return row.id


def books() -> None:
    """Rows of every kind just inside and just outside the range, with hostile provider text."""
    card_id = make_card()

    def work() -> None:
        out_before = _order(card_id, "2025022800000001", BEFORE, 100)
        first = _order(card_id, "2025030100000001", FIRST, 1, paid_fen=1,
                       provider_txn_id='=HYPERLINK("http://evil.example","x")')
        _order(card_id, "2025030100000002", MIDDLE, 5000, status="pending", pay_fen=4500)
        last = _order(card_id, "2025030200000003", LAST, MOST, paid_fen=MOST, status="review",
                      status_reason="amount_mismatch", provider_txn_id="付款-中文")
        _order(card_id, "2025030300000004", AFTER, 100)

        paid_first = _event(first, "+CMD|' /C calc'!A0", FIRST, 1)
        paid_last = _event(last, "T-LAST", LAST, MOST)
        _event(last, "T-CLOSED", MIDDLE, MOST, kind="closed")  # not a payment: never in the file
        paid_before = _event(out_before, "T-BEFORE", BEFORE, 100)
        _event(out_before, "T-AFTER", AFTER, 100)

        db.session.add_all([
            Refund(refund_no="R0001", payment_event_id=paid_first, order_id=first, provider="sandbox", amount_fen=1,
                   status="succeeded", origin="auto", provider_refund_id="@SUM(A1:A9)", created_at=FIRST,
                   finished_at=FIRST + timedelta(hours=1)),
            Refund(refund_no="R0002", payment_event_id=paid_last, order_id=last, provider="sandbox", amount_fen=MOST,
                   status="pending", origin="auto", created_at=LAST),
            Refund(refund_no="R0003", payment_event_id=paid_before, order_id=out_before, provider="sandbox",
                   amount_fen=100, status="failed", origin="auto", created_at=AFTER),
            LedgerEntry(card_id=card_id, order_id=out_before, kind="recharge", amount_fen=100, key="before",
                        created_at=BEFORE),
            LedgerEntry(card_id=card_id, order_id=first, kind="recharge", amount_fen=1, key="order:first:recharge",
                        created_at=FIRST),
            LedgerEntry(card_id=card_id, kind="adjustment", amount_fen=-500, key="\tadjust", created_at=MIDDLE),
            LedgerEntry(card_id=card_id, kind="bonus", amount_fen=MOST, key="\rbonus", created_at=LAST),
            LedgerEntry(card_id=card_id, kind="recharge", amount_fen=100, key="after", created_at=AFTER),
        ])

    in_write_transaction(work)


def fetch(client: FlaskClient, path: str, **query: str) -> TestResponse:
    """A request whose streamed body is read to its end within the request, as a server sends
    it. (Werkzeug's test client reads a first chunk inside the request; a streamed answer left
    unread keeps the request's contexts open until the garbage collector closes it, in
    whatever test runs then.)"""
    return client.get(path, query_string=query, buffered=True)


def table(r: TestResponse) -> list[list[str]]:
    """The file's rows; it must start with the UTF-8 byte order mark (Excel reads UTF-8 only then)."""
    body = r.get_data()
    assert body.startswith(codecs.BOM_UTF8), body[:20]
    return list(csv.reader(io.StringIO(body[len(codecs.BOM_UTF8):].decode("utf-8"), newline="")))


EXPECTED = {
    "orders": [
        ["2025030100000001", "2025-03-01T00:00:00+08:00", "credited", "", "1234", "sandbox", "0.01", "0.01", "0.00",
         "0.01", "'=HYPERLINK(\"http://evil.example\",\"x\")"],
        ["2025030100000002", "2025-03-01T12:00:00+08:00", "pending", "", "1234", "sandbox", "50.00", "45.00", "0.00",
         "", ""],
        ["2025030200000003", "2025-03-02T23:59:59+08:00", "review", "amount_mismatch", "1234", "sandbox",
         "99999999.99", "99999999.99", "0.00", "99999999.99", "付款-中文"],
    ],
    "payments": [
        ["2025-03-01T00:00:00+08:00", "sandbox", "2025030100000001", "'+CMD|' /C calc'!A0", "0.01", "credited"],
        ["2025-03-02T23:59:59+08:00", "sandbox", "2025030200000003", "T-LAST", "99999999.99", "credited"],
    ],
    "refunds": [
        ["2025-03-01T00:00:00+08:00", "2025-03-01T01:00:00+08:00", "R0001", "2025030100000001", "sandbox", "0.01",
         "succeeded", "auto", "'@SUM(A1:A9)"],
        ["2025-03-02T23:59:59+08:00", "", "R0002", "2025030200000003", "sandbox", "99999999.99", "pending", "auto",
         ""],
    ],
    "ledger": [
        ["2025-03-01T00:00:00+08:00", "1234", "2025030100000001", "recharge", "0.01", "order:first:recharge"],
        # A negative amount is a number, not a formula; a key starting with a tab or CR is neutralised.
        ["2025-03-01T12:00:00+08:00", "1234", "", "adjustment", "-5.00", "'\tadjust"],
        ["2025-03-02T23:59:59+08:00", "1234", "", "bonus", "99999999.99", "'\rbonus"],
    ],
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_kind_has_its_header_and_the_rows_of_the_days_asked(app: Flask, kind: str) -> None:
    books()
    r = fetch(signed_in(app, "cashier"), f"/staff/exports/{kind}.csv", **RANGE)
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == f'attachment; filename="heyon-{kind}-2025-03-01-2025-03-02.csv"'
    assert r.headers["Cache-Control"] == "no-store"
    rows = table(r)
    assert rows[0] == HEADERS[kind]
    assert rows[1:] == EXPECTED[kind]
    # Only the last four digits of a card are known to the site, and only they are exported.
    assert CARD not in r.get_data(as_text=True)


def test_one_day_is_that_day_in_the_site_zone(app: Flask) -> None:
    books()
    client = signed_in(app, "cashier")
    first_day = table(fetch(client, "/staff/exports/orders.csv", date_from="2025-03-01", date_to="2025-03-01"))
    assert [row[0] for row in first_day[1:]] == ["2025030100000001", "2025030100000002"]
    day_before = table(fetch(client, "/staff/exports/orders.csv", date_from="2025-02-28", date_to="2025-02-28"))
    assert [row[0] for row in day_before[1:]] == ["2025022800000001"]
    empty = table(fetch(client, "/staff/exports/ledger.csv", date_from="2025-04-01", date_to="2025-04-30"))
    assert empty == [HEADERS["ledger"]]


def test_a_cell_a_spreadsheet_would_run_gets_an_apostrophe() -> None:
    for hostile in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert exports.neutralised(hostile) == "'" + hostile
    for plain in ("", "order:1:recharge", "2025030100000001", "付款", " =1", "'quoted"):
        assert exports.neutralised(plain) == plain
    tz = exports.sitetime.zone({"HEYON_TIMEZONE": "Asia/Shanghai"})
    # An amount is a number whatever its sign; the same text in a text column is neutralised.
    assert exports.cell("money", -500, tz) == "-5.00"
    assert exports.cell("text", "-5.00", tz) == "'-5.00"
    assert exports.cell("money", 1, tz) == "0.01" and exports.cell("money", MOST, tz) == "99999999.99"


def test_the_page_sends_the_form_to_the_file_and_shows_in_chinese(app: Flask) -> None:
    client = signed_in(app, "cashier")
    page = client.get("/staff/exports?lang=en")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'action="/staff/exports"' in body and 'name="date_from"' in body and "Download CSV" in body
    assert 'href="/staff/exports"' in body  # the navigation links to it
    r = client.get("/staff/exports", query_string={"kind": "refunds", **RANGE})
    assert r.status_code == 303
    assert r.headers["Location"] == "/staff/exports/refunds.csv?date_from=2025-03-01&date_to=2025-03-02"
    zh = client.get("/staff/exports?lang=zh").get_data(as_text=True)
    assert "导出" in zh and "下载 CSV" in zh and "Download CSV" not in zh
    # Nothing was downloaded yet: only a file is audited.
    assert audit_rows("export.csv") == []


def test_cashiers_and_admins_may_export_editors_may_not(app: Flask) -> None:
    for role in ("cashier", "admin"):
        client = signed_in(app, role)
        assert client.get("/staff/exports").status_code == 200, role
        assert fetch(client, "/staff/exports/ledger.csv", **RANGE).status_code == 200, role
    editor = signed_in(app, "editor")
    assert editor.get("/staff/exports").status_code == 403
    assert fetch(editor, "/staff/exports/ledger.csv", **RANGE).status_code == 403
    assert 'href="/staff/exports"' not in editor.get("/staff/").get_data(as_text=True)
    anonymous = new_client(app)
    r = fetch(anonymous, "/staff/exports/ledger.csv", **RANGE)
    assert r.status_code == 303 and r.headers["Location"].startswith("/staff/login?next=")
    assert anonymous.get("/staff/exports").status_code == 303
    assert {row.username for row in audit_rows("export.csv")} == {"cashier-user", "admin-user"}


@pytest.mark.parametrize(("asked", "message"), [
    ({"date_from": "2025-01-01", "date_to": "2026-01-02"}, "At most 366 days in one file."),
    ({"date_from": "2023-12-31", "date_to": "2024-12-31"}, "At most 366 days in one file."),
    ({"date_from": "2025-03-02", "date_to": "2025-03-01"}, "The last day comes before the first day."),
    ({"date_from": "2025-02-30", "date_to": "2025-03-01"}, "Not a valid date value."),
    ({"date_from": "yesterday", "date_to": "2025-03-01"}, "Not a valid date value."),
    ({"date_from": "2025-03-01"}, "Enter the last day."),
    ({}, "Enter the first day."),
    ({"date_from": "1999-12-31", "date_to": "2000-01-01"}, "Enter a date from 2000-01-01 to 2100-12-31."),
    ({"date_from": "9999-12-31", "date_to": "9999-12-31"}, "Enter a date from 2000-01-01 to 2100-12-31."),
])
def test_a_bad_range_shows_the_page_again_with_why(app: Flask, asked: dict[str, str], message: str) -> None:
    client = signed_in(app, "cashier")
    for r in (fetch(client, "/staff/exports/orders.csv", **asked, lang="en"),
              fetch(client, "/staff/exports", kind="orders", **asked, lang="en")):
        assert r.status_code == 422
        assert r.headers["Content-Type"].startswith("text/html")
        assert message in r.get_data(as_text=True)
    assert audit_rows("export.csv") == []


def test_a_leap_year_fits_and_an_unknown_kind_is_not_found(app: Flask) -> None:
    client = signed_in(app, "cashier")
    # 366 days, both ends included: a leap year, or a plain year and one day.
    for first, last in (("2024-01-01", "2024-12-31"), ("2025-01-01", "2026-01-01")):
        assert fetch(client, "/staff/exports/ledger.csv", date_from=first, date_to=last).status_code == 200
    assert fetch(client, "/staff/exports/cards.csv", **RANGE).status_code == 404
    r = client.get("/staff/exports", query_string={"kind": "cards", **RANGE, "lang": "en"})
    assert r.status_code == 422 and "Not a valid choice" in r.get_data(as_text=True)


def test_every_file_leaves_one_audit_row(app: Flask) -> None:
    books()
    client = signed_in(app, "cashier")
    for kind in ("orders", "ledger", "orders"):
        assert fetch(client, f"/staff/exports/{kind}.csv", **RANGE).status_code == 200
    rows = audit_rows("export.csv")
    assert [(row.username, row.target) for row in rows] == [
        ("cashier-user", "orders 2025-03-01..2025-03-02"),
        ("cashier-user", "ledger 2025-03-01..2025-03-02"),
        ("cashier-user", "orders 2025-03-01..2025-03-02"),
    ]
    assert all(row.staff_id is not None for row in rows)
    # The audit log shows the action in words.
    log = signed_in(app, "admin").get("/staff/audit?lang=en").get_data(as_text=True)
    assert "Downloaded a finance export (CSV)" in log


# ------------------------------------------------------------------ a large export

LARGE = 200_000
# The bound on the Python heap's growth while the whole file streams. What streaming keeps at
# once: one batch of 1,000 rows (each a Row of six values, well under 1 KB) and that batch's
# text (about 60 KB), plus the request's own objects: a few MB at most (1.25 MB measured). What
# it must not do is hold all the rows (the control below measures that: about 100 MB) or the
# whole file (200,000 lines of about 60 bytes: 12 MB as bytes, twice that with its text). 8 MB is
# well above the first and below each of the others.
BOUND = 8 * 2**20


def _peak(work: Callable[[], None]) -> int:
    """The Python heap's peak growth, in bytes, while ``work`` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_a_large_export_streams_without_holding_its_rows(app: Flask) -> None:
    card_id = make_card()
    # One statement makes the rows (a recursive count), all on the first day of the range.
    in_write_transaction(lambda: db.session.execute(text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
        "INSERT INTO ledger_entries (card_id, order_id, kind, amount_fen, key, created_at) "
        "SELECT :card, NULL, 'adjustment', i, 'bulk:' || i, :at FROM n"),
        {"count": LARGE, "card": card_id, "at": MIDDLE}))
    client = signed_in(app, "cashier")
    seen = {"bytes": 0, "lines": 0, "chunks": 0}
    ends: list[bytes] = []

    def download() -> None:
        r = client.get("/staff/exports/ledger.csv", query_string=RANGE)
        assert r.status_code == 200
        # Streamed. The test client reports every unbuffered answer as streamed, so what proves it
        # is what a whole body would have had: a Content-Length (every page here has one).
        assert r.is_streamed and "Content-Length" not in r.headers
        for chunk in r.response:
            seen["bytes"] += len(chunk)
            seen["lines"] += chunk.count(b"\r\n")
            seen["chunks"] += 1
            if chunk:
                ends[1 if ends else 0:] = [chunk]  # the first chunk, then always the latest
        r.close()

    grew = _peak(download)
    print(f"\nledger export of {LARGE} rows: {seen['bytes'] / 2**20:.1f} MB in {seen['chunks']} chunks, "
          f"peak Python heap growth {grew / 2**20:.2f} MB")
    assert seen["lines"] == LARGE + 1  # the header and every row
    assert seen["chunks"] >= LARGE // exports.BATCH  # written batch by batch, not at the end
    assert ends[0].startswith(codecs.BOM_UTF8 + b"created_at,card_last4,")
    assert ends[-1].endswith(b",1234,,adjustment,2000.00,bulk:200000\r\n")
    assert grew < BOUND, f"{grew / 2**20:.1f} MB"

    # The control: the same rows read all at once take far more than the bound, so the bound
    # tells a streamed file from one whose rows were loaded first.
    start, end = datetime(2025, 2, 28, 16), datetime(2025, 3, 2, 16)

    def load_all() -> None:
        with db.engine.connect() as connection:
            rows = connection.execute(exports.EXPORTS["ledger"].query(start, end)).all()
            assert len(rows) == LARGE

    loaded = _peak(load_all)
    print(f"the same rows loaded at once: {loaded / 2**20:.1f} MB")
    assert loaded > 2 * BOUND


def test_an_abandoned_download_gives_its_connection_back(app: Flask) -> None:
    """A browser that stops reading (the server closes the body) ends the query: the download's
    own connection goes back to the pool, and the site goes on answering."""
    card_id = make_card()
    in_write_transaction(lambda: db.session.add_all(
        LedgerEntry(card_id=card_id, kind="adjustment", amount_fen=i, key=f"k{i}", created_at=MIDDLE)
        for i in range(1, 3 * exports.BATCH)))
    client = signed_in(app, "cashier")
    pool = db.engine.pool
    idle = pool.checkedout()  # type: ignore[attr-defined]  # QueuePool's count
    r = client.get("/staff/exports/ledger.csv", query_string=RANGE)
    chunks = iter(r.response)
    assert next(chunks).startswith(codecs.BOM_UTF8 + b"created_at,")  # the header
    assert next(chunks).count(b"\r\n") == exports.BATCH  # the first batch: the query is open
    assert pool.checkedout() > idle  # type: ignore[attr-defined]
    r.close()
    assert pool.checkedout() == idle  # type: ignore[attr-defined]
    assert fetch(client, "/staff/exports/orders.csv", **RANGE).status_code == 200
