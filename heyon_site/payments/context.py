"""Where the customer is paying from, and what each payment method can do there.

Decided from the User-Agent on every request that picks a checkout (a link shared in a WeChat
chat opens in WeChat's own browser; the same link pasted in a phone's browser does not):

=================  ================================  ================================  ==========
where              WeChat Pay                        Alipay                            bank card
=================  ================================  ================================  ==========
WeChat's browser   JSAPI (WeChat's own pay sheet)    "open this page in the browser"   as anywhere
Alipay's app       "open in WeChat or a browser"     mobile page (trade.wap.pay)       as anywhere
phone browser      H5 page                           mobile page (trade.wap.pay)       as anywhere
computer           Native QR code                    page pay and its QR code          as anywhere
=================  ================================  ================================  ==========

WeChat refuses H5 payment inside its own browser and blocks links to Alipay; Alipay's app does not
open WeChat Pay. A method that cannot work where the customer is is still shown, with what to do
(``blocked_here``), never as a button that leads nowhere.
"""

from __future__ import annotations

from typing import Literal

from heyon_site.providers.base import Device

Context = Literal["wechat", "alipay", "mobile", "desktop"]
CONTEXTS: tuple[Context, ...] = ("wechat", "alipay", "mobile", "desktop")

# Words in a User-Agent that mean a phone or tablet browser (including in-app browsers).
_MOBILE_HINTS = ("mobile", "android", "iphone", "ipad", "ipod", "harmonyos", "micromessenger", "alipayclient")

#: Which methods cannot pay in which context, and so get a page saying where to open instead.
BLOCKED: dict[Context, frozenset[str]] = {
    "wechat": frozenset({"alipay"}),
    "alipay": frozenset({"wechat"}),
}


def context_of(user_agent: str) -> Context:
    """WeChat's in-app browser says ``MicroMessenger`` (also in WeChat for Windows and Mac, where
    JSAPI works too); Alipay's app ``AlipayClient``. No User-Agent at all is taken for a phone,
    since most of our customers are on one."""
    ua = user_agent.lower()
    if "micromessenger" in ua:
        return "wechat"
    if "alipayclient" in ua:
        return "alipay"
    if not ua or any(hint in ua for hint in _MOBILE_HINTS):
        return "mobile"
    return "desktop"


def device_for(context: Context) -> Device:
    """What a provider's checkout is told: a phone's page, or a QR code for a computer."""
    return "desktop" if context == "desktop" else "mobile"


def blocked_here(provider: str, context: Context) -> bool:
    return provider in BLOCKED.get(context, frozenset())
