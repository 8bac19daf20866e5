"""Every customer page fits the phone, the tablet and the desktop, in each language, with and
without JavaScript; and a refused form puts its summary of problems where the eyes are: focused,
inside the viewport, every problem a link to its field."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests import kit
from tests.browser.helpers import CARDS, Recorder, Site, expect, htmx_ready, new_context
from tests.browser.test_accessibility import CUSTOMER_PAGES

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.live

WIDTHS = (320, 768, 1280)
LANGS = ("zh", "zh-Hant", "en")


def overflow(page: Page) -> int:
    """How far the page scrolls sideways, in CSS pixels (0: it fits)."""
    return int(page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth"))


@pytest.mark.parametrize("lang", LANGS)
def test_no_customer_page_scrolls_sideways(browser: Browser, site: Site, js: bool, lang: str) -> None:
    context = new_context(browser, js=js)
    page = context.new_page()
    rec = Recorder(page, f"layout-{lang}-{'js' if js else 'nojs'}")
    wide: list[str] = []
    try:
        for case in CUSTOMER_PAGES:
            rec.expected_statuses.add(case.status)
            page.set_viewport_size({"width": WIDTHS[0], "height": 640})
            page.goto(case.url(site) + ("&" if "?" in case.url(site) else "?") + f"lang={lang}")
            if case.prepare is not None:
                if js:
                    htmx_ready(page)
                case.prepare(page, site)
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 800})
                if overflow(page) > 0:
                    wide.append(f"{case.name} at {width} px: {overflow(page)} px too wide")
        assert not wide, "\n".join(wide)
        assert not rec.errors, "\n".join(rec.errors)
    finally:
        context.close()


def refused_recharge(page: Page, site: Site, js: bool, password: str, amount: str | None = None) -> None:
    page.goto(site.at("/recharge", "en"))
    if js:
        htmx_ready(page)
    page.get_by_label("Card number", exact=True).fill(CARDS["pages"])
    page.get_by_label("Card password", exact=True).fill(password)
    if amount is not None:
        page.locator("label", has_text=re.compile(r"^Other$")).click()
        page.get_by_label("Other amount (yuan)").fill(amount)
    page.get_by_role("button", name="Recharge").click()


def assert_summary_focused_in_view(page: Page, summary: str) -> None:
    box = page.locator(summary)
    expect(box).to_be_focused()
    top, bottom, height = page.evaluate(
        "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight]; }",
        summary)
    # Focus scrolls it to the viewport's edge, where a zoomed phone puts it a fraction of a pixel out.
    assert -1 <= top and bottom <= height + 1, f"the summary is at {top}..{bottom}, the viewport 0..{height}"


@pytest.mark.parametrize("width", (320, 1280))
def test_a_refused_form_focuses_its_summary_in_view_and_keeps_what_was_right(
        browser: Browser, site: Site, js: bool, width: int) -> None:
    context = new_context(browser, js=js)
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": 640})
    rec = Recorder(page, f"refused-{width}-{'js' if js else 'nojs'}")
    rec.expected_statuses.update({403, 422})
    try:
        # A wrong password: one message for the card, focused, the password gone.
        refused_recharge(page, site, js, "000000")
        assert_summary_focused_in_view(page, "#recharge-errors")
        expect(page.locator("#recharge-errors")).to_contain_text("wrong")
        expect(page.get_by_label("Card password", exact=True)).to_have_value("")
        rec.shot("wrong password")
        # An amount out of range: its message links to its field; the password stays where a
        # script can keep it (the page never sends it back).
        refused_recharge(page, site, js, kit.PIN, amount="1")
        assert_summary_focused_in_view(page, "#recharge-errors")
        link = page.locator('#recharge-errors a[href="#custom_amount"]')
        expect(link).to_be_visible()
        expect(page.get_by_label("Card number", exact=True)).to_have_value(CARDS["pages"])
        expect(page.get_by_label("Card password", exact=True)).to_have_value(kit.PIN if js else "")
        rec.shot("amount out of range")
        link.click()
        expect(page.get_by_label("Other amount (yuan)")).to_be_focused()
        # The balance form says so the same way.
        page.goto(site.at("/balance", "en"))
        if js:
            htmx_ready(page)
        page.get_by_label("Card number", exact=True).fill("12")
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        page.get_by_role("button", name="Check balance").click()
        assert_summary_focused_in_view(page, "#balance-errors")
        rec.shot("balance refused")
        assert not rec.errors, "\n".join(rec.errors)
    finally:
        context.close()


def test_the_summary_before_paying_follows_the_choices_and_never_carries_the_password(browser: Browser, site: Site) -> None:
    context = new_context(browser, js=True)
    page = context.new_page()
    rec = Recorder(page, "summary-js")
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.post_data or "") if r.url.endswith("/recharge/summary") else None)
    try:
        page.goto(site.at("/recharge", "en"))
        htmx_ready(page)
        page.get_by_label("Card number", exact=True).fill(CARDS["pages"])
        page.get_by_label("Card password", exact=True).fill(kit.PIN)
        page.locator("label", has_text=re.compile(r"^¥200(?!\d)")).click()
        summary = page.locator("#summary")
        expect(summary).to_contain_text(f"card ending {CARDS['pages'][-4:]}")
        expect(summary).to_contain_text("you pay ¥200.00, you receive ¥210.00")  # the running promotion's bonus
        expect(summary).to_contain_text("Sandbox (test payment)")
        page.locator("label", has_text=re.compile(r"^¥50(?!\d)")).click()
        expect(summary).to_contain_text("you pay ¥50.00, you receive ¥50.00")
        rec.shot("summary")
        assert posted and not [body for body in posted if "password" in body or kit.PIN in body], posted
        assert not rec.errors, "\n".join(rec.errors)
    finally:
        context.close()


def test_every_box_to_type_in_is_full_width_and_big_enough_to_tap(browser: Browser, site: Site) -> None:
    """On a 320 px phone each box of the recharge form (the e-mail one too, whose type the
    stylesheet once forgot) spans the form and is at least 44 px high, the size of a fingertip."""
    context = new_context(browser, js=False)
    page = context.new_page()
    page.set_viewport_size({"width": 320, "height": 640})
    try:
        page.goto(site.at("/recharge", "en"))
        page.locator("label", has_text=re.compile(r"^Voucher$")).click()
        boxes = page.evaluate(
            """() => [...document.querySelectorAll('main form input')]
                .filter(i => !['hidden', 'radio', 'checkbox'].includes(i.type) && i.offsetParent !== null)
                .map(i => [i.name, i.type, Math.round(i.getBoundingClientRect().width),
                           Math.round(i.getBoundingClientRect().height)])""")
        names = {name for name, *_ in boxes}
        assert {"card_number", "password", "voucher_pin", "email"} <= names, boxes
        widest = max(width for _, _, width, _ in boxes)
        small = [b for b in boxes if b[2] < widest or b[3] < 44]
        assert not small, f"narrower than {widest} px or lower than 44 px: {small}"
    finally:
        context.close()
