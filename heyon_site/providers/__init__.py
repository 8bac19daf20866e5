"""The provider registry: names in ``HEYON_PROVIDERS`` become configured adapters.

A provider whose configuration is incomplete is not offered to customers, and the start-up
log says why, so a missing key never turns into a payment page that cannot be paid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app

from heyon_site.providers.alipay import AlipayProvider
from heyon_site.providers.base import Provider
from heyon_site.providers.sandbox import SandboxProvider
from heyon_site.providers.stripe_checkout import StripeCheckoutProvider
from heyon_site.providers.wechat import WechatPayProvider
from heyon_site.providers.wechat_oauth import WechatOAuth

log = logging.getLogger(__name__)

PROVIDERS: dict[str, Callable[[Mapping[str, Any]], Provider]] = {
    "sandbox": lambda config: SandboxProvider(config["HEYON_SANDBOX_SECRET"]),
    "alipay": AlipayProvider,
    "stripe": StripeCheckoutProvider.from_config,
    "wechat": WechatPayProvider,
}


def init_app(app: Flask) -> None:
    enabled: dict[str, Provider] = {}
    for name in app.config["HEYON_PROVIDERS"]:
        factory = PROVIDERS.get(name)
        if factory is None:
            log.warning("payment provider %r is not known; known: %s", name, ", ".join(sorted(PROVIDERS)))
            continue
        try:
            enabled[name] = factory(app.config)
        except (KeyError, ValueError) as exc:
            log.warning("payment provider %r is not offered: %s", name, exc)
    app.extensions["heyon.providers"] = enabled
    app.extensions["heyon.wechat_oauth"] = _wechat_oauth(app.config, enabled)


def _wechat_oauth(config: Mapping[str, Any], enabled: Mapping[str, Provider]) -> WechatOAuth | None:
    """WeChat Pay inside WeChat (JSAPI) needs the official account's sign-in; without it WeChat's
    browser is offered the Native QR code, with what to do about it."""
    # Given as a value or as a file (NAME_FILE): either asks for JSAPI; WechatOAuth says what is missing.
    asked = any(config.get(n) or config.get(n + "_FILE") for n in ("HEYON_WECHAT_MP_APPID", "HEYON_WECHAT_MP_SECRET"))
    if "wechat" not in enabled or not asked:
        return None
    try:
        return WechatOAuth(config)
    except (KeyError, ValueError) as exc:
        log.warning("WeChat Pay inside WeChat (JSAPI) is not offered: %s", exc)
        return None


def enabled() -> dict[str, Provider]:
    providers: dict[str, Provider] = current_app.extensions["heyon.providers"]
    return providers


def get(name: str) -> Provider | None:
    return enabled().get(name)


def wechat_oauth() -> WechatOAuth | None:
    """The official account's sign-in, when WeChat Pay can pay inside WeChat (JSAPI)."""
    oauth: WechatOAuth | None = current_app.extensions.get("heyon.wechat_oauth")
    return oauth
