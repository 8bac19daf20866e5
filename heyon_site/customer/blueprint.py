"""The customer blueprint, and what every customer page that shows money shares."""

from __future__ import annotations

from flask import Blueprint, Response

from heyon_site.web.limits import checks_secret, ip_limit  # noqa: F401 - ip_limit: the sandbox imports it from here

bp = Blueprint("customer", __name__)


def no_store(response: Response) -> Response:
    """Balances, orders and receipts stay out of every cache, shared or the browser's."""
    response.headers["Cache-Control"] = "no-store"
    return response
