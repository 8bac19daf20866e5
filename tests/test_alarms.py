"""The card-number spraying alarm: failed card logins across all cards, counted in one window
shared by every worker, raise one log line a minute above the limit."""
from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .conftest import new_client
from .kit import CARD, PIN, csrf_from, make_card


def lookup(client: FlaskClient, number: str, password: str) -> int:
    page = client.get("/balance?lang=en").get_data(as_text=True)
    return client.post("/balance", data={"csrf_token": csrf_from(page), "card_number": number,
                                         "password": password}).status_code


@pytest.fixture
def alarm_log(app: Flask, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    app.config["HEYON_CARD_SPRAY_LIMIT"] = "5 per minute"
    caplog.set_level(logging.WARNING, logger="heyon_site.alarms")
    return caplog


def alarms(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.name == "heyon_site.alarms"]


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
