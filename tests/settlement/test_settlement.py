"""Settlement against the sandbox, whose statements are in Alipay's format (a zip of GBK CSV):
matched, missing here (asked about through the normal query, credited), missing there, amounts
that differ, refunds, the archive, the staff page; and the matching rules alone."""
from __future__ import annotations

import zipfile
from datetime import UTC, date, datetime, timedelta
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from heyon_site.billing import refunds
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import PaymentEvent, SandboxPayment, Settlement
from heyon_site.payments import refunds as pushing
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import StatementLine
from heyon_site.settlement.matching import Ours, match

from tests.kit import csrf_from, deliver_outbox, gateway_path, make_card, new_client, notification, order, start_order
from tests.staff.kit import signed_in

pytestmark = pytest.mark.usefixtures("books_balance")
BEIJING = ZoneInfo("Asia/Shanghai")


def today() -> date:
    return datetime.now(BEIJING).date()


def run(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["settlement", "run", "--date", str(today()), *args])
    code = result.exit_code if not isinstance(result.exception, SystemExit) else result.exception.code
    return int(code or 0), result.output


def paid(app: Flask, buyer: FlaskClient, outcome: str = "pay") -> str:
    number = start_order(buyer)
    page = buyer.get(gateway_path(number)).get_data(as_text=True)
    buyer.post(gateway_path(number), data={"csrf_token": csrf_from(page), "outcome": outcome})
    deliver_outbox(app, buyer)
    return number


@pytest.fixture(autouse=True)
def archive_dir(app: Flask, tmp_path: Path) -> Path:
    app.config["HEYON_SETTLEMENT_DIR"] = str(tmp_path / "archive")
    return tmp_path / "archive"


def test_a_day_that_agrees_prints_its_line_and_exits_0(app: Flask, archive_dir: Path) -> None:
    make_card()
    buyer = new_client(app)
    paid(app, buyer)
    paid(app, buyer)
    code, out = run(app)
    assert out.strip() == f"settlement sandbox {today()}: 2 matched, 0 missing here, 0 missing there, 0 amount differs, fees 1.20"
    assert code == 0
    archived = list(archive_dir.rglob("*.zip"))
    assert len(archived) == 1 and zipfile.ZipFile(BytesIO(archived[0].read_bytes())).namelist()
    db.session.rollback()
    row = db.session.scalar(select(Settlement))
    assert (row.matched, row.fees_fen, row.archive) == (2, 120, str(archived[0]))
    # Run again: the same file is kept once, the day's row replaced, not doubled.
    assert run(app)[0] == 0 and len(list(archive_dir.rglob("*.zip"))) == 1
    db.session.rollback()
    assert len(db.session.scalars(select(Settlement)).all()) == 1


def test_a_payment_we_never_saw_is_asked_about_and_credited(app: Flask) -> None:
    """The gateway took the money but its notice was lost: the statement has it, we did not. The
    provider is asked through the normal query (never the statement's word) and the order is
    credited through the one credit path."""
    make_card()
    number = paid(app, new_client(app), outcome="silent")
    assert order(number).status == "pending"
    code, out = run(app)
    assert code == 1
    assert "0 matched, 1 missing here, 0 missing there, 0 amount differs" in out
    assert f"asked sandbox about order {number}: credited" in out
    assert order(number).status == "credited"
    assert run(app)[0] == 0  # the next run agrees


def test_a_payment_only_we_have_is_missing_there(app: Flask, client: FlaskClient) -> None:
    make_card()
    number = start_order(client)  # paid by a notice the gateway's book never made
    assert client.post("/pay/notify/sandbox", data=notification(number, "100.00")).get_data() == b"success"
    code, out = run(app)
    assert code == 1 and "0 matched, 0 missing here, 1 missing there, 0 amount differs" in out
    page = signed_in(app, "cashier").get("/staff/settlement?lang=en").get_data(as_text=True)
    assert f'href="/staff/orders/{number}"' in page and "Only in our books" in page


def test_an_amount_that_differs_is_named(app: Flask) -> None:
    make_card()
    number = paid(app, new_client(app))
    in_write_transaction(lambda: db.session.execute(
        update(SandboxPayment).where(SandboxPayment.order_no == number).values(amount_fen=9999)))
    code, out = run(app)
    assert code == 1 and "0 matched, 0 missing here, 0 missing there, 1 amount differs" in out


def test_a_refund_of_ours_is_matched_with_its_fee_given_back(app: Flask, client: FlaskClient) -> None:
    make_card()
    number = paid(app, new_client(app))
    assert client.post("/pay/notify/sandbox", data=notification(number, "100.00")).get_data() == b"success"
    db.session.rollback()
    event = db.session.scalar(select(PaymentEvent).where(PaymentEvent.outcome == "paid_again"))
    refund_id = in_write_transaction(lambda: refunds.auto_refund(db.session, event.id).id)
    assert pushing.push(refund_id, get_provider) == "succeeded"
    code, out = run(app)
    # The second payment is ours only (the gateway keeps one payment per order); the first and
    # the refund match; 0.60 charged and 0.60 given back.
    assert "2 matched, 0 missing here, 1 missing there, 0 amount differs, fees 0.00" in out and code == 1


def test_a_statement_from_a_file_is_read_and_archived(app: Flask, tmp_path: Path) -> None:
    make_card()
    paid(app, new_client(app))
    name, raw = get_provider("sandbox").fetch_statement(today())
    path = tmp_path / name
    path.write_bytes(raw)
    code, out = run(app, "--provider", "sandbox", "--file", str(path))
    assert code == 0 and "1 matched" in out


def test_a_file_needs_its_provider_and_a_broken_file_is_refused_cleanly(app: Flask, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    code, out = run(app, "--file", str(broken))
    assert code == 2 and "--file needs --provider" in out
    code, out = run(app, "--provider", "sandbox", "--file", str(broken))
    assert code == 1 and out.startswith(f"settlement sandbox {today()}: no statement (")


def test_matching_rules_alone() -> None:
    at = datetime.now(UTC)
    theirs = [StatementLine("payment", "1", "T1", 100, 1, at), StatementLine("payment", "2", "T2", 200, 1, at),
              StatementLine("payment", "3", "T3", 300, 2, at),
              StatementLine("refund", "1", "T1", 100, -1, at, refund_no=None, refund_id="R-PROV")]
    ours = [Ours("payment", "1", "T1", 100), Ours("payment", "2", "T2", 201), Ours("payment", "4", "T4", 400),
            Ours("payment", "5", "T5", 500, in_day=False),  # from the next day's first minutes: not missing
            Ours("refund", "1", "RF1", 100, provider_refund_id="R-PROV")]
    report = match(theirs, ours)
    assert report.matched == 2 and report.fees_fen == 3
    assert [(d.what, d.order_no) for d in report.differences] == [
        ("amount_differs", "2"), ("missing_here", "3"), ("missing_there", "4")]
