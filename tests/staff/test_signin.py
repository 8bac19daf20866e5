"""Staff sign-in and sessions, which role reaches which page, and CSRF on every staff post."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from heyon_site.billing.promos import NewPromotion, PromoCaps
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import FaqEntry, StaffUser, utcnow
from heyon_site.promos.lifecycle import COMMAND_LINE, create_promotion
from heyon_site.staff.auth import throttle_states
from heyon_site.staff.services import create_staff
from tests.kit import csrf_from, make_card, new_client, start_order
from tests.staff.kit import PASSWORD, add_staff, audit_rows, login_token, sign_in, signed_in

ROLES = ("editor", "cashier", "admin")


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session", domain="heyon.test")
    return cookie.value if cookie else None


def without_csrf(html: str) -> str:
    return re.sub(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}", "TOKEN", html)


def test_login_page_has_english_labels_and_is_private(client: FlaskClient) -> None:
    r = client.get("/staff/login?lang=en")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert ">Username</label>" in body and ">Password</label>" in body and ">Sign in</button>" in body
    assert '<meta name="robots" content="noindex' in body


def test_login_success_redirects_and_is_audited(app: Flask, client: FlaskClient) -> None:
    add_staff("alice")
    r = sign_in(client, "alice")
    assert r.status_code == 303 and r.headers["Location"].endswith("/staff/")
    assert client.get("/staff/").status_code == 200
    rows = audit_rows("login.success")
    assert [(a.username, a.staff_id is not None) for a in rows] == [("alice", True)]


def test_unknown_user_and_wrong_password_look_the_same(app: Flask) -> None:
    add_staff("alice")
    wrong = sign_in(new_client(app), "alice", "not-the-password")
    unknown = sign_in(new_client(app), "nobody", "not-the-password")
    assert wrong.status_code == unknown.status_code == 403
    assert without_csrf(wrong.get_data(as_text=True)) == without_csrf(unknown.get_data(as_text=True))
    assert [a.username for a in audit_rows("login.credentials")] == ["alice", "nobody"]


def test_disabled_account_cannot_sign_in(app: Flask, client: FlaskClient) -> None:
    staff_id = add_staff("gone")
    in_write_transaction(lambda: db.session.query(StaffUser).filter_by(id=staff_id).update({"active": False}))
    assert sign_in(client, "gone").status_code == 403


def test_throttle_engages_after_five_failures(app: Flask) -> None:
    add_staff("alice")
    client = new_client(app)
    for _ in range(5):
        assert sign_in(client, "alice", "wrong-password").status_code == 403
    assert sign_in(client, "alice", "wrong-password").status_code == 403  # the sixth counts, then waits
    r = sign_in(client, "alice")  # even the right password waits
    assert r.status_code == 429 and "Try again in" in r.get_data(as_text=True)
    # What the admin pages show is read from the throttle's own rows (staff_users no longer
    # keeps a copy that a reset could leave stale).
    db.session.rollback()
    password = throttle_states("alice")["password"]
    assert password.failures == 6 and password.wait_until is not None and password.in_force
    # An unknown name is throttled exactly alike.
    for _ in range(6):
        sign_in(client, "nobody", "wrong-password")
    assert sign_in(client, "nobody", "wrong-password").status_code == 429


def test_session_is_renewed_on_login(app: Flask, client: FlaskClient) -> None:
    add_staff("alice")
    token = login_token(client)
    before = session_cookie(client)
    assert before
    client.post("/staff/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    after = session_cookie(client)
    assert after and after != before
    with client.session_transaction() as s:
        assert "csrf_token" not in s  # nothing from before sign-in survives
        assert set(s["staff"]) == {"id", "v", "seen"}


def test_logout_ends_the_session_and_an_old_cookie_is_refused(app: Flask, client: FlaskClient) -> None:
    add_staff("alice")
    sign_in(client, "alice")
    stolen = session_cookie(client)
    assert stolen and client.get("/staff/").status_code == 200
    token = csrf_from(client.get("/staff/").get_data(as_text=True))
    r = client.post("/staff/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/staff/login")
    assert client.get("/staff/").status_code == 303
    replay = new_client(app)
    replay.set_cookie("session", stolen, domain="heyon.test")
    r = replay.get("/staff/")
    assert r.status_code == 303 and "/staff/login" in r.headers["Location"]
    assert [a.username for a in audit_rows("logout")] == ["alice"]


def test_idle_session_expires(app: Flask, client: FlaskClient) -> None:
    add_staff("alice")
    sign_in(client, "alice")
    assert client.get("/staff/").status_code == 200
    with client.session_transaction() as s:
        s["staff"] = {**s["staff"], "seen": int((utcnow() - timedelta(minutes=31)).timestamp())}
    assert client.get("/staff/").status_code == 303
    sign_in(client, "alice")
    with client.session_transaction() as s:
        s["staff"] = {**s["staff"], "seen": int((utcnow() - timedelta(minutes=29)).timestamp())}
    assert client.get("/staff/").status_code == 200


def test_unauthenticated_htmx_gets_hx_redirect(hx: FlaskClient) -> None:
    r = hx.get("/staff/orders")
    assert r.status_code == 204 and "/staff/login" in r.headers["HX-Redirect"]


def test_next_never_leaves_the_site(app: Flask, client: FlaskClient) -> None:
    add_staff("alice")
    token = login_token(client)
    r = client.post("/staff/login?next=//evil.example/staff/", data={"csrf_token": token, "username": "alice",
                                                                     "password": PASSWORD})
    assert r.status_code == 303 and "evil" not in r.headers["Location"]


# Every staff page and who may open it: the one matrix a new page is added to.
EDITORS, CASHIERS = {"editor", "admin"}, {"cashier", "admin"}


PAGES = {"/staff/": set(ROLES), "/staff/account": set(ROLES), "/staff/account/totp": set(ROLES),
         "/staff/orders": CASHIERS, "/staff/orders/{no}": CASHIERS,
         "/staff/faq": EDITORS, "/staff/faq/new": EDITORS, "/staff/faq/{fid}/edit": EDITORS,
         "/staff/promotions": EDITORS, "/staff/promotions/new": EDITORS, "/staff/promotions/{pid}/edit": EDITORS,
         "/staff/audit": {"admin"}, "/staff/accounts": {"admin"}, "/staff/accounts/new": {"admin"},
         "/staff/accounts/{sid}": {"admin"}}


def _page_targets() -> dict[str, object]:
    def work() -> dict[str, object]:
        faq = FaqEntry(locale="en", category="C", question="Q?", answer_md="A.", position=1)
        promo = create_promotion(NewPromotion(title_zh="促销", title_en="Offer", kind="fixed_bonus", value_fen=100,
                                              threshold_fen=1000, starts_at=utcnow(), ends_at=utcnow() + timedelta(days=1)),
                                 PromoCaps(), COMMAND_LINE)
        db.session.add(faq)
        db.session.flush()
        return {"fid": faq.id, "pid": promo.id, "sid": create_staff("someone", PASSWORD, "cashier").id}
    return in_write_transaction(work)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_only_its_pages(app: Flask, role: str) -> None:
    make_card()
    order_no = start_order(new_client(app))
    ids = _page_targets()
    client = signed_in(app, role)
    for page, allowed in PAGES.items():
        r = client.get(page.format(no=order_no, **ids))
        assert r.status_code == (200 if role in allowed else 403), (role, page, r.status_code)
        assert r.headers["Cache-Control"] == "no-store"
    hx = signed_in(app, role, htmx=True)
    r = hx.post(f"/staff/orders/{order_no}/receipt", data={"paper": "80"},
                headers={"X-CSRFToken": csrf_from(hx.get("/staff/").get_data(as_text=True))})
    assert r.status_code == (204 if role != "editor" else 403)


def test_anonymous_is_sent_to_login_everywhere(client: FlaskClient) -> None:
    for page in PAGES:
        r = client.get(page.format(no=1, fid=1, pid=1, sid=1))
        assert r.status_code == 303 and "/staff/login" in r.headers["Location"], page
    assert client.post("/staff/orders/1/receipt", data={"paper": "80"}).status_code in (400, 303)


@pytest.mark.parametrize("htmx", [False, True])
def test_every_staff_post_needs_a_csrf_token(app: Flask, htmx: bool) -> None:
    make_card()
    order_no = start_order(new_client(app))
    add_staff("alice")
    client = signed_in(app, "admin", htmx=htmx)
    sid = db.session.scalar(select(StaffUser.id).where(StaffUser.username == "alice"))
    new = {"new_password": "0123456789ab", "again": "0123456789ab"}
    posts = {"/staff/login": {"username": "alice", "password": PASSWORD}, "/staff/logout": {},
             "/staff/login/code": {"code": "123456"},
             f"/staff/orders/{order_no}/receipt": {"paper": "80"},
             "/staff/account/password": {"current": PASSWORD, **new},
             "/staff/account/totp": {"code": "123456"}, "/staff/account/totp/off": {"code": "123456"},
             "/staff/accounts": {"username": "mallory", "role": "admin", "active": "y", **new},
             f"/staff/accounts/{sid}": {"role": "admin", "active": "y"},
             f"/staff/accounts/{sid}/password": new, f"/staff/accounts/{sid}/totp-reset": {}}
    for url, data in posts.items():
        for token in (None, "forged"):
            fields = {**data, **({"csrf_token": token} if token else {})}
            headers = {"X-CSRFToken": token} if token and htmx else {}
            r = client.post(url, data=fields, headers=headers)
            assert r.status_code == 400, (url, token, r.status_code)
    assert client.get("/staff/").status_code == 200  # still signed in: the logout was refused
    assert audit_rows("receipt.print") == []
    assert [u.role for u in db.session.scalars(select(StaffUser).order_by(StaffUser.id))] == ["cashier", "admin"]
