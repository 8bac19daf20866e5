"""The sandbox's payment page shows, for where it was opened, the checkout a real provider would
have used (payments/context.py), and inside WeChat a pay-sheet-style button that pays."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.kit import deliver_outbox, gateway_path, make_card, new_client, order, start_order

UAS = {
    "wechat": "Mozilla/5.0 (Linux; Android 12) AppleWebKit/537.36 Mobile Safari/537.36 MicroMessenger/8.0.47.2560",
    "alipay": "Mozilla/5.0 (Linux; Android 12) AppleWebKit/537.36 Mobile Safari/537.36 AlipayClient/10.5.86.8000",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36",
}
SHOWN = {
    "wechat": ("WeChat's own pay sheet (JSAPI)", "open this page in the browser"),
    "alipay": ("open this page in WeChat or a browser", "Alipay's mobile page (wap pay)"),
    "mobile": ("WeChat's mobile page (H5)", "Alipay's mobile page (wap pay)"),
    "desktop": ("a QR code to scan with WeChat (Native)", "Alipay's page, with its QR code"),
}


@pytest.mark.parametrize("where", list(UAS))
def test_the_gateway_says_which_checkout_a_real_provider_would_use(app: Flask, where: str) -> None:
    make_card()
    buyer = new_client(app)
    buyer.environ_base["HTTP_USER_AGENT"] = UAS[where]
    number = start_order(buyer)
    page = buyer.get(gateway_path(number) + "&lang=en").get_data(as_text=True)
    wechat, alipay = SHOWN[where]
    assert wechat in page and alipay in page
    assert ('class="pay-sheet-imitation"' in page) == (where == "wechat")


def test_the_pay_sheet_button_inside_wechat_pays_like_the_others(app: Flask) -> None:
    make_card()
    buyer: FlaskClient = new_client(app)
    buyer.environ_base["HTTP_USER_AGENT"] = UAS["wechat"]
    number = start_order(buyer)
    page = buyer.get(gateway_path(number) + "&lang=en").get_data(as_text=True)
    sheet = re.search(r'<div class="pay-sheet-imitation">.*?</div>', page, re.S)
    assert sheet is not None
    token = re.search(r'name="csrf_token" value="([^"]+)"', sheet.group(0)).group(1)
    outcome = re.search(r'name="outcome" value="([^"]+)"', sheet.group(0)).group(1)
    assert outcome == "pay"
    paid = buyer.post(gateway_path(number), data={"csrf_token": token, "outcome": outcome})
    assert paid.status_code == 303
    assert deliver_outbox(app, buyer) == ["success"]
    assert order(number).status == "credited"


def test_a_console_refund_on_the_gateway_flags_the_order_for_a_person(app: Flask) -> None:
    """The sandbox's "refund as from the provider's console": money given back outside this site
    is never taken for one of ours; the order is put in front of a person, once."""
    make_card()
    buyer = new_client(app)
    number = start_order(buyer)
    page = buyer.get(gateway_path(number)).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    buyer.post(gateway_path(number), data={"csrf_token": token, "outcome": "pay"})
    assert deliver_outbox(app, buyer) == ["success"] and order(number).status == "credited"
    page = buyer.get(gateway_path(number) + "&lang=en").get_data(as_text=True)
    assert "Refund it, as from the provider's console" in page
    refund = gateway_path(number).replace("?", "/refund?")
    assert buyer.post(refund, data={"csrf_token": token}).status_code == 303
    assert buyer.post(refund, data={"csrf_token": token}).status_code == 303  # nothing left
    assert deliver_outbox(app, buyer) == ["success"]  # one notice: the second press gave nothing back
    assert order(number).attention == "money_returned" and order(number).status == "credited"
