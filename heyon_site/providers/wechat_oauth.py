"""WeChat web sign-in (网页授权, ``snsapi_base``): who is paying inside WeChat's browser.

A JSAPI payment needs the payer's ``openid`` for the official account. The browser is sent to
``{OPEN_BASE}/connect/oauth2/authorize`` (silent with ``snsapi_base``: no consent screen), WeChat
sends it back to our callback with a one-time ``code``, and the site, not the browser, trades the
code for the openid at ``{OAUTH_BASE}/sns/oauth2/access_token`` with the account's secret. An
openid is therefore only ever one that WeChat told us.

The answers of this API are plain HTTPS JSON (WeChat signs only its payment API's answers): an
error is ``{"errcode": 40029, "errmsg": "invalid code"}``. The secret is in the query string of
that request, as WeChat specifies, so no URL of it is ever logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests

from heyon_site.config import MissingSetting, setting
from heyon_site.providers.base import ProviderUnavailable

DEFAULT_OPEN_BASE = "https://open.weixin.qq.com"
DEFAULT_OAUTH_BASE = "https://api.weixin.qq.com"
TIMEOUT = (5, 10)  # seconds to connect, to read
_APPID = re.compile(r"wx[0-9a-f]{16}", re.IGNORECASE)
# WeChat's openids are 28 characters of base64url today; room is left for a longer form.
_OPENID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")


class CodeRefused(Exception):
    """WeChat did not give an openid for this code (used, expired, or not for this account)."""


def _base(config: Mapping[str, Any], name: str, default: str) -> str:
    base = (setting(config, name, required=False).strip() or default).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise MissingSetting(f"{name} is not an http(s) URL")
    return base


class WechatOAuth:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.appid = setting(config, "HEYON_WECHAT_MP_APPID").strip()
        if not _APPID.fullmatch(self.appid):
            raise MissingSetting("HEYON_WECHAT_MP_APPID is not an appid (wx and 16 hex digits)")
        self._secret = setting(config, "HEYON_WECHAT_MP_SECRET").strip()
        self._open_base = _base(config, "HEYON_WECHAT_OPEN_BASE", DEFAULT_OPEN_BASE)
        self._oauth_base = _base(config, "HEYON_WECHAT_OAUTH_BASE", DEFAULT_OAUTH_BASE)

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where to send the browser. WeChat reads the parameters in this order and wants the
        ``#wechat_redirect`` fragment (without it some WeChat versions show an error page)."""
        query = urlencode(
            {
                "appid": self.appid,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "snsapi_base",
                "state": state,
            }
        )
        return f"{self._open_base}/connect/oauth2/authorize?{query}#wechat_redirect"

    def openid_for(self, code: str) -> str:
        """The openid WeChat gives for ``code``. Raises CodeRefused, or ProviderUnavailable when
        WeChat could not be asked."""
        if not _CODE.fullmatch(code):
            raise CodeRefused("code is not of WeChat's form")
        params = {"appid": self.appid, "secret": self._secret, "code": code, "grant_type": "authorization_code"}
        try:
            answer = requests.get(
                f"{self._oauth_base}/sns/oauth2/access_token", params=params, timeout=TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            # The exception's text holds the URL, and the URL the secret: only its kind is said.
            raise ProviderUnavailable(f"oauth2/access_token: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise ProviderUnavailable(f"oauth2/access_token: HTTP {answer.status_code}")
        try:
            found = answer.json()
        except ValueError:
            raise ProviderUnavailable("oauth2/access_token: not JSON") from None
        if not isinstance(found, dict):
            raise ProviderUnavailable("oauth2/access_token: not a JSON object")
        if found.get("errcode"):
            raise CodeRefused(f"errcode {str(found.get('errcode'))[:10]}")
        openid = found.get("openid")
        if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
            raise CodeRefused("no openid in the answer")
        return openid
