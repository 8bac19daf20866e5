"""The orders this browser made, remembered in its signed session cookie.

The sandbox gateway sends only the browser that made an order on to the order's page (whose
address is the order's secret token); anyone else who holds the gateway's address is not told
the token.
"""

from __future__ import annotations

from flask import session

SESSION_KEY = "orders"
# The newest ones: a customer makes a few orders at a time, and the cookie stays small.
KEEP = 20


def remember(order_no: str) -> None:
    mine = [n for n in session.get(SESSION_KEY, []) if n != order_no]
    session[SESSION_KEY] = [*mine, order_no][-KEEP:]


def made_here(order_no: str) -> bool:
    return order_no in session.get(SESSION_KEY, [])
