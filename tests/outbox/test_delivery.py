"""The outbox end to end, on each database: a credit writes its messages in its own transaction,
`flask outbox work` delivers them through each channel (a real SMTP server, the SMS providers'
fakes), and nothing is lost or sent twice by a crash, a restart, two workers at once or a lease
that ran out; failures back off, then go to the dead letters; the log channel keeps the
customer's details to itself."""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from heyon_site.billing import notices
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Card, OutboxMessage, utcnow
from heyon_site.outbox import email
from heyon_site.outbox.channels import Channel, Outgoing
from heyon_site.outbox.registry import channels_for
from heyon_site.outbox.templates import render
from heyon_site.outbox.worker import LEASE, backoff, claim, work_once
from tests.kit import (CARD, OPENING_FEN, PIN, balance, cli, make_card, new_client, notification, order, secrets_in,
                       site_for_tests)
from tests.outbox.conftest import SENDER, smtp_settings
from tests.payments.kit import post_notify
from tests.provider_kits import aliyun_sms, twilio
from tests.provider_kits.aliyun_sms import AliyunSmsFake
from tests.provider_kits.smtp import USER, Pki, SmtpServer
from tests.provider_kits.twilio import TwilioFake

PHONE, MAIL = "+8613800138000", "buyer@example.com"


def credited_order(client: FlaskClient, locale: str = "en") -> tuple[int, str]:
    """A card with a phone, an order of 100.00 on it with an e-mail address, paid and credited
    through the sandbox's signed notification: (order id, order number)."""
    card_id = make_card(balance_fen=OPENING_FEN)
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(msisdn=PHONE)))
    made = in_write_transaction(lambda: start_recharge(db.session, card_id, 10000, "sandbox", locale, email=MAIL))
    order_id, order_no = made.id, made.order_no
    answer = post_notify(client, notification(order_no, "100.00"))
    assert answer.get_data(as_text=True) == "success", answer.get_data(as_text=True)
    return order_id, order_no


def messages() -> list[OutboxMessage]:
    db.session.rollback()  # a fresh snapshot: other sessions, threads and processes wrote them
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def enqueue_sms(count: int, now: datetime | None = None) -> list[str]:
    """``count`` low-balance SMS due at ``now``; their keys."""
    card_id = make_card(balance_fen=0)
    keys = [f"test:{n}:sms" for n in range(count)]
    in_write_transaction(lambda: [notices.enqueue(db.session, key, "sms", f"+86138001{n:05d}", notices.LOW_BALANCE,
                                                  {"last4": "1234", "balance": "3.00"}, "en", card_id, now)
                                  for n, key in enumerate(keys)])
    return keys


class WorkerDied(BaseException):
    """A worker process killed where it stood: nothing of it catches this, nothing is recorded."""


class DiesAfterSending:
    """A channel that sends, then the worker dies before it can record that it did."""

    def __init__(self, channel: Channel) -> None:
        self.name, self.channel = channel.name, channel

    def send(self, message: Outgoing) -> None:
        self.channel.send(message)
        raise WorkerDied(message.key)


# ------------------------------------------------------------------ written with the credit


def test_a_credit_that_rolls_back_takes_its_messages_with_it(app: Flask, client: FlaskClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    card_id = make_card(balance_fen=OPENING_FEN)
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(msisdn=PHONE)))
    made = in_write_transaction(lambda: start_recharge(db.session, card_id, 10000, "sandbox", "en", email=MAIL))
    order_id, order_no = made.id, made.order_no
    written_inside: list[int] = []
    original = notices.recharge_credited

    def written_then_failed(s: Any, oid: int, now: datetime | None = None) -> int:
        """The messages are written, then something later in the same transaction fails."""
        original(s, oid, now)
        written_inside.append(s.scalar(select(func.count()).select_from(OutboxMessage)))
        raise RuntimeError("the credit's transaction fails after the messages were written")

    monkeypatch.setattr(notices, "recharge_credited", written_then_failed)
    fields = notification(order_no, "100.00")
    assert post_notify(client, fields).status_code == 500
    assert written_inside == [2]  # they were there, inside the transaction ...
    assert messages() == []  # ... and went with it
    assert balance() == OPENING_FEN and order(order_no).status == "pending"

    monkeypatch.undo()
    assert post_notify(client, fields).get_data(as_text=True) == "success"  # the provider notifies again
    rows = messages()
    assert sorted((m.key, m.channel, m.recipient, m.status) for m in rows) == [
        (f"order:{order_id}:credited:email", "email", MAIL, "pending"),
        (f"order:{order_id}:credited:sms", "sms", PHONE, "pending")]
    assert balance() == OPENING_FEN + 10000
    assert post_notify(client, fields).get_data(as_text=True) == "success"  # told once more: a duplicate
    assert len(messages()) == 2  # writes no second message


# ------------------------------------------------------------------ delivered by `flask outbox work`


@pytest.mark.parametrize("provider", ["aliyun", "twilio"])
def test_outbox_work_once_delivers_through_each_channel(app: Flask, client: FlaskClient, smtp: SmtpServer, pki: Pki,
                                                        aliyun_fake: AliyunSmsFake, twilio_fake: TwilioFake,
                                                        provider: str) -> None:
    sms_settings = (aliyun_sms.settings(aliyun_fake.base_url) if provider == "aliyun"
                    else twilio.settings(twilio_fake.base_url))
    app.config.update({**smtp_settings(smtp, pki), **sms_settings})
    order_id, order_no = credited_order(client, locale="en")
    params = json.loads(messages()[0].params)
    subject, text = render("recharge_credited", "en", params)
    assert params["order_no"] == order_no and "100.00" in text

    assert cli(app.test_cli_runner(), "outbox", "work", "--once").output.strip() == "outbox: sent 2"

    [mail] = smtp.mailbox.received
    assert (mail.rcpt_tos, mail.tls, mail.login) == ([MAIL], True, USER)
    assert (mail.message["Subject"], mail.message["To"], mail.message["From"]) == (subject, MAIL, SENDER)
    assert mail.message.get_content().rstrip("\n") == text
    assert mail.message["Message-ID"] == email.message_id(f"order:{order_id}:credited:email", SENDER)
    if provider == "aliyun":
        [sms] = aliyun_fake.sent
        assert (sms["PhoneNumbers"], sms["TemplateCode"], sms["OutId"]) == (
            PHONE, "SMS_480001", f"order:{order_id}:credited:sms")
        assert json.loads(sms["TemplateParam"]) == params
        assert twilio_fake.requests == []
    else:
        [sms] = twilio_fake.sent
        assert (sms["to"], sms["body"]) == (PHONE, text)
        assert twilio_fake.tokens() == [f"order:{order_id}:credited:sms"]
        assert aliyun_fake.requests == []
    assert [(m.status, m.attempts, m.last_error) for m in messages()] == [("sent", 1, None)] * 2
    assert all(m.sent_at is not None for m in messages())

    assert cli(app.test_cli_runner(), "outbox", "work", "--once").output.strip() == "outbox: nothing due"
    assert len(smtp.mailbox.received) == 1 and len(aliyun_fake.sent) + len(twilio_fake.sent) == 1


@pytest.mark.parametrize("locale", ["zh_Hans", "zh_Hant"])
def test_a_message_in_chinese_is_rendered_and_sent(app: Flask, client: FlaskClient, locale: str) -> None:
    """The site's own languages: once given up unsent, when the locale was handed to Babel as zh-Hans."""
    credited_order(client, locale=locale)
    assert cli(app.test_cli_runner(), "outbox", "work", "--once").output.strip() == "outbox: sent 2"
    assert [m.status for m in messages()] == ["sent", "sent"]


def test_a_crash_between_the_credit_and_the_delivery_loses_no_message(database: str, smtp: SmtpServer, pki: Pki,
                                                                      twilio_fake: TwilioFake) -> None:
    """The process that credited dies before anything is sent; a worker that had claimed the
    messages dies too (more than a lease ago). A new process on the same database sends them."""
    with site_for_tests(database) as first:
        order_id, _ = credited_order(new_client(first))
        assert len(claim(utcnow())) == 2  # a worker claimed them, then it was gone
        # Time passes beyond the lease (moved back rather than waited for: the command reads the clock).
        moved = [(m.id, m.next_attempt_at - LEASE - timedelta(seconds=1)) for m in messages()]
        in_write_transaction(lambda: [db.session.execute(update(OutboxMessage).where(OutboxMessage.id == id_).values(
            next_attempt_at=at)) for id_, at in moved])
    # Everything of the first process is gone (its engine disposed of); the rows are not.
    with site_for_tests(database, **smtp_settings(smtp, pki), **twilio.settings(twilio_fake.base_url)) as restarted:
        assert [m.status for m in messages()] == ["pending", "pending"]
        assert cli(restarted.test_cli_runner(), "outbox", "work", "--once").output.strip() == "outbox: sent 2"
        assert [(m.status, m.attempts) for m in messages()] == [("sent", 2)] * 2
    assert [m.rcpt_tos for m in smtp.mailbox.received] == [[MAIL]]
    assert twilio_fake.tokens() == [f"order:{order_id}:credited:sms"]


def test_two_workers_at_once_never_send_the_same_message_twice(app: Flask, twilio_fake: TwilioFake) -> None:
    """Four workers, each in its own thread with its own session, claim in small batches; every
    worker holds its first batch before any sends (a barrier), so they truly overlap. Each message
    reaches the fake once: counted by request, not by what Twilio's idempotency would hide."""
    keys = enqueue_sms(40)
    app.config.update(twilio.settings(twilio_fake.base_url))
    workers = 4
    together = threading.Barrier(workers, timeout=30)
    outcomes: list[Counter[str]] = [Counter() for _ in range(workers)]
    failures: list[BaseException] = []

    class AllHoldingABatch:
        name = "sms"

        def __init__(self, channel: Channel) -> None:
            self.channel, self.waited = channel, False

        def send(self, message: Outgoing) -> None:
            if not self.waited:
                self.waited = True
                together.wait()
            self.channel.send(message)

    def worker(n: int) -> None:
        try:
            with app.app_context():
                channels = {"sms": AllHoldingABatch(channels_for(app.config)["sms"])}
                while counts := work_once(channels, limit=5):
                    outcomes[n].update(counts)
        except BaseException as exc:  # reported below: an exception in a thread would pass silently
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert all(outcome["sent"] > 0 for outcome in outcomes)  # every worker sent some
    assert sum(outcome["sent"] for outcome in outcomes) == 40
    assert Counter(twilio_fake.tokens()) == Counter({key: 1 for key in keys})
    assert [(m.status, m.attempts) for m in messages()] == [("sent", 1)] * 40


@pytest.mark.parametrize("provider", ["twilio", "email", "aliyun"])
def test_a_lease_that_ran_out_after_a_crash_mid_send_sends_again_under_the_same_key(
        app: Flask, client: FlaskClient, smtp: SmtpServer, pki: Pki, aliyun_fake: AliyunSmsFake,
        twilio_fake: TwilioFake, provider: str) -> None:
    """The worker sent and died before recording it: after the lease the message is sent again,
    under the same key. Twilio takes it as the same request (one SMS); the e-mail arrives with the
    same Message-ID; Alibaba Cloud does not deduplicate, so the same OutId arrives twice (README:
    at least once)."""
    app.config.update({**smtp_settings(smtp, pki), **(aliyun_sms.settings(aliyun_fake.base_url)
                                                      if provider == "aliyun" else twilio.settings(twilio_fake.base_url))})
    order_id, _ = credited_order(client)
    kind = "email" if provider == "email" else "sms"
    key = f"order:{order_id}:credited:{kind}"
    in_write_transaction(lambda: db.session.execute(update(OutboxMessage).where(OutboxMessage.key != key)
                                                    .values(status="sent")))  # only this one is left to send
    real = channels_for(app.config)
    t0 = utcnow()
    with pytest.raises(WorkerDied):
        work_once({**real, kind: DiesAfterSending(real[kind])}, now=t0)
    [row] = [m for m in messages() if m.key == key]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, t0 + LEASE)

    assert work_once(real, now=t0 + LEASE - timedelta(seconds=1)) == Counter()  # still the dead worker's
    assert work_once(real, now=t0 + LEASE + timedelta(seconds=1)) == Counter(sent=1)
    [row] = [m for m in messages() if m.key == key]
    assert (row.status, row.attempts) == ("sent", 2)
    if provider == "twilio":
        assert twilio_fake.tokens() == [key, key] and len(twilio_fake.sent) == 1
    elif provider == "email":
        assert [m.message["Message-ID"] for m in smtp.mailbox.received] == [email.message_id(key, SENDER)] * 2
    else:
        assert [m["OutId"] for m in aliyun_fake.sent] == [key, key]


# ------------------------------------------------------------------ failures


def test_the_backoff_doubles_from_30_seconds_up_to_6_hours() -> None:
    assert [backoff(n) for n in range(1, 8)] == [timedelta(seconds=30 * 2 ** k) for k in range(7)]
    assert backoff(10) == timedelta(seconds=30 * 2 ** 9)  # 4 h 16 min
    assert backoff(11) == backoff(50) == timedelta(hours=6)


def test_a_failing_provider_is_tried_again_on_the_backoff_schedule(app: Flask, twilio_fake: TwilioFake) -> None:
    [key] = enqueue_sms(1)
    app.config.update(twilio.settings(twilio_fake.base_url))
    channels = channels_for(app.config)
    twilio_fake.fail_next = 3  # 503 three times, then it answers
    now = utcnow()
    for attempt in (1, 2, 3):
        assert work_once(channels, now=now) == Counter(retry=1)
        [row] = messages()
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", attempt, now + backoff(attempt))
        assert row.last_error is not None and "twilio 503" in row.last_error
        assert work_once(channels, now=row.next_attempt_at - timedelta(seconds=1)) == Counter()  # not yet
        now = row.next_attempt_at
    assert work_once(channels, now=now) == Counter(sent=1)
    [row] = messages()
    assert (row.status, row.attempts, row.last_error) == ("sent", 4, None)
    assert twilio_fake.tokens() == [key]  # the three 503s never reached the API behind them


def test_after_the_configured_tries_a_message_is_a_dead_letter(app: Flask, twilio_fake: TwilioFake) -> None:
    enqueue_sms(1)
    app.config.update({**twilio.settings(twilio_fake.base_url), "HEYON_OUTBOX_MAX_TRIES": 3})
    channels = channels_for(app.config)
    twilio_fake.answer_next = [(429, 20429)] * 10
    now = utcnow()
    assert [work_once(channels, now=now + timedelta(days=d)) for d in range(4)] == [
        Counter(retry=1), Counter(retry=1), Counter(dead=1), Counter()]
    [row] = messages()
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error is not None and "twilio 429 error 20429" in row.last_error
    assert len(twilio_fake.requests) == 3


@pytest.mark.parametrize("provider", ["twilio", "aliyun", "email"])
def test_a_permanent_failure_is_a_dead_letter_at_once(app: Flask, smtp: SmtpServer, pki: Pki,
                                                      aliyun_fake: AliyunSmsFake, twilio_fake: TwilioFake,
                                                      provider: str, caplog: pytest.LogCaptureFixture) -> None:
    card_id = make_card(balance_fen=0)
    recipient = {"twilio": "13800138000", "aliyun": "+86 1380013800", "email": "gone@example.com"}[provider]
    kind = "email" if provider == "email" else "sms"
    in_write_transaction(lambda: notices.enqueue(db.session, "test:dead", kind, recipient, notices.LOW_BALANCE,
                                                 {"last4": "1234", "balance": "3.00"}, "en", card_id))
    smtp.mailbox.refuse[recipient] = f"550 5.1.1 <{recipient}>: Recipient address rejected"
    app.config.update({**smtp_settings(smtp, pki), **(aliyun_sms.settings(aliyun_fake.base_url)
                                                      if provider == "aliyun" else twilio.settings(twilio_fake.base_url))})
    caplog.set_level(logging.WARNING)
    assert work_once(channels_for(app.config)) == Counter(dead=1)
    [row] = messages()
    assert (row.status, row.attempts) == ("dead", 1)
    expected = {"twilio": "error 21211", "aliyun": "isv.MOBILE_NUMBER_ILLEGAL", "email": "smtp 550"}[provider]
    assert row.last_error is not None and expected in row.last_error
    # The provider repeated the address; neither the kept error nor the log does.
    assert recipient not in row.last_error and recipient not in caplog.text
    assert "given up" in caplog.text
    assert work_once(channels_for(app.config), now=utcnow() + timedelta(days=30)) == Counter()


# ------------------------------------------------------------------ the log channel


def test_the_log_channel_never_logs_a_card_password_or_a_whole_phone_number_or_address(
        app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    _, order_no = credited_order(client, locale="en")
    caplog.set_level(logging.DEBUG)
    assert cli(app.test_cli_runner(), "outbox", "work", "--once").output.strip() == "outbox: sent 2"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "recharge_credited" in logged and order_no in logged  # the messages were logged ...
    assert "****8000" in logged and "b***@example.com" in logged  # ... to masked recipients
    for whole in (PHONE, PHONE[3:], MAIL, "buyer@"):
        assert whole not in logged
    assert secrets_in(logged) == [] and PIN not in logged and CARD not in logged
    assert all(PIN not in m.params and CARD not in m.params for m in messages())  # nor are they in the outbox


def test_a_missing_provider_setting_stops_the_command_cleanly_naming_it(app: Flask) -> None:
    app.config.update({"HEYON_SMS_PROVIDER": "twilio", "HEYON_TWILIO_FROM": twilio.FROM})
    result = cli(app.test_cli_runner(), "outbox", "work", "--once")
    assert result.exit_code != 0 and "HEYON_TWILIO_ACCOUNT_SID" in result.output


def test_without_settings_both_channels_are_the_log(app: Flask) -> None:
    channels: dict[str, Any] = channels_for(app.config)
    assert {kind: type(channel).__name__ for kind, channel in channels.items()} == {"email": "LogChannel",
                                                                                    "sms": "LogChannel"}
