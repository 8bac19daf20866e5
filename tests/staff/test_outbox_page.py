"""/staff/outbox: the messages to customers that were given up, with their recipients masked, and
the counts of those waiting, sent and given up (cashiers and admins); and e-mail addresses masked
on the order page too."""
from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from heyon_site.billing import notices
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import OutboxMessage
from heyon_site.staff import words
from tests.kit import make_card, new_client, start_order
from tests.staff.kit import signed_in
from tests.staff.test_words import codes_in, visible

PHONE, MAIL = "+8613800138000", "mei.li@example.com"


def message(key: str, card_id: int | None, status: str, recipient: str, channel: str = "sms",
            template: str = notices.LOW_BALANCE, error: str | None = None, attempts: int = 0) -> None:
    def add() -> None:
        notices.enqueue(db.session, key, channel, recipient, template, {"last4": "1234"}, "en", card_id)
        db.session.execute(update(OutboxMessage).where(OutboxMessage.key == key)
                           .values(status=status, last_error=error, attempts=attempts))
    in_write_transaction(add)


def dead_rows(html: str) -> list[str]:
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    assert body, html[:2000]
    return re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)


def test_a_dead_letter_is_listed_with_its_recipient_masked(app: Flask) -> None:
    card_id = make_card()
    message("card:1:low:2026-01-02:sms", card_id, "dead", PHONE, error="PermanentFailure: number unknown", attempts=8)
    message("order:1:credited:email", card_id, "dead", MAIL, "email", notices.RECHARGE_CREDITED,
            error=f"PermanentFailure: mailbox {MAIL} unavailable", attempts=3)
    message("pending:1", card_id, "pending", "+8613900139000")
    message("sent:1", card_id, "sent", "+8613900139000")
    message("sent:2", None, "sent", "lan@example.com", "email")

    client = signed_in(app, "cashier")
    r = client.get("/staff/outbox?lang=en")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert PHONE not in html and "13800138000" not in html and MAIL not in html and "13900139000" not in html
    rows = dead_rows(html)
    assert len(rows) == 2  # only the given up
    sms = next(row for row in rows if "****8000" in row)
    assert "SMS" in sms and "Balance low" in sms and ">8<" in sms and "PermanentFailure: number unknown" in sms
    assert 'href="/staff/orders?last4=1234"' in sms  # to the card's orders
    mail = next(row for row in rows if "m***@example.com" in row)
    assert "E-mail" in mail and "Recharge credited" in mail and ">3<" in mail
    assert "PermanentFailure: mailbox m***@example.com unavailable" in mail  # a provider's words, masked too
    counts = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", html))
    assert counts == {"Waiting to be sent": "1", "Sent": "2", "Given up": "2"}
    # Words, not codes, in both languages.
    codes = {*words.OUTBOX_CHANNEL, *words.OUTBOX_STATUS, *words.OUTBOX_TEMPLATE}
    for lang in ("en", "zh"):
        page = client.get(f"/staff/outbox?lang={lang}").get_data(as_text=True)
        shown = {code for code in codes_in(visible(page), lang) if code in codes}
        assert shown == set(), (lang, shown)
    zh = client.get("/staff/outbox?lang=zh").get_data(as_text=True)
    assert "短信" in zh and "余额不足" in zh and "已放弃" in zh


def test_nothing_given_up_says_so_and_the_nav_links_the_page(app: Flask) -> None:
    admin = signed_in(app, "admin")
    html = admin.get("/staff/outbox?lang=en").get_data(as_text=True)
    assert "No message has been given up." in html and "<tbody>" not in html
    assert re.search(r'<a href="/staff/outbox" aria-current="page">Messages</a>', html)
    assert re.search(r'<a href="/staff/outbox">Messages</a>', admin.get("/staff/?lang=en").get_data(as_text=True))


def test_only_cashiers_and_admins_see_it(app: Flask, client: FlaskClient) -> None:
    assert client.get("/staff/outbox").status_code == 303  # signed out: to the sign-in page
    editor = signed_in(app, "editor")
    assert editor.get("/staff/outbox").status_code == 403
    assert 'href="/staff/outbox"' not in editor.get("/staff/").get_data(as_text=True)
    assert signed_in(app, "cashier").get("/staff/outbox").status_code == 200


def test_the_order_page_shows_the_email_masked(app: Flask) -> None:
    make_card()
    order_no = start_order(new_client(app), email=MAIL)
    html = signed_in(app, "cashier").get(f"/staff/orders/{order_no}?lang=en").get_data(as_text=True)
    assert "<dt>E-mail</dt><dd>m***@example.com</dd>" in html and MAIL not in html
    without = start_order(new_client(app), amount="50")
    assert "<dt>E-mail</dt>" not in signed_in(app, "cashier").get(f"/staff/orders/{without}").get_data(as_text=True)
