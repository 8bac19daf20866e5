"""Production settings: limits that hold across processes, HTTPS behind a proxy, connection pools.

The site refuses to start when several processes would each keep their own per-IP limits;
served over HTTPS it sends HSTS and a ``__Host-`` session cookie only HTTPS carries, while
Flask-WTF's referrer check keeps working behind the proxy; on PostgreSQL each process keeps a
small, checked connection pool.
"""
from __future__ import annotations

import os
import runpy
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import text

from heyon_site import create_app
from heyon_site.config import PerProcessLimits, engine_options, from_environment, refuse_per_process_limits, warn_of_a_derived_card_key
from heyon_site.extensions import db

from tests import kit
from tests.kit import ROOT, TEST_CONFIG, site_for_tests

HSTS = "max-age=31536000; includeSubDomains"
PROXY = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}


# ------------------------------------------------------------------ per-IP limits and processes


def test_several_processes_with_limits_in_memory_refuse_to_start(tmp_path: Path) -> None:
    with pytest.raises(PerProcessLimits, match="RATELIMIT_STORAGE_URI=redis://") as refused:
        create_app({**TEST_CONFIG, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                    "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://", "HEYON_WORKERS": 4,
                    "HEYON_PROVIDERS": ("alipay",)})
    assert "4 processes" in str(refused.value)


@pytest.mark.parametrize(("settings", "refused"), [
    ({"HEYON_WORKERS": 1}, False),  # one process: its memory is every worker's memory
    ({"HEYON_WORKERS": 2}, True),
    ({"HEYON_WORKERS": 2, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}, False),
    ({"HEYON_WORKERS": 2, "RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_ENABLED": False}, False),
    # A sandbox-only demo moves no real money: allowed, with a warning (gunicorn -w 2 wsgi:app).
    ({"HEYON_WORKERS": 2, "HEYON_PROVIDERS": ("sandbox",)}, False),
    ({"HEYON_WORKERS": 2, "HEYON_PROVIDERS": ()}, False),
    ({"HEYON_WORKERS": 2, "HEYON_PROVIDERS": ("sandbox", "stripe")}, True),
])
def test_only_limits_every_process_shares_are_allowed_in_several(settings: dict[str, object], refused: bool) -> None:
    config = {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://", "HEYON_PROVIDERS": ("wechat",),
              **settings}
    if refused:
        with pytest.raises(PerProcessLimits):
            refuse_per_process_limits(config)
    else:
        assert refuse_per_process_limits(config) is None


@pytest.mark.parametrize(("settings", "warned"), [
    ({"HEYON_PROVIDERS": ("alipay",)}, True),
    ({"HEYON_PROVIDERS": ("alipay",), "HEYON_CARD_KEY": "its-own-key"}, False),
    ({"HEYON_PROVIDERS": ("sandbox",)}, False),  # `make run`: the derived key is fine
])
def test_a_site_taking_payments_is_told_to_keep_its_own_card_key(
        settings: dict[str, object], warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    assert warn_of_a_derived_card_key({"SECRET_KEY": "s", **settings}) is warned
    assert ("HEYON_CARD_KEY is not set" in caplog.text) is warned


def test_the_card_key_can_come_from_a_file(tmp_path: Path) -> None:
    from heyon_site.config import card_number_key
    (tmp_path / "card_key").write_text("key-from-a-file\n")
    assert card_number_key({"SECRET_KEY": "s", "HEYON_CARD_KEY_FILE": str(tmp_path / "card_key")}) == b"key-from-a-file"
    assert card_number_key({"SECRET_KEY": "s"}) != card_number_key({"SECRET_KEY": "t"})
    env = from_environment({"HEYON_CARD_KEY_FILE": "/etc/heyon/card_key"})
    assert env["HEYON_CARD_KEY_FILE"] == "/etc/heyon/card_key" and env["HEYON_CARD_KEY"] == ""


def test_the_number_of_processes_and_the_switches_come_from_the_environment() -> None:
    assert from_environment({})["HEYON_WORKERS"] == 1
    assert from_environment({"WEB_CONCURRENCY": "3"})["HEYON_WORKERS"] == 3
    # gunicorn.conf.py's count (with `-w` from the command line) wins over the platform's hint.
    assert from_environment({"WEB_CONCURRENCY": "3", "HEYON_WORKERS": "1"})["HEYON_WORKERS"] == 1
    assert from_environment({"RATELIMIT_ENABLED": "false"})["RATELIMIT_ENABLED"] is False
    assert from_environment({"HEYON_HTTPS": "1"})["HEYON_HTTPS"] is True
    with pytest.raises(ValueError, match="HEYON_HTTPS"):
        from_environment({"HEYON_HTTPS": "sure"})


def _gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in ("WEB_CONCURRENCY", "RATELIMIT_STORAGE_URI", "RATELIMIT_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_runs_one_worker_unless_limits_are_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh machine (`make run`, no Redis): one process, so its limits are exact.
    assert _gunicorn_conf(monkeypatch)["workers"] == 1
    assert _gunicorn_conf(monkeypatch, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0")["workers"] == 2
    assert _gunicorn_conf(monkeypatch, RATELIMIT_ENABLED="false")["workers"] == 2
    assert _gunicorn_conf(monkeypatch, WEB_CONCURRENCY="5")["workers"] == 5  # the operator's say; the app judges it


def test_gunicorn_tells_the_app_its_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYON_WORKERS", "unset")  # restored afterwards
    conf = _gunicorn_conf(monkeypatch)
    server = SimpleNamespace(num_workers=4)  # after `-w 4`, or a TTIN signal on three
    conf["pre_fork"](server, None)  # type: ignore[operator]
    assert os.environ["HEYON_WORKERS"] == "4"


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "heyon.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.mark.live
def test_gunicorn_with_two_workers_and_limits_in_memory_stops_with_the_reason(sqlite_db: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": sqlite_db, "SECRET_KEY": "test-secret-key",
           "RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": "memory://", "PYTHONUNBUFFERED": "1",
           "HEYON_PROVIDERS": "alipay"}
    env.pop("HEYON_WORKERS", None)
    run = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "2",
                          "-b", f"127.0.0.1:{kit.free_port()}", "wsgi:app"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    output = run.stderr + run.stdout
    # The master halts on a worker's boot error (exit status 3, or 1 when the second worker's
    # failure is reaped while it is already stopping).
    assert run.returncode != 0 and "Worker failed to boot" in output, output[-2000:]
    assert "refusing to start: 2 processes would each keep their own per-IP rate limits" in output


@pytest.mark.live
def test_an_unreachable_redis_falls_back_to_limits_per_process(sqlite_db: str, tmp_path: Path) -> None:
    # Nothing listens on that port: every form must still be answered, never with a 500.
    env = {"RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{kit.free_port()}/0",
           "HEYON_IP_LIMIT": "2 per minute"}
    with kit.live_site(sqlite_db, tmp_path, workers=1, extra_env=env) as site, requests.Session() as browser:
        page = browser.get(f"{site.url}/recharge?lang=en", timeout=30)
        form = {"csrf_token": kit.csrf_from(page.text), "amount": "not an amount"}
        answers = [browser.post(f"{site.url}/recharge", data=form, timeout=30).status_code for _ in range(3)]
    assert answers == [422, 422, 429]  # the limit still holds, in this one process's memory
    assert "falling back to in-memory storage" in site.log_text()


def test_gunicorn_serves_with_threads_and_keeps_connections_waiting_in_its_poller(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _gunicorn_conf(monkeypatch)
    assert conf["worker_class"] == "gthread" and conf["threads"] >= 2
    assert _gunicorn_conf(monkeypatch, GUNICORN_THREADS="8")["threads"] == 8


SLOW_CLIENTS = 6


@pytest.mark.live
def test_slow_clients_do_not_stall_the_one_worker_of_make_run(database: str, tmp_path: Path) -> None:
    """`make run` serves with one worker. Clients that connect and send nothing, or send half a
    request and stop, must not keep everyone else waiting (a sync worker answered /healthz only
    after its 30 s timeout killed it)."""
    with kit.live_site(database, tmp_path, workers=1) as site:
        host, port = site.url.removeprefix("http://").split(":")
        slow = [socket.create_connection((host, int(port)), timeout=5) for _ in range(SLOW_CLIENTS)]
        try:
            for n, conn in enumerate(slow):
                if n % 2:  # half of them trickle the start of a request, then stop
                    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            for path in ("/healthz", "/recharge?lang=en", "/healthz"):
                # Well inside gunicorn's 30 s timeout: an answer now, not after a worker restart.
                answer = requests.get(site.url + path, timeout=10)
                assert answer.status_code == 200, path
        finally:
            for conn in slow:
                conn.close()
    assert "WORKER TIMEOUT" not in site.log_text()


# ------------------------------------------------------------------ HTTPS behind a proxy


@pytest.fixture
def https_app(database: str) -> Iterator[Flask]:
    with site_for_tests(database, HEYON_HTTPS=True, HEYON_PROXY_HOPS=1) as app:
        yield app


@pytest.fixture
def behind_proxy(https_app: Flask) -> FlaskClient:
    """A browser on HTTPS, as nginx forwards it: plain HTTP to the app, the scheme in a header."""
    c = https_app.test_client()
    c.environ_base.update(PROXY)
    return c


def session_cookie_header(response: object) -> str:
    headers = response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(("session=", "__Host-session="))]
    assert len(found) == 1, headers
    return found[0]


def test_over_https_pages_send_hsts_and_a_host_only_secure_session_cookie(behind_proxy: FlaskClient) -> None:
    page = behind_proxy.get("/recharge?lang=en")
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == HSTS
    assert page.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    cookie = session_cookie_header(page)
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert cookie.startswith("__Host-session=")
    # What a browser requires of a __Host- cookie: Secure, Path=/, no Domain.
    assert "secure" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)
    assert "httponly" in attributes and "samesite=lax" in attributes


def test_over_plain_http_nothing_changes(client: FlaskClient) -> None:
    page = client.get("/recharge?lang=en")
    assert "Strict-Transport-Security" not in page.headers
    cookie = session_cookie_header(page)
    assert cookie.startswith("session=") and "secure" not in cookie.lower()


def test_links_made_outside_a_request_use_https(https_app: Flask) -> None:
    # The reconcile command and the sandbox gateway build absolute URLs without a request.
    assert url_for("customer.home", _external=True) == "https://heyon.test/"


@pytest.mark.parametrize(("referer", "status"), [
    ("https://heyon.test/recharge?lang=en", 422),  # same origin: the token is checked and passes
    (None, 400),
    ("https://elsewhere.example/recharge", 400),
    ("http://heyon.test/recharge", 400),  # a downgraded page is another origin
])
def test_the_csrf_referrer_check_works_behind_the_proxy(behind_proxy: FlaskClient, referer: str | None, status: int) -> None:
    form = kit.recharge_form(behind_proxy, amount="not an amount")
    headers = {"Referer": referer} if referer else {}
    answer = behind_proxy.post("/recharge", data=form, headers=headers)
    assert answer.status_code == status, answer.get_data(as_text=True)[:300]


# ------------------------------------------------------------------ connection pools


def test_postgresql_gets_a_small_checked_pool_and_sqlite_keeps_its_own(app: Flask) -> None:
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    if db.engine.dialect.name == "postgresql":
        assert options["pool_pre_ping"] is True
        assert (options["pool_size"], options["max_overflow"], options["pool_recycle"]) == (2, 3, 1800)
        assert db.engine.pool.size() == 2 and db.engine.pool.timeout() == 10  # type: ignore[attr-defined]
    else:
        assert not {"pool_size", "max_overflow", "pool_pre_ping"} & set(options)
    assert db.session.execute(text("SELECT 1")).scalar_one() == 1


def test_pool_settings_come_from_the_environment() -> None:
    env = {"HEYON_DB_POOL_SIZE": "4", "HEYON_DB_MAX_OVERFLOW": "0", "HEYON_DB_POOL_RECYCLE": "600",
           "HEYON_DB_POOL_TIMEOUT": "5"}
    config = {**from_environment(env), "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg:///heyon"}
    assert engine_options(config) == {"pool_size": 4, "max_overflow": 0, "pool_recycle": 600, "pool_timeout": 5,
                                      "pool_pre_ping": True}
    assert engine_options({**config, "SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"}) == {}
