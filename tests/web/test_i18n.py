"""Language: zh-Hans by default, English on request; a complete, compiled, up-to-date catalog."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.kit import ROOT, new_client
from tests.kit import CARD, csrf_from, make_card

LC_MESSAGES = ROOT / "translations/zh_Hans/LC_MESSAGES"
KEYWORDS: dict[str, Any] = {"_": None, "_l": None, "gettext": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
# Labels of the recharge form, in both languages.
LABELS = {"zh": ("卡号", "卡密码", "金额", "支付方式"), "en": ("Card number", "Card password", "Amount", "Payment method")}


def po_catalog() -> Catalog:
    with (LC_MESSAGES / "messages.po").open("rb") as f:
        return read_po(f)


def language_of(r: TestResponse) -> str:
    """``zh`` or ``en`` from the page, checked against its labels so the two cannot disagree."""
    body = r.get_data(as_text=True)
    match = re.search(r'<html lang="([^"]+)">', body)
    assert match, body[:300]
    lang = {"zh-Hans": "zh", "en": "en"}[match.group(1)]
    other = "en" if lang == "zh" else "zh"
    assert all(label in body for label in LABELS[lang]), lang
    assert not any(label in body for label in LABELS[other]), lang
    return lang


# ------------------------------------------------------------------ choosing the language


def test_chinese_is_the_default(client: FlaskClient) -> None:
    for path in ("/", "/recharge"):
        r = client.get(path)
        assert language_of(r) == "zh"
        assert '<a href="?lang=en" lang="en" hreflang="en">English</a>' in r.get_data(as_text=True)
    assert client.get_cookie("lang", domain="heyon.test") is None  # nothing chosen, nothing stored


def test_lang_en_switches_to_english_and_is_remembered(client: FlaskClient) -> None:
    assert language_of(client.get("/recharge?lang=en")) == "en"
    cookie = client.get_cookie("lang", domain="heyon.test")
    assert cookie is not None and cookie.value == "en"
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.max_age == 365 * 86400
    # The cookie, not the query string, now keeps English; it outranks Accept-Language.
    assert language_of(client.get("/recharge")) == "en"
    assert language_of(client.get("/", headers={"Accept-Language": "zh-CN"})) == "en"
    # And the switch back is remembered the same way.
    assert language_of(client.get("/recharge?lang=zh")) == "zh"
    assert language_of(client.get("/recharge")) == "zh"


def test_an_unknown_lang_is_ignored(client: FlaskClient) -> None:
    assert language_of(client.get("/recharge?lang=fr", headers={"Accept-Language": "en"})) == "en"
    assert language_of(client.get("/recharge?lang=<script>")) == "zh"
    assert client.get_cookie("lang", domain="heyon.test") is None


@pytest.mark.parametrize(("accept", "lang"), [
    ("en-US", "en"), ("en", "en"), ("en-GB,en;q=0.9", "en"), ("fr-FR,en;q=0.5", "en"),
    ("zh-CN", "zh"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en;q=0.3,zh-CN;q=0.9", "zh"),
    ("de-DE", "zh"), ("", "zh"),
])
def test_accept_language_chooses_between_chinese_and_english(client: FlaskClient, accept: str, lang: str) -> None:
    assert language_of(client.get("/recharge", headers={"Accept-Language": accept})) == lang


@pytest.mark.parametrize(("accept", "message"), [
    ("zh-CN", "可充值金额为 10.00 至 2000.00 元。"),
    ("en", "Amounts from 10.00 to 2000.00 yuan are accepted."),
])
def test_a_message_with_placeholders_is_filled_in_the_visitors_language(
        client: FlaskClient, accept: str, message: str) -> None:
    make_card()
    page = client.get("/recharge", headers={"Accept-Language": accept})
    data = {"csrf_token": csrf_from(page.get_data(as_text=True)), "card_number": CARD, "password": "246810",
            "amount": "other", "custom_amount": "5", "method": "sandbox"}
    r = client.post("/recharge", data=data, headers={"Accept-Language": accept})
    assert r.status_code == 422 and message in r.get_data(as_text=True)


def test_error_pages_follow_the_language(client: FlaskClient) -> None:
    zh = client.get("/no-such-page").get_data(as_text=True)
    en = client.get("/no-such-page", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "找不到页面" in zh and "Page not found" not in zh
    assert "Page not found" in en and "找不到页面" not in en


# ------------------------------------------------------------------ Vary


@pytest.mark.parametrize("path", ["/", "/recharge", "/faq", "/no-such-page"])
@pytest.mark.parametrize("face", ["plain", "htmx"])
def test_pages_vary_on_language_cookie_and_htmx(app: Flask, path: str, face: str) -> None:
    # A cache must not serve one visitor's language, or htmx's fragment, to another.
    r = new_client(app, face == "htmx").get(path)
    assert {"Accept-Language", "Cookie", "HX-Request"} <= set(r.vary)


def test_a_refused_form_varies_like_a_page(client: FlaskClient) -> None:
    page = client.get("/recharge")
    r = client.post("/recharge", data={"csrf_token": csrf_from(page.get_data(as_text=True)), "card_number": ""})
    assert r.status_code == 422
    assert {"Accept-Language", "Cookie", "HX-Request"} <= set(r.vary)


# ------------------------------------------------------------------ the catalog


def test_every_message_has_a_chinese_translation() -> None:
    catalog = po_catalog()
    assert len(catalog) > 50  # the real catalog, not an empty file
    missing = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert missing == []


def test_the_compiled_catalog_matches_the_po_file() -> None:
    # The site reads the .mo: a .po edited without `pybabel compile` changes nothing on screen.
    with (LC_MESSAGES / "messages.mo").open("rb") as f:
        mo = read_mo(f)
    po_strings = {m.id: m.string for m in po_catalog() if m.id}
    mo_strings = {m.id: m.string for m in mo if m.id}
    assert mo_strings == po_strings


def test_every_message_in_the_code_is_in_the_catalog() -> None:
    # A new English string must be extracted and translated before it ships.
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f, "babel.cfg")
    used: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS):
        for msgid in message if isinstance(message, tuple) else (message,):
            used.setdefault(msgid, f"{filename}:{lineno}")
    assert "Card number" in used and "Recharge" in used  # both Python and templates were read
    catalog = po_catalog()
    assert {msgid: where for msgid, where in used.items() if msgid not in catalog} == {}


def test_placeholders_survive_translation() -> None:
    catalog = po_catalog()
    with_placeholders = [m for m in catalog if m.id and "%(" in m.id]
    assert with_placeholders  # e.g. "Amounts from %(low)s to %(high)s yuan are accepted."
    for m in with_placeholders:
        assert Counter(PLACEHOLDER.findall(m.string)) == Counter(PLACEHOLDER.findall(m.id)), m.id
