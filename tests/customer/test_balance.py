"""Balance lookup: card number and password in a POST body, the answer never cached or in a URL."""
from __future__ import annotations

import re
import statistics
import time

from flask import Flask
from flask.testing import FlaskClient

from tests.kit import CARD, PIN, csrf_from, deliver_outbox, make_card, start_order

UNKNOWN = "8600000000009999"


def lookup(client: FlaskClient, number: str = CARD, password: str = PIN, lang: str = "en"):
    token = csrf_from(client.get(f"/balance?lang={lang}").get_data(as_text=True))
    return client.post("/balance", data={"csrf_token": token, "card_number": number, "password": password})


def shown_balance(html: str) -> str:
    match = re.search(r'<span id="balance">¥([\d,.]+)</span>', html)
    assert match, html[:800]
    return match.group(1)


def test_the_balance_and_recent_recharges_with_receipts(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=1234)
    credited = start_order(client)
    client.post(f"/pay/sandbox/{credited}", data={
        "csrf_token": csrf_from(client.get(f"/pay/sandbox/{credited}").get_data(as_text=True)), "outcome": "pay"})
    deliver_outbox(app, client)
    pending = start_order(client, amount="50")
    r = lookup(client, "８６００ ００００ ００００ １２３４")  # as typed with a Chinese IME
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert shown_balance(html) == "112.34"
    assert credited in html and pending in html
    assert html.count("/receipt") == 1  # only the credited order has a receipt
    assert PIN not in html and CARD not in html


def test_only_the_last_ten_recharges_are_listed(app: Flask, client: FlaskClient) -> None:
    make_card()
    numbers = [start_order(client, amount="50") for _ in range(12)]
    html = lookup(client).get_data(as_text=True)
    assert [n for n in numbers if n in html] == numbers[2:]


def test_wrong_password_and_unknown_card_are_indistinguishable(app: Flask, client: FlaskClient) -> None:
    make_card()

    def answer(number: str) -> tuple[int, str]:
        r = lookup(client, number, "000000")
        body = re.sub(r'value="[^"]*"', 'value=""', r.get_data(as_text=True))  # CSRF token and echoed number
        body = re.sub(r'"X-CSRFToken": "[^"]*"', "", body)
        return r.status_code, body

    assert answer(CARD) == answer(UNKNOWN)
    assert answer(CARD)[0] == 403


def test_wrong_password_and_unknown_card_take_the_same_time(app: Flask, client: FlaskClient) -> None:
    # Both pay for one argon2 verification; a difference would tell which numbers exist.
    app.config["HEYON_CARD_FREE_ATTEMPTS"] = 100
    make_card()

    timings: dict[str, list[float]] = {CARD: [], UNKNOWN: []}
    for _ in range(15):
        for number in (CARD, UNKNOWN):  # interleaved, so load on the machine hits both alike
            start = time.perf_counter()
            lookup(client, number, "000000")
            timings[number].append(time.perf_counter() - start)
    known, unknown = statistics.median(timings[CARD]), statistics.median(timings[UNKNOWN])
    assert abs(known - unknown) < max(0.5 * min(known, unknown), 0.02), (known, unknown)


def test_the_htmx_face_swaps_the_lookup_block_and_keeps_the_password_out(app: Flask, hx: FlaskClient) -> None:
    make_card(balance_fen=500)
    token = csrf_from(hx.get("/balance").get_data(as_text=True))
    r = hx.post("/balance", data={"csrf_token": token, "card_number": CARD, "password": PIN})
    html = r.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="balance-lookup">') and "<html" not in html
    assert shown_balance(html) == "5.00" and PIN not in html
    assert "HX-Push-Url" not in r.headers  # a balance never becomes a history entry
    assert "余额不多" in html  # zh-Hans by default; 5.00 is below the low-balance line


def test_a_get_never_reveals_a_balance(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    r = client.get(f"/balance?card_number={CARD}&password={PIN}")
    assert r.status_code == 200 and 'id="balance"' not in r.get_data(as_text=True)


def test_figures_are_grouped_and_recharges_dated_in_both_languages(app: Flask, client: FlaskClient) -> None:
    """¥1,780.50 as carriers print it, and each recent recharge with its date and time (site time)."""
    from heyon_site import sitetime
    from tests.kit import order

    make_card(balance_fen=178050)
    at = order(start_order(client, amount="50")).created_at
    local = sitetime.shown(at, sitetime.zone(app.config))[:16]  # "YYYY-MM-DD HH:MM"
    for lang, label in (("en", "Balance: "), ("zh", "余额：")):
        html = lookup(client, lang=lang).get_data(as_text=True)
        assert shown_balance(html) == "1,780.50" and f'{label}<span id="balance">' in html
        assert local in html and "¥50.00" in html
