"""The render cache of the home page and the recharge form (heyon_site/web/page_cache.py).

Every visitor gets the same page with their own CSRF token, which their form posts accept and
nobody else's do; the page is rendered once per language and lifetime, never holds the
placeholder, and a promotion change shows once the lifetime is over.
"""
from __future__ import annotations

import gzip
import re
import zlib

import brotli
import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from heyon_site.web import page_cache
from heyon_site.customer import recharge as recharge_screen

from tests.kit import new_client
from tests.kit import CARD, PIN, csrf_from, csrf_secret, hidden_value, make_card
from tests.properties.kit import masked
from tests.promos.kit import save

PAGES = ("/", "/recharge")  # the recharge forms: a token and a one-time form id each
EVERY_PAGE = (*PAGES, "/balance", "/faq")  # the balance form has a token; the FAQ posts nothing
LIFETIME = 5


@pytest.fixture
def cached(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The cache on, with a clock the test moves; returns the clock (one mutable number)."""
    app.config["HEYON_PAGE_CACHE_SECONDS"] = LIFETIME
    clock = [1000.0]
    monkeypatch.setattr(page_cache.time, "monotonic", lambda: clock[0])
    return clock


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates actually rendered, one entry per render."""
    seen: list[str] = []
    real = recharge_screen.recharge_page

    def counting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(str(kwargs.get("template", "customer/recharge.html")))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(recharge_screen, "recharge_page", counting)
    return seen


DECODE = {"gzip": gzip.decompress, "br": brotli.decompress}


@pytest.mark.parametrize("path", PAGES)
def test_each_visitor_gets_the_same_page_with_their_own_token(app: Flask, cached: list[float], path: str) -> None:
    first, second = new_client(app), new_client(app)
    a = first.get(path).get_data(as_text=True)
    b = second.get(path).get_data(as_text=True)
    again = first.get(path).get_data(as_text=True)
    assert page_cache.PLACEHOLDER not in a + b + again
    assert masked(a.encode()) == masked(b.encode()) == masked(again.encode())
    assert csrf_secret(csrf_from(a)) != csrf_secret(csrf_from(b))
    # The one-time form id is new in every answer, never the placeholder (one form, one order).
    ids = [hidden_value(page, "form_id") for page in (a, b, again)]
    assert len(set(ids)) == 3 and page_cache.FORM_ID_PLACEHOLDER not in a + b + again
    # One token, the form's last field: the form is the page's only htmx post.
    assert a.count(csrf_from(a)) == 1 and "X-CSRFToken" not in a
    assert re.search(r'name="csrf_token" type="hidden" value="[^"]+">\s*</form>', a)


@pytest.mark.parametrize("path", EVERY_PAGE)
def test_the_cached_page_is_the_page_rendered_afresh(app: Flask, cached: list[float], path: str) -> None:
    warm = new_client(app)
    warm.get(path + "?lang=en")  # fills the cache
    from_cache = new_client(app).get(path + "?lang=en").get_data()
    app.config["HEYON_PAGE_CACHE_SECONDS"] = 0
    fresh = new_client(app).get(path + "?lang=en").get_data()
    assert masked(from_cache) == masked(fresh)


@pytest.mark.parametrize("path", EVERY_PAGE)
@pytest.mark.parametrize(("asked", "expected"), [("gzip", "gzip"), ("br, gzip", "br"), ("gzip, deflate, br, zstd", "br"),
                                                  ("gzip;q=1, br;q=0.5", "gzip"), ("identity", None), ("", None)])
def test_compressed_from_the_cache_it_decodes_to_the_visitors_page(
        app: Flask, cached: list[float], path: str, asked: str, expected: str | None) -> None:
    new_client(app).get(path)  # someone else filled the cache
    visitor = new_client(app)
    r = visitor.get(path, headers={"Accept-Encoding": asked} if asked else {})
    body = r.get_data()
    assert r.status_code == 200 and r.headers.get("Content-Encoding") == expected, dict(r.headers)
    assert int(r.headers["Content-Length"]) == len(body)
    html = (DECODE[expected](body) if expected else body).decode()
    app.config["HEYON_PAGE_CACHE_SECONDS"] = 0
    fresh = new_client(app).get(path).get_data()
    assert masked(html.encode()) == masked(fresh) and page_cache.PLACEHOLDER not in html
    if path == "/faq":  # nothing to post: no token, and no session made for one
        assert "csrf_token" not in html and "X-CSRFToken" not in html and "Set-Cookie" not in r.headers
    else:  # this visitor's own token: the same secret, signed again (the signature carries the second)
        assert csrf_secret(csrf_from(html)) == csrf_secret(csrf_from(visitor.get(path).get_data(as_text=True)))
        assert html.count(csrf_from(html)) == 1
    vary = {v.strip().lower() for v in r.headers["Vary"].split(",")}
    assert {"accept-encoding", "hx-request", "accept-language", "cookie"} <= vary
    if expected == "gzip":  # one gzip member, complete: nothing after its trailer
        stream = zlib.decompressobj(31)
        assert stream.decompress(body) == html.encode() and stream.eof and not stream.unused_data
    if expected:
        assert len(body) < len(html.encode()) * 0.5, (len(body), len(html))


@pytest.mark.parametrize("size", [0, 1, 200, 65535, 65536, 65537, 140_000])
def test_the_uncompressed_ends_make_whole_streams(size: int) -> None:
    """Whatever the length of the part after the token, both encodings decode to head + tail."""
    head, tail = ("页" * 3000 + "<form>").encode(), bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    br = brotli.Compressor(quality=5)
    assert brotli.decompress(br.process(head) + br.flush() + page_cache.brotli_tail(tail)) == head + tail
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = (page_cache.GZIP_HEADER + deflate.compress(head) + deflate.flush(zlib.Z_SYNC_FLUSH)
            + page_cache.gzip_tail(tail, zlib.crc32(head), len(head)))
    assert gzip.decompress(body) == head + tail


def test_a_page_with_the_token_in_two_places_is_compressed_per_answer(app: Flask, cached: list[float]) -> None:
    """A page that carries the token twice (``hx-headers`` and a field, as the base layout does)
    cannot be answered from compressed pieces: the text is kept, and Flask-Compress compresses
    each answer."""
    from flask_wtf.csrf import generate_csrf

    def build() -> str:
        return f"<body data-t='{generate_csrf()}'>{'<p>Text</p>' * 50}<form><input value='{generate_csrf()}'></form>"

    with app.test_request_context("/", headers={"Accept-Encoding": "gzip"}):
        r = page_cache.response("two-tokens.html", build)
        html = r.get_data(as_text=True)
        assert "Content-Encoding" not in r.headers and html.count(generate_csrf()) == 2
        assert page_cache.PLACEHOLDER not in html
        assert not page_cache._cached("two-tokens.html", lambda: "").head  # kept as text only


def test_a_visitors_token_from_the_cache_posts_and_anothers_does_not(app: Flask, cached: list[float]) -> None:
    make_card(CARD, PIN, 0)
    owner, stranger = new_client(app), new_client(app)
    new_client(app).get("/recharge?lang=en")  # someone else filled the cache
    token = csrf_from(owner.get("/recharge?lang=en").get_data(as_text=True))
    stranger.get("/recharge?lang=en")
    form = {"csrf_token": token, "card_number": CARD, "password": PIN, "amount": "100", "custom_amount": "",
            "method": "sandbox"}
    assert stranger.post("/recharge", data=form).status_code == 400  # not the stranger's token
    assert owner.post("/recharge", data=form).status_code == 303


def test_one_render_per_page_and_language_per_lifetime(app: Flask, cached: list[float], renders: list[str]) -> None:
    for _ in range(3):
        for lang in ("zh", "en"):
            for path in PAGES:
                assert new_client(app).get(f"{path}?lang={lang}").status_code == 200
    assert sorted(renders) == sorted(["customer/home.html", "customer/recharge.html"] * 2)
    cached[0] += LIFETIME
    new_client(app).get("/?lang=zh")
    assert len(renders) == 5


def test_a_new_promotion_shows_once_the_lifetime_is_over(app: Flask, client: FlaskClient, cached: list[float]) -> None:
    assert "Launch week bonus" not in client.get("/recharge?lang=en").get_data(as_text=True)
    save(title_en="Launch week bonus", kind="fixed_bonus", value_fen=1000, threshold_fen=2000)
    cached[0] += LIFETIME - 1
    assert "Launch week bonus" not in client.get("/recharge?lang=en").get_data(as_text=True)  # at most this late
    cached[0] += 1
    assert "Launch week bonus" in client.get("/recharge?lang=en").get_data(as_text=True)


def test_without_a_lifetime_every_visit_renders(app: Flask, renders: list[str]) -> None:
    assert app.config["HEYON_PAGE_CACHE_SECONDS"] == 0
    for _ in range(3):
        new_client(app).get("/")
    assert renders == ["customer/home.html"] * 3


def test_a_page_rendered_without_the_placeholder_is_served_but_not_kept(app: Flask, cached: list[float]) -> None:
    """Were the token not taken from ``g`` (Flask-WTF changed), the render would hold its first
    visitor's token: it is served to that visitor only, and the next visit renders again."""
    built: list[str] = []

    def build() -> str:
        built.append("render")
        return f'<form><input name="csrf_token" value="first-visitors-own"></form><p>{len(built)}</p>'

    with app.test_request_context("/"):
        assert page_cache.response("own-token.html", build).get_data(as_text=True).endswith("<p>1</p>")
    with app.test_request_context("/"):
        assert page_cache.response("own-token.html", build).get_data(as_text=True).endswith("<p>2</p>")


def test_a_page_without_a_form_is_kept_whole_and_makes_no_session(app: Flask, cached: list[float]) -> None:
    built: list[str] = []

    def build() -> str:
        built.append("render")
        return f"<p>{len(built)}</p>" + "<p>The same for everyone.</p>" * 40

    page = "<p>1</p>" + "<p>The same for everyone.</p>" * 40
    for encoding, decode in (("br", brotli.decompress), ("gzip", gzip.decompress), ("identity", bytes)):
        with app.test_request_context("/", headers={"Accept-Encoding": encoding}):
            r = page_cache.response("no-form.html", build)
            assert r.headers.get("Content-Encoding", "identity") == encoding
            assert decode(r.get_data()).decode() == page
            assert "csrf_token" not in session  # no token asked for, so no session to keep it
    assert built == ["render"]


def test_a_promotion_changed_by_staff_shows_at_once_in_the_same_process(
        app: Flask, client: FlaskClient, cached: list[float]) -> None:
    """Other processes wait out the lifetime; the one that made the change forgets its pages."""
    from tests.staff.kit import signed_in
    from tests.promos.kit import approve, create_promo, the_promo, token

    assert "Staff-made bonus" not in client.get("/?lang=en").get_data(as_text=True)
    staff = signed_in(app, "editor")
    create_promo(staff, title_en="Staff-made bonus")
    assert "Staff-made bonus" not in client.get("/?lang=en").get_data(as_text=True)  # awaiting approval
    assert approve(signed_in(app, "admin"), the_promo().id).status_code == 303
    assert "Staff-made bonus" in client.get("/?lang=en").get_data(as_text=True)
    r = staff.post(f"/staff/promotions/{the_promo().id}/end", data={"csrf_token": token(staff)})
    assert r.status_code == 303, r.status_code
    assert "Staff-made bonus" not in client.get("/?lang=en").get_data(as_text=True)


def test_an_faq_change_by_staff_shows_at_once_and_a_search_is_never_cached(
        app: Flask, client: FlaskClient, cached: list[float]) -> None:
    from tests.staff.kit import signed_in
    from tests.staff.test_faq import create_faq

    assert "Staff-made question?" not in client.get("/faq?lang=en").get_data(as_text=True)
    create_faq(signed_in(app, "editor"), question="Staff-made question?")
    assert "Staff-made question?" in client.get("/faq?lang=en").get_data(as_text=True)
    # A search, with or without htmx, is this visitor's own: rendered, never kept for others.
    assert "Staff-made question?" in client.get("/faq?lang=en&q=staff").get_data(as_text=True)
    assert "Staff-made question?" in new_client(app, htmx=True).get("/faq?lang=en&q=staff").get_data(as_text=True)
    app.extensions.pop("heyon.page_cache", None)
    client.get("/faq?lang=en&q=nothing-matches-this")
    new_client(app, htmx=True).get("/faq?lang=en")  # the results block alone
    page = new_client(app).get("/faq?lang=en").get_data(as_text=True)  # the first page kept
    assert "Staff-made question?" in page and page.lstrip().lower().startswith("<!doctype html>")
