"""Provider callbacks: machine-facing, CSRF-exempt, trusted only after the signature verifies."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .. import alarms
from ..billing.recharge import apply_event, record_callback, set_callback_outcome
from ..database import in_write_transaction
from ..providers import get as get_provider
from ..providers.base import Acknowledgement, InvalidSignature, MalformedCallback, NothingToDo, ProviderEvent

bp = Blueprint("payments", __name__, url_prefix="/pay")

# Outcomes after which the provider must stop sending: the event is on record either way.
SETTLED = frozenset({"credited", "duplicate", "amount_mismatch", "paid_again", "review", "failed", "ignored", "refunded"})


def _answer(ack: Acknowledgement) -> Response:
    return Response(ack.body, status=ack.status, content_type=ack.content_type)


@bp.post("/notify/<name>")
def notify(name: str) -> Response:
    provider = get_provider(name)
    if provider is None:
        return Response("fail", status=404, content_type="text/plain")
    body = request.get_data(cache=False)
    callback_id = in_write_transaction(
        lambda: record_callback(name, body, request.content_type, request.remote_addr).id)
    try:
        event = provider.parse_callback(body, request.headers)
    except NothingToDo as exc:
        detail = str(exc)
        in_write_transaction(lambda: set_callback_outcome(callback_id, "ignored", detail))
        return _answer(provider.acknowledge())
    except (InvalidSignature, MalformedCallback) as exc:
        outcome = "bad_signature" if isinstance(exc, InvalidSignature) else "malformed"
        detail = str(exc)
        in_write_transaction(lambda: set_callback_outcome(callback_id, outcome, detail))
        current_app.logger.warning("%s callback %s refused: %s", name, callback_id, outcome)
        return _answer(provider.reject())

    def settle(e: ProviderEvent = event) -> str:
        result = apply_event(e)
        set_callback_outcome(callback_id, result, order_no=e.order_no)
        return result

    outcome = in_write_transaction(settle)
    current_app.logger.info("%s callback %s for order %s: %s", name, callback_id, event.order_no, outcome)
    if outcome == "refunded":
        alarms.money_returned(name, event.order_no)
    if outcome in SETTLED:
        return _answer(provider.acknowledge())
    return Response("fail", status=404, content_type="text/plain")
