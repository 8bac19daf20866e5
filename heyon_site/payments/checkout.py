"""Starting a payment: which device the payer is on, and the provider's checkout kept on the order."""

from __future__ import annotations

from sqlalchemy import update

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder
from heyon_site.providers.base import Checkout, Device, OrderRef, Provider

# Words in a User-Agent that mean a phone or tablet browser (including in-app browsers).
_MOBILE_HINTS = ("mobile", "android", "iphone", "ipad", "ipod", "harmonyos", "micromessenger", "alipayclient")


def device_of(user_agent: str) -> Device:
    """A phone gets the provider's mobile page; a computer gets a QR code for the phone. No
    User-Agent at all is taken for a phone, since most of our customers are on one."""
    ua = user_agent.lower()
    if not ua or any(hint in ua for hint in _MOBILE_HINTS):
        return "mobile"
    return "desktop"


def begin_payment(provider: Provider, ref: OrderRef, device: Device) -> Checkout:
    """Start paying with the provider and keep how on the order, so the order page can show the
    QR code again or offer to continue paying. Raises ProviderUnavailable."""
    checkout = provider.checkout(ref, device)

    def keep() -> None:
        db.session.execute(
            update(RechargeOrder)
            .where(RechargeOrder.order_no == ref.order_no)
            .values(pay_url=checkout.redirect_url, pay_qr=checkout.qr_payload, provider_ref=checkout.provider_ref)
        )

    in_write_transaction(keep)
    return checkout
