"""What a receipt says, computed once for the page and every print layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import segno

from heyon_site import sitetime
from heyon_site.models import RechargeOrder

PAPERS = ("58", "80", "a4")


@dataclass(frozen=True)
class Receipt:
    order_no: str
    provider: str
    provider_txn_id: str
    card_masked: str
    amount_fen: int
    pay_fen: int
    bonus_fen: int
    credited_fen: int
    status: str
    created_local: str
    finalized_local: str
    timezone: str
    promo: dict[str, str] | None = None  # the promotion's titles (title_zh, title_en), as promised


def promo_titles(snapshot_json: str | None) -> dict[str, str] | None:
    """The titles of the promotion an order was made under, from its snapshot (billing.promos)."""
    if not snapshot_json:
        return None
    data = json.loads(snapshot_json)
    return {"title_zh": str(data.get("title_zh", "")), "title_en": str(data.get("title_en", ""))}


def build(order: RechargeOrder, tz: ZoneInfo) -> Receipt:
    return Receipt(
        order_no=order.order_no,
        provider=order.provider,
        provider_txn_id=order.provider_txn_id or "",
        card_masked="**** " + order.card.last4,
        amount_fen=order.amount_fen,
        pay_fen=order.pay_fen,
        bonus_fen=order.bonus_fen,
        credited_fen=order.credited_fen if order.status == "credited" else 0,
        status=order.status,
        created_local=sitetime.shown(order.created_at, tz),
        finalized_local=sitetime.shown(order.finalized_at, tz),
        timezone=tz.key,
        promo=promo_titles(order.promo_snapshot) if order.bonus_fen or order.pay_fen != order.amount_fen else None,
    )


def qr_svg(url: str) -> str:
    """An inline SVG QR code (no image request, no script), sized for 58 mm paper."""
    return segno.make(url, error="m").svg_inline(scale=3, border=2, omitsize=True, title="QR")
