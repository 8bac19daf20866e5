"""Language: zh-Hans by default, English on request (``?lang=en``, a cookie, Accept-Language)."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale
from flask import Flask, Response, g, request
from flask_babel import get_locale
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from heyon_site.extensions import babel

LOCALES = {"zh": "zh_Hans", "en": "en"}  # what ?lang= accepts -> Babel locale
COOKIE = "lang"


@lru_cache(maxsize=256)
def _from_accept_language(header: str) -> str | None:
    """Browsers send a handful of distinct headers, every request: each is parsed once."""
    for value, _quality in parse_accept_header(header, LanguageAccept):
        primary = value.lower().replace("_", "-").split("-")[0]
        if primary in LOCALES:
            return LOCALES[primary]
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
    """``zh`` or ``en``: what ``<html lang>`` and ``?lang=`` links use."""
    return "en" if str(get_locale()) == "en" else "zh"


def html_lang() -> str:
    return "en" if current_lang() == "en" else "zh-Hans"


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
    app.jinja_env.globals.update(current_lang=current_lang, html_lang=html_lang)
