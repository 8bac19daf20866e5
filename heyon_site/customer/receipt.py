"""A credited order's receipt: the customer's page, and the staff's reprint of it (marked so)."""

from __future__ import annotations

from flask import Response, abort, current_app, request, url_for

from heyon_site import sitetime
from heyon_site.billing import receipts
from heyon_site.billing.recharge import find_by_token
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.forms import PROVIDER_LABELS
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.web.fragments import render


@bp.get("/orders/<token>/receipt")
def receipt(token: str) -> Response:
    found = find_by_token(db.session, token) or abort(404)
    return receipt_response(found, request.args.get("paper", ""))


def paper_or_default(paper: str) -> str:
    """A paper the receipt knows, else the shop's (``HEYON_RECEIPT_PAPER``: 58, 80 or a4)."""
    return paper if paper in receipts.PAPERS else str(current_app.config["HEYON_RECEIPT_PAPER"])


def receipt_response(found: RechargeOrder, paper: str, reprint: bool = False) -> Response:
    """The receipt of a credited order; for any other, a page saying there is none (yet), 404.
    ``reprint``: a copy printed by staff, which says so."""
    if found.status != "credited":
        return no_store(render("receipts/none.html", status=404, order=found))
    return no_store(
        render(
            "receipts/receipt.html",
            receipt=receipts.build(found, sitetime.zone(current_app.config)),
            method=PROVIDER_LABELS.get(found.provider, found.provider),
            paper=paper_or_default(paper),
            papers=receipts.PAPERS,
            reprint=reprint,
            qr=receipts.qr_svg(url_for("customer.receipt", token=found.token, _external=True)),
        )
    )
