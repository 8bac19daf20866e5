"""The sandbox gateway: its signed notification, sent in the background and retried like Alipay's,
only to a configured address; never beside a real provider; its page opened only by the signed
link (or the browser that made the order), which alone is sent on to the order's page."""
from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import runpy
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from heyon_site import create_app
from heyon_site.config import SandboxBesideRealMoney, from_environment, refuse_sandbox_beside_real_providers
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder, SandboxPayment
from heyon_site.providers import get as get_provider
from heyon_site.sandbox.notifier import deliver_with_retries

from tests.kit import ROOT, SANDBOX_SECRET, TEST_CONFIG, flask_cli, new_client, site_for_tests
from tests.fakes import FakeApi, serving
from tests.kit import (ORDER_FEN, balance, csrf_from, hidden_value, deliver_outbox, free_port, gateway_order_no, gateway_path, gateway_sign,
                  live_site, make_card, order, provider_order, recharge_form, start_order)
from tests.payments.kit import statements


def test_retries_until_the_site_answers_success() -> None:
    answers = iter(["fail", "error: connection refused", "success", "never asked"])
    calls: list[str] = []

    def deliver(url: str, fields: dict[str, str]) -> str:
        calls.append(url)
        return next(answers)

    assert deliver_with_retries("http://127.0.0.1:9/notify", {"out_trade_no": "1"}, (0, 0, 0, 0), deliver)
    assert len(calls) == 3


def test_gives_up_after_the_schedule() -> None:
    calls: list[str] = []
    assert not deliver_with_retries("u", {}, (0, 0), lambda url, fields: calls.append(url) or "fail")
    assert len(calls) == 2


@pytest.mark.live
def test_paying_on_the_live_gateway_credits_through_the_real_notification(app: Flask, database: str, tmp_path: Path) -> None:
    make_card(balance_fen=0)
    with live_site(database, tmp_path, workers=2) as site:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

        def post(path: str, fields: dict[str, str]) -> tuple[str, str]:
            data = urllib.parse.urlencode(fields).encode()
            with browser.open(site.url + path, data=data, timeout=15) as r:
                return r.geturl(), r.read().decode()

        with browser.open(site.url + "/recharge?lang=en", timeout=15) as r:
            form = r.read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        gateway_url, page = post("/recharge", {"csrf_token": token, "card_number": "8600 0000 0000 1234",
                                               "offer": hidden_value(form, "offer"), "form_id": hidden_value(form, "form_id"),
                                               "password": "246810", "amount": "50", "custom_amount": "", "method": "sandbox"})
        order_no = gateway_order_no(gateway_url)
        assert "50.00" in page
        order_url, _ = post(f"/pay/sandbox/{order_no}", {"csrf_token": token, "outcome": "pay"})
        deadline = time.monotonic() + 20
        while order(order_no).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert order(order_no).status == "credited"
        assert balance() == 5000
        with browser.open(order_url + "?lang=en", timeout=15) as r:
            assert "Receipt" in r.read().decode()


# ------------------------------------------------------------------ never beside real money


@pytest.mark.parametrize("providers", [("sandbox", "alipay"), ("alipay", "sandbox", "wechat"), ("stripe", "sandbox")])
def test_the_sandbox_beside_a_real_provider_refuses_to_start(tmp_path: Path, providers: tuple[str, ...]) -> None:
    with pytest.raises(SandboxBesideRealMoney, match="refusing to start") as refused:
        create_app({**TEST_CONFIG, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "HEYON_PROVIDERS": providers})
    real = [p for p in providers if p != "sandbox"]
    assert f"({', '.join(real)})" in str(refused.value) and "credit real cards" in str(refused.value)


@pytest.mark.parametrize("providers", [("sandbox",), ("alipay", "wechat", "stripe"), ()])
def test_the_sandbox_alone_or_real_providers_alone_start(providers: tuple[str, ...]) -> None:
    assert refuse_sandbox_beside_real_providers({"HEYON_PROVIDERS": providers}) is None


def test_flask_commands_refuse_the_sandbox_beside_a_real_provider(database: str) -> None:
    run = flask_cli(database, "cards", "show", "8600000000001234", env={"HEYON_PROVIDERS": "sandbox,alipay"})
    assert run.returncode != 0
    assert "refusing to start: HEYON_PROVIDERS names the sandbox beside real payment providers (alipay)" in run.stderr


@pytest.mark.live
def test_gunicorn_refuses_the_sandbox_beside_a_real_provider(database: str) -> None:
    env = {**os.environ, "DATABASE_URL": database, "SECRET_KEY": "test-secret-key", "PYTHONUNBUFFERED": "1",
           "HEYON_PROVIDERS": "sandbox,wechat", "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, "RATELIMIT_ENABLED": "false"}
    run = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "1",
                          "-b", f"127.0.0.1:{free_port()}", "wsgi:app"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    output = run.stderr + run.stdout
    assert run.returncode != 0 and "Worker failed to boot" in output, output[-2000:]
    assert "names the sandbox beside real payment providers (wechat)" in output


# ------------------------------------------------------------------ where the notification goes


def gateway_app(database: str, **settings: str) -> contextlib.AbstractContextManager[Flask]:
    """The site with these settings; the gateway's notifications collected in its test outbox.
    No SERVER_NAME: a request's Host is what the client sent, as in production."""
    unset = dict.fromkeys(("HEYON_SITE_URL", "HEYON_LISTEN_URL", "HEYON_SANDBOX_NOTIFY_URL"), "")
    return site_for_tests(database, SERVER_NAME=None, **{**unset, **settings})


@contextlib.contextmanager
def outbox_of(app: Flask) -> Iterator[list[tuple[str, dict[str, str]]]]:
    sent: list[tuple[str, dict[str, str]]] = []
    app.extensions["heyon.sandbox_sender"] = lambda url, fields, schedule: sent.append((url, dict(fields)))
    yield sent


def pay_from(client: FlaskClient, order_no: str, host: str, outcome: str = "pay", token: str | None = None) -> TestResponse:
    """Open the signed gateway page and press a button, every request naming ``host``; with
    ``token``, press it on a copy of the page opened before (a second tab)."""
    base = f"http://{host}"
    page = client.get(gateway_path(order_no), base_url=base)
    assert page.status_code == 200, page.status_code
    return client.post(gateway_path(order_no), base_url=base,
                       data={"csrf_token": token or csrf_from(page.get_data(as_text=True)), "outcome": outcome})


@pytest.mark.parametrize(("settings", "sent_to"), [
    ({"HEYON_SITE_URL": "https://pay.example.com"}, "https://pay.example.com/pay/notify/sandbox"),
    ({"HEYON_SITE_URL": "https://pay.example.com", "HEYON_SANDBOX_NOTIFY_URL": "http://10.0.0.5:8001/pay/notify/sandbox"},
     "http://10.0.0.5:8001/pay/notify/sandbox"),
    ({"HEYON_LISTEN_URL": "http://127.0.0.1:8123"}, "http://127.0.0.1:8123/pay/notify/sandbox"),
    ({"HEYON_SITE_URL": "https://pay.example.com", "HEYON_LISTEN_URL": "http://127.0.0.1:8123"},
     "https://pay.example.com/pay/notify/sandbox"),
])
def test_a_pay_with_a_hostile_host_header_notifies_the_configured_address_only(
        database: str, settings: dict[str, str], sent_to: str) -> None:
    with gateway_app(database, **settings) as app, outbox_of(app) as sent:
        order_no = provider_order("sandbox")
        client = new_client(app)
        tab = csrf_from(client.get(gateway_path(order_no), base_url="http://127.0.0.1:9").get_data(as_text=True))  # a second tab, open before paying
        assert pay_from(client, order_no, "attacker.example").status_code < 400
        assert pay_from(client, order_no, "127.0.0.1:9", "fail", tab).status_code < 400  # its press, another Host
        assert [url for url, _ in sent] == [sent_to, sent_to]
        assert {fields["out_trade_no"] for _, fields in sent} == {order_no}


def test_with_no_address_known_nothing_is_sent_and_the_log_says_why(
        database: str, caplog: pytest.LogCaptureFixture) -> None:
    with gateway_app(database) as app, outbox_of(app) as sent:
        order_no = provider_order("sandbox")
        assert pay_from(new_client(app), order_no, "attacker.example").status_code < 400
        assert sent == []
        assert f"sandbox notification for order {order_no} not sent" in caplog.text
        assert "HEYON_SITE_URL" in caplog.text
        # The payment is in the gateway's book: reconciliation finds it with the sandbox's query.
        found = get_provider("sandbox").query(order_no)  # type: ignore[union-attr]
        assert found is not None and (found.kind, found.amount_fen) == ("paid", ORDER_FEN)
        assert order(order_no).status == "pending"


@pytest.mark.parametrize(("raw", "kept"), [("https://pay.example.com/", "https://pay.example.com"),
                                           ("http://127.0.0.1:8000", "http://127.0.0.1:8000"), ("", "")])
def test_the_site_address_is_read_as_a_base_url(raw: str, kept: str) -> None:
    assert from_environment({"HEYON_SITE_URL": raw})["HEYON_SITE_URL"] == kept


@pytest.mark.parametrize("raw", ["pay.example.com", "ftp://pay.example.com", "https://", "https://x.example/?a=b"])
def test_a_site_address_that_is_not_one_stops_the_start(raw: str) -> None:
    with pytest.raises(ValueError, match="HEYON_SITE_URL must be an http"):
        from_environment({"HEYON_SITE_URL": raw})


class Listener:
    def __init__(self, family: int, address: object) -> None:
        self.family, self.address = family, address

    def getsockname(self) -> object:
        return self.address


@pytest.mark.parametrize(("listeners", "https", "url"), [
    ([Listener(socket.AF_INET, ("127.0.0.1", 8000))], False, "http://127.0.0.1:8000"),
    ([Listener(socket.AF_INET, ("0.0.0.0", 8001))], False, "http://127.0.0.1:8001"),
    ([Listener(socket.AF_INET6, ("::", 8002, 0, 0))], True, "https://[::1]:8002"),
    ([Listener(socket.AF_UNIX, "/run/heyon.sock"), Listener(socket.AF_INET, ("10.1.2.3", 8003))], False,
     "http://10.1.2.3:8003"),
    ([Listener(socket.AF_UNIX, "/run/heyon.sock")], False, None),
])
def test_gunicorn_tells_the_app_the_address_it_listens_on(
        monkeypatch: pytest.MonkeyPatch, listeners: list[Listener], https: bool, url: str | None) -> None:
    monkeypatch.setenv("HEYON_LISTEN_URL", "http://before.invalid")  # so that it is restored afterwards
    monkeypatch.delenv("HEYON_LISTEN_URL")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    server = SimpleNamespace(LISTENERS=listeners, cfg=SimpleNamespace(is_ssl=https, preload_app=False))
    conf["when_ready"](server)
    assert os.environ.get("HEYON_LISTEN_URL") == url


@pytest.mark.live
def test_a_hostile_host_header_on_the_live_gateway_gets_no_notification(
        app: Flask, database: str, tmp_path: Path) -> None:
    """gunicorn with no address set (as the contract check and `make run` start it): the
    notification goes to the address gunicorn.conf.py found, and a Host naming another server
    (here a listener that records whatever reaches it) gets nothing."""
    order_no = provider_order("sandbox")
    with serving(FakeApi({})) as trap, live_site(database, tmp_path, workers=1) as site, \
            requests.Session() as browser:
        hostile = {"Host": trap.base_url.removeprefix("http://")}
        page = browser.get(site.url + gateway_path(order_no), headers=hostile, timeout=15)
        assert page.status_code == 200
        paid = browser.post(site.url + gateway_path(order_no), headers=hostile, timeout=15, allow_redirects=False,
                            data={"csrf_token": csrf_from(page.text), "outcome": "pay"})
        deadline = time.monotonic() + 20
        while order(order_no).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert trap.seen == []
        assert order(order_no).status == "credited"
        # This browser did not make the order: it is not sent on to the order's secret page.
        assert paid.status_code == 200 and order(order_no).token not in paid.text


# ------------------------------------------------------------------ who may open the gateway


def strip_tokens(html: str) -> str:
    return re.sub(r'[\w.-]{40,}', "TOKEN", html)


def test_an_unsigned_gateway_address_is_the_404_of_an_unknown_order(app: Flask) -> None:
    order_no = provider_order("sandbox")  # made without a browser: nobody's session knows it
    unknown = "2601010000000000"
    stranger = new_client(app)
    token = csrf_from(stranger.get("/recharge").get_data(as_text=True))
    with statements() as seen:
        answers = {
            "unknown": stranger.get(f"/pay/sandbox/{unknown}"),
            "unsigned": stranger.get(f"/pay/sandbox/{order_no}"),
            "wrong sign": stranger.get(f"/pay/sandbox/{order_no}?sign={gateway_sign(unknown)}"),
            "cut sign": stranger.get(f"/pay/sandbox/{order_no}?sign={gateway_sign(order_no)[:63]}"),
            "other key": stranger.get(f"/pay/sandbox/{order_no}?sign={gateway_sign(order_no, 'not-the-secret')}"),
            "posted": stranger.post(f"/pay/sandbox/{order_no}", data={"csrf_token": token, "outcome": "pay"}),
            "posted, unknown": stranger.post(f"/pay/sandbox/{unknown}", data={"csrf_token": token, "outcome": "pay"}),
        }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    pages = {strip_tokens(r.get_data(as_text=True)) for r in answers.values()}
    assert len(pages) == 1
    varying = ("Set-Cookie", "Content-Length", "X-Request-ID")  # the CSRF token's cookie, every request's id
    headers = {tuple(sorted((k, v) for k, v in r.headers if k not in varying)) for r in answers.values()}
    assert len(headers) == 1, headers
    assert not [s for s in seen if "recharge_orders" in s]  # refused before any lookup: no timing to tell
    # An unknown order with a valid signature is not found either (only the secret can make one).
    assert stranger.get(gateway_path(unknown)).status_code == 404
    assert app.extensions["heyon.test_outbox"] == []
    assert db.session.scalar(select(func.count()).select_from(SandboxPayment)) == 0


def test_the_recharge_form_sends_the_browser_to_the_signed_gateway(app: Flask, client: FlaskClient) -> None:
    make_card()
    r = client.post("/recharge", data=recharge_form(client))
    path, _, query = r.headers["Location"].partition("?")
    order_no = path.rsplit("/", 1)[1]
    assert path == f"/pay/sandbox/{order_no}" and query == f"sign={gateway_sign(order_no)}"
    assert new_client(app).get(r.headers["Location"]).status_code == 200  # the link opens anywhere
    assert client.get(path).status_code == 200  # and its own browser needs no more than the number


def test_only_the_browser_that_made_the_order_is_sent_to_its_page(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    order_no = start_order(client)
    token = order(order_no).token
    other = new_client(app)
    page = other.get(gateway_path(order_no))
    assert page.status_code == 200 and "100.00" in page.get_data(as_text=True)
    done = other.post(gateway_path(order_no), data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                                    "outcome": "pay"})
    body = done.get_data(as_text=True)
    assert done.status_code == 200 and "Location" not in done.headers
    assert token not in body and "/orders/" not in body
    assert done.headers["Cache-Control"] == "no-store"
    assert deliver_outbox(app, client) == ["success"] and balance() == 500 + 10000  # the payment itself counts
    # The browser that made the order is led to it: the page, paid, links to it; a press sends it on.
    assert f'href="/orders/{token}"' in client.get(gateway_path(order_no)).get_data(as_text=True)
    mine = client.post(gateway_path(order_no), data={"csrf_token": csrf_from(client.get("/recharge").get_data(as_text=True)),
                                                     "outcome": "pay"})
    assert mine.status_code == 303 and mine.headers["Location"].endswith(f"/orders/{token}")


def test_the_neutral_page_is_in_both_languages(app: Flask) -> None:
    for n, (lang, heading) in enumerate((("en", "Payment done"), ("zh", "支付完成"))):
        order_no = provider_order("sandbox", card=f"860000000000{n}999")
        c = new_client(app)
        page = c.get(gateway_path(order_no) + f"&lang={lang}")
        done = c.post(gateway_path(order_no), data={"csrf_token": csrf_from(page.get_data(as_text=True)), "outcome": "pay"})
        assert heading in done.get_data(as_text=True)


def test_the_gateway_is_limited_per_address(database: str) -> None:
    with site_for_tests(database, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://",
                        HEYON_IP_LIMIT="3 per minute") as app, outbox_of(app):
        order_no = provider_order("sandbox")
        c = new_client(app)
        c.environ_base["REMOTE_ADDR"] = "198.51.100.7"
        page = c.get(gateway_path(order_no))
        token = csrf_from(page.get_data(as_text=True))
        statuses = [page.status_code, c.get(f"/pay/sandbox/{order_no}").status_code,
                    c.post(gateway_path(order_no), data={"csrf_token": token, "outcome": "pay"}).status_code,
                    c.get(gateway_path(order_no)).status_code,
                    c.post(gateway_path(order_no), data={"csrf_token": token, "outcome": "pay"}).status_code]
        assert statuses == [200, 404, 200, 429, 429]  # reading and paying draw on one budget
        other = new_client(app)
        other.environ_base["REMOTE_ADDR"] = "203.0.113.9"
        assert other.get(gateway_path(order_no)).status_code == 200


def test_back_on_the_gateway_after_paying_says_so_and_leads_to_the_order(database: str) -> None:
    """Back from the order page must not offer to pay again as if nothing happened: the page
    says the order is paid, and the browser that made the order gets the way to it; before
    paying, the page has a way back."""
    with gateway_app(database) as app, outbox_of(app):
        make_card()
        db.session.commit()
        client = new_client(app)
        order_no = start_order(client)
        token = db.session.scalars(select(RechargeOrder.token).where(RechargeOrder.order_no == order_no)).one()
        before = client.get(gateway_path(order_no) + "&lang=en").get_data(as_text=True)
        assert f'href="/orders/{token}">Back to the order without paying' in before and 'value="pay"' in before
        assert pay_from(client, order_no, "localhost").status_code < 400
        again = client.get(gateway_path(order_no) + "&lang=en")
        body = again.get_data(as_text=True)
        assert again.status_code == 200 and again.headers["Cache-Control"] == "no-store"
        assert "This order is paid." in body and 'value="pay"' not in body
        assert f'href="/orders/{token}">See the order' in body
        stranger = new_client(app).get(gateway_path(order_no) + "&lang=en").get_data(as_text=True)
        assert "This order is paid." in stranger and token not in stranger  # the signed link alone tells no token
