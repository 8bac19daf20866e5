"""The Alipay adapter's refunds (alipay.trade.refund, then the refund query), the refund
notification, and the daily statement (its address, the download, the GBK zip), against the local
fake of Alipay's gateway in ``tests/provider_kits/alipay_refunds.py``, which keeps Alipay's books.

No database: these are the adapter's answers, not what billing makes of them."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from heyon_site.providers import alipay_bill
from heyon_site.providers.alipay import AlipayProvider
from heyon_site.providers.alipay_bill import parse_statement, write_statement
from heyon_site.providers.base import (
    MalformedStatement,
    ProviderUnavailable,
    RefundRequest,
    StatementLine,
    StatementNotReady,
)

from tests.fakes import serving
from tests.provider_kits.alipay import APP_ID, BEIJING, KIT, content, keys, verifies
from tests.provider_kits.alipay_refunds import (
    ACCOUNT,
    COLUMNS,
    LIST_END,
    LIST_START,
    REFUNDS_KIT,
    SUBJECT_CN,
    AlipayRefundsFakeApi,
    BillRow,
    detail_text,
    fee_of,
    read_statement,
    statement_zip,
    zip_of,
)

ORDER = "2601010000000001"
TOTAL = 10000  # 100.00 yuan
PART = 3000  # 30.00 yuan
TRADE = "2026010122001400000000000001"  # Alipay's number of ORDER's payment, where no fake is needed


@pytest.fixture
def fake() -> Iterator[AlipayRefundsFakeApi]:
    with serving(REFUNDS_KIT.fake_api()) as api:
        assert isinstance(api, AlipayRefundsFakeApi)
        yield api


@pytest.fixture
def provider(fake: AlipayRefundsFakeApi) -> AlipayProvider:
    return AlipayProvider(KIT.config(fake.base_url))


@pytest.fixture
def reader() -> AlipayProvider:
    """The adapter where no gateway is needed (notifications, statement files): nothing listens."""
    return AlipayProvider(KIT.config("http://127.0.0.1:9"))


@pytest.fixture
def trade_no(fake: AlipayRefundsFakeApi) -> str:
    """ORDER, paid 100.00 at Alipay; the merchant's balance holds 500.00."""
    fake.balance_fen = 50000
    return REFUNDS_KIT.pay(fake, ORDER, TOTAL)


def ask(trade_no: str, amount_fen: int = PART, refund_no: str = "RF2601010000000001", *, order_no: str = ORDER,
        total_fen: int = TOTAL) -> RefundRequest:
    return RefundRequest(order_no=order_no, refund_no=refund_no, amount_fen=amount_fen, total_fen=total_fen,
                         txn_id=trade_no, reason="卡密已被使用，退款")


def methods(fake: AlipayRefundsFakeApi) -> list[str]:
    """The open-API methods the site called, in order."""
    return [dict(parse_qsl(body.decode()))["method"] for verb, _, body in fake.seen if verb == "POST"]


def books(fake: AlipayRefundsFakeApi) -> tuple[int, int | None]:
    """What Alipay paid back of ORDER, and the merchant's balance left."""
    return fake.refunded_fen(ORDER, done_only=True), fake.balance_fen


# ------------------------------------------------------------------ refunds


def test_a_refund_paid_back_at_once_has_succeeded(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                   trade_no: str) -> None:
    result = provider.refund(ask(trade_no))
    assert (result.state, result.provider_refund_id) == ("succeeded", f"{trade_no}:RF2601010000000001")
    assert result.detail.startswith("fund_change Y")
    assert books(fake) == (PART, 50000 - PART)
    assert fake.trades[ORDER].status == "TRADE_SUCCESS"  # a partial refund leaves the trade open
    assert methods(fake) == ["alipay.trade.refund"]


def test_the_refund_request_is_signed_and_says_what_alipay_documents(provider: AlipayProvider,
                                                                     fake: AlipayRefundsFakeApi, trade_no: str) -> None:
    provider.refund(ask(trade_no, 1))
    [(_, _, body)] = fake.seen
    params = dict(parse_qsl(body.decode()))
    assert verifies(keys().app, content(params), params["sign"])
    assert {k: params[k] for k in ("app_id", "method", "charset", "sign_type", "version")} == {
        "app_id": APP_ID, "method": "alipay.trade.refund", "charset": "utf-8", "sign_type": "RSA2", "version": "1.0"}
    assert json.loads(params["biz_content"]) == {
        "out_trade_no": ORDER, "trade_no": trade_no, "refund_amount": "0.01", "out_request_no": "RF2601010000000001",
        "refund_reason": "卡密已被使用，退款"}


def test_a_full_refund_closes_the_trade_at_alipay(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                  trade_no: str) -> None:
    assert provider.refund(ask(trade_no, TOTAL)).state == "succeeded"
    assert fake.trades[ORDER].status == "TRADE_CLOSED"
    assert books(fake) == (TOTAL, 50000 - TOTAL)


def test_the_same_refund_twice_pays_back_once(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                              trade_no: str) -> None:
    first = provider.refund(ask(trade_no))
    again = provider.refund(ask(trade_no))
    # The repeat moves nothing (fund_change N); the refund query finds the refund made before.
    assert (first.state, again.state) == ("succeeded", "succeeded")
    assert again.provider_refund_id == first.provider_refund_id
    assert again.detail.startswith("REFUND_SUCCESS")
    assert books(fake) == (PART, 50000 - PART)
    assert methods(fake) == ["alipay.trade.refund", "alipay.trade.refund", "alipay.trade.fastpay.refund.query"]


def test_a_refund_whose_answer_was_lost_is_asked_again_and_pays_back_once(provider: AlipayProvider,
                                                                         fake: AlipayRefundsFakeApi,
                                                                         trade_no: str) -> None:
    fake.drop_answer_next = 1  # Alipay made the refund; its answer never reached us
    with pytest.raises(ProviderUnavailable):
        provider.refund(ask(trade_no))
    assert provider.refund(ask(trade_no)).state == "succeeded"
    assert books(fake) == (PART, 50000 - PART)


def test_two_refunds_of_one_trade_are_two(provider: AlipayProvider, fake: AlipayRefundsFakeApi, trade_no: str) -> None:
    assert provider.refund(ask(trade_no, PART, "RF-A")).state == "succeeded"
    assert provider.refund(ask(trade_no, PART, "RF-B")).state == "succeeded"
    assert books(fake) == (2 * PART, 50000 - 2 * PART)


def test_a_refund_accepted_but_not_paid_yet_is_pending_until_alipay_pays_it(provider: AlipayProvider,
                                                                           fake: AlipayRefundsFakeApi,
                                                                           trade_no: str) -> None:
    fake.finish_refunds = False
    request = ask(trade_no)
    first = provider.refund(request)
    assert (first.state, first.provider_refund_id) == ("pending", None)
    assert methods(fake) == ["alipay.trade.refund", "alipay.trade.fastpay.refund.query"]
    # Asked again while Alipay is still at it: the query finds nothing finished, so the same
    # request goes again (Alipay's advice), is answered N, and nothing is paid twice.
    assert provider.refund_status(request).state == "pending"
    assert books(fake) == (0, 50000)
    fake.finish_pending()
    done = provider.refund_status(request)
    assert (done.state, done.provider_refund_id) == ("succeeded", f"{trade_no}:RF2601010000000001")
    assert books(fake) == (PART, 50000 - PART)


def test_refund_status_of_a_refund_alipay_never_received_sends_it_again(provider: AlipayProvider,
                                                                        fake: AlipayRefundsFakeApi,
                                                                        trade_no: str) -> None:
    # No record at Alipay is not "failed": the request may never have arrived.
    result = provider.refund_status(ask(trade_no))
    assert result.state == "succeeded"
    assert methods(fake) == ["alipay.trade.fastpay.refund.query", "alipay.trade.refund"]
    assert books(fake) == (PART, 50000 - PART)
    # From now on the query alone answers.
    assert provider.refund_status(ask(trade_no)).state == "succeeded"
    assert methods(fake)[2:] == ["alipay.trade.fastpay.refund.query"]
    assert books(fake) == (PART, 50000 - PART)


def test_refund_status_is_failed_only_when_the_request_itself_is_refused(provider: AlipayProvider,
                                                                         fake: AlipayRefundsFakeApi,
                                                                         trade_no: str) -> None:
    fake.balance_fen = 100  # 1.00 left: Alipay refuses a refund of 30.00
    result = provider.refund_status(ask(trade_no))
    assert (result.state, result.detail.split()[0]) == ("failed", "ACQ.SELLER_BALANCE_NOT_ENOUGH")
    assert methods(fake) == ["alipay.trade.fastpay.refund.query", "alipay.trade.refund"]
    assert books(fake) == (0, 100)


def _unknown_trade(fake: AlipayRefundsFakeApi, trade_no: str) -> RefundRequest:
    return ask("2026010122001400000000009999")


def _unpaid_trade(fake: AlipayRefundsFakeApi, trade_no: str) -> RefundRequest:
    return ask(KIT.open_cashier(fake, "2601010000000002", TOTAL), order_no="2601010000000002")


def _finished_trade(fake: AlipayRefundsFakeApi, trade_no: str) -> RefundRequest:
    fake.trades[ORDER].status = "TRADE_FINISHED"  # past the refund period
    return ask(trade_no)


def _more_than_is_left(fake: AlipayRefundsFakeApi, trade_no: str) -> RefundRequest:
    earlier_refund(fake, trade_no, 8000)
    return ask(trade_no, PART)  # 80.00 + 30.00 > 100.00


def _balance_too_low(fake: AlipayRefundsFakeApi, trade_no: str) -> RefundRequest:
    fake.balance_fen = PART - 1
    return ask(trade_no)


def _same_number_other_amount(fake: AlipayRefundsFakeApi, trade_no: str) -> RefundRequest:
    earlier_refund(fake, trade_no, 1000, "RF2601010000000001")
    return ask(trade_no, PART, "RF2601010000000001")


def earlier_refund(fake: AlipayRefundsFakeApi, trade_no: str, amount_fen: int, refund_no: str = "RF-EARLIER") -> None:
    """An earlier refund of ORDER, made through the site's own adapter."""
    assert AlipayProvider(KIT.config(fake.base_url)).refund(ask(trade_no, amount_fen, refund_no)).state == "succeeded"


REFUSED: dict[str, tuple[Callable[[AlipayRefundsFakeApi, str], RefundRequest], str]] = {
    "trade unknown to Alipay": (_unknown_trade, "ACQ.TRADE_NOT_EXIST"),
    "trade not paid": (_unpaid_trade, "ACQ.TRADE_STATUS_ERROR"),
    "trade finished": (_finished_trade, "ACQ.TRADE_HAS_FINISHED"),
    "more than is left of the trade": (_more_than_is_left, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"),
    "merchant balance too low": (_balance_too_low, "ACQ.SELLER_BALANCE_NOT_ENOUGH"),
    "same number, other amount": (_same_number_other_amount, "ACQ.DISCORDANT_REPEAT_REQUEST"),
}


@pytest.mark.parametrize(("setup", "sub_code"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_refund_has_failed_and_moves_no_money(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                        trade_no: str, setup: Callable[..., RefundRequest],
                                                        sub_code: str) -> None:
    request = setup(fake, trade_no)
    before = (dict(fake.refunds), fake.balance_fen)
    result = provider.refund(request)
    assert (result.state, result.provider_refund_id, result.detail.split()[0]) == ("failed", None, sub_code)
    assert len(result.detail) <= 120  # it is kept in a column of 120
    assert (dict(fake.refunds), fake.balance_fen) == before
    assert fake.refunded_fen(ORDER) <= TOTAL


def test_a_success_of_another_amount_under_our_number_is_not_taken_as_ours(provider: AlipayProvider,
                                                                         fake: AlipayRefundsFakeApi,
                                                                         trade_no: str) -> None:
    assert provider.refund(ask(trade_no, PART)).state == "succeeded"
    result = provider.refund_status(ask(trade_no, 2000))
    assert result.state == "failed"
    assert result.detail == "REFUND_SUCCESS of 30.00, not the 20.00 asked"
    assert books(fake) == (PART, 50000 - PART)


FAILURES = {
    "down": lambda fake: setattr(fake, "fail_next", 1),
    "garbled": lambda fake: setattr(fake, "answer_with", "garbled"),
    "unsigned": lambda fake: setattr(fake, "answer_with", "unsigned"),
    "signed by another key": lambda fake: setattr(fake, "answer_with", "other"),
    "tampered after signing": lambda fake: setattr(fake, "tamper", lambda text: text.replace('"30.00"', '"3.00"')),
    "ACQ.SYSTEM_ERROR": lambda fake: setattr(fake, "system_error_next", 1),
}


@pytest.mark.parametrize("call", ["refund", "refund_status"])
@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_no_usable_answer_is_provider_unavailable_and_a_retry_pays_once(provider: AlipayProvider,
                                                                        fake: AlipayRefundsFakeApi, trade_no: str,
                                                                        call: str, failure: Callable[..., None]) -> None:
    failure(fake)
    with pytest.raises(ProviderUnavailable):
        getattr(provider, call)(ask(trade_no))
    fake.answer_with, fake.tamper = "alipay", None
    assert getattr(provider, call)(ask(trade_no)).state == "succeeded"
    assert books(fake) == (PART, 50000 - PART)


def test_a_tampered_fund_change_is_not_believed(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                trade_no: str) -> None:
    fake.finish_refunds = False
    fake.tamper = lambda text: text.replace('"fund_change":"N"', '"fund_change":"Y"')
    with pytest.raises(ProviderUnavailable, match="does not verify"):
        provider.refund(ask(trade_no))


def test_an_answer_about_another_trade_is_provider_unavailable(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                               trade_no: str) -> None:
    # Genuinely signed by Alipay, but about another trade than the order we named: Alipay goes
    # by trade_no, and a trade_no of another order (a bug of ours) is never taken as this order's.
    other = REFUNDS_KIT.pay(fake, "2601010000000009", TOTAL)
    for call in (provider.refund, provider.refund_status):
        with pytest.raises(ProviderUnavailable, match="another trade"):
            call(ask(other, order_no=ORDER))


BAD_REQUESTS = {
    "more than the payment": {"amount_fen": TOTAL + 1},
    "nothing": {"amount_fen": 0},
    "refund_no too long": {"refund_no": "R" * 65},
    "refund_no with a space": {"refund_no": "RF 1"},
    "order number not ours": {"order_no": "HEYON-1"},
}


@pytest.mark.parametrize("change", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_request_not_of_alipays_form_is_a_bug_here_and_never_sent(provider: AlipayProvider,
                                                                    fake: AlipayRefundsFakeApi, trade_no: str,
                                                                    change: dict[str, object]) -> None:
    request = replace(ask(trade_no), **change)  # type: ignore[arg-type]
    for call in (provider.refund, provider.refund_status):
        with pytest.raises(ValueError):
            call(request)
    assert fake.seen == []


# ------------------------------------------------------------------ the refund notification


def test_a_refund_notification_names_our_refund_request(reader: AlipayProvider) -> None:
    body, headers = REFUNDS_KIT.refund_notification(ORDER, TOTAL, TRADE, PART, "RF2601010000000001")
    event = reader.parse_callback(body, headers)
    assert (event.kind, event.order_no, event.amount_fen, event.refund_no, event.txn_id) == (
        "refunded", ORDER, PART, "RF2601010000000001", f"{TRADE}:RF2601010000000001")


def test_a_full_refund_notification_names_it_too(reader: AlipayProvider) -> None:
    body, headers = REFUNDS_KIT.refund_notification(ORDER, TOTAL, TRADE, TOTAL, "RF2601010000000002")
    event = reader.parse_callback(body, headers)
    assert (event.kind, event.amount_fen, event.refund_no) == ("refunded", TOTAL, "RF2601010000000002")


def test_a_refund_made_in_alipays_console_names_no_request_of_ours(reader: AlipayProvider) -> None:
    body, headers = REFUNDS_KIT.refund_notification(ORDER, TOTAL, TRADE, PART, None)
    event = reader.parse_callback(body, headers)
    assert (event.kind, event.refund_no, event.txn_id) == ("refunded", None, f"{TRADE}:total-{PART}")


# ------------------------------------------------------------------ the statement


def beijing_day(days_ago: int) -> date:
    return datetime.now(BEIJING).date() - timedelta(days=days_ago)


def at(day: date, hms: str) -> datetime:
    return datetime.combine(day, datetime.strptime(hms, "%H:%M:%S").time(), BEIJING)


@pytest.fixture
def yesterday(fake: AlipayRefundsFakeApi) -> date:
    """Yesterday (Beijing): two payments with Chinese product names, and a partial refund of one
    made through the adapter; a payment of the day before, refunded yesterday in full."""
    day = beijing_day(1)
    fake.clock = lambda: at(day, "23:59:58")
    REFUNDS_KIT.pay(fake, "2601010000000010", 9999, at=at(beijing_day(2), "23:59:59"), subject="话费卡 100元")
    REFUNDS_KIT.pay(fake, ORDER, TOTAL, at=at(day, "00:00:00"))
    REFUNDS_KIT.pay(fake, "2601010000000011", 5000, at=at(day, "12:30:05"), subject="移动充值卡，50元")
    provider = AlipayProvider(KIT.config(fake.base_url))
    assert provider.refund(ask(fake.trades[ORDER].trade_no, PART, "RF-P1")).state == "succeeded"
    assert provider.refund(ask(fake.trades["2601010000000010"].trade_no, 9999, "RF-F1", order_no="2601010000000010",
                               total_fen=9999)).state == "succeeded"
    fake.seen.clear()
    return day


def test_the_statement_is_fetched_and_read(provider: AlipayProvider, fake: AlipayRefundsFakeApi, yesterday: date) -> None:
    name, raw = provider.fetch_statement(yesterday)
    assert name == f"alipay_trade_{yesterday:%Y%m%d}.csv.zip"
    [(verb, path, body), (verb2, path2, _)] = fake.seen
    params = dict(parse_qsl(body.decode()))
    assert (verb, path, params["method"], verb2, path2) == (
        "POST", "/gateway.do", "alipay.data.dataservice.bill.downloadurl.query", "GET", "/downloadBillFile.resource")
    assert json.loads(params["biz_content"]) == {"bill_type": "trade", "bill_date": yesterday.isoformat()}
    assert verifies(keys().app, content(params), params["sign"])

    lines = provider.parse_statement(raw)
    trade = {order: fake.trades[order].trade_no for order in (ORDER, "2601010000000010", "2601010000000011")}
    assert lines == [
        StatementLine("payment", ORDER, trade[ORDER], TOTAL, 60, at(yesterday, "00:00:00")),
        StatementLine("payment", "2601010000000011", trade["2601010000000011"], 5000, 30, at(yesterday, "12:30:05")),
        StatementLine("refund", ORDER, trade[ORDER], PART, -18, at(yesterday, "23:59:58"), "RF-P1",
                      f"{trade[ORDER]}:RF-P1"),
        StatementLine("refund", "2601010000000010", trade["2601010000000010"], 9999, -60, at(yesterday, "23:59:58"),
                      "RF-F1", f"{trade['2601010000000010']}:RF-F1"),
    ]
    assert all(line.at.utcoffset() == timedelta(hours=8) for line in lines)
    # The file is as Alipay serves it: GBK without a byte order mark, the names in Chinese.
    read = read_statement(raw)
    assert [row["商品名称"] for row in read.rows] == [SUBJECT_CN, "移动充值卡，50元", SUBJECT_CN, "话费卡 100元"]
    assert read.names[1] == f"{ACCOUNT}_{yesterday:%Y%m%d}_业务明细.csv"


def test_the_payment_of_the_day_before_is_in_that_days_statement(provider: AlipayProvider,
                                                                 fake: AlipayRefundsFakeApi, yesterday: date) -> None:
    _, raw = provider.fetch_statement(beijing_day(2))
    [line] = provider.parse_statement(raw)
    assert (line.kind, line.order_no, line.amount_fen, line.fee_fen) == ("payment", "2601010000000010", 9999, 60)
    assert line.at == at(beijing_day(2), "23:59:59")


def test_a_day_without_business_is_an_empty_statement(provider: AlipayProvider, fake: AlipayRefundsFakeApi) -> None:
    _, raw = provider.fetch_statement(beijing_day(3))
    assert provider.parse_statement(raw) == []


def test_no_statement_for_today_nor_before_alipay_makes_it(provider: AlipayProvider,
                                                           fake: AlipayRefundsFakeApi) -> None:
    for day in (beijing_day(0), beijing_day(-1)):
        with pytest.raises(StatementNotReady):
            provider.fetch_statement(day)
    assert fake.seen == []  # not even asked: a day not over has no statement
    fake.not_ready.add(beijing_day(1))  # before ten in the morning
    with pytest.raises(StatementNotReady, match="isp.bill_not_exist"):
        provider.fetch_statement(beijing_day(1))


def test_statement_failures_are_provider_unavailable(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake.answer_with = "unsigned"
    with pytest.raises(ProviderUnavailable, match="not a signed answer"):
        provider.fetch_statement(beijing_day(1))
    fake.answer_with = "alipay"
    fake.fail_next = 1
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        provider.fetch_statement(beijing_day(1))
    # The link lasts 30 seconds: one that has expired is refused by the download.
    monkeypatch.setattr("tests.provider_kits.alipay_refunds.LINK_LIFETIME", timedelta(seconds=-1))
    with pytest.raises(ProviderUnavailable, match="download: HTTP 403") as caught:
        provider.fetch_statement(beijing_day(1))
    assert "token" not in str(caught.value)  # the link is never in a message


def test_a_malformed_statement_is_served_as_it_is_and_refused_on_reading(provider: AlipayProvider,
                                                                         fake: AlipayRefundsFakeApi) -> None:
    fake.statements[beijing_day(1)] = b"<html>not found</html>"
    _, raw = provider.fetch_statement(beijing_day(1))
    assert raw == b"<html>not found</html>"  # archived as served
    with pytest.raises(MalformedStatement, match="not a zip"):
        provider.parse_statement(raw)


DAY = date(2026, 3, 14)
ROWS = [
    BillRow("2026031422001400000000000001", "2603140000000001", "交易", "话费卡，100元", at(DAY, "09:00:00"),
            at(DAY, "09:00:07"), 10000, 60),
    BillRow("2026031422001400000000000001", "2603140000000001", "退款", "话费卡，100元", at(DAY, "09:00:00"),
            at(DAY, "18:30:00"), 2550, -15, "RF2603140000000001"),
]
EXPECTED = [
    StatementLine("payment", "2603140000000001", "2026031422001400000000000001", 10000, 60, at(DAY, "09:00:07")),
    StatementLine("refund", "2603140000000001", "2026031422001400000000000001", 2550, -15, at(DAY, "18:30:00"),
                  "RF2603140000000001", "2026031422001400000000000001:RF2603140000000001"),
]


def test_columns_are_found_by_name_in_any_order(reader: AlipayProvider) -> None:
    shuffled = list(reversed(COLUMNS))
    assert reader.parse_statement(statement_zip(ROWS, DAY, text=detail_text(ROWS, DAY, columns=shuffled))) == EXPECTED
    # Half-width brackets and stray spaces in the header name the same columns.
    plain = [f" {c.replace('（', '(').replace('）', ')')}\t" for c in COLUMNS]
    assert reader.parse_statement(statement_zip(ROWS, DAY, text=detail_text(ROWS, DAY, header=plain))) == EXPECTED


def test_the_summary_file_is_not_read(reader: AlipayProvider) -> None:
    assert reader.parse_statement(statement_zip(ROWS, DAY, summary=b"\xff\xfe not even text")) == EXPECTED


def test_a_console_refund_has_no_request_number_of_ours(reader: AlipayProvider) -> None:
    [_, refund] = reader.parse_statement(statement_zip([ROWS[0], replace(ROWS[1], refund_no="")], DAY))
    assert (refund.kind, refund.refund_no, refund.refund_id) == ("refund", None, None)


def _text(**changes: object) -> str:
    return detail_text(ROWS, DAY, **changes)  # type: ignore[arg-type]


def _narrow() -> str:
    """The kit's file with the last field of its first row left out."""
    lines = _text().split("\n")
    first = lines.index(LIST_START) + 2
    lines[first] = lines[first].rsplit(",", 1)[0]
    return "\n".join(lines)


MALFORMED: dict[str, tuple[Callable[[], bytes], str]] = {
    "not a zip": (lambda: b"PK\x03\x04 but not really", "not a zip"),
    "empty": (lambda: b"", "not a zip"),
    "no detail file": (lambda: zip_of([(f"{ACCOUNT}_20260314_业务明细(汇总).csv", b"x")]), "one file ending _业务明细.csv"),
    "two detail files": (lambda: zip_of([("a_业务明细.csv", b"x"), ("b_业务明细.csv", b"x")]), "it has 2"),
    "detail in UTF-8": (lambda: statement_zip(ROWS, DAY, encoding="utf-8"), "is UTF-8; Alipay writes GBK"),
    "detail with a UTF-8 byte order mark": (lambda: statement_zip(ROWS, DAY, encoding="utf-8-sig"), "byte order mark"),
    "detail in UTF-16": (lambda: statement_zip(ROWS, DAY, encoding="utf-16"), "not GBK"),
    "no 服务费 column": (lambda: statement_zip(ROWS, DAY, text=_text(columns=[c for c in COLUMNS if c != "服务费（元）"])),
                        "lacks 服务费（元）"),
    "no header": (lambda: statement_zip(ROWS, DAY, text="#支付宝业务明细查询\n"), "no header row"),
    "cut short": (lambda: statement_zip(ROWS, DAY, text=_text(end=False)), "cut short"),
    "a row too narrow": (lambda: statement_zip(ROWS, DAY, text=_narrow()), "24 fields, the header has 25"),
    "unknown business type": (lambda: statement_zip(ROWS, DAY, text=_text().replace("交易\t", "冻结\t")),
                              "neither 交易 nor 退款"),
    "amount with an exponent": (lambda: statement_zip(ROWS, DAY, text=_text().replace(",100.00,", ",1e4,", 1)),
                                "not an amount"),
    "amount with three decimals": (lambda: statement_zip(ROWS, DAY, text=_text().replace(",100.00,", ",100.000,", 1)),
                                   "not an amount"),
    "refund printed positive": (lambda: statement_zip(ROWS, DAY, text=_text().replace(",-25.50,", ",25.50,", 1)),
                                "wrong sign"),
    "time not of its form": (lambda: statement_zip(ROWS, DAY, text=_text().replace(f"{DAY} 09:00:07", "2026/3/14 9:00")),
                             "完成时间"),
    "a row after the end": (lambda: statement_zip(ROWS, DAY, text=_text() + "1,2,3\n"), "after the end"),
}


@pytest.mark.parametrize(("make", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_statement_says_what_is_wrong(reader: AlipayProvider, make: Callable[[], bytes],
                                                  message: str) -> None:
    with pytest.raises(MalformedStatement, match=message):
        reader.parse_statement(make())


def test_the_kits_own_statement_reads_as_expected(reader: AlipayProvider) -> None:
    # Guards the malformed cases above: unchanged, the same file parses.
    assert reader.parse_statement(statement_zip(ROWS, DAY)) == EXPECTED


# ------------------------------------------------------------------ write_statement (the sandbox's)


LINES = [
    StatementLine("payment", "2603140000000001", "2026031422001400000000000001", 10000, 60, at(DAY, "00:00:00")),
    StatementLine("payment", "2603140000000002", "2026031422001400000000000002", 1, 0,
                  datetime(2026, 3, 14, 15, 59, 59, tzinfo=UTC)),  # 23:59:59 in Beijing
    StatementLine("refund", "2603140000000001", "2026031422001400000000000001", 10000, -60, at(DAY, "12:00:00"),
                  "RF2603140000000001", "2026031422001400000000000001:RF2603140000000001"),
    StatementLine("refund", "2603140000000003", "2026031322001400000000000003", 123456, -741, at(DAY, "23:00:00"),
                  "2603140000000003", "2026031322001400000000000003:2603140000000003"),
]


def test_write_statement_reads_back_through_parse_statement(reader: AlipayProvider) -> None:
    assert reader.parse_statement(write_statement(LINES, DAY)) == LINES
    assert parse_statement(write_statement([], DAY)) == []


def test_write_statement_is_alipays_format_as_the_kit_reads_it() -> None:
    read = read_statement(write_statement(LINES, DAY, account=ACCOUNT, subject=SUBJECT_CN))
    assert read.names == [f"{ACCOUNT}_20260314_业务明细.csv", f"{ACCOUNT}_20260314_业务明细(汇总).csv"]
    assert read.comments_before == ["#支付宝业务明细查询", f"#账号：[{ACCOUNT}]",
                                    "#起始日期：[2026年03月14日 00:00:00]   终止日期：[2026年03月15日 00:00:00]", LIST_START]
    assert read.header == list(COLUMNS)
    assert read.comments_after == [
        LIST_END, "#交易合计：2笔，商家实收共100.01元，商家优惠共0.00元",
        "#退款合计：2笔，商家实收退款共-1334.56元，商家优惠退款共0.00元", "#导出时间：[2026年03月15日 09:00:00]"]
    first, second, refund, _ = read.rows
    assert {k: first[k] for k in ("支付宝交易号", "商户订单号", "业务类型", "商品名称", "完成时间", "订单金额（元）",
                                  "商家实收（元）", "退款批次号/请求号", "服务费（元）")} == {
        "支付宝交易号": "2026031422001400000000000001\t", "商户订单号": "2603140000000001\t", "业务类型": "交易\t",
        "商品名称": SUBJECT_CN, "完成时间": "2026-03-14 00:00:00", "订单金额（元）": "100.00", "商家实收（元）": "100.00",
        "退款批次号/请求号": "\t", "服务费（元）": "-0.60"}
    assert (second["完成时间"], second["订单金额（元）"], second["服务费（元）"]) == ("2026-03-14 23:59:59", "0.01", "0.00")
    assert {k: refund[k] for k in ("业务类型", "订单金额（元）", "商家实收（元）", "退款批次号/请求号", "服务费（元）")} == {
        "业务类型": "退款\t", "订单金额（元）": "-100.00", "商家实收（元）": "-100.00",
        "退款批次号/请求号": "RF2603140000000001\t", "服务费（元）": "0.60"}


def test_write_statement_of_the_fakes_books_matches_alipays(provider: AlipayProvider, fake: AlipayRefundsFakeApi,
                                                            yesterday: date) -> None:
    # What the sandbox would serve for the same day reads as what the fake (as Alipay) serves.
    _, raw = provider.fetch_statement(yesterday)
    lines = provider.parse_statement(raw)
    assert provider.parse_statement(write_statement(lines, yesterday)) == lines
    assert fee_of(TOTAL) == 60 and [line.fee_fen for line in lines] == [60, 30, -18, -60]


def test_the_bill_module_names_refunds_as_the_notification_does(reader: AlipayProvider) -> None:
    body, headers = REFUNDS_KIT.refund_notification(ORDER, TOTAL, TRADE, PART, "RF-P1")
    assert reader.parse_callback(body, headers).txn_id == alipay_bill.refund_id(TRADE, "RF-P1")
