"""A real SMTP server for the e-mail channel's tests (aiosmtpd, in a thread on 127.0.0.1), with a
private CA made here: STARTTLS or TLS from the first byte, AUTH, and a handler that keeps what
it was sent and refuses the recipients a test names.

Nothing here comes from heyon_site: the certificates are made with cryptography directly, the
messages parsed with the standard library, so the channel is checked against a server of its own.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

USER, PASSWORD = "mailer", "smtp-test-password"


@dataclass(frozen=True)
class Pki:
    """A private CA and the server's certificate (for 127.0.0.1 and localhost) it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path, common_name: str = "Heyon test CA") -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool  # the session was encrypted when the message came
    login: str | None  # who had authenticated, if anyone


@dataclass
class Mailbox:
    """The server's handler: keeps every accepted message; ``refuse`` maps a recipient to the
    reply its RCPT gets (``"550 5.1.1 ..."``, ``"450 4.2.1 ..."``)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        # As a mailbox keeps it: the wire's CRLF line ends as \n.
        raw = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        # The transport itself says whether it is TLS: under STARTTLS and from the first byte alike.
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message, tls,
                                      login if session.authenticated else None))
        return "250 Message accepted for delivery"


def check_password(server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _QuietSession(Session):
    """aiosmtpd 1.4 sets its own deprecated ``login_data`` after every AUTH, with a
    DeprecationWarning that this suite turns into an error (inside the server): the same
    attribute, without the warning."""

    @property  # type: ignore[override]
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Smtp(SMTP):
    def _create_session(self) -> Session:
        return _QuietSession(self.loop)


class _AnyPortController(Controller):
    """aiosmtpd's controller on a port the system picks (port 0): it connects to its own port
    once started, so that port is read back from the listening socket first."""

    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int


@contextmanager
def smtp_server(pki: Pki | None, mode: str = "starttls", auth: bool = True) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 until the block ends. ``mode``: ``starttls`` (plain first,
    STARTTLS required before anything else), ``implicit`` (TLS from the first byte), ``plain``
    (no TLS offered at all). ``auth``: AUTH required, and offered only under TLS (implicit:
    offered and checked)."""
    mailbox = Mailbox()
    kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": 0, "server_hostname": "mail.heyon.test"}
    if mode == "starttls":
        assert pki is not None
        kwargs.update(tls_context=pki.server_context(), require_starttls=True)
    elif mode == "implicit":
        assert pki is not None
        kwargs.update(ssl_context=pki.server_context())
    if auth and mode == "implicit":
        # aiosmtpd does not count TLS from the first byte as TLS for AUTH (only STARTTLS), so there
        # AUTH is offered, and checked when used, without being required.
        kwargs.update(authenticator=check_password, auth_required=False, auth_require_tls=False)
    elif auth:
        kwargs.update(authenticator=check_password, auth_required=True, auth_require_tls=True)
    controller = _AnyPortController(mailbox, **kwargs)
    controller.start()
    try:
        yield SmtpServer(mailbox, controller.port)
    finally:
        controller.stop()
