"""Paying where the customer is (payments/context.py): WeChat's own browser, Alipay's app, a phone's
browser, a computer.

Every cell of the table; WeChat Pay inside WeChat end to end (the sign-in hop with its single-use
``state``, the openid kept in a signed cookie, the JSAPI pay sheet, its notification, "check
payment now" and expiry); and every way the sign-in hop can fail, each of which must end on a
page that says so, with the order still payable another way and never by two providers.

All three providers run against local fakes (tests/provider_kits/), WeChat's web sign-in too.
The browser's own trip through WeChat's sign-in is made with ``requests`` against that fake; the
way back into the site, with the test client of the same browser.
"""
from __future__ import annotations

import html as htmllib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from heyon_site import create_app
from heyon_site.billing.recharge import switch_method
from heyon_site.customer import wechat_sign_in
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.payments.reconcile import candidate, check_one
from heyon_site.providers import get as get_provider
from heyon_site.providers.wechat import WechatPayProvider
from tests import kit
from tests.fakes import serving
from tests.kit import OPENING_FEN, ORDER_FEN, TEST_CONFIG, csrf_from, held, make_card, new_client, recharge_form
from tests.provider_kits.alipay import GATEWAY_PATH, AlipayFakeApi
from tests.provider_kits.alipay import KIT as ALIPAY
from tests.provider_kits.stripe import CHECKOUT_PAGE, StripeFake
from tests.provider_kits.stripe import KIT as STRIPE
from tests.provider_kits.wechat import KIT as WECHAT
from tests.provider_kits.wechat import (
    MP_APPID,
    WechatFakeApi,
    WechatOAuthFake,
    jsapi_config,
    jsapi_notification,
    oauth_fake,
    pay_sheet_verifies,
)

pytestmark = pytest.mark.usefixtures("books_balance")

# ------------------------------------------------------------------ where the customer is

#: WeChat's in-app browser on Android (a link opened from a chat).
WECHAT_UA = ("Mozilla/5.0 (Linux; Android 14; V2309A Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like "
             "Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 "
             "MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64")
#: WeChat for Windows: its browser runs JSAPI too, so it is "inside WeChat", not a computer.
WECHAT_PC_UA = ("Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.138 "
                "Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) WindowsWechat(0x63090a13) XWEB/8555")
#: Alipay's app on an iPhone.
ALIPAY_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 Ariver/1.1.0 AliApp(AP/10.5.86.6000) Nebula WK RVKType(0) AlipayDefined(nt:WIFI,ws:390|"
             "844|3.0) AlipayClient/10.5.86.6000 Language/zh-Hans Region/CN NebulaX/1.0.0")
#: Safari on an iPhone.
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Mobile/15E148 Safari/604.1")
#: Edge on Windows.
DESKTOP_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
              "Safari/537.36 Edg/126.0.0.0")
UA = {"wechat": WECHAT_UA, "wechat-pc": WECHAT_PC_UA, "alipay": ALIPAY_UA, "mobile": PHONE_UA, "desktop": DESKTOP_UA}

CALLBACK = "http://heyon.test/wechat/signed-in"
#: What the failure pages say (customer/wechat.py, customer/recharge.py, wechat_refused.html).
SIGN_IN_FAILED = "WeChat did not confirm who is paying, so WeChat Pay could not start."
STATE_SPENT = "This WeChat sign-in was used already or is too old."
NOT_OURS = "This WeChat sign-in link is not one this browser started, or it was changed. Nothing was paid."
UNAVAILABLE = "This payment method is not answering right now."
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
#: An openid of someone else's WeChat account, of WeChat's form.
ATTACKER = "oAttackerAttackerAttacker000"


# ------------------------------------------------------------------ the site and its fakes


@dataclass
class Fakes:
    wechat: WechatFakeApi
    alipay: AlipayFakeApi
    stripe: StripeFake
    oauth: WechatOAuthFake

    def provider_calls(self) -> list[str]:
        """What the site asked of the payment providers: ``"wechat POST /v3/pay/transactions/h5"``."""
        named = (("wechat", self.wechat), ("alipay", self.alipay), ("stripe", self.stripe))
        return [f"{name} {method} {path}" for name, fake in named for method, path, _ in fake.seen]

    def code_exchanges(self) -> int:
        """How often the site traded a sign-in code for an openid."""
        return sum(path == "/sns/oauth2/access_token" for _, path, _ in self.oauth.seen)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with serving(WECHAT.fake_api()) as wx, serving(ALIPAY.fake_api()) as ali, serving(STRIPE.fake_api()) as st, \
            serving(oauth_fake()) as oauth:
        assert isinstance(wx, WechatFakeApi) and isinstance(ali, AlipayFakeApi)
        assert isinstance(st, StripeFake) and isinstance(oauth, WechatOAuthFake)
        yield Fakes(wx, ali, st, oauth)


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings a test changes (``with_settings``); none by default."""
    return dict(getattr(request, "param", {}))


def with_settings(**changed: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("settings", [changed], indirect=True, ids=[",".join(sorted(changed))])


#: No official account: WeChat Pay inside WeChat falls back to the Native QR code.
NO_JSAPI = {"HEYON_WECHAT_MP_APPID": "", "HEYON_WECHAT_MP_SECRET": ""}


@pytest.fixture
def app(database: str, fakes: Fakes, settings: dict[str, Any]) -> Iterator[Flask]:
    """WeChat Pay (with JSAPI, unless a test says otherwise), Alipay and bank card, each against
    its fake; the test card holds OPENING_FEN."""
    config = {**TEST_CONFIG, "DATABASE_URL": database, "HEYON_PROVIDERS": ("wechat", "alipay", "stripe"),
              **WECHAT.config(fakes.wechat.base_url), **ALIPAY.config(fakes.alipay.base_url),
              **STRIPE.config(fakes.stripe.base_url), **jsapi_config(fakes.oauth.base_url), **settings}
    with held(create_app(config)) as site:
        assert set(site.extensions["heyon.providers"]) == {"wechat", "alipay", "stripe"}
        make_card(balance_fen=OPENING_FEN)
        yield site


# ------------------------------------------------------------------ a browser and what it sees


def browser(app: Flask, place: str, **environ: str) -> FlaskClient:
    """A new browser (its own cookies) in one of the places of UA."""
    client = new_client(app)
    client.environ_base.update({"HTTP_USER_AGENT": UA[place], **environ})
    return client


def newest_order() -> RechargeOrder:
    db.session.rollback()
    found = db.session.scalar(select(RechargeOrder).order_by(RechargeOrder.id.desc()).limit(1))
    assert found is not None
    return found


def recharge(client: FlaskClient, method: str) -> tuple[RechargeOrder, str]:
    """Send the recharge form (100.00 on the test card, in English) as this browser: the new order,
    and where the answer sends the browser."""
    answer = client.post("/recharge", data=recharge_form(client, method=method))
    assert answer.status_code == 303, (answer.status_code, answer.get_data(as_text=True)[:500])
    return newest_order(), answer.headers["Location"]


def where(location: str, fakes: Fakes) -> str:
    """Where an answer sends the browser, in words."""
    if location.startswith(fakes.oauth.base_url + "/connect/oauth2/authorize?"):
        return "WeChat sign-in"
    if location.startswith("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?"):
        return "WeChat H5 page"
    if location.startswith(fakes.alipay.base_url + GATEWAY_PATH + "?"):
        return dict(parse_qsl(urlsplit(location).query))["method"]  # which Alipay product
    if location.startswith(CHECKOUT_PAGE):
        return "Stripe Checkout"
    if location.startswith("weixin://wxpay/bizpayurl?pr="):
        return "WeChat Native code"
    if re.fullmatch(r"(http://heyon\.test)?/orders/[A-Za-z0-9_-]{24}", location):
        return "order page"
    return location


#: What an order page can show, each by the words or element that only it has.
FEATURES: dict[str, Callable[[str], bool]] = {
    "QR code": lambda page: '<div id="pay-qr" class="pay-qr">' in page and "<svg" in page,
    "scan with another phone": lambda page: "scan it with WeChat on another phone, or open this page in your browser"
                                            in page,
    "pay sheet": lambda page: '<div id="wechat-jsapi" class="pay-sheet"' in page,
    "open in the browser": lambda page: "cannot open inside WeChat." in page and "img/open-in-browser.svg" in page,
    "open in WeChat or a browser": lambda page: "cannot open inside the Alipay app." in page,
    "pay button": lambda page: re.search(r'action="/orders/[^"/]+/checkout"', page) is not None,
    "pay another way": lambda page: re.search(r'action="/orders/[^"/]+/method"', page) is not None,
    "on to the provider's page": lambda page: "Continue to payment" in page or "Or pay on this device" in page,
    "started in WeChat": lambda page: "This payment was started in WeChat" in page,
    "waiting for the payment": lambda page: "We are waiting for the payment confirmation" in page,
}


def shows(page: str) -> set[str]:
    """What of FEATURES the order page shows."""
    return {name for name, found in FEATURES.items() if found(page)}


def methods_offered(page: str) -> list[str]:
    """The methods of the "Pay another way" form, in order."""
    form = re.search(r'<form [^>]*action="/orders/[^"/]+/method".*?</form>', page, re.S)
    return re.findall(r'name="method" value="([^"]+)"', form[0]) if form else []


def order_page(client: FlaskClient, order: RechargeOrder) -> str:
    answer = client.get(f"/orders/{order.token}")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def form_notes(page: str) -> dict[str, str]:
    """The note beside each payment method of the recharge form."""
    notes = {}
    for field_id, value in re.findall(r'<input type="radio" id="(method-\d+)" name="method" value="([^"]+)"', page):
        label = re.search(rf'<label for="{field_id}">(.*?)</label>', page, re.S)
        note = re.search(r"<small>(.*?)</small>", label[1]) if label else None
        if note:
            notes[value] = htmllib.unescape(note[1])
    return notes


def pay_sheet(page: str) -> dict[str, str] | None:
    """The ``getBrandWCPayRequest`` parameters the order page hands to wechat.js."""
    found = re.search(r'<div id="wechat-jsapi" class="pay-sheet"([^>]*)>', page)
    if found is None:
        return None
    data = {name: htmllib.unescape(value) for name, value in re.findall(r'data-([a-z-]+)="([^"]*)"', found[1])}
    return {"appId": data["app-id"], "timeStamp": data["time-stamp"], "nonceStr": data["nonce-str"],
            "package": data["package"], "signType": data["sign-type"], "paySign": data["pay-sign"]}


def begun(order_no: str) -> tuple[str | None, ...]:
    """What a checkout leaves on an order: all None while no provider has been asked anything."""
    found = kit.order(order_no)
    return found.pay_url, found.pay_qr, found.pay_jsapi, found.provider_ref


NOT_BEGUN = (None, None, None, None)


# ------------------------------------------------------------------ WeChat's sign-in, as a browser goes through it


def through_wechat(authorize: str) -> str:
    """What WeChat does with our authorize address: sends the browser back to our callback with a
    one-time code and our state. (A browser never sends the #wechat_redirect fragment.)"""
    answer = requests.get(authorize.split("#", 1)[0], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def state_of(url: str) -> str:
    [state] = parse_qs(urlsplit(url).query)["state"]
    return state


def with_query(callback: str, **changed: str | None) -> str:
    """The callback address with parameters changed, or left out (None)."""
    params = dict(parse_qsl(urlsplit(callback).query))
    for name, value in changed.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return f"{CALLBACK}?{urlencode(params)}"


def start_inside_wechat(client: FlaskClient, fakes: Fakes) -> tuple[RechargeOrder, str]:
    """Recharge with WeChat Pay inside WeChat, as far as WeChat's sign-in: the order, and the
    address WeChat sends the browser back to."""
    order, location = recharge(client, "wechat")
    assert where(location, fakes) == "WeChat sign-in"
    return order, through_wechat(location)


def pay_inside_wechat(client: FlaskClient, fakes: Fakes) -> tuple[RechargeOrder, str]:
    """The whole hop: the order, and its page with the pay sheet."""
    order, callback = start_inside_wechat(client, fakes)
    back = client.get(callback)
    assert back.status_code == 303 and where(back.headers["Location"], fakes) == "order page", back.status_code
    return order, client.get(back.headers["Location"]).get_data(as_text=True)


def pay_another_way(client: FlaskClient, order: RechargeOrder, method: str) -> TestResponse:
    """Choose ``method`` in the order page's "Pay another way" form and send it."""
    page = order_page(client, order)
    return client.post(f"/orders/{order.token}/method", data={"csrf_token": csrf_from(page), "method": method})


def assert_payable_another_way(client: FlaskClient, fakes: Fakes, order: RechargeOrder) -> None:
    """Nothing was asked of WeChat Pay, and the order goes on to pay by bank card (the one other
    method that works inside WeChat)."""
    assert kit.order(order.order_no).status == "pending"
    assert begun(order.order_no) == NOT_BEGUN
    assert fakes.provider_calls() == []
    assert methods_offered(order_page(client, order)) == ["stripe"]
    answer = pay_another_way(client, order, "stripe")
    assert answer.status_code == 303 and where(answer.headers["Location"], fakes) == "Stripe Checkout"
    assert kit.order(order.order_no).provider == "stripe"
    assert fakes.provider_calls() == ["stripe POST /v1/checkout/sessions"]


def problem_page(answer: TestResponse, status: int, message: str) -> str:
    """The page a failure ends on: its status, its message, never kept by a cache."""
    page = answer.get_data(as_text=True)
    assert answer.status_code == status, (answer.status_code, page[:800])
    assert message in page, page[:2000]
    assert answer.headers["Cache-Control"] == "no-store"
    return page


# ------------------------------------------------------------------ 1. the table, cell by cell


@dataclass(frozen=True)
class Cell:
    where: str  # where POST /recharge sends the browser
    calls: tuple[str, ...]  # what the site asked of the providers meanwhile
    page: frozenset[str]  # what the order page then shows, in the same place
    others: tuple[str, ...] = ()  # the methods its "Pay another way" form offers
    kept: tuple[str | None, str | None] = (None, None)  # where the order's pay_url and pay_qr lead


ON_ITS_WAY = frozenset({"on to the provider's page", "waiting for the payment"})
STRIPE_CELL = Cell("Stripe Checkout", ("stripe POST /v1/checkout/sessions",), ON_ITS_WAY,
                   kept=("Stripe Checkout", None))
TABLE: dict[tuple[str, str], Cell] = {
    # Inside WeChat: its sign-in first (nothing asked of WeChat Pay yet), Alipay refused with
    # what to do instead, the bank card as anywhere.
    ("wechat", "wechat"): Cell("WeChat sign-in", (), frozenset({"pay button", "pay another way"}), ("stripe",)),
    ("wechat-pc", "wechat"): Cell("WeChat sign-in", (), frozenset({"pay button", "pay another way"}), ("stripe",)),
    ("wechat", "alipay"): Cell("order page", (), frozenset({"open in the browser", "pay another way"}),
                               ("wechat", "stripe")),
    ("wechat", "stripe"): STRIPE_CELL,
    # Inside Alipay's app: WeChat Pay refused with what to do instead.
    ("alipay", "wechat"): Cell("order page", (), frozenset({"open in WeChat or a browser", "pay another way"}),
                               ("alipay", "stripe")),
    ("alipay", "alipay"): Cell("alipay.trade.wap.pay", (), ON_ITS_WAY, kept=("alipay.trade.wap.pay", None)),
    ("alipay", "stripe"): STRIPE_CELL,
    # A phone's browser: the providers' mobile pages.
    ("mobile", "wechat"): Cell("WeChat H5 page", ("wechat POST /v3/pay/transactions/h5",), ON_ITS_WAY,
                               kept=("WeChat H5 page", None)),
    ("mobile", "alipay"): Cell("alipay.trade.wap.pay", (), ON_ITS_WAY, kept=("alipay.trade.wap.pay", None)),
    ("mobile", "stripe"): STRIPE_CELL,
    # A computer: QR codes for the phone to scan on the order page; Alipay's desktop page too, a
    # link away (its QR code is its mobile page's link).
    ("desktop", "wechat"): Cell("order page", ("wechat POST /v3/pay/transactions/native",),
                                frozenset({"QR code", "waiting for the payment"}), kept=(None, "WeChat Native code")),
    ("desktop", "alipay"): Cell("order page", (), ON_ITS_WAY | {"QR code"},
                                kept=("alipay.trade.page.pay", "alipay.trade.wap.pay")),
    ("desktop", "stripe"): STRIPE_CELL,
}


@pytest.mark.parametrize(("place", "method"), TABLE, ids=[f"{p}-{m}" for p, m in TABLE])
def test_each_cell_of_the_table(app: Flask, fakes: Fakes, place: str, method: str) -> None:
    """What sending the recharge form does, and what the order page then shows, for every place a
    customer pays from and every method. (Alipay builds its signed links itself: no call.)"""
    cell = TABLE[(place, method)]
    client = browser(app, place)
    order, location = recharge(client, method)
    assert (order.provider, order.status) == (method, "pending")
    assert where(location, fakes) == cell.where
    assert tuple(fakes.provider_calls()) == cell.calls
    pay_url, pay_qr, _, _ = begun(order.order_no)
    assert (pay_url and where(pay_url, fakes), pay_qr and where(pay_qr, fakes)) == cell.kept
    page = order_page(client, order)
    assert shows(page) == cell.page
    assert tuple(methods_offered(page)) == cell.others


@pytest.mark.parametrize(("place", "method"), [("wechat", "alipay"), ("alipay", "wechat")])
def test_a_blocked_method_is_never_begun_nor_linked(app: Flask, fakes: Fakes, place: str, method: str) -> None:
    """WeChat blocks links to Alipay and Alipay's app does not open WeChat Pay: the order is made,
    but nothing is asked of the provider, no link to it is on the page, and pressing "pay" where it
    cannot pay (a form replayed by hand) still asks nothing."""
    client = browser(app, place)
    order, _ = recharge(client, method)
    page = order_page(client, order)
    for link in ("gateway.do", fakes.alipay.base_url, "wx.tenpay.com", "weixin://", "/pay\""):
        assert link not in page
    if place == "wechat":  # the picture of WeChat's "Open in Browser" menu is there to see
        [picture] = re.findall(r'<img src="([^"]*open-in-browser\.svg[^"]*)"', page)
        with client.get(htmllib.unescape(picture)) as served:  # a file response: closed after
            assert served.status_code == 200 and served.mimetype == "image/svg+xml"
    assert begun(order.order_no) == NOT_BEGUN
    pressed = client.post(f"/orders/{order.token}/checkout", data={"csrf_token": csrf_from(page)})
    assert pressed.status_code == 303 and where(pressed.headers["Location"], fakes) == "order page"
    assert begun(order.order_no) == NOT_BEGUN
    assert fakes.provider_calls() == []


def test_a_blocked_method_cannot_be_chosen_by_hand(app: Flask, fakes: Fakes) -> None:
    """Inside WeChat, "Pay another way" does not offer Alipay; sent anyway, it is refused and the
    order keeps its method."""
    client = browser(app, "wechat")
    order, _ = recharge(client, "wechat")  # the sign-in left unfinished: nothing begun
    answer = pay_another_way(client, order, "alipay")
    assert answer.status_code == 422 and "Choose a payment method." in answer.get_data(as_text=True)
    assert kit.order(order.order_no).provider == "wechat"
    assert begun(order.order_no) == NOT_BEGUN and fakes.provider_calls() == []


@with_settings(**NO_JSAPI)
def test_without_an_official_account_wechat_pays_by_qr_code_with_what_to_do(app: Flask, fakes: Fakes) -> None:
    """No HEYON_WECHAT_MP_APPID/_MP_SECRET: no sign-in is possible, so WeChat's browser gets the
    Native QR code, and the page says it cannot be paid by pressing on it."""
    client = browser(app, "wechat")
    order, location = recharge(client, "wechat")
    assert where(location, fakes) == "order page"
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/native"]
    assert fakes.oauth.seen == []
    assert (kit.order(order.order_no).pay_qr or "").startswith("weixin://wxpay/bizpayurl?pr=")
    assert shows(order_page(client, order)) == {"QR code", "scan with another phone", "waiting for the payment"}
    assert client.get(f"{CALLBACK}?code=0a1b&state=x").status_code == 404  # no sign-in to come back from


FORM_NOTES: dict[str, dict[str, str]] = {
    "wechat": {"alipay": "In WeChat: we show you how to open it in your browser"},
    "wechat-pc": {"alipay": "In WeChat: we show you how to open it in your browser"},
    "alipay": {"wechat": "In Alipay: we show you how to open it in WeChat or a browser"},
    "mobile": {},
    "desktop": {},
}


@pytest.mark.parametrize("place", FORM_NOTES)
def test_the_form_notes_what_cannot_pay_here(app: Flask, place: str) -> None:
    """Every method stays on the form; one that cannot pay where the customer is says what will
    happen instead."""
    page = browser(app, place).get("/recharge?lang=en").get_data(as_text=True)
    assert re.findall(r'name="method" value="([^"]+)"', page) == ["wechat", "alipay", "stripe", "voucher"]
    assert form_notes(page) == FORM_NOTES[place]


@with_settings(**NO_JSAPI)
def test_without_an_official_account_the_form_says_wechat_is_a_code_to_scan(app: Flask) -> None:
    """Before choosing, the customer learns that inside WeChat this method is a code to scan."""
    page = browser(app, "wechat").get("/recharge?lang=en").get_data(as_text=True)
    assert form_notes(page) == {
        "wechat": "In WeChat: a code to scan with another phone, or open this page in a browser",
        "alipay": "In WeChat: we show you how to open it in your browser",
    }


@with_settings(HEYON_PAGE_CACHE_SECONDS=300)
def test_the_page_cache_keeps_each_place_its_own_form(app: Flask) -> None:
    """The form page comes from the page cache, which must keep one page per place: WeChat's page
    (Alipay noted) served in a phone's browser would tell it Alipay cannot open there."""
    for _ in range(2):  # the second round is served from the cache
        for place, notes in FORM_NOTES.items():
            page = browser(app, place).get("/recharge?lang=en").get_data(as_text=True)
            assert form_notes(page) == notes, place
    kept = app.extensions["heyon.page_cache"]
    assert {variant for template, _, variant in kept if template == "customer/recharge.html"} == {
        "wechat", "alipay", "mobile", "desktop"}


# ------------------------------------------------------------------ opened later where the method works


def test_an_alipay_order_made_in_wechat_is_paid_in_the_browser(app: Flask, fakes: Fakes) -> None:
    """The customer follows the page's advice and opens it in the phone's browser (another browser,
    without WeChat's cookies): a "pay" button there goes on to Alipay's mobile page."""
    order, _ = recharge(browser(app, "wechat"), "alipay")
    phone = browser(app, "mobile")
    page = phone.get(f"/orders/{order.token}?lang=en").get_data(as_text=True)
    assert shows(page) == {"pay button", "pay another way"}
    assert "Pay ¥100.00 with Alipay" in page
    assert methods_offered(page) == ["wechat", "stripe"]
    paid = phone.post(f"/orders/{order.token}/checkout", data={"csrf_token": csrf_from(page)})
    assert paid.status_code == 303 and where(paid.headers["Location"], fakes) == "alipay.trade.wap.pay"
    assert kit.order(order.order_no).pay_url == paid.headers["Location"]


def test_a_wechat_order_made_in_alipay_is_paid_in_the_browser(app: Flask, fakes: Fakes) -> None:
    """The Alipay app's page says "open it in a browser": there WeChat Pay is its H5 page."""
    order, _ = recharge(browser(app, "alipay"), "wechat")
    phone = browser(app, "mobile")
    page = phone.get(f"/orders/{order.token}?lang=en").get_data(as_text=True)
    assert "Pay ¥100.00 with WeChat Pay" in page and "pay button" in shows(page)
    paid = phone.post(f"/orders/{order.token}/checkout", data={"csrf_token": csrf_from(page)})
    assert paid.status_code == 303 and where(paid.headers["Location"], fakes) == "WeChat H5 page"
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/h5"]


# Application bug: customer/wechat_sign_in.check_state accepts a state only for an order this
# browser's session made (own_orders.made_here), but the sign-in can be started from the order page
# of any browser (POST /orders/<token>/checkout or /method); recharge._sign_in does not remember the
# order in that browser's session, so the state comes back "not ours". Fix: own_orders.remember(
# order.order_no) in heyon_site/customer/recharge.py::_sign_in, before new_state.
def test_a_wechat_order_made_in_alipay_is_paid_in_wechat(app: Flask, fakes: Fakes) -> None:
    """The Alipay app's page says "open it in WeChat": pasted into WeChat (another browser, whose
    session never made the order), its "pay" button signs in and opens the pay sheet."""
    order, _ = recharge(browser(app, "alipay"), "wechat")
    inside = browser(app, "wechat")
    page = inside.get(f"/orders/{order.token}?lang=en").get_data(as_text=True)
    assert "pay button" in shows(page)
    pressed = inside.post(f"/orders/{order.token}/checkout", data={"csrf_token": csrf_from(page)})
    assert pressed.status_code == 303 and where(pressed.headers["Location"], fakes) == "WeChat sign-in"
    back = inside.get(through_wechat(pressed.headers["Location"]))
    assert NOT_OURS not in back.get_data(as_text=True)  # what the bug answers, with 400
    assert back.status_code == 303
    assert pay_sheet(inside.get(back.headers["Location"]).get_data(as_text=True)) is not None
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]


def test_in_alipay_a_wechat_order_goes_on_with_alipay(app: Flask, fakes: Fakes) -> None:
    """The order page in Alipay's app offers the methods that work there; Alipay's mobile page."""
    client = browser(app, "alipay")
    order, _ = recharge(client, "wechat")
    answer = pay_another_way(client, order, "alipay")
    assert answer.status_code == 303 and where(answer.headers["Location"], fakes) == "alipay.trade.wap.pay"
    assert kit.order(order.order_no).provider == "alipay"
    assert fakes.provider_calls() == []  # WeChat Pay was never asked


def test_in_wechat_an_alipay_order_goes_on_with_wechat_pay(app: Flask, fakes: Fakes) -> None:
    """Choosing WeChat Pay instead of Alipay inside WeChat: the sign-in, then the pay sheet."""
    client = browser(app, "wechat")
    order, _ = recharge(client, "alipay")
    answer = pay_another_way(client, order, "wechat")
    assert answer.status_code == 303 and where(answer.headers["Location"], fakes) == "WeChat sign-in"
    assert client.get(through_wechat(answer.headers["Location"])).status_code == 303
    sheet = pay_sheet(order_page(client, order))
    assert sheet is not None and pay_sheet_verifies(sheet)
    assert kit.order(order.order_no).provider == "wechat"
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]


def test_a_jsapi_order_opened_outside_wechat_says_where_to_finish(app: Flask, fakes: Fakes) -> None:
    """WeChat's pay sheet opens only inside WeChat: elsewhere the page says so, and offers neither
    the sheet nor another method (WeChat Pay has the order now)."""
    order, _ = pay_inside_wechat(browser(app, "wechat"), fakes)
    page = browser(app, "mobile").get(f"/orders/{order.token}?lang=en").get_data(as_text=True)
    assert shows(page) == {"started in WeChat", "waiting for the payment"}


# ------------------------------------------------------------------ 2. WeChat Pay inside WeChat, end to end


def test_the_sign_in_address_is_wechats_silent_one(app: Flask, fakes: Fakes) -> None:
    """snsapi_base (no consent screen), our callback, a state of WeChat's alphabet, and the
    #wechat_redirect fragment, in WeChat's documented order."""
    _, location = recharge(browser(app, "wechat"), "wechat")
    parts = urlsplit(location)
    assert (f"{parts.scheme}://{parts.netloc}{parts.path}", parts.fragment) == (
        fakes.oauth.base_url + "/connect/oauth2/authorize", "wechat_redirect")
    query = parse_qsl(parts.query)
    assert [k for k, _ in query] == ["appid", "redirect_uri", "response_type", "scope", "state"]
    assert dict(query) | {"state": ""} == {"appid": MP_APPID, "redirect_uri": CALLBACK, "response_type": "code",
                                           "scope": "snsapi_base", "state": ""}
    assert re.fullmatch(r"[A-Za-z0-9]{1,128}", dict(query)["state"])


def test_inside_wechat_the_order_page_opens_the_signed_pay_sheet(app: Flask, fakes: Fakes) -> None:
    """The code is traded for the openid by the site, the JSAPI order is made for that payer under
    the official account's appid, and the page carries a sheet WeChat's client accepts."""
    client = browser(app, "wechat")
    order, page = pay_inside_wechat(client, fakes)
    assert fakes.code_exchanges() == 1 and fakes.oauth.refused == []
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]
    sent = fakes.wechat.trades[order.order_no].request
    assert (sent["appid"], sent["payer"], sent["amount"]["total"]) == (MP_APPID, {"openid": fakes.oauth.openid},
                                                                      ORDER_FEN)
    assert "scene_info" not in sent
    sheet = pay_sheet(page)
    assert sheet is not None and pay_sheet_verifies(sheet)
    assert sheet["appId"] == MP_APPID and sheet["signType"] == "RSA"
    prepay_id = sheet["package"].removeprefix("prepay_id=")
    assert fakes.wechat.prepay_ids[prepay_id] == order.order_no
    assert shows(page) == {"pay sheet", "waiting for the payment"}
    assert "Pay ¥100.00 with WeChat Pay" in page
    # The page can be reloaded: the sheet is kept with the order, not made again.
    assert pay_sheet(order_page(client, order)) == sheet
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]


def test_the_openid_is_remembered_so_the_next_recharge_opens_the_sheet_at_once(app: Flask, fakes: Fakes) -> None:
    """One sign-in per browser, not per recharge: the signed cookie carries the openid WeChat gave,
    out of reach of the page's scripts."""
    client = browser(app, "wechat")
    pay_inside_wechat(client, fakes)
    cookie = client.get_cookie(wechat_sign_in.OPENID_COOKIE, domain="heyon.test")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    signed = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=f"heyon wechat openid {MP_APPID}")
    assert signed.loads(cookie.value) == fakes.oauth.openid  # the one WeChat gave, under our signature
    second, location = recharge(client, "wechat")
    assert where(location, fakes) == "order page"
    assert fakes.code_exchanges() == 1  # no second sign-in
    assert fakes.wechat.trades[second.order_no].request["payer"] == {"openid": fakes.oauth.openid}
    sheet = pay_sheet(order_page(client, second))
    assert sheet is not None and pay_sheet_verifies(sheet)


def test_a_jsapi_payment_is_credited_once_by_its_notification(app: Flask, fakes: Fakes) -> None:
    """WeChat notifies a JSAPI payment under the official account's appid."""
    order, _ = pay_inside_wechat(browser(app, "wechat"), fakes)
    notice = jsapi_notification(order.order_no, ORDER_FEN, "4200002026010100000000000042")
    notifier = new_client(app)
    assert kit.post_notification("/pay/notify/wechat", notifier, notice) == (204, "")
    assert kit.post_notification("/pay/notify/wechat", notifier, notice) == (204, "")  # WeChat's retry
    assert kit.order(order.order_no).status == "credited"
    assert kit.balance() == OPENING_FEN + ORDER_FEN
    assert kit.entries_of(order.order_no) == 1
    assert [c.outcome for c in kit.callbacks()] == ["credited", "duplicate"]


def test_check_payment_now_credits_a_jsapi_payment(app: Flask, fakes: Fakes) -> None:
    """The notification was lost: "Paid already? Check payment now" asks WeChat Pay, whose
    answer about a JSAPI order names the official account's appid."""
    client = browser(app, "wechat")
    order, page = pay_inside_wechat(client, fakes)
    fakes.wechat.answer_appid = MP_APPID
    check = f"/orders/{order.token}/check"
    assert client.post(check, data={"csrf_token": csrf_from(page)}).status_code == 303
    assert kit.order(order.order_no).status == "pending"  # NOTPAY: asked, nothing to do yet
    WECHAT.pay(fakes.wechat, order.order_no, ORDER_FEN)
    db.session.execute(update(RechargeOrder).where(RechargeOrder.id == order.id).values(checked_at=None))
    db.session.commit()  # past the interval between two checks
    assert client.post(check, data={"csrf_token": csrf_from(page)}).status_code == 303
    assert kit.order(order.order_no).status == "credited"
    assert kit.balance() == OPENING_FEN + ORDER_FEN
    gets = [c for c in fakes.provider_calls() if c.startswith("wechat GET")]
    assert gets == [f"wechat GET /v3/pay/transactions/out-trade-no/{order.order_no}"] * 2


def test_an_abandoned_jsapi_order_is_closed_and_expires(app: Flask, fakes: Fakes) -> None:
    """Reconciliation closes an unpaid JSAPI order at WeChat Pay, whose answers name MP_APPID."""
    order, _ = pay_inside_wechat(browser(app, "wechat"), fakes)
    fakes.wechat.answer_appid = MP_APPID
    found = candidate(order.order_no)
    assert found is not None
    later = found.created_at + WechatPayProvider.pay_timeout + timedelta(minutes=1)
    outcome = check_one(found, get_provider, timedelta(minutes=30), now=later)
    assert outcome in ("failed", "expired")
    assert fakes.wechat.trades[order.order_no].state == "CLOSED"
    assert f"wechat POST /v3/pay/transactions/out-trade-no/{order.order_no}/close" in fakes.provider_calls()
    assert kit.order(order.order_no).status == outcome
    assert kit.balance() == OPENING_FEN


# ------------------------------------------------------------------ 3. when the sign-in fails


def test_a_forged_state_is_refused_before_wechat_is_asked(app: Flask, fakes: Fakes) -> None:
    """One character of the MAC changed: not ours, so it names no order; the page points this
    browser to its own waiting order."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    state = state_of(callback)
    forged = state[:-1] + ("0" if state[-1] != "0" else "1")
    page = problem_page(client.get(with_query(callback, state=forged)), 400, NOT_OURS)
    assert f"/orders/{order.token}" in page  # "Open the order"
    assert fakes.code_exchanges() == 0
    assert_payable_another_way(client, fakes, order)


def test_a_state_is_good_once(app: Flask, fakes: Fakes) -> None:
    """The first return spends the state even without a code; the same state again (a replay,
    with a fresh code) is refused, and no code is traded for it."""
    client = browser(app, "wechat")
    fakes.oauth.give_code = False
    order, callback = start_inside_wechat(client, fakes)
    problem_page(client.get(callback), 400, SIGN_IN_FAILED)
    replay = with_query(callback, code=fakes.oauth.code_for())
    problem_page(client.get(replay), 400, STATE_SPENT)
    assert fakes.code_exchanges() == 0
    assert_payable_another_way(client, fakes, order)


def test_a_state_replayed_after_paying_makes_no_second_order(app: Flask, fakes: Fakes) -> None:
    """Coming back twice (a second tab, a reload of the callback) must not make a second JSAPI
    order nor trade a second code."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    assert client.get(callback).status_code == 303
    problem_page(client.get(with_query(callback, code=fakes.oauth.code_for())), 400, STATE_SPENT)
    assert fakes.code_exchanges() == 1
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]


def test_a_state_from_another_browser_is_refused(app: Flask, fakes: Fakes) -> None:
    """A sign-in address passed to someone else: their browser made no such order, and is told
    nothing about it; the customer's own browser can still pay."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    other = browser(app, "wechat")
    other.get("/recharge?lang=en")
    page = problem_page(other.get(callback), 400, NOT_OURS)
    assert order.order_no not in page and order.token not in page
    assert fakes.code_exchanges() == 0
    assert_payable_another_way(client, fakes, order)


def later_by(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The sign-in's clock (only its own: the fakes check times too) ``seconds`` ahead."""
    real = time.time
    monkeypatch.setattr(wechat_sign_in, "time", SimpleNamespace(time=lambda: real() + seconds))


def test_a_state_older_than_ten_minutes_is_refused(app: Flask, fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sign-in takes seconds: a state older than STATE_MAX_AGE is a replay, refused before any
    code is traded."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    later_by(monkeypatch, wechat_sign_in.STATE_MAX_AGE + 1)
    problem_page(client.get(callback), 400, STATE_SPENT)
    assert fakes.code_exchanges() == 0
    assert_payable_another_way(client, fakes, order)


def test_a_state_nine_minutes_old_is_still_good(app: Flask, fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the ten minutes: what refused the state above was its age alone."""
    client = browser(app, "wechat")
    _, callback = start_inside_wechat(client, fakes)
    later_by(monkeypatch, 9 * 60)
    assert client.get(callback).status_code == 303
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]


def test_a_return_without_a_code_is_refused(app: Flask, fakes: Fakes) -> None:
    """The customer turned the sign-in down (or WeChat sent no code)."""
    client = browser(app, "wechat")
    fakes.oauth.give_code = False
    order, callback = start_inside_wechat(client, fakes)
    assert "code" not in parse_qs(urlsplit(callback).query)
    page = problem_page(client.get(callback), 400, SIGN_IN_FAILED)
    assert "pay button" in shows(page)  # try WeChat Pay again
    assert_payable_another_way(client, fakes, order)


def test_a_code_wechat_refuses_is_refused(app: Flask, fakes: Fakes) -> None:
    """The code was used already (WeChat's 40163)."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    [code] = parse_qs(urlsplit(callback).query)["code"]
    fakes.oauth.grants[code].used = True
    problem_page(client.get(callback), 400, SIGN_IN_FAILED)
    assert fakes.oauth.refused == ["access_token: 40163"]
    assert_payable_another_way(client, fakes, order)


@with_settings(HEYON_WECHAT_MP_SECRET="f" * 32)
def test_a_wrong_secret_is_refused(app: Flask, fakes: Fakes) -> None:
    """The official account's secret was changed at WeChat and not here (WeChat's 40125)."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    problem_page(client.get(callback), 400, SIGN_IN_FAILED)
    assert fakes.oauth.refused == ["access_token: 40125"]
    assert_payable_another_way(client, fakes, order)


@with_settings(HEYON_WECHAT_OAUTH_BASE=NOWHERE)
def test_wechat_sign_in_unreachable_is_a_503(app: Flask, fakes: Fakes) -> None:
    """Nothing listens where the code is traded: "not answering", 503, and the order payable."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    problem_page(client.get(callback), 503, UNAVAILABLE)
    assert_payable_another_way(client, fakes, order)


def test_wechat_sign_in_failing_is_a_503(app: Flask, fakes: Fakes) -> None:
    """WeChat's API answers 503 (not an error of the code): try again later, or pay another way."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    fakes.oauth.fail_next = 1
    problem_page(client.get(callback), 503, UNAVAILABLE)
    assert_payable_another_way(client, fakes, order)


def test_wechat_pay_down_after_the_sign_in_is_a_503(app: Flask, fakes: Fakes) -> None:
    """The openid is known but WeChat Pay does not answer the JSAPI order: nothing is kept on the
    order, which stays payable by card."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    fakes.wechat.fail_next = 1
    problem_page(client.get(callback), 503, UNAVAILABLE)
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]
    assert begun(order.order_no) == NOT_BEGUN
    fakes.wechat.seen.clear()
    assert_payable_another_way(client, fakes, order)


def test_a_failed_sign_in_can_be_tried_again(app: Flask, fakes: Fakes) -> None:
    """The page's "pay" button starts a new sign-in, with a new state, that succeeds."""
    client = browser(app, "wechat")
    fakes.oauth.give_code = False
    order, callback = start_inside_wechat(client, fakes)
    page = problem_page(client.get(callback), 400, SIGN_IN_FAILED)
    fakes.oauth.give_code = True
    again = client.post(f"/orders/{order.token}/checkout", data={"csrf_token": csrf_from(page)})
    assert where(again.headers["Location"], fakes) == "WeChat sign-in"
    assert state_of(again.headers["Location"]) != state_of(callback)
    assert client.get(through_wechat(again.headers["Location"])).status_code == 303
    assert pay_sheet(order_page(client, order)) is not None


@pytest.mark.parametrize("column", ["pay_qr", "pay_url", "pay_jsapi", "provider_ref"])
def test_switch_method_refuses_once_a_checkout_has_begun(app: Flask, column: str) -> None:
    """Once any provider was asked, the order is theirs: switching could let it be paid twice."""
    order, _ = recharge(browser(app, "wechat"), "alipay")  # blocked: nothing begun
    db.session.execute(update(RechargeOrder).where(RechargeOrder.id == order.id).values({column: "begun"}))
    db.session.commit()
    assert in_write_transaction(lambda: switch_method(db.session, order.id, "stripe")) is False
    assert kit.order(order.order_no).provider == "alipay"


def test_after_the_pay_sheet_no_other_method_can_be_chosen(app: Flask, fakes: Fakes) -> None:
    """The order page offers none, and a "Pay another way" form sent anyway changes nothing."""
    client = browser(app, "wechat")
    order, page = pay_inside_wechat(client, fakes)
    assert methods_offered(page) == []
    answer = client.post(f"/orders/{order.token}/method", data={"csrf_token": csrf_from(page), "method": "stripe"})
    assert answer.status_code == 303 and where(answer.headers["Location"], fakes) == "order page"
    assert kit.order(order.order_no).provider == "wechat"
    assert fakes.provider_calls() == ["wechat POST /v3/pay/transactions/jsapi"]


def test_an_order_switched_away_cannot_come_back_through_its_old_state(app: Flask, fakes: Fakes) -> None:
    """Paying by card after WeChat's sign-in began spends the state: coming back from WeChat then
    makes no WeChat Pay order as well."""
    client = browser(app, "wechat")
    order, callback = start_inside_wechat(client, fakes)
    assert pay_another_way(client, order, "stripe").status_code == 303
    problem_page(client.get(callback), 400, STATE_SPENT)
    assert fakes.provider_calls() == ["stripe POST /v1/checkout/sessions"]
    assert fakes.code_exchanges() == 0


# ------------------------------------------------------------------ 4. only an openid WeChat gave counts


def test_a_tampered_openid_cookie_is_ignored(app: Flask, fakes: Fakes) -> None:
    """The cookie's openid swapped for another (the signature no longer covers it), or its
    signature changed: signed in again, and the sheet is for the openid WeChat gives."""
    client = browser(app, "wechat")
    pay_inside_wechat(client, fakes)
    cookie = client.get_cookie(wechat_sign_in.OPENID_COOKIE, domain="heyon.test")
    assert cookie is not None
    _, stamp, signature = cookie.value.split(".")
    other_payload = URLSafeTimedSerializer("any", salt="any").dumps(ATTACKER).split(".")[0]
    # The signature's first character changed: its last one may carry only padding bits, which
    # base64 decoding drops, so changing it can leave the signature as it was.
    changed = ("B" if signature[0] != "B" else "C") + signature[1:]
    for value in (f"{other_payload}.{stamp}.{signature}", f"{cookie.value.rsplit('.', 1)[0]}.{changed}"):
        client.set_cookie(wechat_sign_in.OPENID_COOKIE, value, domain="heyon.test")
        order, location = recharge(client, "wechat")
        assert where(location, fakes) == "WeChat sign-in", value
        assert client.get(through_wechat(location)).status_code == 303
        assert fakes.wechat.trades[order.order_no].request["payer"] == {"openid": fakes.oauth.openid}
    assert fakes.code_exchanges() == 3


def test_an_openid_cookie_signed_with_another_key_is_ignored(app: Flask, fakes: Fakes) -> None:
    """Only the site's own signature makes a cookie's openid count: the same cookie signed with the
    site's key (which only the site has) is taken, one with any other key is not."""
    client = browser(app, "wechat")
    salt = f"heyon wechat openid {MP_APPID}"
    forged = URLSafeTimedSerializer("not-our-secret", salt=salt)
    client.set_cookie(wechat_sign_in.OPENID_COOKIE, forged.dumps(ATTACKER), domain="heyon.test")
    _, location = recharge(client, "wechat")
    assert where(location, fakes) == "WeChat sign-in"
    assert fakes.provider_calls() == []
    genuine = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=salt)
    client.set_cookie(wechat_sign_in.OPENID_COOKIE, genuine.dumps(ATTACKER), domain="heyon.test")
    order, location = recharge(client, "wechat")
    assert where(location, fakes) == "order page"
    assert fakes.wechat.trades[order.order_no].request["payer"] == {"openid": ATTACKER}


def test_the_openid_is_never_taken_from_the_address(app: Flask, fakes: Fakes) -> None:
    """Neither on the recharge form's address nor on the way back from WeChat: the JSAPI order is
    for the payer WeChat named when the site traded the code."""
    client = browser(app, "wechat")
    answer = client.post("/recharge?openid=oAttackerAttackerAttacker000",
                         data=recharge_form(client, method="wechat", openid=ATTACKER))
    assert answer.status_code == 303 and where(answer.headers["Location"], fakes) == "WeChat sign-in"
    order = newest_order()
    callback = through_wechat(answer.headers["Location"])
    assert client.get(with_query(callback, openid=ATTACKER)).status_code == 303
    assert fakes.wechat.trades[order.order_no].request["payer"] == {"openid": fakes.oauth.openid}


# ------------------------------------------------------------------ 5. in the visitor's language


def test_refusals_answer_in_english_when_asked_by_header(app: Flask, fakes: Fakes) -> None:
    """WeChat's browser sends the phone's language; no ?lang= was ever chosen here."""
    client = browser(app, "wechat", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    order, callback = start_inside_wechat(client, fakes)
    assert client.get_cookie("lang", domain="heyon.test") is not None  # recharge_form chose English by ?lang=
    client.delete_cookie("lang", domain="heyon.test")
    forged = state_of(callback)[:-1] + ("0" if state_of(callback)[-1] != "0" else "1")
    page = problem_page(client.get(with_query(callback, state=forged)), 400, NOT_OURS)
    assert '<html lang="en"' in page and "WeChat Pay could not start" in page
    page = problem_page(client.get(with_query(callback, code=None)), 400, SIGN_IN_FAILED)
    assert '<html lang="en"' in page
    page = problem_page(client.get(callback), 400, STATE_SPENT)
    assert '<html lang="en"' in page and "Pay another way" in page
    assert kit.order(order.order_no).status == "pending"


@with_settings(HEYON_WECHAT_OAUTH_BASE=NOWHERE)
def test_refusals_answer_in_english_when_chosen_by_lang(app: Flask, fakes: Fakes) -> None:
    """?lang=en on an earlier page (kept in a cookie), and on the refusal's own address."""
    client = browser(app, "wechat")
    _, callback = start_inside_wechat(client, fakes)
    page = problem_page(client.get(callback), 503, UNAVAILABLE)
    assert '<html lang="en"' in page
    stranger = browser(app, "wechat")
    page = problem_page(stranger.get(callback + "&lang=en"), 400, NOT_OURS)
    assert '<html lang="en"' in page
    chinese = browser(app, "wechat", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    answer = chinese.get(callback)
    assert answer.status_code == 400 and '<html lang="zh-Hans"' in answer.get_data(as_text=True)
