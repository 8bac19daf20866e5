"""The editor pages: the FAQ (click-to-edit with htmx, plain forms without) and promotions."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import FaqEntry, Promotion, utcnow

from tests.kit import new_client
from tests.kit import csrf_from, make_card, order, start_order
from tests.staff.kit import audit_rows, signed_in
from tests.promos.kit import approve, create_promo, local, promo_fields, the_promo, token

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


# ------------------------------------------------------------------ FAQ


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


# ------------------------------------------------------------------ roles


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


# ------------------------------------------------------------------ promotions


def test_promotions_create_edit_publish_end_with_audit(app: Flask) -> None:
    client = signed_in(app, "editor")
    starts = local(-timedelta(days=1))
    create_promo(client, kind="percent_bonus", value="", percent="2.5", cap="20", starts=starts, published="")
    p = the_promo()
    assert (p.kind, p.percent_bp, p.value_fen, p.cap_fen, p.threshold_fen, p.published) == ("percent_bonus", 250, 0, 2000, 10000, False)
    assert abs((p.starts_at - (utcnow() - timedelta(days=1))).total_seconds()) < 120  # site time became UTC
    listing = client.get("/staff/promotions?lang=en").get_data(as_text=True)
    assert "percent_bonus 2.50% up to 20.00" in listing and starts.replace("T", " ") in listing

    edit = client.get(f"/staff/promotions/{p.id}/edit?lang=en").get_data(as_text=True)
    assert 'value="2.50"' in edit and f'value="{starts}"' in edit
    r = client.post(f"/staff/promotions/{p.id}", data={"csrf_token": csrf_from(edit), **promo_fields(
        kind="percent_bonus", value="", percent="5", cap="20", starts=starts, published="")})
    assert r.status_code == 303 and the_promo().percent_bp == 500
    client.post(f"/staff/promotions/{p.id}/publish", data={"csrf_token": token(client)})
    assert the_promo().publish_requested and not the_promo().published  # an editor asks; an admin publishes
    assert approve(signed_in(app, "admin"), p.id).status_code == 303
    assert the_promo().published
    client.post(f"/staff/promotions/{p.id}/end", data={"csrf_token": token(client)})
    assert the_promo().ends_at <= utcnow()

    rows = [a for a in audit_rows() if a.action.startswith("promo.")]
    assert [a.action for a in rows] == ["promo.create", "promo.edit", "promo.publish_request", "promo.publish", "promo.end"]
    assert [a.username for a in rows] == ["editor-user"] * 3 + ["admin-user", "editor-user"]
    assert all(a.target == f"promotion {p.id}" for a in rows)
    assert rows[1].before_summary == 'terms="percent_bonus 2.50% up to 20.00, from 100.00"'
    assert rows[1].after_summary == 'terms="percent_bonus 5% up to 20.00, from 100.00"'
    assert "(ended)" in (rows[4].after_summary or "")


@pytest.mark.parametrize("fields, message", [
    ({"value": "1e3"}, "Not an amount like 12.34."),
    ({"kind": "discount", "value": "", "percent": "abc"}, "Not a percentage like 10 or 2.5."),
    ({"kind": "discount", "value": "", "percent": "150"}, "at most 100"),
    ({"ends": local(-timedelta(days=2))}, "The end must be after the start."),
    ({"title_en": ""}, "Required."),
])
def test_invalid_promotions_are_refused(app: Flask, fields: dict[str, str], message: str) -> None:
    client = signed_in(app, "editor")
    r = client.post("/staff/promotions?lang=en", data={"csrf_token": token(client), **promo_fields(**fields)})
    assert r.status_code == 422 and message in r.get_data(as_text=True)
    assert db.session.scalar(select(Promotion.id)) is None and audit_rows("promo.create") == []


def test_a_refused_promotion_is_explained_in_the_readers_language(app: Flask) -> None:
    client = signed_in(app, "editor")
    fields = promo_fields(ends=local(-timedelta(days=2)))
    zh = client.post("/staff/promotions?lang=zh", data={"csrf_token": token(client), **fields}).get_data(as_text=True)
    en = client.post("/staff/promotions?lang=en", data={"csrf_token": token(client), **fields}).get_data(as_text=True)
    assert "The end must be after the start." in en
    assert "The end must be after the start." not in zh and "结束时间必须晚于开始时间。" in zh


def test_an_edit_on_the_staff_page_never_changes_an_order(app: Flask, client: FlaskClient) -> None:
    make_card(balance_fen=500)
    editor = signed_in(app, "editor")
    create_promo(editor)  # 10.00 more from 100.00
    pid = the_promo().id
    admin = signed_in(app, "admin")
    approve(admin, pid)
    order_no = start_order(client)  # 100.00
    made = order(order_no)
    assert (made.pay_fen, made.bonus_fen) == (10000, 1000)
    r = editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(value="50", title_en="Changed")})
    assert r.status_code == 303 and the_promo().value_fen == 1000 and the_promo().pending_terms  # waits for approval
    assert approve(admin, pid).status_code == 303 and the_promo().value_fen == 5000
    editor.post(f"/staff/promotions/{pid}/end", data={"csrf_token": token(editor)})
    db.session.rollback()
    kept = order(order_no)
    assert (kept.pay_fen, kept.bonus_fen, kept.promo_snapshot) == (10000, 1000, made.promo_snapshot)
    assert json.loads(kept.promo_snapshot or "")["title_en"] == "Recharge bonus"


def test_end_of_a_promotion_not_started_withdraws_it(app: Flask) -> None:
    client = signed_in(app, "editor")
    create_promo(client, starts=local(timedelta(days=1)), ends=local(timedelta(days=2)))
    p = the_promo()
    client.post(f"/staff/promotions/{p.id}/end", data={"csrf_token": token(client)})
    assert not the_promo().published and "(withdrawn)" in (audit_rows("promo.end")[0].after_summary or "")


def test_nothing_is_written_without_its_audit_row(app: Flask) -> None:
    """The audit row shares the change's transaction: if the audit insert fails, the change is gone."""
    from heyon_site.faq import editing

    client = signed_in(app, "editor")
    fid = create_faq(client)
    original = editing.record

    def failing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit down")

    editing.record = failing  # type: ignore[assignment]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        r = client.post(f"/staff/faq/{fid}", data={"csrf_token": token(client), **faq_fields(question="Lost?")})
        assert r.status_code == 500
    finally:
        editing.record = original
    assert entry(fid).question == "Can I pay by card?"
