"""Alipay as tests see it: throw-away keys, signed notifications, and a fake open-API gateway.

Three RSA 2048 key pairs, made once per test session: the app's (the site signs requests with
it), "Alipay's" (the fake signs notifications and answers with it), and another one that
belongs to nobody (for forgeries). The signing content is written here again from Alipay's
documentation rather than imported from the adapter, so a mistake in one does not hide in both.
"""
from __future__ import annotations

import functools
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from tests.fakes import FakeApi
from .rsa_keys import new_key, private_pem, public_pem, sign, verifies  # noqa: F401 (tests import them from here)

BEIJING = ZoneInfo("Asia/Shanghai")
APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
GATEWAY_PATH = "/gateway.do"
SUBJECT = "Heyon card recharge"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


@dataclass(frozen=True)
class Keys:
    app: rsa.RSAPrivateKey
    alipay: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey


@functools.cache
def keys() -> Keys:
    return Keys(new_key(), new_key(), new_key())


def content(fields: Mapping[str, str]) -> bytes:
    """Alipay's signing content: sorted ``k=v`` joined by ``&``, without sign, sign_type or empties."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields)
                    if k not in ("sign", "sign_type") and fields[k]).encode()


def beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def new_trade_no() -> str:
    """Alipay's form: 28 digits, the date first."""
    return datetime.now(BEIJING).strftime("%Y%m%d") + f"{secrets.randbelow(10**20):020d}"


# ------------------------------------------------------------------ the fake gateway


@dataclass
class Trade:
    trade_no: str
    total_amount: str
    status: str


@dataclass(eq=False)
class AlipayFakeApi(FakeApi):
    """Alipay's gateway for alipay.trade.query and alipay.trade.close. ``trades`` is Alipay's
    book, by out_trade_no; ``answer_with`` picks how answers are signed: "alipay" (genuine),
    "other" (a key that is not Alipay's), "unsigned", or "garbled" (not JSON at all)."""

    trades: dict[str, Trade] = field(default_factory=dict)
    answer_with: str = "alipay"
    delay: float = 0.0


def _answer(fake: AlipayFakeApi, method: str, body: Mapping[str, str], signed: bool = True) -> Response:
    # Alipay writes its answers as it likes (here: non-ASCII text and a space after the colon);
    # the signature covers these exact characters, so a client must not re-serialise them.
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    name = method.replace(".", "_") + "_response"
    if fake.answer_with == "garbled":
        return Response("<html>502 Bad Gateway</html>", content_type="text/html;charset=utf-8")
    if signed and fake.answer_with != "unsigned":
        key = keys().alipay if fake.answer_with == "alipay" else keys().other
        text = f'{{"{name}": {value},"sign":"{sign(key, value.encode())}"}}'
    else:
        text = f'{{"{name}": {value}}}'
    return Response(text.encode(), content_type="text/html;charset=utf-8")


NOT_EXIST = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}


def _gateway(fake: AlipayFakeApi, request: Request) -> Response:
    if fake.delay:
        time.sleep(fake.delay)
    params = dict(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
    method = params.get("method", "")
    if method not in ("alipay.trade.query", "alipay.trade.close"):
        return _answer(fake, "error", {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method"},
                       signed=False)
    # Like Alipay: a request that is not signed with the app's key is refused, unsigned.
    if params.get("sign_type") != "RSA2" or params.get("app_id") != APP_ID \
            or not verifies(keys().app, content(params), params.get("sign", "")):
        return _answer(fake, method, {"code": "40002", "msg": "Invalid Arguments",
                                      "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}, signed=False)
    order_no = json.loads(params.get("biz_content", "{}")).get("out_trade_no", "")
    trade = fake.trades.get(order_no)
    if trade is None:
        return _answer(fake, method, NOT_EXIST)
    if method == "alipay.trade.close":
        if trade.status != "WAIT_BUYER_PAY":
            return _answer(fake, method, {"code": "40004", "msg": "Business Failed",
                                          "sub_code": "ACQ.TRADE_STATUS_ERROR", "sub_msg": "交易状态不合法"})
        trade.status = "TRADE_CLOSED"
        return _answer(fake, method, {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                                      "out_trade_no": order_no})
    return _answer(fake, method, {
        "code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": order_no,
        "buyer_logon_id": "159****5620", "trade_status": trade.status, "total_amount": trade.total_amount,
        "buyer_pay_amount": "0.00" if trade.status == "WAIT_BUYER_PAY" else trade.total_amount,
        "send_pay_date": beijing(datetime.now(UTC)), "buyer_user_id": "2088102177846880",
    })


# ------------------------------------------------------------------ the kit


class AlipayKit:
    name = "alipay"

    def config(self, base_url: str) -> dict[str, str]:
        return {
            "HEYON_ALIPAY_APP_ID": APP_ID,
            "HEYON_ALIPAY_SELLER_ID": SELLER_ID,
            "HEYON_ALIPAY_PRIVATE_KEY": private_pem(keys().app),
            "HEYON_ALIPAY_PUBLIC_KEY": public_pem(keys().alipay),
            "HEYON_ALIPAY_GATEWAY": base_url + GATEWAY_PATH,
        }

    def fake_api(self) -> AlipayFakeApi:
        fake = AlipayFakeApi(routes={})
        fake.routes[("POST", GATEWAY_PATH)] = functools.partial(_gateway, fake)
        return fake

    def pay(self, fake: FakeApi, order_no: str, amount_fen: int) -> str:
        assert isinstance(fake, AlipayFakeApi)
        trade_no = new_trade_no()
        fake.trades[order_no] = Trade(trade_no, yuan(amount_fen), "TRADE_SUCCESS")
        return trade_no

    def open_cashier(self, fake: AlipayFakeApi, order_no: str, amount_fen: int) -> str:
        """The buyer opened Alipay's cashier but has not paid: a trade in WAIT_BUYER_PAY."""
        trade_no = new_trade_no()
        fake.trades[order_no] = Trade(trade_no, yuan(amount_fen), "WAIT_BUYER_PAY")
        return trade_no

    def notification(self, order_no: str, amount_fen: int, txn_id: str, **tamper: object) -> tuple[bytes, dict[str, str]]:
        """A notification as Alipay POSTs it, genuinely signed. ``tamper``:

        - ``key``: "alipay" (default), "other" (a stranger's key) or "app" (our own key);
        - ``after_signing``: a dict of fields changed (or added) after the signature was made;
        - ``drop``: names of fields removed after signing (e.g. ``("sign",)``);
        - any other name: that field's value before signing (None leaves the field out), e.g.
          ``trade_status="WAIT_BUYER_PAY"``, ``app_id="2021..."``, ``notify_time=<datetime>``.
        """
        key_name = str(tamper.pop("key", "alipay"))
        after = dict(tamper.pop("after_signing", None) or {})  # type: ignore[call-overload]
        drop = tuple(tamper.pop("drop", ()))  # type: ignore[call-overload]
        now = datetime.now(UTC)
        fields: dict[str, str] = {
            "gmt_create": beijing(now - timedelta(minutes=1)),
            "charset": "utf-8",
            "seller_email": "pay@heyon.example",
            "subject": SUBJECT,
            "buyer_id": "2088102177846880",
            "invoice_amount": yuan(amount_fen),
            "notify_id": uuid.uuid4().hex,
            "fund_bill_list": json.dumps([{"amount": yuan(amount_fen), "fundChannel": "ALIPAYACCOUNT"}]),
            "notify_type": "trade_status_sync",
            "trade_status": "TRADE_SUCCESS",
            "receipt_amount": yuan(amount_fen),
            "buyer_pay_amount": yuan(amount_fen),
            "app_id": APP_ID,
            "sign_type": "RSA2",
            "seller_id": SELLER_ID,
            "gmt_payment": beijing(now),
            "notify_time": beijing(now),
            "version": "1.0",
            "out_trade_no": order_no,
            "total_amount": yuan(amount_fen),
            "trade_no": txn_id,
            "auth_app_id": APP_ID,
            "buyer_logon_id": "159****5620",
            "point_amount": "0.00",
        }
        for name, value in tamper.items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = beijing(value) if isinstance(value, datetime) else str(value)
        key = {"alipay": keys().alipay, "other": keys().other, "app": keys().app}[key_name]
        fields["sign"] = sign(key, content(fields))
        fields.update({k: str(v) for k, v in after.items()})
        for name in drop:
            fields.pop(name, None)
        return urlencode(fields).encode(), {"Content-Type": FORM}


KIT = AlipayKit()
