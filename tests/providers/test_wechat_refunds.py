"""WeChat Pay refunds (申请退款, 查询单笔退款, REFUND.* notifications) and the daily trade bill
(申请交易账单 and its download), against the fake API of ``tests/provider_kits/wechat_refunds.py``.

What is proved: a refund is named by our out_refund_no and WeChat refunds it once however often
it is sent; an answer that is not WeChat's, or none, is ProviderUnavailable; a refusal is
"failed" with WeChat's code only when WeChat holds no refund under the number; a query that finds
nothing sends the same request again and never reads as failed; REFUND.CLOSED is a
"refund_failed" event. The bill is fetched with our signature, checked against the SHA1 of
WeChat's signed answer, and read exactly (fen, never float); anything out of form is refused.
"""
from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

import pytest
from flask import Flask

from heyon_site import create_app
from heyon_site.billing.events import ProviderEvent
from heyon_site.providers import get as get_provider
from heyon_site.providers.base import (
    MalformedCallback,
    MalformedStatement,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    StatementLine,
    StatementNotReady,
)
from heyon_site.providers.wechat import WechatPayProvider

from tests.fakes import serving
from tests.kit import TEST_CONFIG, held
from tests.provider_kits.wechat import BEIJING, KIT, new_refund_id
from tests.provider_kits.wechat_refunds import (
    REFUNDS,
    BillLine,
    WechatRefundFake,
    bill_csv,
    fake_api,
    refund_notice,
)

ORDER = "202612020915000001"
REFUND_NO = "RF000000000101"
NOTIFY_URL = "http://heyon.test/pay/notify/wechat"  # the payments' notify URL, on TEST_CONFIG's SERVER_NAME


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def fake() -> Iterator[WechatRefundFake]:
    with serving(fake_api()) as api:
        assert isinstance(api, WechatRefundFake)
        yield api


@pytest.fixture
def app(database: str, fake: WechatRefundFake) -> Iterator[Flask]:
    """The site with WeChat Pay as its only provider, its API the fake one."""
    config = {**TEST_CONFIG, "DATABASE_URL": database, "HEYON_PROVIDERS": ("wechat",), **KIT.config(fake.base_url)}
    with held(create_app(config)) as app:
        yield app


@pytest.fixture
def provider(app: Flask) -> WechatPayProvider:
    found = get_provider("wechat")
    assert isinstance(found, WechatPayProvider)
    return found


def paid(fake: WechatRefundFake, order_no: str = ORDER, amount_fen: int = 10000) -> str:
    """A payment WeChat holds; its transaction_id."""
    return KIT.pay(fake, order_no, amount_fen)


def ask(refund_no: str = REFUND_NO, amount_fen: int = 4000, order_no: str = ORDER, total_fen: int = 10000,
        reason: str = "Heyon card: payment not credited") -> RefundRequest:
    return RefundRequest(order_no=order_no, refund_no=refund_no, amount_fen=amount_fen, total_fen=total_fen,
                         txn_id="4200002026120200000000000001", reason=reason)


def refund_calls(fake: WechatRefundFake) -> list[tuple[str, str]]:
    """The refund requests and refund queries the fake received, in order."""
    return [(method, path) for method, path, _ in fake.seen if path.startswith(REFUNDS)]


# ------------------------------------------------------------------ refunds


def test_a_refund_paid_at_once_has_succeeded(provider: WechatPayProvider, fake: WechatRefundFake) -> None:
    paid(fake)
    fake.new_refund_status = "SUCCESS"  # paid by Change: done within the call
    result = provider.refund(ask())
    held_refund = fake.refunds[REFUND_NO]
    assert result == RefundResult("succeeded", provider_refund_id=held_refund.refund_id, detail="SUCCESS")
    assert fake.refund_requests == [{
        "out_trade_no": ORDER, "out_refund_no": REFUND_NO, "notify_url": NOTIFY_URL,
        "amount": {"refund": 4000, "total": 10000, "currency": "CNY"}, "reason": "Heyon card: payment not credited"}]
    assert fake.refunded_fen(ORDER) == 4000 and fake.refused == []


def test_a_refund_in_progress_is_pending_until_wechat_says_it_succeeded(provider: WechatPayProvider,
                                                                        fake: WechatRefundFake) -> None:
    paid(fake)
    first = provider.refund(ask())
    assert (first.state, first.detail) == ("pending", "PROCESSING")
    assert provider.refund_status(ask()) == first  # still in progress: asked, not assumed
    fake.settle(REFUND_NO, "SUCCESS")
    assert provider.refund_status(ask()) == RefundResult("succeeded", first.provider_refund_id, "SUCCESS")
    # One request, then queries only: nothing was sent twice.
    assert refund_calls(fake) == [("POST", REFUNDS)] + [("GET", f"{REFUNDS}/{REFUND_NO}")] * 2
    assert fake.refunded_fen(ORDER) == 4000


@pytest.mark.parametrize(("status", "state"), [("SUCCESS", "succeeded"), ("ABNORMAL", "succeeded"),
                                               ("CLOSED", "failed")])
def test_how_wechat_finished_a_refund(provider: WechatPayProvider, fake: WechatRefundFake, status: str,
                                      state: str) -> None:
    # ABNORMAL: sent back and bounced off the payer's closed card; the money has left this order
    # all the same (as for the notification). CLOSED: never paid back.
    paid(fake)
    provider.refund(ask())
    held_refund = fake.settle(REFUND_NO, status)
    assert provider.refund_status(ask()) == RefundResult(state, held_refund.refund_id, status)


@pytest.mark.parametrize("code", ["NOT_ENOUGH", "USER_ACCOUNT_ABNORMAL", "NO_AUTH"])
def test_a_refusal_is_failed_with_wechats_code(provider: WechatPayProvider, fake: WechatRefundFake, code: str) -> None:
    paid(fake)
    fake.refuse_next = [code]
    assert provider.refund(ask()) == RefundResult("failed", detail=code)
    # Only after WeChat said it holds no refund under the number.
    assert refund_calls(fake) == [("POST", REFUNDS), ("GET", f"{REFUNDS}/{REFUND_NO}")]
    assert fake.refunds == {}


def test_a_refund_of_a_payment_wechat_does_not_know_is_failed(provider: WechatPayProvider) -> None:
    assert provider.refund(ask()) == RefundResult("failed", detail="RESOURCE_NOT_EXISTS")


def test_never_more_is_refunded_than_was_paid(provider: WechatPayProvider, fake: WechatRefundFake) -> None:
    paid(fake)
    assert provider.refund(ask("RF000000000101", 6000)).state == "pending"
    assert provider.refund(ask("RF000000000102", 6000)) == RefundResult("failed", detail="INVALID_REQUEST")
    assert fake.refunded_fen(ORDER) == 6000
    assert provider.refund(ask("RF000000000103", 4000)).state == "pending"  # what is left, exactly
    assert fake.refunded_fen(ORDER) == 10000 and sorted(fake.refunds) == ["RF000000000101", "RF000000000103"]


@pytest.mark.parametrize("down", ["SYSTEM_ERROR", "FREQUENCY_LIMITED", "503"])
def test_no_answer_is_provider_unavailable_and_the_same_request_is_sent_again(
        provider: WechatPayProvider, fake: WechatRefundFake, down: str) -> None:
    paid(fake)
    if down == "503":
        fake.fail_next = 1
    else:
        fake.refuse_next = [down]
    with pytest.raises(ProviderUnavailable):
        provider.refund(ask())
    assert fake.refunds == {}
    assert provider.refund(ask()).state == "pending"
    assert fake.refunded_fen(ORDER) == 4000


@pytest.mark.parametrize("answer_with", ["unsigned", "tampered", "other", "stale", "unknown_serial", "garbled"])
def test_an_answer_not_provably_wechats_is_provider_unavailable_and_refunds_once(
        provider: WechatPayProvider, fake: WechatRefundFake, answer_with: str) -> None:
    paid(fake)
    fake.answer_with = answer_with
    with pytest.raises(ProviderUnavailable):
        provider.refund(ask())
    made = fake.refunds[REFUND_NO]  # WeChat made the refund; only its answer is unusable
    fake.answer_with = "platform"
    assert provider.refund(ask()) == RefundResult("pending", made.refund_id, "PROCESSING")
    assert len(fake.refund_requests) == 2 and list(fake.refunds) == [REFUND_NO]
    assert fake.refunded_fen(ORDER) == 4000


def test_the_same_refund_number_twice_refunds_once(provider: WechatPayProvider, fake: WechatRefundFake) -> None:
    paid(fake)
    first, again = provider.refund(ask()), provider.refund(ask())
    assert first == again and first.provider_refund_id == fake.refunds[REFUND_NO].refund_id
    assert list(fake.refunds) == [REFUND_NO] and fake.refunded_fen(ORDER) == 4000


def test_a_refusal_of_a_refund_already_made_is_not_a_failure(provider: WechatPayProvider,
                                                             fake: WechatRefundFake) -> None:
    paid(fake)
    fake.answer_with = "tampered"  # the first answer lost
    with pytest.raises(ProviderUnavailable):
        provider.refund(ask())
    fake.answer_with, fake.refuse_next = "platform", ["INVALID_REQUEST"]
    assert provider.refund(ask()) == RefundResult("pending", fake.refunds[REFUND_NO].refund_id, "PROCESSING")


def test_a_query_that_finds_nothing_yet_sends_the_same_request_again(provider: WechatPayProvider,
                                                                     fake: WechatRefundFake) -> None:
    paid(fake)
    made = provider.refund(ask())
    fake.hide_refunds = 1  # moments after the refund, the query does not see it yet
    assert provider.refund_status(ask()) == made
    assert refund_calls(fake) == [("POST", REFUNDS), ("GET", f"{REFUNDS}/{REFUND_NO}"), ("POST", REFUNDS)]
    assert list(fake.refunds) == [REFUND_NO] and fake.refunded_fen(ORDER) == 4000


def test_a_refund_whose_request_never_arrived_is_made_by_the_status_query(provider: WechatPayProvider,
                                                                         fake: WechatRefundFake) -> None:
    paid(fake)
    fake.fail_next = 1
    with pytest.raises(ProviderUnavailable):
        provider.refund(ask())
    result = provider.refund_status(ask())
    assert result == RefundResult("pending", fake.refunds[REFUND_NO].refund_id, "PROCESSING")


def test_a_status_query_of_a_refused_refund_is_answered_by_the_refusal(provider: WechatPayProvider,
                                                                       fake: WechatRefundFake) -> None:
    paid(fake)
    fake.refuse_next = ["NOT_ENOUGH"]
    assert provider.refund_status(ask()) == RefundResult("failed", detail="NOT_ENOUGH")


def test_a_number_wechat_holds_for_another_amount_is_provider_unavailable(provider: WechatPayProvider,
                                                                        fake: WechatRefundFake) -> None:
    paid(fake)
    provider.refund(ask(amount_fen=4000))
    with pytest.raises(ProviderUnavailable, match="not of 5000 fen"):
        provider.refund_status(ask(amount_fen=5000))


def test_an_unsigned_query_answer_is_provider_unavailable(provider: WechatPayProvider,
                                                          fake: WechatRefundFake) -> None:
    paid(fake)
    provider.refund(ask())
    fake.settle(REFUND_NO, "SUCCESS")
    fake.answer_with = "unsigned"
    with pytest.raises(ProviderUnavailable):
        provider.refund_status(ask())


@pytest.mark.parametrize("refund_no", ["RF/../000001", "RF 1", "", "R" * 65])
def test_a_refund_number_wechat_would_not_take_is_never_sent(provider: WechatPayProvider, fake: WechatRefundFake,
                                                             refund_no: str) -> None:
    with pytest.raises(ProviderUnavailable):
        provider.refund(ask(refund_no))
    with pytest.raises(ProviderUnavailable):
        provider.refund_status(ask(refund_no))
    assert fake.seen == []


def test_a_long_reason_is_cut_to_what_wechat_takes(provider: WechatPayProvider, fake: WechatRefundFake) -> None:
    paid(fake)
    provider.refund(ask(reason="充值卡付款未入账" * 10))  # 240 bytes of UTF-8
    assert fake.refund_requests[0]["reason"] == ("充值卡付款未入账" * 10)[:26]  # 78 bytes: no character cut


# ------------------------------------------------------------------ refund notifications


def test_refund_closed_is_a_refund_failed_event(provider: WechatPayProvider) -> None:
    refund_id = new_refund_id()
    body, headers = refund_notice(ORDER, "4200002026120200000000000001", 4000, 10000, status="CLOSED",
                                  refund_id=refund_id, out_refund_no=REFUND_NO)
    assert provider.parse_callback(body, headers) == ProviderEvent(
        provider="wechat", order_no=ORDER, txn_id=f"{refund_id}:CLOSED", kind="refund_failed", amount_fen=4000,
        refund_no=REFUND_NO)


@pytest.mark.parametrize("status", ["SUCCESS", "ABNORMAL"])
def test_money_returned_names_our_refund_request(provider: WechatPayProvider, status: str) -> None:
    refund_id = new_refund_id()
    body, headers = refund_notice(ORDER, "4200002026120200000000000001", 4000, 10000, status=status,
                                  refund_id=refund_id, out_refund_no=REFUND_NO)
    assert provider.parse_callback(body, headers) == ProviderEvent(
        provider="wechat", order_no=ORDER, txn_id=f"{refund_id}:{status}", kind="refunded", amount_fen=4000,
        refund_no=REFUND_NO)


def test_a_refund_notice_without_out_refund_no_names_no_request(provider: WechatPayProvider) -> None:
    body, headers = refund_notice(ORDER, "4200002026120200000000000001", 4000, 10000, out_refund_no=None)
    event = provider.parse_callback(body, headers)
    assert (event.kind, event.refund_no) == ("refunded", None)


@pytest.mark.parametrize(("tamper", "reason"), [
    ({"out_refund_no": "RF 1/2"}, "out_refund_no"),
    ({"status": "CLOSED", "drop": ("amount",)}, "amount.refund"),
], ids=["an out_refund_no not of its form", "a closed refund without its amount"])
def test_signed_refund_notices_out_of_form_are_malformed(provider: WechatPayProvider, tamper: dict[str, object],
                                                         reason: str) -> None:
    body, headers = refund_notice(ORDER, "4200002026120200000000000001", 4000, 10000, **tamper)  # type: ignore[arg-type]
    with pytest.raises(MalformedCallback, match=reason):
        provider.parse_callback(body, headers)


# ------------------------------------------------------------------ the daily statement


DAY = date(2026, 12, 2)
TXN1, TXN2, TXN3 = "4200002026120200000000000001", "4200002026120200000000000002", "4200002026120200000000000003"
REFUND_ID = "50302026120200000000000000001"


def beijing(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, 2, hour, minute, second, tzinfo=BEIJING)


#: A day: a payment of 100.00 (fee 0.60), one of 0.01 (no fee), 40.00 of the first given back
#: (0.24 of its fee with it), and one of 1,234.56 whose product name has commas in it.
LINES = [
    BillLine(beijing(9, 15), ORDER, TXN1, 10000, 60),
    BillLine(beijing(12, 0, 1), "202612021200000002", TXN2, 1, 0, product="话费卡充值 0.01 元"),
    BillLine(beijing(23, 59, 59), ORDER, TXN1, 4000, -24, refund_id=REFUND_ID, refund_no=REFUND_NO),
    BillLine(beijing(0, 0, 0), "202612020000000003", TXN3, 123456, 741,
             product="Heyon card, 1,234.56 yuan（含赠送，限时）"),
]
EXPECTED = [
    StatementLine("payment", ORDER, TXN1, 10000, 60, datetime(2026, 12, 2, 1, 15, tzinfo=UTC)),
    StatementLine("payment", "202612021200000002", TXN2, 1, 0, datetime(2026, 12, 2, 4, 0, 1, tzinfo=UTC)),
    StatementLine("refund", ORDER, TXN1, 4000, -24, datetime(2026, 12, 2, 15, 59, 59, tzinfo=UTC),
                  refund_no=REFUND_NO, refund_id=REFUND_ID),
    StatementLine("payment", "202612020000000003", TXN3, 123456, 741, datetime(2026, 12, 1, 16, 0, tzinfo=UTC)),
]


def test_the_days_statement_is_fetched_signed_and_checked(provider: WechatPayProvider,
                                                          fake: WechatRefundFake) -> None:
    fake.bills[DAY.isoformat()] = bill = bill_csv(LINES)
    name, raw = provider.fetch_statement(DAY)
    assert name == "wechat-tradebill-2026-12-02.csv.gz"
    assert gzip.decompress(raw) == bill  # kept as WeChat served it
    assert provider.parse_statement(raw) == EXPECTED
    assert [path for _, path, _ in fake.seen] == ["/v3/bill/tradebill", "/v3/billdownload/file"]
    assert fake.refused == []  # both requests carried our valid signature


def test_a_download_changed_on_the_way_is_refused(provider: WechatPayProvider, fake: WechatRefundFake) -> None:
    fake.bills[DAY.isoformat()] = bill_csv(LINES)
    fake.tamper_download = True
    with pytest.raises(ProviderUnavailable, match="SHA1"):
        provider.fetch_statement(DAY)


def test_a_hash_of_the_file_as_downloaded_is_accepted_too(provider: WechatPayProvider,
                                                          fake: WechatRefundFake) -> None:
    fake.bills[DAY.isoformat()] = bill_csv(LINES)
    fake.hash_of = "download"
    _, raw = provider.fetch_statement(DAY)
    assert provider.parse_statement(raw) == EXPECTED


@pytest.mark.parametrize("why", ["NO_STATEMENT_EXIST", "STATEMENT_CREATING"])
def test_a_day_without_a_bill_is_not_ready(provider: WechatPayProvider, fake: WechatRefundFake, why: str) -> None:
    if why == "STATEMENT_CREATING":
        fake.bills_creating.add(DAY.isoformat())
    with pytest.raises(StatementNotReady, match=why):
        provider.fetch_statement(DAY)


@pytest.mark.parametrize("trouble", ["unsigned", "tampered", "other", "503"])
def test_a_bill_answer_not_provably_wechats_is_provider_unavailable(provider: WechatPayProvider,
                                                                     fake: WechatRefundFake, trouble: str) -> None:
    fake.bills[DAY.isoformat()] = bill_csv(LINES)
    if trouble == "503":
        fake.fail_next = 1
    else:
        fake.answer_with = trouble
    with pytest.raises(ProviderUnavailable):
        provider.fetch_statement(DAY)
    assert [path for _, path, _ in fake.seen] == ["/v3/bill/tradebill"]  # nothing downloaded


FORMS: dict[str, Callable[[bytes], bytes]] = {
    "gzip, as the API serves it": lambda bill: gzip.compress(bill),
    "plain, CRLF": lambda bill: bill,
    "plain, LF": lambda bill: bill.replace(b"\r\n", b"\n"),
    "UTF-8 with a BOM": lambda bill: b"\xef\xbb\xbf" + bill,
    "GB18030, saved from the console": lambda bill: bill.decode().encode("gb18030"),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_the_statement_reads_payments_refunds_and_fees_exactly(form: Callable[[bytes], bytes]) -> None:
    provider = WechatPayProvider(KIT.config("http://127.0.0.1:9"))  # reading asks nothing of the API
    assert provider.parse_statement(form(bill_csv(LINES))) == EXPECTED


def test_a_day_without_lines_reads_as_none() -> None:
    provider = WechatPayProvider(KIT.config("http://127.0.0.1:9"))
    assert provider.parse_statement(bill_csv([])) == []


def _replace(old: str, new: str) -> Callable[[bytes], bytes]:
    def change(bill: bytes) -> bytes:
        assert old.encode() in bill, old
        return bill.replace(old.encode(), new.encode(), 1)
    return change


def _bill(*lines: BillLine, **summary: str) -> Callable[[bytes], bytes]:
    return lambda _: bill_csv([*LINES, *lines], summary=summary)


MALFORMED: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda _: b"", "line 1 is not the header"),
    "the old format without 应结订单金额": (_replace("应结订单金额,", ""), "line 1 is not the header"),
    "cut short before the summary": (lambda bill: b"\r\n".join(bill.split(b"\r\n")[:4]), "summary"),
    "a summary counting another number of lines": (_bill(**{"总交易单数": "5"}), "总交易单数"),
    "totals that do not add up": (_bill(**{"应结订单总金额": "1.00"}), "应结订单总金额"),
    "fees that do not add up": (_bill(**{"手续费总金额": "9.99000"}), "手续费总金额"),
    "a fraction of a fen": (_replace("`100.00,", "`100.001,"), "line 2 应结订单金额: 100.001 is not a whole"),
    "a fee of a fraction of a fen": (_replace("`0.60000,", "`0.60500,"), "line 2 手续费"),
    "not an amount": (_replace("`100.00,", "`1e2,"), "not an amount"),
    "another merchant's line": (_bill(BillLine(beijing(8), "202612020800000009", TXN3, 500, 3, mchid="1999999999")),
                                "line 6: 商户号"),
    "another currency": (_bill(BillLine(beijing(8), "202612020800000009", TXN3, 500, 3, currency="USD")), "货币种类"),
    "a revoked payment": (_bill(BillLine(beijing(8), "202612020800000009", TXN3, 500, 3, state="REVOKED")),
                          "交易状态 'REVOKED'"),
    "a refund without WeChat's refund number": (_bill(BillLine(beijing(8), ORDER, TXN1, 100, 0, refund_id="0")),
                                                 "微信退款单号"),
    "a value without its backtick": (_replace(",`话费卡充值", ",话费卡充值"), "line 3: 26 values, not 27"),
    "not a time": (_replace("`2026-12-02 09:15:00,", "`2026-12-02T09:15,"), "交易时间"),
    "a gzip file cut short": (lambda bill: gzip.compress(bill)[:-12], "gzip"),
    "neither UTF-8 nor GB18030": (lambda _: b"\x80\xff" * 40, "neither UTF-8 nor GB18030"),
}


@pytest.mark.parametrize(("change", "where"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_statement_out_of_form_is_refused_saying_where(change: Callable[[bytes], bytes], where: str) -> None:
    provider = WechatPayProvider(KIT.config("http://127.0.0.1:9"))
    with pytest.raises(MalformedStatement) as refused:
        provider.parse_statement(change(bill_csv(LINES)))
    assert where in str(refused.value)
