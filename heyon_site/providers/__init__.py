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


def enabled() -> dict[str, Provider]:
    providers: dict[str, Provider] = current_app.extensions["heyon.providers"]
    return providers


def get(name: str) -> Provider | None:
    return enabled().get(name)
