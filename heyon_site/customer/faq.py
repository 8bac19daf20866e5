"""The customer FAQ."""
from __future__ import annotations

from flask import Response

from ..htmx import render
from .views import bp


@bp.get("/faq")
def faq() -> Response:
    return render("customer/faq.html")
