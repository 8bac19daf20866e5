"""The printable voucher sheet, printed by Chromium to PDF as a browser prints it: A4 pages of 10
vouchers, and every PIN whole on one page (a voucher cut across two pages is a voucher lost).

The sheet is the staff page's own answer to a new batch of 25, served to the browser with its
headers (the CSP included) by the test app itself through Playwright's routing, its stylesheet
and script too: no server needed.
"""
from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskClient

from heyon_site.extensions import db
from tests.browser.helpers import ARTIFACTS, MM, pdf_page_size
from tests.kit import csrf_from
from tests.staff.kit import signed_in
from tests.vouchers.kit import day

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

pypdf = pytest.importorskip("pypdf")

ORIGIN = "http://heyon.test"
COUNT = 25
A4 = (210 * MM, 297 * MM)


def the_sheet(client: FlaskClient) -> tuple[str, dict[str, str]]:
    """A new batch of COUNT vouchers as its printable sheet: the page and its headers."""
    token = csrf_from(client.get("/staff/vouchers?lang=en").get_data(as_text=True))
    r = client.post("/staff/vouchers?lang=en", data={"csrf_token": token, "count": str(COUNT), "value": "50",
                                                      "expires": day(180), "note": "", "output": "sheet"})
    assert r.status_code == 200 and r.mimetype == "text/html", r.get_data(as_text=True)[:1000]
    return r.get_data(as_text=True), dict(r.headers)


def pins_on(pdf: bytes) -> list[str]:
    """The text of each page with its white space taken out, where a PIN's 16 digits run together."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return [re.sub(r"\s+", "", page.extract_text() or "") for page in reader.pages]


def test_the_sheet_prints_ten_whole_vouchers_a_page(app: Flask, browser: Browser) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the browser tests run on SQLite: the printed page does not depend on the database")
    client = signed_in(app, "admin")
    html, headers = the_sheet(client)
    pins = [p.replace(" ", "") for p in re.findall(r'<p class="pin">(\d{4} \d{4} \d{4} \d{4})</p>', html)]
    serials = re.findall(r"<b>(\d{4}-\d{6})</b>", html)
    assert len(set(pins)) == COUNT and len(serials) == COUNT

    def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/sheet":
            route.fulfill(status=200, headers=headers, body=html)
            return
        with client.get(path) as answer:  # the stylesheet and the print button's script, as the site serves them
            route.fulfill(status=answer.status_code, headers=dict(answer.headers), body=answer.get_data())

    context = browser.new_context(java_script_enabled=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    context.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/sheet")
    assert page.locator("article.voucher").count() == COUNT
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "voucher-sheet.pdf"
    pdf = page.pdf(path=path, format="A4", print_background=True)
    context.close()
    assert not problems, problems  # the stylesheet loaded, and the CSP refused nothing

    width, height = pdf_page_size(pdf)
    assert abs(width - A4[0]) < 2 and abs(height - A4[1]) < 2, f"not A4, see {path}"
    pages = pins_on(pdf)
    assert len(pages) == 3, f"{len(pages)} pages, see {path}"
    # Pages 1 and 2 hold ten vouchers each, page 3 the last five, in order; each PIN once, whole.
    for number, (text, first, last) in enumerate(zip(pages, (0, 10, 20), (10, 20, 25), strict=True), start=1):
        on_page = [pin for pin in pins if pin in text]
        assert on_page == pins[first:last], f"page {number}: {len(on_page)} PINs, see {path}"
        assert [s for s in serials if s in text] == serials[first:last], f"page {number}, see {path}"
    whole = "".join(pages)
    assert all(whole.count(pin) == 1 for pin in pins), f"a PIN printed twice or cut, see {path}"
    assert "¥50" in pages[0] and "ScratchHere".lower() in pages[0].lower()
