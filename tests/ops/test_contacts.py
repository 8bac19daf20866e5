"""Customers' phone numbers and e-mail addresses never reach a log line unmasked, whoever writes
it (a view, the outbox worker, a provider's error message); and /metrics counts the outbox."""
from __future__ import annotations

import json
import logging
import sys

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from heyon_site.billing import notices
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import OutboxMessage, utcnow
from heyon_site.ops import logs
from heyon_site.outbox.channels import Outgoing, PermanentFailure, TemporaryFailure
from heyon_site.outbox.worker import work_once
from tests.kit import make_card
from tests.ops.test_metrics import scrape, value

PHONE, MAIL = "+8613800138000", "mei.li@example.com"
ORDER_NO = "2601150123456789"


@pytest.mark.parametrize(("text", "masked"), [
    (f"sent to {MAIL}.", "sent to m***@example.com."),
    ("<Mei.Li+tag@Mail.Example.CN>", "<M***@Mail.Example.CN>"),
    (f"sms {PHONE} failed", "sms ****8000 failed"),
    ("sms +86 138-0013-8000 failed", "sms ****8000 failed"),
    ("call 13800138000 now", "call ****8000 now"),  # eleven digits: a card-like run
    ("call 138 0013 8000 now", "call ****8000 now"),
    ("(+44 20 7946 0958)", "(****0958)"),
    (f"order {ORDER_NO} at 2026-01-15 10:00:00+08:00, 12 ms, 1.50 yuan", None),  # nothing personal: as it was
    ("already masked: m***@example.com ****8000", None),
])
def test_contacts_in_any_text_are_masked(text: str, masked: str | None) -> None:
    assert logs.mask_personal(text) == (masked if masked is not None else text)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("heyon_site.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize("formatter", [logs.JsonFormatter, logs.TextFormatter])
def test_both_formats_mask_message_arguments_and_fields(formatter: type[logging.Formatter]) -> None:
    try:
        raise ValueError(f"no mailbox {MAIL} for {PHONE}")
    except ValueError:
        record = _record("to %s and %s", MAIL, "138 0013 8000", recipient=PHONE, detail=f"<{MAIL}>")
        record.exc_info = sys.exc_info()
        line = formatter().format(record)
    assert MAIL not in line and "13800138000" not in line and "0013" not in line
    assert line.count("m***@example.com") == 3 and line.count("****8000") == 3
    if formatter is logs.JsonFormatter:
        event = json.loads(line)
        assert event["recipient"] == "****8000" and event["detail"] == "<m***@example.com>"


class Refusing:
    """A channel whose provider refuses the message, naming the recipient in its error (some do)."""

    def __init__(self, name: str, error: type[Exception]) -> None:
        self.name, self.error = name, error

    def send(self, message: Outgoing) -> None:
        raise self.error(f"provider refused {message.recipient}")


def test_the_workers_lines_are_masked_as_written(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    card_id = make_card()
    for key, channel, recipient in (("a:sms", "sms", PHONE), ("a:email", "email", MAIL)):
        in_write_transaction(lambda key=key, channel=channel, recipient=recipient: notices.enqueue(
            db.session, key, channel, recipient, notices.LOW_BALANCE, {"last4": "1234", "balance": "5.00"}, "en",
            card_id))
    caplog.set_level(logging.WARNING)
    done = work_once({"sms": Refusing("sms", PermanentFailure), "email": Refusing("email", TemporaryFailure)})
    assert dict(done) == {"dead": 1, "retry": 1}
    lines = [logs.JsonFormatter().format(r) for r in caplog.records if r.name.startswith("heyon_site")]
    assert len(lines) == 2
    written = "\n".join(lines)
    assert MAIL not in written and PHONE not in written and "13800138000" not in written
    assert "m***@example.com" in written and "****8000" in written


def test_metrics_count_the_outbox_by_status(app: Flask, client: FlaskClient) -> None:
    empty = scrape(client)
    assert [value(empty, "heyon_outbox_messages", status=s) for s in ("pending", "sent", "dead")] == [0, 0, 0]
    card_id = make_card()
    statuses = ["pending", "pending", "pending", "sent", "dead", "dead"]
    for n, status in enumerate(statuses):
        def add(n: int = n, status: str = status) -> None:
            notices.enqueue(db.session, f"m:{n}", "sms", PHONE, notices.LOW_BALANCE, {}, "en", card_id, utcnow())
            db.session.execute(update(OutboxMessage).where(OutboxMessage.key == f"m:{n}").values(status=status))
        in_write_transaction(add)
    samples = scrape(client)
    assert value(samples, "heyon_outbox_messages", status="pending") == 3
    assert value(samples, "heyon_outbox_messages", status="sent") == 1
    assert value(samples, "heyon_outbox_messages", status="dead") == 2
