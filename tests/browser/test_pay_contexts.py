"""Paying where the customer is (payments/context.py), in a real browser that says it is WeChat's
in-app browser or Alipay's app: WeChat Pay's own pay sheet inside WeChat (sign-in hop, JSAPI
order, WeixinJSBridge), Alipay inside WeChat (open in the browser instead, never a link WeChat
blocks), WeChat Pay inside Alipay's app (open elsewhere), Alipay's mobile page there, and the
same pages without JavaScript.

The site here takes WeChat Pay and Alipay (no sandbox): their APIs and WeChat's sign-in are the
provider kits' fakes, served on 127.0.0.1; WeChat's bridge is a stub the page cannot tell from
WeChat's, defined the way WeChat defines it (after the page has loaded, announced by an event).
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.wrappers import Response

from heyon_site import create_app
from heyon_site.extensions import db
from tests import kit
from tests.browser.helpers import CARDS, Recorder, expect, new_context
from tests.fakes import serving
from tests.kit import TEST_CONFIG
from tests.provider_kits import alipay as alipay_kit
from tests.provider_kits import wechat as wechat_kit
from tests.provider_kits.rsa_keys import verifies
from tests.provider_kits.wechat import KIT as WECHAT
from tests.provider_kits.wechat import jsapi_config, oauth_fake, pay_sheet_verifies

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page
    from playwright.sync_api import Response as Response_

    from tests.provider_kits.alipay import AlipayFakeApi
    from tests.provider_kits.wechat import WechatFakeApi, WechatOAuthFake

pytestmark = pytest.mark.live

# Real User-Agents of the two apps on Android (WeChat 8.0, Alipay 10.5): the site looks only for
# MicroMessenger and AlipayClient, but everything else in them is what a phone sends.
WECHAT_UA = ("Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
             "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin "
             "NetType/WIFI Language/zh_CN ABI/arm64")
ALIPAY_UA = ("Mozilla/5.0 (Linux; U; Android 13; zh-CN; Pixel 7 Build/TQ3A.230805.001) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 UCBS/3.22.2.70 Nebula "
             "AlipayDefined(nt:WIFI,ws:393|0|2.75) AliApp(AP/10.5.70.8000) AlipayClient/10.5.70.8000 "
             "Language/zh-Hans Region/CN")

# One card per scenario, so no test depends on another's orders (numbers the suite already types;
# here each has the suite's test PIN).
CARD = {"jsapi-announced": CARDS["recharge-js"], "jsapi-present": "8600000000000018",
        "jsapi-cancel": CARDS["recharge-nojs"], "jsapi-out-of-sight": "8600000000000026",
        "alipay-in-wechat-js": CARDS["pages"], "alipay-in-wechat-nojs": kit.CARD,
        "alipay-app": CARDS["amount-choice"], "open-in-browser": "8600000000000034"}
PHONE_UA = ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/116.0.0.0 Mobile Safari/537.36")

CREDIT_WAIT_MS = 20_000  # the order page polls every 3 s
ORDER_PAGE = re.compile(r"/orders/[\w-]+(#.*)?$")  # the sign-in's #wechat_redirect may ride along

# WeChat's bridge, a stub that keeps every call and answers it 50 ms later with
# window.__wxAnswer (ok unless a test says otherwise). The listeners the page adds for
# WeixinJSBridgeReady are counted, so a test can tell which way the script found the bridge.
BRIDGE = """
window.__wxCalls = [];
window.__readyListeners = 0;
(function () {
  var add = document.addEventListener;
  document.addEventListener = function (type) {
    if (type === "WeixinJSBridgeReady") window.__readyListeners++;
    return add.apply(this, arguments);
  };
})();
function __defineBridge() {
  window.WeixinJSBridge = {
    invoke: function (name, params, cb) {
      window.__wxCalls.push([name, params]);
      setTimeout(function () { cb({err_msg: window.__wxAnswer || "get_brand_wcpay_request:ok"}); }, 50);
    }
  };
}
"""
# As WeChat usually does: absent while the page's own scripts run (wechat.js is deferred, so it
# runs before DOMContentLoaded), then defined and announced with WeixinJSBridgeReady on document.
ANNOUNCED = BRIDGE + """
document.addEventListener("DOMContentLoaded", function () {
  setTimeout(function () { __defineBridge(); document.dispatchEvent(new Event("WeixinJSBridgeReady")); }, 0);
});
"""
# As on a page WeChat had ready before its scripts ran: there from the start, the event long gone.
PRESENT = BRIDGE + "__defineBridge();"


@dataclass(frozen=True)
class PaySite:
    url: str
    wechat: WechatFakeApi
    oauth: WechatOAuthFake
    alipay: AlipayFakeApi
    log: Path

    def at(self, path: str) -> str:
        return self.url + path


@pytest.fixture(scope="module")
def pay_site(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaySite]:
    """A live site taking WeChat Pay (with the official account's sign-in) and Alipay, against
    the kits' fakes; its cards hold 5.00 each."""
    tmp = tmp_path_factory.mktemp("pay-contexts")
    path = tmp / "heyon.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
    with app.app_context():
        for number in CARD.values():
            kit.make_card(number, kit.PIN, kit.OPENING_FEN)
        db.session.remove()
        db.engine.dispose()
    wx, oauth, ali = WECHAT.fake_api(), oauth_fake(), alipay_kit.KIT.fake_api()
    # Alipay's gateway shows its cashier to a browser's GET (the fake serves only the API).
    ali.routes[("GET", alipay_kit.GATEWAY_PATH)] = lambda request: Response(
        "<!doctype html><title>Alipay</title><link rel=icon href=data:,>", content_type="text/html; charset=utf-8")
    with serving(wx), serving(oauth), serving(ali):
        # The workers read the same settings from their environment, keys and all, as
        # production does; generous per-IP limits, since every request comes from 127.0.0.1.
        env = {"HEYON_PROVIDERS": "wechat,alipay", **WECHAT.config(wx.base_url), **jsapi_config(oauth.base_url),
               **alipay_kit.KIT.config(ali.base_url),
               "HEYON_IP_LIMIT": "1000 per minute", "HEYON_IP_FAILURE_LIMIT": "1000 per hour"}
        with kit.live_site(url, tmp, workers=2, extra_env=env) as live:
            yield PaySite(live.url, wx, oauth, ali, live.log)
            assert "Traceback" not in live.log_text(), live.log_text()[-3000:]


def phone(browser: Browser, user_agent: str, *, js: bool = True, bridge: str | None = None,
          answer: str | None = None) -> BrowserContext:
    """A fresh phone saying ``user_agent``; ``bridge`` (ANNOUNCED or PRESENT) is WeChat's."""
    context = new_context(browser, js=js, user_agent=user_agent)
    if answer is not None:
        context.add_init_script(f"window.__wxAnswer = {json.dumps(answer)};")
    if bridge is not None:
        context.add_init_script(bridge)
    return context


def choose(page: Page, scope: str, method: str) -> None:
    """Tap the label of a payment method's radio button inside ``scope`` (by its value: the
    labels carry notes that may name the other method)."""
    radio = page.locator(f"{scope} input[type=radio][name=method][value={method}]")
    page.locator(f"{scope} label[for='{radio.get_attribute('id')}']").click()
    expect(radio).to_be_checked()


def recharge(page: Page, site: PaySite, card: str, method: str) -> None:
    """Fill and send the recharge form: ¥50 (no promotion runs here) by ``method``."""
    page.goto(site.at("/recharge?lang=en"))
    page.get_by_label("Card number", exact=True).fill(card)
    page.get_by_label("Card password", exact=True).fill(kit.PIN)
    page.locator("label", has_text=re.compile(r"^¥50(?!\d)")).click()
    choose(page, "#recharge-form", method)
    page.get_by_role("button", name="Recharge").click()


def sign_in_state(answer: Response_, site: PaySite) -> str:
    """The answer to a form sends the browser to WeChat's silent sign-in, coming back to our
    /wechat/signed-in (a 303 for a plain form, HX-Redirect for htmx); the state it carries."""
    target = answer.headers.get("location") or answer.headers.get("hx-redirect") or ""
    assert answer.status == (303 if "location" in answer.headers else 204), (answer.status, answer.headers)
    parts = urlsplit(target)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == site.oauth.base_url + "/connect/oauth2/authorize", target
    assert parts.fragment == "wechat_redirect", target  # some WeChat versions refuse a sign-in without it
    asked = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (asked["appid"], asked["redirect_uri"], asked["response_type"], asked["scope"]) == \
        (wechat_kit.MP_APPID, site.at("/wechat/signed-in"), "code", "snsapi_base"), asked
    return asked["state"]


def posted(path: str) -> Any:
    """A predicate for page.expect_response: the answer to a POST to ``path`` on our site."""
    return lambda r: r.request.method == "POST" and urlsplit(r.url).path == path


def order_no(page: Page) -> str:
    return page.locator(".order-no strong").inner_text().strip()


def calls(page: Page) -> list[list[Any]]:
    return list(page.evaluate("window.__wxCalls"))


def jsapi_order_of(site: PaySite, order: str, params: dict[str, str]) -> None:
    """The pay sheet names a JSAPI order WeChat Pay made for this order, for the signed-in payer."""
    prepay = params["package"].removeprefix("prepay_id=")
    assert site.wechat.prepay_ids.get(prepay) == order, (params["package"], site.wechat.prepay_ids)
    made = site.wechat.trades[order].request
    assert made["payer"] == {"openid": site.oauth.openid}
    assert made["appid"] == wechat_kit.MP_APPID == params["appId"]


# ------------------------------------------------------------------ WeChat Pay inside WeChat


def pay_with_wechat_in_wechat(page: Page, site: PaySite, card: str) -> str:
    """Recharge ¥50 by WeChat Pay inside WeChat: through WeChat's sign-in to the order page with
    the pay sheet; the order number."""
    seen_oauth = len(site.oauth.seen)
    with page.expect_response(posted("/recharge")) as sent:
        recharge(page, site, card, "wechat")
    state = sign_in_state(sent.value, site)
    expect(page).to_have_url(ORDER_PAGE)
    order = order_no(page)
    assert state.startswith(order), (state, order)  # the sign-in is for this order
    # The browser went through the sign-in, whose code the site (not the browser) traded.
    assert [p for _, p, _ in site.oauth.seen[seen_oauth:]] == ["/connect/oauth2/authorize", "/sns/oauth2/access_token"]
    assert site.oauth.refused == []
    return order


@pytest.mark.parametrize("bridge", [ANNOUNCED, PRESENT], ids=["bridge-announced", "bridge-present"])
def test_wechat_pay_in_wechat_opens_the_pay_sheet_and_the_order_turns_credited(browser: Browser, pay_site: PaySite,
                                                                               bridge: str) -> None:
    announced = bridge is ANNOUNCED
    context = phone(browser, WECHAT_UA, bridge=bridge)
    page = context.new_page()
    rec = Recorder(page, f"pay-wechat-jsapi-{'announced' if announced else 'present'}")
    try:
        order = pay_with_wechat_in_wechat(page, pay_site, CARD["jsapi-announced" if announced else "jsapi-present"])
        sheet = page.locator("#wechat-jsapi")
        expect(sheet.locator("[data-state=paying]")).to_be_visible()
        expect(sheet.locator("[data-state=paying]")).to_have_text("Checking the payment…")
        expect(sheet.locator("[data-state=failed]")).to_be_hidden()
        # Nothing to press again. (Whether it is also out of sight: test_after_ok_the_pay_button_is_out_of_sight.)
        expect(sheet.locator("[data-pay]")).to_have_attribute("hidden", "")
        # Which way wechat.js found the bridge: it waited for the event only when it had to.
        assert page.evaluate("window.__readyListeners") == (1 if announced else 0)
        [(name, params)] = calls(page)
        assert name == "getBrandWCPayRequest"
        assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
        assert pay_sheet_verifies(params), params
        jsapi_order_of(pay_site, order, params)
        expect(page.locator("#order-status .state")).to_have_text("Waiting for payment")
        rec.shot("wechat pay sheet answered ok")

        # WeChat Pay tells the site; the page, polling, shows the money arrived.
        trade = pay_site.wechat.trades[order]
        assert trade.amount_fen == 5_000
        body, headers = WECHAT.notification(order, trade.amount_fen, wechat_kit.new_transaction_id())
        answer = requests.post(pay_site.at("/pay/notify/wechat"), data=body, headers=headers, timeout=30)
        assert answer.status_code == 204, (answer.status_code, answer.text)
        expect(page.locator("#order-status .state")).to_have_text("Credited", timeout=CREDIT_WAIT_MS)
        expect(page.locator("#order-status")).to_contain_text("¥50.00 has been added to card")
        expect(page.locator("#wechat-jsapi")).to_be_hidden()
        assert len(calls(page)) == 1, "the pay sheet was opened more than once"
        rec.shot("order credited")
        rec.assert_clean()
    finally:
        context.close()


def test_a_cancelled_pay_sheet_offers_the_button_again(browser: Browser, pay_site: PaySite) -> None:
    context = phone(browser, WECHAT_UA, bridge=ANNOUNCED, answer="get_brand_wcpay_request:cancel")
    page = context.new_page()
    rec = Recorder(page, "pay-wechat-jsapi-cancel")
    try:
        pay_with_wechat_in_wechat(page, pay_site, CARD["jsapi-cancel"])
        sheet = page.locator("#wechat-jsapi")
        failed, button = sheet.locator("[data-state=failed]"), sheet.locator("[data-pay]")
        expect(failed).to_be_visible()
        expect(failed).to_have_text("The payment was not completed. Press the button to try again.")
        expect(sheet.locator("[data-state=paying]")).to_be_hidden()
        expect(button).to_be_visible()
        expect(button).to_be_enabled()
        expect(button).to_have_text("Pay ¥50.00 with WeChat Pay")
        [(name, first)] = calls(page)
        assert name == "getBrandWCPayRequest" and pay_sheet_verifies(first)
        expect(page.locator("#order-status .state")).to_have_text("Waiting for payment")
        rec.shot("pay sheet cancelled")

        # This time the customer pays: the same signed sheet opens again.
        page.evaluate("window.__wxAnswer = 'get_brand_wcpay_request:ok'")
        button.click()
        expect(sheet.locator("[data-state=paying]")).to_be_visible()
        expect(failed).to_be_hidden()
        expect(button).to_have_attribute("hidden", "")
        assert [c[0] for c in calls(page)] == ["getBrandWCPayRequest"] * 2
        assert calls(page)[1][1] == first
        rec.shot("paid on the second try")
        rec.assert_clean()
    finally:
        context.close()


def test_after_ok_the_pay_button_is_out_of_sight(browser: Browser, pay_site: PaySite) -> None:
    """After WeChat says "ok" only "checking the payment" is shown: the stylesheet lets the
    ``hidden`` attribute win over the buttons' display (it once did not)."""
    context = phone(browser, WECHAT_UA, bridge=ANNOUNCED)
    page = context.new_page()
    try:
        pay_with_wechat_in_wechat(page, pay_site, CARD["jsapi-out-of-sight"])
        sheet = page.locator("#wechat-jsapi")
        expect(sheet.locator("[data-state=paying]")).to_be_visible()
        expect(sheet.locator("[data-pay]")).to_have_attribute("hidden", "")  # the script did its part
        expect(sheet.locator("[data-pay]")).to_be_hidden(timeout=2_000)
    finally:
        context.close()


# ------------------------------------------------------------------ Alipay inside WeChat


def links_in(page: Page) -> list[str]:
    """Every address the page could send the browser to: links, form targets, frames, refreshes."""
    return list(page.eval_on_selector_all(
        "a[href], area[href], form[action], iframe[src], meta[http-equiv=refresh]",
        "els => els.map(e => e.href || e.action || e.src || e.getAttribute('content') || '')"))


def assert_no_way_to_alipay(page: Page, site: PaySite) -> None:
    """WeChat blocks Alipay's pages: nothing on the page may lead there."""
    alipay_like = re.compile(r"alipays?:|alipay[\w-]*\.(com|cn)|" + re.escape(site.alipay.base_url), re.IGNORECASE)
    everywhere = links_in(page)
    assert everywhere, "the page has no links at all: the check below would prove nothing"
    leading = [url for url in everywhere if alipay_like.search(url)]
    assert leading == [], leading
    assert site.alipay.base_url not in page.content()


def capture_gateway(context: BrowserContext, site: PaySite) -> list[str]:
    """Every address the browser asks of the Alipay fake. (A request event, not a route:
    Playwright does not route the request a redirect leads to.)"""
    opened: list[str] = []
    context.on("request", lambda request: opened.append(request.url)
               if request.url.startswith(site.alipay.base_url + "/") else None)
    return opened


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_alipay_in_wechat_says_open_in_the_browser_and_offers_wechat_pay(browser: Browser, pay_site: PaySite,
                                                                        js: bool) -> None:
    """Without JavaScript too (WeChat's browser with scripts off): the instructions are plain
    HTML and the other method is a plain form."""
    mode = "js" if js else "nojs"
    context = phone(browser, WECHAT_UA, js=js)
    to_alipay = capture_gateway(context, pay_site)
    page = context.new_page()
    rec = Recorder(page, f"pay-alipay-in-wechat-{mode}")
    seen_oauth, seen_alipay = len(pay_site.oauth.seen), len(pay_site.alipay.seen)
    try:
        page.goto(pay_site.at("/recharge?lang=en"))
        expect(page.locator("#recharge-form label", has_text=re.compile(r"^Alipay"))) \
            .to_contain_text("In WeChat: we show you how to open it in your browser")
        recharge(page, pay_site, CARD[f"alipay-in-wechat-{mode}"], "alipay")
        expect(page).to_have_url(ORDER_PAGE)
        panel = page.locator(".open-elsewhere")
        expect(panel).to_contain_text("Alipay cannot open inside WeChat.")
        expect(panel).to_contain_text("Tap ··· at the top right and choose “Open in Browser” (在浏览器打开).")
        image = panel.locator("img")
        expect(image).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert_no_way_to_alipay(page, pay_site)
        other = page.locator("form.other-method")
        expect(other.locator("input[name=method]")).to_have_count(1)
        expect(other.locator("input[name=method][value=wechat]")).to_be_checked()
        expect(other.locator("label")).to_have_text("WeChat Pay")
        expect(page.locator("#order-status .state")).to_have_text("Waiting for payment")
        rec.shot("alipay in wechat")
        order = order_no(page)

        choose(page, "form.other-method", "wechat")
        tag = page.evaluate("window.__heyonMark = String(Math.random())")
        with page.expect_response(posted(urlsplit(page.url).path + "/method")) as sent:
            other.get_by_role("button", name="Pay another way").click()
        assert sign_in_state(sent.value, pay_site).startswith(order)
        # Back from the sign-in, on the same order, now by WeChat Pay with its pay sheet.
        expect(page).to_have_url(ORDER_PAGE)
        assert page.evaluate("window.__heyonMark") != tag, "the form should have loaded a new page"
        assert order_no(page) == order
        expect(page.locator("#wechat-jsapi [data-pay]")).to_have_text("Pay ¥50.00 with WeChat Pay")
        expect(page.locator("#order-status")).to_contain_text("WeChat Pay")
        assert [p for _, p, _ in pay_site.oauth.seen[seen_oauth:]] == \
            ["/connect/oauth2/authorize", "/sns/oauth2/access_token"]
        assert pay_site.wechat.trades[order].request["payer"] == {"openid": pay_site.oauth.openid}
        # Neither the browser nor the site ever asked Alipay anything about this order.
        assert to_alipay == [] and pay_site.alipay.seen[seen_alipay:] == []
        rec.shot("wechat pay sheet after switching")
        rec.assert_clean()
    finally:
        context.close()


# Each <text> of the picture, and the innermost <rect> its start lies in: the text must end inside it.
TEXTS_OUTSIDE_THEIR_BOX = """() => {
  const rects = [...document.querySelectorAll("rect")].map(r => r.getBBox());
  return [...document.querySelectorAll("text")].flatMap(t => {
    const b = t.getBBox(), y = b.y + b.height / 2;
    const box = rects.filter(r => r.x <= b.x && b.x <= r.x + r.width && r.y <= y && y <= r.y + r.height)
                     .sort((p, q) => p.width * p.height - q.width * q.height)[0];
    return box && b.x + b.width > box.x + box.width + 0.5
      ? [`${t.textContent}: ends at x=${Math.round(b.x + b.width)}, its box at x=${box.x + box.width}`] : [];
  });
}"""


def test_the_open_in_browser_picture_fits_its_labels(browser: Browser, pay_site: PaySite) -> None:
    context = phone(browser, WECHAT_UA)
    try:
        page = context.new_page()
        page.goto(pay_site.at("/static/img/open-in-browser.svg"))
        assert page.locator("text").count() >= 5, "not the picture: nothing below would be checked"
        assert page.evaluate(TEXTS_OUTSIDE_THEIR_BOX) == []
    finally:
        context.close()


def test_the_order_opened_in_the_phone_browser_pays_with_alipay(browser: Browser, pay_site: PaySite) -> None:
    """What the WeChat page tells the customer to do: the same order, opened in the phone's own
    browser (with JavaScript off here), goes on to Alipay's mobile page."""
    in_wechat = phone(browser, WECHAT_UA)
    in_browser = phone(browser, PHONE_UA, js=False)
    opened = capture_gateway(in_browser, pay_site)
    try:
        page = in_wechat.new_page()
        recharge(page, pay_site, CARD["open-in-browser"], "alipay")
        expect(page).to_have_url(ORDER_PAGE)
        expect(page.locator(".open-elsewhere")).to_contain_text("Alipay cannot open inside WeChat.")
        order, address = order_no(page), page.url

        page = in_browser.new_page()
        rec = Recorder(page, "pay-alipay-opened-in-browser")
        # A browser of its own: no cookie of WeChat's, so no language either; English asked again.
        page.goto(address + "?lang=en")
        expect(page.locator(".open-elsewhere")).to_have_count(0)
        button = page.get_by_role("button", name="Pay ¥50.00 with Alipay")
        expect(button).to_be_visible()
        rec.shot("order in the phone browser")
        button.click()
        expect(page).to_have_url(re.compile(re.escape(pay_site.alipay.base_url + alipay_kit.GATEWAY_PATH) + r"\?"))
        [url] = opened
        assert_wap_pay(url, pay_site, order, "50.00")
        rec.assert_clean()
    finally:
        in_wechat.close()
        in_browser.close()


# ------------------------------------------------------------------ inside Alipay's app


def assert_wap_pay(url: str, site: PaySite, order: str, yuan: str) -> None:
    """A signed alipay.trade.wap.pay link to the configured gateway, for this order and amount."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == site.alipay.base_url + alipay_kit.GATEWAY_PATH, url
    fields = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    assert fields["method"] == "alipay.trade.wap.pay"
    biz = json.loads(fields["biz_content"])
    assert (biz["out_trade_no"], biz["total_amount"], biz["product_code"]) == (order, yuan, "QUICK_WAP_WAY"), biz
    assert fields["sign_type"] == "RSA2"
    assert verifies(alipay_kit.keys().app, alipay_kit.content(fields), fields["sign"])


def test_wechat_pay_in_alipay_says_open_elsewhere_and_alipay_goes_to_its_mobile_page(browser: Browser,
                                                                                     pay_site: PaySite) -> None:
    context = phone(browser, ALIPAY_UA)
    opened = capture_gateway(context, pay_site)
    page = context.new_page()
    rec = Recorder(page, "pay-in-alipay-app")
    seen_wechat, seen_oauth = len(pay_site.wechat.seen), len(pay_site.oauth.seen)
    gateway = re.compile(re.escape(pay_site.alipay.base_url + alipay_kit.GATEWAY_PATH) + r"\?")
    try:
        page.goto(pay_site.at("/recharge?lang=en"))
        expect(page.locator("#recharge-form label", has_text=re.compile(r"^WeChat Pay"))) \
            .to_contain_text("In Alipay: we show you how to open it in WeChat or a browser")
        recharge(page, pay_site, CARD["alipay-app"], "wechat")
        expect(page).to_have_url(ORDER_PAGE)
        panel = page.locator(".open-elsewhere")
        expect(panel).to_contain_text("WeChat Pay cannot open inside the Alipay app.")
        expect(panel).to_contain_text("open this page in the browser, or open it in WeChat")
        expect(page.locator("#wechat-jsapi")).to_have_count(0)
        # Nothing was asked of WeChat: no sign-in, no order.
        assert pay_site.wechat.seen[seen_wechat:] == [] and pay_site.oauth.seen[seen_oauth:] == []
        rec.shot("wechat pay in alipay")
        order = order_no(page)

        choose(page, "form.other-method", "alipay")
        page.locator("form.other-method").get_by_role("button", name="Pay another way").click()
        expect(page).to_have_url(gateway)
        [url] = opened
        assert_wap_pay(url, pay_site, order, "50.00")

        # Alipay chosen on the form itself: straight to the mobile page, for a new order.
        recharge(page, pay_site, CARD["alipay-app"], "alipay")
        expect(page).to_have_url(gateway)
        assert len(opened) == 2
        second = json.loads(parse_qs(urlsplit(opened[1]).query)["biz_content"][0])["out_trade_no"]
        assert second != order
        assert_wap_pay(opened[1], pay_site, second, "50.00")
        rec.assert_clean()
    finally:
        context.close()
