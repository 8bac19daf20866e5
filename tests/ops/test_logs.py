"""Structured logs: one JSON line per event, a request id on every line of a request, one access
line per request, and gunicorn's own lines in the same format."""
from __future__ import annotations

import json
import logging
import re
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from heyon_site.ops import logs

from tests import kit

ORDER_NO = "2601150123456789"  # the shape billing.recharge.new_order_no gives (date first)


def record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("heyon_site.test", logging.WARNING, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="heyon_site")
    return caplog


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "heyon_site.access"]


# ------------------------------------------------------------------ the formatters


def test_a_json_line_has_the_fields_and_stays_one_line_whatever_the_message() -> None:
    line = logs.JsonFormatter().format(record("forged\n{\"level\": \"INFO\"}\u2028%s", "天", exc=True, order=7))
    assert "\n" not in line and "\u2028" not in line and line.isascii()
    event = json.loads(line)
    assert event["message"] == "forged\n{\"level\": \"INFO\"}\u2028天"
    assert event["level"] == "WARNING" and event["logger"] == "heyon_site.test" and event["order"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])
    assert event["exception"].startswith("Traceback") and "bad value\nsecond line" in event["exception"]


def test_the_text_format_escapes_control_characters() -> None:
    line = logs.TextFormatter().format(record("a\nb\r\x1b[31m", exc=True, path="/x\ny"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "a\\nb\\r\\u001b[31m" in line and "path=/x\\ny" in line and "[-]" in line


def test_card_numbers_are_masked_and_order_numbers_kept() -> None:
    masked = logs.mask_card_numbers(f"card 8600000000001234 order {ORDER_NO} 12345678 86000000000000000001")
    assert masked == f"card ****1234 order {ORDER_NO} 12345678 86000000000000000001"
    event = json.loads(logs.JsonFormatter().format(record("for %s", "8611223344556677", path="/8611223344556677")))
    assert "8611223344556677" not in json.dumps(event) and event["path"] == "/****6677"


def test_configure_installs_one_handler_and_keeps_sql_rows_out(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    quiet = logging.getLogger("sqlalchemy.engine")
    monkeypatch.setattr(quiet, "level", quiet.level)
    logs.configure("text", "DEBUG")
    logs.configure("json", "DEBUG")
    assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, logs.JsonFormatter)
    assert root.level == logging.DEBUG and quiet.level == logging.WARNING  # rows hold card numbers
    with pytest.raises(ValueError, match="json or text"):
        logs.formatter_class("xml")


def test_gunicorn_keeps_its_own_access_log_off() -> None:
    config = logs.gunicorn_logconfig({"HEYON_LOG_FORMAT": "text", "HEYON_LOG_LEVEL": "debug"})
    assert config["formatters"]["heyon"]["()"] is logs.TextFormatter
    assert config["loggers"]["gunicorn.access"] == {"level": "WARNING", "handlers": ["discard"], "propagate": False}
    assert config["root"] == {"level": "DEBUG", "handlers": ["stderr"]}


# ------------------------------------------------------------------ the request id and access line


def test_a_well_formed_request_id_is_kept_and_echoed(client: FlaskClient, access: pytest.LogCaptureFixture) -> None:
    r = client.get("/faq?q=secret", headers={"X-Request-ID": "edge-5f0c9a7e"})
    assert r.headers["X-Request-ID"] == "edge-5f0c9a7e"
    [line] = access_lines(access)
    assert line.getMessage() == "GET /faq 200"  # never the query string
    assert (line.request_id, line.method, line.path, line.status) == ("edge-5f0c9a7e", "GET", "/faq", 200)
    assert isinstance(line.duration_ms, float) and line.duration_ms >= 0


@pytest.mark.parametrize("given", ["short", "has space 12345", "x" * 65, "quote\"12345678", "\u00e9t\u00e9-12345678"])
def test_any_other_request_id_is_replaced(client: FlaskClient, given: str) -> None:
    rid = client.get("/", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)


def test_every_request_gets_its_own_id_and_every_line_of_it_carries_that_id(
        app: Flask, client: FlaskClient, access: pytest.LogCaptureFixture) -> None:
    first = client.get("/").headers["X-Request-ID"]
    refused = client.post("/pay/notify/sandbox", data=kit.notification("2601150000000001", "1.00", secret="wrong"))
    assert refused.get_data(as_text=True) == "fail" and first != refused.headers["X-Request-ID"]
    warning = [r for r in access.records if "refused" in r.getMessage()]
    assert [r.request_id for r in warning] == [refused.headers["X-Request-ID"]]
    assert [r.status for r in access_lines(access)] == [200, refused.status_code]
    assert logs.current_request_id() is None  # nothing outlives its request


def test_probes_are_logged_at_debug_and_errors_once(client: FlaskClient, access: pytest.LogCaptureFixture) -> None:
    client.get("/healthz")
    client.get("/no/such/page")
    assert [(r.levelno, r.status) for r in access_lines(access)] == [(logging.DEBUG, 200), (logging.INFO, 404)]


# ------------------------------------------------------------------ under gunicorn


@pytest.fixture
def served(sqlite_template: Path, tmp_path: Path) -> Iterator[kit.LiveSite]:
    path = tmp_path / "live.db"
    path.write_bytes(sqlite_template.read_bytes())
    with kit.live_site(f"sqlite:///{path}", tmp_path, workers=1, extra_env={"HEYON_LOG_FORMAT": "json"}) as site:
        yield site


@pytest.mark.live
def test_gunicorn_and_the_app_write_only_json_lines(served: kit.LiveSite) -> None:
    request = urllib.request.Request(served.url + "/faq?q=x", headers={"X-Request-ID": "lb-0123456789abcdef"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["X-Request-ID"] == "lb-0123456789abcdef"
    events = [json.loads(line) for line in served.log_text().splitlines() if line.strip()]
    assert any(e["logger"] == "gunicorn.error" and e["message"].startswith("Booting worker") for e in events)
    access = [e for e in events if e["logger"] == "heyon_site.access"]
    assert [(e["request_id"], e["path"], e["status"]) for e in access if e["path"] == "/faq"] == \
        [("lb-0123456789abcdef", "/faq", 200)]
    assert not [e for e in events if e["logger"] == "gunicorn.access"]
