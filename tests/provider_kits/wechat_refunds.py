"""WeChat Pay API v3 refunds and the daily trade bill, as tests see them: the fake API of
``tests/provider_kits/wechat.py`` grown by 申请退款, 查询单笔退款, 申请交易账单 and the bill's
download, and a writer of the bill file.

The fake keeps WeChat's books: one refund per out_refund_no (the same number sent again is
answered with the refund already made), and never more refunded of a payment than was paid.
It verifies our Authorization on every request (download included) with the existing kit's
checks, and signs its answers with "WeChat Pay's" platform key through the same helper, except
the bill file, which WeChat does not sign (the SHA1 in the signed answer vouches for it).

The bill writer follows WeChat Pay's "交易账单详细说明" with plain integer arithmetic, so it
shares nothing with the adapter's reading: header, one backtick-prefixed line per payment or
refund, summary header and summary line.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.provider_kits.wechat import (
    APPID,
    BEIJING,
    MCHID,
    SIGN_ERROR,
    WechatFakeApi,
    _answer,
    _authorized,
    _Routes,
    encrypt,
    keys,
    new_refund_id,
    rfc3339,
    signed_headers,
)

REFUNDS = "/v3/refund/domestic/refunds"
TRADEBILL = "/v3/bill/tradebill"
DOWNLOAD = "/v3/billdownload/file"

#: WeChat's error table for 申请退款 (and the bill's), as (HTTP status, message).
ERRORS = {
    "NOT_ENOUGH": (403, "基本账户余额不足，请充值后重新发起"),
    "USER_ACCOUNT_ABNORMAL": (403, "退款请求失败"),
    "NO_AUTH": (403, "没有退款权限"),
    "INVALID_REQUEST": (400, "请求参数符合参数格式，但不符合业务规则"),
    "PARAM_ERROR": (400, "参数错误"),
    "RESOURCE_NOT_EXISTS": (404, "订单不存在"),
    "SYSTEM_ERROR": (500, "系统错误"),
    "FREQUENCY_LIMITED": (429, "频率限制"),
    "NO_STATEMENT_EXIST": (400, "账单文件不存在"),
    "STATEMENT_CREATING": (400, "账单生成中"),
}


@dataclass
class HeldRefund:
    """A refund in WeChat's books."""

    refund_id: str
    out_refund_no: str
    order_no: str
    transaction_id: str | None
    amount_fen: int
    total_fen: int
    status: str
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    succeeded: datetime | None = None

    def describe(self) -> dict[str, Any]:
        """The refund as 申请退款 and 查询单笔退款 answer it."""
        found: dict[str, Any] = {
            "refund_id": self.refund_id, "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id, "out_trade_no": self.order_no, "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱", "create_time": rfc3339(self.created), "status": self.status,
            "funds_account": "AVAILABLE", "promotion_detail": [],
            "amount": {"total": self.total_fen, "refund": self.amount_fen, "from": [], "payer_total": self.total_fen,
                       "payer_refund": self.amount_fen, "settlement_refund": self.amount_fen,
                       "settlement_total": self.total_fen, "discount_refund": 0, "currency": "CNY",
                       "refund_fee": 0},
        }
        if self.succeeded is not None:
            found["success_time"] = rfc3339(self.succeeded)
        return found


@dataclass(eq=False)
class WechatRefundFake(WechatFakeApi):
    """The fake WeChat Pay API with refunds and bills. ``refunds``: WeChat's refunds by
    out_refund_no; ``new_refund_status``: how it answers a refund it accepts (SUCCESS at once,
    as for Change, or PROCESSING); ``refuse_next``: error codes the next refund requests are
    answered with, whatever they ask; ``hide_refunds``: how many refund queries next answer
    RESOURCE_NOT_EXISTS as if the refund were not visible yet; ``bills``: the bill text (as
    ``bill_csv`` writes it) by bill_date, ``bills_creating`` the dates not made yet;
    ``tamper_download``: the file served is changed after its SHA1 was given; ``hash_of``: what
    the SHA1 is taken of, "bill" (the unpacked bill, WeChat's documented rule) or "download"."""

    refunds: dict[str, HeldRefund] = field(default_factory=dict)
    new_refund_status: str = "PROCESSING"
    refuse_next: list[str] = field(default_factory=list)
    hide_refunds: int = 0
    refund_requests: list[dict[str, Any]] = field(default_factory=list)
    bills: dict[str, bytes] = field(default_factory=dict)
    bills_creating: set[str] = field(default_factory=set)
    tamper_download: bool = False
    hash_of: str = "bill"
    downloads: dict[str, str] = field(default_factory=dict)

    def refunded_fen(self, order_no: str) -> int:
        """What has left the payment: every refund but a closed one."""
        return sum(r.amount_fen for r in self.refunds.values() if r.order_no == order_no and r.status != "CLOSED")

    def settle(self, out_refund_no: str, status: str) -> HeldRefund:
        """WeChat finishes a refund: SUCCESS, ABNORMAL (bounced off the payer's card) or CLOSED."""
        held = self.refunds[out_refund_no]
        held.status = status
        held.succeeded = datetime.now(UTC) if status == "SUCCESS" else None
        return held


class _RefundRoutes(_Routes):
    def __init__(self, fake: WechatRefundFake) -> None:
        super().__init__(fake)
        self.refund_fake = fake
        self[("POST", REFUNDS)] = functools.partial(_create_refund, fake)
        self[("GET", TRADEBILL)] = functools.partial(_tradebill, fake)
        self[("GET", DOWNLOAD)] = functools.partial(_download, fake)

    def get(self, key: tuple[str, str], default: Any = None) -> Any:  # type: ignore[override]
        method, path = key
        if method == "GET" and path.startswith(REFUNDS + "/"):
            return functools.partial(_query_refund, self.refund_fake, path[len(REFUNDS) + 1:])
        return super().get(key, default)


def fake_api() -> WechatRefundFake:
    fake = WechatRefundFake(routes={})
    fake.routes = _RefundRoutes(fake)
    return fake


def _error(fake: WechatRefundFake, code: str, message: str | None = None) -> Response:
    # WeChat's SDKs verify only successful answers; its error answers are sent unsigned here.
    status, text = ERRORS[code]
    return _answer(fake, {"code": code, "message": message or text}, status, signed=False)


def _create_refund(fake: WechatRefundFake, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    body = json.loads(request.get_data())
    fake.refund_requests.append(body)
    if fake.refuse_next:
        return _error(fake, fake.refuse_next.pop(0))
    number, order_no, amount = body.get("out_refund_no"), body.get("out_trade_no"), body.get("amount")
    if (not number or not order_no or not body.get("notify_url") or not isinstance(amount, dict)
            or type(amount.get("refund")) is not int or type(amount.get("total")) is not int
            or amount.get("currency") != "CNY"):
        return _error(fake, "PARAM_ERROR")
    held = fake.refunds.get(number)
    if held is not None:  # "同一退款单号多次请求只退一笔": the refund already made
        if (held.order_no, held.amount_fen) != (order_no, amount["refund"]):
            return _error(fake, "INVALID_REQUEST", "退款单号重复，请求参数与原退款单不一致")
        return _answer(fake, held.describe())
    trade = fake.trades.get(order_no)
    if trade is None or trade.state not in ("SUCCESS", "REFUND"):
        return _error(fake, "RESOURCE_NOT_EXISTS")
    if amount["total"] != trade.amount_fen:
        return _error(fake, "INVALID_REQUEST", "订单金额与原订单不一致")
    if amount["refund"] <= 0 or fake.refunded_fen(order_no) + amount["refund"] > trade.amount_fen:
        return _error(fake, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
    held = HeldRefund(new_refund_id(), number, order_no, trade.transaction_id, amount["refund"], trade.amount_fen,
                      fake.new_refund_status)
    if held.status == "SUCCESS":
        held.succeeded = held.created
    fake.refunds[number] = held
    trade.state = "REFUND"  # WeChat's trade_state once part of it is refunded: 转入退款
    return _answer(fake, held.describe())


def _query_refund(fake: WechatRefundFake, number: str, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    held = fake.refunds.get(number)
    if fake.hide_refunds > 0:
        fake.hide_refunds -= 1
        held = None
    if held is None:
        return _error(fake, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return _answer(fake, held.describe())


def _tradebill(fake: WechatRefundFake, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    day = request.args.get("bill_date", "")
    if (request.args.get("bill_type"), request.args.get("tar_type")) != ("ALL", "GZIP"):
        return _error(fake, "PARAM_ERROR")
    if day in fake.bills_creating:
        return _error(fake, "STATEMENT_CREATING")
    bill = fake.bills.get(day)
    if bill is None:
        return _error(fake, "NO_STATEMENT_EXIST")
    token = secrets.token_urlsafe(24)
    fake.downloads[token] = day
    digest = hashlib.sha1(bill if fake.hash_of == "bill" else _packed(bill)).hexdigest()
    return _answer(fake, {"hash_type": "SHA1", "hash_value": digest,
                          "download_url": f"{fake.base_url}{DOWNLOAD}?token={token}"})


def _packed(bill: bytes) -> bytes:
    return gzip.compress(bill, mtime=0)


def _download(fake: WechatRefundFake, request: Request) -> Response:
    if not _authorized(fake, request):
        return _answer(fake, SIGN_ERROR, 401, signed=False)
    day = fake.downloads.get(request.args.get("token", ""))
    if day is None:
        return _error(fake, "INVALID_REQUEST", "下载地址无效")
    bill = fake.bills[day]
    if fake.tamper_download:  # a payment of 100.00 turned into one of 1000.00, or one byte more
        changed = bill.replace(b"`100.00,", b"`1000.00,", 1)
        bill = changed if changed != bill else bill + b"\n"
    # Not signed: WeChat's download answer carries no Wechatpay-Signature.
    return Response(_packed(bill), status=200, content_type="application/octet-stream")


# ------------------------------------------------------------------ refund notifications


def refund_notice(order_no: str, txn_id: str, refund_fen: int, total_fen: int, *, status: str = "SUCCESS",
                  refund_id: str | None = None, out_refund_no: str | None = "RF000000000101",
                  drop: Sequence[str] = ()) -> tuple[bytes, dict[str, str]]:
    """A refund result as WeChat Pay POSTs it (REFUND.<status>, resource of original_type
    "refund"), genuinely signed; ``out_refund_no=None`` or ``drop`` leave fields out."""
    now = datetime.now(UTC)
    plain: dict[str, Any] = {
        "mchid": MCHID, "out_trade_no": order_no, "transaction_id": txn_id, "out_refund_no": out_refund_no,
        "refund_id": refund_id or new_refund_id(), "refund_status": status, "user_received_account": "支付用户零钱",
        "amount": {"total": total_fen, "refund": refund_fen, "payer_total": total_fen, "payer_refund": refund_fen},
    }
    if status == "SUCCESS":
        plain["success_time"] = rfc3339(now)
    for name in (*drop, *(["out_refund_no"] if out_refund_no is None else [])):
        plain.pop(name, None)
    notice = {"id": str(uuid.uuid4()), "create_time": rfc3339(now), "resource_type": "encrypt-resource",
              "event_type": f"REFUND.{status}",
              "summary": {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}.get(status, status),
              "resource": encrypt(plain, keys().api_v3, "refund")}
    body = json.dumps(notice, ensure_ascii=False).encode()
    return body, {"Content-Type": "application/json", **signed_headers(body)}


# ------------------------------------------------------------------ the trade bill


HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
          "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
          "手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@dataclass(frozen=True)
class BillLine:
    """One line of an ALL trade bill: a payment, or (``refund_id`` set) a refund of one.
    ``fee_fen`` as WeChat writes it: positive charged, negative given back by a refund."""

    at: datetime
    order_no: str
    txn_id: str
    amount_fen: int
    fee_fen: int
    product: str = "Heyon 充值卡 100.00 元"
    refund_id: str | None = None
    refund_no: str | None = None
    state: str | None = None  # 交易状态, when not SUCCESS / REFUND as the kind says
    mchid: str = MCHID
    currency: str = "CNY"


def yuan(fen: int, places: int = 2) -> str:
    """Fen as WeChat writes yuan: ``100.00``, ``-0.60000`` (integer arithmetic only)."""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}{'0' * (places - 2)}"


def bill_values(line: BillLine) -> list[str]:
    refund = line.refund_id is not None
    paid, returned = (0, line.amount_fen) if refund else (line.amount_fen, 0)
    return [
        line.at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), APPID, line.mchid, "0", "", line.txn_id,
        line.order_no, OPENID, "NATIVE", line.state or ("REFUND" if refund else "SUCCESS"), "OTHERS", line.currency,
        yuan(paid), "0.00", line.refund_id or "0", (line.refund_no or "") if refund else "0", yuan(returned), "0.00",
        "ORIGINAL" if refund else "", "SUCCESS" if refund else "", line.product, "", yuan(line.fee_fen, 5), "0.60%",
        yuan(paid), yuan(returned), "",
    ]


def bill_csv(lines: Sequence[BillLine], newline: str = "\r\n", summary: Mapping[str, str] | None = None) -> bytes:
    """The ALL trade bill of ``lines`` as WeChat writes it (UTF-8); ``summary`` replaces
    summary values by name (总交易单数, ...) to write one that does not add up."""
    rows = [bill_values(line) for line in lines]
    totals = {
        "总交易单数": str(len(rows)),
        "应结订单总金额": yuan(sum(0 if line.refund_id else line.amount_fen for line in lines)),
        "退款总金额": yuan(sum(line.amount_fen if line.refund_id else 0 for line in lines)),
        "充值券退款总金额": "0.00",
        "手续费总金额": yuan(sum(line.fee_fen for line in lines), 5),
        "订单总金额": yuan(sum(0 if line.refund_id else line.amount_fen for line in lines)),
        "申请退款总金额": yuan(sum(line.amount_fen if line.refund_id else 0 for line in lines)),
    }
    totals.update(summary or {})
    text = [HEADER, *("`" + ",`".join(row) for row in rows), SUMMARY, "`" + ",`".join(totals.values())]
    return (newline.join(text) + newline).encode()
