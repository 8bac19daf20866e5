"""A short-lived render cache for the two busiest pages, the home page and the recharge form.

Rendering them (the form's widgets, the promotions query, the quote) is four fifths of what a
visit costs, and they are the same for every visitor who reads the same language, but for one
thing: the visitor's CSRF token, in the form and in ``hx-headers``. So the page is rendered once
with a placeholder where the token goes, kept for ``HEYON_PAGE_CACHE_SECONDS`` in this process,
and each visitor gets it with their own token put in. The token is Flask-WTF's own, made by
``generate_csrf`` for this visitor's session, so the form posts and is checked exactly as before.

What may be stale, and for how long: a promotion started, edited or ended shows on these two
pages up to that many seconds late. Nothing that moves money reads this cache: the order is
quoted afresh when it is created, and the order page shows what will be credited before paying.
Only pages that reflect nothing from the request may be cached (no form data, no query values),
and the key is the template and the language.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import current_app, g
from flask_babel import get_locale
from flask_wtf.csrf import generate_csrf

# Letters and digits only, so HTML and JSON escaping leave it as it is wherever it lands; it
# cannot come from a visitor, since a cached page reflects nothing from the request.
PLACEHOLDER = "heyonCsrfTokenPlaceholder7f3c1a"
_lock = threading.Lock()


def page(template: str, build: Callable[[], str]) -> str:
    """The HTML ``build`` renders for ``template`` in the visitor's language, with the visitor's
    CSRF token. With ``HEYON_PAGE_CACHE_SECONDS`` 0 every call renders."""
    ttl = current_app.config.get("HEYON_PAGE_CACHE_SECONDS", 0)
    if ttl <= 0:
        return build()
    pages: dict[tuple[str, str], tuple[float, str]] = current_app.extensions.setdefault("heyon.page_cache", {})
    key, now = (template, str(get_locale())), time.monotonic()
    hit = pages.get(key)
    if hit is None or hit[0] <= now:
        field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        # generate_csrf returns what g holds for the request: the placeholder, while rendering.
        setattr(g, field, PLACEHOLDER)
        try:
            html = build()
        finally:
            g.pop(field, None)
        if PLACEHOLDER not in html:
            # The token did not come from g (Flask-WTF changed?): this render holds this visitor's
            # own token, right for them and wrong for anyone else, so it is served, never kept.
            current_app.logger.warning("page cache: %s rendered without the token placeholder", template)
            return html
        hit = (now + ttl, html)
        with _lock:  # threads of one worker: the last render wins, both are the same page
            pages[key] = hit
    return hit[1].replace(PLACEHOLDER, generate_csrf())


def forget() -> None:
    """Drop this process's pages (after a promotion change made here)."""
    current_app.extensions.pop("heyon.page_cache", None)
