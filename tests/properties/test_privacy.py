"""After the site has been used (recharges, balance lookups, wrong passwords, staff sign-in,
errors, a database failure mid-request), no card password, full card number, staff password,
CSRF token or session cookie is in any log line, in the database outside the columns that must
hold it, or in an error page.

The ``*_hash`` columns hold argon2id hashes; every other text column of every table is searched,
``cards`` included: a card is found by a keyed digest of its number, never the number itself.
"""
from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import String, Text, select, text
from sqlalchemy.exc import DBAPIError
from werkzeug.test import TestResponse

from heyon_site.ops import logs
from heyon_site.cards.numbers import number_digest
from heyon_site.extensions import db

from tests import kit
from tests.kit import new_client
from tests.kit import csrf_from, make_card, notification, start_order

CARD, PIN = "8611223344556677", "97531864"
WRONG_PIN = "13572468"
STAFF, STAFF_PASSWORD, WRONG_STAFF_PASSWORD = "till-one", "Staff-Pass-5521-xyz", "Not-The-Pass-8830"
SECRETS = (CARD, PIN, WRONG_PIN, STAFF_PASSWORD, WRONG_STAFF_PASSWORD)
# Columns that hold a (hashed) secret on purpose.
STORED_BY_DESIGN = {("cards", "password_hash"), ("staff_users", "password_hash")}
ERROR_STATUSES = frozenset({400, 404, 405, 413, 415, 429, 500, 503})


def leaks(haystack: str, needles: tuple[str, ...] = SECRETS) -> list[str]:
    return [n for n in needles if n in haystack]


def database_dump() -> str:
    """Every text column of every table, but the ones that hold a secret on purpose."""
    db.session.rollback()
    out = []
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, String | Text)
                   and (table.name, c.name) not in STORED_BY_DESIGN]
        for row in db.session.execute(select(*columns)) if columns else ():
            out.append(f"{table.name}: " + " | ".join(str(v) for v in row))
    db.session.rollback()
    return "\n".join(out)


def form(client: FlaskClient, page: str, **fields: str) -> TestResponse:
    token = csrf_from(client.get(page).get_data(as_text=True))
    return client.post(page.split("?")[0], data={"csrf_token": token, **fields})


@pytest.fixture
def json_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything at DEBUG as production writes it (our JSON formatter, the quiet loggers held at
    WARNING as ``logs.configure`` holds them), plus pytest's own capture of the raw records."""
    caplog.set_level(logging.DEBUG)
    for name in logs.QUIET_LOGGERS:
        caplog.set_level(logging.WARNING, logger=name)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_nothing_secret_in_logs_database_or_error_pages(
        app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture, json_log: io.StringIO) -> None:
    make_card(CARD, PIN, balance_fen=500)
    from tests.staff.kit import add_staff, sign_in
    add_staff(STAFF, "cashier", STAFF_PASSWORD)
    answers: list[TestResponse] = []

    # Customers: a wrong password, a recharge paid and notified, balance lookups.
    answers.append(form(client, "/recharge?lang=en", card_number=CARD, password=WRONG_PIN, amount="100",
                        custom_amount="", method="sandbox"))
    paid = start_order(client, card_number=CARD, password=PIN)
    client.post("/pay/notify/sandbox", data=notification(paid, "100.00"))
    answers.append(form(client, "/balance?lang=en", card_number=CARD, password=PIN))
    answers.append(form(client, "/balance?lang=en", card_number=CARD, password=WRONG_PIN))
    # Staff: a wrong password, then signed in, looking the card up.
    staff = new_client(app)
    answers.append(sign_in(staff, STAFF, WRONG_STAFF_PASSWORD))
    answers.append(sign_in(staff, STAFF, STAFF_PASSWORD))
    answers.append(staff.get(f"/staff/orders?last4={CARD[-4:]}&q={CARD}"))
    # Errors, each carrying the card and its password somewhere.
    answers.append(client.post("/balance", data={"card_number": CARD, "password": PIN}))  # no CSRF token: 400
    answers.append(client.post("/balance", json={"card_number": CARD, "password": PIN}))  # JSON: 400
    answers.append(client.get(f"/balance/{CARD}?password={PIN}"))  # 404, the number in the path
    answers.append(client.put("/balance", data={"card_number": CARD, "password": PIN}))  # 405
    answers.append(failing_lookup(client))  # the database fails with the number in the query

    statuses = [r.status_code for r in answers]
    # SQLite reports the missing table as an OperationalError (503, "briefly unavailable").
    assert statuses[:-1] == [403, 200, 403, 403, 303, 200, 400, 400, 404, 405] and statuses[-1] in (500, 503), statuses
    for r in answers:
        assert not leaks(r.get_data(as_text=True), (PIN, WRONG_PIN, STAFF_PASSWORD, WRONG_STAFF_PASSWORD)), r.status
        if r.status_code in ERROR_STATUSES:
            assert not leaks(r.get_data(as_text=True)), r.status_code

    session_values = [c.value for c in (client.get_cookie("session", domain="heyon.test"),
                                        staff.get_cookie("session", domain="heyon.test")) if c]
    tokens = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/balance").get_data(as_text=True))
    assert session_values and tokens
    written = json_log.getvalue()
    assert '"level":"ERROR"' in written and "/balance/****6677" in written  # the failure logged, the path masked
    for captured in (written, caplog.text):
        assert not leaks(captured, (*SECRETS, *session_values, *tokens))
    assert all(json.loads(line) for line in written.splitlines())

    dump = database_dump()
    assert f"out_trade_no={paid}" in dump  # the dump does reach the raw callbacks
    assert f"{number_digest(CARD)} | {CARD[-4:]}" in dump  # and the cards, found by a digest
    assert not leaks(dump)


def failing_lookup(client: FlaskClient) -> TestResponse:
    """A balance lookup while the cards table is missing (a deploy gone wrong): the statement
    that fails carries the card number as a parameter."""
    db.session.rollback()
    moved = text("ALTER TABLE cards RENAME TO cards_away")
    with db.engine.begin() as conn:
        conn.execute(moved)
    try:
        return form(client, "/balance?lang=en", card_number=CARD, password=PIN)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE cards_away RENAME TO cards"))


def test_database_errors_never_carry_the_values(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    try:
        db.session.execute(text("SELECT * FROM cards_gone WHERE number = :number"), {"number": CARD})
    except DBAPIError:
        logging.getLogger("heyon_site").exception("lookup failed")
    db.session.rollback()
    [logged] = caplog.records
    written = logs.JsonFormatter().format(logged)
    assert "cards_gone" in written and "parameters hidden" in written and CARD not in written + caplog.text


# ------------------------------------------------------------------ a real server's log


@pytest.mark.live
def test_nothing_secret_in_the_server_log(app: Flask, database: str, tmp_path: Path) -> None:
    make_card(CARD, PIN)
    from tests.staff.kit import add_staff
    add_staff(STAFF, "cashier", STAFF_PASSWORD)
    with kit.live_site(database, tmp_path, workers=2) as site:
        browser, staff = requests.Session(), requests.Session()

        def post(session: requests.Session, page: str, **fields: str) -> requests.Response:
            token = csrf_from(session.get(site.url + page, timeout=30).text)
            return session.post(site.url + page.split("?")[0], data={"csrf_token": token, **fields},
                                allow_redirects=False, timeout=30)

        recharge = {"amount": "100", "custom_amount": "", "method": "sandbox", "card_number": CARD}
        assert post(browser, "/recharge?lang=en", **recharge, password=WRONG_PIN).status_code == 403
        assert post(browser, "/recharge?lang=en", **recharge, password=PIN).status_code == 303
        assert post(browser, "/balance?lang=en", card_number=CARD, password=PIN).status_code == 200
        assert post(staff, "/staff/login?lang=en", username=STAFF, password=WRONG_STAFF_PASSWORD).status_code != 303
        assert post(staff, "/staff/login?lang=en", username=STAFF, password=STAFF_PASSWORD).status_code == 303
        assert staff.get(f"{site.url}/staff/orders?last4={CARD[-4:]}&q={CARD}", timeout=30).status_code == 200
        assert browser.get(f"{site.url}/{CARD}?password={PIN}", timeout=30).status_code == 404
        assert browser.post(f"{site.url}/balance", data={"card_number": CARD, "password": PIN}, timeout=30).status_code == 400
        cookies = [c.value for s in (browser, staff) for c in s.cookies if c.name.endswith("session")]
        log = site.log_text()
    assert cookies and f"/****{CARD[-4:]}" in log  # the access line is there, masked
    assert not leaks(log, (*SECRETS, *cookies))


def test_the_whole_run_log_check_finds_a_password_and_ignores_lookalikes() -> None:
    """conftest.suite_log searches the whole run's log with this: it must find a PIN in a
    message, and not in a timestamp's microseconds or inside a longer id."""
    from tests.kit import secrets_in

    assert secrets_in('{"message":"password=246810 for 8600000000001234"}') == ["8600000000001234", "246810"]
    assert secrets_in('{"timestamp":"2026-11-24T21:10:09.246810Z","request_id":"a2468109","n":1246810}') == []
