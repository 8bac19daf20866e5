"""The staff blueprint under /staff: private answers, the local-time filter, the signed-in member in every template."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, current_app, request

from heyon_site import sitetime
from heyon_site.billing.money import yuan_grouped
from heyon_site.extensions import limiter
from heyon_site.ops.logs import mask_contact, mask_personal
from heyon_site.staff import words
from heyon_site.staff.auth import current_staff
from heyon_site.staff.forms import LogoutForm
from heyon_site.web import page_cache
from heyon_site.web.limits import ip_limit

bp = Blueprint("staff", __name__, url_prefix="/staff")
# Every staff form is limited per IP like the customer forms (sign-in has its own, stricter ones).
limiter.limit(ip_limit, methods=["POST"])(bp)
bp.add_app_template_filter(yuan_grouped, "yuan_grouped")


@bp.after_request
def _private(response: Response) -> Response:
    """Nothing a staff page shows may be cached or indexed."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    if request.method == "POST" and response.status_code < 400:
        # A promotion or FAQ change shows at once in this process, in the others within
        # HEYON_PAGE_CACHE_SECONDS (web/page_cache.py).
        page_cache.forget()
    return response


@bp.app_template_filter("contact")
def contact(value: str | None) -> str:
    """A phone number or e-mail address on a staff page: masked, always (personal data)."""
    return mask_contact(value) if value else ""


@bp.app_template_filter("masked")
def masked(text: str | None) -> str:
    """Free text from outside (a provider's error) with any card number, phone number or e-mail
    address in it masked, as the logs show it."""
    return mask_personal(text) if text else ""


@bp.app_template_filter("datetime_local")
def datetime_local(moment: datetime | None) -> str:
    """A stored UTC time as the site's local time."""
    return sitetime.shown(moment, sitetime.zone(current_app.config))


# The navigation's sections, each named by the endpoint its link goes to, and the screens that
# belong to it (endpoint prefixes, first match wins): the link of the page's section is marked.
SECTIONS = (
    ("staff.dashboard", ("staff.dashboard",)),
    ("staff.orders", ("staff.order", "staff.print_receipt", "staff.reprint", "staff.propose_", "staff.decide_")),
    ("staff.settlement_list", ("staff.settlement",)),
    ("staff.exports", ("staff.export",)),
    ("staff.outbox", ("staff.outbox",)),
    ("staff.invoices_queue", ("staff.invoice",)),
    ("staff.voucher_list", ("staff.voucher",)),
    ("staff.faq_list", ("staff.faq_",)),
    ("staff.promo_list", ("staff.promo_",)),
    ("staff.audit_log", ("staff.audit",)),
    ("staff.account", ("staff.account_password", "staff.totp_")),
    ("staff.accounts", ("staff.accounts", "staff.account_")),
    ("staff.account", ("staff.account",)),
)


def current_section() -> str | None:
    endpoint = request.endpoint or ""
    return next((link for link, owned in SECTIONS if endpoint.startswith(owned)), None)


@bp.context_processor
def _staff_context() -> dict[str, object]:
    # formdata=None: the form must not read the request. This also runs for error pages, where the
    # body may be too large (413) or not a form at all, and reading it would fail again.
    # ``words``: the codes the database keeps (statuses, kinds, roles, outcomes) as the reader's words.
    return {
        "staff": current_staff(),
        "logout_form": LogoutForm(formdata=None),
        "words": words,
        "section": current_section(),
    }
