"""The FAQ from the database: grouping, language, search (plain GET and htmx), hostile content
rendered inert, the starter set and its `flask faq seed` command."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from markupsafe import escape
from sqlalchemy import func, select

from heyon_site.faq.markdown import render_markdown
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.faq.services import MAX_QUERY, clean_query
from heyon_site.faq.starter import STARTER
from heyon_site.models import FaqEntry
from heyon_site.web.pages import csp

# ------------------------------------------------------------------ helpers


def entry(question: str, answer: str = "An answer.", *, locale: str = "en", category: str = "General",
          position: int = 0, published: bool = True) -> FaqEntry:
    return FaqEntry(locale=locale, category=category, question=question, answer_md=answer,
                    position=position, published=published)


def add(*entries: FaqEntry) -> None:
    in_write_transaction(lambda: db.session.add_all(entries))


def results(html: str) -> str:
    """The results block of a full page (it ends the page's main content), or a whole fragment."""
    start = html.index('<div id="faq-results"')
    end = html.find("</main>", start)
    return html[start:end if end >= 0 else None]


def outline(html: str) -> list[tuple[str, str]]:
    """Category headings and questions, in page order."""
    return re.findall(r"<(h2|summary)>(.*?)</\1>", results(html), re.S)


def questions(html: str) -> list[str]:
    return [text for tag, text in outline(html) if tag == "summary"]


class Tags(HTMLParser):
    """Every start tag as a browser's parser reads it: name, attributes (entities decoded), source."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None], str]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs), self.get_starttag_text() or ""))

    handle_startendtag = handle_starttag


# What an answer may contain after sanitising, and what the results block adds around answers.
ANSWER_TAGS: dict[str, set[str]] = {
    **{t: set() for t in ("p", "br", "strong", "em", "ul", "ol", "li", "code", "blockquote", "h3", "h4")},
    "a": {"href", "rel"},
}
RESULTS_TAGS = {**ANSWER_TAGS, "div": {"id", "class"}, "h2": set(), "details": {"open"}, "summary": set()}
SAFE_SCHEMES = ("http://", "https://", "mailto:", "tel:")


def assert_inert(html: str, allowed: dict[str, set[str]]) -> None:
    """No script, no event handler, no htmx or data attribute, no style, no dangerous URL in any
    tag; only allow-listed tags and attributes. Hostile text may still be *shown*, escaped."""
    assert "<script" not in html.lower()
    for source in re.findall(r"<[^>]*>", html):  # text cannot hold a raw "<": every match is a tag
        assert not re.search(r"\s(on[a-z]+|hx-[\w:.-]*|data-[\w:.-]*|style)\s*=", source, re.I), source
        assert not re.search(r"javascript:|vbscript:|data:", source, re.I), source
    for tag, attrs, source in Tags(html).found:
        assert tag in allowed and set(attrs) <= allowed[tag], source
        if "href" in attrs:
            assert (attrs["href"] or "").startswith(SAFE_SCHEMES), source
        if tag == "a":  # the site's own support links carry no rel; an answer's always do
            assert attrs.get("rel") in (None, "nofollow noopener"), source


# ------------------------------------------------------------------ Markdown, without a database


def test_markdown_keeps_the_allowed_formatting() -> None:
    html = render_markdown("# Paying\n\n**Check** the _amount_ and `card`.\n\n- one\n- two\n\n1. first\n\n> quoted\n\n"
                           "### Small\n\nline  \nbreak")
    assert html == ("<h3>Paying</h3>\n<p><strong>Check</strong> the <em>amount</em> and <code>card</code>.</p>\n"
                    "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n<ol>\n<li>first</li>\n</ol>\n"
                    "<blockquote>\n<p>quoted</p>\n</blockquote>\n<h4>Small</h4>\n<p>line<br>\nbreak</p>\n")


def test_markdown_links_keep_only_web_mail_and_phone_urls() -> None:
    html = render_markdown('[site](https://heyon.example/help "title") [mail](mailto:help@heyon.example) '
                           "[call](tel:+864000000000) [rel](/balance) [ftp](ftp://heyon.example/x)")
    assert html == (
        '<p><a href="https://heyon.example/help" rel="nofollow noopener">site</a> '
        '<a href="mailto:help@heyon.example" rel="nofollow noopener">mail</a> '
        '<a href="tel:+864000000000" rel="nofollow noopener">call</a> '
        '<a rel="nofollow noopener">rel</a> <a rel="nofollow noopener">ftp</a></p>\n')


def test_markdown_shows_raw_html_as_text_and_drops_images() -> None:
    assert render_markdown("<b>bold</b> ![pic](https://heyon.example/a.png)") == "<p>&lt;b&gt;bold&lt;/b&gt; </p>\n"


HOSTILE: dict[str, str] = {
    "script": "<script>alert(1)</script>",
    "script-src": "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "img-onerror": "<img src=x onerror=alert(1)>",
    "attr-breakout": '"><img src=x onerror=alert(1)>',
    "js-link": "[x](javascript:alert(1))",
    "js-link-mixed-case": "[x](JaVaScRiPt:alert(1))",
    "js-link-entity": "[x](&#106;avascript:alert(1))",
    "js-link-hex-entities": "[x](&#x6A;avascript&#58;alert(1))",
    "js-link-named-entity": "[x](javascript&colon;alert(1))",
    "js-link-spaces": "[x](  javascript:alert(1)  )",
    "js-link-angle": "[x](<javascript:alert(1)>)",
    "js-link-percent": "[x](%6Aavascript:alert(1))",
    "js-autolink": "<javascript:alert(1)>",
    "js-reference": "[x][r]\n\n[r]: javascript:alert(1)",
    "vbscript-link": "[x](vbscript:msgbox(1))",
    "file-link": "[x](file:///etc/passwd)",
    "data-link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "data-image": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "tracking-image": "![x](https://evil.example/pixel.png)",
    "html-js-href": '<a href="javascript:alert(1)">x</a>',
    "html-entity-href": '<a href="&#x6A;avascript:alert(1)">x</a>',
    "html-onclick": '<a href="https://ok.example" onclick="alert(1)">ok</a>',
    "hx-get": '<a hx-get="/balance" hx-trigger="load">x</a>',
    "hx-post": '<div hx-post="/recharge" hx-trigger="load" hx-target="body">x</div>',
    "data-hx": '<a data-hx-get="/balance" data-hx-trigger="load">x</a>',
    "hx-on": '<div hx-on:htmx:load="alert(1)" hx-on::after-request="alert(1)">x</div>',
    "style": '<p style="position:fixed;inset:0;background:red">x</p>',
    "iframe": '<iframe src="https://evil.example"></iframe>',
    "svg-onload": "<svg onload=alert(1)><circle r=1></svg>",
    "svg-script": "<svg><script>alert(1)</script></svg>",
    "object": '<object data="javascript:alert(1)"></object>',
    "form": '<form action="javascript:alert(1)"><button>go</button></form>',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "base": '<base href="javascript:/">',
    "input-autofocus": "<input autofocus onfocus=alert(1)>",
    "details-ontoggle": "<details open ontoggle=alert(1)>",
    "entity-encoded-script": "&lt;script&gt;alert(1)&lt;/script&gt;",
    "nested-script": "<<script>script>alert(1)<</script>/script>",
    "split-script": "<scr<script>ipt>alert(1)</script>",
    "unclosed": "<b onmouseover=alert(1)>unclosed <i>deeper",
    "mutation": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "comment": "<!-- <script>alert(1)</script> -->",
    "code-fence": "```html\n<script>alert(1)</script>\n```",
    "inline-code": "`<img src=x onerror=alert(1)>`",
    "title-breakout": '[ok](https://ok.example "x\\" onmouseover=\\"alert(1)")',
    "quote-in-url": '[ok](https://ok.example/?q="><script>alert(1)</script>)',
    "blockquote": "> <script>alert(1)</script>\n> [x](javascript:alert(1))",
    "nested-list": "- [x](javascript:alert(1))\n  - <img src=x onerror=alert(1)>\n    - <svg onload=alert(1)>",
    "tel-markup": "[x](tel:+86<script>alert(1)</script>)",
    "mailto-markup": "[x](mailto:a@b.example?body=<img src=x onerror=alert(1)>)",
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_markdown_renders_inert(payload: str) -> None:
    assert_inert(render_markdown(payload), ANSWER_TAGS)


def test_a_search_text_is_cleaned_and_capped() -> None:
    assert clean_query("  refund\x00 \x1b[31m money\n\t ") == "refund [31m money"
    assert clean_query("退款") == "退款"
    assert clean_query("x" * 10_000) == "x" * MAX_QUERY


# ------------------------------------------------------------------ the customer page


def test_entries_are_grouped_by_category_in_position_order(app: Flask, client: FlaskClient) -> None:
    add(entry("Is my card roaming?", category="Card", position=30),
        entry("How do I pay?", category="Paying", position=10),
        entry("Where is the number?", category="Card", position=20),
        entry("Is there a minimum?", category="Paying", position=40),
        entry("Which providers?", category="Paying", position=40))  # same position: entered first, shown first
    assert outline(client.get("/faq?lang=en").get_data(as_text=True)) == [
        ("h2", "Paying"), ("summary", "How do I pay?"), ("summary", "Is there a minimum?"),
        ("summary", "Which providers?"),
        ("h2", "Card"), ("summary", "Where is the number?"), ("summary", "Is my card roaming?"),
    ]


def test_only_published_entries_in_the_pages_language(app: Flask, client: FlaskClient) -> None:
    add(entry("怎样充值？", locale="zh_Hans", category="充值"),
        entry("草稿问题", locale="zh_Hans", category="充值", published=False),
        entry("How do I recharge?", category="Recharging"),
        entry("Draft question", category="Recharging", published=False))
    assert questions(client.get("/faq").get_data(as_text=True)) == ["怎样充值？"]  # zh-Hans by default
    assert questions(client.get("/faq?lang=en").get_data(as_text=True)) == ["How do I recharge?"]
    assert "Draft" not in client.get("/faq?q=draft").get_data(as_text=True)  # search shows no draft either


def test_search_by_plain_get_answers_the_full_page(app: Flask, client: FlaskClient) -> None:
    add(entry("How do I pay?", "With **Alipay** or WeChat Pay."), entry("Can I get a refund?", "No."))
    page = client.get("/faq?lang=en&q=ALIPAY")  # the answer's text, in another case
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in html and 'value="ALIPAY"' in html
    assert questions(html) == ["How do I pay?"] and "<details open>" in results(html)
    assert questions(client.get("/faq", query_string={"q": "  Refund "}).get_data(as_text=True)) == [
        "Can I get a refund?"]  # the question's text; spaces around it do not count
    everything = client.get("/faq?q=").get_data(as_text=True)
    assert len(questions(everything)) == 2 and "<details open>" not in everything  # browsing: all closed


def test_the_search_box_is_a_plain_form_enhanced_by_htmx(app: Flask, client: FlaskClient) -> None:
    html = client.get("/faq?lang=en").get_data(as_text=True)
    form = next(a for t, a, _ in Tags(html).found if t == "form")
    box = next(a for t, a, _ in Tags(html).found if t == "input" and a.get("name") == "q")
    assert form["method"] == "get" and form["action"] == "/faq"
    assert box["type"] == "search" and box["maxlength"] == str(MAX_QUERY)
    assert box["hx-get"] == "/faq" and box["hx-target"] == "#faq-results"
    assert box["hx-trigger"] == "input changed delay:300ms, search"


def test_htmx_search_answers_only_the_results_block(app: Flask, hx: FlaskClient) -> None:
    add(entry("How do I pay?", "With Alipay."), entry("Can I get a refund?", "No."))
    r = hx.get("/faq?lang=en&q=refund")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "HX-Request" in r.headers["Vary"]
    assert body.lstrip().startswith('<div id="faq-results"') and body.rstrip().endswith("</div>")
    assert "<html" not in body and "<form" not in body and "<footer" not in body
    assert questions(body) == ["Can I get a refund?"]
    # The back button's history restore wants the whole page again.
    restore = hx.get("/faq?q=refund", headers={"HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True) and "HX-Request" in restore.headers["Vary"]


def test_like_wildcards_in_a_search_are_literal(app: Flask, client: FlaskClient) -> None:
    add(entry("A 100% bonus?", "Sometimes."), entry("What is card_no?", "A field name."),
        entry("Where is my card number?", "On the card."), entry("Is 50/50 possible?", "No."))

    def found(q: str) -> list[str]:
        return questions(client.get("/faq", query_string={"q": q, "lang": "en"}).get_data(as_text=True))

    assert found("%") == ["A 100% bonus?"]
    assert found("_") == ["What is card_no?"]
    assert found("d_n") == ["What is card_no?"]  # as a wildcard it would match "card number" too
    assert found("0%") == ["A 100% bonus?"]
    assert found("/") == ["Is 50/50 possible?"]  # SQLAlchemy's escape character is literal too
    assert found("%_%") == [] and found("\\") == []


HOSTILE_QUERIES = {
    "script": "<script>alert(1)</script>",
    "attr-breakout": '"><img src=x onerror=alert(1)>',
    "nul": "\x00",
    "nul-inside": "re\x00fund",
    "controls": "\x07\x1b[31m",
    "sql": "' OR 1=1 --",
    "wildcards": "%%%___",
    "backslash": "\\",
    "rtl": "\u202e",
    "emoji": "😀💳",
    "fullwidth": "ＲＥＦＵＮＤ",
    "huge": "<" * 10_000,
}


@pytest.mark.parametrize("q", HOSTILE_QUERIES.values(), ids=HOSTILE_QUERIES.keys())
def test_hostile_searches_answer_200_and_are_echoed_escaped(app: Flask, client: FlaskClient, hx: FlaskClient,
                                                            q: str) -> None:
    add(entry("Can I get a refund?", "No."))
    for face in (client, hx):
        r = face.get("/faq", query_string={"q": q, "lang": "en"})
        body = r.get_data(as_text=True)
        assert r.status_code == 200
        assert_inert(results(body), RESULTS_TAGS)
        assert "<script>" not in body and "<img" not in body and "\x00" not in body
    # The full page shows the cleaned text back in the box (the huge one cut to the limit), escaped.
    page = client.get("/faq", query_string={"q": q}).get_data(as_text=True)
    assert f'name="q" value="{escape(clean_query(q))}"' in page


def test_an_escaped_search_text_is_shown_back(app: Flask, hx: FlaskClient) -> None:
    body = hx.get("/faq", query_string={"q": '"><script>alert(1)</script>', "lang": "en"}).get_data(as_text=True)
    assert "No answer contains “&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;”." in body


def test_no_result_offers_the_support_contacts(app: Flask, hx: FlaskClient) -> None:
    add(entry("How do I pay?", "With Alipay."))
    body = hx.get("/faq?lang=en&q=roaming").get_data(as_text=True)  # the fragment: no footer in it
    assert questions(body) == [] and "No answer contains “roaming”." in body
    assert f'href="tel:{app.config["HEYON_SUPPORT_PHONE"]}"' in body
    assert f'href="mailto:{app.config["HEYON_SUPPORT_EMAIL"]}"' in body and app.config["HEYON_SUPPORT_HOURS"] in body


def test_an_empty_faq_still_offers_support(app: Flask, hx: FlaskClient) -> None:
    body = hx.get("/faq?lang=en").get_data(as_text=True)
    assert "No questions have been answered here yet." in body and "tel:" in body


def test_hostile_questions_and_answers_are_inert_on_the_page(app: Flask, client: FlaskClient, hx: FlaskClient) -> None:
    add(*(entry(payload, payload, position=i) for i, payload in enumerate(HOSTILE.values())))
    for face in (client, hx):
        html = face.get("/faq?lang=en").get_data(as_text=True)
        assert len(questions(html)) == len(HOSTILE)
        assert_inert(results(html), RESULTS_TAGS)
    # A question is plain text: shown exactly as typed, escaped.
    assert "<summary>&lt;script&gt;alert(1)&lt;/script&gt;</summary>" in html


@pytest.mark.parametrize("face", ["plain", "htmx"])
def test_security_headers_hold_on_the_faq(app: Flask, client: FlaskClient, hx: FlaskClient, face: str) -> None:
    add(entry(HOSTILE["script"], HOSTILE["img-onerror"]))
    r = (client if face == "plain" else hx).get("/faq", query_string={"q": "script"})
    assert r.status_code == 200 and r.headers["Content-Security-Policy"] == csp()
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    scripts = [a for t, a, _ in Tags(r.get_data(as_text=True)).found if t == "script"]
    # The page has one script, the inline loader (allowed by its hash), which fetches htmx from its
    # data-src; the results fragment has none.
    assert len(scripts) == (1 if face == "plain" else 0)
    assert all("src" not in a and a.get("data-src", "").startswith("/static/js/htmx-2.0.11.min.js?v=") for a in scripts)


# ------------------------------------------------------------------ the starter and `flask faq seed`

# Each topic the starter must answer: words that one entry (question and answer) contains together.
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "failure": ("fail", "card number", "password", "network"),
        "methods": ("Alipay", "WeChat Pay", "minimum", "before you pay", "official"),
        "crediting": ("few minutes", "30 minutes", "support", "order number"),
        "no refund": ("refund", "credited", "cannot"),
        "lost card": ("lost", "password", "cannot be recovered", "support"),
        "attempts": ("too many attempts", "wait", "support"),
    },
    "zh_Hans": {
        "failure": ("失败", "卡号", "密码", "网络"),
        "methods": ("支付宝", "微信支付", "最低", "支付之前", "官方"),
        "crediting": ("几分钟", "30 分钟", "客服", "订单号"),
        "no refund": ("退款", "到账", "不能"),
        "lost card": ("忘记", "密码", "无法找回", "客服"),
        "attempts": ("尝试次数过多", "等", "客服"),
    },
}


def counts() -> dict[str, int]:
    db.session.rollback()
    return dict(db.session.execute(select(FaqEntry.locale, func.count()).group_by(FaqEntry.locale)).all())


def test_seed_adds_the_starter_once(app: Flask, runner: FlaskCliRunner) -> None:
    first = runner.invoke(args=["faq", "seed"])
    assert first.exit_code == 0, first.output
    assert f"faq zh_Hans: added {len(STARTER['zh_Hans'])} starter entries" in first.output
    assert f"faq en: added {len(STARTER['en'])} starter entries" in first.output
    assert counts() == {locale: len(rows) for locale, rows in STARTER.items()}
    again = runner.invoke(args=["faq", "seed"])
    assert again.exit_code == 0 and again.output.count("has entries already, nothing added") == 2
    assert counts() == {locale: len(rows) for locale, rows in STARTER.items()}


def test_seed_leaves_a_language_that_has_entries_alone(app: Flask, runner: FlaskCliRunner) -> None:
    add(entry("Our own question", published=False))  # even an unpublished one counts
    output = runner.invoke(args=["faq", "seed"]).output
    assert "faq en: has entries already, nothing added" in output and "faq zh_Hans: added" in output
    assert counts() == {"en": 1, "zh_Hans": len(STARTER["zh_Hans"])}


@pytest.mark.parametrize("locale", ["zh_Hans", "en"])
def test_the_starter_covers_every_topic(app: Flask, runner: FlaskCliRunner, client: FlaskClient,
                                        locale: str) -> None:
    runner.invoke(args=["faq", "seed"])
    db.session.rollback()
    texts = [f"{q}\n{a}" for q, a in db.session.execute(
        select(FaqEntry.question, FaqEntry.answer_md).where(FaqEntry.locale == locale))]
    for topic, words in TOPICS[locale].items():
        assert any(all(w.lower() in t.lower() for w in words) for t in texts), topic
    # Every entry is published and shows on the page, its Markdown fully rendered.
    html = client.get("/faq", query_string={"lang": "en" if locale == "en" else "zh"}).get_data(as_text=True)
    assert questions(html) == [e.question for e in STARTER[locale]]
    assert "**" not in results(html) and "<strong>" in results(html)
    assert_inert(results(html), RESULTS_TAGS)
