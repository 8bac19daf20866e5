"""The e-mail channel (heyon_site/outbox/email.py) against a real SMTP server on 127.0.0.1
(aiosmtpd): STARTTLS or TLS from the first byte, the server's certificate checked against a
private CA, AUTH, the message as it arrives, and what each refusal becomes."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from heyon_site.config import MissingSetting
from heyon_site.outbox import email
from heyon_site.outbox.channels import Outgoing, PermanentFailure, TemporaryFailure
from tests.outbox.conftest import SENDER, smtp_settings
from tests.provider_kits.smtp import PASSWORD, USER, Pki, SmtpServer, make_pki, smtp_server

SUBJECT = "禾云卡:充值到账"
TEXT = "禾云卡 **** 1234:¥100.00 已到账(订单 2601010000000001)。\n余额 ¥105.00。"


def outgoing(recipient: str = "buyer@example.com", key: str = "order:7:credited:email") -> Outgoing:
    return Outgoing(key, recipient, "recharge_credited", {"last4": "1234"}, "zh_Hans", SUBJECT, TEXT)


def channel(settings: dict[str, str]) -> email.SmtpChannel:
    made = email.from_config(settings)
    assert isinstance(made, email.SmtpChannel)
    return made


def test_a_message_goes_over_starttls_with_auth_as_a_utf8_plain_text_mail(smtp: SmtpServer, pki: Pki) -> None:
    channel(smtp_settings(smtp, pki)).send(outgoing())
    [got] = smtp.mailbox.received
    assert (got.mail_from, got.rcpt_tos, got.tls, got.login) == ("noreply@heyon.test", ["buyer@example.com"], True, USER)
    mail = got.message
    assert mail["From"] == SENDER and mail["To"] == "buyer@example.com" and mail["Subject"] == SUBJECT
    assert mail.get_content_type() == "text/plain" and mail.get_content_charset() == "utf-8"
    assert mail.get_content().rstrip("\n") == TEXT
    assert mail["Auto-Submitted"] == "auto-generated" and mail["Content-Language"] == "zh-Hans"
    assert mail["Date"]
    assert mail["Message-ID"] == email.message_id("order:7:credited:email", SENDER)


def test_the_message_id_is_the_same_for_the_same_key_and_differs_between_keys() -> None:
    first = email.message_id("order:7:credited:email", SENDER)
    assert first == email.message_id("order:7:credited:email", "Other <other@heyon.test>")  # same domain
    assert first != email.message_id("order:8:credited:email", SENDER)
    assert first.startswith("<outbox.") and first.endswith("@heyon.test>")
    assert ":" not in first  # the key's colons are no part of a valid Message-ID


def test_tls_from_the_first_byte_with_smtps(pki: Pki) -> None:
    with smtp_server(pki, mode="implicit") as server:
        channel(smtp_settings(server, pki, scheme="smtps")).send(outgoing())
        [got] = server.mailbox.received
    assert (got.tls, got.login) == (True, USER)


def test_a_certificate_the_trust_store_does_not_vouch_for_is_refused(smtp: SmtpServer, pki: Pki, tmp_path: Path) -> None:
    """Without HEYON_SMTP_CA_FILE the system's trust store decides, and it does not know the test
    CA; another CA of the same name does not pass either. Nothing is sent either time."""
    settings = smtp_settings(smtp, pki)
    for ca_file in ("", str(make_pki(tmp_path / "other").ca_file)):
        with pytest.raises(TemporaryFailure, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            channel({**settings, "HEYON_SMTP_CA_FILE": ca_file}).send(outgoing())
    assert smtp.mailbox.received == []


def test_a_server_that_offers_no_starttls_gets_nothing_not_even_the_password(pki: Pki) -> None:
    with smtp_server(None, mode="plain", auth=False) as server:
        with pytest.raises(TemporaryFailure, match="does not offer STARTTLS"):
            channel(smtp_settings(server, pki)).send(outgoing())
        assert server.mailbox.received == []


def test_a_local_relay_without_tls_and_without_credentials(pki: Pki) -> None:
    with smtp_server(None, mode="plain", auth=False) as server:
        channel({"HEYON_SMTP_URL": f"smtp://127.0.0.1:{server.port}?starttls=no",
                 "HEYON_SMTP_FROM": SENDER}).send(outgoing())
        [got] = server.mailbox.received
    assert (got.tls, got.login) == (False, None)


def test_a_wrong_password_is_tried_again_later(smtp: SmtpServer, pki: Pki) -> None:
    with pytest.raises(TemporaryFailure, match="smtp 535"):
        channel(smtp_settings(smtp, pki, password="wrong")).send(outgoing())
    assert smtp.mailbox.received == []


def test_the_password_may_come_from_a_file(smtp: SmtpServer, pki: Pki, tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    settings = {**smtp_settings(smtp, pki), "HEYON_SMTP_URL": f"smtp://{USER}@127.0.0.1:{smtp.port}",
                "HEYON_SMTP_PASSWORD_FILE": str(secret)}
    channel(settings).send(outgoing())
    assert [got.login for got in smtp.mailbox.received] == [USER]


@pytest.mark.parametrize(("reply", "failure"), [
    ("550 5.1.1 <{}>: Recipient address rejected: User unknown", PermanentFailure),
    ("450 4.2.1 <{}>: Mailbox busy, try again later", TemporaryFailure),
])
def test_a_refused_recipient_is_given_up_on_5xx_and_tried_again_on_4xx(smtp: SmtpServer, pki: Pki, reply: str,
                                                                       failure: type[Exception]) -> None:
    recipient = "gone@example.com"
    smtp.mailbox.refuse[recipient] = reply.format(recipient)
    with pytest.raises(failure) as refused:
        channel(smtp_settings(smtp, pki)).send(outgoing(recipient))
    # The server's answer is kept (in last_error and the log) without the address it repeats.
    assert reply[:3] in str(refused.value) and recipient not in str(refused.value) and "g***@example.com" in str(
        refused.value)
    assert smtp.mailbox.received == []


def test_no_server_listening_is_tried_again_later(pki: Pki) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: the connection is refused
        with pytest.raises(TemporaryFailure, match="ConnectionRefusedError"):
            channel({"HEYON_SMTP_URL": f"smtp://{USER}:{PASSWORD}@127.0.0.1:{port}", "HEYON_SMTP_FROM": SENDER,
                     "HEYON_SMTP_CA_FILE": str(pki.ca_file)}).send(outgoing())


def test_a_recipient_with_a_line_break_cannot_add_a_header(smtp: SmtpServer, pki: Pki) -> None:
    """A ValueError: the worker gives the message up (dead letter) rather than send it."""
    with pytest.raises(ValueError):
        channel(smtp_settings(smtp, pki)).send(outgoing("buyer@example.com\r\nBcc: everyone@example.com"))
    assert smtp.mailbox.received == []


def test_without_an_smtp_url_there_is_no_email_channel() -> None:
    assert email.from_config({}) is None
    assert email.from_config({"HEYON_SMTP_URL": "", "HEYON_SMTP_FROM": SENDER}) is None


@pytest.mark.parametrize(("settings", "problem"), [
    ({"HEYON_SMTP_URL": "http://mail.example.com"}, "must look like"),
    ({"HEYON_SMTP_URL": "smtp://u:p@mail.example.com:25"}, "HEYON_SMTP_FROM"),
    ({"HEYON_SMTP_URL": "smtp://u@mail.example.com:587", "HEYON_SMTP_FROM": SENDER}, "no password"),
    ({"HEYON_SMTP_URL": "smtp://u:p@mail.example.com:25?starttls=no", "HEYON_SMTP_FROM": SENDER}, "in the clear"),
    ({"HEYON_SMTP_URL": "smtp://mail.example.com:25?starttls=maybe", "HEYON_SMTP_FROM": SENDER}, "yes or no"),
])
def test_unusable_settings_stop_the_worker_at_start_naming_the_setting_not_the_password(
        settings: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as stopped:
        email.from_config(settings)
    assert ":p@" not in str(stopped.value)


def test_an_unreadable_password_file_is_named() -> None:
    with pytest.raises(MissingSetting, match="HEYON_SMTP_PASSWORD_FILE"):
        email.from_config({"HEYON_SMTP_URL": "smtp://u@mail.example.com", "HEYON_SMTP_FROM": SENDER,
                           "HEYON_SMTP_PASSWORD_FILE": "/nonexistent/smtp-password"})


def test_the_default_ports_and_the_settings_repr_without_the_password() -> None:
    settings = email.parse_settings({"HEYON_SMTP_URL": "smtps://u%40x:p%2Fw@mail.example.com", "HEYON_SMTP_FROM": SENDER})
    assert settings is not None
    assert (settings.port, settings.implicit_tls, settings.username, settings.password) == (465, True, "u@x", "p/w")
    assert "p/w" not in repr(settings)
    plain = email.parse_settings({"HEYON_SMTP_URL": "smtp://mail.example.com", "HEYON_SMTP_FROM": SENDER})
    assert plain is not None and (plain.port, plain.starttls) == (587, True)


@pytest.mark.parametrize("content", [None, "not a certificate"])
def test_an_unusable_ca_file_stops_the_worker_at_start(tmp_path: Path, content: str | None) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    with pytest.raises(ValueError, match="HEYON_SMTP_CA_FILE cannot be used"):
        email.from_config({"HEYON_SMTP_URL": "smtp://mail.example.com", "HEYON_SMTP_FROM": SENDER,
                           "HEYON_SMTP_CA_FILE": str(ca_file)})
