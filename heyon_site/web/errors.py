"""Error pages in the visitor's language, with a 4xx status; machine endpoints get plain text."""

from __future__ import annotations

import json

from flask import Flask, Response, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from heyon_site.extensions import db
from heyon_site.web.fragments import render

MESSAGES = {
    400: (_l("Something in the request was not right"), _l("Please go back, reload the page and try again.")),
    403: (_l("Not allowed"), _l("You do not have access to this page.")),
    404: (_l("Page not found"), _l("Check the address, or start again from the home page.")),
    405: (_l("Not allowed"), _l("This page cannot be used that way. Start again from the home page.")),
    413: (_l("Too much data"), _l("What you sent is too large. Please check it and try again.")),
    415: (_l("Not a form"), _l("This page only accepts its own form. Please go back and use it.")),
    429: (_l("Too many attempts"), _l("Please wait a few minutes before trying again.")),
    500: (
        _l("Something went wrong on our side"),
        _l("Please try again in a few minutes. If it keeps happening, contact support."),
    ),
    503: (
        _l("Briefly unavailable"),
        _l("We cannot reach our records right now. Nothing was charged or changed; please try again in a minute."),
    ),
}


def _page(code: int, title: object, detail: object) -> Response:
    if request.blueprint == "payments" or request.path.startswith("/pay/notify/"):
        return Response("fail", status=code, content_type="text/plain")
    if request.path.startswith("/api/"):  # machines: JSON, even for a route that does not exist
        body = json.dumps({"error": str(title), "status": code})
        return Response(body, status=code, content_type="application/json", headers={"Cache-Control": "no-store"})
    response = render("errors/error.html", "content", status=code, code=code, title=title, detail=detail)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_e: CSRFError) -> Response:
        return _page(
            400, _l("This page has expired"), _l("For your safety, forms expire. Reload the page and submit it again.")
        )

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        code = e.code or 500
        title, detail = MESSAGES.get(code, MESSAGES[400] if code < 500 else MESSAGES[500])
        response = _page(code, title, detail)
        for name, value in e.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(e: OperationalError) -> Response:
        """The database is down, restarting or locked too long. The transaction was rolled back,
        so nothing changed: say so with a 503 the visitor (or provider) will retry."""
        app.logger.error(
            "database unavailable: %s", type(e.orig).__name__ if e.orig is not None else "OperationalError"
        )
        db.session.rollback()
        response = _page(503, *MESSAGES[503])
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def server_error(e: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _page(500, *MESSAGES[500])
