"""Back from WeChat's sign-in: the openid for the order's JSAPI payment, and on to the pay sheet.

Whatever goes wrong here (a state that is forged, old or used, no ``code``, a code WeChat
refuses) ends on a page that says so with the order still payable, by this method again or by
another one: nothing has been asked of WeChat Pay yet.
"""

from __future__ import annotations

from flask import Response, abort, current_app, request
from flask_babel import lazy_gettext as _l

from heyon_site.billing.recharge import find_order
from heyon_site.customer import own_orders
from heyon_site.customer.blueprint import bp, no_store
from heyon_site.customer.orders import order_page
from heyon_site.customer.recharge import METHOD_UNAVAILABLE, to_checkout
from heyon_site.customer.wechat_sign_in import check_state, remember_openid
from heyon_site.extensions import db, limiter
from heyon_site.providers import wechat_oauth
from heyon_site.providers.base import ProviderUnavailable
from heyon_site.providers.wechat_oauth import CodeRefused
from heyon_site.web.fragments import render
from heyon_site.web.limits import ip_limit

SIGN_IN_FAILED = _l(
    "WeChat did not confirm who is paying, so WeChat Pay could not start. Try again, or pay another way below."
)
STATE_SPENT = _l("This WeChat sign-in was used already or is too old. Try again, or pay another way below.")


@bp.get("/wechat/signed-in")
@limiter.limit(ip_limit)
def wechat_signed_in() -> Response:
    oauth = wechat_oauth() or abort(404)
    checked = check_state(request.args.get("state", "")[:200])
    order = find_order(db.session, checked.order_no) if checked.order_no else None
    if order is None:
        return _not_ours()
    if not checked.good:
        current_app.logger.info("wechat sign-in for order %s refused: state used, old or begun", order.order_no)
        return order_page(order, status=400, problem=STATE_SPENT)
    code = request.args.get("code", "")
    if not code:  # the customer turned the sign-in down, or WeChat sent no code
        return order_page(order, status=400, problem=SIGN_IN_FAILED)
    try:
        openid = oauth.openid_for(code[:200])
    except CodeRefused as exc:
        current_app.logger.info("wechat sign-in for order %s refused: %s", order.order_no, exc)
        return order_page(order, status=400, problem=SIGN_IN_FAILED)
    except ProviderUnavailable as exc:
        current_app.logger.warning("wechat sign-in for order %s: %s", order.order_no, exc)
        return order_page(order, status=503, problem=METHOD_UNAVAILABLE)
    try:
        response = to_checkout(order, openid=openid)
    except ProviderUnavailable:
        db.session.expire_all()
        return order_page(find_order(db.session, order.order_no) or order, status=503, problem=METHOD_UNAVAILABLE)
    return remember_openid(response, oauth.appid, openid)


def _not_ours() -> Response:
    """A state we did not make, or for an order of another browser: nothing about any order is
    said; this browser's own newest order, if still waiting, is a link away."""
    mine = [find_order(db.session, n) for n in own_orders.made_orders()[-5:][::-1]]
    waiting = next((o for o in mine if o is not None and o.status == "pending"), None)
    return no_store(render("customer/wechat_refused.html", status=400, waiting=waiting))
