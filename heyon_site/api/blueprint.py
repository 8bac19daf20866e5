"""The API blueprint (``/api/v1``): machine-facing, JSON in and out, every request signed.

No CSRF (``create_app`` exempts the blueprint) and no cookie: the signature checked before any
view runs (``auth.py``) is the only credential. Nor a per-address limit: the network's charging
system sends its batches from a few addresses as fast as it needs to, and a customer form's limit
of 30 posts a minute would refuse most of them; a request without a valid signature costs one
HMAC and writes nothing. Every answer, errors included, is JSON and ``no-store``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import cast

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from heyon_site.api.auth import CLIENT_HEADER, REASONS, Unauthenticated, authenticate, load_clients
from heyon_site.extensions import db, limiter

bp = Blueprint("api", __name__, url_prefix="/api/v1")
limiter.exempt(bp)

CLIENTS = "heyon.usage_clients"  # app.extensions: the clients' keys, read once at start-up
# 1,000 charges with long descriptions written as \u escapes; the site's own forms keep 64 KB.
MAX_BODY = 2 * 1024 * 1024
ERRORS = {400: "malformed", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class ApiError(Exception):
    """An answer other than 200: its status, a short code (``error``) and a sentence (``detail``)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def answer(status: int, error: str, detail: str) -> Response:
    response = jsonify(error=error, detail=detail)
    response.status_code = status
    return response


@bp.record_once
def _load_clients(state: BlueprintSetupState) -> None:
    # When the blueprint is registered, in create_app: a malformed setting stops the start here.
    state.app.extensions[CLIENTS] = load_clients(state.app.config)


@bp.before_request
def _authenticate() -> None:
    request.max_content_length = MAX_BODY  # before the body is first read
    body = request.get_data()  # kept: the view reads the same bytes
    clients = cast(dict[str, bytes], current_app.extensions[CLIENTS])
    try:
        # Werkzeug's headers answer get() as a Mapping does, all authenticate asks of them.
        g.api_client = authenticate(clients, cast(Mapping[str, str], request.headers), body, time.time())
    except Unauthenticated as exc:
        # The client named, if any, so an operator can tell a skewed clock from a wrong key.
        current_app.logger.warning(
            "api request refused: %s, client %r", exc.reason, request.headers.get(CLIENT_HEADER, "")[:40]
        )
        raise ApiError(401, "unauthorized", REASONS[exc.reason]) from None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(ApiError)
def _api_error(e: ApiError) -> Response:
    response = answer(e.status, e.error, e.detail)
    if e.status == 401:
        response.headers["WWW-Authenticate"] = 'HMAC-SHA256 realm="heyon-api"'
    return response


@bp.errorhandler(HTTPException)
def _http_error(e: HTTPException) -> Response:
    code = e.code or 500
    response = answer(code, ERRORS.get(code, "error"), e.description or "")
    for name, value in e.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@bp.errorhandler(OperationalError)
def _database_unavailable(e: OperationalError) -> Response:
    """The database is down or locked too long. Chunks committed before stay applied (the
    network's next sending of the batch answers them "duplicate"); the rest was rolled back."""
    current_app.logger.error("api: database unavailable: %s", type(e.orig).__name__ if e.orig is not None else "?")
    db.session.rollback()
    response = answer(503, "unavailable", "the database is unavailable; send the batch again later")
    response.headers["Retry-After"] = "30"
    return response


@bp.errorhandler(Exception)
def _server_error(e: Exception) -> Response:
    current_app.logger.exception("api: unhandled error")
    db.session.rollback()
    return answer(500, "error", "the site failed; send the batch again later")
