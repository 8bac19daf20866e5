"""Language: zh-Hans by default; Traditional Chinese (zh-Hant) and English on request (``?lang=``,
a cookie, Accept-Language)."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlencode

from babel import Locale
from flask import Flask, Response, g, request
from flask_babel import get_locale
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from heyon_site.extensions import babel
from heyon_site.web import page_cache
from heyon_site.web.hant import to_hant

# What ?lang= (and the cookie) accepts -> Babel locale. "zh" and "en" are older than zh-Hant and
# stay as they are: links and cookies out there carry them.
LOCALES = {"zh": "zh_Hans", "zh-Hant": "zh_Hant", "en": "en"}
# Babel locale -> what <html lang> and hreflang say, and the ?lang= value that asks for it.
TAGS = {"zh_Hans": "zh-Hans", "zh_Hant": "zh-Hant", "en": "en"}
LANG_VALUES = {locale: value for value, locale in LOCALES.items()}
# The header's switch: each language named in itself, in this order.
NAMES = {"zh": "简体", "zh-Hant": "繁體", "en": "English"}
COOKIE = "lang"
# The query parameters the language switch carries over: those pages read to show themselves (a
# search, a page number, a paper size, a chosen amount, a staff search). Nothing else: a card
# number or password put into an address is never echoed into a page, nor the sandbox gateway's
# signature (its 404 must read the same for every address). A parameter missing here is only left
# behind when the language changes.
SWITCH_KEEPS = frozenset(
    ("q", "page", "paper", "again", "amount", "custom_amount", "method", "next")
    + ("order_no", "last4", "date_from", "date_to", "status", "serial")
)
# Regions whose readers write Traditional Chinese when the tag names no script.
HANT_REGIONS = frozenset(("tw", "hk", "mo"))


def _locale_of(tag: str) -> str | None:
    """The Babel locale a language tag asks for, or None when we have none of it. An explicit
    script wins (zh-Hans-HK is Simplified); else Taiwan, Hong Kong and Macau read Traditional,
    and Cantonese (yue), written mostly in Hong Kong, does too."""
    primary, *rest = tag.lower().replace("_", "-").split("-")
    if primary == "en":
        return "en"
    if primary not in ("zh", "yue"):
        return None
    if "hant" in rest or "hans" in rest:
        return "zh_Hant" if "hant" in rest else "zh_Hans"
    return "zh_Hant" if primary == "yue" or HANT_REGIONS.intersection(rest) else "zh_Hans"


@lru_cache(maxsize=256)
def _from_accept_language(header: str) -> str | None:
    """Browsers send a handful of distinct headers, every request: each is parsed once."""
    for value, _quality in parse_accept_header(header, LanguageAccept):
        locale = _locale_of(value)
        if locale:
            return locale
    return None


# Flask-Babel takes a Locale as it is; given a name, it builds a new one (and looks for its data
# on disk) on every request.
_LOCALE_OBJECTS = {name: Locale.parse(name) for name in LOCALES.values()}


def select_locale() -> Locale:
    asked = request.args.get("lang", "")
    if asked in LOCALES:
        g.set_lang_cookie = asked
        return _LOCALE_OBJECTS[LOCALES[asked]]
    cookie = request.cookies.get(COOKIE, "")
    if cookie in LOCALES:
        return _LOCALE_OBJECTS[LOCALES[cookie]]
    header = request.headers.get("Accept-Language", "")[:200]
    return _LOCALE_OBJECTS[_from_accept_language(header) or "zh_Hans"]


def current_lang() -> str:
    """``zh``, ``zh-Hant`` or ``en``: the ``?lang=`` value of the page's language."""
    return LANG_VALUES.get(str(get_locale()), "zh")


def html_lang() -> str:
    return TAGS.get(str(get_locale()), "zh-Hans")


def other_languages() -> list[tuple[str, str, str]]:
    """The switch's links: (``?lang=`` value, language tag, name) of each language but the page's."""
    here = current_lang()
    return [(value, TAGS[LOCALES[value]], name) for value, name in NAMES.items() if value != here]


def lang_url(value: str) -> str:
    """This page's address with ``lang`` set to ``value``, as a relative ``?...`` link that keeps
    the page's own query parameters (``SWITCH_KEEPS``: the FAQ's ``?q=``...). A page rendered for
    the page cache is shown to everyone, so it keeps none: it reflects nothing from the request."""
    args = () if page_cache.rendering() else request.args.items(multi=True)
    kept = [(k, v) for k, v in args if k in SWITCH_KEEPS]
    return "?" + urlencode([*kept, ("lang", value)])


def zh_text(text: str) -> str:
    """Chinese that staff wrote (in Simplified) in the reader's script: converted for zh-Hant."""
    return to_hant(text) if text and str(get_locale()) == "zh_Hant" else text


def _remember_choice(response: Response) -> Response:
    choice = g.pop("set_lang_cookie", None)
    if choice:
        response.set_cookie(
            COOKIE, choice, max_age=365 * 86400, samesite="Lax", httponly=True, secure=request.is_secure
        )
    if request.endpoint != "static":  # static files are the same in every language
        response.vary.update(("Accept-Language", "Cookie"))
    return response


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale, default_timezone=app.config["HEYON_TIMEZONE"])
    app.after_request(_remember_choice)
    app.jinja_env.globals.update(
        current_lang=current_lang,
        html_lang=html_lang,
        other_languages=other_languages,
        lang_url=lang_url,
        zh_text=zh_text,
    )
