"""A card's phone number from the command line (`flask cards create --msisdn`, the CSV import's
msisdn column), and `flask cards forget`: the owner's personal data deleted in one audited
transaction, the card, its money and its orders kept."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select, update

from heyon_site.billing import notices
from heyon_site.billing.ledger import verify
from heyon_site.cards.numbers import number_digest
from heyon_site.cards.services import FORGOTTEN, PhoneNumberError, normalise_msisdn
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import AuditLog, Card, OutboxMessage, RechargeOrder
from tests.kit import CARD, PIN, balance, cli, flask_cli, make_card, start_order

OTHER = "8611223344556677"
PHONE, MAIL = "+8613800138000", "mei.li@example.com"


def card_of(number: str = CARD) -> Card:
    db.session.rollback()
    found = db.session.scalar(select(Card).where(Card.number_digest == number_digest(number)))
    assert found is not None
    return found


@pytest.mark.parametrize(("typed", "kept"), [
    ("+8613800138000", "+8613800138000"),
    ("13800138000", "+8613800138000"),
    ("138 0013 8000", "+8613800138000"),
    ("+86 (138) 0013-8000", "+8613800138000"),
    ("１３８００１３８０００", "+8613800138000"),  # full-width, as a Chinese input method types it
    ("+44 20 7946 0958", "+442079460958"),
    ("+123456", "+123456"),
])
def test_phone_numbers_are_kept_in_one_form(typed: str, kept: str) -> None:
    assert normalise_msisdn(typed) == kept


@pytest.mark.parametrize("typed", ["", "12345", "+12345", "+1234567890123456", "+0123456789", "23800138000",
                                   "138001380001", "12800138000", "+86 138 0013 800x", "+٨٦١٣٨٠٠١٣٨٠٠٠", "tel:+8613800138000"])
def test_anything_else_is_not_a_phone_number(typed: str) -> None:
    with pytest.raises(PhoneNumberError):
        normalise_msisdn(typed)


def test_create_takes_a_phone_number_and_keeps_its_output(runner: FlaskCliRunner) -> None:
    result = cli(runner, "cards", "create", CARD, "--password", PIN, "--balance", "12.34", "--msisdn", "138 0013 8000")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"created card **** {CARD[-4:]} with balance 12.34"
    assert card_of().msisdn == PHONE
    audit = db.session.scalars(select(AuditLog).where(AuditLog.action == "cards.issue")).one()
    assert audit.after_summary == "opening_balance=12.34; with_phone=1"  # counted, never named
    without = cli(runner, "cards", "create", OTHER, "--password", PIN)
    assert without.exit_code == 0 and card_of(OTHER).msisdn is None


def test_create_refuses_a_bad_phone_number_and_creates_nothing(runner: FlaskCliRunner) -> None:
    result = cli(runner, "cards", "create", CARD, "--password", PIN, "--msisdn", "12345")
    assert result.exit_code == 2
    assert "a phone number is + and 6 to 15 digits" in result.stderr
    assert db.session.scalar(select(Card.id)) is None


def test_the_import_reads_an_optional_msisdn_column(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(f"number,password,balance,msisdn\n{CARD},{PIN},1.00,13800138000\n{OTHER},{PIN},2.00,\n",
                    encoding="utf-8")
    result = cli(runner, "cards", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "imported 2 card(s), total opening balance 3.00"
    assert card_of().msisdn == PHONE and card_of(OTHER).msisdn is None


def test_the_import_refuses_a_bad_phone_number_and_imports_nothing(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_text(f"number,password,msisdn\n{CARD},{PIN},+8613800138000\n{OTHER},{PIN},555-0100\n", encoding="utf-8")
    result = cli(runner, "cards", "import", str(path))
    assert result.exit_code == 1
    assert "line 3: a phone number is + and 6 to 15 digits" in result.stderr
    assert "1 line(s) refused; nothing imported" in result.stderr
    assert db.session.scalar(select(Card.id)) is None


# ------------------------------------------------------------------ forgetting


def message(key: str, card_id: int, status: str, recipient: str, channel: str = "sms", error: str | None = None) -> None:
    def add() -> None:
        notices.enqueue(db.session, key, channel, recipient, notices.RECHARGE_CREDITED, {"last4": "1234"}, "en", card_id)
        db.session.execute(update(OutboxMessage).where(OutboxMessage.key == key).values(status=status, last_error=error))
    in_write_transaction(add)


def personal_data(card_id: int) -> dict[str, object]:
    db.session.rollback()
    card = db.session.get(Card, card_id, populate_existing=True)
    assert card is not None
    return {
        "card": (card.msisdn, card.low_balance_fen, card.low_balance_locale, card.low_balance_sent_on),
        "emails": sorted(e for e in db.session.scalars(select(RechargeOrder.email).where(RechargeOrder.card_id == card_id))
                         if e),
        "messages": sorted(tuple(row) for row in db.session.execute(
            select(OutboxMessage.key, OutboxMessage.status, OutboxMessage.recipient)
            .where(OutboxMessage.card_id == card_id))),
    }


def test_forget_deletes_the_personal_data_and_audits(app: Flask, runner: FlaskCliRunner) -> None:
    client = app.test_client()
    mine, theirs = make_card(balance_fen=5000), make_card(OTHER, balance_fen=700)
    for card_id in (mine, theirs):
        in_write_transaction(lambda card_id=card_id: db.session.execute(update(Card).where(Card.id == card_id).values(
            msisdn=PHONE, low_balance_fen=1000, low_balance_locale="en", low_balance_sent_on=date(2026, 1, 2))))
    orders = [start_order(client, email=MAIL), start_order(client, amount="50"), start_order(client, email="x@example.cn")]
    other_order = start_order(client, card_number=OTHER, email="lan@example.com")
    message("m:pending:sms", mine, "pending", PHONE)
    message("m:pending:email", mine, "pending", MAIL, "email")
    message("m:sent", mine, "sent", PHONE)
    message("m:dead", mine, "dead", MAIL, "email", error=f"PermanentFailure: mailbox {MAIL} unavailable")
    message("t:pending", theirs, "pending", PHONE)
    theirs_before = personal_data(theirs)
    assert theirs_before["emails"] == ["lan@example.com"]

    result = cli(runner, "cards", "forget", "8600 0000 0000 1234")
    assert result.exit_code == 0, result.output
    assert result.output == "card **** 1234: personal data forgotten\n"

    assert personal_data(mine) == {
        "card": (None, None, None, None),
        "emails": [],
        "messages": [("m:dead", "dead", FORGOTTEN), ("m:sent", "sent", FORGOTTEN)],
    }
    # A provider's error naming the recipient is kept for staff, masked.
    assert db.session.scalar(select(OutboxMessage.last_error).where(OutboxMessage.key == "m:dead")) == \
        "PermanentFailure: mailbox m***@example.com unavailable"
    assert personal_data(theirs) == theirs_before  # another card's data is not touched
    # The card, its money and its orders stay.
    assert balance() == 5000 and verify(db.session).ok
    assert db.session.scalar(select(RechargeOrder.id).where(RechargeOrder.order_no == orders[1])) is not None
    assert other_order
    audit = db.session.scalars(select(AuditLog).where(AuditLog.action == "card.forget")).one()
    assert audit.username == "(command line)" and audit.staff_id is None and audit.target == "card **** 1234"
    assert audit.after_summary == "emails_deleted=2; messages_deleted=2; recipients_deleted=2"
    row = " ".join(str(v) for v in (audit.target, audit.before_summary, audit.after_summary))
    assert "8000" not in row and "@" not in row and CARD not in row

    # Forgetting again finds nothing more to delete, and says the same.
    again = cli(runner, "cards", "forget", CARD)
    assert again.output == "card **** 1234: personal data forgotten\n"
    assert db.session.scalars(select(AuditLog.after_summary).where(AuditLog.action == "card.forget")).all()[-1] == \
        "emails_deleted=0; messages_deleted=0; recipients_deleted=0"


def test_forget_is_one_transaction(app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the first deletions (here: the audit row) leaves everything as it was."""
    from heyon_site.cards import services

    card_id = make_card()
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(msisdn=PHONE)))
    message("m:pending", card_id, "pending", PHONE)
    message("m:sent", card_id, "sent", PHONE)
    before = personal_data(card_id)

    def failing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(services, "record", failing)
    result = runner.invoke(args=["cards", "forget", CARD])
    assert isinstance(result.exception, RuntimeError)
    db.session.commit()  # whatever the command left in the session would be kept now: it left nothing
    assert personal_data(card_id) == before


def test_forget_an_unknown_or_malformed_card(runner: FlaskCliRunner) -> None:
    unknown = cli(runner, "cards", "forget", OTHER)
    assert unknown.exit_code == 1 and "no such card" in unknown.stderr
    bad = cli(runner, "cards", "forget", "123")
    assert bad.exit_code == 2 and "a card number has 10 to 19 digits" in bad.stderr
    assert db.session.scalar(select(AuditLog.id).where(AuditLog.action == "card.forget")) is None


def test_forget_through_the_real_command(database: str, app: Flask) -> None:
    card_id = make_card()
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(msisdn=PHONE)))
    done = flask_cli(database, "cards", "forget", CARD)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "card **** 1234: personal data forgotten\n"
    assert card_of().msisdn is None
