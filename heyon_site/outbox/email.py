"""E-mail over SMTP: HEYON_SMTP_URL names the server, HEYON_SMTP_FROM the sender.

``smtp://user:password@host:587`` speaks STARTTLS and refuses to go on without it (a server, or
someone in between, that does not offer it gets nothing, least of all the password);
``smtp://host:25?starttls=no`` is for a relay on the same machine, without credentials;
``smtps://user@host:465`` is TLS from the first byte. The password may instead be in
HEYON_SMTP_PASSWORD or the file HEYON_SMTP_PASSWORD_FILE names. The server's certificate is
checked against the system's trust store, or against the CA in HEYON_SMTP_CA_FILE only (a
private CA).

One plain-text message (UTF-8) per outbox message, one connection each. Its Message-ID comes
from the outbox key, so a message sent again after a worker died mid-send is the same message to
the receiving side. A 4xx answer or a connection that fails is tried again later; a recipient
(or a message) the server refuses with 5xx never will be.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from heyon_site.config import setting
from heyon_site.ops.logs import mask_card_numbers, mask_contact
from heyon_site.outbox.channels import Channel, Outgoing, PermanentFailure, TemporaryFailure

#: Seconds for the connection and for each answer of the server.
TIMEOUT = 30.0
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool  # smtps://
    starttls: bool
    username: str
    password: str = ""
    sender: str = ""  # the From header as written, e.g. "Heyon <noreply@example.com>"
    ca_file: str = ""  # empty: the system's trust store
    timeout: float = TIMEOUT

    def __repr__(self) -> str:  # never the password, in a traceback or a log
        return f"SmtpSettings(host={self.host!r}, port={self.port}, user={self.username!r})"

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.sender)[1]


def parse_settings(config: Mapping[str, Any]) -> SmtpSettings | None:
    """The SMTP settings, or None when HEYON_SMTP_URL is not set. Anything unusable stops the
    worker at start-up with a message naming the setting (never a password)."""
    url = str(config.get("HEYON_SMTP_URL") or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("HEYON_SMTP_URL must look like smtp://user@host:587 or smtps://user@host:465")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError("HEYON_SMTP_URL has a port that is not a number") from None
    options = parse_qs(parts.query)
    starttls_option = (options.get("starttls") or ["yes"])[-1].lower()
    if starttls_option not in ("yes", "no"):
        raise ValueError("HEYON_SMTP_URL: starttls must be yes or no")
    implicit = parts.scheme == "smtps"
    starttls = not implicit and starttls_option == "yes"
    username = unquote(parts.username or "")
    password = unquote(parts.password or "") or setting(config, "HEYON_SMTP_PASSWORD", required=False)
    if username and not password:
        raise ValueError("HEYON_SMTP_URL names a user but no password: give it there, or in HEYON_SMTP_PASSWORD(_FILE)")
    if username and not (implicit or starttls):
        raise ValueError("HEYON_SMTP_URL: starttls=no would send the password in the clear (a local relay only)")
    sender = str(config.get("HEYON_SMTP_FROM") or "").strip()
    if "@" not in parseaddr(sender)[1]:
        raise ValueError("HEYON_SMTP_FROM must be an address such as Heyon <noreply@example.com>")
    return SmtpSettings(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        starttls=starttls,
        username=username,
        password=password,
        sender=sender,
        ca_file=str(config.get("HEYON_SMTP_CA_FILE") or ""),
    )


def message_id(key: str, sender: str) -> str:
    """The Message-ID of the outbox message ``key``: the same every time it is sent, unique per
    key and sending domain (the key itself may hold characters a Message-ID may not)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<outbox.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def compose(message: Outgoing, sender: str) -> EmailMessage:
    """The e-mail of an outbox message. A recipient with a line break in it raises ValueError
    (the worker gives it up: no header can be smuggled in)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.recipient
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message.key, sender)
    # RFC 3834: an automatic message; vacation replies and the like are not sent back to it.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text, charset="utf-8")
    # After set_content, which clears every Content-* header.
    mail["Content-Language"] = (message.locale or "zh_Hans").replace("_", "-")
    return mail


def scrubbed(text: str, recipient: str) -> str:
    """A server's or provider's answer as it may be logged and kept: they like to repeat the
    address or number they refused."""
    if recipient:
        text = text.replace(recipient, mask_contact(recipient))
    return mask_card_numbers(text)[:160]


class SmtpChannel:
    """Sends each message over its own SMTP connection."""

    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        try:
            self.tls = ssl.create_default_context(cafile=settings.ca_file or None)
        except OSError as exc:  # ssl.SSLError too: not a PEM certificate
            raise ValueError(f"HEYON_SMTP_CA_FILE cannot be used ({exc.strerror or exc})") from None

    def send(self, message: Outgoing) -> None:
        mail = compose(message, self.settings.sender)
        try:
            with self._connect() as server:
                self._secure_and_log_in(server)
                server.send_message(mail, self.settings.envelope_sender, [message.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, answer = next(iter(exc.recipients.values()), (0, b""))
            raise self._failure("recipient refused", code, answer, message.recipient) from None
        except smtplib.SMTPDataError as exc:
            raise self._failure("message refused", exc.smtp_code, exc.smtp_error, message.recipient) from None
        except smtplib.SMTPNotSupportedError:
            # send_message: an address that needs SMTPUTF8 and a server without it.
            raise PermanentFailure("the server cannot take this address (no SMTPUTF8)") from None
        except smtplib.SMTPResponseException as exc:
            # The sender refused, a failed login: the server's or our settings' fault, not the message's.
            raise TemporaryFailure(
                f"smtp {exc.smtp_code}: {scrubbed(_text(exc.smtp_error), message.recipient)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:  # OSError: refused, timed out, TLS failed
            raise TemporaryFailure(f"smtp: {type(exc).__name__}: {scrubbed(str(exc), message.recipient)}") from None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.implicit_tls:
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self.tls)
        return smtplib.SMTP(s.host, s.port, timeout=s.timeout)

    def _secure_and_log_in(self, server: smtplib.SMTP) -> None:
        server.ehlo()
        if self.settings.starttls:
            if not server.has_extn("starttls"):
                # Never fall back to plain text: an attacker in between strips STARTTLS first.
                raise TemporaryFailure("smtp: the server does not offer STARTTLS")
            server.starttls(context=self.tls)
            server.ehlo()
        if self.settings.username:
            if not server.has_extn("auth"):
                raise TemporaryFailure("smtp: the server offers no AUTH")
            server.login(self.settings.username, self.settings.password)

    @staticmethod
    def _failure(what: str, code: int, answer: bytes | str, recipient: str) -> Exception:
        text = f"smtp {code} {what}: {scrubbed(_text(answer), recipient)}"
        return PermanentFailure(text) if 500 <= code < 600 else TemporaryFailure(text)


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)


def from_config(config: Mapping[str, Any]) -> Channel | None:
    """The SMTP channel when HEYON_SMTP_URL is set; None (the log) otherwise."""
    settings = parse_settings(config)
    return None if settings is None else SmtpChannel(settings)
