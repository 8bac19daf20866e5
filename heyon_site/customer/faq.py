"""The customer FAQ: published entries in the page's language, searchable with or without JS."""
from __future__ import annotations

from flask import Response, request
from flask_babel import get_locale

from .. import faq as faq_entries
from ..htmx import render
from .views import bp


@bp.get("/faq")
def faq() -> Response:
    # One URL for the page, the plain search form (?q=) and htmx's active search (the results block).
    query = faq_entries.clean_query(request.args.get("q", ""))
    return render("customer/faq.html", "faq_results", q=query,
                  sections=faq_entries.sections(str(get_locale()), query))
