"""The site-wide budget for card-password checks from browsers that never opened the card: a
spray of wrong passwords for random cards waits once it is spent, before any check or write;
a browser that opened its card before is never counted and never waits."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from heyon_site.extensions import db
from heyon_site.models import LoginThrottle
from tests.kit import CARD, PIN, csrf_from, make_card, new_client, site_for_tests

BUSY_EN = "Many cards are being checked right now. Please try again in a few seconds."
BUSY_ZH = "当前查询人数较多，请几秒后再试。"


def lookup(client: FlaskClient, number: str, password: str, lang: str = "en") -> tuple[int, str]:
    token = csrf_from(client.get(f"/balance?lang={lang}").get_data(as_text=True))
    r = client.post("/balance", data={"csrf_token": token, "card_number": number, "password": password})
    return r.status_code, r.get_data(as_text=True)


def throttle_rows() -> int:
    return db.session.scalar(select(func.count()).select_from(LoginThrottle)) or 0


def test_past_the_budget_strangers_wait_and_nothing_is_checked_or_written(app: Flask) -> None:
    app.config["HEYON_PASSWORD_CHECK_BUDGET"] = "3 per minute"
    stranger = new_client(app)
    answers = [lookup(stranger, f"860000000000{n:04d}", "000000")[0] for n in range(3)]
    assert answers == [403, 403, 403]
    rows = throttle_rows()
    status, html = lookup(stranger, "8600000000000099", "000000")
    assert status == 429 and BUSY_EN in html
    status, html = lookup(new_client(app), "8600000000000098", "000000", lang="zh")
    assert status == 429 and BUSY_ZH in html
    assert throttle_rows() == rows  # refused before the throttle's write


def test_a_browser_that_opened_its_card_before_never_waits(app: Flask) -> None:
    make_card()
    owner = new_client(app)
    assert lookup(owner, CARD, PIN)[0] == 200  # the owner's browser now knows the card
    app.config["HEYON_PASSWORD_CHECK_BUDGET"] = "1 per minute"
    stranger = new_client(app)
    assert lookup(stranger, "8600000000000011", "000000")[0] == 403
    assert lookup(stranger, "8600000000000029", "000000")[0] == 429  # the budget is spent...
    assert lookup(owner, CARD, PIN)[0] == 200  # ...and the known browser is still checked
    assert lookup(owner, CARD, "000000")[0] == 403  # even its wrong password is checked, not refused
    assert lookup(new_client(app), CARD, PIN)[0] == 429  # the same card from an unknown browser waits


def test_a_refusal_for_the_budget_does_not_spend_the_addresss_failure_budget(database: str) -> None:
    limits = {"RATELIMIT_ENABLED": True, "HEYON_IP_FAILURE_LIMIT": "2 per hour", "HEYON_IP_LIMIT": "1000 per minute",
              "HEYON_PASSWORD_CHECK_BUDGET": "1 per minute"}
    with site_for_tests(database, **limits) as site:
        make_card()
        client = new_client(site)
        assert lookup(client, "8600000000000011", "000000")[0] == 403  # one failure of two
        assert [lookup(client, "8600000000000029", "000000")[0] for _ in range(5)] == [429] * 5  # busy
        site.config["HEYON_PASSWORD_CHECK_BUDGET"] = "1000 per minute"
        assert lookup(client, CARD, PIN)[0] == 200  # the address still has its second try


def test_a_failing_counter_store_lets_the_check_through(app: Flask) -> None:
    class Broken:
        def hit(self, *_: object) -> bool:
            raise ConnectionError("the store is down")

    make_card()
    app.extensions["heyon.alarms"] = Broken()
    assert lookup(new_client(app), CARD, PIN)[0] == 200
