"""What every page shares: template helpers, cache-busted static URLs, security headers, health."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, request, url_for
from flask_babel import get_locale
from markupsafe import Markup
from sqlalchemy import text
from werkzeug.routing import IntegerConverter, Map
from werkzeug.security import safe_join

from heyon_site.billing.money import yuan, yuan_grouped
from heyon_site.extensions import db

health = Blueprint("health", __name__)

CSP_TEMPLATE = (
    "default-src 'self'; script-src 'self' {script}; style-src 'self' {inline}; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
YEAR = 365 * 24 * 3600
# Every page carries the site's stylesheet in a <style> element rather than a <link>: 1.6 KB
# gzip, it costs less than the round trip a render-blocking stylesheet adds before the first
# paint on a 3G phone (150 to 400 ms), and the first visit is most visits here. The CSP allows
# exactly that text by its hash; any other inline style is still refused.
INLINE_CSS = "css/site.css"
# The htmx loader comes inline too, for the same reason (issue 13: as a file it was a request
# before the first paint); the CSP allows exactly its text, and no other inline script.
INLINE_JS = "js/load.js"


@health.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    """Liveness: the process answers. Touches nothing else, so a slow database never restarts it."""
    return "ok", 200, {"Content-Type": "text/plain", "Cache-Control": "no-store"}


@health.get("/readyz")
def readyz() -> tuple[str, int, dict[str, str]]:
    """Readiness: the database answers."""
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception:  # any failure means "not ready"; the reason goes to the log
        current_app.logger.exception("readiness check failed")
        return "database unavailable", 503, {"Content-Type": "text/plain", "Cache-Control": "no-store"}
    return "ok", 200, {"Content-Type": "text/plain", "Cache-Control": "no-store"}


@lru_cache(maxsize=64)
def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]


def static_url(filename: str) -> str:
    """A URL that changes whenever the file does, so it can be cached for a year."""
    folder = current_app.static_folder or ""
    return url_for("static", filename=filename, v=_digest(str(Path(folder) / filename)))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=4)
def _inline(static_folder: str) -> tuple[Markup, Markup, str]:
    """The stylesheet's and the htmx loader's text, and the whole CSP, which allows exactly those
    two texts by their hashes."""
    css = (Path(static_folder) / INLINE_CSS).read_text(encoding="utf-8")
    js = (Path(static_folder) / INLINE_JS).read_text(encoding="utf-8")
    policy = CSP_TEMPLATE.format(inline=_csp_hash(css), script=_csp_hash(js))
    return Markup(css), Markup(js), policy  # noqa: S704 (our own files)


def inline_css() -> Markup:
    return _inline(current_app.static_folder or "")[0]


def inline_loader() -> Markup:
    return _inline(current_app.static_folder or "")[1]


def csp() -> str:
    return _inline(current_app.static_folder or "")[2]


def _headers(response: Response) -> Response:
    h = response.headers
    h.setdefault("Content-Security-Policy", csp())
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    # Keeps the same-origin Referer that Flask-WTF checks on HTTPS, sends only the origin elsewhere.
    h.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if current_app.config.get("HEYON_HTTPS"):
        # On every answer, not only on secure requests: browsers ignore it over plain HTTP, and a
        # proxy hop miscounted must not silently drop it. No preload: that is a separate decision.
        h.setdefault("Strict-Transport-Security", f"max-age={YEAR}; includeSubDomains")
    return response


def _cache_static(response: Response) -> Response:
    """A static URL from ``static_url`` names one version of the file forever: the browser keeps
    it a year without asking again (``immutable``). Without that digest, or with an old one, the
    same path may hold other bytes tomorrow, so the browser revalidates it (ETag) each time."""
    if request.endpoint != "static" or response.status_code not in (200, 304):
        return response
    path = safe_join(current_app.static_folder or "", (request.view_args or {}).get("filename", ""))
    if path is not None and request.args.get("v") == _digest(path):
        response.cache_control.immutable = True
    else:
        response.cache_control.max_age = 0
        response.cache_control.no_cache = True
        response.headers.pop("Expires", None)
    return response


# Row ids are INTEGER columns: 32 bits on PostgreSQL (SQLite keeps 64).
MAX_ROW_ID = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """``<int:...>`` in our routes names a row. A larger number names none: it is not found
    (404) by the router, where the database would refuse to compare it (a 500 on both)."""

    def __init__(
        self,
        url_map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = MAX_ROW_ID,
        signed: bool = False,
    ) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# The only forms that take a file, each with the setting that bounds it: their body may be that
# much larger than MAX_CONTENT_LENGTH (the form's other fields fit in UPLOAD_OVERHEAD). A larger
# body is refused with 413 as soon as it is read; the view checks the file itself.
UPLOADS = {
    "staff.invoice_issue": "HEYON_INVOICE_MAX_BYTES",
    "staff.voucher_sheet": "HEYON_VOUCHER_SHEET_MAX_BYTES",
}
UPLOAD_OVERHEAD = 64 * 1024
# Werkzeug's multipart parser holds each chunk it reads (64 KiB) with what is left of the last
# one, file data included, under MAX_FORM_MEMORY_SIZE: at 64 KiB every file of more than one
# chunk would be refused. The upload's text fields may be this large instead.
UPLOAD_FORM_MEMORY = 256 * 1024


def _bound_uploads(endpoint: str | None, _values: object) -> None:
    """Before every before_request hook: CSRF protection reads the body first, under the bounds
    the request has then."""
    setting = UPLOADS.get(endpoint or "")
    if setting:
        request.max_content_length = int(current_app.config[setting]) + UPLOAD_OVERHEAD
        request.max_form_memory_size = UPLOAD_FORM_MEMORY


def _forms_only() -> None:
    """Every page form is a plain form: refuse other bodies (JSON, files) before any view runs.

    Provider callbacks and the API (/api/v1) are exempt: they are machine-facing, and each reads
    its own format (an adapter its provider's, the API JSON).
    """
    if request.blueprint in ("payments", "api"):
        return
    if request.method == "POST":
        if request.mimetype not in FORM_TYPES:
            abort(415)
        if request.files and request.endpoint not in UPLOADS:
            abort(400)
    # Staff forms store free text (FAQ, promotions, names), and PostgreSQL cannot keep a NUL in a
    # text column: refuse it here rather than as a database error deep in a view. Customer forms
    # store no free text and answer a NUL with their own field messages.
    if (
        request.method == "POST"
        and request.blueprint == "staff"
        and any("\x00" in value for values in request.form.listvalues() for value in values)
    ):
        abort(400)


def colon() -> str:
    """What follows a label: a full-width colon in Chinese (客服：), a colon and a space in English."""
    return "：" if get_locale().language == "zh" else ": "


def init_app(app: Flask) -> None:
    # Before any blueprint is registered: a rule takes its converter when it is added.
    app.url_map.converters["int"] = RowIdConverter
    app.register_blueprint(health)
    app.url_value_preprocessor(_bound_uploads)
    app.before_request(_forms_only)
    app.after_request(_headers)
    app.after_request(_cache_static)
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = YEAR  # static URLs carry their digest
    app.jinja_env.filters["yuan"] = yuan
    # What customers read: "¥1,780.50" in every language (issue 14), the way carriers print it.
    app.jinja_env.filters["money"] = lambda fen: "¥" + yuan_grouped(fen)
    app.jinja_env.filters["grouped"] = yuan_grouped  # for a message that says "¥%(amount)s" itself
    app.jinja_env.globals.update(
        colon=colon,
        static_url=static_url,
        inline_css=inline_css,
        inline_loader=inline_loader,
        sandbox_mode=lambda: "sandbox" in app.extensions.get("heyon.providers", {}),
        support=lambda: {
            "phone": app.config["HEYON_SUPPORT_PHONE"],
            "email": app.config["HEYON_SUPPORT_EMAIL"],
            "hours": app.config["HEYON_SUPPORT_HOURS"],
        },
    )
