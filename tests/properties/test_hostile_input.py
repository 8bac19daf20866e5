"""Every customer form given empty, huge, control-character, markup, SQL-looking or full-width
input answers a clear message in the page's language with a 4xx, never a 5xx, echoes nothing
unescaped, and leaves the books untouched.

The customer forms are the recharge form (``POST /recharge``) and the sandbox gateway's form
(``POST /pay/sandbox/<order_no>``). A few values are legitimate once normalised (a card number or
an amount typed with a Chinese IME's full-width digits, a blank "other amount"): those must go
through, and the corpus says so case by case.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from heyon_site.cards.numbers import number_digest
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, LedgerEntry, RechargeOrder, SandboxPayment

from tests.kit import new_client
from tests.kit import CARD, PIN, csrf_from, gateway_order_no, gateway_path, hidden_value, make_card, order, recharge_form, start_order
from tests.properties.kit import CORPUS, FULLWIDTH_AMOUNT, FULLWIDTH_CARD, HEADERS, IMG, NOT_AN_AMOUNT, SCRIPT, SUBSET, TEN_KB, TOO_BIG, ZH, assert_in_language, assert_nothing_unescaped


# ------------------------------------------------------------------ the corpus


RECHARGE_FIELDS = ("csrf_token", "card_number", "password", "amount", "custom_amount", "method")
GATEWAY_FIELDS = ("csrf_token", "outcome")

# The messages, by their English msgids (the zh text comes from the catalog).
TOO_LARGE = ("Too much data", "What you sent is too large. Please check it and try again.")
EXPIRED = ("This page has expired", "For your safety, forms expire. Reload the page and submit it again.")
BAD_REQUEST = ("Something in the request was not right", "Please go back, reload the page and try again.")
NOT_DIGITS = "A card number has 10 to 19 digits; check the number printed on your card."
WRONG_CARD = "The card number or password is wrong. Check both and try again."


@dataclass(frozen=True)
class Refused:
    status: int
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Accepted:
    amount_fen: int


def recharge_answer(field: str, value: str) -> Refused | Accepted:
    """What the recharge form must answer when ``field`` alone is set to ``value``."""
    if value == TOO_BIG:
        return Refused(413, TOO_LARGE)
    if field == "csrf_token":
        return Refused(400, EXPIRED)
    if field == "card_number":
        if value == FULLWIDTH_CARD:
            return Accepted(10000)
        if value == "":
            return Refused(422, ("Enter the card number.",))
        if value == TEN_KB:
            return Refused(422, ("That card number is too long.", NOT_DIGITS))
        return Refused(422, (NOT_DIGITS,))
    if field == "password":
        if value == "":
            return Refused(422, ("Enter the card password.",))
        if value == TEN_KB:
            return Refused(422, ("That password is too long.",))
        # Anything else is just a wrong password, answered like an unknown card.
        return Refused(403, (WRONG_CARD,))
    if field == "amount":
        # The choice is a preset or "Other"; anything else (a full-width number too) is none.
        return Refused(422, ("Choose an amount.",))
    if field == "custom_amount":  # sent with "Other" chosen, as the page does it
        if value.strip() == "":
            return Refused(422, ("Type the amount, or choose one of the amounts above.",))
        if value == FULLWIDTH_AMOUNT:
            return Accepted(10050)
        if len(value.strip()) > 20:
            return Refused(422, ("That amount is too long.",))
        return Refused(422, (NOT_AN_AMOUNT,))
    assert field == "method"
    return Refused(422, ("Choose a payment method.",))


def gateway_answer(field: str, value: str) -> Refused:
    if value == TOO_BIG:
        return Refused(413, TOO_LARGE)
    return Refused(400, EXPIRED if field == "csrf_token" else BAD_REQUEST)


# A submitted form with no amount at all is charged the preset shown on the blank page.


def cases(fields: tuple[str, ...], names: tuple[str, ...] | None = None) -> list[Any]:
    params = []
    for field in fields:
        for name in names or tuple(CORPUS):
            params.append(pytest.param(field, CORPUS[name], id=f"{field}-{name}"))
    return params


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Books:
    """Everything a refused form must leave as it was."""

    orders: int
    ledger_entries: int
    balances: tuple[tuple[str, int], ...]
    sandbox_payments: int


def books() -> Books:
    db.session.rollback()  # read what the requests committed, not an old snapshot

    def count(model: Any) -> int:
        return int(db.session.scalar(select(func.count()).select_from(model)) or 0)

    balances = tuple((n, b) for n, b in db.session.execute(select(Card.number_digest, Card.balance_fen).order_by(Card.id)))
    return Books(count(RechargeOrder), count(LedgerEntry), balances, count(SandboxPayment))


def form_data(c: FlaskClient, lang: str, **fields: str) -> dict[str, str]:
    """The recharge form as served in ``lang``, with this visitor's CSRF token.

    Not kit.recharge_form: that one loads ``?lang=en``, whose cookie would pin English.
    """
    html = c.get("/recharge", headers=HEADERS[lang]).get_data(as_text=True)
    data = {"csrf_token": csrf_from(html), "offer": hidden_value(html, "offer"), "form_id": hidden_value(html, "form_id"),
            "card_number": CARD, "password": PIN, "amount": "100", "custom_amount": "", "method": "sandbox"}
    if "custom_amount" in fields:
        data["amount"] = "other"  # a typed amount counts only with "Other" chosen
    data.update(fields)
    return data


def assert_refused(r: TestResponse, expected: Refused, lang: str, htmx: bool, before: Books) -> None:
    body = r.get_data(as_text=True)
    assert r.status_code == expected.status, (r.status_code, body[:600])
    assert "Location" not in r.headers and "HX-Redirect" not in r.headers
    assert_in_language(body, lang, expected.messages)
    assert ("<html" in body) is not htmx  # htmx swaps in a fragment; a browser needs the page
    assert books() == before


def assert_sent_to_gateway(r: TestResponse, htmx: bool, amount_fen: int, before: Books) -> None:
    if htmx:  # htmx follows HX-Redirect; a 3xx would be followed by XHR and swapped into the form
        assert r.status_code == 204, r.get_data(as_text=True)[:600]
        target = r.headers["HX-Redirect"]
    else:
        assert r.status_code == 303, r.get_data(as_text=True)[:600]
        target = r.headers["Location"]
    made = order(gateway_order_no(target))
    assert (made.status, made.amount_fen, made.card.number_digest) == ("pending", amount_fen, number_digest(CARD))
    after = books()
    # A new order only: no money moves before the payment is confirmed.
    assert after.orders == before.orders + 1
    assert (after.ledger_entries, after.balances) == (before.ledger_entries, before.balances)


def check_recharge(c: FlaskClient, lang: str, field: str, value: str) -> None:
    htmx = "HTTP_HX_REQUEST" in c.environ_base
    make_card()
    before = books()
    r = c.post("/recharge", data=form_data(c, lang, **{field: value}), headers=HEADERS[lang])
    body = r.get_data(as_text=True)
    assert r.status_code < 500, body[:600]
    assert_nothing_unescaped(body, value)
    if field == "password" and len(value.strip()) > 4:
        assert str(escape(value)) not in body  # a password is never sent back
    if field in ("card_number", "custom_amount") and value in (SCRIPT, IMG) and r.status_code == 422:
        assert str(escape(value)) in body  # the typed text is kept for correction, escaped
    expected = recharge_answer(field, value)
    if isinstance(expected, Accepted):
        assert_sent_to_gateway(r, htmx, expected.amount_fen, before)
    else:
        assert_refused(r, expected, lang, htmx, before)


@pytest.fixture
def order_no(app: Flask) -> str:
    """A pending 100-yuan sandbox order, made without a client so no language cookie is set."""
    card_id = make_card()
    return in_write_transaction(lambda: start_recharge(db.session, card_id, 10000, "sandbox", "zh_Hans").order_no)


def check_gateway(app: Flask, c: FlaskClient, order_no: str, lang: str, field: str, value: str) -> None:
    htmx = "HTTP_HX_REQUEST" in c.environ_base
    before = books()
    page = c.get(gateway_path(order_no), headers=HEADERS[lang])
    data = {"csrf_token": csrf_from(page.get_data(as_text=True)), "outcome": "pay", field: value}
    r = c.post(gateway_path(order_no), data=data, headers=HEADERS[lang])
    assert r.status_code < 500
    assert_nothing_unescaped(r.get_data(as_text=True), value)
    assert_refused(r, gateway_answer(field, value), lang, htmx, before)
    assert app.extensions["heyon.test_outbox"] == []  # no notification was sent either
    assert order(order_no).status == "pending"


# ------------------------------------------------------------------ the corpus, field by field


@pytest.mark.parametrize(("field", "value"), cases(RECHARGE_FIELDS))
def test_recharge_form_takes_hostile_input_calmly(client: FlaskClient, field: str, value: str) -> None:
    check_recharge(client, "zh", field, value)


@pytest.mark.parametrize(("face", "lang"), [("htmx", "zh"), ("plain", "en"), ("htmx", "en")])
@pytest.mark.parametrize(("field", "value"), cases(RECHARGE_FIELDS, SUBSET))
def test_recharge_form_hostile_input_as_htmx_and_in_english(
        app: Flask, face: str, lang: str, field: str, value: str) -> None:
    check_recharge(new_client(app, face == "htmx"), lang, field, value)


@pytest.mark.parametrize(("field", "value"), cases(GATEWAY_FIELDS))
def test_gateway_form_takes_hostile_input_calmly(
        app: Flask, client: FlaskClient, order_no: str, field: str, value: str) -> None:
    check_gateway(app, client, order_no, "zh", field, value)


@pytest.mark.parametrize(("face", "lang"), [("htmx", "zh"), ("plain", "en"), ("htmx", "en")])
@pytest.mark.parametrize(("field", "value"), cases(GATEWAY_FIELDS, ("empty", "script", "img-attr", "1MB")))
def test_gateway_form_hostile_input_as_htmx_and_in_english(
        app: Flask, order_no: str, face: str, lang: str, field: str, value: str) -> None:
    check_gateway(app, new_client(app, face == "htmx"), order_no, lang, field, value)


@pytest.mark.parametrize("ref", [
    pytest.param("%00", id="nul"), pytest.param("%3Cscript%3E", id="script"), pytest.param("x" * 3000, id="3000-chars"),
    pytest.param("1%27%20OR%201=1%20--", id="sql-or"), pytest.param("%E2%80%AE", id="rtl-override"),
    pytest.param("2611240000000001%00", id="number-then-nul"),
])
def test_a_hostile_order_reference_in_the_address_is_not_found(client: FlaskClient, ref: str) -> None:
    # The gateway form's address carries the order number, and order pages a token; both reach a query.
    token = csrf_from(client.get("/recharge").get_data(as_text=True))
    for r in (client.get(f"/pay/sandbox/{ref}"),
              client.post(f"/pay/sandbox/{ref}", data={"csrf_token": token, "outcome": "pay"}),
              client.get(f"/orders/{ref}"), client.get(f"/orders/{ref}/receipt")):
        body = r.get_data(as_text=True)
        assert r.status_code == 404, (r.request.path, r.status_code)
        assert ZH["Page not found"] in body and "<script>" not in body


# ------------------------------------------------------------------ CSRF


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("face", ["plain", "htmx"])
@pytest.mark.parametrize("token", ["missing", "garbage", "another-visitors"])
def test_a_missing_or_wrong_csrf_token_gets_the_expired_page(
        app: Flask, face: str, lang: str, token: str) -> None:
    make_card()
    c = new_client(app, face == "htmx")
    data = form_data(c, lang)
    if token == "missing":
        del data["csrf_token"]
    elif token == "garbage":
        data["csrf_token"] = "not-a-token"
    else:  # well formed and correctly signed, but bound to someone else's session
        other = new_client(app)
        data["csrf_token"] = csrf_from(other.get("/recharge").get_data(as_text=True))
        assert data["csrf_token"] != csrf_from(c.get("/recharge").get_data(as_text=True))
    before = books()
    r = c.post("/recharge", data=data, headers=HEADERS[lang])
    assert_refused(r, Refused(400, EXPIRED), lang, face == "htmx", before)


def test_htmx_with_a_wrong_csrf_header_gets_the_expired_page(hx: FlaskClient) -> None:
    # htmx sends the token from <body hx-headers>; a form without the field relies on it.
    make_card()
    data = form_data(hx, "en")
    del data["csrf_token"]
    before = books()
    r = hx.post("/recharge", data=data, headers={**HEADERS["en"], "X-CSRFToken": "not-a-token"})
    assert_refused(r, Refused(400, EXPIRED), "en", True, before)


# ------------------------------------------------------------------ content types


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_json_without_the_csrf_header_is_refused(client: FlaskClient, lang: str) -> None:
    make_card()
    before = books()
    r = client.post("/recharge", json=form_data(client, lang), headers=HEADERS[lang])
    assert_refused(r, Refused(400, EXPIRED), lang, False, before)


@pytest.mark.parametrize("with_header", [False, True], ids=["no-header", "csrf-header"])
def test_text_plain_is_refused(client: FlaskClient, with_header: bool) -> None:
    make_card()
    data = form_data(client, "zh")
    headers = {"X-CSRFToken": data["csrf_token"]} if with_header else {}
    before = books()
    r = client.post("/recharge", data="&".join(f"{k}={v}" for k, v in data.items()),
                    content_type="text/plain", headers=headers)
    assert 400 <= r.status_code < 500, r.status_code
    assert books() == before


@pytest.mark.parametrize("body", [
    pytest.param("form-as-json", id="form-as-json"),
    pytest.param("string", id="string"),
    pytest.param("list", id="list"),
    pytest.param("number-field", id="number-field"),
    pytest.param("object-field", id="object-field"),
    pytest.param("null-field", id="null-field"),
])
def test_json_with_the_csrf_header_is_refused(client: FlaskClient, body: str) -> None:
    # htmx sends X-CSRFToken on every request, so this is what a JSON-speaking script would do.
    make_card()
    form: dict[str, Any] = form_data(client, "zh")
    token = form.pop("csrf_token")
    payload: Any = {
        "form-as-json": form, "string": "card_number", "list": [CARD, PIN],
        "number-field": {**form, "card_number": int(CARD)}, "object-field": {**form, "password": {"pin": PIN}},
        "null-field": {**form, "card_number": None},
    }[body]
    before = books()
    r = client.post("/recharge", json=payload, headers={"X-CSRFToken": token})
    assert 400 <= r.status_code < 500, r.status_code
    assert books() == before


@pytest.mark.parametrize("field", [
    pytest.param("card_number"), pytest.param("password"),
    pytest.param("custom_amount"), "amount", "method",
])
def test_a_file_instead_of_a_text_field_is_refused(client: FlaskClient, field: str) -> None:
    make_card()
    data: dict[str, Any] = form_data(client, "zh")
    data[field] = (io.BytesIO(data[field].encode() or b"100"), "upload.txt")
    before = books()
    r = client.post("/recharge", data=data, content_type="multipart/form-data")
    assert 400 <= r.status_code < 500, r.status_code
    assert books() == before


def test_multipart_form_with_only_text_fields_still_works(client: FlaskClient) -> None:
    # A browser sends multipart/form-data when a form asks for it; that is not hostile.
    make_card()
    r = client.post("/recharge", data=form_data(client, "zh"), content_type="multipart/form-data")
    assert r.status_code == 303


def test_gateway_json_list_with_the_csrf_header_is_refused(client: FlaskClient, order_no: str) -> None:
    token = csrf_from(client.get(gateway_path(order_no)).get_data(as_text=True))
    r = client.post(gateway_path(order_no), json=["pay"], headers={"X-CSRFToken": token})
    assert 400 <= r.status_code < 500, r.status_code


# ------------------------------------------------------------------ the two faces of a refusal


def test_htmx_gets_a_fragment_and_a_browser_a_full_page(client: FlaskClient, hx: FlaskClient) -> None:
    make_card()
    plain = client.post("/recharge", data=form_data(client, "zh", card_number=""))
    frag = hx.post("/recharge", data=form_data(hx, "zh", card_number=""))
    assert plain.status_code == frag.status_code == 422
    page, fragment = plain.get_data(as_text=True), frag.get_data(as_text=True)
    assert page.lstrip().startswith("<!doctype html>") and '<html lang="zh-Hans">' in page
    assert '<form id="recharge-form"' in page
    # hx-target="this" hx-swap="outerHTML": the answer must be the form and nothing around it.
    assert fragment.lstrip().startswith('<form id="recharge-form"') and fragment.rstrip().endswith("</form>")
    assert "<html" not in fragment and "<body" not in fragment
    for body in (page, fragment):
        assert ZH["Enter the card number."] in body and 'aria-invalid="true"' in body


# ------------------------------------------------------------------ card numbers and passwords


@pytest.mark.parametrize("spelling", [
    "8600 0000 0000 1234", "8600-0000-0000-1234", " 8600000000001234 ", FULLWIDTH_CARD,
    "８６００　００００　００００　１２３４",  # full-width digits and ideographic spaces
    "８６００－００００－００００－１２３４",  # full-width hyphens
])
def test_a_card_number_as_typed_on_a_phone_finds_the_card(client: FlaskClient, spelling: str) -> None:
    card_id = make_card()
    assert order(start_order(client, card_number=spelling)).card_id == card_id


def test_a_full_width_password_opens_the_card(client: FlaskClient) -> None:
    card_id = make_card()
    assert order(start_order(client, password="２４６８１０")).card_id == card_id


def _comparable(body: str, card_number: str) -> str:
    """The body without what legitimately differs: CSRF token values, one-time form ids and the
    echoed number."""
    body = re.sub(r'(name="(?:csrf_token|form_id)" type="hidden" value=")[^"]*"', r'\1"', body)
    body = re.sub(r'("X-CSRFToken": ")[^"]*"', r'\1"', body)
    return body.replace(f'value="{card_number}"', 'value="(card number)"')


@pytest.mark.parametrize("face", ["plain", "htmx"])
def test_wrong_password_and_unknown_card_are_indistinguishable(app: Flask, face: str) -> None:
    c = new_client(app, face == "htmx")
    make_card()
    unknown_card = "8600000000009999"
    wrong = c.post("/recharge", data=recharge_form(c, password="135790"))
    unknown = c.post("/recharge", data=recharge_form(c, card_number=unknown_card))
    assert wrong.status_code == unknown.status_code == 403
    wrong_body, unknown_body = wrong.get_data(as_text=True), unknown.get_data(as_text=True)
    assert WRONG_CARD in wrong_body  # recharge_form asks for English
    assert f'value="{CARD}"' in wrong_body and f'value="{unknown_card}"' in unknown_body
    assert _comparable(wrong_body, CARD) == _comparable(unknown_body, unknown_card)
