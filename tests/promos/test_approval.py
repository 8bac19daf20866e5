"""Two people put a promotion's terms in force: an editor (or the command line) drafts them and
asks for publication; an admin who is not the last editor of those terms approves. A change to a
published promotion waits beside the live terms until another admin approves or rejects it.
Ending and unpublishing give less away and need one person. Every step is an audit row."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.promos.lifecycle import NothingToApprove, SameEditor, approval_digest, approve as approve_terms
from heyon_site.billing.promos import PromoCaps
from heyon_site.promos.lifecycle import COMMAND_LINE, Editor, create_promotion
from heyon_site.billing.promos import NewPromotion, active_promotions
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import Promotion, StaffUser, utcnow

from tests.kit import flask_cli, new_client
from tests.kit import make_card, order, start_order
from tests.promos.kit import quote_line
from tests.staff.kit import add_staff, audit_rows, sign_in, signed_in
from tests.promos.kit import approve, approve_button, local, promo_fields, the_promo, token

EN = {"Accept-Language": "en"}
FORBIDDEN = "You edited these terms last: another admin must approve them."


def staff(app: Flask, username: str, role: str) -> FlaskClient:
    """A signed-in member of staff with a name of their own (``signed_in`` has one per role)."""
    add_staff(username, role)
    client = new_client(app)
    assert sign_in(client, username).status_code == 303
    return client


def staff_id(username: str) -> int:
    found = db.session.scalar(select(StaffUser.id).where(StaffUser.username == username))
    assert found is not None
    return found


def draft(client: FlaskClient, **over: str) -> int:
    """A promotion drafted by ``client`` on the staff page, publication asked for; its id."""
    r = client.post("/staff/promotions", data={"csrf_token": token(client), **promo_fields(**over)})
    assert r.status_code == 303, r.get_data(as_text=True)[:800]
    return the_promo().id


def running(app: Flask) -> tuple[int, FlaskClient, FlaskClient]:
    """A running promotion (10.00 more from 100.00) drafted by the editor, approved by the admin."""
    editor, admin = signed_in(app, "editor"), signed_in(app, "admin")
    pid = draft(editor)
    assert approve(admin, pid).status_code == 303
    return pid, editor, admin


def customer_quote(app: Flask) -> str:
    """What the customer is told 100.00 earns (the quote line htmx shows; "" without promotions)."""
    return quote_line(new_client(app, htmx=True).get("/recharge/quote?amount=100", headers=EN))


def actions(pid: int) -> list[tuple[str, str]]:
    return [(a.action, a.username) for a in audit_rows() if a.target == f"promotion {pid}"]


# ------------------------------------------------------------------ publishing a draft


def test_an_editor_drafts_and_asks_but_cannot_publish(app: Flask) -> None:
    editor = signed_in(app, "editor")
    pid = draft(editor)
    p = the_promo()
    assert (p.published, p.publish_requested, p.edited_by_id, p.edited_by) == (False, True, staff_id("editor-user"), "editor-user")
    assert active_promotions(db.session, utcnow()) == [] and customer_quote(app) == ""
    assert approve_button(editor, pid) is None  # not offered ...
    digest = approval_digest(p)
    r = editor.post(f"/staff/promotions/{pid}/approve", data={"csrf_token": token(editor), "terms": digest})
    assert r.status_code == 403  # ... and refused
    r = editor.post(f"/staff/promotions/{pid}/publish", data={"csrf_token": token(editor)})
    assert r.status_code == 303 and not the_promo().published  # asking again publishes nothing
    assert actions(pid) == [("promo.create", "editor-user")]
    assert 'state="awaiting approval"' in (audit_rows("promo.create")[0].after_summary or "")


def test_the_admin_who_edited_the_terms_last_cannot_publish_them(app: Flask) -> None:
    admin = signed_in(app, "admin")
    pid = draft(admin)
    assert approve_button(admin, pid) is None
    r = admin.post(f"/staff/promotions/{pid}/approve?lang=en",
                   data={"csrf_token": token(admin), "terms": approval_digest(the_promo())})
    assert r.status_code == 403 and FORBIDDEN in r.get_data(as_text=True)
    zh = admin.post(f"/staff/promotions/{pid}/approve?lang=zh",
                    data={"csrf_token": token(admin), "terms": approval_digest(the_promo())})
    assert zh.status_code == 403 and FORBIDDEN not in zh.get_data(as_text=True)
    assert not the_promo().published and customer_quote(app) == ""
    assert actions(pid) == [("promo.create", "admin-user")]


def test_another_admin_publishes_and_both_steps_are_audited(app: Flask) -> None:
    author = signed_in(app, "admin")
    pid = draft(author)
    other = staff(app, "second-admin", "admin")
    assert approve(other, pid).status_code == 303
    p = the_promo()
    assert p.published and not p.publish_requested and p.edited_by == "admin-user"  # the author of the terms stays
    assert customer_quote(app).startswith("Pay 100.00, receive 110.00")
    assert actions(pid) == [("promo.create", "admin-user"), ("promo.publish", "second-admin")]
    published = audit_rows("promo.publish")[0]
    assert published.staff_id == staff_id("second-admin")
    assert 'state="running"' in (published.after_summary or "") and "edited by admin-user" in (published.after_summary or "")


def test_editing_a_draft_makes_the_editor_the_one_who_cannot_approve(app: Flask) -> None:
    editor, first, second = signed_in(app, "editor"), signed_in(app, "admin"), staff(app, "second-admin", "admin")
    pid = draft(editor)
    r = first.post(f"/staff/promotions/{pid}", data={"csrf_token": token(first), **promo_fields(value="20")})
    assert r.status_code == 303 and the_promo().edited_by == "admin-user"
    assert approve_button(first, pid) is None
    assert approve(second, pid).status_code == 303 and the_promo().value_fen == 2000


def test_an_approval_names_the_terms_it_was_shown(app: Flask) -> None:
    editor, admin = signed_in(app, "editor"), signed_in(app, "admin")
    pid = draft(editor)
    shown = approve_button(admin, pid)
    assert shown is not None
    # The terms change after the admin looked at them: the approval of what was shown does not
    # approve what is there now.
    editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(value="50")})
    r = admin.post(f"/staff/promotions/{pid}/approve?lang=en", data=shown)
    assert r.status_code == 409 and "look at them again" in r.get_data(as_text=True)
    forged = admin.post(f"/staff/promotions/{pid}/approve", data={"csrf_token": shown["csrf_token"]})
    assert forged.status_code == 409
    assert not the_promo().published and audit_rows("promo.publish") == []


def test_the_command_line_asks_and_an_admin_publishes(app: Flask, database: str) -> None:
    done = flask_cli(database, "promos", "create", "--title-zh", "充100送10", "--title-en", "Get 10 more",
                     "--kind", "fixed_bonus", "--threshold", "100", "--value", "10", "--ends", "2040-01-01", "--publish")
    assert done.returncode == 0 and re.match(r"created 1  awaiting approval  priority 0  fixed_bonus 10\.00", done.stdout)
    assert customer_quote(app) == ""
    admin = signed_in(app, "admin")
    assert approve(admin, 1).status_code == 303
    assert customer_quote(app).startswith("Pay 100.00, receive 110.00")
    assert actions(1) == [("promo.create", "(command line)"), ("promo.publish", "admin-user")]
    listed = flask_cli(database, "promos", "list")
    assert listed.stdout.startswith("1  running  priority 0")


def test_billing_refuses_the_same_editor_and_the_command_line_as_approvers(app: Flask) -> None:
    caps = PromoCaps()
    new = NewPromotion(title_zh="送", title_en="More", kind="fixed_bonus", starts_at=utcnow(),
                       ends_at=utcnow().replace(year=2040), threshold_fen=1000, value_fen=100, published=True)
    admin_id = in_write_transaction(lambda: add_staff_row("an-admin"))
    by_admin = Editor(admin_id, "an-admin")

    def drafted() -> tuple[int, str | None]:
        promo = create_promotion(new, caps, by_admin)
        return promo.id, approval_digest(promo)

    promo_id, digest = in_write_transaction(drafted)
    with pytest.raises(SameEditor):
        in_write_transaction(lambda: approve_terms(promo_id, caps, by_admin, digest or ""))
    with pytest.raises(SameEditor):
        in_write_transaction(lambda: approve_terms(promo_id, caps, COMMAND_LINE, digest or ""))
    with pytest.raises(NothingToApprove):
        in_write_transaction(lambda: approve_terms(promo_id, caps, Editor(admin_id + 1, "other"), "stale"))
    db.session.rollback()
    assert not the_promo().published


def add_staff_row(username: str) -> int:
    from heyon_site.staff.services import create_staff

    return create_staff(username, "a-long-staff-password", "admin").id


# ------------------------------------------------------------------ changing a published promotion


def test_a_change_waits_and_the_live_terms_stay_until_another_admin_approves(app: Flask) -> None:
    make_card()
    pid, editor, admin = running(app)
    changer = staff(app, "second-admin", "admin")
    r = changer.post(f"/staff/promotions/{pid}", data={"csrf_token": token(changer), **promo_fields(
        value="20", title_en="Get 20 more")})
    assert r.status_code == 303
    p = the_promo()
    assert (p.published, p.value_fen, p.title_en, p.pending_by) == (True, 1000, "Recharge bonus", "second-admin")
    assert customer_quote(app).startswith("Pay 100.00, receive 110.00")  # the live terms hold
    made = order(start_order(new_client(app)))
    assert made.bonus_fen == 1000

    page = admin.get("/staff/promotions?lang=en").get_data(as_text=True)
    assert "Changes awaiting approval" in page and "¥20.00 bonus, from ¥100.00" in page and "Get 20 more" in page
    edit = changer.get(f"/staff/promotions/{pid}/edit?lang=en").get_data(as_text=True)
    assert 'value="20.00"' in edit and "The form shows the changes awaiting approval." in edit

    # The admin who made the change cannot approve it; an editor cannot approve at all.
    assert approve_button(changer, pid) is None and approve_button(editor, pid) is None
    r = changer.post(f"/staff/promotions/{pid}/approve?lang=en", data={"csrf_token": token(changer),
                                                                      "terms": approval_digest(the_promo())})
    assert r.status_code == 403 and FORBIDDEN in r.get_data(as_text=True)
    assert the_promo().value_fen == 1000

    assert approve(admin, pid).status_code == 303
    p = the_promo()
    assert (p.value_fen, p.title_en, p.pending_terms, p.edited_by) == (2000, "Get 20 more", None, "second-admin")
    assert customer_quote(app).startswith("Pay 100.00, receive 120.00")
    assert order(made.order_no).bonus_fen == 1000  # the order made before keeps its terms

    rows = [a for a in audit_rows() if a.target == f"promotion {pid}"]
    assert [(a.action, a.username) for a in rows] == [
        ("promo.create", "editor-user"), ("promo.publish", "admin-user"),
        ("promo.change_request", "second-admin"), ("promo.change_approve", "admin-user")]
    for row in rows[2:]:
        assert 'terms="fixed_bonus 10.00, from 100.00"' in (row.before_summary or "")
        assert 'terms="fixed_bonus 20.00, from 100.00"' in (row.after_summary or "")


def test_an_editors_change_is_approved_by_any_admin_but_its_editor(app: Flask) -> None:
    pid, editor, admin = running(app)
    editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(priority="9")})
    assert the_promo().priority == 2 and approve_button(admin, pid) is not None  # the admin published; not their change
    assert approve(admin, pid).status_code == 303 and the_promo().priority == 9


def test_a_change_can_be_rejected_and_the_live_terms_stay(app: Flask) -> None:
    pid, editor, admin = running(app)
    editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(value="50")})
    assert the_promo().pending_terms is not None
    refused = editor.post(f"/staff/promotions/{pid}/reject", data={"csrf_token": token(editor)})
    assert refused.status_code == 403  # only admins decide
    r = admin.post(f"/staff/promotions/{pid}/reject", data={"csrf_token": token(admin)})
    assert r.status_code == 303
    p = the_promo()
    assert (p.published, p.value_fen, p.pending_terms) == (True, 1000, None)
    assert [a for a, _ in actions(pid)][-2:] == ["promo.change_request", "promo.reject"]


def test_a_publication_can_be_rejected_and_the_draft_stays(app: Flask) -> None:
    editor, admin = signed_in(app, "editor"), signed_in(app, "admin")
    pid = draft(editor)
    assert admin.post(f"/staff/promotions/{pid}/reject", data={"csrf_token": token(admin)}).status_code == 303
    p = the_promo()
    assert (p.published, p.publish_requested) == (False, False) and approve_button(signed_in(app, "admin"), pid) is None


def test_saving_the_live_terms_again_withdraws_a_waiting_change(app: Flask) -> None:
    pid, editor, _admin = running(app)
    editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(value="30")})
    assert the_promo().pending_terms is not None
    editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields()})
    assert the_promo().pending_terms is None and the_promo().value_fen == 1000
    assert [a for a, _ in actions(pid)][-2:] == ["promo.change_request", "promo.change_withdraw"]


# ------------------------------------------------------------------ giving less away: one person


def test_one_editor_ends_or_unpublishes_alone(app: Flask) -> None:
    pid, editor, _admin = running(app)
    editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(value="30")})
    r = editor.post(f"/staff/promotions/{pid}/unpublish", data={"csrf_token": token(editor)})
    assert r.status_code == 303
    p = the_promo()
    assert (p.published, p.publish_requested, p.pending_terms) == (False, False, None)  # the waiting change went too
    assert customer_quote(app) == ""

    other = draft(editor)
    approve(signed_in(app, "admin"), other)
    assert editor.post(f"/staff/promotions/{other}/end", data={"csrf_token": token(editor)}).status_code == 303
    assert the_promo().ends_at <= utcnow() and customer_quote(app) == ""
    assert ("promo.unpublish", "editor-user") in actions(pid) and ("promo.end", "editor-user") in actions(other)


def test_a_published_promotion_saved_as_not_published_becomes_a_draft_of_the_typed_terms(app: Flask) -> None:
    pid, editor, _admin = running(app)
    r = editor.post(f"/staff/promotions/{pid}", data={"csrf_token": token(editor), **promo_fields(value="40", published="")})
    assert r.status_code == 303
    p = the_promo()
    assert (p.published, p.value_fen, p.edited_by, p.pending_terms) == (False, 4000, "editor-user", None)
    assert actions(pid)[-1] == ("promo.unpublish", "editor-user")


def test_the_editor_can_withdraw_a_request_for_publication(app: Flask) -> None:
    editor = signed_in(app, "editor")
    pid = draft(editor)
    editor.post(f"/staff/promotions/{pid}/unpublish", data={"csrf_token": token(editor)})
    assert (the_promo().published, the_promo().publish_requested) == (False, False)
    assert approve_button(signed_in(app, "admin"), pid) is None


# ------------------------------------------------------------------ the list tells the truth


def test_the_list_shows_each_promotions_real_state(app: Flask) -> None:
    editor, admin = signed_in(app, "editor"), signed_in(app, "admin")
    ids = {"draft": draft(editor, published="", title_en="A draft"),
           "awaiting": draft(editor, title_en="Asked for")}
    ids["scheduled"] = draft(editor, title_en="Later", starts=local_days(1), ends=local_days(2))
    ids["running"] = draft(editor, title_en="Now")
    ids["ended"] = draft(editor, title_en="Over")
    ids["changed"] = draft(editor, title_en="Changed")
    for name in ("scheduled", "running", "ended", "changed"):
        assert approve(admin, ids[name]).status_code == 303
    editor.post(f"/staff/promotions/{ids['ended']}/end", data={"csrf_token": token(editor)})
    editor.post(f"/staff/promotions/{ids['changed']}", data={"csrf_token": token(editor), **promo_fields(
        title_en="Changed", value="20")})
    page = admin.get("/staff/promotions?lang=en").get_data(as_text=True)
    rows = {pid: re.search(rf'<tr id="promo-{pid}">(.*?)</tr>', page, re.S) for pid in ids.values()}
    states = {name: re.search(r'<span class="state">([^<]*)</span>', rows[pid].group(1)).group(1)  # type: ignore[union-attr]
              for name, pid in ids.items()}
    assert states == {"draft": "Draft", "awaiting": "Awaiting approval", "scheduled": "Scheduled", "running": "Running",
                      "ended": "Ended", "changed": "Running"}
    changed_row = rows[ids["changed"]].group(1)  # type: ignore[union-attr]
    assert "Changes awaiting approval" in changed_row and ">Approve the changes</button>" in changed_row
    assert ">Approve and publish</button>" in rows[ids["awaiting"]].group(1)  # type: ignore[union-attr]
    assert ">Request publication</button>" in rows[ids["draft"]].group(1)  # type: ignore[union-attr]
    assert "Approve" not in rows[ids["running"]].group(1)  # type: ignore[union-attr]
    # An editor is offered neither approve nor reject.
    editor_page = editor.get("/staff/promotions?lang=en").get_data(as_text=True)
    assert "/approve" not in editor_page and "/reject" not in editor_page
    zh = admin.get("/staff/promotions?lang=zh").get_data(as_text=True)
    assert "Awaiting approval" not in zh and "Changes awaiting approval" not in zh


def local_days(days: int) -> str:
    from datetime import timedelta

    return local(timedelta(days=days))


def test_the_schema_keeps_requests_to_drafts_and_changes_to_published_promotions(app: Flask) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    pid, _editor, _admin = running(app)
    db.session.rollback()  # a fresh snapshot: SQLite refuses a write from one older than the last commit
    for statement, check in (("UPDATE promotions SET publish_requested = true", "requested_only_when_draft"),
                             ("UPDATE promotions SET published = false, pending_terms = '{}'", "changes_only_when_published")):
        with pytest.raises(IntegrityError, match=check):
            db.session.execute(text(statement))
            db.session.commit()
        db.session.rollback()
    assert db.session.scalar(select(Promotion.published).where(Promotion.id == pid)) is True
