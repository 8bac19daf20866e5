"""Alipay's daily trade statement (bill_type ``trade``, 业务账单): reading and writing its file.

``alipay.data.dataservice.bill.downloadurl.query`` hands out a short-lived link to a zip of two
CSV files, both in GBK, their names in GBK too (without the zip's UTF-8 flag):
``<account>_<yyyymmdd>_业务明细.csv``, a line per payment and per refund, and
``<account>_<yyyymmdd>_业务明细(汇总).csv``, the day's totals (not read here: the lines say all).

The detail file: comment lines starting with "#" (title, account, period, a start marker), a
header row, the rows, an end marker and more comment lines (totals, export time). Its published
header has 25 columns (``COLUMNS``); they are found by name, not by position. Alipay ends many
values with a tab (so that a spreadsheet keeps a 28-digit trade number as text). A refund row
(业务类型 退款) has negative amounts, the refund's time as 完成时间 and the refund request's number
(our out_request_no) in 退款批次号/请求号; 服务费 is negative where Alipay charges it (a payment)
and positive where it gives part of it back (a refund).

Amounts become fen through Decimal, exactly; times are Beijing time, made timezone-aware.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from heyon_site.billing.money import yuan
from heyon_site.providers.base import MalformedStatement, StatementLine

BEIJING = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DETAIL_SUFFIX = "_业务明细.csv"
SUMMARY_SUFFIX = "_业务明细(汇总).csv"
#: The detail file's header as Alipay publishes it.
COLUMNS = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)
TRADE_NO, ORDER_NO, KIND, FINISHED, AMOUNT, REQUEST_NO, FEE = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "完成时间",
    "订单金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
)
#: What a line needs; the other columns may be missing from a file without harm.
REQUIRED = (TRADE_NO, ORDER_NO, KIND, FINISHED, AMOUNT, REQUEST_NO, FEE)
KINDS = {"交易": "payment", "退款": "refund"}
DETAIL_START = "#-----------------------------------------业务明细列表----------------------------------------"
DETAIL_END = "#-----------------------------------------业务明细列表结束------------------------------------"
SUMMARY_START = "#-----------------------------------------业务汇总列表----------------------------------------"
SUMMARY_END = "#----------------------------------------业务汇总列表结束-------------------------------------"
SUMMARY_COLUMNS = (
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
)
#: A merchant account as the statement's "#账号" line prints it (the partner id and "0156").
DEFAULT_ACCOUNT = "20880000000000010156"
# A day's statement of this site is kilobytes; anything near this is not a statement (a zip bomb).
MAX_DETAIL_BYTES = 64 * 1024 * 1024
# "12.34", "-0.06", "0": Alipay prints two decimals; a sign only in front.
_AMOUNT = re.compile(r"(-?)(\d{1,10})(?:\.(\d{1,2}))?", re.ASCII)
_MASK_UTF8_NAME = 0x800


def _canonical(name: str) -> str:
    """A header name as compared: NFKC (full-width brackets as ASCII), without the padding."""
    return unicodedata.normalize("NFKC", name).strip()


# ------------------------------------------------------------------ reading


def parse_statement(raw: bytes) -> list[StatementLine]:
    """The lines of a statement zip as Alipay serves it; MalformedStatement says what is wrong."""
    name, data = _detail_file(raw)
    return _parse_detail(name, _decode(name, data))


def _detail_file(raw: bytes) -> tuple[str, bytes]:
    try:
        # Names without the UTF-8 flag are GBK, as Alipay writes them (zipfile would read cp437).
        archive = zipfile.ZipFile(io.BytesIO(raw), metadata_encoding="gbk")
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, EOFError) as exc:
        raise MalformedStatement(f"not a zip file ({type(exc).__name__})") from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        details = [info for info in members if info.filename.rsplit("/", 1)[-1].endswith(DETAIL_SUFFIX)]
        if len(details) != 1:
            held = ", ".join(repr(info.filename) for info in members[:5]) or "nothing"
            raise MalformedStatement(
                f"the zip should hold one file ending {DETAIL_SUFFIX}, it has {len(details)} (it holds {held})"
            )
        info = details[0]
        if info.file_size > MAX_DETAIL_BYTES:
            raise MalformedStatement(f"{info.filename} is {info.file_size} bytes, too large for a statement")
        try:
            return info.filename, archive.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            # RuntimeError: encrypted; NotImplementedError: a compression zipfile cannot read.
            raise MalformedStatement(f"{info.filename} cannot be read from the zip ({type(exc).__name__})") from None


def _decode(name: str, data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        raise MalformedStatement(f"{name} starts with a UTF-8 byte order mark; Alipay writes GBK")
    if not data.isascii():
        # GBK Chinese is (in practice) never valid UTF-8, while UTF-8 bytes often decode as GBK
        # nonsense: a file that reads as UTF-8 was re-saved by someone, not served by Alipay.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise MalformedStatement(f"{name} is UTF-8; Alipay writes GBK")
    try:
        # GB18030 reads every GBK file the same way, and a rare name in 对方账户 beyond GBK too.
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise MalformedStatement(f"{name} is not GBK text (byte {exc.start})") from None


def _parse_detail(name: str, text: str) -> list[StatementLine]:
    header: dict[str, int] | None = None
    width = 0
    ended = False
    lines: list[StatementLine] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):
            if header is not None and "业务明细列表结束" in line:
                ended = True
            elif header is not None and not ended:
                raise MalformedStatement(f"{name} line {number}: a comment inside the list of rows")
            continue
        try:
            [fields] = csv.reader([line])
        except csv.Error as exc:
            raise MalformedStatement(f"{name} line {number}: not a CSV row ({exc})") from None
        if header is None:
            header, width = _header(name, number, fields), len(fields)
            continue
        if ended:
            raise MalformedStatement(f"{name} line {number}: a row after the end of the list")
        if len(fields) != width:
            raise MalformedStatement(f"{name} line {number}: {len(fields)} fields, the header has {width}")
        lines.append(_line(name, number, {column: fields[i].strip() for column, i in header.items()}))
    if header is None:
        raise MalformedStatement(f"{name}: no header row (支付宝交易号, 商户订单号, ...)")
    if not ended:
        raise MalformedStatement(f"{name}: no end-of-list line (业务明细列表结束): the file is cut short")
    return lines


def _header(name: str, number: int, fields: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, field in enumerate(fields):
        column = _canonical(field)
        if column in found:
            raise MalformedStatement(f"{name} line {number}: column {column} appears twice")
        found[column] = i
    missing = [column for column in REQUIRED if _canonical(column) not in found]
    if missing:
        raise MalformedStatement(f"{name} line {number}: the header lacks {', '.join(missing)}")
    return {column: found[_canonical(column)] for column in REQUIRED}


def _line(name: str, number: int, row: dict[str, str]) -> StatementLine:
    where = f"{name} line {number}"
    kind = KINDS.get(row[KIND])
    if kind is None:
        raise MalformedStatement(f"{where}: 业务类型 {row[KIND][:20]!r} is neither 交易 nor 退款")
    order_no, trade_no = row[ORDER_NO], row[TRADE_NO]
    if not order_no or not trade_no:
        raise MalformedStatement(f"{where}: no {ORDER_NO if not order_no else TRADE_NO}")
    amount = _fen(where, AMOUNT, row[AMOUNT])
    # A payment is money in, a refund money out: Alipay prints the refund's amounts negative.
    if (kind == "payment" and amount <= 0) or (kind == "refund" and amount >= 0):
        raise MalformedStatement(f"{where}: {AMOUNT} {row[AMOUNT]!r} has the wrong sign for {row[KIND]}")
    fee = _fen(where, FEE, row[FEE]) if row[FEE] else 0
    try:
        at = datetime.strptime(row[FINISHED], TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        raise MalformedStatement(f"{where}: {FINISHED} {row[FINISHED][:30]!r} is not a time of its form") from None
    refund_no = (row[REQUEST_NO] or None) if kind == "refund" else None
    return StatementLine(
        kind="payment" if kind == "payment" else "refund",
        order_no=order_no,
        txn_id=trade_no,
        amount_fen=abs(amount),
        # Alipay prints what it takes as negative: our fee_fen is positive when charged.
        fee_fen=-fee,
        at=at,
        refund_no=refund_no,
        refund_id=refund_id(trade_no, refund_no) if refund_no else None,
    )


def _fen(where: str, column: str, text: str) -> int:
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise MalformedStatement(f"{where}: {column} {text[:20]!r} is not an amount in yuan")
    sign, whole, cents = match.groups()
    fen = Decimal(f"{whole}.{cents or '0'}") * 100
    return int(fen) * (-1 if sign else 1)


def refund_id(trade_no: str, refund_no: str) -> str:
    """Alipay gives a refund no id of its own: it is named by its trade and request number,
    written as the refund notification's event names it."""
    return f"{trade_no}:{refund_no}"


# ------------------------------------------------------------------ writing


class _GbkNamed(zipfile.ZipInfo):
    """A zip member whose name is written in GBK without the UTF-8 flag, as Alipay's are
    (zipfile itself writes a non-ASCII name as UTF-8 and sets the flag)."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # zipfile's own hook, hence the name
        return self.filename.encode("gbk"), self.flag_bits & ~_MASK_UTF8_NAME


def _day_text(day: date) -> str:
    return f"{day:%Y}年{day:%m}月{day:%d}日"


def write_statement(
    lines: Iterable[StatementLine],
    day: date,
    *,
    account: str = DEFAULT_ACCOUNT,
    subject: str = "话费充值卡充值",
    exported_at: datetime | None = None,
) -> bytes:
    """A statement zip for ``day`` in Alipay's format, holding ``lines`` (for the sandbox, which
    serves statements as Alipay would). ``parse_statement`` reads back the same lines, except
    ``refund_id``, which it always names as ``refund_id`` does. Lines carry no product name,
    store or buyer: every row gets ``subject`` and empty store and buyer columns. The export
    time printed defaults to 09:00 the next morning, Beijing time (when Alipay makes it)."""
    rows = list(lines)
    stamp = day.strftime("%Y%m%d")
    start = datetime.combine(day, time(), BEIJING)
    exported = (exported_at or start + timedelta(days=1, hours=9)).astimezone(BEIJING)
    payments = [line for line in rows if line.kind == "payment"]
    refunds = [line for line in rows if line.kind == "refund"]
    paid_fen = sum(line.amount_fen for line in payments)
    refunded_fen = sum(line.amount_fen for line in refunds)
    fee_fen = sum(line.fee_fen for line in rows)  # charged on payments less what refunds gave back
    period = f"#起始日期：[{_day_text(day)} 00:00:00]   终止日期：[{_day_text(day + timedelta(days=1))} 00:00:00]"
    exported_text = f"#导出时间：[{_day_text(exported.date())} {exported:%H:%M:%S}]"

    detail = io.StringIO(newline="")
    writer = csv.writer(detail, lineterminator="\r\n")
    for comment in ("#支付宝业务明细查询", f"#账号：[{account}]", period, DETAIL_START):
        detail.write(comment + "\r\n")
    writer.writerow(COLUMNS)
    for line in rows:
        sign = 1 if line.kind == "payment" else -1
        finished = line.at.astimezone(BEIJING).strftime(TIME_FORMAT)
        writer.writerow(
            [
                f"{line.txn_id}\t",
                f"{line.order_no}\t",
                f"{'交易' if line.kind == 'payment' else '退款'}\t",
                subject,
                finished,  # 创建时间: the lines do not keep when the trade was made
                finished,
                "\t",
                "\t",
                "\t",
                "\t",
                "\t",
                yuan(sign * line.amount_fen),
                yuan(sign * line.amount_fen),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "0.00\t",
                "0.00",
                f"{line.refund_no or ''}\t",
                yuan(-line.fee_fen),
                "0.00",
                "",
            ]
        )
    for comment in (
        DETAIL_END,
        f"#交易合计：{len(payments)}笔，商家实收共{yuan(paid_fen)}元，商家优惠共0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{yuan(-refunded_fen)}元，商家优惠退款共0.00元",
        exported_text,
    ):
        detail.write(comment + "\r\n")

    summary = io.StringIO(newline="")
    for comment in ("#支付宝业务汇总查询", f"#账号：[{account}]", period, SUMMARY_START):
        summary.write(comment + "\r\n")
    summary_writer = csv.writer(summary, lineterminator="\r\n")
    summary_writer.writerow(SUMMARY_COLUMNS)
    net_fen = paid_fen - refunded_fen
    summary_writer.writerow(
        [
            "合计",
            "",
            len(payments),
            len(refunds),
            yuan(net_fen),
            yuan(net_fen),
            "0.00",
            "0.00",
            "0.00",
            yuan(-fee_fen),
            "0.00",
            yuan(net_fen - fee_fen),
        ]
    )
    summary.write(SUMMARY_END + "\r\n" + exported_text + "\r\n")

    out = io.BytesIO()
    moment = exported.replace(tzinfo=None).timetuple()[:6]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for suffix, text in ((DETAIL_SUFFIX, detail.getvalue()), (SUMMARY_SUFFIX, summary.getvalue())):
            member = _GbkNamed(f"{account}_{stamp}{suffix}", date_time=moment)
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, text.encode("gbk"))
    return out.getvalue()
