"""The staff area at a phone's, a tablet's and a desktop's width (320, 768, 1280 px), in Chinese and
English: no page scrolls sideways (a wide table scrolls inside its own box, which stays inside the
content), the sign-out control is a small button in a corner, not a full-width one, the
navigation's links never break inside a word, and the FAQ list's actions sit in one row."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.helpers import (
    ARTIFACTS,
    STAFF_PASSWORD,
    STAFF_USER,
    TIMEOUT_MS,
    Recorder,
    Site,
    expect,
    slug,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.live]

WIDTHS = (320, 768, 1280)
PAGES = ("/staff/", "/staff/orders", "/staff/orders?order_no={credited_order_no}", "/staff/orders/{credited_order_no}",
         "/staff/orders/{pending_order_no}", "/staff/faq", "/staff/faq/{faq_id}/edit", "/staff/faq/new",
         "/staff/promotions", "/staff/promotions/{promo_id}/edit", "/staff/promotions/new", "/staff/audit",
         "/staff/accounts", "/staff/accounts/new", "/staff/accounts/{staff_id}", "/staff/account",
         "/staff/account/totp")

# What one page measures of itself, in CSS pixels.
MEASURE = """() => {
  const box = (e) => e.getBoundingClientRect();
  const main = document.querySelector('main');
  const signout = document.querySelector('.signout button');
  return {
    page: document.documentElement.scrollWidth, viewport: window.innerWidth,
    height: document.documentElement.scrollHeight,
    main: main ? box(main).right - parseFloat(getComputedStyle(main).paddingRight) : null,
    signout: signout ? {width: box(signout).width, right: box(signout).right, top: box(signout).top} : null,
    tables: [...document.querySelectorAll('main table')].map((t) => {
      const scroller = t.closest('.table-scroll');
      return {boxed: !!scroller, right: box(scroller || t).right,
              inner: scroller ? scroller.scrollWidth - scroller.clientWidth : 0};
    }),
    navBroken: [...document.querySelectorAll('.staff-nav a')].filter((a) => a.getClientRects().length > 1
                 || box(a).height > 2 * parseFloat(getComputedStyle(a).lineHeight)).map((a) => a.textContent),
    rowsSplit: [...document.querySelectorAll('.faq-entry .actions')].filter((row) => {
                 const boxes = [...row.children].map(box);  // one row: every child beside every other
                 return Math.max(...boxes.map((b) => b.top)) >= Math.min(...boxes.map((b) => b.bottom));
               }).length,
  };
}"""


def page_problems(page: Page, where: str, m: dict[str, Any]) -> list[str]:
    found = []
    if m["page"] > m["viewport"]:
        found.append(f"{where}: the page is {m['page']} px wide in a {m['viewport']} px window")
    for i, t in enumerate(m["tables"]):
        if not t["boxed"]:
            found.append(f"{where}: table {i} is not in a scrolling box of its own")
        if m["main"] is not None and t["right"] > m["main"] + 1:
            found.append(f"{where}: table {i} ends at {t['right']:.0f} px, past the content's {m['main']:.0f} px")
    if m["navBroken"]:
        found.append(f"{where}: navigation links broken across lines: {m['navBroken']}")
    return found


def sign_in(page: Page, site: Site) -> None:
    page.goto(site.at("/staff/login", "en"))
    page.get_by_label("Username").fill(STAFF_USER)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))


@pytest.mark.parametrize("lang", ["zh", "en", "zh-Hant"])
def test_staff_pages_fit_phone_tablet_and_desktop(browser: Browser, site: Site, lang: str, js: bool) -> None:
    context = browser.new_context(viewport={"width": WIDTHS[0], "height": 700}, locale="zh-CN", java_script_enabled=js)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    rec = Recorder(page, f"staff-layout-{lang}-{'js' if js else 'nojs'}")
    problems: list[str] = []
    measured: dict[tuple[str, int], dict[str, Any]] = {}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        for width in WIDTHS:  # the sign-in page, signed out
            page.set_viewport_size({"width": width, "height": 700})
            page.goto(site.at("/staff/login", lang))
            problems += page_problems(page, f"login at {width}", page.evaluate(MEASURE))
        sign_in(page, site)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 700})
            for path in PAGES:
                url = path.format(**vars(site))
                page.goto(site.at(url, lang))
                m = measured[(path, width)] = page.evaluate(MEASURE)
                where = f"{url} at {width} px ({lang})"
                problems += page_problems(page, where, m)
                signout = m["signout"]
                assert signout, f"{where}: no sign-out button"
                # Small and in the corner: never the content's width, never most of a phone's.
                if signout["width"] > min(160, m["viewport"] / 2) or signout["top"] > 200:
                    problems.append(f"{where}: the sign-out button is {signout['width']:.0f} px wide at "
                                    f"{signout['top']:.0f} px from the top")
                if width in (320, 1280) and path in ("/staff/promotions", "/staff/faq", "/staff/orders/{credited_order_no}"):
                    page.screenshot(path=ARTIFACTS / f"staff-layout-{lang}-{width}-{slug(path)}.png", full_page=True)
        # On a desktop the promotions and accounts tables fit without scrolling, and each FAQ
        # entry's actions are one row of small buttons.
        for path in ("/staff/promotions", "/staff/accounts", "/staff/orders?order_no={credited_order_no}"):
            if any(t["inner"] > 0 for t in measured[(path, 1280)]["tables"]):
                problems.append(f"{path}: a table needs scrolling at 1280 px")
        if measured[("/staff/faq", 1280)]["rowsSplit"]:
            problems.append(f"/staff/faq: {measured[('/staff/faq', 1280)]['rowsSplit']} entries' actions wrap at 1280 px")
        assert not problems, "\n".join(problems)
        rec.assert_clean()
    finally:
        context.close()
