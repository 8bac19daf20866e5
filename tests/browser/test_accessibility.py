"""axe-core finds no accessibility violation on any customer or staff page, in Simplified Chinese
(the default), English and Traditional Chinese, at 320 px.

To check a new page, add a line to CUSTOMER_PAGES or STAFF_PAGES: a name, a path (``{...}``
fields come from the ``Site`` the module runs, see conftest.py) and, for a state that needs a
click or a form (an inline edit, a form with errors), a function that gets the page there.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import kit
from tests.browser.helpers import CARDS, STAFF_PASSWORD, STAFF_USER, Site, known
from tests.browser.helpers import Recorder, expect, htmx_ready, new_context

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.live

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_VERSION = "4.14.1"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
LANGS = ("zh", "en", "zh-Hant")

Prepare = Callable[["Page", Site], None]


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    prepare: Prepare | None = None
    status: int = 200  # what the page (or the form it submits) answers

    def url(self, site: Site) -> str:
        return site.at(self.path.format(**vars(site)))


# ------------------------------------------------------------------ states reached by acting


def recharge_with_errors(page: Page, site: Site) -> None:
    page.locator("#recharge-form button[type=submit]").click()
    expect(page.locator("#recharge-form [aria-invalid=true]").first).to_be_visible()


def balance_shown(page: Page, site: Site) -> None:
    page.locator("#card_number").fill(CARDS["pages"])
    page.locator("#password").fill(kit.PIN)
    page.locator("#balance-lookup button[type=submit]").click()
    expect(page.locator("#balance")).to_be_visible()


def faq_edit_in_place(page: Page, site: Site) -> None:
    page.locator(f"#faq-{site.faq_id} a").first.click()
    expect(page.locator(f"li#faq-{site.faq_id} form.faq-edit")).to_be_visible()


CUSTOMER_PAGES = [
    Case("home", "/"),
    Case("recharge", "/recharge"),
    Case("recharge-errors", "/recharge", recharge_with_errors, 422),
    Case("sandbox-gateway", "{pending_gateway}"),
    Case("order-pending", "/orders/{pending_token}"),
    Case("order-credited", "/orders/{credited_token}"),
    Case("receipt", "/orders/{credited_token}/receipt"),
    Case("balance", "/balance"),
    Case("balance-shown", "/balance", balance_shown),
    Case("faq", "/faq"),
    Case("faq-search", "/faq?q=refund"),
    Case("faq-nothing-found", "/faq?q=zzzz"),
    Case("not-found", "/no-such-page", status=404),
]

STAFF_PAGES = [
    Case("staff-dashboard", "/staff/"),
    Case("staff-orders", "/staff/orders"),
    Case("staff-orders-found", "/staff/orders?order_no={credited_order_no}"),
    Case("staff-order", "/staff/orders/{credited_order_no}"),
    Case("staff-faq", "/staff/faq"),
    Case("staff-faq-edit-in-place", "/staff/faq", faq_edit_in_place),
    Case("staff-faq-edit", "/staff/faq/{faq_id}/edit"),
    Case("staff-faq-new", "/staff/faq/new"),
    Case("staff-promotions", "/staff/promotions"),
    Case("staff-promotion-edit", "/staff/promotions/{promo_id}/edit"),
    Case("staff-promotion-new", "/staff/promotions/new"),
    Case("staff-audit", "/staff/audit"),
    Case("staff-account", "/staff/account"),
    Case("staff-account-totp", "/staff/account/totp"),
    Case("staff-accounts", "/staff/accounts"),
    Case("staff-account-new", "/staff/accounts/new"),
    Case("staff-account-edit", "/staff/accounts/{staff_id}"),
]

# Seen signed out, like the customer pages.
SIGNED_OUT_STAFF_PAGES = [Case("staff-login", "/staff/login")]


# ------------------------------------------------------------------ the browsers


def axe_context(browser: Browser) -> BrowserContext:
    """A phone with JavaScript on and axe-core loaded.

    The site's CSP allows no inline or foreign script, so axe comes in as an init script: the
    browser injects those itself, outside the page's CSP (no ``bypass_csp``), and the pages are
    checked exactly as they are served, CSP included.
    """
    context = new_context(browser, js=True)
    context.add_init_script(path=AXE)
    return context


def set_lang(context: BrowserContext, site: Site, lang: str) -> None:
    context.add_cookies([{"name": "lang", "value": lang, "url": site.url}])


@pytest.fixture(scope="module")
def tabs(browser: Browser, site: Site) -> Iterator[dict[tuple[str, bool], Recorder]]:
    """Per language, a signed-out phone and one signed in as a staff admin, each with one tab
    that every test reuses (a new tab costs more than the page and axe together), its console
    watched."""
    made: dict[tuple[str, bool], BrowserContext] = {}
    tabs: dict[tuple[str, bool], Recorder] = {}
    try:
        for lang in LANGS:
            for staff in (False, True):
                context = made[(lang, staff)] = axe_context(browser)
                set_lang(context, site, lang)
                page = context.new_page()
                tabs[(lang, staff)] = Recorder(page, f"axe-{lang}")
                if staff:
                    page.goto(site.at("/staff/login"))
                    page.locator("#username").fill(STAFF_USER)
                    page.locator("#password").fill(STAFF_PASSWORD)
                    page.locator("#login-form button[type=submit]").click()
                    expect(page).to_have_url(re.compile(r"/staff/$"))
        yield tabs
    finally:
        for context in made.values():
            context.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now: every rule that is not experimental."""
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(v => ({
             id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.map(n => ({target: n.target.join(" "), html: n.html.slice(0, 160), summary: n.failureSummary}))}))""")
    return found


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {node['html']}")
            lines.append("      " + " / ".join(node["summary"].splitlines()[1:3]))
    return "\n".join(lines)


def cases(pages: list[Case], staff: bool) -> list[Any]:
    return [pytest.param(case, lang, staff, id=f"{case.name}-{lang}", marks=known(case.name))
            for case in pages for lang in LANGS]


@pytest.mark.parametrize(("case", "lang", "staff"), cases(CUSTOMER_PAGES + SIGNED_OUT_STAFF_PAGES, False)
                         + cases(STAFF_PAGES, True))
def test_no_axe_violations(tabs: dict[tuple[str, bool], Recorder], site: Site, case: Case, lang: str,
                           staff: bool) -> None:
    tab = tabs[(lang, staff)]
    page = tab.page
    tab.errors.clear()
    tab.expected_statuses = {case.status}
    response = page.goto(case.url(site))
    assert response is not None and response.status == (200 if case.prepare else case.status), page.url
    expect(page.locator("html")).to_have_attribute("lang", {"en": "en", "zh": "zh-Hans"}.get(lang, lang))
    if case.prepare:
        htmx_ready(page)  # the states reached by acting are reached as a person with htmx gets there
        case.prepare(page, site)
    violations = axe_violations(page)
    assert not violations, f"{case.name} ({lang}) {page.url}\n{describe(violations)}"
    tab.assert_clean()  # and no console error or CSP violation on the way


def test_vendored_axe_is_the_pinned_release() -> None:
    """The engine is exactly the npm release named in vendor/README.md, license header included."""
    data = AXE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == AXE_SHA256
    assert data.startswith(f"/*! axe v{AXE_VERSION}\n".encode())
    assert b"Mozilla Public" in data[:600]
