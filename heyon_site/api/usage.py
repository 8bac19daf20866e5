"""``POST /api/v1/usage`` (a batch of charges) and ``GET /api/v1/cards/<number>/balance``."""

from __future__ import annotations

from functools import partial
from zoneinfo import ZoneInfo

from flask import Response, current_app, g, jsonify, request
from sqlalchemy import select

from heyon_site.api.batch import Incoming, Malformed, read_batch
from heyon_site.api.blueprint import ApiError, bp
from heyon_site.billing.money import yuan
from heyon_site.billing.usage import Charge, Result, apply_charge
from heyon_site.cards.numbers import CardNumberError, find_card, normalise_card_number, number_digest
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, utcnow
from heyon_site.sitetime import local_day, zone

# Charges per write transaction. A batch of 1,000 in one transaction would hold the write lock
# (all of SQLite, or a thousand cards' rows on PostgreSQL) for its whole length; in chunks,
# customers' recharges and other batches get in between.
CHUNK = 100
_LOOKUP = 500  # card digests per query: far inside either database's limit of bound values


@bp.post("/usage")
def post_usage() -> Response:
    try:
        incoming = read_batch(request.get_data())
    except Malformed as exc:
        raise ApiError(400, "malformed", str(exc)) from None
    results = apply_batch(g.api_client, incoming)
    return jsonify(results=[{"id": r.charge_id, "status": r.status, "reason": r.reason} for r in results])


@bp.get("/cards/<number>/balance")
def card_balance(number: str) -> Response:
    try:
        card = find_card(normalise_card_number(number))
    except CardNumberError:
        card = None
    if card is None:
        raise ApiError(404, "unknown_card", "no card has this number")
    return jsonify(balance=yuan(card.balance_fen))


def apply_batch(client: str, incoming: list[Incoming]) -> list[Result]:
    """Each charge applied once, in the order sent, CHUNK charges per write transaction.

    A chunk is committed before the next begins, so a failure mid-batch (the database gone, the
    process killed) leaves the chunks before it applied and the rest untouched; the error answer
    tells the network to send the batch again, and then the applied ones answer "duplicate"
    (each charge is unique per client and id) while the rest are applied. A chunk that meets a
    lock is retried whole (``in_write_transaction``): each charge in it is keyed, so that is safe.
    """
    cards = _card_ids({c.card_number for c in incoming if c.card_number is not None})
    tz = zone(current_app.config)
    results: list[Result] = []
    for start in range(0, len(incoming), CHUNK):
        chunk = [_charge(c, cards) for c in incoming[start : start + CHUNK]]
        results += in_write_transaction(partial(_apply, client, chunk, tz))
    return results


def _apply(client: str, chunk: list[Charge], tz: ZoneInfo) -> list[Result]:
    now = utcnow()
    today = local_day(now, tz)  # the site's day: at most one low-balance message a day
    return [apply_charge(db.session, client, charge, today, now) for charge in chunk]


def _charge(c: Incoming, cards: dict[str, int]) -> Charge:
    card_id = cards.get(c.card_number) if c.card_number is not None else None
    return Charge(c.charge_id, card_id, c.amount_fen, c.at, c.kind, c.description)


def _card_ids(numbers: set[str]) -> dict[str, int]:
    """The id of each card among ``numbers`` (by its keyed digest; numbers of no card are left out).
    Read before the writing starts, so the write transactions hold their lock only to write."""
    by_digest = {number_digest(n): n for n in numbers}
    digests = list(by_digest)
    found: dict[str, int] = {}
    for start in range(0, len(digests), _LOOKUP):
        rows = db.session.execute(
            select(Card.number_digest, Card.id).where(Card.number_digest.in_(digests[start : start + _LOOKUP]))
        )
        found.update({by_digest[digest]: card_id for digest, card_id in rows})
    return found
