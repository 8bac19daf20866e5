"""The staff vouchers page: roles, a batch made and its PINs handed over once (a CSV file or the
printable sheet), a sheet printed from a batch's CSV file, two admins for a large batch, voiding,
a voucher looked up by its serial, the outstanding value, and refused input explained."""
from __future__ import annotations

import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site.billing.vouchers import pin_digest
from heyon_site.extensions import db
from heyon_site.models import VOUCHER_BATCH_STATES, VOUCHER_STATES, Voucher, VoucherBatch, serial_text
from heyon_site.staff import words
from heyon_site.vouchers.sheet import SheetError, check_pins, read_pins
from heyon_site.web.pages import UPLOADS
from tests.kit import CARD, csrf_from, make_card, new_client
from tests.staff.kit import add_staff, audit_rows, sign_in, signed_in
from tests.vouchers.kit import HEADER, activate, batch, day, dump, make_batch, rows_of, use

PAGE = "/staff/vouchers?lang=en"


def token(client: FlaskClient, page: str = PAGE) -> str:
    return csrf_from(client.get(page).get_data(as_text=True))


def fields(**over: str) -> dict[str, str]:
    return {"count": "30", "value": "50", "expires": day(180), "note": "Shop 12", "output": "csv", **over}


def make(client: FlaskClient, **over: str):
    return client.post(PAGE, data={"csrf_token": token(client), **fields(**over)})


def batches() -> list[VoucherBatch]:
    db.session.rollback()
    return list(db.session.scalars(select(VoucherBatch).order_by(VoucherBatch.id)))


def grouped(pin: str) -> str:
    return " ".join(pin[i:i + 4] for i in range(0, 16, 4))


def test_a_cashier_looks_vouchers_up_and_an_admin_makes_them(app: Flask) -> None:
    batch_id, made = make_batch(3)
    cashier = signed_in(app, "cashier")
    page = cashier.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and f'id="batch-{batch_id}"' in html and 'href="/staff/vouchers"' in html
    assert "New batch" not in html and "Void the batch" not in html  # an admin's
    found = cashier.get(f"/staff/vouchers/lookup?lang=en&serial={made[0][0]}")
    assert found.status_code == 200 and "Not active yet" in found.get_data(as_text=True)
    assert "Void the voucher" not in found.get_data(as_text=True)
    csrf = token(cashier)
    for path in ("/staff/vouchers", f"/staff/vouchers/{batch_id}/activate", f"/staff/vouchers/{batch_id}/void",
                 "/staff/vouchers/void", "/staff/vouchers/sheet"):
        assert cashier.post(path, data={"csrf_token": csrf, **fields()}).status_code == 403, path
    assert signed_in(app, "editor").get(PAGE).status_code == 403
    assert new_client(app).get(PAGE).status_code in (302, 303)  # to the sign-in page
    assert len(batches()) == 1 and batch(batch_id).state == "created"


def test_a_batch_as_a_csv_file_shown_once(app: Flask) -> None:
    admin = signed_in(app, "admin")
    r = make(admin)
    assert r.status_code == 200, r.get_data(as_text=True)[:2000]
    [b] = batches()
    assert r.headers["Content-Disposition"] == f'attachment; filename="heyon-vouchers-{b.id:04d}.csv"'
    assert r.headers["Cache-Control"] == "no-store" and r.mimetype == "text/csv"
    rows = rows_of(r.get_data(as_text=True))
    assert rows[0] == HEADER and len(rows) == 31
    assert [row[0] for row in rows[1:]] == [serial_text(b.id, n) for n in range(1, 31)]
    assert {(row[2], row[3]) for row in rows[1:]} == {("50.00", day(180))}
    pins = [row[1] for row in rows[1:]]
    assert all(re.fullmatch(r"\d{16}", p) for p in pins) and len(set(pins)) == 30
    assert (b.count, b.value_fen, b.note, b.created_by, b.state) == (30, 5000, "Shop 12", "admin-user", "created")
    key = app.extensions["heyon.voucher_key"]
    kept = set(db.session.scalars(select(Voucher.pin_digest).where(Voucher.batch_id == b.id)))
    assert kept == {pin_digest(key, p) for p in pins}
    assert not [p for p in pins if p in dump()]
    [row] = audit_rows("voucher.create")
    assert (row.username, row.target) == ("admin-user", f"batch {b.id}") and "total=1500.00" in (row.after_summary or "")
    listing = admin.get(PAGE).get_data(as_text=True)
    assert not [p for p in pins if p in listing or grouped(p) in listing]  # never shown again


def test_a_batch_as_the_printable_sheet(app: Flask) -> None:
    admin = signed_in(app, "admin")
    r = make(admin, count="12", output="sheet")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.mimetype == "text/html" and r.headers["Cache-Control"] == "no-store"
    [b] = batches()
    assert html.count('<section class="page">') == 2 and html.count('<article class="voucher">') == 12
    assert all(serial_text(b.id, n) in html for n in range(1, 13))
    assert "/static/css/vouchers.css?v=" in html and "<style" not in html and " style=" not in html  # the CSP's rules
    assert "¥50<" in html and day(180) in html
    pins = re.findall(r'<p class="pin">(\d{4} \d{4} \d{4} \d{4})</p>', html)
    assert len(set(pins)) == 12
    key = app.extensions["heyon.voucher_key"]
    kept = set(db.session.scalars(select(Voucher.pin_digest).where(Voucher.batch_id == b.id)))
    assert kept == {pin_digest(key, p.replace(" ", "")) for p in pins}
    assert [row.target for row in audit_rows("voucher.create")] == [f"batch {b.id}"]


@pytest.mark.parametrize(("over", "message"), [
    ({"count": "0"}, "From 1 to 100,000."),
    ({"count": "100001"}, "From 1 to 100,000."),
    ({"count": "many"}, "integer"),
    ({"value": "abc"}, "Not an amount like 50 or 49.50."),
    ({"value": "0"}, "A voucher is worth more than zero."),
    ({"value": "1e3"}, "Not an amount like 50 or 49.50."),
    ({"expires": "2001-01-01"}, "The expiry date has passed."),
    ({"expires": "31/12/2030"}, "Not a valid date value."),
    ({"count": "10001", "output": "sheet"}, "A sheet made here holds at most 10,000 vouchers: choose the CSV file."),
    ({"output": "pdf"}, "Choose how to hand the PINs over."),
])
def test_refused_batches_are_explained(app: Flask, over: dict[str, str], message: str) -> None:
    r = make(signed_in(app, "admin"), **over)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and message in html
    assert 'aria-invalid="true"' in html or 'class="choices invalid"' in html  # the field is marked
    assert batches() == [] and not audit_rows("voucher.create")


def test_refused_in_the_readers_language(app: Flask) -> None:
    admin = signed_in(app, "admin")
    r = admin.post("/staff/vouchers?lang=zh", data={"csrf_token": token(admin), **fields(expires=day(-1))})
    assert r.status_code == 422 and "有效期已过。" in r.get_data(as_text=True)
    assert admin.post(PAGE, data=fields()).status_code == 400  # no CSRF token
    assert batches() == []


def test_a_sheet_from_a_batchs_csv_file(app: Flask) -> None:
    assert "staff.voucher_sheet" in UPLOADS  # the one upload of this page: refused (400) otherwise
    admin = signed_in(app, "admin")
    csv_text = make(admin, count="25").get_data(as_text=True)
    [b] = batches()
    pins = [row[1] for row in rows_of(csv_text)[1:]]

    def upload(text: str | bytes, name: str = "pins.csv"):
        body = text if isinstance(text, bytes) else text.encode("utf-8-sig")  # as a spreadsheet saves it
        return admin.post("/staff/vouchers/sheet?lang=en", content_type="multipart/form-data",
                          data={"csrf_token": token(admin), "csv": (io.BytesIO(body), name)})

    r = upload(csv_text)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store", html[:2000]
    assert html.count('<section class="page">') == 3 and all(html.count(grouped(p)) == 1 for p in pins)
    [row] = audit_rows("voucher.sheet")
    assert (row.username, row.target, row.after_summary) == ("admin-user", f"batch {b.id}", "count=25")

    wrong_pin = csv_text.replace(pins[3], str(int(pins[3]) ^ 1).zfill(16), 1)
    for text, said in ((wrong_pin, f"Voucher {serial_text(b.id, 4)}: this is not its PIN."),
                       ("serial;pin\n1;2\n", "The file does not start with the line serial,pin,value,expires."),
                       (csv_text.replace("50.00", "60.00", 1), f"Voucher {serial_text(b.id, 1)}: its value or expiry differs."),
                       (csv_text + csv_text.split("\n", 1)[1], f"Voucher {serial_text(b.id, 1)} is in the file twice."),
                       ("serial,pin,value,expires\n", "The file holds no voucher."),
                       (csv_text.replace(pins[0], "12", 1), "Line 2 is not serial,pin,value,expires of a voucher."),
                       ("serial,pin,value,expires\n".encode() + "密码".encode("gb18030"), "The file is not UTF-8 text.")):
        refused = upload(text)
        assert refused.status_code == 422 and said in refused.get_data(as_text=True), said
    assert len(audit_rows("voucher.sheet")) == 1
    missing = admin.post("/staff/vouchers/sheet?lang=en", data={"csrf_token": token(admin)})
    assert missing.status_code == 422 and "Choose the CSV file of the batch." in missing.get_data(as_text=True)
    with pytest.raises(SheetError, match="at most 24 vouchers"):
        check_pins(db.session, app.extensions["heyon.voucher_key"], read_pins(io.StringIO(csv_text)), 24)
    in_void = signed_in(app, "admin")
    in_void.post(f"/staff/vouchers/{b.id}/void", data={"csrf_token": token(in_void)})
    voided = upload(csv_text)
    assert voided.status_code == 422 and "its batch is voided" in voided.get_data(as_text=True)


def test_two_admins_activate_a_large_batch(app: Flask) -> None:
    large, _ = make_batch(300, 5_000)  # 15,000 yuan, above the default 10,000
    small, _ = make_batch(2, 5_000)
    first = signed_in(app, "admin")
    add_staff("admin-two", "admin")
    second = new_client(app)
    assert sign_in(second, "admin-two").status_code == 303

    page = first.get(PAGE).get_data(as_text=True)
    assert "Ask for activation" in page and "Activate</button>" in page  # the large one asks, the small one is
    r = first.post(f"/staff/vouchers/{large}/activate", data={"csrf_token": token(first)})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/staff/vouchers#batch-{large}")
    assert batch(large).state == "created" and batch(large).activation_requested_by == "admin-user"
    mine = first.get(PAGE).get_data(as_text=True)
    assert "Activation asked for by admin-user" in mine and "Approve the activation" not in mine
    again = first.post(f"/staff/vouchers/{large}/activate", data={"csrf_token": token(first)})
    assert again.status_code == 409 and "Another admin must approve the activation you asked for." in again.get_data(
        as_text=True)
    assert batch(large).state == "created"

    theirs = second.get(PAGE).get_data(as_text=True)
    assert "Approve the activation" in theirs
    assert second.post(f"/staff/vouchers/{large}/activate", data={"csrf_token": token(second)}).status_code == 303
    b = batch(large)
    assert (b.state, b.activated_by, b.activation_requested_by) == ("active", "admin-two", "admin-user")
    assert first.post(f"/staff/vouchers/{small}/activate", data={"csrf_token": token(first)}).status_code == 303
    assert batch(small).state == "active"
    assert [(row.action, row.username) for row in audit_rows() if row.action.startswith("voucher.activate")] == [
        ("voucher.activate_request", "admin-user"), ("voucher.activate_approve", "admin-two"),
        ("voucher.activate", "admin-user")]
    assert first.post("/staff/vouchers/999/activate", data={"csrf_token": token(first)}).status_code == 404
    assert first.post(f"/staff/vouchers/{small}/activate", data={}).status_code == 400


def test_an_activation_asked_for_on_the_command_line_is_approved_here(app: Flask, runner: object) -> None:
    large, _ = make_batch(300, 5_000)
    r = runner.invoke(args=["vouchers", "activate", str(large)])  # type: ignore[attr-defined]
    assert "activation requested" in r.output
    admin = signed_in(app, "admin")
    assert "Activation asked for by (command line)" in admin.get(PAGE).get_data(as_text=True)
    assert admin.post(f"/staff/vouchers/{large}/activate", data={"csrf_token": token(admin)}).status_code == 303
    assert batch(large).state == "active"


def test_void_a_voucher_and_a_batch(app: Flask) -> None:
    batch_id, made = make_batch(4)
    activate(batch_id)
    admin = signed_in(app, "admin")
    first = made[0][0]
    lookup = admin.get(f"/staff/vouchers/lookup?lang=en&serial={first}").get_data(as_text=True)
    assert "Usable" in lookup and "Void the voucher" in lookup
    r = admin.post("/staff/vouchers/void", data={"csrf_token": csrf_from(lookup), "void-serial": first})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/staff/vouchers/lookup?serial={first}")
    shown = admin.get(r.headers["Location"] + "&lang=en").get_data(as_text=True)
    assert "Voided" in shown and "Void the voucher" not in shown
    again = admin.post(PAGE.replace("?", "/void?"), data={"csrf_token": token(admin), "void-serial": first})
    assert again.status_code == 409 and f"Voucher {first} is voided already." in again.get_data(as_text=True)
    missing = admin.post("/staff/vouchers/void?lang=en", data={"csrf_token": token(admin),
                                                               "void-serial": serial_text(batch_id, 9)})
    assert missing.status_code == 404 and f"There is no voucher {serial_text(batch_id, 9)}." in missing.get_data(
        as_text=True)
    bad = admin.post("/staff/vouchers/void?lang=en", data={"csrf_token": token(admin), "void-serial": "x-1"})
    assert bad.status_code == 422 and "Not a voucher serial like 0012-000034." in bad.get_data(as_text=True)

    assert admin.post(f"/staff/vouchers/{batch_id}/void", data={"csrf_token": token(admin)}).status_code == 303
    assert batch(batch_id).state == "voided"
    twice = admin.post(f"/staff/vouchers/{batch_id}/void?lang=en", data={"csrf_token": token(admin)})
    assert twice.status_code == 409 and f"Batch {batch_id} is voided already." in twice.get_data(as_text=True)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Voucher).where(Voucher.status == "voided")) == 4
    assert [(row.action, row.target) for row in audit_rows() if row.action.startswith("voucher.void")] == [
        ("voucher.void", f"voucher {first}"), ("voucher.void_batch", f"batch {batch_id}")]
    assert "voided=3" in (audit_rows("voucher.void_batch")[0].after_summary or "")


def test_lookup_shows_the_card_and_order_a_voucher_credited(app: Flask) -> None:
    card_id = make_card(CARD)
    batch_id, made = make_batch(2, 2_000)
    activate(batch_id)
    (serial, pin), (other, _) = made
    order = use(pin, card_id)
    cashier = signed_in(app, "cashier")
    html = cashier.get(f"/staff/vouchers/lookup?lang=en&serial={serial.replace('-', '')}").get_data(as_text=True)
    assert "Used" in html and f"**** {CARD[-4:]}" in html and f'href="/staff/orders/{order.order_no}"' in html
    assert pin not in html and grouped(pin) not in html
    assert "**** " not in cashier.get(f"/staff/vouchers/lookup?lang=en&serial={other}").get_data(as_text=True)
    missing = cashier.get(f"/staff/vouchers/lookup?lang=en&serial={serial_text(batch_id, 3)}")
    assert missing.status_code == 404 and "There is no voucher" in missing.get_data(as_text=True)
    bad = cashier.get("/staff/vouchers/lookup?lang=en&serial=hello")
    assert bad.status_code == 422 and "Not a voucher serial like 0012-000034." in bad.get_data(as_text=True)
    empty = cashier.get("/staff/vouchers/lookup?lang=en&serial=")
    assert empty.status_code == 422 and "Enter the serial printed on the voucher." in empty.get_data(as_text=True)
    assert cashier.get("/staff/vouchers/lookup?lang=zh").status_code == 200  # the language switch keeps no serial

    # What is owed: the one usable voucher of the active batch; a batch not active owes nothing.
    make_batch(5, 10_000)
    page = cashier.get(PAGE).get_data(as_text=True)
    assert "Total outstanding: ¥20.00" in page
    row = page.split(f'id="batch-{batch_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Active" in row and "¥20.00" in row


def test_every_voucher_state_has_words_in_chinese(app: Flask) -> None:
    assert set(VOUCHER_STATES) <= set(words.VOUCHER_STATUS)
    assert set(VOUCHER_BATCH_STATES) <= set(words.VOUCHER_BATCH_STATE)
    batch_id, made = make_batch(2)
    page = signed_in(app, "cashier").get("/staff/vouchers?lang=zh").get_data(as_text=True)
    assert "尚未激活" in page and "未兑付合计" in page and ">created<" not in page
    found = signed_in(app, "admin").get(f"/staff/vouchers/lookup?lang=zh&serial={made[0][0]}").get_data(as_text=True)
    assert "尚未激活" in found and "作废这张充值卡" in found
