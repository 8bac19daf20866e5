"""A short-lived render cache for the pages every visitor sees alike: the home page, the recharge
and balance forms and the FAQ.

Rendering them (the form's widgets, the promotions query, the quote, the FAQ's entries) and
compressing them was nine tenths of what a visit cost, and they are the same for every visitor
who reads the same language, but for one thing: the visitor's CSRF token (the FAQ has none). So
each page is rendered once with a placeholder where the token goes, kept for
``HEYON_PAGE_CACHE_SECONDS`` in this process, and every visitor gets it with their own token put
in. The token is Flask-WTF's own, made by
``generate_csrf`` for this visitor's session, so the form posts and is checked exactly as before.

The page is kept compressed too. The token is the last field of the form, so everything before
it is the same for everyone: it is compressed once (brotli 11, gzip 6) and flushed to a byte
boundary, and each answer appends the rest of the page (the token and a few hundred bytes after
it) as an uncompressed block, which both formats allow (brotli: an uncompressed meta-block, RFC
7932 section 9.2; deflate: a stored block, RFC 1951 section 3.2.4), then closes the stream. The
browser decodes one ordinary stream. Pages where the token is not in one place near the end are
cached as text only and compressed per answer as any page is.

The recharge form also carries a one-time id (one form, one order: a form sent twice makes one
order), which must differ for every visitor too: it has a placeholder of its own, right before
the token, and each answer gets a new id there.

What may be stale, and for how long: a promotion or FAQ entry started, edited or ended shows on
these pages up to that many seconds late (at once in the process where staff made the change:
every staff change forgets this process's pages). Nothing
that moves money reads this cache: an order is quoted afresh when it is created, and the order
page shows what will be credited before paying. Only pages that reflect nothing from the request
may be cached (no form data, no query values), and the key is the template and the language:
Babel's locale name, so zh_Hans, zh_Hant and en pages are kept apart, and every answer varies on
Accept-Language and Cookie, which choose it (web/i18n.py).
"""

from __future__ import annotations

import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import brotli
from flask import Response, current_app, g, request
from flask_babel import get_locale
from flask_wtf.csrf import generate_csrf

# Letters and digits only, so HTML and JSON escaping leave it as it is wherever it lands; it
# cannot come from a visitor, since a cached page reflects nothing from the request.
PLACEHOLDER = "heyonCsrfTokenPlaceholder7f3c1a"
FORM_ID_PLACEHOLDER = "heyonFormIdPlaceholder5d21b9"
_RENDERING = "heyon_page_cache_rendering"
# The part of the page after the token travels uncompressed: past this size it would cost more
# bytes than compressing each answer saves CPU.
MAX_TAIL = 2048
ENCODINGS = ("br", "gzip")
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no time, unknown OS
_lock = threading.Lock()


@dataclass(frozen=True)
class Page:
    expires: float
    html: str  # with the placeholder
    # When the token is in one place near the end: the bytes before it, compressed per encoding,
    # and the CRC-32 and length gzip's trailer needs.
    head: dict[str, bytes] = field(default_factory=dict)
    head_crc: int = 0
    head_size: int = 0
    tail: str = ""
    token: bool = True  # False: a page with no form to post (the FAQ), the same for everyone


def rendering() -> bool:
    """True while a page for the cache is rendered: what it shows, every visitor of its language
    sees (the language switch's links then keep no query parameter)."""
    return bool(g.get(_RENDERING))


def one_time_id() -> str:
    """A new one-time id for a form; while a page for the cache is rendered, the placeholder
    that each visitor's own id replaces."""
    return FORM_ID_PLACEHOLDER if rendering() else secrets.token_urlsafe(18)


def _split(html: str, expires: float) -> Page:
    token = PLACEHOLDER in html
    if html.count(PLACEHOLDER) > 1 or html.count(FORM_ID_PLACEHOLDER) > 1:
        return Page(expires, html)
    # A page without a token is all head: its tail is empty, and each answer only closes the stream.
    at = min((html.index(p) for p in (PLACEHOLDER, FORM_ID_PLACEHOLDER) if p in html), default=len(html))
    head, tail = html[:at].encode(), html[at:]
    if len(tail.encode()) > MAX_TAIL:
        return Page(expires, html, token=token)
    br = brotli.Compressor(quality=11)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate: gzip's header is ours
    return Page(
        expires,
        html,
        {
            "br": br.process(head) + br.flush(),  # flush: byte-aligned, stream still open
            "gzip": GZIP_HEADER + deflate.compress(head) + deflate.flush(zlib.Z_SYNC_FLUSH),
        },
        zlib.crc32(head),
        len(head),
        tail,
        token,
    )


def brotli_tail(data: bytes) -> bytes:
    """Uncompressed meta-blocks holding ``data``, then the empty last meta-block."""
    out = bytearray()
    for i in range(0, len(data), 1 << 16):
        chunk = data[i : i + (1 << 16)]
        # ISLAST=0, MNIBBLES=4 (code 0), MLEN-1 in 16 bits, ISUNCOMPRESSED=1, padded to 3 bytes.
        out += (((len(chunk) - 1) << 3) | (1 << 19)).to_bytes(3, "little") + chunk
    return bytes(out + b"\x03")  # ISLAST=1, ISLASTEMPTY=1


def gzip_tail(data: bytes, head_crc: int, head_size: int) -> bytes:
    """Stored deflate blocks holding ``data`` (the last one final), then gzip's CRC-32 and size."""
    chunks = [data[i : i + 0xFFFF] for i in range(0, len(data), 0xFFFF)] or [b""]
    out = bytearray()
    for n, chunk in enumerate(chunks):
        out += bytes([n == len(chunks) - 1]) + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    return bytes(out + struct.pack("<II", zlib.crc32(data, head_crc), (head_size + len(data)) & 0xFFFFFFFF))


def _cached(template: str, build: Callable[[], str], variant: str = "") -> Page | str:
    """The page of ``template`` in the visitor's language (and ``variant``: where the visitor is,
    when the page says what works there), or (when it cannot be kept) the HTML rendered for this
    visitor alone."""
    ttl = current_app.config.get("HEYON_PAGE_CACHE_SECONDS", 0)
    if ttl <= 0:
        return build()
    pages: dict[tuple[str, str, str], Page] = current_app.extensions.setdefault("heyon.page_cache", {})
    key, now = (template, str(get_locale()), variant), time.monotonic()
    hit = pages.get(key)
    if hit is None or hit.expires <= now:
        name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        # generate_csrf returns what g holds for the request: the placeholder, while rendering.
        setattr(g, name, PLACEHOLDER)
        setattr(g, _RENDERING, True)
        try:
            html = build()
        finally:
            g.pop(name, None)
            g.pop(_RENDERING, None)
        if PLACEHOLDER not in html and name in html:
            # The token did not come from g (Flask-WTF changed?): this render holds this visitor's
            # own token, right for them and wrong for anyone else, so it is served, never kept.
            current_app.logger.warning("page cache: %s rendered without the token placeholder", template)
            return html
        hit = _split(html, now + ttl)
        with _lock:  # threads of one worker: the last render wins, both are the same page
            pages[key] = hit
    return hit


def response(template: str, build: Callable[[], str], variant: str = "") -> Response:
    """The page as a response, with this visitor's CSRF token; compressed from the cache when
    the browser takes brotli or gzip and the page allows it (Flask-Compress leaves an encoded
    response alone)."""
    answer = _answer(_cached(template, build, variant))
    answer.vary.add("HX-Request")  # as render() says for every page: a fragment is never this page
    return answer


def _answer(page: Page | str) -> Response:
    if isinstance(page, str):
        return Response(page.replace(FORM_ID_PLACEHOLDER, secrets.token_urlsafe(18)), mimetype="text/html")
    # No token asked for where the page has none: a session (and its cookie) only for a form.
    token, form_id = generate_csrf() if page.token else "", secrets.token_urlsafe(18)
    encoding = request.accept_encodings.best_match(ENCODINGS) if page.head else None
    if encoding is None:
        return Response(
            page.html.replace(PLACEHOLDER, token).replace(FORM_ID_PLACEHOLDER, form_id), mimetype="text/html"
        )
    tail = page.tail.replace(PLACEHOLDER, token).replace(FORM_ID_PLACEHOLDER, form_id).encode()
    end = brotli_tail(tail) if encoding == "br" else gzip_tail(tail, page.head_crc, page.head_size)
    answer = Response(page.head[encoding] + end, mimetype="text/html")
    answer.headers["Content-Encoding"] = encoding
    answer.vary.add("Accept-Encoding")
    return answer


def forget() -> None:
    """Drop this process's pages (after a promotion change made here)."""
    current_app.extensions.pop("heyon.page_cache", None)
