"""Customer pages: home and recharge, orders and receipts, the balance, the FAQ.

One module per screen, each adding its routes to the blueprint (``blueprint.py``); importing the
package registers them all, so ``create_app`` only registers ``bp``.
"""

from heyon_site.customer import balance, faq, invoice, orders, receipt, recharge, wechat
from heyon_site.customer.blueprint import bp

SCREENS = (recharge, orders, invoice, wechat, receipt, balance, faq)
__all__ = ["bp"]
