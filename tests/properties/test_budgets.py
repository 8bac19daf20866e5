"""Page budgets for cheap phones on slow networks, measured on the real responses.

Every customer page, in both languages: HTML plus CSS at most 14 KB gzip-compressed (one TCP
round trip); the site's stylesheet inline (allowed by its hash in the CSP, nothing else inline);
nothing fetched on first load but a page's own extra stylesheet and the pinned htmx, all from
/static/ with a content digest in the URL, cached for a year; and every response compressed
with gzip or brotli as the browser asks, decompressing to exactly what an uncompressed answer holds.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import brotli
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from heyon_site import create_app
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.faq.services import seed
from heyon_site.faq.starter import STARTER

from tests.kit import ROOT, TEST_CONFIG, held, new_client, recharge_form
from tests.kit import CARD, PIN, csrf_from, make_card, notification, order, start_order
from tests.provider_kits.wechat import KIT as WECHAT_KIT
from tests.provider_kits.wechat import MP_APPID, jsapi_config
from tests.properties.kit import masked

BUDGET = 14 * 1024  # HTML + CSS, gzip: what fits in the first round trip (initial TCP window)
YEAR = 31536000
HTMX = "js/htmx-2.0.11.min.js"  # the one library a page may load (pinned; its SHA-256 is checked in test_pages)
LOADER = "js/load.js"  # the one script of a page, inline: it fetches htmx after the first paint
PRINT = "js/print.js"  # the receipt's print button, the one script file a page names (the receipt)
LOADER_BUDGET = 1024  # bytes of first-party script besides htmx
# WeChat's pay sheet opener: excepted from the budget, named only by a JSAPI order's page opened
# inside WeChat (where WeChat's own bridge runs it), never by a page anyone else gets.
WECHAT = "js/wechat.js"
WECHAT_UA = ("Mozilla/5.0 (Linux; Android 10; V2002A) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
             "Chrome/86.0.4240.99 XWEB/4313 MMWEBSDK/20220805 Mobile Safari/537.36 MicroMessenger/8.0.27.2220(0x28001B37) "
             "WeChat/arm64 NetType/4G Language/zh_CN")
# ?lang= -> <html lang>; zh is the default, asked for by no parameter (and so first: the others
# are remembered in a cookie)
LANGS = {"zh": "zh-Hans", "en": "en", "zh-Hant": "zh-Hant"}
DECODE: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "br": brotli.decompress}


# ------------------------------------------------------------------ the pages, as a visitor gets them


@dataclass
class Site:
    """A site with real content: the starter FAQ, a card with ten recharges (nine credited)."""

    app: Flask
    pending: str  # order page token
    credited: str

    def pages(self) -> dict[str, str]:
        """Name -> GET path of every customer page ("balance result" is the POST answer)."""
        return {"home": "/", "recharge": "/recharge", "faq": "/faq", "balance form": "/balance",
                "balance result": "/balance", "order pending": f"/orders/{self.pending}",
                "order credited": f"/orders/{self.credited}", "receipt": f"/orders/{self.credited}/receipt"}

    def load(self, client: FlaskClient, page: str, lang: str, encoding: str = "") -> TestResponse:
        headers = {"Accept-Encoding": encoding} if encoding else {}
        path = self.pages()[page] + ("" if lang == "zh" else f"?lang={lang}")
        if page != "balance result":
            return client.get(path, headers=headers)
        token = csrf_from(client.get(path).get_data(as_text=True))
        # The right password: a lookup that succeeds, as a customer's does.
        return client.post("/balance", data={"csrf_token": token, "card_number": CARD, "password": PIN}, headers=headers)


@pytest.fixture
def site(app: Flask) -> Site:
    for locale, entries in STARTER.items():
        in_write_transaction(lambda locale=locale, entries=entries: seed(locale, entries))
    make_card(balance_fen=12345)
    buyer = new_client(app)
    numbers = [start_order(buyer) for _ in range(10)]
    for number in numbers[:-1]:
        assert buyer.post("/pay/notify/sandbox", data=notification(number, "100.00")).get_data() == b"success"
    return Site(app, pending=order(numbers[-1]).token, credited=order(numbers[0]).token)


def visitor(app: Flask) -> FlaskClient:
    """A browser on its first visit: no cookies, so zh is the default language."""
    return new_client(app)


# ------------------------------------------------------------------ what a page makes the browser fetch


# <link rel> values that only describe the page and fetch nothing.
NON_FETCHING_RELS = frozenset({"alternate", "canonical", "author", "help", "license", "next", "prev", "search"})
FETCHING = {"script": ("src",), "img": ("src", "srcset"), "source": ("src", "srcset"), "iframe": ("src",),
            "frame": ("src",), "embed": ("src",), "object": ("data",), "video": ("src", "poster"),
            "audio": ("src",), "track": ("src",), "input": ("src",), "image": ("href", "xlink:href"),
            "use": ("href", "xlink:href")}
URL_IN_CSS = re.compile(r"url\(\s*['\"]?(?!data:)([^'\")]+)|@import", re.IGNORECASE)
ABSOLUTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
XML_NAMESPACES = ("http://www.w3.org/",)


@dataclass
class Loads:
    """What the browser fetches when it parses a page, and why."""

    stylesheets: list[str] = field(default_factory=list)
    inline_styles: list[str] = field(default_factory=list)
    scripts: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    inline_scripts: list[dict[str, str | None]] = field(default_factory=list)  # their attributes
    inline_script_texts: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # anything else: must stay empty
    absolute: list[str] = field(default_factory=list)  # any absolute URL anywhere in the markup
    html_lang: str | None = None
    declares_icon: bool = False  # without <link rel=icon>, browsers also ask for /favicon.ico


class ResourceParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads = Loads()
        self._in_style = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.loads.html_lang = a.get("lang")
        for name, value in attrs:
            if value and ABSOLUTE.match(value) and not (name.startswith("xmlns") or value.startswith(XML_NAMESPACES)):
                self.loads.absolute.append(f"<{tag} {name}={value}>")
        rels = set((a.get("rel") or "").lower().split())
        if tag == "link" and "icon" in rels:
            self.loads.declares_icon = True
        if tag == "link" and a.get("href") and not (a.get("href") or "").startswith("data:"):
            if rels == {"stylesheet"}:
                self.loads.stylesheets.append(a["href"] or "")
            elif not rels <= NON_FETCHING_RELS:
                self.loads.other.append(f"<link rel={a.get('rel')} href={a['href']}>")
        elif tag == "script" and a.get("src"):
            self.loads.scripts.append((a["src"] or "", a))
        elif tag == "script":
            self.loads.inline_scripts.append(a)
            self.loads.inline_script_texts.append("")
            self._in_script = True
        elif tag == "style":
            self._in_style = True
            self.loads.inline_styles.append("")
        for name in FETCHING.get(tag, ()):
            if tag != "script" and a.get(name) and not (a[name] or "").startswith("data:"):
                self.loads.other.append(f"<{tag} {name}={a[name]}>")
        if a.get("style") and URL_IN_CSS.search(a["style"] or ""):
            self.loads.other.append(f"<{tag} style={a['style']}>")
        trigger = (a.get("hx-trigger") or "").lower()
        if re.search(r"\b(load|revealed|intersect)\b", trigger):  # htmx requests as the page opens
            self.loads.other.append(f"<{tag} hx-trigger={trigger}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.loads.inline_script_texts[-1] += data
        if self._in_style:
            self.loads.inline_styles[-1] += data
            if URL_IN_CSS.search(data):
                self.loads.other.append("<style> with url() or @import")


def loads_of(html: str) -> Loads:
    parser = ResourceParser()
    parser.feed(html)
    parser.close()
    return parser.loads


def digest_of(filename: str) -> str:
    return hashlib.sha256((ROOT / "static" / filename).read_bytes()).hexdigest()[:10]


def static_file(url: str) -> str:
    """The file a same-origin, cache-busted /static/ URL names; fails for any other URL."""
    parts = urlsplit(url)
    assert not parts.scheme and not parts.netloc, f"{url}: not same-origin"
    assert parts.path.startswith("/static/"), f"{url}: not under /static/"
    filename = parts.path.removeprefix("/static/")
    assert (ROOT / "static" / filename).is_file(), f"{url}: no such static file"
    assert parse_qs(parts.query).get("v") == [digest_of(filename)], f"{url}: no current content digest in the URL"
    return filename


def sizes(rows: dict[str, tuple[int, int, int]]) -> str:
    """A table for assertion messages: page, raw HTML, gzip HTML, gzip HTML+CSS."""
    lines = [f"{'page':<16} {'html':>7} {'html.gz':>8} {'+css.gz':>8}"]
    lines += [f"{page:<16} {raw:>7} {html_gz:>8} {total:>8}" for page, (raw, html_gz, total) in rows.items()]
    return "\n".join(lines)


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("lang", list(LANGS))
def test_every_page_fits_14kb_and_loads_only_its_css_and_htmx(site: Site, lang: str) -> None:
    client = visitor(site.app)
    measured: dict[str, tuple[int, int, int]] = {}
    for page in site.pages():
        r = site.load(client, page, lang, "gzip")
        assert r.status_code == 200, (page, r.status_code)
        assert r.headers.get("Content-Encoding") == "gzip", (page, dict(r.headers))
        html = gzip.decompress(r.get_data())
        found = loads_of(html.decode())
        assert found.html_lang == LANGS[lang], (page, found.html_lang)

        assert not found.other, f"{page} ({lang}) makes the browser fetch more than CSS and htmx: {found.other}"
        assert not found.absolute, f"{page} ({lang}) has absolute (external) URLs: {found.absolute}"
        # The site's stylesheet comes inline, byte for byte the file, and the CSP allows exactly it;
        # a page of another layout (the printable receipt) links its own.
        site_css = (ROOT / "static" / "css" / "site.css").read_text()
        assert found.inline_styles in ([site_css], []), f"{page} ({lang}): other inline style than the site's"
        assert found.inline_styles or found.stylesheets, f"{page} ({lang}) has no style at all"
        policy = r.headers["Content-Security-Policy"]
        style_src = next(d for d in policy.split(";") if d.strip().startswith("style-src")).split()
        assert style_src == ["style-src", "'self'", f"'sha256-{base64.b64encode(hashlib.sha256(site_css.encode()).digest()).decode()}'"], policy
        assert found.declares_icon, f"{page} ({lang}) declares no icon: the browser will also GET /favicon.ico"
        # No script file is named: the one script is the loader, inline, byte for byte the file, and
        # the CSP allows exactly it; it asks for htmx only after the first paint.
        # The printable receipt alone names one more: its print button's.
        named = [static_file(src) for src, _ in found.scripts]
        assert named == ([PRINT] if page.startswith("receipt") else []), f"{page} ({lang}) names a script file: {found.scripts}"
        loader = (ROOT / "static" / LOADER).read_text()
        assert found.inline_script_texts in ([loader], []), f"{page} ({lang}): other inline script than the loader"
        for attrs in found.inline_scripts:
            assert static_file(attrs.get("data-src") or "") == HTMX, f"{page} ({lang}): the loader loads {attrs}"
        script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src")).split()
        assert script_src == ["script-src", "'self'", f"'sha256-{base64.b64encode(hashlib.sha256(loader.encode()).digest()).decode()}'"], policy

        css_gz = 0
        for href in found.stylesheets:
            filename = static_file(href)
            assert filename.startswith("css/") and filename.endswith(".css"), href
            text = (ROOT / "static" / filename).read_text()
            assert not URL_IN_CSS.search(text), f"{filename} fetches more (url() or @import)"
            css = site.app.test_client().get(href, headers={"Accept-Encoding": "gzip"})
            assert css.headers.get("Content-Encoding") == "gzip", (href, dict(css.headers))
            css_gz += len(css.get_data())
            css.close()
        measured[page] = (len(html), len(r.get_data()), len(r.get_data()) + css_gz)  # inline CSS counted in the HTML

    over = {page: row for page, row in measured.items() if row[2] > BUDGET}
    table = sizes(measured)
    print(f"\npage weights, bytes ({lang}):\n{table}")
    assert not over, f"over the {BUDGET}-byte budget ({lang}):\n{table}"


@pytest.mark.parametrize("lang", list(LANGS))
def test_pages_come_gzip_or_brotli_as_asked_and_decompress_to_the_same_bytes(site: Site, lang: str) -> None:
    client = visitor(site.app)
    for page in site.pages():
        plain = site.load(client, page, lang)
        assert plain.status_code == 200 and "Content-Encoding" not in plain.headers, (page, dict(plain.headers))
        for asked, expected in (("gzip", "gzip"), ("br, gzip", "br"), ("gzip, deflate, br", "br")):
            r = site.load(client, page, lang, asked)
            body = r.get_data()
            assert r.headers.get("Content-Encoding") == expected, (page, asked, dict(r.headers))
            assert int(r.headers["Content-Length"]) == len(body), (page, asked)
            decoded = DECODE[expected](body)
            assert masked(decoded) == masked(plain.get_data()), f"{page} ({lang}, {asked}) decodes to other bytes"
            assert len(body) < len(decoded), (page, asked, len(body), len(decoded))
            # Compression adds to what the page varies on; it never replaces it.
            vary = {v.strip().lower() for v in r.headers["Vary"].split(",")}
            assert {"accept-encoding", "hx-request", "accept-language", "cookie"} <= vary, (page, r.headers["Vary"])
            assert r.headers.get("Cache-Control") == plain.headers.get("Cache-Control"), page


def test_static_files_are_cache_busted_immutable_for_a_year_and_compressed(site: Site) -> None:
    client = visitor(site.app)
    urls: set[str] = set()
    for lang in LANGS:
        for page in site.pages():
            found = loads_of(site.load(client, page, lang).get_data(as_text=True))
            urls.update(found.stylesheets, (src for src, _ in found.scripts))
            urls.update(a["data-src"] or "" for a in found.inline_scripts)
    assert {static_file(u) for u in urls} >= {"css/print.css", HTMX}, urls
    report = []
    smallest = site.app.config["COMPRESS_MIN_SIZE"]  # below it compression would add bytes
    for url in sorted(urls):
        stored = (ROOT / "static" / static_file(url)).read_bytes()
        for asked, expected in (("gzip", "gzip"), ("br, gzip", "br"), ("", None)):
            expected = expected if len(stored) >= smallest else None
            r = client.get(url, headers={"Accept-Encoding": asked} if asked else {})
            body = r.get_data()
            cache = r.cache_control
            assert r.status_code == 200 and cache.max_age == YEAR and cache.immutable and cache.public, (url, r.headers)
            assert r.headers.get("Content-Encoding") == expected, (url, asked, dict(r.headers))
            assert "accept-encoding" in r.headers["Vary"].lower(), (url, r.headers)
            assert "Accept-Language" not in r.headers["Vary"], url  # the same file in every language
            assert (DECODE[expected](body) if expected else body) == stored, f"{url} ({asked}) decodes to other bytes"
            report.append(f"{url.split('?')[0]} {expected or 'identity'}: {len(body)} bytes")
            # The validator names the encoding, so a cached gzip copy is never confirmed as a br one.
            etag = r.headers["ETag"]
            again = client.get(url, headers={"Accept-Encoding": asked, "If-None-Match": etag} if asked
                               else {"If-None-Match": etag})
            assert again.status_code == 304 and not again.get_data(), (url, asked, again.status_code)
            r.close()
            again.close()
        # A byte range is a range of the stored file: never compressed.
        part = client.get(url, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-999"})
        assert part.status_code == 206 and "Content-Encoding" not in part.headers and part.get_data() == stored[:1000], url
        part.close()
    print("\nstatic files:\n" + "\n".join(report))


def test_a_static_url_without_its_current_digest_is_revalidated(client: FlaskClient) -> None:
    for url in ("/static/css/site.css", "/static/css/site.css?v=0000000000"):
        r = client.get(url)
        assert r.status_code == 200 and r.cache_control.no_cache and not r.cache_control.immutable, (url, r.headers)
        assert "Expires" not in r.headers, url
        r.close()


def test_small_and_machine_answers_stay_plain(app: Flask, client: FlaskClient) -> None:
    """Providers read the literal body `success`; under the 500-byte minimum nothing is compressed."""
    make_card()
    number = start_order(client)
    everything = {"Accept-Encoding": "gzip, deflate, br, zstd"}
    r = client.post("/pay/notify/sandbox", data=notification(number, "100.00"), headers=everything)
    assert r.get_data() == b"success" and "Content-Encoding" not in r.headers, dict(r.headers)
    duplicate = client.post("/pay/notify/sandbox", data=notification(number, "100.00"), headers=everything)
    assert duplicate.get_data() == b"success" and "Content-Encoding" not in duplicate.headers
    health = client.get("/healthz", headers=everything)
    assert health.get_data() == b"ok" and "Content-Encoding" not in health.headers


def test_no_compression_without_accept_encoding_or_for_identity(client: FlaskClient) -> None:
    for asked in ("", "identity", "gzip;q=0, identity"):
        r = client.get("/recharge", headers={"Accept-Encoding": asked} if asked else {})
        assert "Content-Encoding" not in r.headers and r.get_data(as_text=True).lstrip().startswith("<!doctype html>"), asked
        assert "Accept-Encoding" in r.headers["Vary"], asked  # a cache must still keep the variants apart


def test_every_customer_page_has_a_budget() -> None:
    """The budget tests cover every page the customer blueprint serves: a new GET route fails
    here until it is added to ``Site.pages``."""
    from heyon_site import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})
    covered = {"/", "/recharge", "/faq", "/balance", "/orders/<token>", "/orders/<token>/receipt",
               "/recharge/quote",  # the quote is the recharge page with an amount chosen
               "/wechat/signed-in"}  # test_the_wechat_pages_fit_and_name_only_their_script
    redirects = {"/orders/<token>/pay"}  # no page of their own
    downloads = {"/orders/<token>/invoice.pdf"}  # the tax platform's PDF, not a page of ours
    customer = {rule.rule for rule in app.url_map.iter_rules()
                if rule.endpoint.startswith("customer.") and "GET" in (rule.methods or set())}
    assert customer <= covered | redirects | downloads, f"customer pages without a budget test: {sorted(customer - covered)}"


def test_first_party_script_stays_under_one_kilobyte() -> None:
    """Besides the vendored htmx, the only scripts are its loader and the receipt's print
    button: at most 1 KB together as stored."""
    scripts = sorted(p.relative_to(ROOT / "static").as_posix() for p in (ROOT / "static" / "js").glob("*.js"))
    assert scripts == sorted([HTMX, LOADER, PRINT, WECHAT]), scripts
    size = sum(len((ROOT / "static" / name).read_bytes()) for name in (LOADER, PRINT))
    assert size <= LOADER_BUDGET, f"{LOADER} and {PRINT} are {size} bytes together"


def test_the_wechat_pages_fit_and_name_only_their_script(database: str) -> None:
    """Inside WeChat a JSAPI order's page names one script more, WeChat's pay sheet opener (the
    brief excepts it from the 1 KB: it runs only there); anywhere else the same page names none.
    The page a refused WeChat sign-in ends on fits the budget like every other."""
    config = {**TEST_CONFIG, "DATABASE_URL": database, "HEYON_PROVIDERS": ("wechat",),
              **WECHAT_KIT.config("http://127.0.0.1:9"), **jsapi_config("http://127.0.0.1:9")}
    with held(create_app(config)) as app:
        make_card()
        buyer = new_client(app)
        buyer.environ_base["HTTP_USER_AGENT"] = WECHAT_UA
        made = buyer.post("/recharge", data=recharge_form(buyer, method="wechat"))
        assert made.status_code == 303 and "/connect/oauth2/authorize?" in made.headers["Location"]
        found = db.session.scalars(select(RechargeOrder)).one()
        # What a JSAPI order leaves on the order (its parameters are signed by WeChat Pay's code;
        # here only their size matters: a paySign of RSA 2048 is 344 characters of base64).
        found.pay_jsapi = json.dumps({"appId": MP_APPID, "timeStamp": "1796328840", "nonceStr": "a" * 32,
                                      "package": "prepay_id=wx" + "0" * 32, "signType": "RSA", "paySign": "A" * 344})
        db.session.commit()
        css_gz = len(gzip.compress((ROOT / "static" / "css" / "site.css").read_bytes(), 9))
        for ua, expected in ((WECHAT_UA, [WECHAT]), ("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", [])):
            r = new_client(app).get(f"/orders/{found.token}", headers={"User-Agent": ua, "Accept-Encoding": "gzip"})
            html = gzip.decompress(r.get_data()).decode()
            assert r.status_code == 200 and len(r.get_data()) + css_gz <= BUDGET, len(r.get_data())
            assert [static_file(src) for src, _ in loads_of(html).scripts] == expected, ua
            assert ('id="wechat-jsapi"' in html) == bool(expected), ua
        refused = new_client(app).get("/wechat/signed-in?state=forged&code=x",
                                      headers={"User-Agent": WECHAT_UA, "Accept-Encoding": "gzip"})
        # An error answer goes uncompressed (Flask-Compress compresses 200s); measured as it would be.
        body = refused.get_data()
        assert refused.status_code == 400 and len(gzip.compress(body, 9)) + css_gz <= BUDGET
        assert "Nothing was paid" in new_client(app).get("/wechat/signed-in?state=forged&lang=en").get_data(as_text=True)
        assert not loads_of(body.decode()).scripts
