"""A customer on a 320 px phone, with JavaScript and without: recharge a card, pay on the sandbox
gateway, watch the order turn credited, open the receipt, check the balance, search the FAQ."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests import kit
from tests.browser.helpers import CARDS, OPENING_FEN, Site, known
from tests.browser.helpers import Recorder, expect, htmx_ready, mark, new_context, same_document

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

pytestmark = [pytest.mark.live, *known("receipt-favicon")]

CREDIT_WAIT_MS = 20_000  # the sandbox notifies at once; the order page polls every 3 s (or refreshes every 5 s)


def test_recharge_receipt_balance_faq(browser: Browser, site: Site, js: bool) -> None:
    mode = "js" if js else "nojs"
    card = CARDS[f"recharge-{mode}"]
    # With JavaScript: a preset that earns the running promotion's bonus (the quote line updates
    # through htmx). Without: a typed amount below the promotion's threshold.
    amount, credited = ("200", 21_000) if js else ("88", 8_800)
    context = new_context(browser, js=js)
    page = context.new_page()
    rec = Recorder(page, f"customer-{mode}")
    try:
        page.goto(site.at("/", "en"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Recharge your Heyon card")
        rec.shot("home")

        page.get_by_label("Card number", exact=True).fill(card)
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        if js:
            htmx_ready(page)
            page.locator("label", has_text=re.compile(r"^¥200(?!\d)")).click()
            expect(page.locator("#quote")).to_contain_text("Pay 200.00, receive 210.00")
        else:
            page.locator("label", has_text=re.compile(r"^Other$")).click()
            page.get_by_label("Other amount (yuan)").fill(amount)
        expect(page.get_by_label("Sandbox (test payment)")).to_be_checked()
        rec.shot("recharge form filled")
        page.get_by_role("button", name="Recharge").click()

        expect(page).to_have_url(re.compile(r"/pay/sandbox/\d{16}\?sign=[0-9a-f]{64}$"))
        expect(page.locator(".amount")).to_have_text(f"¥{amount}.00")
        rec.shot("sandbox gateway")
        page.get_by_role("button", name="Pay", exact=True).click()

        expect(page).to_have_url(re.compile(r"/orders/[\w-]+$"))
        expect(page.locator("#order-status .state")).to_have_text("Credited", timeout=CREDIT_WAIT_MS)
        expect(page.locator("#order-status")).to_contain_text(f"¥{credited // 100}.00 has been added to card")
        rec.shot("order credited")
        page.get_by_role("link", name="Receipt").click()

        expect(page).to_have_url(re.compile(r"/orders/[\w-]+/receipt$"))
        expect(page.locator("main.sheet")).to_contain_text(f"¥{credited // 100}.00")
        rec.shot("receipt")

        page.goto(site.at("/balance"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your balance")
        rec.shot("balance form")
        page.get_by_label("Card number", exact=True).fill(card)
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        tag = mark(page) if js else ""
        page.get_by_role("button", name="Check balance").click()
        expect(page.locator("#balance")).to_have_text(f"¥{(OPENING_FEN + credited) // 100}.00")
        if js:
            assert same_document(page, tag), "with JavaScript the balance should be swapped in by htmx"
        rec.shot("balance shown")

        page.get_by_role("banner").get_by_role("link", name="FAQ").click()
        expect(page).to_have_url(re.compile(r"/faq$"))
        rec.shot("faq")
        tag = mark(page) if js else ""
        page.get_by_label("Search the questions").fill("refund")
        if not js:
            page.get_by_role("button", name="Search").click()
        # Active search replaces the URL too, so a reload or a shared link shows the same results.
        expect(page).to_have_url(re.compile(r"/faq\?q=refund$"))
        expect(page.locator("#faq-results details")).to_have_count(1)
        expect(page.locator("#faq-results summary")).to_have_text("Can I get a refund?")
        if js:
            assert same_document(page, tag), "with JavaScript the search should be active search"
        rec.shot("faq search")
        rec.assert_clean()
    finally:
        context.close()


def test_the_highlighted_amount_is_the_amount_charged(browser: Browser, site: Site, js: bool) -> None:
    """Type an amount under "Other", then change one's mind and tap a preset: the preset is what
    is highlighted, quoted and charged, with and without JavaScript."""
    mode = "js" if js else "nojs"
    context = new_context(browser, js=js)
    page = context.new_page()
    rec = Recorder(page, f"amount-choice-{mode}")
    try:
        page.goto(site.at("/recharge", "en"))
        if js:
            htmx_ready(page)
        page.get_by_label("Card number", exact=True).fill(CARDS["amount-choice"])
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        # The running promotion (10.00 from 100) is on the buttons it applies to, script or not.
        expect(page.locator("label", has_text=re.compile(r"^¥100(?!\d)"))).to_contain_text("+¥10.00 bonus")
        expect(page.locator("label", has_text=re.compile(r"^¥50(?!\d)"))).to_have_text("¥50")
        typed = page.get_by_label("Other amount (yuan)")
        expect(typed).to_be_hidden()  # the box is there only while "Other" is the choice
        page.locator("label", has_text=re.compile(r"^Other$")).click()
        expect(typed).to_be_visible()
        typed.press_sequentially("500")
        quote = page.locator("#quote")
        if js:
            expect(quote).to_contain_text("Pay 500.00, receive 510.00")
        else:
            expect(quote).to_have_text("")  # no line that could go stale without JavaScript
        rec.shot("other amount typed")
        page.locator("label", has_text=re.compile(r"^¥50(?!\d)")).click()
        expect(typed).to_be_hidden()
        if js:
            expect(quote).to_contain_text("Pay 50.00, receive 50.00")
        rec.shot("then 50 tapped")
        page.get_by_role("button", name="Recharge").click()
        expect(page).to_have_url(re.compile(r"/pay/sandbox/\d{16}\?sign=[0-9a-f]{64}$"))
        expect(page.locator(".amount")).to_have_text("¥50.00")
        rec.shot("gateway asks for 50")
        rec.assert_clean()
    finally:
        context.close()


def test_every_form_works_while_htmx_never_arrives(browser: Browser, site: Site) -> None:
    """JavaScript on, but the htmx file never loads (a lost request on a slow network): the pages
    are plain forms until it arrives, so a recharge and a balance lookup still go through."""
    context = new_context(browser, js=True)
    blocked: list[str] = []

    def refuse(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort()

    context.route(re.compile(r".*/static/js/htmx-[\d.]+\.min\.js.*"), refuse)
    page = context.new_page()
    rec = Recorder(page, "htmx-blocked")
    try:
        # The form is used only once the page has asked for htmx and been refused it.
        with page.expect_event("requestfailed", lambda request: "/static/js/htmx-" in request.url):
            page.goto(site.at("/recharge", "en"))
        page.get_by_label("Card number", exact=True).fill(CARDS["amount-choice"])
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        page.locator("label", has_text=re.compile(r"^¥50(?!\d)")).click()
        page.get_by_role("button", name="Recharge").click()
        expect(page).to_have_url(re.compile(r"/pay/sandbox/\d{16}\?sign=[0-9a-f]{64}$"))
        expect(page.locator(".amount")).to_have_text("¥50.00")
        rec.shot("gateway without htmx")

        with page.expect_event("requestfailed", lambda request: "/static/js/htmx-" in request.url):
            page.goto(site.at("/balance", "en"))
        page.get_by_label("Card number", exact=True).fill(CARDS["amount-choice"])
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        tag = mark(page, htmx=False)
        page.get_by_role("button", name="Check balance").click()
        expect(page.locator("#balance")).to_have_text(re.compile(r"^¥\d+\.\d\d$"))
        assert not same_document(page, tag), "without htmx the lookup is a plain form post"
        rec.shot("balance without htmx")
        assert blocked, "the page never asked for htmx: the test blocked nothing"
        assert page.evaluate("typeof window.htmx") == "undefined"
    finally:
        context.close()
