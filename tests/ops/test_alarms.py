"""The card-number spraying alarm: failed card logins across all cards, counted in one window
shared by every worker, raise one log line a minute above the limit."""
from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.kit import new_client
from tests.kit import CARD, PIN, csrf_from, make_card


def lookup(client: FlaskClient, number: str, password: str) -> int:
    page = client.get("/balance?lang=en").get_data(as_text=True)
    return client.post("/balance", data={"csrf_token": csrf_from(page), "card_number": number,
                                         "password": password}).status_code


@pytest.fixture
def alarm_log(app: Flask, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    app.config["HEYON_CARD_SPRAY_LIMIT"] = "5 per minute"
    caplog.set_level(logging.WARNING, logger="heyon_site.ops.alarms")
    return caplog


def alarms(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.name == "heyon_site.ops.alarms"]


def test_spraying_many_cards_from_many_addresses_raises_one_alarm(app: Flask, alarm_log: pytest.LogCaptureFixture) -> None:
    make_card()
    for n in range(5):  # five different cards, five different addresses: each looks innocent
        client = new_client(app)
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{n}"
        assert lookup(client, f"86000000000{n:05d}", "000000") == 403
    assert alarms(alarm_log) == []
    for n in range(5, 9):
        client = new_client(app)
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{n}"
        assert lookup(client, f"86000000000{n:05d}", "000000") == 403  # the customer's answer is unchanged
    [line] = alarms(alarm_log)  # once a minute, not once per failure
    assert line.startswith("ALARM card-number spraying") and "5 per 1 minute" in line
    assert "8600000000" not in line  # no card number in the alarm


def test_right_passwords_never_count(app: Flask, alarm_log: pytest.LogCaptureFixture) -> None:
    make_card()
    client = new_client(app)
    for _ in range(8):
        assert lookup(client, CARD, PIN) == 200
    assert alarms(alarm_log) == []


@pytest.fixture
def limited(app: Flask) -> Flask:
    app.config["RATELIMIT_ENABLED"] = True
    app.config["HEYON_IP_LIMIT"] = "3 per minute"
    from heyon_site.extensions import limiter

    limiter.init_app(app)  # re-read the settings: the fixture's app had limits switched off
    limiter.reset()
    return app


def test_staff_and_gateway_forms_are_limited_per_ip_too(limited: Flask) -> None:
    client = new_client(limited)
    token = csrf_from(client.get("/staff/login?lang=en").get_data(as_text=True))
    statuses = [client.post("/staff/logout", data={"csrf_token": token}).status_code for _ in range(4)]
    assert statuses == [303, 303, 303, 429]
    other = new_client(limited)
    other.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    mine = csrf_from(other.get("/staff/login?lang=en").get_data(as_text=True))
    gateway = [other.post("/pay/sandbox/1", data={"csrf_token": mine}).status_code for _ in range(4)]
    assert gateway[3] == 429 and all(code < 500 for code in gateway)
