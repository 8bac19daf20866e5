"""The sandbox gateway sends its signed notification in the background, retrying like Alipay."""
from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from flask import Flask

from heyon_site.sandbox.notifier import deliver_with_retries

from .kit import balance, hidden_value, live_site, make_card, order


def test_retries_until_the_site_answers_success() -> None:
    answers = iter(["fail", "error: connection refused", "success", "never asked"])
    calls: list[str] = []

    def deliver(url: str, fields: dict[str, str]) -> str:
        calls.append(url)
        return next(answers)

    assert deliver_with_retries("http://127.0.0.1:9/notify", {"out_trade_no": "1"}, (0, 0, 0, 0), deliver)
    assert len(calls) == 3


def test_gives_up_after_the_schedule() -> None:
    calls: list[str] = []
    assert not deliver_with_retries("u", {}, (0, 0), lambda url, fields: calls.append(url) or "fail")
    assert len(calls) == 2


@pytest.mark.live
def test_paying_on_the_live_gateway_credits_through_the_real_notification(app: Flask, database: str, tmp_path: Path) -> None:
    make_card(balance_fen=0)
    with live_site(database, tmp_path, workers=2) as site:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

        def post(path: str, fields: dict[str, str]) -> tuple[str, str]:
            data = urllib.parse.urlencode(fields).encode()
            with browser.open(site.url + path, data=data, timeout=15) as r:
                return r.geturl(), r.read().decode()

        with browser.open(site.url + "/recharge?lang=en", timeout=15) as r:
            form = r.read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        gateway_url, page = post("/recharge", {"csrf_token": token, "card_number": "8600 0000 0000 1234",
                                               "offer": hidden_value(form, "offer"), "form_id": hidden_value(form, "form_id"),
                                               "password": "246810", "amount": "50", "custom_amount": "", "method": "sandbox"})
        order_no = gateway_url.rsplit("/", 1)[1]
        assert "50.00" in page
        order_url, _ = post(f"/pay/sandbox/{order_no}", {"csrf_token": token, "outcome": "pay"})
        deadline = time.monotonic() + 20
        while order(order_no).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert order(order_no).status == "credited"
        assert balance() == 5000
        with browser.open(order_url + "?lang=en", timeout=15) as r:
            assert "Receipt" in r.read().decode()
