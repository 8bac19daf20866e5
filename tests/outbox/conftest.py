"""Fixtures of the outbox tests: a private CA and a real SMTP server, the SMS providers' fakes,
and the site's settings for each."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import serving
from tests.provider_kits import aliyun_sms, twilio
from tests.provider_kits.smtp import PASSWORD, USER, Pki, SmtpServer, make_pki, smtp_server

SENDER = "Heyon 禾云 <noreply@heyon.test>"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def smtp(pki: Pki) -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS, then AUTH."""
    with smtp_server(pki) as server:
        yield server


def smtp_settings(server: SmtpServer, pki: Pki, scheme: str = "smtp", password: str = PASSWORD) -> dict[str, str]:
    return {"HEYON_SMTP_URL": f"{scheme}://{USER}:{password}@127.0.0.1:{server.port}", "HEYON_SMTP_FROM": SENDER,
            "HEYON_SMTP_CA_FILE": str(pki.ca_file)}


@pytest.fixture
def twilio_fake() -> Iterator[twilio.TwilioFake]:
    with serving(twilio.new_fake()) as fake:
        yield fake


@pytest.fixture
def aliyun_fake() -> Iterator[aliyun_sms.AliyunSmsFake]:
    with serving(aliyun_sms.new_fake()) as fake:
        yield fake
