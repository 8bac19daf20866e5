"""The orders this browser made, remembered in its signed session cookie.

The sandbox gateway sends only the browser that made an order on to the order's page (whose
address is the order's secret token); anyone else who holds the gateway's address is not told
the token.
"""

from __future__ import annotations

from flask import session

SESSION_KEY = "orders"
CARD_KEY = "card"
# The newest ones: a customer makes a few orders at a time, and the cookie stays small.
KEEP = 20


def remember(order_no: str) -> None:
    mine = [n for n in session.get(SESSION_KEY, []) if n != order_no]
    session[SESSION_KEY] = [*mine, order_no][-KEEP:]


def made_here(order_no: str) -> bool:
    return order_no in session.get(SESSION_KEY, [])


def remember_card(number: str) -> None:
    """The card number of this browser's last recharge, for "recharge again" on the order page
    (the site keeps only a keyed digest of card numbers, so it cannot fill it in otherwise). It
    stays in this browser's own cookie; the password is never kept."""
    session[CARD_KEY] = number


def last_card() -> str | None:
    number = session.get(CARD_KEY)
    return number if isinstance(number, str) else None


def made_orders() -> list[str]:
    """This browser's order numbers, oldest first."""
    mine = session.get(SESSION_KEY, [])
    return [n for n in mine if isinstance(n, str)] if isinstance(mine, list) else []
