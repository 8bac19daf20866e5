"""Real-browser helpers: Debian's Chromium driven by Playwright, a phone-sized viewport, and a
recorder that saves a screenshot of every page a scenario visits and collects console errors.

Playwright's own browser download cannot run here, so the tests launch the system Chromium;
without it (or without Playwright) they are skipped, saying which one is missing.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.kit import ROOT

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture skips every test and says why
    expect = sync_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Response,
    )

TIMEOUT_MS = 10_000  # a slow CI machine, not a slow site: pages here answer in milliseconds
if expect is not None:
    expect.set_options(timeout=TIMEOUT_MS)

CHROMIUM = Path(os.environ.get("HEYON_CHROMIUM", "/usr/bin/chromium"))
# Root in a container: no sandbox. The rest keeps Chromium from talking to anything but our site.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
WIDTH = 320  # the narrowest phones we serve
VIEWPORT = {"width": WIDTH, "height": 640}
ARTIFACTS = ROOT / "artifacts" / "browser"  # screenshots (*.png) and printed receipts (*.pdf), kept by CI

# With JavaScript on, a CSP violation also reaches the page as an event; log it as an error so the
# console listener sees it. (Chromium itself logs violations to the console too, even with
# JavaScript off; this makes sure none is missed.) Init scripts are injected by the browser, so
# the page's own CSP does not apply to them.
REPORT_CSP = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                " at " + e.sourceFile + ":" + e.lineNumber + " on " +
                (e.target && e.target.outerHTML ? e.target.outerHTML.slice(0, 200) : String(e.target))));"""


# htmx logs an aborted request as an error (the abort, and the afterRequest that goes with it).
# The recharge quote aborts its previous request on purpose (hx-sync="this:replace"); a failed
# or timed-out request still shows as htmx:sendError / htmx:timeout / htmx:responseError.
HTMX_ABORT = re.compile(r"htmx:(sendAbort|afterRequest), ")
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if sync_playwright is None:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(str(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@contextmanager
def chromium() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Browser, *, js: bool, **options: Any) -> BrowserContext:
    """A fresh phone: 320 px wide, JavaScript on or off, set to Chinese like most of our customers'."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=js, locale="zh-CN", **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    if js:
        context.add_init_script(REPORT_CSP)
    return context


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class Recorder:
    """Watches one page of a scenario: console errors, uncaught exceptions and CSP violations
    are collected; ``shot(step)`` saves a full-page screenshot and notes a page that scrolls
    sideways or declares no icon; ``assert_clean()`` at the end of a scenario fails on any."""

    def __init__(self, page: Page, scenario: str) -> None:
        self.page, self.scenario, self.count = page, scenario, 0
        self.errors: list[str] = []
        self.problems: list[str] = []
        self.expected_statuses: set[int] = set()  # a page meant to answer 404, or a form meant to fail
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught {exc}"))
        page.on("response", self._response)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def _console(self, message: ConsoleMessage) -> None:
        source = message.location.get("url") or ""
        # Whether and when Chromium asks for /favicon.ico varies; shot() checks the icon link instead.
        status = FAILED_LOAD.match(message.text)
        if status and int(status.group(1)) in self.expected_statuses:
            return
        if message.type == "error" and not HTMX_ABORT.match(message.text) and not source.endswith("/favicon.ico"):
            self.errors.append(f"{self.page.url}: {message.text}" + (f" ({source})" if source != self.page.url else ""))

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.status not in self.expected_statuses \
                and not response.url.endswith("/favicon.ico"):
            self.errors.append(f"{response.request.method} {response.url}: {response.status}")

    def path(self, step: str, suffix: str) -> Path:
        return ARTIFACTS / f"{self.scenario}-{self.count:02d}-{slug(step)}{suffix}"

    def shot(self, step: str) -> Path:
        """The page as it is now: no horizontal scrolling at 320 px, and a screenshot of it."""
        self.count += 1
        self.page.wait_for_load_state()
        width = self.page.evaluate("document.scrollingElement.scrollWidth")
        path = self.path(step, ".png")
        # caret="initial": hiding the caret would leave style="" on every input, which htmx then
        # copies during a swap, and the CSP rightly refuses.
        self.page.screenshot(path=path, full_page=True, caret="initial")
        # A full-page capture of a page wider than the viewport leaves it scrolled so that the next
        # click's mouseup lands beside its mousedown (no click); start the next action from the top.
        self.page.evaluate("window.scrollTo(0, 0)")
        # Recorded, not raised: one run reports every page with a problem.
        if width > WIDTH:
            self.problems.append(f"{step}: {self.page.url} scrolls sideways at {WIDTH} px ({width} px wide), see {path.name}")
        if not self.page.locator("head link[rel~=icon]").count():
            self.problems.append(f"{step}: {self.page.url} declares no icon, so browsers ask for /favicon.ico (a 404)")
        return path

    def assert_clean(self) -> None:
        found = self.problems + [f"console error or CSP violation: {e}" for e in self.errors]
        assert not found, "\n".join(found)


def htmx_ready(page: Page) -> None:
    """Wait for htmx: the page asks for it half a second after its first paint (static/js/load.js),
    and until it has arrived the page is plain HTML, as for a person who taps that quickly."""
    page.wait_for_function("() => window.htmx !== undefined", timeout=10_000)


def mark(page: Page, htmx: bool = True) -> str:
    """Tag the current document; ``same_document`` then tells whether htmx swapped in place.
    With ``htmx`` (the default), once htmx is there to do the swapping."""
    if htmx:
        htmx_ready(page)
    return str(page.evaluate("window.__heyonMark = String(Math.random())"))


def same_document(page: Page, tag: str) -> bool:
    return bool(page.evaluate("window.__heyonMark") == tag)


def pdf_page_size(pdf: bytes) -> tuple[float, float]:
    """Width and height, in points, of the first page of a PDF that Chromium printed."""
    match = re.search(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    assert match, "no MediaBox in the PDF"
    x0, y0, x1, y1 = (float(v) for v in match.groups())
    return x1 - x0, y1 - y0


MM = 72 / 25.4  # points per millimetre


# ------------------------------------------------------------------ what the site under test holds

STAFF_USER, STAFF_PASSWORD = "admin-browser", "browser-test-password"
# One card per scenario and mode, so no test depends on another's recharge.
CARDS = {"recharge-js": "8600000000000101", "recharge-nojs": "8600000000000119", "pages": "8600000000000127",
         "amount-choice": "8600000000000135"}
OPENING_FEN = 500  # every card starts with 5.00
PROMO_TITLE_EN = "Browser test bonus"


# Problems these tests found in pages outside this directory's remit, reported to their owners.
# Each makes the tests named after it expected failures; strict, so that once the problem is fixed
# the test fails as XPASS until its entry here is removed. Keep this empty whenever possible.
KNOWN_ISSUES: dict[str, str] = {}


def known(*names: str) -> list[pytest.MarkDecorator]:
    """An expected-failure mark for the known issues among ``names``, if any."""
    reasons = [KNOWN_ISSUES[name] for name in names if name in KNOWN_ISSUES]
    return [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []


@dataclass(frozen=True)
class Site:
    """A running site and what its database holds."""

    url: str
    pending_token: str  # an order waiting for payment
    pending_order_no: str
    pending_gateway: str  # its sandbox gateway page, as the signed link names it
    credited_token: str  # a paid order: receipt, staff order page
    credited_order_no: str
    faq_id: int  # an English FAQ entry
    promo_id: int
    staff_id: int

    def at(self, path: str, lang: str | None = None) -> str:
        """The full URL of a path, in a language (``zh``/``en``) if given."""
        url = self.url + path
        return url if lang is None else url + ("&" if "?" in url else "?") + f"lang={lang}"
