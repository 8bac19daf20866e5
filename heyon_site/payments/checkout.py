"""Starting a payment: which device the payer is on, and the provider's checkout kept on the order."""

from __future__ import annotations

import json

from sqlalchemy import update

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.payments.context import context_of, device_for
from heyon_site.providers.base import Checkout, Device, OrderRef, Provider


def device_of(user_agent: str) -> Device:
    """A phone gets the provider's mobile page; a computer gets a QR code for the phone."""
    return device_for(context_of(user_agent))


def begin_payment(provider: Provider, ref: OrderRef, device: Device) -> Checkout:
    """Start paying with the provider and keep how on the order, so the order page can show the
    QR code again or offer to continue paying. Raises ProviderUnavailable."""
    checkout = provider.checkout(ref, device)

    def keep() -> None:
        db.session.execute(
            update(RechargeOrder)
            .where(RechargeOrder.order_no == ref.order_no)
            .values(
                pay_url=checkout.redirect_url,
                pay_qr=checkout.qr_payload,
                provider_ref=checkout.provider_ref,
                pay_jsapi=json.dumps(checkout.jsapi, separators=(",", ":")) if checkout.jsapi else None,
            )
        )

    in_write_transaction(keep)
    return checkout
