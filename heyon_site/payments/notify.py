"""Provider callbacks: machine-facing, CSRF-exempt, trusted only after the signature verifies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from flask import Blueprint, Response, current_app, request

from heyon_site.billing.events import ProviderEvent
from heyon_site.billing.recharge import apply_event
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db, limiter
from heyon_site.ops import alarms
from heyon_site.payments.callbacks import MAX_STORED_BODY, REFUSED_PREFIX, record_callback, set_callback_outcome
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import Acknowledgement, InvalidSignature, MalformedCallback, NothingToDo

bp = Blueprint("payments", __name__, url_prefix="/pay")

# Outcomes after which the provider must stop sending: the event is on record either way.
SETTLED = frozenset(
    {
        "credited",
        "duplicate",
        "amount_mismatch",
        "paid_again",
        "review",
        "failed",
        "ignored",
        "refunded",
        "refund_succeeded",
        "refund_failed",
    }
)


def _answer(ack: Acknowledgement) -> Response:
    return Response(ack.body, status=ack.status, content_type=ack.content_type)


def refusal_limit() -> str:
    return str(current_app.config["HEYON_CALLBACK_REFUSAL_LIMIT"])


def _keep(name: str, body: bytes, outcome: str = "received", detail: str = "", keep: int = MAX_STORED_BODY) -> int:
    """Record the callback in a write transaction of its own, committed; its id."""
    return in_write_transaction(
        lambda: record_callback(name, body, request.content_type, request.remote_addr, outcome, detail, keep=keep)
    )


# Counted per address across every provider's endpoint, and only when a callback is refused:
# past the limit Flask-Limiter answers 429 before this runs, so nothing is written. A verified
# callback never gets here, so a provider is never limited by what others sent from its address.
@limiter.shared_limit(refusal_limit, scope="refused-callbacks")
def _keep_refused(name: str, body: bytes, outcome: str, detail: str) -> int:
    """One small write: the body's first bytes, digest and size, with the final outcome."""
    return _keep(name, body, outcome, detail, keep=REFUSED_PREFIX)


@bp.post("/notify/<name>")
def notify(name: str) -> Response:
    provider = get_provider(name)
    if provider is None:
        return Response("fail", status=404, content_type="text/plain")
    body = request.get_data(cache=False)
    # Verifying costs no write: what is kept, and how much, depends on whether it verifies.
    try:
        # Werkzeug's Headers answers get() and items() as a Mapping does, all a provider asks of it.
        event = provider.parse_callback(body, cast(Mapping[str, str], request.headers))
    except NothingToDo as exc:
        _keep(name, body, "ignored", str(exc))  # genuine: kept as received
        return _answer(provider.acknowledge())
    except (InvalidSignature, MalformedCallback) as exc:
        outcome = "bad_signature" if isinstance(exc, InvalidSignature) else "malformed"
        callback_id = _keep_refused(name, body, outcome, str(exc))
        current_app.logger.warning("%s callback %s refused: %s", name, callback_id, outcome)
        return _answer(provider.reject())

    # Kept, and committed, before the event is applied: a crash from here on loses nothing, and a
    # callback that brings a worker down is still on record to be looked at.
    callback_id = _keep(name, body)

    def settle(e: ProviderEvent = event) -> str:
        result = apply_event(db.session, e)
        set_callback_outcome(callback_id, result, order_no=e.order_no)
        return result

    outcome = in_write_transaction(settle)
    current_app.logger.info("%s callback %s for order %s: %s", name, callback_id, event.order_no, outcome)
    if outcome == "refunded":
        alarms.money_returned(name, event.order_no)
    if outcome in SETTLED:
        return _answer(provider.acknowledge())
    return Response("fail", status=404, content_type="text/plain")
