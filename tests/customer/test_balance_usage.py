"""Issue 17, the customer's side: an e-mail address given with a recharge, the card's usage on the
balance page, and the low-balance reminder set from a balance result (authorised by a short-lived
grant, never by the password again) and sent at most once a day."""
from __future__ import annotations

import random
import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from sqlalchemy import func, select, update

from heyon_site import sitetime
from heyon_site.billing.ledger import credit
from heyon_site.billing.usage import Charge, apply_charge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, OutboxMessage, RechargeOrder
from heyon_site.web import page_cache
from tests.properties.kit import BLNS, answer, reflected
from tests.kit import CARD, PIN, csrf_from, hidden_value, make_card, new_client, order, recharge_form, start_order

OTHER_CARD, OTHER_PIN = "8611223344556677", "97531864"
PHONE = "+8613800138000"


def card_row(card_id: int) -> Card:
    db.session.rollback()
    found = db.session.get(Card, card_id, populate_existing=True)
    assert found is not None
    return found


def set_phone(card_id: int, phone: str | None = PHONE) -> None:
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(msisdn=phone)))


def lookup(client: FlaskClient, number: str = CARD, password: str = PIN, lang: str = "en") -> str:
    token = csrf_from(client.get(f"/balance?lang={lang}").get_data(as_text=True))
    r = client.post("/balance", data={"csrf_token": token, "card_number": number, "password": password})
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_data(as_text=True)


def reminder_fields(html: str) -> dict[str, str]:
    """The reminder form's hidden fields as the balance result gave them."""
    form = re.search(r'<form[^>]*action="/balance/reminder".*?</form>', html, re.S)
    assert form, html[:1000]
    fields = dict(re.findall(r'<input[^>]*?name="(card|grant|csrf_token)"[^>]*?value="([^"]*)"', form.group(0)))
    assert set(fields) == {"card", "grant", "csrf_token"}, fields
    return fields


def post_reminder(client: FlaskClient, fields: dict[str, str], threshold: str, lang: str = ""):  # type: ignore[no-untyped-def]
    path = "/balance/reminder" + (f"?lang={lang}" if lang else "")
    return client.post(path, data={**fields, "threshold": threshold})


def settings(card_id: int) -> tuple[int | None, str | None]:
    card = card_row(card_id)
    return card.low_balance_fen, card.low_balance_locale


# ------------------------------------------------------------------ the e-mail address on the recharge form


def test_the_email_given_with_a_recharge_is_stored_with_the_order(app: Flask, client: FlaskClient) -> None:
    make_card()
    page = client.get("/recharge?lang=en").get_data(as_text=True)
    field = re.search(r'<input[^>]*name="email"[^>]*>', page)
    assert field and 'type="email"' in field.group(0) and 'autocomplete="email"' in field.group(0)
    assert 'maxlength="254"' in field.group(0) and not re.search(r'value="[^"]', field.group(0))
    assert re.search(r'<label for="email">E-mail for the receipt \(optional\)</label>', page)
    # As a Chinese input method may type it: full-width "＠", a capitalised domain, spaces around.
    with_mail = start_order(client, email=" Mei.Li＠Example.COM ")
    without = start_order(client, amount="50")
    assert order(with_mail).email == "Mei.Li@example.com"
    assert order(without).email is None


@pytest.mark.parametrize("bad", ["not-an-address", "a@b", "a b@example.com", "<x>@example.com", "x" * 250 + "@a.cn"])
def test_a_bad_email_is_refused_with_a_message_and_makes_no_order(app: Flask, client: FlaskClient, bad: str) -> None:
    make_card()
    r = client.post("/recharge", data=recharge_form(client, email=bad))
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert ("Enter an e-mail address like name@example.com, or leave it empty." in html
            or "That e-mail address is too long." in html)
    assert 'aria-invalid="true"' in re.search(r'<input[^>]*name="email"[^>]*>', html).group(0)  # type: ignore[union-attr]
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 0


def test_the_refusal_speaks_chinese_by_default(app: Flask) -> None:
    make_card()
    client = new_client(app)  # no ?lang=, no cookie: the default language
    html = client.get("/recharge").get_data(as_text=True)
    data = {"csrf_token": csrf_from(html), "offer": hidden_value(html, "offer"), "form_id": hidden_value(html, "form_id"),
            "card_number": CARD, "password": PIN, "amount": "100", "method": "sandbox", "email": "nobody"}
    r = client.post("/recharge", data=data)
    assert r.status_code == 422 and "请输入电子邮箱地址" in r.get_data(as_text=True)


def test_the_cached_form_has_an_empty_email_and_each_visitor_their_own_form_id(app: Flask) -> None:
    app.config["HEYON_PAGE_CACHE_SECONDS"] = 60
    make_card()
    first, second = new_client(app), new_client(app)
    a = first.get("/recharge?lang=en").get_data(as_text=True)
    assert start_order(first, email="mei@example.com")  # a first visitor's address...
    b = second.get("/recharge?lang=en").get_data(as_text=True)
    assert "mei@example.com" not in a + b  # ...never reaches anyone's page
    assert hidden_value(a, "form_id") != hidden_value(b, "form_id")
    assert page_cache.FORM_ID_PLACEHOLDER not in a + b and page_cache.PLACEHOLDER not in a + b
    # The same form sent twice is still one order, with the address the first one gave.
    data = recharge_form(second, email="lan@example.com")
    assert second.post("/recharge", data=data).status_code == 303
    assert second.post("/recharge", data=data).status_code == 303
    emails = db.session.scalars(select(RechargeOrder.email).order_by(RechargeOrder.id)).all()
    assert emails == ["mei@example.com", "lan@example.com"]


# ------------------------------------------------------------------ usage on the balance page


def charge(card_id: int, n: int, at: datetime, fen: int = 120, kind: str = "voice", what: str = "") -> None:
    result = in_write_transaction(lambda: apply_charge(
        db.session, "network", Charge(f"c{n}", card_id, fen, at, kind, what), today=at.date()))
    assert result.status == "applied", result


def test_the_balance_lists_the_last_ten_usage_charges_newest_first(app: Flask, client: FlaskClient) -> None:
    card_id = make_card(balance_fen=10000)
    start = datetime(2026, 3, 1, 16, 30)  # UTC: 00:30 the next day in the site's zone
    kinds = ["voice", "data", "sms", "other"]
    for n in range(12):
        charge(card_id, n, start + timedelta(hours=n), fen=100 + n, kind=kinds[n % 4], what=f"Call <{n}>")
    # A refused charge took no money: it is not a charge the customer paid.
    refused = in_write_transaction(lambda: apply_charge(
        db.session, "network", Charge("big", card_id, 10**9, start + timedelta(days=1), "data"), today=start.date()))
    assert refused.status == "refused"

    html = lookup(client)
    section = re.search(r"<h2>Recent usage</h2>\s*<ul[^>]*>(.*?)</ul>", html, re.S)
    assert section, html[:2000]
    items = re.findall(r"<li>(.*?)</li>", section.group(1), re.S)
    assert len(items) == 10
    zone = sitetime.zone(app.config)
    words = {"voice": "Calls", "data": "Mobile data", "sms": "Text messages", "other": "Other charges"}
    for item, n in zip(items, range(11, 1, -1)):
        local = (start + timedelta(hours=n)).replace(tzinfo=UTC).astimezone(zone)
        assert f">{local:%Y-%m-%d %H:%M}</time>" in item
        assert words[kinds[n % 4]] in item
        assert f"<strong>−¥1.{n:02d}</strong>" in item
        assert f"Call &lt;{n}&gt;" in item  # the network's words, escaped
    assert "¥1,000,000" not in section.group(1)
    assert re.search(r'<span id="balance">¥([\d,.]+)</span>', html).group(1) == f"{(10000 - sum(range(100, 112))) / 100:,.2f}"  # type: ignore[union-attr]


def test_a_card_without_usage_says_so(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    assert "No usage yet." in lookup(client)
    assert "暂无消费记录" in lookup(client, lang="zh")


# ------------------------------------------------------------------ the reminder, set from a balance result


def test_the_reminder_is_set_with_the_grant_and_stored_with_the_language(app: Flask, client: FlaskClient) -> None:
    card_id = make_card(balance_fen=5000)
    set_phone(card_id)
    html = lookup(client)
    assert "Reminders go by SMS to the card's phone number, ****8000" in html
    assert PIN not in html and CARD not in html
    fields = reminder_fields(html)
    assert fields["card"] == str(card_id)
    r = post_reminder(client, fields, "２０")  # full-width, as typed with a Chinese input method
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert "Saved: we will send an SMS to ****8000 when the balance falls below ¥20.00" in body
    assert PHONE not in body and "13800138000" not in body
    assert settings(card_id) == (2000, "en")

    # The same grant, in another language, turns it off again.
    r = post_reminder(client, fields, "", lang="zh")
    assert r.status_code == 200 and "已保存：提醒已关闭" in r.get_data(as_text=True)
    assert settings(card_id) == (None, None)
    assert post_reminder(client, fields, "10", lang="zh-Hant").status_code == 200
    assert settings(card_id) == (1000, "zh_Hant")
    # The result shows what is set now, to change it.
    again = lookup(client, lang="en")
    assert "Set now: below ¥10.00." in again and re.search(r'name="threshold"[^>]*value="10"', again)


def test_without_a_phone_number_the_page_says_no_reminder_can_go(app: Flask, client: FlaskClient) -> None:
    card_id = make_card(balance_fen=5000)
    html = lookup(client)
    assert "This card has no phone number on record, so no reminder can be sent." in html
    r = post_reminder(client, reminder_fields(html), "30")
    assert r.status_code == 200
    assert "Saved, but this card has no phone number on record, so no reminder can be sent." in r.get_data(as_text=True)
    assert settings(card_id) == (3000, "en")


def test_the_htmx_face_swaps_only_the_reminder_section(app: Flask, hx: FlaskClient) -> None:
    card_id = make_card(balance_fen=5000)
    set_phone(card_id)
    token = csrf_from(hx.get("/balance?lang=en").get_data(as_text=True))
    html = hx.post("/balance", data={"csrf_token": token, "card_number": CARD, "password": PIN}).get_data(as_text=True)
    assert 'hx-post="/balance/reminder"' in html and 'hx-target="#reminder"' in html
    r = post_reminder(hx, reminder_fields(html), "15")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and body.lstrip().startswith('<section id="reminder"') and "<html" not in body
    assert 'id="balance"' not in body and settings(card_id) == (1500, "en")


@pytest.mark.parametrize(("threshold", "message"), [
    ("abc", "Enter an amount in yuan, like 10, or leave it empty to turn reminders off."),
    ("1e2", "Enter an amount in yuan, like 10, or leave it empty to turn reminders off."),
    ("-5", "Enter an amount in yuan, like 10, or leave it empty to turn reminders off."),
    ("0.5", "A reminder can be set from 1.00 to 1000.00 yuan."),
    ("5000", "A reminder can be set from 1.00 to 1000.00 yuan."),
    ("9" * 30, "That amount is too long."),
])
def test_a_bad_threshold_is_refused_with_422_and_a_message(
        app: Flask, client: FlaskClient, threshold: str, message: str) -> None:
    card_id = make_card(balance_fen=5000)
    fields = reminder_fields(lookup(client))
    r = post_reminder(client, fields, threshold)
    body = r.get_data(as_text=True)
    assert r.status_code == 422 and message in body
    assert 'aria-invalid="true"' in re.search(r'<input[^>]*name="threshold"[^>]*>', body).group(0)  # type: ignore[union-attr]
    assert hidden_value(body, "grant") == fields["grant"]  # sent back with the form, to try again
    assert settings(card_id) == (None, None)


def test_a_bad_threshold_is_refused_in_chinese_too(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=5000)
    r = post_reminder(client, reminder_fields(lookup(client, lang="zh")), "abc")
    assert r.status_code == 422 and "请输入以元为单位的金额" in r.get_data(as_text=True)


def test_an_expired_grant_is_refused_and_nothing_is_stored(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    card_id = make_card(balance_fen=5000)
    with monkeypatch.context() as m:  # the balance result was shown 16 minutes ago
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 16 * 60)
        fields = reminder_fields(lookup(client))
    r = post_reminder(client, fields, "20")
    assert r.status_code == 403
    assert "This form is more than 15 minutes old. Check your balance again" in r.get_data(as_text=True)
    assert settings(card_id) == (None, None)
    # Fourteen minutes is still fresh.
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 14 * 60)
        fields = reminder_fields(lookup(client))
    assert post_reminder(client, fields, "20").status_code == 200 and settings(card_id) == (2000, "en")


@pytest.mark.parametrize("change", ["tampered", "another card's", "no grant", "other salt", "card changed"])
def test_a_grant_not_for_this_card_is_refused_and_nothing_is_stored(
        app: Flask, client: FlaskClient, change: str) -> None:
    mine, theirs = make_card(balance_fen=5000), make_card(OTHER_CARD, OTHER_PIN, balance_fen=5000)
    fields = reminder_fields(lookup(client))
    other = reminder_fields(lookup(new_client(app), OTHER_CARD, OTHER_PIN))
    if change == "tampered":
        fields["grant"] = fields["grant"][:-2] + ("AA" if not fields["grant"].endswith("AA") else "BB")
    elif change == "another card's":
        fields["grant"] = other["grant"]  # the other card's grant, sent for this card
    elif change == "no grant":
        fields["grant"] = ""
    elif change == "other salt":
        from itsdangerous import URLSafeTimedSerializer
        fields["grant"] = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="another purpose").dumps(mine)
    else:
        fields["card"] = str(theirs)  # this card's grant, sent for the other card
    r = post_reminder(client, fields, "20")
    assert r.status_code == 403, r.status_code
    body = r.get_data(as_text=True)
    assert "This form is not valid. Check your balance again to set the reminder." in body
    assert 'name="threshold"' not in body  # nothing to change without a grant
    assert settings(mine) == settings(theirs) == (None, None)


def test_the_reminder_form_needs_its_csrf_token(app: Flask, client: FlaskClient) -> None:
    card_id = make_card(balance_fen=5000)
    fields = reminder_fields(lookup(client))
    del fields["csrf_token"]
    assert post_reminder(client, fields, "20").status_code == 400
    # And a token of another browser's session is no better.
    fields["csrf_token"] = csrf_from(new_client(app).get("/balance").get_data(as_text=True))
    assert post_reminder(client, fields, "20").status_code == 400
    assert settings(card_id) == (None, None)


def test_a_get_of_the_reminder_address_changes_nothing(app: Flask, client: FlaskClient) -> None:
    card_id = make_card(balance_fen=5000)
    fields = reminder_fields(lookup(client))
    assert client.get("/balance/reminder", query_string={**fields, "threshold": "20"}).status_code == 405
    assert settings(card_id) == (None, None)


# ------------------------------------------------------------------ the reminder itself: at most one a day


def balance_of(card_id: int) -> int:
    return card_row(card_id).balance_fen


def low_balance_messages(card_id: int) -> list[OutboxMessage]:
    db.session.rollback()
    return list(db.session.scalars(select(OutboxMessage).where(
        OutboxMessage.card_id == card_id, OutboxMessage.template == "low_balance").order_by(OutboxMessage.id)))


def test_a_debit_crossing_the_threshold_writes_one_reminder_a_day(app: Flask) -> None:
    card_id = make_card(balance_fen=1500)
    set_phone(card_id)
    in_write_transaction(lambda: db.session.execute(
        update(Card).where(Card.id == card_id).values(low_balance_fen=1000, low_balance_locale="en")))
    day = date(2026, 5, 4)
    at = datetime(2026, 5, 4, 2, 0)

    def top_up(n: int) -> None:
        in_write_transaction(lambda: credit(db.session, card_id, 1000, "adjustment", key=f"test:{card_id}:{n}"))

    charge(card_id, 1, at, fen=400)  # 15.00 -> 11.00: still above
    assert low_balance_messages(card_id) == []
    charge(card_id, 2, at, fen=200)  # 11.00 -> 9.00: crosses
    sent = low_balance_messages(card_id)
    assert len(sent) == 1 and sent[0].recipient == PHONE and sent[0].channel == "sms" and sent[0].locale == "en"
    assert '"balance": "9.00"' in sent[0].params and card_row(card_id).low_balance_sent_on == day
    charge(card_id, 3, at, fen=100)  # below already: no crossing
    top_up(1)
    assert balance_of(card_id) == 1800
    charge(card_id, 4, at + timedelta(hours=1), fen=900)  # 18.00 -> 9.00, crossing again the same day: none
    assert len(low_balance_messages(card_id)) == 1
    top_up(2)
    next_day = at + timedelta(days=1)
    result = in_write_transaction(lambda: apply_charge(  # 19.00 -> 9.00 the next day: one again
        db.session, "network", Charge("c5", card_id, 1000, next_day, "data"), today=day + timedelta(days=1)))
    assert result.status == "applied"
    after = low_balance_messages(card_id)
    assert len(after) == 2 and after[1].key.endswith(f"{day + timedelta(days=1)}:sms")


# ------------------------------------------------------------------ hostile input in the new fields


NAUGHTY = [*random.Random("issue 17").sample(BLNS, 40), "\x00", "a@b.com\x00", "<script>alert(1)</script>@x.cn",
           "１２\u200b３", "9" * 19, "x" * 300]


def test_naughty_emails_are_refused_or_kept_calmly(app: Flask, client: FlaskClient) -> None:
    make_card()
    for n, value in enumerate(NAUGHTY):
        r = answer(lambda value=value: client.post("/recharge", data=recharge_form(client, email=value, amount="50")))
        assert r.status_code in (303, 422), (value, r.status_code)
        assert not reflected(r.get_data(as_text=True), value), value
    stored = [e for e in db.session.scalars(select(RechargeOrder.email)) if e]
    assert all(re.fullmatch(r"[^\s@<>\x00]+@[^\s@<>\x00]+", e) for e in stored), stored


def test_naughty_thresholds_are_refused_calmly(app: Flask, client: FlaskClient) -> None:
    card_id = make_card(balance_fen=5000)
    fields = reminder_fields(lookup(client))
    for value in NAUGHTY:
        r = answer(lambda value=value: post_reminder(client, fields, value))
        assert r.status_code in (200, 422), (value, r.status_code)
        assert not reflected(r.get_data(as_text=True), value), value
        low = settings(card_id)[0]
        assert low is None or 100 <= low <= 100000, (value, low)
