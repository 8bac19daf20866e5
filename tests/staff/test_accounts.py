"""Staff accounts: the optional second factor (TOTP) admins can require, one's own password,
and the admin pages that create, change, disable and reset accounts."""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pyotp
import pytest
from flask import Flask

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import StaffUser, utcnow
from heyon_site.staff import second_factor
from heyon_site.staff.second_factor import matching_step, normalise_code, use_code

from tests.kit import new_client
from tests.kit import cli, csrf_from
from tests.staff.kit import PASSWORD, add_staff, audit_rows, sign_in, signed_in
from tests.staff.kit import NEW_PASSWORD, account, code_for, enrol, send_code, token


# ------------------------------------------------------------------ codes


def test_codes_are_read_like_people_type_them() -> None:
    assert normalise_code(" 123 456 ") == "123456"
    assert normalise_code("１２３４５６") == "123456"  # a Chinese IME's full-width digits
    assert normalise_code("12³456") == "12456"  # a superscript is not a decimal digit


@pytest.fixture
def shanghai_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's local time zone set to the site's: naive times must still mean UTC."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("shanghai_clock")
def test_a_code_matches_its_step_and_one_either_side_only(app: Flask) -> None:
    assert time.localtime().tm_gmtoff == 8 * 3600 and os.environ["TZ"] == "Asia/Shanghai"
    secret = second_factor.new_secret()
    totp, now = pyotp.TOTP(secret), utcnow()
    here = totp.timecode(time.time())
    for offset in (-1, 0, 1):
        assert matching_step(secret, totp.generate_otp(here + offset), now) == here + offset
    for offset in (-3, -2, 2, 3):
        code = totp.generate_otp(here + offset)
        if all(code != totp.generate_otp(here + o) for o in (-1, 0, 1)):
            assert matching_step(secret, code, now) is None
    assert matching_step(secret, "12345", now) is None and matching_step(secret, "", now) is None


def test_a_code_is_accepted_once(app: Flask) -> None:
    staff_id = add_staff("alice")
    secret = second_factor.new_secret()
    in_write_transaction(lambda: db.session.execute(
        StaffUser.__table__.update().where(StaffUser.id == staff_id).values(totp_secret=secret)))
    now = utcnow()
    code = pyotp.TOTP(secret).generate_otp(pyotp.TOTP(secret).timecode(now))
    assert in_write_transaction(lambda: use_code(staff_id, secret, code, now)) is True
    assert in_write_transaction(lambda: use_code(staff_id, secret, code, now)) is False
    older = pyotp.TOTP(secret).generate_otp(pyotp.TOTP(secret).timecode(now) - 1)
    assert in_write_transaction(lambda: use_code(staff_id, secret, older, now)) is False  # steps only go forward


# ------------------------------------------------------------------ enrolment and sign-in


def test_enrol_then_sign_in_takes_a_code_once(app: Flask) -> None:
    add_staff("alice", "cashier")
    client = new_client(app)
    sign_in(client, "alice")
    secret = enrol(client, "alice")
    assert [a.action for a in audit_rows("account.totp_on")] == ["account.totp_on"]

    fresh = new_client(app)
    r = fresh.post("/staff/login?next=/staff/orders",
                   data={"csrf_token": csrf_from(fresh.get("/staff/login?lang=en").get_data(as_text=True)),
                         "username": "alice", "password": PASSWORD})
    assert r.status_code == 303 and "/staff/login/code" in r.headers["Location"]
    assert fresh.get("/staff/orders").status_code == 303  # the password alone signs nobody in
    wrong = send_code(fresh, "000000" if code_for(secret) != "000000" else "111111", "&next=/staff/orders")
    assert wrong.status_code == 403 and "wrong or was used already" in wrong.get_data(as_text=True)
    right = send_code(fresh, code_for(secret), "&next=/staff/orders")
    assert right.status_code == 303 and right.headers["Location"].endswith("/staff/orders")
    assert fresh.get("/staff/orders").status_code == 200

    replay = new_client(app)
    sign_in(replay, "alice")
    again = send_code(replay, code_for(secret))  # the same code, seconds later: refused
    assert again.status_code == 403 and replay.get("/staff/").status_code == 303
    actions = [a.action for a in audit_rows() if a.action.startswith("login.")]
    assert actions[-5:] == ["login.password_ok", "login.code_credentials", "login.success",
                            "login.password_ok", "login.code_credentials"]


def test_the_code_step_expires(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    add_staff("alice")
    client = new_client(app)
    sign_in(client, "alice")
    secret = enrol(client, "alice")
    late = new_client(app)
    sign_in(late, "alice")
    with late.session_transaction() as s:
        s["staff_second_step"] = {**s["staff_second_step"], "at": int((utcnow() - timedelta(minutes=6)).timestamp())}
    assert late.get("/staff/login/code").status_code == 303
    r = late.post("/staff/login/code", data={"csrf_token": token(late, "/staff/login?lang=en"), "code": code_for(secret)})
    assert r.status_code == 303 and r.headers["Location"].endswith("/staff/login")
    assert late.get("/staff/").status_code == 303


def test_wrong_codes_are_throttled_per_account(app: Flask) -> None:
    add_staff("alice")
    client = new_client(app)
    sign_in(client, "alice")
    secret = enrol(client, "alice")
    guesser = new_client(app)
    sign_in(guesser, "alice")
    bad = "000000" if "000000" not in {code_for(secret, s) for s in (-1, 0, 1)} else "999999"
    statuses = [send_code(guesser, bad).status_code for _ in range(6)]  # type: ignore[attr-defined]
    assert statuses == [403] * 6  # five free, the sixth counts and sets a wait
    refused = send_code(guesser, code_for(secret))  # even the right code waits
    assert refused.status_code == 429 and "Too many wrong codes" in refused.get_data(as_text=True)  # type: ignore[attr-defined]
    assert guesser.get("/staff/").status_code == 303


def test_required_second_factor_must_be_set_up_before_anything_else(app: Flask) -> None:
    add_staff("carol", "cashier")
    admin = signed_in(app, "admin")
    carol = new_client(app)
    sign_in(carol, "carol")
    assert carol.get("/staff/orders").status_code == 200
    sid = account("carol").id
    r = admin.post(f"/staff/accounts/{sid}", data={"csrf_token": token(admin), "role": "cashier", "active": "y",
                                                  "totp_required": "y"})
    assert r.status_code == 303 and account("carol").totp_required
    for page in ("/staff/orders", "/staff/", "/staff/account/password"):
        r = carol.get(page)
        assert r.status_code in (303, 405) and (r.status_code == 405 or r.headers["Location"].endswith("/staff/account/totp"))
    assert carol.get("/staff/account/totp").status_code == 200
    enrol(carol, "carol")
    assert carol.get("/staff/orders").status_code == 200
    off = carol.post("/staff/account/totp/off", data={"csrf_token": token(carol), "code": code_for(account("carol").totp_secret or "")})
    assert off.status_code == 409 and account("carol").totp_secret


def test_turning_the_second_factor_off_takes_a_current_code(app: Flask) -> None:
    add_staff("alice")
    client = new_client(app)
    sign_in(client, "alice")
    secret = enrol(client, "alice")
    assert client.post("/staff/account/totp/off", data={"csrf_token": token(client), "code": "12"}).status_code == 403
    assert account("alice").totp_secret == secret
    r = client.post("/staff/account/totp/off", data={"csrf_token": token(client), "code": code_for(secret)})
    assert r.status_code == 303 and account("alice").totp_secret is None
    assert [a.action for a in audit_rows("account.totp_off")] == ["account.totp_off"]
    assert sign_in(new_client(app), "alice").headers["Location"].endswith("/staff/")  # type: ignore[union-attr]


# ------------------------------------------------------------------ one's own password


def test_changing_ones_password_ends_other_sessions_only(app: Flask) -> None:
    add_staff("alice")
    here, elsewhere = new_client(app), new_client(app)
    sign_in(here, "alice")
    sign_in(elsewhere, "alice")
    wrong = here.post("/staff/account/password", data={"csrf_token": token(here), "current": "not-it-at-all",
                                                       "new_password": NEW_PASSWORD, "again": NEW_PASSWORD})
    assert wrong.status_code == 422 and "current password is wrong" in wrong.get_data(as_text=True)
    differ = here.post("/staff/account/password", data={"csrf_token": token(here), "current": PASSWORD,
                                                        "new_password": NEW_PASSWORD, "again": NEW_PASSWORD + "x"})
    assert differ.status_code == 422 and "differ" in differ.get_data(as_text=True)
    short = here.post("/staff/account/password", data={"csrf_token": token(here), "current": PASSWORD,
                                                       "new_password": "short", "again": "short"})
    assert short.status_code == 422
    ok = here.post("/staff/account/password", data={"csrf_token": token(here), "current": PASSWORD,
                                                    "new_password": NEW_PASSWORD, "again": NEW_PASSWORD})
    assert ok.status_code == 303
    assert here.get("/staff/").status_code == 200
    assert elsewhere.get("/staff/").status_code == 303
    assert sign_in(new_client(app), "alice").status_code == 403
    assert sign_in(new_client(app), "alice", NEW_PASSWORD).status_code == 303
    assert [a.action for a in audit_rows("account.password")] == ["account.password"]


# ------------------------------------------------------------------ admin pages


def test_admin_creates_an_account_that_can_sign_in(app: Flask) -> None:
    admin = signed_in(app, "admin")
    fields = {"csrf_token": token(admin), "username": "dave", "role": "editor", "active": "y",
              "new_password": NEW_PASSWORD, "again": NEW_PASSWORD}
    assert admin.post("/staff/accounts", data=fields).status_code == 303
    assert admin.post("/staff/accounts", data={**fields, "csrf_token": token(admin)}).status_code == 409
    bad = admin.post("/staff/accounts", data={**fields, "csrf_token": token(admin), "username": "<b>x</b>"})
    assert bad.status_code == 422 and "<b>x</b>" not in bad.get_data(as_text=True)
    assert account("dave").role == "editor"
    assert sign_in(new_client(app), "dave", NEW_PASSWORD).status_code == 303
    assert "dave" in admin.get("/staff/accounts").get_data(as_text=True)
    created = [a for a in audit_rows("staff.create") if a.target == "staff dave"]
    assert len(created) == 1 and created[0].username == "admin-user" and "role=editor" in (created[0].after_summary or "")


def test_disabling_an_account_ends_its_sessions(app: Flask) -> None:
    add_staff("erin", "cashier")
    erin = new_client(app)
    sign_in(erin, "erin")
    admin = signed_in(app, "admin")
    sid = account("erin").id
    r = admin.post(f"/staff/accounts/{sid}", data={"csrf_token": token(admin), "role": "cashier"})
    assert r.status_code == 303 and not account("erin").active
    assert erin.get("/staff/").status_code == 303
    assert sign_in(new_client(app), "erin").status_code == 403
    edit = audit_rows("staff.edit")
    assert edit[-1].before_summary == "active=True" and edit[-1].after_summary == "active=False"


def test_role_change_is_audited_and_applies_at_once(app: Flask) -> None:
    add_staff("fred", "cashier")
    admin = signed_in(app, "admin")
    sid = account("fred").id
    admin.post(f"/staff/accounts/{sid}", data={"csrf_token": token(admin), "role": "editor", "active": "y"})
    fred = new_client(app)
    sign_in(fred, "fred")
    assert fred.get("/staff/orders").status_code == 403 and fred.get("/staff/faq").status_code == 200
    assert audit_rows("staff.edit")[-1].after_summary == "role=editor"


def test_an_admin_cannot_lock_themselves_out(app: Flask) -> None:
    admin = signed_in(app, "admin")
    me = account("admin-user").id
    for fields in ({"role": "cashier", "active": "y"}, {"role": "admin"}):
        r = admin.post(f"/staff/accounts/{me}", data={"csrf_token": token(admin), **fields})
        assert r.status_code == 409 and "own admin role" in r.get_data(as_text=True)
    r = admin.post(f"/staff/accounts/{me}/password", data={"csrf_token": token(admin), "new_password": NEW_PASSWORD,
                                                            "again": NEW_PASSWORD})
    assert r.status_code == 409
    assert account("admin-user").role == "admin" and account("admin-user").active


def test_admin_password_reset_and_second_factor_reset(app: Flask) -> None:
    add_staff("gina", "cashier")
    gina = new_client(app)
    sign_in(gina, "gina")
    enrol(gina, "gina")
    admin = signed_in(app, "admin")
    sid = account("gina").id
    r = admin.post(f"/staff/accounts/{sid}/password", data={"csrf_token": token(admin), "new_password": NEW_PASSWORD,
                                                             "again": NEW_PASSWORD})
    assert r.status_code == 303 and gina.get("/staff/").status_code == 303
    assert sign_in(new_client(app), "gina", PASSWORD).status_code == 403
    assert "/staff/login/code" in sign_in(new_client(app), "gina", NEW_PASSWORD).headers["Location"]
    assert admin.post(f"/staff/accounts/{sid}/totp-reset", data={}).status_code == 400  # no CSRF token
    r = admin.post(f"/staff/accounts/{sid}/totp-reset", data={"csrf_token": token(admin)})
    assert r.status_code == 303 and account("gina").totp_secret is None
    assert sign_in(new_client(app), "gina", NEW_PASSWORD).headers["Location"].endswith("/staff/")
    changes = [a.action for a in audit_rows() if a.action.startswith("staff.") and a.action != "staff.create"]
    assert changes == ["staff.password_reset", "staff.totp_reset"]


def test_account_pages_speak_chinese_by_default(app: Flask) -> None:
    admin = signed_in(app, "admin")
    for page in ("/staff/accounts?lang=zh", "/staff/account?lang=zh", "/staff/account/totp?lang=zh"):
        body = admin.get(page).get_data(as_text=True)
        assert "Staff accounts" not in body and "My account" not in body and "Second factor" not in body, page


# ------------------------------------------------------------------ the way back in


def test_cli_resets_password_and_second_factor(app: Flask, runner: object) -> None:
    add_staff("boss", "admin")
    client = new_client(app)
    sign_in(client, "boss")
    enrol(client, "boss")
    assert "second factor on" in cli(runner, "staff", "list").output  # type: ignore[arg-type]
    r = cli(runner, "staff", "password", "boss", "--password", NEW_PASSWORD)  # type: ignore[arg-type]
    assert r.exit_code == 0 and client.get("/staff/").status_code == 303
    assert cli(runner, "staff", "password", "nobody", "--password", NEW_PASSWORD).exit_code != 0  # type: ignore[arg-type]
    assert cli(runner, "staff", "reset-totp", "boss").exit_code == 0  # type: ignore[arg-type]
    assert sign_in(new_client(app), "boss", NEW_PASSWORD).headers["Location"].endswith("/staff/")
    rows = [a for a in audit_rows() if a.action.startswith("staff.") and a.target == "staff boss"]
    assert [(a.action, a.username, a.ip) for a in rows] == [("staff.create", "(command line)", None),
                                                              ("staff.password_reset", "(command line)", None),
                                                              ("staff.totp_reset", "(command line)", None)]


def test_every_way_to_create_an_account_writes_its_audit_row(app: Flask, runner: object) -> None:
    """`flask staff create` used to add an account with no audit row, while the admin page wrote
    one: both now go through the same service function."""
    r = cli(runner, "staff", "create", "frank", "--role", "cashier", "--password", NEW_PASSWORD)  # type: ignore[arg-type]
    assert r.exit_code == 0 and account("frank").role == "cashier"
    [row] = [a for a in audit_rows("staff.create") if a.target == "staff frank"]
    assert (row.username, row.staff_id, row.after_summary) == ("(command line)", None,
                                                               "role=cashier; active=True; totp_required=False")
