"""The customer FAQ: published entries in the page's language, searchable with or without JS."""

from __future__ import annotations

from flask import Response, request
from flask_babel import get_locale

from heyon_site.customer.blueprint import bp
from heyon_site.faq import services as faq_entries
from heyon_site.web.fragments import render


@bp.get("/faq")
def faq() -> Response:
    # One URL for the page, the plain search form (?q=) and htmx's active search (the results block).
    query = faq_entries.clean_query(request.args.get("q", ""))
    return render("customer/faq.html", "faq_results", q=query, sections=faq_entries.sections(str(get_locale()), query))
