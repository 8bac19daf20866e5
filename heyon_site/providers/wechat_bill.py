"""WeChat Pay's daily trade bill (交易账单, ``bill_type=ALL``) read into ``StatementLine``.

The file, as WeChat Pay's "交易账单详细说明" describes it: UTF-8 text, one record a line; a header
of 27 names; then one line per payment (交易状态 SUCCESS) or refund (REFUND) of the day, each value
prefixed with a backtick (so spreadsheets keep long numbers as text); then a summary header
(总交易单数,...) and one summary line. Amounts are yuan with two decimals, the fee (手续费) with
five; each is turned into fen through ``Decimal`` and must be a whole number of fen.

Values are split on ``,``` (a comma followed by the backtick that opens the next value) rather than
on every comma: a product name with a comma in it then stays one value.

A payment line's amount is 应结订单金额 (what settles to us: the order amount less any
merchant-funded coupon; the site offers none, so it is the order's total); a refund line's is
退款金额. The fee is as WeChat writes it: positive when charged, negative when a refund gives
part of it back. Times are Beijing time in the file and UTC (aware) in the lines.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from heyon_site.providers.base import MalformedStatement, StatementLine

BEIJING = ZoneInfo("Asia/Shanghai")

HEADER = (
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
)
SUMMARY_HEADER = (
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
)
#: The summary totals checked against the sum of their column (detail column, summary column):
#: a file cut short or changed by hand shows here. Only the columns the lines are made of.
CHECKED_TOTALS = (("应结订单金额", "应结订单总金额"), ("退款金额", "退款总金额"), ("手续费", "手续费总金额"))

#: Far above a day of this site (a line is about 300 bytes); a bigger file is refused, not read.
MAX_BILL_BYTES = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"

_YUAN = re.compile(r"-?\d{1,12}(\.\d{1,5})?")
_COUNT = re.compile(r"\d{1,9}")
#: A merchant's own numbers (商户订单号, 商户退款单号): WeChat admits digits, letters and _-|*@.
_MERCHANT_NO = re.compile(r"[A-Za-z0-9_|*@-]{1,64}")
_WECHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def unpack(raw: bytes) -> bytes:
    """The bill as text bytes: gunzipped when it is gzip (as the API serves it with
    ``tar_type=GZIP``), as it is otherwise (a file saved from the merchant console)."""
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as packed:
            data = packed.read(MAX_BILL_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise MalformedStatement(f"not a whole gzip file ({type(exc).__name__})") from None
    if len(data) > MAX_BILL_BYTES:
        raise MalformedStatement(f"more than {MAX_BILL_BYTES} bytes once unpacked")
    return data


def digest_matches(raw: bytes, sha1_hex: str) -> bool:
    """Whether ``raw`` is the bill whose SHA1 WeChat gave with its address. WeChat documents the
    digest as that of the unpacked bill; the digest of the bytes as downloaded is accepted too (a
    change to the file matches neither). Raises MalformedStatement when ``raw`` does not unpack."""
    expected = sha1_hex.strip().lower()
    found = {hashlib.sha1(raw).hexdigest()}
    if raw.startswith(_GZIP_MAGIC):
        found.add(hashlib.sha1(unpack(raw)).hexdigest())
    return expected in found


def _text(data: bytes) -> str:
    # The API writes UTF-8; a file saved from the console in a Chinese spreadsheet may be GB18030.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MalformedStatement("neither UTF-8 nor GB18030 text")


def _values(line: str, number: int, width: int) -> list[str]:
    if not line.startswith("`"):
        raise MalformedStatement(f"line {number}: values do not start with a backtick")
    values = line[1:].split(",`")
    if len(values) != width:
        raise MalformedStatement(f"line {number}: {len(values)} values, not {width}")
    return values


def _fen(text: str, where: str) -> int:
    """Yuan as WeChat writes them (``100.00``, ``-0.60000``) in fen, exactly."""
    if not _YUAN.fullmatch(text):
        raise MalformedStatement(f"{where}: {text[:20]!r} is not an amount")
    try:
        fen = Decimal(text) * 100
    except InvalidOperation:  # the pattern above admits only numbers; kept for certainty
        raise MalformedStatement(f"{where}: {text[:20]!r} is not an amount") from None
    if fen != fen.to_integral_value():
        raise MalformedStatement(f"{where}: {text} is not a whole number of fen")
    return int(fen)


def _line(row: dict[str, str], number: int, mchid: str) -> StatementLine:
    where = f"line {number}"
    if row["商户号"] != mchid:
        raise MalformedStatement(f"{where}: 商户号 {row['商户号'][:20]!r} is not this merchant")
    if row["货币种类"] != "CNY":
        raise MalformedStatement(f"{where}: 货币种类 {row['货币种类'][:10]!r} is not CNY")
    try:
        at = datetime.strptime(row["交易时间"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).astimezone(UTC)
    except ValueError:
        raise MalformedStatement(f"{where}: 交易时间 {row['交易时间'][:30]!r} is not a time") from None
    order_no, txn_id = row["商户订单号"], row["微信订单号"]
    if not _MERCHANT_NO.fullmatch(order_no):
        raise MalformedStatement(f"{where}: 商户订单号 missing or not of its form")
    if not _WECHAT_ID.fullmatch(txn_id):
        raise MalformedStatement(f"{where}: 微信订单号 missing or not of its form")
    fee = _fen(row["手续费"], f"{where} 手续费")
    state = row["交易状态"]
    if state == "SUCCESS":
        amount = _fen(row["应结订单金额"], f"{where} 应结订单金额")
        if amount <= 0:
            raise MalformedStatement(f"{where}: a payment of {amount} fen")
        return StatementLine("payment", order_no, txn_id, amount, fee, at)
    if state == "REFUND":
        amount = _fen(row["退款金额"], f"{where} 退款金额")
        if amount <= 0:
            raise MalformedStatement(f"{where}: a refund of {amount} fen")
        refund_id, refund_no = row["微信退款单号"], row["商户退款单号"]
        if not _WECHAT_ID.fullmatch(refund_id) or refund_id == "0":
            raise MalformedStatement(f"{where}: 微信退款单号 missing or not of its form")
        if refund_no and not _MERCHANT_NO.fullmatch(refund_no):
            raise MalformedStatement(f"{where}: 商户退款单号 not of its form")
        return StatementLine(
            "refund", order_no, txn_id, amount, fee, at, refund_no=refund_no or None, refund_id=refund_id
        )
    # REVOKED (a card-reader payment taken back) and anything newer: not a form this site makes.
    raise MalformedStatement(f"{where}: 交易状态 {state[:20]!r} is neither SUCCESS nor REFUND")


def parse_tradebill(raw: bytes, mchid: str) -> list[StatementLine]:
    """The lines of one day's ALL trade bill of merchant ``mchid`` (gzip or plain). Raises
    MalformedStatement, saying where, for anything not in the published form."""
    lines = [(n, text.rstrip("\r")) for n, text in enumerate(_text(unpack(raw)).split("\n"), start=1)]
    lines = [(n, text) for n, text in lines if text.strip()]
    if not lines or tuple(lines[0][1].split(",")) != HEADER:
        raise MalformedStatement("line 1 is not the header of an ALL trade bill (27 columns, 交易时间 to 费率备注)")
    ends = next((i for i, (_, text) in enumerate(lines) if tuple(text.split(",")) == SUMMARY_HEADER), None)
    # The summary header and its one line close the file; without them it may have been cut short.
    if ends is None or len(lines) != ends + 2:
        raise MalformedStatement("the file does not end with the summary (总交易单数, ...) and its one line")
    found: list[StatementLine] = []
    sums = {column: 0 for column, _ in CHECKED_TOTALS}
    for number, text in lines[1:ends]:
        row = dict(zip(HEADER, _values(text, number, len(HEADER)), strict=True))
        found.append(_line(row, number, mchid))
        for column in sums:
            sums[column] += _fen(row[column], f"line {number} {column}")
    number, text = lines[-1]
    summary = dict(zip(SUMMARY_HEADER, _values(text, number, len(SUMMARY_HEADER)), strict=True))
    if not _COUNT.fullmatch(summary["总交易单数"]) or int(summary["总交易单数"]) != len(found):
        raise MalformedStatement(f"line {number}: 总交易单数 {summary['总交易单数'][:12]!r}, but {len(found)} lines")
    for column, total in CHECKED_TOTALS:
        if _fen(summary[total], f"line {number} {total}") != sums[column]:
            raise MalformedStatement(f"line {number}: {total} {summary[total][:20]} is not the sum of {column}")
    return found
