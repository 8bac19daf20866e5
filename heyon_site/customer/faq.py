"""The customer FAQ: published entries in the page's language, searchable with or without JS."""

from __future__ import annotations

from flask import Response, request
from flask_babel import get_locale

from heyon_site.customer.blueprint import bp
from heyon_site.faq import services as faq_entries
from heyon_site.faq import traditional as faq_readers
from heyon_site.web import page_cache
from heyon_site.web.fragments import is_htmx, render


@bp.get("/faq")
def faq() -> Response:
    # One URL for the page, the plain search form (?q=) and htmx's active search (the results block).
    query = faq_entries.clean_query(request.args.get("q", ""))

    def page() -> Response:
        return render(
            "customer/faq.html", "faq_results", q=query, sections=faq_readers.sections(str(get_locale()), query)
        )

    if query or is_htmx():
        return page()
    # The whole FAQ, unsearched, is the same for every visitor of a language (web/page_cache.py).
    return page_cache.response("customer/faq.html", lambda: page().get_data(as_text=True))
