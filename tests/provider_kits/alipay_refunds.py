"""Alipay's refunds and daily statements as tests see them: the fake gateway of ``alipay.py``
grown by alipay.trade.refund, alipay.trade.fastpay.refund.query, the statement's address
(alipay.data.dataservice.bill.downloadurl.query) and the statement download itself.

The fake keeps Alipay's side of the books: each trade's refunds by out_request_no, the merchant's
balance they are paid from, and the rule that a trade's refunds never add up to more than the
trade. Its statement writer and reader are written here from Alipay's published format (comment
lines, the 25 columns, tab-padded values, GBK text and GBK member names without the UTF-8 flag),
not taken from the adapter, so a mistake in one does not hide in both.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import parse_qsl, urlencode

from werkzeug.wrappers import Request, Response

from tests.provider_kits import alipay as base_kit
from tests.provider_kits.alipay import (
    APP_ID,
    BEIJING,
    GATEWAY_PATH,
    KIT,
    NOT_EXIST,
    SELLER_ID,
    AlipayFakeApi,
    content,
    keys,
    verifies,
    yuan,
)

BILL_PATH = "/downloadBillFile.resource"
#: The statement's "#账号" line: the partner id followed by "0156", as Alipay prints it.
ACCOUNT = SELLER_ID + "0156"
#: Alipay's usual rate for website payments; a refund gives back the same share of what it returns.
FEE_RATE = Decimal("0.006")
#: A product name in Chinese, as our subject would be on a Chinese page ("phone card recharge").
SUBJECT_CN = "话费充值卡 100元"
LINK_LIFETIME = timedelta(seconds=30)  # Alipay: the download link is valid for 30 seconds

COLUMNS = (
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称", "操作员",
    "终端号", "对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）",
    "商家优惠（元）", "券核销金额（元）", "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号",
    "服务费（元）", "分润（元）", "备注",
)
LIST_START = "#-----------------------------------------业务明细列表----------------------------------------"
LIST_END = "#-----------------------------------------业务明细列表结束------------------------------------"


def fee_of(amount_fen: int) -> int:
    """Alipay's service fee on an amount: the rate, rounded half up to the fen."""
    return int((Decimal(amount_fen) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def signed_yuan(fen: int) -> str:
    return ("-" if fen < 0 else "") + yuan(abs(fen))


# ------------------------------------------------------------------ the books


@dataclass
class Payment:
    """When a trade was made and paid, and what for (the alipay.py fake keeps only its state)."""

    created: datetime
    paid_at: datetime
    subject: str


@dataclass
class RefundRecord:
    out_trade_no: str
    trade_no: str
    out_request_no: str
    amount_fen: int
    reason: str
    at: datetime
    #: False while Alipay has accepted the refund but not yet paid it back (finish_refunds off).
    done: bool


@dataclass(eq=False)
class AlipayRefundsFakeApi(AlipayFakeApi):
    """``AlipayFakeApi`` with refunds and statements. Knobs:

    - ``balance_fen``: the merchant's available balance refunds are paid from (None: plenty);
    - ``finish_refunds``: False makes Alipay accept refunds (fund_change N) without paying them
      back until ``finish_pending`` (a refund to a bank card takes a while);
    - ``system_error_next``: the next N refund calls answer ACQ.SYSTEM_ERROR, doing nothing;
    - ``drop_answer_next``: the next N refund calls are carried out, but their answer is lost;
    - ``tamper``: changes the text of every answer after it is signed;
    - ``not_ready``: days whose statement Alipay has not made yet; ``statements``: a day's file
      served instead of the one written from the books;
    - ``clock``: when refunds happen (statements read it), real time unless a test sets it.
    """

    paid: dict[str, Payment] = field(default_factory=dict)
    refunds: dict[tuple[str, str], RefundRecord] = field(default_factory=dict)
    balance_fen: int | None = None
    finish_refunds: bool = True
    system_error_next: int = 0
    drop_answer_next: int = 0
    tamper: Callable[[str], str] | None = None
    not_ready: set[date] = field(default_factory=set)
    statements: dict[date, bytes] = field(default_factory=dict)
    links: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def refunded_fen(self, out_trade_no: str, *, done_only: bool = False) -> int:
        return sum(r.amount_fen for r in self.refunds.values()
                   if r.out_trade_no == out_trade_no and (r.done or not done_only))

    def finish_pending(self) -> None:
        """Alipay pays back the refunds it accepted."""
        for record in self.refunds.values():
            if not record.done:
                record.done = True
                if self.balance_fen is not None:
                    self.balance_fen -= record.amount_fen


def _answer(fake: AlipayRefundsFakeApi, method: str, body: Mapping[str, object], signed: bool = True) -> Response:
    response = base_kit._answer(fake, method, body, signed)  # type: ignore[arg-type]
    if fake.tamper is not None:
        response.set_data(fake.tamper(response.get_data(as_text=True)).encode())
    return response


def _business(method: str, sub_code: str, sub_msg: str, fake: AlipayRefundsFakeApi, **more: str) -> Response:
    return _answer(fake, method, {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg,
                                  **more})


def _gateway(fake: AlipayRefundsFakeApi, request: Request) -> Response:
    params = dict(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
    method = params.get("method", "")
    if method in ("alipay.trade.query", "alipay.trade.close"):
        return base_kit._gateway(fake, request)
    handler = {"alipay.trade.refund": _refund, "alipay.trade.fastpay.refund.query": _refund_query,
               "alipay.data.dataservice.bill.downloadurl.query": _bill_url}.get(method)
    if handler is None:
        return _answer(fake, "error", {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method"},
                       signed=False)
    # Like Alipay: a request that is not signed with the app's key is refused, unsigned.
    if params.get("sign_type") != "RSA2" or params.get("app_id") != APP_ID \
            or not verifies(keys().app, content(params), params.get("sign", "")):
        return _answer(fake, method, {"code": "40002", "msg": "Invalid Arguments",
                                      "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}, signed=False)
    return handler(fake, method, json.loads(params.get("biz_content", "{}")))


def _trade_of(fake: AlipayRefundsFakeApi, biz: Mapping[str, str]) -> tuple[str, base_kit.Trade] | None:
    """The trade a request names: by trade_no when given (Alipay prefers it), else out_trade_no."""
    for order_no, trade in fake.trades.items():
        if biz.get("trade_no") and trade.trade_no == biz["trade_no"]:
            return order_no, trade
        if not biz.get("trade_no") and order_no == biz.get("out_trade_no"):
            return order_no, trade
    return None


def _fen(text: str) -> int:
    whole, _, cents = text.partition(".")
    assert whole.isdigit() and (cents == "" or (cents.isdigit() and len(cents) <= 2)), text
    return int(whole) * 100 + int((cents or "0").ljust(2, "0"))


def _refund(fake: AlipayRefundsFakeApi, method: str, biz: Mapping[str, str]) -> Response:
    if fake.system_error_next:
        fake.system_error_next -= 1
        return _business(method, "ACQ.SYSTEM_ERROR", "系统错误", fake)
    found = _trade_of(fake, biz)
    if found is None:
        return _answer(fake, method, NOT_EXIST)
    order_no, trade = found
    amount_fen, request_no = _fen(biz["refund_amount"]), biz.get("out_request_no") or order_no
    answer: dict[str, str]
    earlier = fake.refunds.get((order_no, request_no))
    if earlier is not None:
        # The same request again: nothing moves. Other parameters under the same number: refused.
        if earlier.amount_fen != amount_fen:
            return _business(method, "ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求", fake)
        answer = _refund_answer(fake, order_no, trade, "N")
    elif trade.status == "TRADE_FINISHED":
        return _business(method, "ACQ.TRADE_HAS_FINISHED", "交易已完结", fake)
    elif trade.status != "TRADE_SUCCESS":
        return _business(method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法", fake)
    elif fake.refunded_fen(order_no) + amount_fen > _fen(trade.total_amount):
        return _business(method, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限", fake)
    elif fake.balance_fen is not None and amount_fen > fake.balance_fen:
        return _business(method, "ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足", fake)
    else:
        fake.refunds[(order_no, request_no)] = RefundRecord(order_no, trade.trade_no, request_no, amount_fen,
                                                            biz.get("refund_reason", ""), fake.clock(),
                                                            done=fake.finish_refunds)
        if fake.finish_refunds and fake.balance_fen is not None:
            fake.balance_fen -= amount_fen
        if fake.refunded_fen(order_no) == _fen(trade.total_amount):
            trade.status = "TRADE_CLOSED"  # all of it went back
        answer = _refund_answer(fake, order_no, trade, "Y" if fake.finish_refunds else "N")
    # Alipay's side of the books, whatever the test does.
    assert fake.refunded_fen(order_no) <= _fen(trade.total_amount), "refunded more than the trade"
    if fake.drop_answer_next:
        fake.drop_answer_next -= 1
        return Response("<html>504 Gateway Time-out</html>", status=504, content_type="text/html")
    return _answer(fake, method, answer)


def _refund_answer(fake: AlipayRefundsFakeApi, order_no: str, trade: base_kit.Trade, fund_change: str) -> dict[str, str]:
    return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": order_no,
            "buyer_logon_id": "159****5620", "fund_change": fund_change,
            "refund_fee": yuan(fake.refunded_fen(order_no, done_only=True)),
            "gmt_refund_pay": base_kit.beijing(fake.clock()), "buyer_user_id": "2088102177846880",
            "send_back_fee": "0.00"}


def _refund_query(fake: AlipayRefundsFakeApi, method: str, biz: Mapping[str, object]) -> Response:
    found = _trade_of(fake, {k: str(v) for k, v in biz.items() if isinstance(v, str)})
    if found is None:
        return _answer(fake, method, NOT_EXIST)
    order_no, trade = found
    record = fake.refunds.get((order_no, str(biz.get("out_request_no") or order_no)))
    if record is None or not record.done:
        # Code 10000 says only that the query worked: no refund_status, no finished refund.
        return _answer(fake, method, {"code": "10000", "msg": "Success"})
    answer = {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": order_no,
              "out_request_no": record.out_request_no, "total_amount": trade.total_amount,
              "refund_amount": yuan(record.amount_fen), "refund_status": "REFUND_SUCCESS"}
    options = biz.get("query_options")
    if isinstance(options, list) and "gmt_refund_pay" in options:
        answer["gmt_refund_pay"] = base_kit.beijing(record.at)
    return _answer(fake, method, answer)


def _bill_url(fake: AlipayRefundsFakeApi, method: str, biz: Mapping[str, str]) -> Response:
    try:
        day = date.fromisoformat(biz.get("bill_date", ""))
    except ValueError:
        day = None
    if biz.get("bill_type") != "trade" or day is None or len(biz.get("bill_date", "")) != 10:
        return _business(method, "isv.invalid_arguments", "入参不合法", fake)
    if day >= datetime.now(BEIJING).date() or day in fake.not_ready:
        return _business(method, "isp.bill_not_exist", "账单不存在", fake)
    raw = fake.statements.get(day)
    if raw is None:
        raw = statement_zip(statement_rows(fake, day), day)
    token = uuid.uuid4().hex
    fake.links[token] = (time.monotonic(), raw)
    stamp = day.strftime("%Y%m%d")
    query = urlencode({"bizType": "trade", "userId": SELLER_ID, "fileType": "csv.zip", "bizDates": stamp,
                       "downloadFileName": f"{ACCOUNT}_{stamp}.csv.zip", "fileId": f"/trade/{SELLER_ID}/{stamp}",
                       "timestamp": str(int(time.time())), "token": token})
    return _answer(fake, method, {"code": "10000", "msg": "Success",
                                  "bill_download_url": f"{fake.base_url}{BILL_PATH}?{query}"})


def _download(fake: AlipayRefundsFakeApi, request: Request) -> Response:
    made, raw = fake.links.get(request.args.get("token", ""), (0.0, b""))
    if not raw or time.monotonic() - made > LINK_LIFETIME.total_seconds():
        return Response("链接已失效", status=403, content_type="text/plain;charset=utf-8")
    return Response(raw, content_type="application/oct-stream")


# ------------------------------------------------------------------ statements: writing


@dataclass(frozen=True)
class BillRow:
    """One row of the 业务明细 file, in the terms Alipay prints it with."""

    trade_no: str
    order_no: str
    kind: str  # 交易 | 退款
    subject: str
    created: datetime
    finished: datetime
    #: Positive fen; a refund row prints it negative.
    amount_fen: int
    #: What Alipay charged (positive, printed negative) or gave back (negative, printed positive).
    fee_fen: int
    refund_no: str = ""
    buyer: str = "*津水(602***@qq.com)"


def statement_rows(fake: AlipayRefundsFakeApi, day: date) -> list[BillRow]:
    """The rows of ``day`` (Beijing) from the fake's books: payments, then finished refunds."""
    rows: list[BillRow] = []
    on_day = lambda moment: moment.astimezone(BEIJING).date() == day  # noqa: E731
    for order_no, trade in fake.trades.items():
        payment = fake.paid.get(order_no)
        if payment is not None and on_day(payment.paid_at):
            total = _fen(trade.total_amount)
            rows.append(BillRow(trade.trade_no, order_no, "交易", payment.subject, payment.created, payment.paid_at,
                                total, fee_of(total)))
    for record in fake.refunds.values():
        payment = fake.paid.get(record.out_trade_no)
        if record.done and on_day(record.at) and payment is not None:
            rows.append(BillRow(record.trade_no, record.out_trade_no, "退款", payment.subject, payment.created,
                                record.at, record.amount_fen, -fee_of(record.amount_fen), record.out_request_no))
    return rows


def _cells(row: BillRow) -> dict[str, str]:
    sign = -1 if row.kind == "退款" else 1
    amount = signed_yuan(sign * row.amount_fen)
    cells = {column: "0.00" for column in COLUMNS}
    cells.update({
        "支付宝交易号": row.trade_no + "\t", "商户订单号": row.order_no + "\t", "业务类型": row.kind + "\t",
        "商品名称": row.subject, "创建时间": base_kit.beijing(row.created), "完成时间": base_kit.beijing(row.finished),
        "门店编号": "\t", "门店名称": "\t", "操作员": "\t", "终端号": "\t", "对方账户": row.buyer + "\t",
        "订单金额（元）": amount, "商家实收（元）": amount, "券名称": "", "商家红包消费金额（元）": "0.00\t",
        "退款批次号/请求号": row.refund_no + "\t", "服务费（元）": signed_yuan(-row.fee_fen), "备注": "",
    })
    return cells


def detail_text(rows: Sequence[BillRow], day: date, *, columns: Sequence[str] = COLUMNS,
                header: Sequence[str] | None = None, end: bool = True) -> str:
    """The 业务明细 file's text as Alipay prints it (``header``: other names for ``columns``;
    ``end``: False leaves the file cut short after the rows)."""
    cn = lambda d: f"{d:%Y}年{d:%m}月{d:%d}日"  # noqa: E731
    out = io.StringIO()
    out.write("#支付宝业务明细查询\n")
    out.write(f"#账号：[{ACCOUNT}]\n")
    out.write(f"#起始日期：[{cn(day)} 00:00:00]   终止日期：[{cn(day + timedelta(days=1))} 00:00:00]\n")
    out.write(LIST_START + "\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header or columns)
    for row in rows:
        cells = _cells(row)
        writer.writerow([cells[column] for column in columns])
    if end:
        payments = [r for r in rows if r.kind == "交易"]
        refunds = [r for r in rows if r.kind == "退款"]
        out.write(LIST_END + "\n")
        out.write(f"#交易合计：{len(payments)}笔，商家实收共{yuan(sum(r.amount_fen for r in payments))}元，商家优惠共0.00元\n")
        out.write(f"#退款合计：{len(refunds)}笔，商家实收退款共{signed_yuan(-sum(r.amount_fen for r in refunds))}元，"
                  "商家优惠退款共0.00元\n")
        out.write(f"#导出时间：[{cn(day + timedelta(days=1))} 09:12:34]\n")
    return out.getvalue()


class _GbkName(zipfile.ZipInfo):
    """A member named in GBK without the UTF-8 flag (0x800), as in Alipay's zips."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def zip_of(members: Iterable[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = _GbkName(name, date_time=(2026, 1, 2, 9, 12, 34))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()


def statement_zip(rows: Sequence[BillRow], day: date, *, text: str | None = None, encoding: str = "gbk",
                  summary: bytes | None = None) -> bytes:
    """The statement zip Alipay serves: the summary first, then the detail (``text`` instead of
    the detail written from ``rows``; ``encoding`` other than GBK for files Alipay never makes)."""
    stamp = day.strftime("%Y%m%d")
    detail = (text if text is not None else detail_text(rows, day)).encode(encoding)
    summary_text = ("#支付宝业务汇总查询\n#---业务汇总列表---\n门店编号,门店名称,交易订单总笔数,退款订单总笔数\n"
                    f"合计,,{sum(r.kind == '交易' for r in rows)},{sum(r.kind == '退款' for r in rows)}\n")
    return zip_of([(f"{ACCOUNT}_{stamp}_业务明细(汇总).csv", summary if summary is not None else summary_text.encode("gbk")),
                   (f"{ACCOUNT}_{stamp}_业务明细.csv", detail)])


# ------------------------------------------------------------------ statements: reading


@dataclass
class ReadStatement:
    """A statement zip as the kit reads it, checking Alipay's format on the way."""

    names: list[str]
    comments_before: list[str]
    header: list[str]
    rows: list[dict[str, str]]  # values as printed, tabs and all
    comments_after: list[str]


def read_statement(raw: bytes) -> ReadStatement:
    """Read a statement zip strictly as Alipay makes it: members named in GBK without the UTF-8
    flag, the detail in GBK without a byte order mark, every row as wide as the header."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        infos = archive.infolist()
        assert all(not info.flag_bits & 0x800 for info in infos), "a member name flagged UTF-8"
        # zipfile reads an unflagged name as cp437: its bytes back, then GBK.
        names = [info.filename.encode("cp437").decode("gbk") for info in infos]
        [detail] = [info for info, name in zip(infos, names, strict=True) if name.endswith("_业务明细.csv")]
        data = archive.read(detail)
    assert not data.startswith(b"\xef\xbb\xbf"), "a byte order mark"
    text = data.decode("gbk")
    lines = text.replace("\r\n", "\n").split("\n")
    assert lines[-1] == "", "the file does not end with a line break"
    lines = lines[:-1]
    start = lines.index(LIST_START)
    end = lines.index(LIST_END)
    assert all(line.startswith("#") for line in lines[:start] + lines[end:])
    table = list(csv.reader(lines[start + 1:end]))
    header, body = table[0], table[1:]
    assert all(len(row) == len(header) for row in body), "a row not as wide as the header"
    return ReadStatement(names, lines[:start + 1], header, [dict(zip(header, row, strict=True)) for row in body], lines[end:])


# ------------------------------------------------------------------ the kit


class AlipayRefundsKit:
    def fake_api(self) -> AlipayRefundsFakeApi:
        fake = AlipayRefundsFakeApi(routes={})
        fake.routes[("POST", GATEWAY_PATH)] = functools.partial(_gateway, fake)
        fake.routes[("GET", BILL_PATH)] = functools.partial(_download, fake)
        return fake

    def pay(self, fake: AlipayRefundsFakeApi, order_no: str, amount_fen: int, *, at: datetime | None = None,
            subject: str = SUBJECT_CN) -> str:
        """A paid trade, with when and what for (statements print both)."""
        trade_no = KIT.pay(fake, order_no, amount_fen)
        paid_at = at or datetime.now(UTC)
        fake.paid[order_no] = Payment(paid_at - timedelta(seconds=7), paid_at, subject)
        return trade_no

    def refund_notification(self, order_no: str, total_fen: int, trade_no: str, refunded_fen: int,
                            out_biz_no: str | None, **tamper: object) -> tuple[bytes, dict[str, str]]:
        """Alipay's notice of a refund, on the payment's notify_url: refund_fee is the trade's
        total refunded so far, out_biz_no the refund request's number (ours, or Alipay's own)."""
        now = datetime.now(UTC)
        fields: dict[str, object] = {
            "refund_fee": yuan(refunded_fen), "gmt_refund": now, "out_biz_no": out_biz_no,
            "trade_status": "TRADE_CLOSED" if refunded_fen == total_fen else "TRADE_SUCCESS",
            "notify_type": "trade_status_sync", **tamper,
        }
        return KIT.notification(order_no, total_fen, trade_no, **fields)


REFUNDS_KIT = AlipayRefundsKit()
