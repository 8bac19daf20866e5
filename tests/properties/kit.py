"""Inputs of the property suites, shared with the feature tests that borrow them: the hostile-input
corpus, the Big List of Naughty Strings (tests/data), the check that an answer is in the page's
language, and pages with their per-visitor parts masked."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from babel.messages.pofile import read_po
from markupsafe import escape
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from tests.kit import ROOT

with (ROOT / "translations/zh_Hans/LC_MESSAGES/messages.po").open("rb") as _po:
    ZH: dict[str, str] = {m.id: m.string for m in read_po(_po) if isinstance(m.id, str) and m.id}


HEADERS: dict[str, dict[str, str]] = {"zh": {}, "en": {"Accept-Language": "en"}}  # zh-Hans is the default


TOO_BIG = "a" * 1_000_000  # the whole body is then over MAX_CONTENT_LENGTH


TEN_KB = "8" * 10_240  # digits, so only a length check can refuse it as a card number


SCRIPT = "<script>alert(1)</script>"


IMG = '"><img src=x onerror=alert(1)>'


FULLWIDTH_CARD = "８６００００００００００１２３４"  # CARD as a Chinese IME types it


FULLWIDTH_AMOUNT = "１００．５０"  # 100.50 yuan, likewise


CORPUS: dict[str, str] = {
    "empty": "", "space": " ", "nul": "\x00", "ansi": "\x07\x1b[31m", "1MB": TOO_BIG, "script": SCRIPT,
    "img-attr": IMG, "sql-or": "' OR 1=1 --", "sql-drop": "1; DROP TABLE cards", "fullwidth-card": FULLWIDTH_CARD,
    "fullwidth-amount": FULLWIDTH_AMOUNT, "rtl-override": "\u202e", "emoji": "😀💳", "10KB": TEN_KB,
    "nan": "NaN", "exponent": "1e9", "negative": "-100",
}


# For htmx and English, a subset that still covers every kind of answer.
SUBSET = ("empty", "nul", "script", "img-attr", "fullwidth-card", "fullwidth-amount", "1MB")


NOT_AN_AMOUNT = "Enter an amount in yuan, like 100 or 88.50."


def assert_in_language(body: str, lang: str, msgids: tuple[str, ...]) -> None:
    for msgid in msgids:
        english, chinese = str(escape(msgid)), str(escape(ZH[msgid]))
        if lang == "zh":
            assert chinese in body and english not in body, msgid
        else:
            assert english in body and chinese not in body, msgid


def assert_nothing_unescaped(body: str, value: str) -> None:
    assert "<script>alert(1)</script>" not in body and "<img src=x onerror" not in body
    if any(ch in value for ch in "<>\"'&"):
        assert value not in body


DATA = Path(__file__).resolve().parents[1] / "data"


MARKUP = ("<", '"', "'")


# Shorter strings (', "", '"') occur in any page by themselves; finding them proves nothing.
MIN_REFLECTED = 4


def load_blns() -> list[str]:
    strings = json.loads((DATA / "blns.json").read_text(encoding="utf-8"))
    assert isinstance(strings, list) and all(isinstance(s, str) for s in strings)
    return strings


BLNS = load_blns()


TAG = re.compile(r"<[^<>]*>")


def reflected(body: str, value: str) -> bool:
    """The naughty string appears raw in the page where its markup counts: anywhere if it holds
    a ``<`` (it opens a tag), inside a tag if it holds a quote (it closes an attribute). A quote
    in text is inert, and the FAQ's Markdown renderer (nh3) rightly leaves it unescaped there."""
    for v in {value, value.strip()}:
        if len(v) < MIN_REFLECTED or v not in body:
            continue
        if "<" in v or (any(q in v for q in MARKUP) and any(v in tag for tag in TAG.findall(body))):
            return True
    return False


def answer(request: Callable[[], TestResponse]) -> Response:
    """The site's answer; an exception that escapes the app is what a server turns into a 500."""
    try:
        return request()
    except Exception as exc:  # noqa: BLE001 - whatever escaped, a server would answer 500
        return Response(f"escaped the app: {type(exc).__name__}: {exc}", status=500, mimetype="text/plain")


def masked(html: bytes) -> bytes:
    """The page with its CSRF tokens, the balance page's reminder grant and one-time form ids
    blanked: tokens and grants are signed with the time, so two answers to the same client may
    differ there by a second; a form id is new in every answer. Nowhere else may two answers
    differ."""
    html = re.sub(rb'(name="form_id" type="hidden" value=")[^"]+', rb"\1FORM", html)
    html = re.sub(rb'(name="grant" type="hidden" value=")[^"]+', rb"\1GRANT", html)
    return re.sub(rb'(name="csrf_token" type="hidden" value="|name="csrf_token" value="|"X-CSRFToken": ")[^"]+',
                  rb"\1CSRF", html)
