"""The balance page: a card's balance and latest recharges, after its number and password (a POST, never a URL)."""

from __future__ import annotations

from flask import Response, current_app, request

from heyon_site.cards.services import summary
from heyon_site.customer.auth import open_card, refuse
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.forms import BalanceForm
from heyon_site.web import page_cache
from heyon_site.web.fragments import render
from heyon_site.web.limits import checks_secret, ip_limit  # noqa: F401 - ip_limit: the sandbox imports it from here


@bp.get("/balance")
def balance() -> Response:
    # The empty form is the same for every visitor of a language but for the CSRF token.
    return no_store(
        page_cache.response(
            "customer/balance.html",
            lambda: render("customer/balance.html", form=BalanceForm(formdata=None)).get_data(as_text=True),
        )
    )


@bp.post("/balance")
@checks_secret
def balance_submit() -> Response:
    form = BalanceForm(formdata=request.form)
    if not form.validate():
        return no_store(render("customer/balance.html", "balance_lookup", 422, form=form))
    auth = open_card(form.card_no, form.password.data or "")
    if auth.card_id is None:
        return no_store(render("customer/balance.html", "balance_lookup", refuse(form, auth), form=form))
    # A fresh, empty form below the result: the password is never sent back to the page.
    return no_store(
        render(
            "customer/balance.html",
            "balance_lookup",
            form=BalanceForm(formdata=None),
            card=summary(auth.card_id),
            low_balance_fen=current_app.config["HEYON_LOW_BALANCE_FEN"],
        )
    )
