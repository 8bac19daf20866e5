"""The one fragment convention: a view renders its page, or only a named block of the same
template when htmx asks for it. History restores and plain browsers get the whole page."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request
from jinja2_fragments.flask import render_block


def is_htmx() -> bool:
    """An htmx request that wants a fragment (a history restore wants the full page)."""
    hx: Any = getattr(request, "htmx", None)  # htmx_flask's request details, untyped
    return bool(hx) and not hx.history_restore_request


def render(template: str, block: str | None = None, status: int = 200, **context: Any) -> Response:
    body = render_block(template, block, **context) if block and is_htmx() else render_template(template, **context)
    response = make_response(body, status)
    # Caches and the back button must never hand a fragment to a full-page request.
    response.vary.add("HX-Request")
    return response


def redirect_to(url: str, status: int = 303) -> Response:
    """Navigate after a POST: a 303 for browsers, ``HX-Redirect`` for htmx (a 3xx would be
    followed by XHR and its target page swapped into the form)."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    response = make_response("", status)
    response.headers["Location"] = url
    return response
