"""WeChat Pay API v3 as tests see it: throw-away keys, signed notifications, and a fake API.

Three RSA 2048 key pairs, made once per test session: the merchant's (the site signs requests
with it), "WeChat Pay's" platform key (the fake signs answers and notifications with it), and
another one that belongs to nobody (for forgeries); and a random 32-character APIv3 key. The
signing rules are written here again from WeChat Pay's documentation rather than imported from
the adapter, so a mistake in one does not hide in both.
"""
from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from werkzeug.wrappers import Request, Response

from tests.fakes import FakeApi, Handler
from .rsa_keys import new_key, private_pem, public_pem, sign, verifies  # noqa: F401 (tests import them from here)

BEIJING = ZoneInfo("Asia/Shanghai")
APPID = "wx0000000000000001"
MCHID = "1900000001"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PLATFORM_SERIAL = "PUB_KEY_ID_0119000000012025010100000000000001"
OTHER_SERIAL = "PUB_KEY_ID_0119000000012025010100000000000002"
FOREIGN_APPID = "wx9999999999999999"
#: The official account bound to the merchant, whose users' openids JSAPI orders are paid by.
MP_APPID = "wx00000000000000a2"
MP_SECRET = "0123456789abcdef0123456789abcdef"
FOREIGN_MCHID = "1999999999"
SCHEME = "WECHATPAY2-SHA256-RSA2048"
ORDER_PATH = re.compile(r"/v3/pay/transactions/out-trade-no/([^/]+)(/close)?")


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey
    api_v3: str
    other_api_v3: str


@functools.cache
def keys() -> Keys:
    return Keys(new_key(), new_key(), new_key(), secrets.token_hex(16), secrets.token_hex(16))


def signed_headers(body: bytes, key: rsa.RSAPrivateKey | None = None, serial: str = PLATFORM_SERIAL,
                   timestamp: int | None = None) -> dict[str, str]:
    """WeChat Pay's answer and notification headers: RSA-SHA256 over ``ts\\nnonce\\nbody\\n``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    message = f"{ts}\n{nonce}\n".encode() + body + b"\n"
    return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": serial,
            "Wechatpay-Signature": sign(key or keys().platform, message),
            "Wechatpay-Signature-Type": SCHEME, "Request-ID": uuid.uuid4().hex}


def encrypt(plain: Mapping[str, Any], api_v3_key: str, original_type: str = "transaction") -> dict[str, str]:
    """A notification's ``resource``: AES-256-GCM, text nonce and associated data, base64
    ciphertext with the tag at its end."""
    nonce, associated = secrets.token_hex(6), original_type
    data = AESGCM(api_v3_key.encode()).encrypt(nonce.encode(), json.dumps(plain, ensure_ascii=False).encode(),
                                               associated.encode())
    return {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(data).decode(), "associated_data": associated, "nonce": nonce}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def new_transaction_id() -> str:
    """WeChat's form: 28 digits."""
    return "4200" + datetime.now(BEIJING).strftime("%Y%m%d") + f"{secrets.randbelow(10**16):016d}"


# ------------------------------------------------------------------ the fake API


@dataclass
class Trade:
    amount_fen: int
    state: str = "NOTPAY"
    transaction_id: str | None = None
    request: dict[str, Any] = field(default_factory=dict)


class _Routes(dict[tuple[str, str], Handler]):
    """Exact routes, and the two that carry an order number in their path."""

    def __init__(self, fake: WechatFakeApi) -> None:
        super().__init__({("POST", "/v3/pay/transactions/native"): functools.partial(_create, fake, "native"),
                          ("POST", "/v3/pay/transactions/h5"): functools.partial(_create, fake, "h5"),
                          ("POST", "/v3/pay/transactions/jsapi"): functools.partial(_create, fake, "jsapi")})
        self.fake = fake

    def get(self, key: tuple[str, str], default: Handler | None = None) -> Handler | None:  # type: ignore[override]
        method, path = key
        match = ORDER_PATH.fullmatch(path)
        if match and method == "GET" and not match[2]:
            return functools.partial(_query, self.fake, match[1])
        if match and method == "POST" and match[2]:
            return functools.partial(_close, self.fake, match[1])
        return super().get(key, default)


@dataclass(eq=False)
class WechatFakeApi(FakeApi):
    """WeChat Pay's API for Native and H5 orders, query and close. ``trades`` is WeChat's book,
    by out_trade_no; ``answer_with`` picks how answers are signed: "platform" (genuine), "other"
    (a key that is not WeChat's), "unsigned", "stale" (timestamp 6 minutes old), "unknown_serial",
    "tampered" (body changed after signing) or "garbled" (not JSON, signed). ``refused`` lists
    the requests whose Authorization did not verify; ``delay`` slows every answer (seconds);
    ``answer_appid`` is the appid its query answers carry."""

    trades: dict[str, Trade] = field(default_factory=dict)
    answer_with: str = "platform"
    refused: list[str] = field(default_factory=list)
    delay: float = 0.0
    answer_appid: str = APPID
    #: JSAPI orders made: prepay_id -> out_trade_no (what a pay sheet's package must name).
    prepay_ids: dict[str, str] = field(default_factory=dict)


def _answer(fake: WechatFakeApi, payload: Mapping[str, Any] | None, status: int = 200, signed: bool = True) -> Response:
    if fake.delay:
        time.sleep(fake.delay)
    body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if fake.answer_with == "garbled":
        body = b"<html>502 Bad Gateway</html>"
    if not signed or fake.answer_with == "unsigned":
        return Response(body, status=status, content_type="application/json")
    mode = fake.answer_with
    headers = signed_headers(body, keys().other if mode == "other" else keys().platform,
                             OTHER_SERIAL if mode == "unknown_serial" else PLATFORM_SERIAL,
                             int(time.time()) - 360 if mode == "stale" else None)
    if mode == "tampered":  # "not paid" turned into "paid", or at least one byte more
        changed = body.replace(b'"NOTPAY"', b'"SUCCESS"')
        body = changed if changed != body else body + b" "
    response = Response(body, status=status, headers=headers)
    if payload is not None:
        response.content_type = "application/json"
    return response


def _authorized(fake: WechatFakeApi, request: Request) -> bool:
    """Like WeChat: the merchant's signature over METHOD, path and query, time, nonce and body."""
    header = request.headers.get("Authorization", "")
    if not header.startswith(SCHEME + " "):
        return False
    params = dict(re.findall(r'(\w+)="([^"]*)"', header[len(SCHEME) + 1:]))
    target = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path.rstrip("?")
    message = (f"{request.method}\n{target}\n{params.get('timestamp', '')}\n{params.get('nonce_str', '')}\n"
               .encode() + request.get_data() + b"\n")
    fresh = params.get("timestamp", "").isdigit() and abs(time.time() - int(params["timestamp"])) <= 300
    ok = (params.get("mchid") == MCHID and params.get("serial_no") == MERCHANT_SERIAL and fresh
          and verifies(keys().merchant, message, params.get("signature", "")))
    if not ok:
        fake.refused.append(target)
    return ok


SIGN_ERROR = {"code": "SIGN_ERROR", "message": "签名错误"}
NOT_EXIST = {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}


def _create(fake: WechatFakeApi, kind: str, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    body = json.loads(request.get_data())
    # A JSAPI order is made under the official account the payer's openid belongs to.
    if body.get("appid") != (MP_APPID if kind == "jsapi" else APPID) or body.get("mchid") != MCHID:
        return _answer(fake, {"code": "PARAM_ERROR", "message": "appid和mch_id不匹配"}, 400)
    if kind == "jsapi" and not (isinstance(body.get("payer"), dict) and body["payer"].get("openid")):
        return _answer(fake, {"code": "PARAM_ERROR", "message": "缺少参数payer.openid"}, 400)
    order_no = body["out_trade_no"]
    existing = fake.trades.get(order_no)
    if existing is not None and existing.state != "NOTPAY":
        return _answer(fake, {"code": "ORDERPAID" if existing.state == "SUCCESS" else "ORDER_CLOSED",
                              "message": "订单状态错误"}, 400)
    fake.trades[order_no] = Trade(body["amount"]["total"], request=body)
    prepay = "wx" + secrets.token_hex(16)
    if kind == "native":
        return _answer(fake, {"code_url": f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}"})
    if kind == "jsapi":
        fake.prepay_ids[prepay] = order_no
        return _answer(fake, {"prepay_id": prepay})
    return _answer(fake, {"h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay}"
                                    f"&package={secrets.randbelow(10**10)}"})


def _query(fake: WechatFakeApi, order_no: str, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    if request.args.get("mchid") != MCHID:
        return _answer(fake, {"code": "PARAM_ERROR", "message": "mchid"}, 400)
    trade = fake.trades.get(order_no)
    if trade is None:
        return _answer(fake, NOT_EXIST, 404, signed=False)
    return _answer(fake, transaction(order_no, trade.amount_fen, trade.transaction_id, trade.state, fake.answer_appid))


def _close(fake: WechatFakeApi, order_no: str, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    if json.loads(request.get_data() or b"{}").get("mchid") != MCHID:
        return _answer(fake, {"code": "PARAM_ERROR", "message": "mchid"}, 400)
    trade = fake.trades.get(order_no)
    if trade is None:
        return _answer(fake, NOT_EXIST, 404, signed=False)
    if trade.state == "SUCCESS":
        return _answer(fake, {"code": "ORDERPAID", "message": "订单已支付"}, 400)
    trade.state = "CLOSED"
    return _answer(fake, None, 204)


def transaction(order_no: str, amount_fen: int, txn_id: str | None, state: str = "SUCCESS",
                appid: str = APPID, mchid: str = MCHID) -> dict[str, Any]:
    """A transaction as WeChat Pay describes one (query answer, decrypted notification)."""
    paid = state in ("SUCCESS", "REFUND")
    found: dict[str, Any] = {
        "appid": appid, "mchid": mchid, "out_trade_no": order_no, "trade_state": state,
        "trade_state_desc": {"SUCCESS": "支付成功", "NOTPAY": "订单未支付", "CLOSED": "订单已关闭"}.get(state, state),
        "amount": {"total": amount_fen, "currency": "CNY", "payer_total": amount_fen if paid else 0,
                   "payer_currency": "CNY"},
        "attach": "", "promotion_detail": [], "scene_info": {"device_id": ""},
    }
    if paid:
        found.update({"transaction_id": txn_id, "trade_type": "NATIVE", "bank_type": "OTHERS",
                      "success_time": rfc3339(datetime.now(UTC)), "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}})
    return found


def pay_sheet_verifies(sheet: Mapping[str, str]) -> bool:
    """What WeChat's client checks before it shows the pay sheet: paySign is RSA-SHA256 with the
    merchant's key over ``appId\ntimeStamp\nnonceStr\npackage\n``."""
    message = "".join(f"{sheet[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")).encode()
    return sheet.get("signType") == "RSA" and verifies(keys().merchant, message, sheet.get("paySign", ""))


# ------------------------------------------------------------------ WeChat's web sign-in


@dataclass
class Grant:
    openid: str
    issued: float
    used: bool = False


@dataclass(eq=False)
class WechatOAuthFake(FakeApi):
    """WeChat's web sign-in (``open.weixin.qq.com`` and ``api.weixin.qq.com`` in one server):
    ``/connect/oauth2/authorize`` sends the browser back to ``redirect_uri`` with a one-time code
    (5 minutes, as WeChat's) and the state; ``/sns/oauth2/access_token`` trades a code for the
    openid when the appid and secret are the official account's. ``openid`` is the WeChat user
    who is signing in; ``give_code=False`` plays a return without a code."""

    openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    give_code: bool = True
    grants: dict[str, Grant] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def code_for(self, openid: str | None = None) -> str:
        code = secrets.token_hex(16)
        self.grants[code] = Grant(openid or self.openid, time.time())
        return code


def _authorize(fake: WechatOAuthFake, request: Request) -> Response:
    args = request.args
    if (args.get("appid"), args.get("response_type"), args.get("scope")) != (MP_APPID, "code", "snsapi_base"):
        fake.refused.append("authorize: appid, response_type or scope")
        return Response("redirect_uri 参数错误", status=200, content_type="text/plain; charset=utf-8")
    state = args.get("state", "")
    if not re.fullmatch(r"[A-Za-z0-9]{0,128}", state):  # WeChat's rule for state
        fake.refused.append("authorize: state")
        return Response("state 参数错误", status=200, content_type="text/plain; charset=utf-8")
    back = args.get("redirect_uri", "")
    joiner = "&" if "?" in back else "?"
    query = (f"code={fake.code_for()}&" if fake.give_code else "") + f"state={state}"
    return Response(status=302, headers={"Location": f"{back}{joiner}{query}"})


def _access_token(fake: WechatOAuthFake, request: Request) -> Response:
    args = request.args

    def error(code: int, message: str) -> Response:
        fake.refused.append(f"access_token: {code}")
        return Response(json.dumps({"errcode": code, "errmsg": message}), content_type="application/json")

    if args.get("appid") != MP_APPID:
        return error(40013, "invalid appid")
    if args.get("secret") != MP_SECRET:
        return error(40125, "invalid appsecret")
    if args.get("grant_type") != "authorization_code":
        return error(40002, "invalid grant_type")
    grant = fake.grants.get(args.get("code", ""))
    if grant is not None and grant.used:
        return error(40163, "code been used")
    if grant is None or time.time() - grant.issued > 300:
        return error(40029, "invalid code")
    grant.used = True
    return Response(json.dumps({"access_token": secrets.token_hex(32), "expires_in": 7200,
                                "refresh_token": secrets.token_hex(32), "openid": grant.openid,
                                "scope": "snsapi_base"}), content_type="application/json")


def oauth_fake() -> WechatOAuthFake:
    fake = WechatOAuthFake(routes={})
    fake.routes = {("GET", "/connect/oauth2/authorize"): functools.partial(_authorize, fake),
                   ("GET", "/sns/oauth2/access_token"): functools.partial(_access_token, fake)}
    return fake


def jsapi_config(oauth_base_url: str) -> dict[str, str]:
    """The settings that turn on WeChat Pay inside WeChat, signing in at ``oauth_base_url``."""
    return {"HEYON_WECHAT_MP_APPID": MP_APPID, "HEYON_WECHAT_MP_SECRET": MP_SECRET,
            "HEYON_WECHAT_OPEN_BASE": oauth_base_url, "HEYON_WECHAT_OAUTH_BASE": oauth_base_url}


# ------------------------------------------------------------------ the kit


class WechatKit:
    name = "wechat"

    def config(self, base_url: str) -> dict[str, str]:
        return {
            "HEYON_WECHAT_APPID": APPID,
            "HEYON_WECHAT_MCHID": MCHID,
            "HEYON_WECHAT_MERCHANT_SERIAL": MERCHANT_SERIAL,
            "HEYON_WECHAT_PRIVATE_KEY": private_pem(keys().merchant),
            "HEYON_WECHAT_API_V3_KEY": keys().api_v3,
            "HEYON_WECHAT_PLATFORM_PUBLIC_KEY": public_pem(keys().platform),
            "HEYON_WECHAT_PLATFORM_SERIAL": PLATFORM_SERIAL,
            "HEYON_WECHAT_API_BASE": base_url,
        }

    def fake_api(self) -> WechatFakeApi:
        fake = WechatFakeApi(routes={})
        fake.routes = _Routes(fake)
        return fake

    def pay(self, fake: FakeApi, order_no: str, amount_fen: int) -> str:
        assert isinstance(fake, WechatFakeApi)
        txn_id = new_transaction_id()
        fake.trades[order_no] = Trade(amount_fen, "SUCCESS", txn_id)
        return txn_id

    def open_order(self, fake: WechatFakeApi, order_no: str, amount_fen: int, state: str = "NOTPAY") -> None:
        """An order WeChat knows but that is not paid (NOTPAY), or is closed (CLOSED)."""
        fake.trades[order_no] = Trade(amount_fen, state)

    def notification(self, order_no: str, amount_fen: int, txn_id: str, **tamper: Any) -> tuple[bytes, dict[str, str]]:
        """A notification as WeChat Pay POSTs it, genuinely signed. ``tamper``:

        - ``other_key=True``: signed with a stranger's key (under WeChat's serial);
        - ``amount=<fen>``: the resource re-encrypted for this amount after signing;
        - ``foreign_appid=True`` / ``foreign_mchid=True``: genuinely signed, about someone else;
        - ``stale=True``: timestamp 6 minutes old; ``skew=<seconds>`` moves it by any amount;
        - ``unknown_serial=True``: a serial we were never given (signature genuine);
        - ``trade_state=<state>``: e.g. "NOTPAY", "CLOSED", "PAYERROR";
        - ``bad_ciphertext=True``: resource encrypted with another APIv3 key, genuinely signed;
        - ``drop=(<header>, ...)``: headers left out.
        """
        state = str(tamper.pop("trade_state", "SUCCESS"))
        plain = transaction(order_no, amount_fen, txn_id, state,
                            appid=FOREIGN_APPID if tamper.pop("foreign_appid", False) else APPID,
                            mchid=FOREIGN_MCHID if tamper.pop("foreign_mchid", False) else MCHID)
        api_v3 = keys().other_api_v3 if tamper.pop("bad_ciphertext", False) else keys().api_v3
        skew = int(tamper.pop("skew", -360 if tamper.pop("stale", False) else 0))
        timestamp = int(time.time()) + skew
        key = keys().other if tamper.pop("other_key", False) else keys().platform
        serial = OTHER_SERIAL if tamper.pop("unknown_serial", False) else PLATFORM_SERIAL
        changed_amount = tamper.pop("amount", None)
        drop = tuple(tamper.pop("drop", ()))
        assert not tamper, f"unknown tamper options: {sorted(tamper)}"

        def body_for(resource_plain: Mapping[str, Any]) -> bytes:
            now = datetime.now(UTC)
            notice = {
                "id": str(uuid.uuid4()), "create_time": rfc3339(now), "resource_type": "encrypt-resource",
                "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
                "resource": encrypt(resource_plain, api_v3),
            }
            return json.dumps(notice, ensure_ascii=False).encode()

        body = body_for(plain)
        headers = signed_headers(body, key, serial, timestamp)
        if changed_amount is not None:
            plain["amount"] = {**plain["amount"], "total": int(changed_amount), "payer_total": int(changed_amount)}
            body = body_for(plain)  # the old signature does not cover the new body
        for name in drop:
            headers.pop(name, None)
        return body, {"Content-Type": "application/json", **headers}

    def refund_notification(self, order_no: str, txn_id: str, refund_fen: int, total_fen: int, *,
                            status: str = "SUCCESS", refund_id: str | None = None, event_type: str | None = None,
                            other_key: bool = False, mchid: str = MCHID) -> tuple[bytes, dict[str, str]]:
        """A refund result as WeChat Pay POSTs it (event_type REFUND.<status>, a resource of
        original_type "refund" that carries no appid), genuinely signed unless ``other_key``."""
        now = datetime.now(UTC)
        plain = {
            "mchid": mchid, "out_trade_no": order_no, "transaction_id": txn_id,
            "out_refund_no": f"RF{order_no}", "refund_id": refund_id or new_refund_id(), "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {"total": total_fen, "refund": refund_fen, "payer_total": total_fen, "payer_refund": refund_fen},
        }
        if status == "SUCCESS":
            plain["success_time"] = rfc3339(now)
        notice = {
            "id": str(uuid.uuid4()), "create_time": rfc3339(now), "resource_type": "encrypt-resource",
            "event_type": event_type or f"REFUND.{status}",
            "summary": {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}.get(status, status),
            "resource": encrypt(plain, keys().api_v3, "refund"),
        }
        body = json.dumps(notice, ensure_ascii=False).encode()
        headers = signed_headers(body, keys().other if other_key else keys().platform)
        return body, {"Content-Type": "application/json", **headers}


def new_refund_id() -> str:
    """WeChat's form: 29 digits, starting 50."""
    return "50" + datetime.now(BEIJING).strftime("%Y%m%d") + f"{secrets.randbelow(10**19):019d}"


KIT = WechatKit()


def jsapi_notification(order_no: str, amount_fen: int, txn_id: str,
                       openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") -> tuple[bytes, dict[str, str]]:
    """WeChat Pay's notification of a JSAPI payment, genuinely signed: the transaction names the
    official account's appid (MP_APPID), under which the order was made, and the payer's openid."""
    plain = transaction(order_no, amount_fen, txn_id, "SUCCESS", appid=MP_APPID)
    plain.update(trade_type="JSAPI", payer={"openid": openid})
    notice = {"id": str(uuid.uuid4()), "create_time": rfc3339(datetime.now(UTC)), "resource_type": "encrypt-resource",
              "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功", "resource": encrypt(plain, keys().api_v3)}
    body = json.dumps(notice, ensure_ascii=False).encode()
    return body, {"Content-Type": "application/json", **signed_headers(body)}
