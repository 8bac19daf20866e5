"""The WeChat sign-in hop before a JSAPI payment: its single-use ``state``, and the openid kept
for this browser.

The ``state`` WeChat carries back is ours, letters and digits only (WeChat allows
``a-zA-Z0-9``, at most 128 bytes): the order number, the time it was made, a random part, and an
HMAC over all three with a key derived from SECRET_KEY. It is good only

- when its MAC verifies (a forged one is refused before any query),
- within ``STATE_MAX_AGE`` of being made,
- for the order it names, in the browser that made that order (this session's own orders),
- once: the order keeps the digest of the state it waits for and clears it as it comes back, in
  one conditional UPDATE, so a replay (or a second tab) finds nothing to clear.

The openid WeChat gives is kept in a signed cookie for ``OPENID_MAX_AGE`` so the next recharge in
this browser opens the pay sheet straight away; it is WeChat's pseudonymous id of the customer
for our official account, checked only by our signature, and only ever one WeChat told us.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from dataclasses import dataclass

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from heyon_site.billing.recharge import await_sign_in, end_sign_in, find_order
from heyon_site.customer import own_orders
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db

STATE_MAX_AGE = 600  # seconds: a sign-in takes a second or two; a state older is a replay
OPENID_COOKIE = "wx_openid"
OPENID_MAX_AGE = 30 * 24 * 3600
_ALPHANUMERIC = string.ascii_letters + string.digits
_STATE = re.compile(r"(\d{16})(\d{10})([A-Za-z0-9]{24})([0-9a-f]{32})")


def _key() -> bytes:
    return hmac.new(str(current_app.config["SECRET_KEY"]).encode(), b"heyon wechat oauth state", "sha256").digest()


def _mac(body: str) -> str:
    return hmac.new(_key(), body.encode(), hashlib.sha256).hexdigest()[:32]


def digest(state: str) -> str:
    """What the order keeps of the state it waits for."""
    return hashlib.sha256(state.encode()).hexdigest()


def new_state(order_id: int, order_no: str) -> str | None:
    """A state for this order, which from now on waits for it (and no earlier one); None when the
    order can no longer be begun."""
    body = f"{order_no}{int(time.time()):010d}{''.join(secrets.choice(_ALPHANUMERIC) for _ in range(24))}"
    state = body + _mac(body)
    return state if in_write_transaction(lambda: await_sign_in(db.session, order_id, digest(state))) else None


@dataclass(frozen=True)
class StateCheck:
    #: The order the state names, when its MAC verified (so the order page can be shown).
    order_no: str | None
    #: True only the first time, for this order, in this browser, within its time.
    good: bool


def check_state(state: str) -> StateCheck:
    """Spend the state WeChat brought back. The MAC, its age and this browser are checked before
    anything is read; then the order's own record, once."""
    found = _STATE.fullmatch(state)
    if found is None or not hmac.compare_digest(_mac(state[:-32]).encode(), found[4].encode()):
        return StateCheck(None, False)  # not made by us: it names nothing we can trust
    order_no = found[1]
    if not own_orders.made_here(order_no):
        return StateCheck(None, False)  # another browser's order: say nothing about it
    if not 0 <= time.time() - int(found[2]) <= STATE_MAX_AGE:
        return StateCheck(order_no, False)
    order = find_order(db.session, order_no)
    if order is None:
        return StateCheck(None, False)
    order_id = order.id
    return StateCheck(order_no, in_write_transaction(lambda: end_sign_in(db.session, order_id, digest(state))))


def _openid_serializer(appid: str) -> URLSafeTimedSerializer:
    # The official account's appid in the salt: an openid is only meaningful for its account.
    return URLSafeTimedSerializer(str(current_app.config["SECRET_KEY"]), salt=f"heyon wechat openid {appid}")


def remembered_openid(appid: str) -> str | None:
    raw = request.cookies.get(OPENID_COOKIE)
    if not raw:
        return None
    try:
        openid = _openid_serializer(appid).loads(raw, max_age=OPENID_MAX_AGE)
    except BadSignature:
        return None
    return openid if isinstance(openid, str) else None


def remember_openid(response: Response, appid: str, openid: str) -> Response:
    response.set_cookie(
        OPENID_COOKIE,
        _openid_serializer(appid).dumps(openid),
        max_age=OPENID_MAX_AGE,
        path="/",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        httponly=True,
        samesite="Lax",
    )
    return response
