"""A customer recharges a card end to end, as a browser without JavaScript and as htmx."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from heyon_site.billing import ledger
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, utcnow

from tests.kit import new_client
from tests.kit import (CARD, PIN, balance, csrf_from, deliver_outbox, hidden_value, live_site, make_card, order, recharge_form,
                  start_order)
from tests.properties.kit import HEADERS
from tests.promos.kit import save

OTHER_CARD = "8611223344556677"


def orders_made() -> int:
    db.session.rollback()  # what the requests committed, not this session's old snapshot
    return db.session.scalar(select(func.count()).select_from(RechargeOrder)) or 0


def test_recharge_page_has_the_english_labels(client: FlaskClient) -> None:
    page = client.get("/recharge?lang=en").get_data(as_text=True)
    for label in ("Card number", "Card password", "Amount", "Payment method", ">Recharge<"):
        assert label in page


def test_paying_on_the_sandbox_credits_the_card_once(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    order_no = start_order(client)
    gateway = client.get(f"/pay/sandbox/{order_no}")
    assert gateway.status_code == 200 and "100.00" in gateway.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', gateway.get_data(as_text=True)).group(1)
    paid = client.post(f"/pay/sandbox/{order_no}", data={"csrf_token": token, "outcome": "pay"})
    assert paid.status_code == 303
    assert order(order_no).status == "pending"  # nothing moves until the notification arrives
    assert deliver_outbox(app, client) == ["success"]
    assert order(order_no).status == "credited"
    assert balance() == 500 + 10000
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    assert order_no in page and "Receipt" in page
    assert ledger.verify(db.session).ok


# ------------------------------------------------------------------ the amount is one choice


def sent_to(r: TestResponse) -> str:
    """Where an answer sends the browser: a 303's Location, or htmx's HX-Redirect."""
    assert r.status_code in (204, 303), (r.status_code, r.get_data(as_text=True)[:400])
    return r.headers.get("HX-Redirect") or r.headers["Location"]


def order_sent_to(r: TestResponse) -> RechargeOrder:
    target = urlsplit(sent_to(r)).path
    gateway = re.fullmatch(r"/pay/sandbox/(\d+)", target)
    if gateway:
        return order(gateway.group(1))
    token = re.fullmatch(r"/orders/([\w-]+)", target)
    assert token, target
    db.session.rollback()
    found = db.session.scalar(select(RechargeOrder).where(RechargeOrder.token == token.group(1)))
    assert found is not None
    return found


@pytest.mark.parametrize("face", ["plain", "htmx"])
def test_a_preset_tapped_after_typing_another_amount_is_what_is_charged(app: Flask, face: str) -> None:
    """Typed 500 under "Other", then tapped 50: 50 is highlighted, so 50 is charged."""
    make_card()
    c = new_client(app, face == "htmx")
    r = c.post("/recharge", data=recharge_form(c, amount="50", custom_amount="500"))
    made = order_sent_to(r)
    assert (made.amount_fen, made.pay_fen) == (5000, 5000)
    gateway = c.get(urlsplit(sent_to(r)).path).get_data(as_text=True)
    assert "¥50.00" in gateway and "500.00" not in gateway


@pytest.mark.parametrize("face", ["plain", "htmx"])
def test_a_typed_amount_counts_only_with_other_chosen(app: Flask, face: str) -> None:
    make_card()
    c = new_client(app, face == "htmx")
    assert order_sent_to(c.post("/recharge", data=recharge_form(c, amount="other", custom_amount="88.50"))).amount_fen == 8850
    # "Other" with nothing typed is not a silent preset: the customer is asked for the amount.
    empty = c.post("/recharge", data=recharge_form(c, amount="other", custom_amount=""), headers=HEADERS["en"])
    assert empty.status_code == 422 and "Type the amount, or choose one of the amounts above." in empty.get_data(as_text=True)
    assert orders_made() == 1


def test_an_other_amount_under_a_promotion_goes_straight_to_payment_only_when_its_quote_was_shown(
        app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    make_card()
    save(kind="percent_bonus", percent_bp=1000)
    # htmx showed the line for 500 and the form carries what it showed: straight to pay.
    line = hx.get("/recharge/quote?amount=other&custom_amount=500", headers=HEADERS["en"]).get_data(as_text=True)
    shown = re.search(r'name="quoted" value="([^"]+)"', line)
    assert shown and shown.group(1) == "50000:50000:5000"
    quoted = order_sent_to(hx.post("/recharge", data=recharge_form(hx, amount="other", custom_amount="500",
                                                                   quoted=shown.group(1))))
    assert (quoted.bonus_fen, quoted.needs_confirmation) == (5000, False)
    # Without JavaScript nothing showed what 500 earns: the order page shows it before paying.
    unseen = order_sent_to(client.post("/recharge", data=recharge_form(client, amount="other", custom_amount="500")))
    assert (unseen.bonus_fen, unseen.needs_confirmation, unseen.pay_url) == (5000, True, None)
    # A quote for another amount, or stale terms, is not what this order gets.
    stale = order_sent_to(client.post("/recharge", data=recharge_form(client, amount="other", custom_amount="500",
                                                                      quoted="50000:50000:0")))
    assert stale.needs_confirmation


def test_a_promotion_that_starts_after_the_page_was_shown_is_confirmed_first(app: Flask, client: FlaskClient) -> None:
    make_card()
    data = recharge_form(client)  # no promotion on the page
    save(kind="discount", percent_bp=1000)  # a discount starts before Recharge is pressed
    made = order_sent_to(client.post("/recharge", data=data))
    assert (made.pay_fen, made.needs_confirmation) == (9000, True)
    page = client.get(f"/orders/{made.token}", headers=HEADERS["en"]).get_data(as_text=True)
    assert re.search(r"<dt>You pay</dt><dd>¥90\.00</dd>", page) and "Pay ¥90.00" in page


def test_confirming_an_order_that_can_no_longer_be_paid_starts_nothing(app: Flask, client: FlaskClient) -> None:
    make_card()
    data = recharge_form(client)
    save(kind="discount", percent_bp=1000)
    made = order_sent_to(client.post("/recharge", data=data))
    in_write_transaction(lambda: db.session.execute(update(RechargeOrder).where(RechargeOrder.id == made.id)
                                                    .values(status="expired", finalized_at=utcnow())))
    r = client.post(f"/orders/{made.token}/start", data={"csrf_token": data["csrf_token"]})
    assert sent_to(r) == f"/orders/{made.token}"
    assert order(made.order_no).pay_url is None
    assert client.post(f"/orders/{made.token}/start", data={}).status_code == 400  # CSRF, as every form


# ------------------------------------------------------------------ one form, one order


@pytest.mark.parametrize("face", ["plain", "htmx"])
def test_a_form_sent_three_times_makes_one_order_and_lands_on_its_gateway(app: Flask, face: str) -> None:
    make_card()
    c = new_client(app, face == "htmx")
    data = recharge_form(c)
    targets = [sent_to(c.post("/recharge", data=data)) for _ in range(3)]
    assert len(set(targets)) == 1 and "/pay/sandbox/" in targets[0]
    assert orders_made() == 1
    # The same form with another amount (back, change, send again) is another recharge.
    other = sent_to(c.post("/recharge", data={**data, "amount": "200"}))
    assert other != targets[0] and order_sent_to(c.post("/recharge", data={**data, "amount": "200"})).amount_fen == 20000
    assert orders_made() == 2
    # A new page is a new form: a new order.
    assert sent_to(c.post("/recharge", data=recharge_form(c))) not in targets
    assert orders_made() == 3


def test_a_form_id_is_bound_to_its_card(app: Flask, client: FlaskClient) -> None:
    """Another card sent with the same form id is its own recharge, never someone else's order."""
    make_card()
    make_card(OTHER_CARD)
    data = recharge_form(client)
    mine = order_sent_to(client.post("/recharge", data=data))
    theirs = order_sent_to(client.post("/recharge", data={**data, "card_number": OTHER_CARD}))
    assert mine.id != theirs.id and theirs.card.last4 == OTHER_CARD[-4:]


@pytest.mark.live
def test_concurrent_repeats_of_one_form_make_one_order(app: Flask, database: str, tmp_path: Path) -> None:
    """Enter pressed again and again, the posts racing on a real server with several workers."""
    make_card()
    with live_site(database, tmp_path, workers=2) as site, requests.Session() as browser:
        html = browser.get(f"{site.url}/recharge?lang=en", timeout=15).text
        data = {"csrf_token": csrf_from(html), "offer": hidden_value(html, "offer"), "form_id": hidden_value(html, "form_id"),
                "card_number": CARD, "password": PIN, "amount": "100", "custom_amount": "", "method": "sandbox"}

        def send(_: int) -> str:
            answer = browser.post(f"{site.url}/recharge", data=data, allow_redirects=False, timeout=30)
            assert answer.status_code == 303, answer.text[:300]
            return answer.headers["Location"]

        # Three at once, as the issue saw it. Not more: each post checks the card password, and
        # the card's throttle counts every attempt before its password is checked (so parallel
        # guesses gain nothing), which lets 3 attempts through at once and makes a 4th wait.
        with ThreadPoolExecutor(max_workers=3) as pool:
            targets = set(pool.map(send, range(3)))
    assert len(targets) == 1
    assert orders_made() == 1


def test_the_summary_before_paying_names_card_ending_terms_and_method(app: Flask, client: FlaskClient) -> None:
    """Filled by htmx as the choices change: a POST (the card number never in a URL) that looks
    nothing up, writes nothing, and is answered without the password."""
    from tests.kit import csrf_from, new_client

    hx = new_client(app, htmx=True)
    token = csrf_from(hx.get("/recharge?lang=en").get_data(as_text=True))
    fields = {"csrf_token": token, "card_number": "8600 0000 0000 1234", "amount": "100", "method": "sandbox"}
    r = hx.post("/recharge/summary", data=fields)
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and body.lstrip().startswith('<p id="summary"') and "<html" not in body
    assert "card ending 1234" in body and "you pay ¥100.00, you receive ¥100.00" in body and "Sandbox (test payment)" in body
    partial = hx.post("/recharge/summary", data={**fields, "card_number": "12", "amount": "other", "custom_amount": "x"})
    assert "card ending" not in partial.get_data(as_text=True) and "Sandbox" in partial.get_data(as_text=True)
    empty = hx.post("/recharge/summary", data={"csrf_token": token})
    assert re.fullmatch(r'\s*<p id="summary" class="summary" aria-live="polite"></p>\s*', empty.get_data(as_text=True))
    assert hx.post("/recharge/summary", data={**fields, "csrf_token": ""}).status_code == 400  # CSRF, like any form
    assert client.post("/recharge/summary", data={**fields, "csrf_token": csrf_from(client.get("/recharge").get_data(as_text=True))}
                       ).status_code == 303  # not htmx: back to the form
    page = client.get("/recharge").get_data(as_text=True)
    assert 'hx-params="card_number,amount,custom_amount,method,csrf_token"' in page  # never the password
