"""Staff pages speak words, not codes: every staff page, rendered with data in every status, kind,
role and outcome, in Chinese and in English, shows none of the values the database keeps as
codes. And an order's provider callbacks read as a timeline."""
from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import (EVENT_KINDS, LEDGER_KINDS, ORDER_STATES, PROMO_KINDS, STAFF_ROLES, FaqEntry,
                               Promotion, ProviderCallback, RechargeOrder, StaffUser)
from heyon_site.staff import words
from tests.kit import csrf_from, make_card, new_client, notification, order, start_order
from heyon_site.customer.forms import PROVIDER_LABELS
from tests.promos.kit import approve, local, promo_fields, token
from tests.staff.kit import add_staff, sign_in

# Every value kept as a code that a staff page could show.
CODES = {
    *ORDER_STATES, *words.STATUS_REASON, *STAFF_ROLES, *PROMO_KINDS, *words.PROMO_STATE, *LEDGER_KINDS,
    *EVENT_KINDS, *words.OUTCOME, *words.AUDIT_ACTION, *words.PROMO_STEP, *PROVIDER_LABELS,
}
# Usernames that are no code (and no part of one), so a name on the page is not mistaken for one.
ADMIN, SECOND_ADMIN, EDITOR, CASHIER = "mei", "lan", "hua", "jun"


class VisibleText(HTMLParser):
    """The text a person sees, element by element: no tags or attributes, no script or style, and
    not what is shown as what it is (``<pre>``: a raw provider message, ``<code>``: a key)."""

    SKIP = {"script", "style", "pre", "code"}

    def __init__(self) -> None:
        super().__init__()
        self.skipping = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skipping += tag in self.SKIP

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in self.SKIP

    def handle_data(self, data: str) -> None:
        if not self.skipping and data.strip():
            self.texts.append(data.strip())


def visible(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.texts


def codes_in(texts: list[str], lang: str) -> set[str]:
    """Codes shown. A Chinese page has no English words of its own, so any code as a word is one;
    an English page may say "pending" in a sentence, so there a code is one with ``_`` or ``.``,
    or a piece of text that is nothing but a code (a table cell, a label)."""
    found = set()
    for text in texts:
        for code in CODES:
            if text == code or (lang == "zh" or "_" in code or "." in code) and re.search(
                    rf"(?<![\w.]){re.escape(code)}(?![\w.])", text):
                found.add(code)
    return found


def refused(order_no: str, *outcomes: str) -> None:
    """Callbacks with these outcomes on the order's page. The site stores a refused callback
    without an order (what it names is not believed); these rows name one to be shown there."""
    in_write_transaction(lambda: db.session.add_all(
        ProviderCallback(provider="sandbox", body=f"out_trade_no={order_no}&x={o}", order_no=order_no, outcome=o,
                         detail=f"{o} detail", body_size=900) for o in outcomes))


def _notify(client: FlaskClient, order_no: str, yuan: str, **extra: str) -> str:
    return client.post("/pay/notify/sandbox", data=notification(order_no, yuan, **extra)).get_data(as_text=True)


def demo(app: Flask) -> dict[str, str]:
    """Orders in every status and callbacks of every outcome; promotions of every kind and state;
    staff of every role; FAQ entries; and the audit rows all of that wrote. The page paths."""
    for name, role in ((ADMIN, "admin"), (SECOND_ADMIN, "admin"), (EDITOR, "editor"), (CASHIER, "cashier")):
        add_staff(name, role)
    make_card()
    customer = new_client(app)
    credited, mismatch, closed, expired, pending = (start_order(customer) for _ in range(5))
    paid = notification(credited, "100.00")
    assert customer.post("/pay/notify/sandbox", data=paid).get_data(as_text=True) == "success"
    customer.post("/pay/notify/sandbox", data=paid)  # the same notice again: duplicate
    _notify(customer, credited, "100.00")  # a second payment: paid_again
    _notify(customer, credited, "100.00", status="TRADE_CLOSED")  # closed after paid: refunded
    refused(credited, "bad_signature", "malformed", "unknown_order", "received")
    _notify(customer, mismatch, "1.00")  # amount_mismatch
    _notify(customer, closed, "100.00", status="TRADE_CLOSED")  # failed
    _notify(customer, closed, "100.00")  # paid after close: review
    in_write_transaction(lambda: db.session.execute(update(RechargeOrder).where(RechargeOrder.order_no == expired)
                                                    .values(status="expired", status_reason="timeout")))

    admin, second, editor = (new_client(app) for _ in range(3))
    for client, name in ((admin, ADMIN), (second, SECOND_ADMIN), (editor, EDITOR)):
        assert sign_in(client, name).status_code == 303
    for title, over in (("Draft", {"published": ""}), ("Asked", {"kind": "percent_bonus", "value": "", "percent": "5"}),
                        ("Now", {"kind": "discount", "value": "", "percent": "5", "cap": "3"}),
                        ("Later", {"starts": local(timedelta(days=1)), "ends": local(timedelta(days=2))}),
                        ("Over", {}), ("Changed", {})):
        fields = promo_fields(title_en=title, title_zh="活动", **over)
        assert editor.post("/staff/promotions", data={"csrf_token": token(editor), **fields}).status_code == 303
    db.session.rollback()
    ids = {p.title_en: p.id for p in db.session.query(Promotion)}
    for title in ("Now", "Later", "Over", "Changed"):
        assert approve(admin, ids[title]).status_code == 303
    editor.post(f"/staff/promotions/{ids['Over']}/end", data={"csrf_token": token(editor)})
    editor.post(f"/staff/promotions/{ids['Changed']}",
                data={"csrf_token": token(editor), **promo_fields(title_en="Changed", title_zh="活动", value="20")})

    for question, published in (("How do I top up?", "y"), ("Where is my card slip?", "")):
        page = editor.get("/staff/faq/new").get_data(as_text=True)
        r = editor.post("/staff/faq", data={"csrf_token": csrf_from(page), "locale": "en", "category": "Cards",
                                            "question": question, "answer_md": "Ask us.", "position": "10",
                                            "published": published})
        assert r.status_code == 303, r.get_data(as_text=True)[:500]
    db.session.rollback()
    faq_id = db.session.query(FaqEntry.id).order_by(FaqEntry.id).first()
    page = admin.get("/staff/accounts/new").get_data(as_text=True)
    admin.post("/staff/accounts", data={"csrf_token": csrf_from(page), "username": "new-one", "role": "editor",
                                        "new_password": "a-long-staff-password", "again": "a-long-staff-password",
                                        "active": "y"})
    db.session.rollback()
    staff_id = db.session.query(StaffUser.id).filter(StaffUser.username == CASHIER).scalar()
    assert faq_id is not None and staff_id is not None
    pages = ["/staff/", "/staff/orders", "/staff/orders?status=review", "/staff/orders?date_from=2000-01-01",
             "/staff/faq", f"/staff/faq/{faq_id[0]}/edit", "/staff/faq/new", "/staff/promotions",
             "/staff/promotions/new", "/staff/audit", "/staff/accounts", "/staff/accounts/new",
             f"/staff/accounts/{staff_id}", "/staff/account", "/staff/account/totp"]
    pages += [f"/staff/orders/{o}" for o in (credited, mismatch, closed, expired, pending)]
    pages += [f"/staff/promotions/{pid}/edit" for pid in ids.values()]
    return {"credited": credited, **{p: p for p in pages}}


def test_every_table_has_words_for_every_code() -> None:
    tables = {"ORDER_STATUS": words.ORDER_STATUS, "ROLE": words.ROLE, "PROMO_KIND": words.PROMO_KIND,
              "LEDGER_KIND": words.LEDGER_KIND, "EVENT_SAID": words.EVENT_SAID, "REFUND_STATUS": words.REFUND_STATUS,
              "RESOLUTION_ACTION": words.RESOLUTION_ACTION, "RESOLUTION_STATE": words.RESOLUTION_STATE,
              "REFUND_ORIGIN": words.REFUND_ORIGIN, "OUTBOX_CHANNEL": words.OUTBOX_CHANNEL,
              "OUTBOX_STATUS": words.OUTBOX_STATUS, "OUTBOX_TEMPLATE": words.OUTBOX_TEMPLATE,
              "VOUCHER_BATCH_STATE": words.VOUCHER_BATCH_STATE, "VOUCHER_STATUS": words.VOUCHER_STATUS,
              "INVOICE_STATE": words.INVOICE_STATE, "INVOICE_BUYER": words.INVOICE_BUYER}
    assert set(tables) == set(words.every_code())
    for name, codes in words.every_code().items():
        assert set(codes) <= set(tables[name]), name


def test_no_staff_page_shows_a_code_in_either_language(app: Flask) -> None:
    data = demo(app)
    admin = new_client(app)
    assert sign_in(admin, ADMIN).status_code == 303
    paths = [p for p in data if p.startswith("/staff")]
    assert len(paths) > 20
    shown: dict[str, set[str]] = {}
    for lang in ("zh", "en"):
        for path in paths:
            r = admin.get(path + ("&" if "?" in path else "?") + f"lang={lang}")
            assert r.status_code == 200, (path, r.status_code)
            found = codes_in(visible(r.get_data(as_text=True)), lang)
            if found:
                shown[f"{lang} {path}"] = found
    assert shown == {}
    # The pages did have something to show: the codes are in the data, the words on the pages.
    audit = visible(admin.get("/staff/audit?lang=en").get_data(as_text=True))
    assert {"Ended a promotion", "Approved and published a promotion", "Created a staff account"} <= set(audit)


def test_the_check_finds_a_code_where_there_is_one() -> None:
    """The check above would see a leak: raw codes in visible text are found, hidden ones not."""
    html = ("<td>pending</td><p>The fixed_bonus kind</p><p>状态 running</p><pre>review</pre>"
            "<code>order:1:recharge</code><a title='admin'>x</a>")
    assert codes_in(visible(html), "en") == {"pending", "fixed_bonus"}
    assert codes_in(visible(html), "zh") == {"pending", "fixed_bonus", "running"}
    assert codes_in(visible("<p>Needs review, then pending payment</p>"), "en") == set()


def test_the_order_page_shows_callbacks_as_a_timeline(app: Flask) -> None:
    add_staff(CASHIER, "cashier")
    make_card()
    customer = new_client(app)
    order_no = start_order(customer)
    paid = notification(order_no, "100.00")
    assert customer.post("/pay/notify/sandbox", data=paid).get_data(as_text=True) == "success"
    customer.post("/pay/notify/sandbox", data=paid)
    refused(order_no, "bad_signature")
    cashier = new_client(app)
    sign_in(cashier, CASHIER)

    body = cashier.get(f"/staff/orders/{order_no}?lang=en").get_data(as_text=True)
    timeline = re.search(r'<ol class="timeline">(.*?)</ol>', body, re.S)
    assert timeline, body[:2000]
    steps = re.findall(r"<li[^>]*>(.*?)</li>", timeline.group(1), re.S)
    said = [re.search(r'<p class="said">(.*?)</p>', s, re.S).group(1).strip() for s in steps]  # type: ignore[union-attr]
    did = [re.search(r'<p class="did">(.*?)</p>', s, re.S).group(1).strip() for s in steps]  # type: ignore[union-attr]
    assert said == ["payment succeeded, ¥100.00", "the same notice again", "signature refused"]
    assert did == ["Credited the card", "Already on record: acknowledged, nothing done again",
                   "Refused: not proven to come from the provider"]
    # When, in the site's time (UTC+8), and the raw message folded away under each.
    received = order(order_no).updated_at + timedelta(hours=8)
    assert received.strftime("%Y-%m-%d %H:") in steps[0]
    assert all(re.search(r"<details>\s*<summary>[^<]*Raw message[^<]*</summary>\s*<pre>", s) for s in steps)
    assert f"out_trade_no={order_no}" in steps[0]

    zh = cashier.get(f"/staff/orders/{order_no}?lang=zh").get_data(as_text=True)
    assert "支付成功，¥100.00" in zh and "签名验证未通过" in zh and "已充入卡中" in zh
