"""A staff member on a 320 px phone, with JavaScript and without: sign in, edit an FAQ entry
(click-to-edit in place with htmx, a full-page form without), find an order and print its
receipt (the print layout saved as PDF, on 80 mm and 58 mm thermal paper and on A4)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.browser.helpers import STAFF_PASSWORD, STAFF_USER, Site, known
from tests.browser.helpers import (
    MM,
    Recorder,
    expect,
    mark,
    new_context,
    pdf_page_size,
    same_document,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.live, *known("receipt-favicon", "staff-tables-wide")]

# Paper -> the PDF page width the receipt's named page asks for (A4 has no size of its own in the
# CSS: the print dialog's paper is used, A4 here).
PAPERS = {"80": 80 * MM, "58": 58 * MM, "a4": 210 * MM}


def sign_in(page: Page, site: Site, rec: Recorder) -> None:
    page.goto(site.at("/staff/login", "en"))
    rec.shot("sign-in")
    page.get_by_label("Username").fill(STAFF_USER)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))
    rec.shot("staff home")


def edit_faq(page: Page, site: Site, rec: Recorder, js: bool) -> None:
    page.goto(site.at("/staff/faq"))
    row = page.locator(f"#faq-{site.faq_id}")
    rec.shot("faq list")
    new_question = f"How long does a recharge take? ({'js' if js else 'nojs'})"
    tag = mark(page) if js else ""
    row.get_by_role("link", name="Edit").click()
    if js:  # click-to-edit: the row becomes its form, on the same page
        expect(page.locator(f"li#faq-{site.faq_id} form.faq-edit")).to_be_visible()
        assert same_document(page, tag), "with JavaScript the FAQ entry should be edited in place"
    else:
        expect(page).to_have_url(re.compile(rf"/staff/faq/{site.faq_id}/edit$"))
    rec.shot("faq edit")
    page.get_by_label("Question").fill(new_question)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/staff/faq$"))
    expect(page.locator(f"li#faq-{site.faq_id}")).to_contain_text(new_question)
    if js:
        assert same_document(page, tag), "with JavaScript the saved entry should replace its form in place"
    rec.shot("faq saved")


def print_receipts(page: Page, site: Site, rec: Recorder) -> None:
    page.goto(site.at("/staff/orders"))
    rec.shot("orders")
    page.get_by_label("Order number").fill(site.credited_order_no)
    page.get_by_role("button", name="Search").click()
    # With htmx the search is pushed into the address bar once swapped in; a click before that
    # would be cancelled by the pushState, as it would for a very quick person.
    expect(page).to_have_url(re.compile(rf"/staff/orders\?order_no={site.credited_order_no}&"))
    link = page.locator("#order-results").get_by_role("link", name=site.credited_order_no)
    expect(link).to_be_visible()
    rec.shot("orders found")
    link.click()
    expect(page).to_have_url(re.compile(rf"/staff/orders/{site.credited_order_no}$"))
    rec.shot("order")
    page.get_by_label("Paper").select_option("80")
    page.get_by_role("button", name="Print receipt").click()
    expect(page).to_have_url(re.compile(rf"/staff/orders/{site.credited_order_no}/receipt\?paper=80$"))
    receipt_url = page.url.split("?")[0]
    page.emulate_media(media="print")
    for paper, width in PAPERS.items():
        if paper != "80":
            page.goto(f"{receipt_url}?paper={paper}")
        main = page.get_by_role("main")
        expect(main).to_contain_text(site.credited_order_no)
        expect(main).to_contain_text("REPRINT")  # a staff copy says it is one
        expect(main).to_contain_text("Browser test bonus")  # the promotion's title, with its bonus
        rec.shot(f"receipt print {paper}")
        pdf_path = rec.path(f"receipt {paper}", ".pdf")
        pdf = page.pdf(path=pdf_path, prefer_css_page_size=True, format="A4", print_background=True)
        got_width, _ = pdf_page_size(pdf)
        assert abs(got_width - width) < 2, f"{paper}: PDF page {got_width / MM:.1f} mm wide, see {pdf_path}"
        pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
        assert pages == 1, f"{paper}: the receipt printed on {pages} pages, see {pdf_path}"
        # Nothing cut at the sides; and the 58 mm slip with a bonus stays short (paper is money).
        sheet = page.evaluate("(() => { const m = document.querySelector('main.sheet');"
                              " return [m.scrollWidth - m.clientWidth, m.getBoundingClientRect().height]; })()")
        assert sheet[0] <= 0, f"{paper}: {sheet[0]} px cut at the side, see {pdf_path}"
        if paper == "58":
            assert sheet[1] / 96 * 25.4 <= 250, f"58 mm receipt {sheet[1] / 96 * 25.4:.0f} mm long, see {pdf_path}"
    page.emulate_media(media="screen")


def test_sign_in_edit_faq_print_receipt(browser: Browser, site: Site, js: bool) -> None:
    mode = "js" if js else "nojs"
    context = new_context(browser, js=js)
    page = context.new_page()
    rec = Recorder(page, f"staff-{mode}")
    try:
        sign_in(page, site, rec)
        edit_faq(page, site, rec, js)
        print_receipts(page, site, rec)
        rec.assert_clean()
    finally:
        context.close()
