"""Recharging with a voucher on the recharge form: credited at once through the one credit path,
once whatever is pressed twice, the same refusal for every reason, and guesses spend the
address's failure budget and raise the site-wide alarm."""
from __future__ import annotations

import logging
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site import sitetime
from heyon_site.billing import vouchers
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow

from tests.kit import CARD, balance, make_card, new_client, recharge_form
from tests.web.test_limits import _limited, own_key_prefix  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.usefixtures("books_balance")
REFUSED = "This voucher cannot be used."


def today(app: Flask) -> date:
    return sitetime.local_day(utcnow(), sitetime.zone(app.config))


def make_batch(app: Flask, count: int = 2, value_fen: int = 5000, active: bool = True, expires: date | None = None
               ) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    key = app.extensions["heyon.voucher_key"]

    def work() -> None:
        made = vouchers.create_batch(db.session, key, count, value_fen, expires or today(app), "", "test", got.extend,
                                     today(app))
        if active:
            vouchers.activate(db.session, made.id, "test", None, 10**9)

    in_write_transaction(work)
    return got


def pay(client: FlaskClient, pin: str, **fields: str):  # type: ignore[no-untyped-def]
    return client.post("/recharge?lang=en", data=recharge_form(client, method="voucher", voucher_pin=pin, **fields))


def test_the_form_offers_a_voucher_with_its_pin_field(client: FlaskClient) -> None:
    html = client.get("/recharge?lang=en").get_data(as_text=True)
    assert 'value="voucher"' in html and ">Voucher<" in html
    assert "Voucher PIN" in html and 'name="voucher_pin"' in html and 'inputmode="numeric"' in html


@pytest.mark.parametrize("htmx", [False, True])
def test_a_voucher_credits_its_value_at_once_whatever_amount_was_chosen(app: Flask, htmx: bool) -> None:
    make_card()
    pins = make_batch(app)
    client = new_client(app, htmx=htmx)
    r = pay(client, pins[0][1], amount="200")
    assert r.status_code in (204, 303)
    target = r.headers.get("HX-Redirect") or r.headers["Location"]
    assert "/orders/" in target
    assert balance() == 5000
    page = client.get(target + "?lang=en").get_data(as_text=True)
    assert "Credited" in page and "50.00" in page
    db.session.rollback()
    made = db.session.scalars(select(RechargeOrder)).one()
    assert (made.provider, made.amount_fen, made.pay_fen, made.status) == ("voucher", 5000, 5000, "credited")
    receipt = client.get(target + "/receipt?lang=en")
    assert receipt.status_code == 200 and "Voucher" in receipt.get_data(as_text=True)


def test_pressing_twice_credits_once_and_shows_the_same_order(app: Flask, client: FlaskClient) -> None:
    make_card()
    pin = make_batch(app)[0][1]
    first = pay(client, pin)
    second = pay(client, pin)
    assert first.headers["Location"] == second.headers["Location"]
    assert balance() == 5000
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 1


def test_every_refusal_reads_the_same_and_counts_as_a_failed_secret(app: Flask) -> None:
    make_card()
    make_card("8611223344556677")
    used, voided = make_batch(app)
    inactive = make_batch(app, count=1, active=False)[0]
    other = new_client(app)
    assert pay(other, used[1], card_number="8611223344556677").status_code == 303  # another card used it
    in_write_transaction(lambda: vouchers.void_voucher(db.session, *vouchers.parse_serial(voided[0]) or (0, 0)))
    answers = []
    for pin in ("0000000000000000", used[1], voided[1], inactive[1]):
        r = pay(new_client(app), pin)
        body = r.get_data(as_text=True)
        answers.append((r.status_code, REFUSED in body))
    assert answers == [(422, True)] * 4
    assert balance(CARD) == 0


def test_a_malformed_pin_is_a_form_error_not_a_lookup(app: Flask, client: FlaskClient) -> None:
    make_card()
    r = pay(client, "1234")
    assert r.status_code == 422 and "A voucher PIN has 16 digits" in r.get_data(as_text=True)
    r = pay(client, "")
    assert r.status_code == 422 and "Enter the voucher PIN" in r.get_data(as_text=True)


def test_a_wrong_card_password_refuses_before_any_voucher_is_touched(app: Flask, client: FlaskClient) -> None:
    make_card()
    pin = make_batch(app)[0][1]
    r = pay(client, pin, password="999999")
    assert r.status_code == 403
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 0
    assert pay(client, pin).status_code == 303  # still usable by its owner


def test_voucher_guesses_spend_the_address_budget_and_raise_the_alarm(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    make_card()
    _limited(app)  # 20 failures an hour per address
    app.config["HEYON_VOUCHER_GUESS_LIMIT"] = "3 per minute"
    caplog.set_level(logging.WARNING, logger="heyon_site.ops.alarms")
    client = new_client(app)
    statuses = [pay(client, f"{n:016d}").status_code for n in range(1, 31)]
    assert statuses == [422] * 20 + [429] * 10  # the address's failure budget ran out
    assert sum("ALARM voucher guessing" in r.getMessage() for r in caplog.records) == 1


def test_a_pin_left_in_the_box_counts_only_with_voucher_chosen(app: Flask, client: FlaskClient) -> None:
    make_card()
    r = client.post("/recharge?lang=en", data=recharge_form(client, voucher_pin="garbage"))
    assert r.status_code in (302, 303) and "/pay/sandbox/" in r.headers["Location"]
