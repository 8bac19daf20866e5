"""`flask vouchers`: a batch's PINs written once to a private file and kept only as digests,
activation by one admin or asked for from the command line, voiding, a voucher shown after use,
and the outstanding value per batch. Each change is an audit row by the command line."""
from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from heyon_site.billing.vouchers import pin_digest
from heyon_site.extensions import db
from heyon_site.models import AuditLog, Voucher, VoucherBatch, serial_text
from tests.kit import CARD, cli, make_card
from tests.staff.kit import audit_rows
from tests.vouchers.kit import HEADER, batch, day, dump, make_batch, rows_of, use


def create(runner: object, path: Path, *extra: str, count: int = 25, value: str = "50", expires: str | None = None):
    return cli(runner, "vouchers", "create", "--count", str(count), "--value", value,  # type: ignore[arg-type]
               "--expires", expires or day(365), "--csv", str(path), *extra)


def batch_id_of(output: str) -> int:
    last = output.strip().splitlines()[-1]
    match = re.fullmatch(r"batch (\d+)", last)
    assert match, f"the last line is {last!r}"
    return int(match.group(1))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A folder of the files a command writes (the test database sits in tmp_path)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def batches() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(VoucherBatch)) or 0


def test_create_writes_the_only_copy_of_the_pins_and_keeps_digests(app: Flask, runner: object, out: Path) -> None:
    path = out / "pins.csv"
    r = create(runner, path, "--note", "shop on Nanjing Road", expires=day(30))
    assert r.exit_code == 0, r.output
    batch_id = batch_id_of(r.output)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["pins.csv"]  # no temporary file left behind

    rows = rows_of(path.read_text(encoding="utf-8"))
    assert rows[0] == HEADER and len(rows) == 26
    assert [row[0] for row in rows[1:]] == [serial_text(batch_id, n) for n in range(1, 26)]
    assert {(row[2], row[3]) for row in rows[1:]} == {("50.00", day(30))}
    pins = [row[1] for row in rows[1:]]
    assert all(re.fullmatch(r"\d{16}", pin) for pin in pins) and len(set(pins)) == 25

    # Only the keyed digests are kept: no PIN anywhere in the tables, each digest that of its PIN.
    copy = dump()
    assert not [pin for pin in pins if pin in copy]
    key = app.extensions["heyon.voucher_key"]
    kept = dict(db.session.execute(select(Voucher.serial, Voucher.pin_digest).where(Voucher.batch_id == batch_id)).all())
    assert [kept[n] for n in range(1, 26)] == [pin_digest(key, pin) for pin in pins]

    b = batch(batch_id)
    assert (b.state, b.count, b.value_fen, b.note, b.created_by) == ("created", 25, 5000, "shop on Nanjing Road",
                                                                      "(command line)")
    [row] = audit_rows("voucher.create")
    assert (row.username, row.staff_id, row.target) == ("(command line)", None, f"batch {batch_id}")
    assert "count=25" in (row.after_summary or "") and "total=1250.00" in (row.after_summary or "")

    # The file is never overwritten: it may be the only copy of another batch's PINs.
    before = path.read_bytes()
    again = create(runner, path)
    assert again.exit_code != 0 and "exists" in again.output
    assert path.read_bytes() == before and batches() == 1


def test_create_with_a_printable_sheet(app: Flask, runner: object, out: Path) -> None:
    path, sheet = out / "pins.csv", out / "sheet.html"
    r = create(runner, path, "--sheet", str(sheet), count=12)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == f"batch {batch_id_of(r.output)}"
    assert stat.S_IMODE(sheet.stat().st_mode) == 0o600
    html = sheet.read_text(encoding="utf-8")
    pins = [row[1] for row in rows_of(path.read_text(encoding="utf-8"))[1:]]
    # A file of its own: its stylesheet inside it, the PINs in groups of four, two pages of 10 and 2.
    assert "<style>" in html and "@page{size:A4" in html and "vouchers.css" not in html
    assert all(html.count(" ".join(pin[i:i + 4] for i in range(0, 16, 4))) == 1 for pin in pins)
    assert html.count('<section class="page">') == 2 and html.count('<article class="voucher">') == 12
    assert "刮开涂层" in html and "Scratch here" in html
    assert create(runner, out / "other.csv", "--sheet", str(sheet)).exit_code != 0  # the sheet exists
    assert batches() == 1


def test_a_refused_batch_leaves_no_file(app: Flask, runner: object, out: Path) -> None:
    path = out / "pins.csv"
    past = create(runner, path, expires=day(-1))
    assert past.exit_code != 0 and "The expiry date has passed." in past.output
    for bad in (("--count", "0"), ("--count", "100001"), ("--value", "abc"), ("--value", "0"), ("--expires", "31/12/2030")):
        args = dict(zip(bad[::2], bad[1::2], strict=True))
        r = cli(runner, "vouchers", "create", "--count", args.get("--count", "5"),  # type: ignore[arg-type]
                "--value", args.get("--value", "50"), "--expires", args.get("--expires", day(30)), "--csv", str(path))
        assert r.exit_code != 0, bad
    assert list(out.iterdir()) == [] and batches() == 0
    assert not audit_rows("voucher.create")


def test_activate_under_and_over_the_two_admin_threshold(app: Flask, runner: object) -> None:
    small, _ = make_batch(4, 5_000)  # 200 yuan: one admin, or the command line, activates it
    r = cli(runner, "vouchers", "activate", str(small))  # type: ignore[arg-type]
    assert r.exit_code == 0 and r.output.strip() == f"batch {small}: active"
    assert batch(small).state == "active"
    db.session.rollback()
    assert set(db.session.scalars(select(Voucher.status).where(Voucher.batch_id == small))) == {"active"}
    again = cli(runner, "vouchers", "activate", str(small))  # type: ignore[arg-type]
    assert again.exit_code != 0 and "only a new batch can be activated" in again.output

    large, _ = make_batch(300, 5_000)  # 15,000 yuan, above the default 10,000: two people
    r = cli(runner, "vouchers", "activate", str(large))  # type: ignore[arg-type]
    assert r.exit_code == 0 and r.output.strip() == (
        f"batch {large}: activation requested; a second admin approves it on the staff vouchers page")
    assert batch(large).state == "created" and batch(large).activation_requested_by == "(command line)"
    # The command line asks; it never approves, not even its own request.
    second = cli(runner, "vouchers", "activate", str(large))  # type: ignore[arg-type]
    assert second.exit_code != 0 and "second admin approves" in second.output
    assert batch(large).state == "created"
    assert [r.action for r in audit_rows() if r.action.startswith("voucher.activate")] == [
        "voucher.activate", "voucher.activate_request"]
    assert cli(runner, "vouchers", "activate", "999").exit_code != 0  # type: ignore[arg-type]


def test_void_a_voucher_and_a_batch(app: Flask, runner: object) -> None:
    batch_id, made = make_batch(5)
    first = made[0][0]
    r = cli(runner, "vouchers", "void", first)  # type: ignore[arg-type]
    assert r.exit_code == 0 and r.output.strip() == f"voucher {first}: voided"
    again = cli(runner, "vouchers", "void", first)  # type: ignore[arg-type]
    assert again.exit_code != 0 and "voided already" in again.output
    assert cli(runner, "vouchers", "void", serial_text(batch_id, 6)).exit_code != 0  # type: ignore[arg-type]
    assert cli(runner, "vouchers", "void", "not-a-serial").exit_code != 0  # type: ignore[arg-type]
    both = cli(runner, "vouchers", "void", first, "--batch", str(batch_id))  # type: ignore[arg-type]
    assert both.exit_code != 0 and cli(runner, "vouchers", "void").exit_code != 0  # type: ignore[arg-type]

    r = cli(runner, "vouchers", "void", "--batch", str(batch_id))  # type: ignore[arg-type]
    assert r.exit_code == 0 and r.output.strip() == f"batch {batch_id}: voided (4 vouchers voided)"
    assert batch(batch_id).state == "voided"
    db.session.rollback()
    assert set(db.session.scalars(select(Voucher.status).where(Voucher.batch_id == batch_id))) == {"voided"}
    targets = [(row.action, row.target) for row in audit_rows() if row.action.startswith("voucher.void")]
    assert targets == [("voucher.void", f"voucher {first}"), ("voucher.void_batch", f"batch {batch_id}")]


def test_show_and_report_after_a_voucher_was_used(app: Flask, runner: object) -> None:
    card_id = make_card(CARD)
    batch_id, made = make_batch(3, 5_000)
    (used, pin), (unused, _), _third = made
    before = cli(runner, "vouchers", "show", used)  # type: ignore[arg-type]
    assert before.exit_code == 0 and "state: created" in before.output and "card:" not in before.output
    cli(runner, "vouchers", "activate", str(batch_id))  # type: ignore[arg-type]
    order = use(pin, card_id)

    shown = cli(runner, "vouchers", "show", used.replace("-", ""))  # type: ignore[arg-type]  # typed without its dash
    assert shown.exit_code == 0, shown.output
    lines = shown.output.strip().splitlines()
    assert lines[0] == f"voucher {used}" and "state: used" in lines and f"batch: {batch_id} (active)" in lines
    assert "value: 50.00" in lines and f"card: **** {CARD[-4:]}" in lines and f"order: {order.order_no}" in lines
    assert any(line.startswith("used at: 20") for line in lines)
    assert pin not in shown.output and pin not in dump()
    assert "state: active" in cli(runner, "vouchers", "show", unused).output  # type: ignore[arg-type]
    assert cli(runner, "vouchers", "show", serial_text(batch_id, 99)).exit_code != 0  # type: ignore[arg-type]

    other, _ = make_batch(2, 2_000)  # not active: owes nothing yet
    report = cli(runner, "vouchers", "report")  # type: ignore[arg-type]
    assert report.exit_code == 0, report.output
    lines = report.output.strip().splitlines()
    assert lines[1].split() == ["batch", "state", "value", "count", "expires", "usable", "used", "expired", "voided",
                                "outstanding"]
    assert lines[2].split()[:4] == [str(other), "created", "20.00", "2"] and lines[2].split()[-1] == "0.00"
    assert lines[3].split()[:3] == [str(batch_id), "active", "50.00"] and lines[3].split()[5:] == ["2", "1", "0", "0",
                                                                                                     "100.00"]
    assert lines[-1] == "total outstanding: 100.00"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("voucher.%"))) == 3
