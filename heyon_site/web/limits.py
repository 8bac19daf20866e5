"""Per-address limits (Flask-Limiter), in one place.

``ip_limit``: every limited form, each on its own (HEYON_IP_LIMIT).
``checks_secret``: the decorator of every view that checks a secret (a card password, a staff
password, a second-factor code, now or later). Besides its own ``ip_limit``, each such view draws
on ONE failure budget per address, shared by all of them (HEYON_IP_FAILURE_LIMIT): twenty wrong
card passwords on /balance leave none for /recharge, the staff sign-in or the code step.
tests/web/test_limits.py finds every view that calls a secret check and fails if one lacks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Response, current_app, g

from heyon_site.extensions import limiter

F = TypeVar("F", bound=Callable[..., Any])
SECRET_FAILURES = "secret-failures"  # the shared budget's scope: one count per address


def ip_limit() -> str:
    limit: str = current_app.config["HEYON_IP_LIMIT"]
    return limit


def ip_failure_limit() -> str:
    limit: str = current_app.config["HEYON_IP_FAILURE_LIMIT"]
    return limit


def secret_failed() -> None:
    """Count this request against the address's failure budget whatever its status (a view
    that answers a wrong secret with 422, not 403)."""
    g.heyon_secret_failed = True


def secret_unchecked() -> None:
    """This request's refusal checked no secret (the site-wide check budget was spent): it does
    not count against the address's failure budget."""
    g.heyon_secret_unchecked = True


def _failed(response: Response) -> bool:
    # 403: the secret was wrong; 429: refused by a throttle (or by this budget itself).
    if g.get("heyon_secret_unchecked"):
        return False
    return response.status_code in (403, 429) or bool(g.get("heyon_secret_failed"))


_failure_budget = limiter.shared_limit(ip_failure_limit, scope=SECRET_FAILURES, deduct_when=_failed)


def checks_secret(view: F) -> F:
    """For every view that checks a secret: its own per-address limit, and the one failure
    budget per address all such views share."""
    # Flask-Limiter's decorators are typed to return a bare callable; they return the view wrapped.
    return cast(F, limiter.limit(ip_limit)(_failure_budget(view)))
