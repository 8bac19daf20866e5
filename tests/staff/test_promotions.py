"""The editor pages of promotions: create, edit, publish and end, each with its audit row; refused input explained."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import FaqEntry, Promotion, utcnow
from tests.kit import csrf_from, make_card, order, start_order
from tests.promos.kit import approve, create_promo, local, promo_fields, the_promo, token
from tests.staff.kit import audit_rows, signed_in


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


def test_promotions_create_edit_publish_end_with_audit(app: Flask) -> None:
    client = signed_in(app, "editor")
    starts = local(-timedelta(days=1))
    create_promo(client, kind="percent_bonus", value="", percent="2.5", cap="20", starts=starts, published="")
    p = the_promo()
    assert (p.kind, p.percent_bp, p.value_fen, p.cap_fen, p.threshold_fen, p.published) == ("percent_bonus", 250, 0, 2000, 10000, False)
    assert abs((p.starts_at - (utcnow() - timedelta(days=1))).total_seconds()) < 120  # site time became UTC
    listing = client.get("/staff/promotions?lang=en").get_data(as_text=True)
    # The terms in words (the audit log keeps them in codes, below).
    assert "2.50% bonus, at most ¥20.00, from ¥100.00" in listing and starts.replace("T", " ") in listing
    assert "percent_bonus" not in listing

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
