"""The words of each message, per language (the site's catalogues: zh_Hans, zh_Hant, en).

Alibaba Cloud sends only registered templates: there the template's code is configured
(HEYON_SMS_TEMPLATE_<NAME>) and the parameters go with it; these words are what the registered
template should say, and what every other channel sends as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask_babel import force_locale, gettext

from heyon_site.billing.invoices import INVOICE_ISSUED
from heyon_site.billing.notices import LOW_BALANCE, RECHARGE_CREDITED


def render(template: str, locale: str, params: Mapping[str, str]) -> tuple[str, str]:
    """(subject, text) of ``template`` in ``locale``. Raises KeyError for an unknown template."""
    with force_locale(locale or "zh_Hans"):  # Babel's own form (zh_Hans), as the order keeps it
        if template == RECHARGE_CREDITED:
            return (
                gettext("Heyon card: recharge credited"),
                gettext(
                    "Heyon card **** %(last4)s: ¥%(amount)s has been credited (order %(order_no)s). "
                    "Balance now ¥%(balance)s.",
                    **params,
                ),
            )
        if template == LOW_BALANCE:
            return (
                gettext("Heyon card: balance low"),
                gettext(
                    "Heyon card **** %(last4)s: the balance is ¥%(balance)s. Recharge soon to keep your service.",
                    **params,
                ),
            )
        if template == INVOICE_ISSUED:  # e-mail only: the link is the order page, where the PDF is
            return (
                gettext("Heyon card: your invoice is ready"),
                gettext(
                    "The invoice of your Heyon card recharge (order %(order_no)s) has been issued. "
                    "Download it from the order page: %(link)s",
                    **params,
                ),
            )
    raise KeyError(template)
