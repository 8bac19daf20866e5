"""Promotions on the site: the window, one promotion at most per order, the promise kept on the order
whatever later happens to the promotion, the quote on the recharge form (both faces, hostile input) and
`flask promos`. The arithmetic of the quote itself is in tests/billing/test_promos.py."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from markupsafe import escape
from sqlalchemy import func, select, update

from heyon_site.billing import ledger
from heyon_site.billing.promos import PromoCaps, Quote, active_promotions, current_quote, quote
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import LedgerEntry, Promotion, RechargeOrder, utcnow
from heyon_site.promos.lifecycle import end_promotion
from tests.kit import (
    CARD,
    PIN,
    balance,
    cli,
    csrf_from,
    deliver_outbox,
    flask_cli,
    make_card,
    new_client,
    notification,
    order,
    recharge_form,
    start_order,
)
from tests.payments.kit import pay_on_gateway, post_notify
from tests.promos.kit import DAY, NOW, promo, quote_line, save
from tests.properties.kit import (
    CORPUS,
    FULLWIDTH_AMOUNT,
    HEADERS,
    NOT_AN_AMOUNT,
    SUBSET,
    assert_in_language,
    assert_nothing_unescaped,
)

CAPS = PromoCaps()  # the defaults: a bonus at most 50 % of the amount paid, a discount at most 30 %


# "input", not "keyup": a Chinese IME or a phone keyboard may type without key events.
TRIGGER = "change from:.amounts, change from:.methods, input changed delay:400ms from:#custom_amount"


def test_the_window_starts_inclusive_and_ends_exclusive(app: Flask) -> None:
    start, end = NOW, NOW + DAY
    pid = save(kind="fixed_bonus", value_fen=100, threshold_fen=200, starts_at=start, ends_at=end)
    tick = timedelta(microseconds=1)
    running = {when: [p.id for p in active_promotions(db.session, when)] for when in (start - tick, start, end - tick, end)}
    assert running == {start - tick: [], start: [pid], end - tick: [pid], end: []}
    p = db.session.get(Promotion, pid)
    assert p is not None
    # quote() checks the window itself: a list fetched a moment ago may hold one that has ended.
    assert quote(10000, [p], end, caps=CAPS) == Quote.face_value(10000)
    assert quote(10000, [p], start, caps=CAPS).bonus_fen == 100


def test_drafts_never_run_and_the_running_come_by_priority_then_age(app: Flask) -> None:
    draft = save(NOW, published=False, priority=9)
    first, second, third = save(NOW, priority=1), save(NOW, priority=5), save(NOW, priority=1)
    assert [p.id for p in active_promotions(db.session, NOW)] == [second, first, third]
    assert draft not in [p.id for p in active_promotions(db.session, NOW)]
    assert quote(10000, [promo(id=draft, published=False, value_fen=100)], NOW, caps=CAPS) == Quote.face_value(10000)


CHANGES = {
    "edited": lambda pid: db.session.execute(update(Promotion).where(Promotion.id == pid).values(
        value_fen=5000, title_en="Changed", threshold_fen=10000)),  # as large a bonus as the schema lets a row hold
    "ended": lambda pid: end_promotion(pid),
}


@pytest.mark.parametrize("change", CHANGES)
def test_an_order_keeps_its_bonus_whatever_happens_to_the_promotion(app: Flask, client: FlaskClient, change: str) -> None:
    make_card(balance_fen=500)
    pid = save(kind="fixed_bonus", value_fen=1000, threshold_fen=10000, title_en="Get 10 more", priority=2)
    order_no = start_order(client)  # 100.00
    made = order(order_no)
    assert (made.amount_fen, made.pay_fen, made.bonus_fen) == (10000, 10000, 1000)
    promised = json.loads(made.promo_snapshot or "")
    assert {k: promised[k] for k in ("id", "title_en", "title_zh", "kind", "threshold_fen", "value_fen", "percent_bp",
                                     "cap_fen", "priority")} == {
        "id": pid, "title_en": "Get 10 more", "title_zh": "充值有礼", "kind": "fixed_bonus", "threshold_fen": 10000,
        "value_fen": 1000, "percent_bp": 0, "cap_fen": None, "priority": 2}
    assert datetime.fromisoformat(promised["starts_at"]) < made.created_at < datetime.fromisoformat(promised["ends_at"])

    in_write_transaction(lambda: CHANGES[change](pid))
    kept = order(order_no)
    assert (kept.pay_fen, kept.bonus_fen, kept.promo_snapshot) == (10000, 1000, made.promo_snapshot)

    pay_on_gateway(client, order_no)
    assert deliver_outbox(app, client) == ["success"]
    assert order(order_no).status == "credited"
    assert balance() == 500 + 10000 + 1000
    entries = db.session.execute(select(LedgerEntry.kind, LedgerEntry.amount_fen)
                                 .where(LedgerEntry.order_id == kept.id).order_by(LedgerEntry.id)).all()
    assert [tuple(e) for e in entries] == [("recharge", 10000), ("bonus", 1000)]
    assert ledger.verify(db.session).ok

    page = client.get(f"/orders/{kept.token}").get_data(as_text=True)
    assert re.search(r"<dt>Bonus</dt><dd>¥10\.00</dd>", page) and "¥110.00 has been added" in page
    receipt = client.get(f"/orders/{kept.token}/receipt").get_data(as_text=True)
    assert re.search(r"<dt>Bonus</dt><dd>¥10\.00</dd>", receipt)
    assert re.search(r"<dt class=\"total\">Total credited</dt><dd class=\"total\">¥110\.00</dd>", receipt)


def test_the_order_is_quoted_when_it_is_made_and_changed_terms_wait_for_the_customer(app: Flask, client: FlaskClient) -> None:
    make_card()
    pid = save(kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    data = recharge_form(client)  # the page showed the bonus on the 100 button ...
    in_write_transaction(lambda: end_promotion(pid))  # ... which ended before the customer pressed Recharge
    r = client.post("/recharge", data=data)
    # Not on to pay: to the order, which holds today's terms and asks the customer to accept them.
    assert r.status_code == 303 and "/orders/" in r.headers["Location"]
    token = r.headers["Location"].rsplit("/", 1)[1]
    made = db.session.scalar(select(RechargeOrder).where(RechargeOrder.token == token))
    assert made is not None
    assert (made.amount_fen, made.pay_fen, made.bonus_fen, made.promo_snapshot) == (10000, 10000, 0, None)
    assert made.needs_confirmation and made.pay_url is None  # nothing asked of the provider yet
    page = client.get(f"/orders/{token}", headers=HEADERS["en"]).get_data(as_text=True)
    assert "Check the terms before you pay" in page and re.search(r"<dt>You receive</dt><dd>¥100\.00</dd>", page)
    assert 'hx-trigger="every 3s"' not in page  # nothing to wait for until the customer says so
    confirm = {"csrf_token": csrf_from(page)}
    go = client.post(f"/orders/{token}/start", data=confirm)
    assert go.status_code == 303 and go.headers["Location"].split("?")[0].endswith(f"/pay/sandbox/{made.order_no}")
    assert not order(made.order_no).needs_confirmation
    # Sending the same form again lands on the same order, and now on its payment.
    again = client.post("/recharge", data=data)
    assert again.status_code == 303 and again.headers["Location"] == go.headers["Location"]
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 1


def test_terms_the_page_showed_go_straight_to_payment(app: Flask, client: FlaskClient) -> None:
    make_card()
    save(kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    r = client.post("/recharge", data=recharge_form(client))
    assert r.status_code == 303 and "/pay/sandbox/" in r.headers["Location"]
    made = order(r.headers["Location"].split("?")[0].rsplit("/", 1)[1])
    assert (made.pay_fen, made.bonus_fen, made.needs_confirmation) == (10000, 1000, False)


def test_start_recharge_refuses_terms_quoted_for_another_amount(app: Flask) -> None:
    card_id = make_card()
    with pytest.raises(ValueError, match="quoted for 5000 fen, not 10000"):
        in_write_transaction(lambda: start_recharge(db.session, card_id, 10000, "sandbox", "en", terms=Quote.face_value(5000)))
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 0


@pytest.fixture
def discounted(app: Flask, client: FlaskClient) -> str:
    """A pending 100.00 order under a 10 % discount, on a card holding 5.00."""
    make_card(balance_fen=500)
    save(kind="discount", percent_bp=1000)
    order_no = start_order(client)
    assert (order(order_no).amount_fen, order(order_no).pay_fen, order(order_no).bonus_fen) == (10000, 9000, 0)
    return order_no


def test_the_gateway_asks_for_the_discounted_amount_and_its_payment_credits_the_face_value(
        app: Flask, client: FlaskClient, discounted: str) -> None:
    gateway = client.get(f"/pay/sandbox/{discounted}").get_data(as_text=True)
    assert re.search(r"<dd class=\"amount\">¥90\.00</dd>", gateway) and "100.00" not in gateway
    pay_on_gateway(client, discounted)
    assert deliver_outbox(app, client) == ["success"]  # the gateway reports 90.00 paid
    assert (order(discounted).status, order(discounted).paid_fen) == ("credited", 9000)
    assert balance() == 500 + 10000
    assert ledger.verify(db.session).ok


@pytest.mark.parametrize(("paid", "status", "credited"), [("90.00", "credited", 10000), ("100.00", "review", 0)])
def test_a_discount_order_is_credited_only_for_the_discounted_payment(
        client: FlaskClient, discounted: str, paid: str, status: str, credited: int) -> None:
    answer = post_notify(client, notification(discounted, paid))
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "success")
    assert order(discounted).status == status
    assert balance() == 500 + credited
    assert ledger.verify(db.session).ok


@pytest.mark.parametrize("path", ["/", "/recharge"])
@pytest.mark.parametrize(("lang", "shown", "hidden"), [("en", "Get 10 more", "多送10元"), ("zh", "多送10元", "Get 10 more")])
def test_pages_list_the_running_promotions_in_their_language(app: Flask, path: str, lang: str, shown: str, hidden: str) -> None:
    save(title_en="Get 10 more", title_zh="多送10元", kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    save(title_en="A draft", title_zh="草稿", published=False)
    save(title_en="Long over", title_zh="已结束", starts_at=NOW - 2 * DAY, ends_at=NOW - DAY)
    body = new_client(app).get(path, headers=HEADERS[lang]).get_data(as_text=True)
    assert shown in body and hidden not in body
    assert not any(title in body for title in ("A draft", "草稿", "Long over", "已结束"))


@pytest.mark.parametrize("path", ["/", "/recharge"])
def test_without_javascript_each_preset_carries_its_own_terms(app: Flask, path: str) -> None:
    save(kind="percent_bonus", percent_bp=1000, threshold_fen=8000)
    r = new_client(app).get(path, headers=HEADERS["en"])
    body = r.get_data(as_text=True)
    assert 'value="100" checked' in body  # the default amount
    buttons = dict(re.findall(r'<input type="radio" id="amount-\d+" name="amount" value="(\w+)"[^>]*>\s*<label[^>]*>(.*?)</label>', body))
    assert buttons == {"50": "¥50", "100": "¥100<small>+¥10.00 bonus</small>", "200": "¥200<small>+¥20.00 bonus</small>",
                       "other": "Other"}
    # The line under the amounts would go stale the moment another amount is tapped without
    # JavaScript: a full page leaves it empty, and htmx fills it as the choice changes.
    assert quote_line(r) == ""
    assert body.count("<script") == 1  # only the vendored htmx: the terms need no script of their own


def test_the_quote_asks_again_with_the_amount_only(app: Flask) -> None:
    save(kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    page = new_client(app).get("/recharge").get_data(as_text=True)
    found = re.search(r'<div class="quote-box"([^>]*)>\s*<p id="quote"', page)
    assert found  # the box that asks holds the line it replaces, and stays
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', found.group(1)))
    assert attrs["hx-get"] == "/recharge/quote" and attrs["hx-trigger"] == TRIGGER
    assert attrs["hx-target"] == "#quote"  # not the form's target: only the line is replaced
    included = attrs["hx-include"]
    assert ".amounts" in included and "[name=method]" in included
    # A GET puts its fields in the URL: never the card number, password or CSRF token.
    assert not any(secret in included for secret in ("form,", "password", "card_number", "csrf", "closest form"))


def test_the_quote_reads_nothing_about_the_card_from_the_address(app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    save(kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    for browser in (client, hx):
        r = browser.get("/recharge/quote", query_string={"amount": "100", "card_number": CARD, "password": PIN},
                        headers=HEADERS["en"])
        body = r.get_data(as_text=True)
        assert r.status_code == 200 and CARD not in body and PIN not in body
    assert quote_line(r).startswith("Pay 100.00, receive 110.00")


def test_no_promotion_means_no_quote_line_and_no_request(app: Flask, hx: FlaskClient) -> None:
    assert 'id="quote"' not in new_client(app).get("/recharge").get_data(as_text=True)
    r = hx.get("/recharge/quote?amount=100")
    assert r.status_code == 200 and r.get_data(as_text=True).strip() == ""


@pytest.mark.parametrize(("query", "line"), [
    ("amount=200", "Pay 200.00, receive 220.00 Ten percent more"),
    ("amount=other&custom_amount=88.50", "Pay 88.50, receive 97.35 Ten percent more"),
    ("amount=other&custom_amount=+88.5+", "Pay 88.50, receive 97.35 Ten percent more"),
    # A typed amount counts only while "Other" is chosen: the highlighted preset is the amount.
    ("amount=50&custom_amount=88.50", "Pay 50.00, receive 50.00"),
    ("amount=100&custom_amount=", "Pay 100.00, receive 110.00 Ten percent more"),
    ("amount=50", "Pay 50.00, receive 50.00"),  # under the threshold: nothing extra, no title
])
def test_the_quote_has_two_faces(app: Flask, client: FlaskClient, hx: FlaskClient, query: str, line: str) -> None:
    save(kind="percent_bonus", percent_bp=1000, threshold_fen=8000, title_en="Ten percent more")
    page = client.get(f"/recharge/quote?{query}", headers=HEADERS["en"])
    fragment = hx.get(f"/recharge/quote?{query}", headers=HEADERS["en"])
    for r in (page, fragment):
        assert r.status_code == 200 and "HX-Request" in r.vary
    assert quote_line(fragment) == line
    # The page is the form with that amount chosen; its buttons carry the terms, the line stays empty.
    chosen = dict(re.findall(r"(\w+)=([^&]*)", query))["amount"]
    assert quote_line(page) == "" and f'value="{chosen}" checked' in page.get_data(as_text=True)
    assert "<html" in page.get_data(as_text=True) and "Card password" in page.get_data(as_text=True)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "<form" not in body and body.strip().startswith('<p id="quote"')
    # What the line showed goes back with the form, so the order knows the customer saw it.
    shown = re.search(r'name="quoted" value="(\d+):(\d+):(\d+)"', body)
    assert shown and line.startswith(f"Pay {int(shown[2]) // 100}.{int(shown[2]) % 100:02d}")


def test_a_discount_is_quoted_as_less_to_pay(app: Flask, hx: FlaskClient) -> None:
    save(kind="discount", percent_bp=1000, cap_fen=1500)
    assert quote_line(hx.get("/recharge/quote?amount=100", headers=HEADERS["en"])) == "Pay 90.00, receive 100.00 Recharge bonus"
    assert quote_line(hx.get("/recharge/quote?amount=200", headers=HEADERS["en"])).startswith("Pay 185.00, receive 200.00")


def test_a_refused_form_keeps_the_quote_and_does_not_repeat_the_amount_error(app: Flask, hx: FlaskClient) -> None:
    make_card()
    save(kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    wrong_password = hx.post("/recharge", data=recharge_form(hx, password="000000"))
    assert wrong_password.status_code == 403 and quote_line(wrong_password).startswith("Pay 100.00, receive 110.00")
    bad_amount = hx.post("/recharge", data=recharge_form(hx, amount="other", custom_amount="abc"))
    body = bad_amount.get_data(as_text=True)
    # Once in the summary at the top (a link to the field), once at the field; never in the quote line.
    assert bad_amount.status_code == 422 and body.count(NOT_AN_AMOUNT) == 2 and quote_line(bad_amount) == ""
    assert f'<a href="#custom_amount">{NOT_AN_AMOUNT}</a>' in body


def hostile_cases() -> list[Any]:
    cases = [pytest.param(field, name, face, "zh", id=f"{field}-{name}-{face}")
             for field in ("amount", "custom_amount") for name in CORPUS for face in ("plain", "htmx")]
    return cases + [pytest.param(field, name, "htmx", "en", id=f"{field}-{name}-htmx-en")
                    for field in ("amount", "custom_amount") for name in SUBSET]


@pytest.mark.parametrize(("field", "name", "face", "lang"), hostile_cases())
def test_hostile_amounts_get_a_calm_answer(app: Flask, field: str, name: str, face: str, lang: str) -> None:
    save(kind="percent_bonus", percent_bp=1000)
    value = CORPUS[name]
    args = {"amount": "other" if field == "custom_amount" else "100", "custom_amount": "", field: value}
    r = new_client(app, face == "htmx").get("/recharge/quote", query_string=args, headers=HEADERS[lang])
    body = r.get_data(as_text=True)
    assert r.status_code == 200, body[:300]
    assert ("<html" in body) is (face == "plain")
    assert_nothing_unescaped(body, value)
    if face == "plain":
        assert quote_line(r) == ""  # a full page never shows the line (it could go stale)
        if field == "custom_amount" and value in (CORPUS["script"], CORPUS["img-attr"]):
            assert str(escape(value)) in body  # kept in the field for correction, escaped
    elif field == "amount":
        # Only a preset or "Other" is a choice: anything else, a full-width number included, is none.
        assert_in_language(quote_line(r), lang, ("Choose an amount.",))
    elif value == FULLWIDTH_AMOUNT:
        assert re.search(r"100\.50\D+110\.55", quote_line(r))  # typed with a Chinese IME: 100.50
    elif not value.strip():
        assert_in_language(quote_line(r), lang, (TYPE_AN_AMOUNT,))
    else:
        message = TOO_LONG if len(value.strip()) > 20 else NOT_AN_AMOUNT
        assert_in_language(quote_line(r), lang, (message,))


TYPE_AN_AMOUNT = "Type the amount, or choose one of the amounts above."


TOO_LONG = "That amount is too long."


def promotions() -> list[Promotion]:
    db.session.rollback()
    return list(db.session.scalars(select(Promotion).order_by(Promotion.id)))


def test_create_and_list_through_the_real_command(database: str, app: Flask) -> None:
    created = flask_cli(database, "promos", "create", "--title-zh", "充100送10", "--title-en", "Get 10 more",
                        "--kind", "fixed_bonus", "--threshold", "100", "--value", "10",
                        "--starts", "2040-01-01 08:00", "--ends", "2040-02-01", "--priority", "3", "--publish")
    assert created.returncode == 0, created.stderr
    # --publish asks for publication: an admin approves it on the staff page (tests/staff/test_promotions.py).
    line = ("1  awaiting approval  priority 3  fixed_bonus 10.00, from 100.00  2040-01-01 08:00:00 .. 2040-02-01 00:00:00  "
            "Get 10 more / 充100送10")
    assert created.stdout.strip() == f"created {line}"
    [p] = promotions()
    # Typed in Asia/Shanghai (UTC+8), kept as naive UTC.
    assert (p.starts_at, p.ends_at) == (datetime(2040, 1, 1, 0, 0), datetime(2040, 1, 31, 16, 0))
    assert (p.kind, p.threshold_fen, p.value_fen, p.percent_bp, p.cap_fen) == ("fixed_bonus", 10000, 1000, 0, None)
    assert (p.published, p.publish_requested, p.edited_by_id, p.edited_by) == (False, True, None, "(command line)")
    listed = flask_cli(database, "promos", "list")
    assert listed.returncode == 0 and listed.stdout.strip() == line
    in_utc = flask_cli(database, "promos", "list", env={"HEYON_TIMEZONE": "UTC"})
    assert "2040-01-01 00:00:00 .. 2040-01-31 16:00:00" in in_utc.stdout


@pytest.mark.parametrize(("options", "stored"), [
    (["--kind", "percent_bonus", "--percent", "2.5", "--cap", "20"], ("percent_bonus", 0, 250, 2000)),
    (["--kind", "percent_bonus", "--percent", "10%"], ("percent_bonus", 0, 1000, None)),
    (["--kind", "discount", "--percent", "１５"], ("discount", 0, 1500, None)),
    (["--kind", "discount", "--percent", "30"], ("discount", 0, 3000, None)),  # the default cap
])
def test_create_reads_percentages_exactly(runner: FlaskCliRunner, options: list[str], stored: tuple[Any, ...]) -> None:
    result = cli(runner, "promos", "create", "--title-zh", "折扣", "--title-en", "Discount", "--ends", "2040-01-01", *options)
    assert result.exit_code == 0, result.output
    [p] = promotions()
    assert (p.kind, p.value_fen, p.percent_bp, p.cap_fen) == stored
    assert not p.published and "  draft  " in result.stdout  # a draft unless --publish
    assert abs(p.starts_at - utcnow()) < timedelta(minutes=1)  # from now by default


NO_TITLE = ["--title-zh", " ", "--title-en", "x"]


REFUSED = {
    "fixed-without-value": (["--kind", "fixed_bonus"], "A fixed bonus needs a bonus above 0"),
    "fixed-with-percent": (["--kind", "fixed_bonus", "--value", "5", "--percent", "5"], "takes no percent and no cap"),
    "fixed-with-cap": (["--kind", "fixed_bonus", "--value", "5", "--cap", "5"], "takes no percent and no cap"),
    "percent-with-value": (["--kind", "percent_bonus", "--percent", "5", "--value", "5"], "takes no bonus"),
    "percent-missing": (["--kind", "discount"], "A discount needs a percent above 0 and at most 100"),
    "percent-over-100": (["--kind", "discount", "--percent", "100.01"], "at most 100"),
    "percent-not-a-number": (["--kind", "discount", "--percent", "ten"], "'ten' is not a percentage like 10 or 2.5"),
    "percent-negative": (["--kind", "discount", "--percent", "-5"], "'-5' is not a percentage like 10 or 2.5"),
    "cap-zero": (["--kind", "discount", "--percent", "5", "--cap", "0"], "A cap must be above 0"),
    "bad-threshold": (["--kind", "fixed_bonus", "--value", "5", "--threshold", "1e3"], "'1e3' is not an amount like 12.34"),
    "ends-before-start": (["--kind", "fixed_bonus", "--value", "5", "--starts", "2041-01-01"], "The end must be after the start"),
    "bad-date": (["--kind", "fixed_bonus", "--value", "5", "--starts", "tomorrow"], "'tomorrow' does not match the formats"),
    "bad-kind": (["--kind", "cashback", "--value", "5"], "'cashback' is not one of"),
    "empty-title": (["--kind", "fixed_bonus", "--value", "5", *NO_TITLE], "The Chinese title needs 1 to 120 characters"),
    # The caps (defaults 50 % and 30 %), named in the message.
    "fixed-without-threshold": (["--kind", "fixed_bonus", "--value", "999999999.99"],
                                "A bonus is at most 50% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT): a bonus of "
                                "999999999.99 needs a from amount of at least 1999999999.98."),
    "fixed-above-half-its-threshold": (["--kind", "fixed_bonus", "--value", "5.01", "--threshold", "10"],
                                       "needs a from amount of at least 10.02"),
    "percent-bonus-over-the-cap": (["--kind", "percent_bonus", "--percent", "50.01"],
                                   "A bonus is at most 50% of the amount paid (HEYON_PROMO_MAX_BONUS_PERCENT)."),
    "discount-100": (["--kind", "discount", "--percent", "100"],
                     "A discount is at most 30% of the amount (HEYON_PROMO_MAX_DISCOUNT_PERCENT)."),
    "discount-over-the-cap": (["--kind", "discount", "--percent", "30.01", "--cap", "1"], "A discount is at most 30%"),
}


@pytest.mark.parametrize(("options", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_create_refuses_terms_that_make_no_sense(runner: FlaskCliRunner, options: list[str], message: str) -> None:
    result = cli(runner, "promos", "create", "--title-zh", "促销", "--title-en", "Offer", "--ends", "2040-01-01", *options)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert promotions() == []


def test_end_stops_a_running_promotion_at_once(app: Flask, runner: FlaskCliRunner) -> None:
    pid = save(kind="fixed_bonus", value_fen=1000, threshold_fen=2000, title_en="Get 10 more")
    assert "Get 10 more" in new_client(app).get("/?lang=en").get_data(as_text=True)
    before = utcnow()
    result = cli(runner, "promos", "end", str(pid))
    assert result.exit_code == 0 and result.stdout.strip() == f"promotion {pid} ended"
    [p] = promotions()
    assert before <= p.ends_at <= utcnow() and p.published
    assert "Get 10 more" not in new_client(app).get("/?lang=en").get_data(as_text=True)
    assert current_quote(db.session, 10000, caps=CAPS) == Quote.face_value(10000)
    again = cli(runner, "promos", "end", str(pid))
    assert again.exit_code == 0 and again.stdout.strip() == f"promotion {pid} had ended already"
    assert promotions()[0].ends_at == p.ends_at


def test_end_withdraws_a_promotion_that_has_not_started(app: Flask, runner: FlaskCliRunner) -> None:
    pid = save(starts_at=utcnow() + DAY, ends_at=utcnow() + 2 * DAY)
    result = cli(runner, "promos", "end", str(pid))
    assert result.exit_code == 0 and "had not started: withdrawn" in result.stdout
    [p] = promotions()
    assert not p.published and p.ends_at > p.starts_at  # the window stays valid; the schema insists
    assert "  draft  " in cli(runner, "promos", "list").stdout


@pytest.mark.parametrize(("ref", "code", "message"), [("99", 1, "no promotion 99"), ("abc", 2, "'abc' is not a valid integer")])
def test_end_of_an_unknown_promotion_fails_cleanly(runner: FlaskCliRunner, ref: str, code: int, message: str) -> None:
    result = cli(runner, "promos", "end", ref)
    assert result.exit_code == code and message in result.stderr
