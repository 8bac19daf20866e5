"""Language: zh-Hans by default, zh-Hant and English on request; complete, compiled, up-to-date
catalogs, zh-Hant's made from zh-Hans by a repeatable build; staff-written Chinese in either script."""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import refresh
from werkzeug.test import TestResponse
from wtforms import IntegerField

from heyon_site.database import in_write_transaction
from heyon_site.faq.services import seed
from heyon_site.faq.starter import STARTER
from heyon_site.web import hant, hant_catalog
from heyon_site.web.forms import Form
from tests.kit import ROOT, new_client
from tests.kit import CARD, csrf_from, make_card
from tests.promos.kit import save

TRANSLATIONS = ROOT / "translations"
LOCALES = ("zh_Hans", "zh_Hant")  # the catalogs; English is the msgids themselves
KEYWORDS: dict[str, Any] = {"_": None, "_l": None, "gettext": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
# Labels of the recharge form, in each language (by its ?lang= value).
LABELS = {"zh": ("卡号", "卡密码", "金额", "支付方式"), "zh-Hant": ("卡號", "卡密碼", "金額", "支付方式"),
          "en": ("Card number", "Card password", "Amount", "Payment method")}
HTML_LANG = {"zh-Hans": "zh", "zh-Hant": "zh-Hant", "en": "en"}
REBUILD = "zh_Hant is made from zh_Hans: run `make translations-hant` (python -m heyon_site.web.hant_catalog)"


def po_catalog(locale: str = "zh_Hans", translations: Path = TRANSLATIONS) -> Catalog:
    with (translations / locale / "LC_MESSAGES/messages.po").open("rb") as f:
        return read_po(f)


def language_of(r: TestResponse) -> str:
    """``zh``, ``zh-Hant`` or ``en`` from the page, checked against its labels so the two cannot
    disagree (a label both Chinese scripts write alike proves neither)."""
    body = r.get_data(as_text=True)
    match = re.search(r'<html lang="([^"]+)">', body)
    assert match, body[:300]
    lang = HTML_LANG[match.group(1)]
    assert all(label in body for label in LABELS[lang]), lang
    others = {label for other, labels in LABELS.items() if other != lang for label in labels} - set(LABELS[lang])
    assert not any(label in body for label in others), lang
    return lang


def switch_links(html: str) -> list[tuple[str, str, str, str]]:
    """The header's language links: (href, lang, hreflang, text)."""
    nav = html[html.index("<nav>"):html.index("</nav>")]
    return re.findall(r'<a href="([^"]*)" lang="([^"]*)" hreflang="([^"]*)">([^<]*)</a>', nav)


# ------------------------------------------------------------------ choosing the language


def test_chinese_is_the_default(client: FlaskClient) -> None:
    for path in ("/", "/recharge"):
        r = client.get(path)
        assert language_of(r) == "zh"
        body = r.get_data(as_text=True)
        assert '<a href="?lang=en" lang="en" hreflang="en">English</a>' in body
        assert '<a href="?lang=zh-Hant" lang="zh-Hant" hreflang="zh-Hant">繁體</a>' in body
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


def test_lang_zh_hant_switches_to_traditional_and_is_remembered(client: FlaskClient) -> None:
    r = client.get("/recharge?lang=zh-Hant")
    assert language_of(r) == "zh-Hant"
    assert [(href, text) for href, _lang, _hreflang, text in switch_links(r.get_data(as_text=True))] == [
        ("?lang=zh", "简体"), ("?lang=en", "English")]
    cookie = client.get_cookie("lang", domain="heyon.test")
    assert cookie is not None and cookie.value == "zh-Hant"
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.max_age == 365 * 86400
    assert language_of(client.get("/", headers={"Accept-Language": "en"})) == "zh-Hant"
    assert '<html lang="zh-Hant">' in client.get("/balance").get_data(as_text=True)
    assert language_of(client.get("/recharge?lang=en")) == "en"
    assert language_of(client.get("/recharge")) == "en"
    assert language_of(client.get("/recharge?lang=zh-Hant")) == "zh-Hant"
    assert language_of(client.get("/recharge?lang=zh")) == "zh"
    assert language_of(client.get("/recharge")) == "zh"


def test_an_unknown_lang_is_ignored(client: FlaskClient) -> None:
    assert language_of(client.get("/recharge?lang=fr", headers={"Accept-Language": "en"})) == "en"
    assert language_of(client.get("/recharge?lang=<script>")) == "zh"
    assert language_of(client.get("/recharge?lang=zh-TW")) == "zh"  # an Accept-Language tag, not a ?lang= value
    assert client.get_cookie("lang", domain="heyon.test") is None


@pytest.mark.parametrize(("accept", "lang"), [
    ("en-US", "en"), ("en", "en"), ("en-GB,en;q=0.9", "en"), ("fr-FR,en;q=0.5", "en"),
    ("zh-CN", "zh"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en;q=0.3,zh-CN;q=0.9", "zh"),
    ("de-DE", "zh"), ("", "zh"),
    ("zh", "zh"), ("zh-SG", "zh"), ("zh-Hans", "zh"), ("zh-Hans-CN", "zh"), ("zh-Hans-HK", "zh"),
    ("zh-TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh-MO", "zh-Hant"), ("zh-Hant", "zh-Hant"),
    ("zh-Hant-TW", "zh-Hant"), ("zh-Hant-HK", "zh-Hant"), ("zh-hant", "zh-Hant"), ("zh_TW", "zh-Hant"),
    ("yue-HK", "zh-Hant"), ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh-Hant"), ("en;q=0.5,zh-HK;q=0.8", "zh-Hant"),
    ("zh-HK;q=0.5,en", "en"), ("fr,zh-Hant-MO;q=0.4", "zh-Hant"),
])
def test_accept_language_chooses_among_the_three_languages(client: FlaskClient, accept: str, lang: str) -> None:
    assert language_of(client.get("/recharge", headers={"Accept-Language": accept})) == lang


@pytest.mark.parametrize(("accept", "message"), [
    ("zh-CN", "可充值金额为 10.00 至 2000.00 元。"),
    ("zh-TW", "可儲值金額為 10.00 至 2000.00 元。"),
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
    hant_page = client.get("/no-such-page", headers={"Accept-Language": "zh-HK"}).get_data(as_text=True)
    en = client.get("/no-such-page", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "找不到页面" in zh and "Page not found" not in zh
    assert "找不到頁面" in hant_page and '<html lang="zh-Hant">' in hant_page
    assert "Page not found" in en and "找不到页面" not in en


def test_the_staff_area_speaks_traditional_chinese(client: FlaskClient) -> None:
    body = client.get("/staff/login?lang=zh-Hant").get_data(as_text=True)
    assert '<html lang="zh-Hant">' in body and "使用者名稱" in body and "用户名" not in body
    links = re.findall(r'<a class="lang" href="([^"]*)" lang="([^"]*)" hreflang="\2">([^<]*)</a>', body)
    assert links == [("?lang=zh", "zh-Hans", "简体"), ("?lang=en", "en", "English")]


def test_wtforms_own_messages_are_traditional_for_zh_hant(app: Flask) -> None:
    class Number(Form):
        class Meta:
            csrf = False

        n = IntegerField()

    with app.test_request_context("/?lang=zh-Hant", method="POST", data={"n": "abc"}):
        refresh()  # the test's one app context would keep a language chosen before
        form = Number()
        assert not form.validate()
        assert "整數" in form.n.errors[0]  # WTForms' zh_TW catalog, not its Simplified zh


# ------------------------------------------------------------------ the switch


def test_the_switch_keeps_the_pages_query_parameters(client: FlaskClient) -> None:
    body = client.get("/faq?q=%E5%8D%A1+x&lang=en").get_data(as_text=True)
    assert switch_links(body) == [
        ("?q=%E5%8D%A1+x&amp;lang=zh", "zh-Hans", "zh-Hans", "简体"),
        ("?q=%E5%8D%A1+x&amp;lang=zh-Hant", "zh-Hant", "zh-Hant", "繁體"),
    ]
    # Following a link keeps the search and changes only the language.
    r = client.get("/faq?q=%E5%8D%A1+x&lang=zh-Hant")
    assert '<html lang="zh-Hant">' in r.get_data(as_text=True) and 'value="卡 x"' in r.get_data(as_text=True)
    repeated = client.get("/faq?q=1&q=%3Cx%3E&lang=zh").get_data(as_text=True)
    assert [href for href, *_ in switch_links(repeated)] == ["?q=1&amp;q=%3Cx%3E&amp;lang=zh-Hant",
                                                            "?q=1&amp;q=%3Cx%3E&amp;lang=en"]


def test_the_switch_carries_no_card_number_or_password(client: FlaskClient) -> None:
    # Only the parameters pages read to show themselves: nothing about a card is echoed from a URL.
    body = client.get(f"/recharge/quote?amount=100&card_number={CARD}&password=246810&other=x").get_data(as_text=True)
    assert [href for href, *_ in switch_links(body)] == ["?amount=100&amp;lang=zh-Hant", "?amount=100&amp;lang=en"]
    assert CARD not in body and "246810" not in body


def test_a_cached_page_keeps_no_query_parameter_in_its_switch(app: Flask) -> None:
    # A cached page is shown to every visitor of its language: it may reflect nothing from the request.
    app.config["HEYON_PAGE_CACHE_SECONDS"] = 60
    first = new_client(app).get("/recharge?utm=visitorOne&lang=zh-Hant").get_data(as_text=True)
    second = new_client(app).get("/recharge?lang=zh-Hant&other=visitorTwo").get_data(as_text=True)
    for body in (first, second):
        assert [href for href, *_ in switch_links(body)] == ["?lang=zh", "?lang=en"]
        assert "visitorOne" not in body and "visitorTwo" not in body


# ------------------------------------------------------------------ the page cache and Vary


def test_the_page_cache_keeps_each_language_apart(app: Flask) -> None:
    app.config["HEYON_PAGE_CACHE_SECONDS"] = 60
    for _ in range(2):  # the second round comes from the cache
        for path in ("/", "/recharge", "/balance", "/faq"):
            for lang, headers in (("zh", {}), ("zh-Hant", {"Accept-Language": "zh-TW"}), ("en", {"Accept-Language": "en"})):
                r = new_client(app).get(path, headers=headers)
                assert r.status_code == 200
                match = re.search(r'<html lang="([^"]+)">', r.get_data(as_text=True))
                assert match and HTML_LANG[match.group(1)] == lang, (path, lang)
                if path in ("/", "/recharge"):
                    assert language_of(r) == lang
    keys = {key for key in app.extensions["heyon.page_cache"]}
    assert {locale for _template, locale, _where in keys} == {"zh_Hans", "zh_Hant", "en"}


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


# ------------------------------------------------------------------ what staff write, in Traditional


@pytest.mark.parametrize(("lang", "shown", "hidden"), [
    ("zh-Hant", "儲值滿100元多送10元", "充值满100元多送10元"),
    ("zh", "充值满100元多送10元", "儲值滿100元多送10元"),
])
def test_a_promotion_title_is_shown_in_the_readers_script(app: Flask, lang: str, shown: str, hidden: str) -> None:
    save(title_en="Get 10 more", title_zh="充值满100元多送10元", kind="fixed_bonus", value_fen=1000, threshold_fen=10000)
    for path in ("/", "/recharge"):
        body = new_client(app).get(f"{path}?lang={lang}").get_data(as_text=True)
        assert shown in body and hidden not in body and "Get 10 more" not in body


def test_the_starter_faq_is_shown_in_traditional(app: Flask, client: FlaskClient) -> None:
    in_write_transaction(lambda: seed("zh_Hans", STARTER["zh_Hans"]))
    body = client.get("/faq?lang=zh-Hant").get_data(as_text=True)
    assert "為什麼儲值失敗？" in body and "为什么充值失败？" not in body
    assert "<strong>訂單編號</strong>" in body  # the Markdown answer, rendered then converted
    assert "<h2>您的卡</h2>" in body and body.count("<summary>") == len(STARTER["zh_Hans"])
    assert "为什么充值失败？" in client.get("/faq?lang=zh").get_data(as_text=True)


@pytest.mark.parametrize(("query", "found"), [
    ("儲值", 5), ("充值", 5),  # typed in Traditional (as shown), or in Simplified
    ("入帳", 3), ("網路", 1), ("网络", 1), ("QR", 0), ("no such words", 0),
])
def test_a_traditional_reader_searches_what_they_see(app: Flask, query: str, found: int) -> None:
    in_write_transaction(lambda: seed("zh_Hans", STARTER["zh_Hans"]))
    for face in ("plain", "htmx"):
        body = new_client(app, face == "htmx").get("/faq", query_string={"q": query, "lang": "zh-Hant"})
        html = body.get_data(as_text=True)
        assert html.count("<summary>") == found, (face, query)
        assert "为" not in html and ("<details open>" in html) == bool(found)


# ------------------------------------------------------------------ the catalogs


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_has_a_translation(locale: str) -> None:
    catalog = po_catalog(locale)
    assert len(catalog) > 50  # the real catalog, not an empty file
    missing = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert missing == [], REBUILD if locale == "zh_Hant" else "translate them in zh_Hans"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_compiled_catalog_matches_the_po_file(locale: str) -> None:
    # The site reads the .mo: a .po edited without `pybabel compile` changes nothing on screen.
    with (TRANSLATIONS / locale / "LC_MESSAGES/messages.mo").open("rb") as f:
        mo = read_mo(f)
    po_strings = {m.id: m.string for m in po_catalog(locale) if m.id}
    mo_strings = {m.id: m.string for m in mo if m.id}
    assert mo_strings == po_strings


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_in_the_code_is_in_the_catalog(locale: str) -> None:
    # A new English string must be extracted and translated before it ships, in every language.
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f, "babel.cfg")
    used: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS):
        for msgid in message if isinstance(message, tuple) else (message,):
            used.setdefault(msgid, f"{filename}:{lineno}")
    assert "Card number" in used and "Recharge" in used  # both Python and templates were read
    catalog = po_catalog(locale)
    untranslated = {msgid: where for msgid, where in used.items() if msgid not in catalog or not catalog[msgid].string}
    assert untranslated == {}, REBUILD if locale == "zh_Hant" else "translate them in zh_Hans"


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_survive_translation(locale: str) -> None:
    catalog = po_catalog(locale)
    with_placeholders = [m for m in catalog if m.id and "%(" in m.id]
    assert with_placeholders  # e.g. "Amounts from %(low)s to %(high)s yuan are accepted."
    for m in with_placeholders:
        assert Counter(PLACEHOLDER.findall(m.string)) == Counter(PLACEHOLDER.findall(m.id)), m.id


def test_the_traditional_catalog_is_made_from_the_simplified_one() -> None:
    simplified, traditional = po_catalog("zh_Hans"), po_catalog("zh_Hant")
    assert [m.id for m in traditional] == [m.id for m in simplified], REBUILD
    assert traditional["Card number"].string == "卡號" and traditional["Recharge"].string == "儲值"
    assert traditional["Alipay"].string == "支付寶"
    # Every entry is the conversion of today's zh_Hans entry: no hand edit, nothing stale.
    stale = {m.id: (m.string, hant.to_hant(simplified[m.id].string)) for m in traditional
             if m.id and m.string != hant.to_hant(simplified[m.id].string)}
    assert stale == {}, REBUILD


def test_the_catalog_build_is_repeatable(tmp_path: Path) -> None:
    shutil.copytree(TRANSLATIONS / "zh_Hans", tmp_path / "zh_Hans")
    po, mo = hant_catalog.build(tmp_path)
    first = po.read_bytes(), mo.read_bytes()
    assert hant_catalog.build(tmp_path) == (po, mo)
    assert (po.read_bytes(), mo.read_bytes()) == first  # a second run changes no byte
    # And it is what is committed, byte for byte (the integrator re-runs it after new strings).
    committed = TRANSLATIONS / "zh_Hant/LC_MESSAGES"
    assert (committed / "messages.po").read_bytes() == first[0], REBUILD
    assert (committed / "messages.mo").read_bytes() == first[1], REBUILD


# ------------------------------------------------------------------ the converter


@pytest.mark.parametrize(("simplified", "traditional"), [
    ("充值到账", "儲值入帳"),  # overrides: regional wording
    ("请联系客服", "請聯絡客服"),
    ("退出登录", "登出"), ("登录", "登入"),  # the longest phrase first
    ("最多只能", "最多只能"),  # OpenCC alone says 最多隻能
    ("“我的账号”", "「我的帳號」"),
    ("保存", "儲存"), ("请妥善保存", "請妥善保存"),  # an "=" line: the whole text only
    ("为您的卡充值", "為您的卡儲值"),  # OpenCC: characters
    ("Heyon card", "Heyon card"), ("", ""),
])
def test_to_hant(simplified: str, traditional: str) -> None:
    assert hant.to_hant(simplified) == traditional


def test_the_overrides_file_refuses_what_it_cannot_mean(tmp_path: Path) -> None:
    assert hant.read_overrides().phrases["充值"] == "儲值"  # the real file reads
    for bad in ("充值 儲值", "充值 →", "→ 儲值", "链接 → <a>", "充值 → 儲值\n充值 → 增值"):
        path = tmp_path / "overrides.txt"
        path.write_text(f"# a comment\n{bad}\n", encoding="utf-8")
        with pytest.raises(ValueError, match="overrides.txt"):
            hant.read_overrides(path)
