"""The editor pages of the FAQ (click-to-edit with htmx, plain forms without), and what each role may do on the editor pages."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import FaqEntry
from tests.kit import csrf_from, new_client
from tests.promos.kit import create_promo, the_promo, token
from tests.staff.kit import audit_rows, signed_in

HOSTILE_MD = ('<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n<a hx-get="/x" hx-trigger="load">y</a>\n\n'
              '[click](javascript:alert(3)) [ok](https://heyon.example/help)\n\n<div onclick="alert(4)">z</div>')


def faq_fields(**over: str) -> dict[str, str]:
    return {"locale": "en", "category": "Paying", "question": "Can I pay by card?", "answer_md": "Yes, **any** card.",
            "position": "10", "published": "y", **over}


def create_faq(client: FlaskClient, **over: str) -> int:
    r = client.post("/staff/faq", data={"csrf_token": token(client), **faq_fields(**over)})
    assert r.status_code == 303 and r.headers["Location"].endswith("/staff/faq"), r.get_data(as_text=True)[:800]
    db.session.rollback()
    return db.session.scalar(select(FaqEntry.id).order_by(FaqEntry.id.desc()).limit(1))  # type: ignore[return-value]


def entry(entry_id: int) -> FaqEntry:
    db.session.rollback()
    found = db.session.get(FaqEntry, entry_id, populate_existing=True)
    assert found is not None
    return found


def assert_inert(html: str) -> None:
    """No script, no event handler, no htmx attribute, no javascript: link, in any tag."""
    tags = re.findall(r"<[^>]*>", html)
    assert not [t for t in tags if t.lower().startswith("<script")], html
    assert not [t for t in tags if re.search(r"\s(on\w+|hx-[\w-]+|data-[\w-]+|style)\s*=", t, re.I)], html
    assert not [t for t in tags if "javascript:" in t.lower()], html
    assert "&lt;script&gt;" in html  # shown as text, not dropped silently


def faq_region(html: str) -> str:
    match = re.search(r'<div id="faq-results">(.*)</div>', html, re.S)
    assert match
    return match.group(1)


def test_editor_creates_edits_publishes_and_reorders_and_customers_see_it(app: Flask) -> None:
    client = signed_in(app, "editor")
    first = create_faq(client, question="First question?", position="10")
    second = create_faq(client, question="Second question?", position="20", published="")
    create_faq(client, locale="zh_Hans", question="中文问题？", position="10")
    page = client.get("/staff/faq?lang=en").get_data(as_text=True)
    assert page.index("First question?") < page.index("Second question?") < page.index("中文问题？") or \
        page.index("中文问题？") < page.index("First question?") < page.index("Second question?")
    faq = client.get("/faq?lang=en").get_data(as_text=True)
    assert "First question?" in faq and "Second question?" not in faq and "中文问题？" not in faq
    assert "<strong>any</strong>" in faq

    r = client.post(f"/staff/faq/{second}/publish", data={"csrf_token": token(client)})
    assert r.status_code == 303 and entry(second).published
    r = client.post(f"/staff/faq/{second}/move/up", data={"csrf_token": token(client)})
    assert r.status_code == 303 and (entry(second).position, entry(first).position) == (10, 20)
    faq = client.get("/faq?lang=en").get_data(as_text=True)
    assert faq.index("Second question?") < faq.index("First question?")
    # Already first: nothing changes, nothing is recorded.
    client.post(f"/staff/faq/{second}/move/up", data={"csrf_token": token(client)})
    assert entry(second).position == 10 and len(audit_rows("faq.move_up")) == 1

    r = client.post(f"/staff/faq/{first}", data={"csrf_token": token(client),
                                                 **faq_fields(question="First, edited?", position="20")})
    assert r.status_code == 303 and entry(first).question == "First, edited?"
    assert "First, edited?" in client.get("/faq?lang=en").get_data(as_text=True)
    r = client.post(f"/staff/faq/{first}/unpublish", data={"csrf_token": token(client)})
    assert "First, edited?" not in client.get("/faq?lang=en").get_data(as_text=True)
    assert "中文问题？" in client.get("/faq?lang=zh").get_data(as_text=True)

    rows = audit_rows()
    actions = [a.action for a in rows if a.action.startswith("faq.")]
    assert actions == ["faq.create"] * 3 + ["faq.publish", "faq.move_up", "faq.edit", "faq.unpublish"]
    edit = next(a for a in rows if a.action == "faq.edit")
    assert edit.username == "editor-user" and edit.target == f"faq {first}" and edit.ip
    assert edit.before_summary == 'question="First question?"' and edit.after_summary == 'question="First, edited?"'


def test_equal_positions_still_move(app: Flask) -> None:
    client = signed_in(app, "editor")
    a = create_faq(client, question="A?", position="5")
    b = create_faq(client, question="B?", position="5")
    client.post(f"/staff/faq/{b}/move/up", data={"csrf_token": token(client)})
    assert entry(b).position < entry(a).position


def test_invalid_faq_is_refused_with_messages(app: Flask) -> None:
    client = signed_in(app, "editor")
    r = client.post("/staff/faq?lang=en", data={"csrf_token": token(client),
                                                 **faq_fields(question="  ", category="x" * 81, locale="fr", position="-1")})
    body = r.get_data(as_text=True)
    assert r.status_code == 422 and "Required." in body and "Too long." in body and "Out of range." in body
    # One summary at the top of the form, focused when it arrives, each problem a link to its field.
    summary = re.search(r'<div class="alert" role="alert" tabindex="-1" autofocus id="faq-errors">(.*?)</div>', body, re.S)
    assert summary and body.index('id="faq-errors"') < body.index('name="question"')
    assert '<a href="#question">Required.</a>' in summary.group(1) and '<a href="#position">' in summary.group(1)
    assert db.session.scalar(select(FaqEntry.id)) is None and audit_rows("faq.create") == []
    fid = create_faq(client)
    r = client.post(f"/staff/faq/{fid}?lang=en", data={"csrf_token": token(client), **faq_fields(answer_md="a" * 10_001)},
                    headers={"HX-Request": "true"})
    assert r.status_code == 422 and "Too long." in r.get_data(as_text=True)
    assert "<html" not in r.get_data(as_text=True)  # the form block only
    assert entry(fid).answer_md == "Yes, **any** card."


def test_hostile_markdown_is_inert_on_faq_and_in_preview(app: Flask) -> None:
    client = signed_in(app, "editor")
    fid = create_faq(client, answer_md=HOSTILE_MD, question='<img src=x onerror="alert(5)">?', category="<b hx-get=/x>c</b>")
    faq = client.get("/faq?lang=en").get_data(as_text=True)
    assert_inert(faq_region(faq))
    assert 'href="https://heyon.example/help"' in faq
    edit = client.get(f"/staff/faq/{fid}/edit?lang=en").get_data(as_text=True)
    preview = re.search(r'<div class="preview-body">(.*?)</div>\s*</section>', edit, re.S)
    assert preview, edit
    assert_inert(preview.group(1))
    listing = client.get("/staff/faq?lang=en").get_data(as_text=True)
    assert '<img src=x onerror' not in listing and "<b hx-get" not in listing


def test_click_to_edit_has_two_faces(app: Flask) -> None:
    client = signed_in(app, "editor")
    fid = create_faq(client)
    hx = signed_in(app, "editor", htmx=True)
    listing = client.get("/staff/faq?lang=en").get_data(as_text=True)
    assert f'hx-get="/staff/faq/{fid}/edit"' in listing and f'href="/staff/faq/{fid}/edit"' in listing

    full = client.get(f"/staff/faq/{fid}/edit?lang=en")
    assert full.status_code == 200 and "<html" in full.get_data(as_text=True)
    assert "<strong>any</strong>" in full.get_data(as_text=True)  # the preview
    frag = hx.get(f"/staff/faq/{fid}/edit?lang=en")
    body = frag.get_data(as_text=True)
    assert frag.status_code == 200 and "<html" not in body and body.lstrip().startswith(f'<li id="faq-{fid}" class="faq-entry faq-edit">')  # still an item of the list
    assert f'hx-post="/staff/faq/{fid}"' in body and "HX-Request" in frag.headers["Vary"]

    r = hx.post(f"/staff/faq/{fid}?lang=en", data=faq_fields(question="Edited in place?"),
                headers={"X-CSRFToken": csrf_from(body)})
    row = r.get_data(as_text=True)
    assert r.status_code == 200 and row.lstrip().startswith(f'<li id="faq-{fid}"') and "Edited in place?" in row
    assert "<html" not in row and entry(fid).question == "Edited in place?"
    cancel = hx.get(f"/staff/faq/{fid}")
    assert cancel.status_code == 200 and cancel.get_data(as_text=True).lstrip().startswith(f'<li id="faq-{fid}"')
    assert client.get(f"/staff/faq/{fid}").status_code == 303
    r = hx.post(f"/staff/faq/{fid}/unpublish", data={"x": ""}, headers={"X-CSRFToken": csrf_from(body)})
    assert r.status_code == 200 and ">Publish</button>" in r.get_data(as_text=True) and not entry(fid).published


EDITOR_PAGES = ["/staff/faq", "/staff/faq/new", "/staff/faq/{fid}/edit", "/staff/faq/{fid}", "/staff/promotions",
                "/staff/promotions/new", "/staff/promotions/{pid}/edit"]


EDITOR_POSTS = ["/staff/faq", "/staff/faq/{fid}", "/staff/faq/{fid}/publish", "/staff/faq/{fid}/unpublish",
                "/staff/faq/{fid}/move/up", "/staff/promotions", "/staff/promotions/{pid}",
                "/staff/promotions/{pid}/publish", "/staff/promotions/{pid}/unpublish", "/staff/promotions/{pid}/end",
                "/staff/promotions/{pid}/approve", "/staff/promotions/{pid}/reject"]


def _targets(app: Flask) -> dict[str, int]:
    editor = signed_in(app, "editor")
    fid = create_faq(editor)
    create_promo(editor)
    pid = the_promo().id
    return {"fid": fid, "pid": pid}  # type: ignore[dict-item]


def test_cashier_gets_403_everywhere_and_editor_not_on_orders(app: Flask) -> None:
    ids = _targets(app)
    cashier = signed_in(app, "cashier")
    t = token(cashier)
    for page in EDITOR_PAGES:
        assert cashier.get(page.format(**ids)).status_code == 403, page
    for url in EDITOR_POSTS:
        assert cashier.post(url.format(**ids), data={"csrf_token": t, **faq_fields()}).status_code == 403, url
    editor = signed_in(app, "editor")
    assert editor.get("/staff/orders").status_code == 403
    admin = signed_in(app, "admin")
    for page in EDITOR_PAGES:
        expected = 303 if page == "/staff/faq/{fid}" else 200  # the row alone is for htmx; a browser goes to the list
        assert admin.get(page.format(**ids)).status_code == expected, page
        assert editor.get(page.format(**ids)).status_code == expected, page
    assert "/staff/faq" in editor.get("/staff/").get_data(as_text=True)
    assert "/staff/faq" not in cashier.get("/staff/").get_data(as_text=True)
    anonymous = new_client(app)
    assert anonymous.get("/staff/faq").status_code == 303


@pytest.mark.parametrize("htmx", [False, True])
def test_every_editor_post_needs_a_csrf_token(app: Flask, htmx: bool) -> None:
    ids = _targets(app)
    client = signed_in(app, "editor", htmx=htmx)
    before = len(audit_rows())
    for url in EDITOR_POSTS:
        for bad in (None, "forged"):
            fields = {**faq_fields(), **({"csrf_token": bad} if bad else {})}
            headers = {"X-CSRFToken": bad} if bad and htmx else {}
            r = client.post(url.format(**ids), data=fields, headers=headers)
            assert r.status_code == 400, (url, bad, r.status_code)
    assert len(audit_rows()) == before
