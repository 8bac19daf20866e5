"""Language: zh-Hans by default, English on request (``?lang=en``, a cookie, Accept-Language)."""
from __future__ import annotations

from flask import Flask, Response, g, request
from flask_babel import get_locale

from .extensions import babel

LOCALES = {"zh": "zh_Hans", "en": "en"}  # what ?lang= accepts -> Babel locale
COOKIE = "lang"


def _from_accept_language() -> str | None:
    for value, _quality in request.accept_languages:
        primary = value.lower().replace("_", "-").split("-")[0]
        if primary in LOCALES:
            return LOCALES[primary]
    return None


def select_locale() -> str:
    asked = request.args.get("lang", "")
    if asked in LOCALES:
        g.set_lang_cookie = asked
        return LOCALES[asked]
    cookie = request.cookies.get(COOKIE, "")
    if cookie in LOCALES:
        return LOCALES[cookie]
    return _from_accept_language() or "zh_Hans"


def current_lang() -> str:
    """``zh`` or ``en``: what ``<html lang>`` and ``?lang=`` links use."""
    return "en" if str(get_locale()) == "en" else "zh"


def html_lang() -> str:
    return "en" if current_lang() == "en" else "zh-Hans"


def _remember_choice(response: Response) -> Response:
    choice = g.pop("set_lang_cookie", None)
    if choice:
        response.set_cookie(COOKIE, choice, max_age=365 * 86400, samesite="Lax", httponly=True,
                            secure=request.is_secure)
    if request.endpoint != "static":  # static files are the same in every language
        response.vary.update(("Accept-Language", "Cookie"))
    return response


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale, default_timezone=app.config["HEYON_TIMEZONE"])
    app.after_request(_remember_choice)
    app.jinja_env.globals.update(current_lang=current_lang, html_lang=html_lang)
