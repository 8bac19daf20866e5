"""Alarms that look at the whole site rather than one card or one address.

Card-number spraying: many card numbers tried from many addresses, each staying under the
per-card throttle and the per-IP limits. Only the total of failed card logins across all cards
shows it, so every failure is counted in one window shared by every worker and machine (the
rate-limit storage: Redis in production), and above ``HEYON_CARD_SPRAY_LIMIT`` one alarm line
a minute goes to the log for whoever watches it.

Money returned at a provider: one line per recorded refund (a repeat of the notification is a
duplicate and raises none), naming the order and never the card.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)
_KEY = "heyon-card-failures"
_ONCE_A_MINUTE = "1 per minute"


def init_app(app: Flask) -> None:
    storage = storage_from_string(app.config["RATELIMIT_STORAGE_URI"])
    app.extensions["heyon.alarms"] = MovingWindowRateLimiter(storage)


def site_wide_hit(limit: str, name: str, *identifiers: str) -> bool:
    """Count one event in the window ``limit`` of the counter ``name``, shared by every worker and
    machine (the rate-limit storage); True while still within it. A storage failure raises."""
    counters: MovingWindowRateLimiter = current_app.extensions["heyon.alarms"]
    # The site's key prefix keeps its counters apart from other sites sharing one Redis.
    key = f"{current_app.config.get('RATELIMIT_KEY_PREFIX', '')}-{name}"
    return counters.hit(parse(limit), key, *identifiers)


def card_login_failed() -> bool:
    """Count one failed card login; True when this one crossed into spraying territory and
    the alarm was raised (at most once a minute)."""
    limit: str = current_app.config["HEYON_CARD_SPRAY_LIMIT"]
    try:
        if site_wide_hit(limit, _KEY) or not site_wide_hit(_ONCE_A_MINUTE, _KEY, "alarm"):
            return False
    except Exception:  # the alarm must never cost a customer their answer; the log says why
        log.exception("card-spray alarm: the counter storage failed")
        return False
    log.warning(
        "ALARM card-number spraying: more than %s failed card logins across all cards; "
        "see the per-IP refusals and login_throttles",
        parse(limit),
    )
    return True


_VOUCHER_KEY = "heyon-voucher-failures"


def voucher_refused() -> bool:
    """Count one voucher PIN that paid nothing, across the whole site; True when this one crossed
    ``HEYON_VOUCHER_GUESS_LIMIT`` and the alarm was raised (at most once a minute). Customers
    mistype a PIN now and then; many refusals in a window are someone trying PINs."""
    limit: str = current_app.config["HEYON_VOUCHER_GUESS_LIMIT"]
    try:
        if site_wide_hit(limit, _VOUCHER_KEY) or not site_wide_hit(_ONCE_A_MINUTE, _VOUCHER_KEY, "alarm"):
            return False
    except Exception:  # as above: never the customer's answer
        log.exception("voucher-guess alarm: the counter storage failed")
        return False
    log.warning(
        "ALARM voucher guessing: more than %s voucher PINs refused across the site; see the per-IP refusals",
        parse(limit),
    )
    return True


def money_returned(provider: str, order_no: str) -> None:
    """The provider reported money returned to the payer of an order (a refund, or a close after
    payment). The card was not debited: the order waits on the staff dashboard for a person."""
    log.warning(
        "ALARM money returned at %s for order %s: the card keeps its credit; a person decides (staff dashboard)",
        provider,
        order_no,
    )
