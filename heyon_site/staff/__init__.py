"""The staff back office under /staff: sign-in, the dashboard, orders, messages to customers, the
FAQ and promotion editors, accounts, the audit log.

One module per screen, each adding its routes to the blueprint (``blueprint.py``); importing the
package registers them all, so ``create_app`` only registers ``bp``.
"""

from heyon_site.staff import (
    account,
    accounts,
    audit,
    dashboard,
    exports,
    faq,
    invoices,
    orders,
    outbox,
    promotions,
    resolutions,
    settlement,
    signin,
    vouchers,
)
from heyon_site.staff.blueprint import bp

SCREENS = (
    signin,
    dashboard,
    orders,
    exports,
    resolutions,
    settlement,
    outbox,
    invoices,
    vouchers,
    faq,
    promotions,
    account,
    accounts,
    audit,
)
__all__ = ["bp"]
