"""Strangers must not spend the owner's budget: device cookies (OWASP) for cards and staff.

Four wrong passwords from a stranger used to make the owner's right one wait, and a hundred
blocked the card for good; the staff sign-in was the same. Now a browser that gave the right
secret before has its own count, unknown devices share the rest, and the guessing bound holds
whoever sends the guesses.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import Flask, Response
from flask.testing import FlaskClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select, update

from heyon_site.security import device_cookie, throttle
from heyon_site.cards.auth import authenticate, throttle_key
from heyon_site.security.device_cookie import DeviceCookie, day_of, tag_key
from heyon_site.extensions import db
from heyon_site.models import LoginThrottle, StaffUser, utcnow
from heyon_site.staff import auth as staff_auth

from tests.kit import new_client, site_for_tests
from tests.kit import CARD, PIN, cli, csrf_from, make_card, recharge_form
from tests.staff.kit import add_staff, sign_in, signed_in
from tests.staff.kit import NEW_PASSWORD, code_for, enrol, send_code, token

CARD_B = "8600000000005678"
WRONG = "000000"


def lookup(client: FlaskClient, number: str = CARD, password: str = PIN) -> int:
    page = client.get("/balance?lang=en").get_data(as_text=True)
    return client.post("/balance", data={"csrf_token": csrf_from(page), "card_number": number,
                                         "password": password}).status_code


def cookie_value(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(device_cookie.NAME, domain="heyon.test")
    return cookie.value if cookie else None


def wait_out(subject: str) -> None:
    """Every count of ``subject`` done waiting, as if its delays had passed."""
    db.session.execute(update(LoginThrottle).where(LoginThrottle.subject == subject)
                       .values(blocked_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def rows_of(subject: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(LoginThrottle).where(LoginThrottle.subject == subject)) or 0


def owners_browser(app: Flask) -> FlaskClient:
    """A browser that opened the card once with the right password: a known device."""
    owner = new_client(app)
    assert lookup(owner) == 200 and cookie_value(owner)
    return owner


# ------------------------------------------------------------------ cards


def test_four_wrong_passwords_from_a_stranger_do_not_stop_the_owners_browser(app: Flask) -> None:
    make_card()
    owner = owners_browser(app)
    stranger = new_client(app)
    assert [lookup(stranger, password=WRONG) for _ in range(4)] == [403] * 4
    assert lookup(stranger) == 429  # the stranger (every unknown device) waits...
    assert lookup(new_client(app)) == 429
    assert lookup(owner) == 200  # ...the owner's browser does not
    assert owner.post("/recharge", data=recharge_form(owner)).status_code == 303


def test_a_hundred_wrong_passwords_from_strangers_neither_lock_out_the_owner_nor_block_the_card(app: Flask) -> None:
    make_card()
    owner = owners_browser(app)
    stranger = new_client(app)
    for _ in range(100):
        wait_out(throttle_key(CARD))
        assert lookup(stranger, password=WRONG) == 403
    refused = stranger.post("/balance", data={"csrf_token": csrf_from(stranger.get("/balance?lang=en").get_data(as_text=True)),
                                              "card_number": CARD, "password": PIN})
    assert refused.status_code == 429 and "locked for 24 hour(s)" in refused.get_data(as_text=True)
    assert lookup(owner) == 200
    unknown = throttle.state(throttle_key(CARD), throttle.Policy.from_config("CARD"))
    assert unknown.locked and unknown.wait_until is not None and unknown.wait_until < utcnow() + timedelta(days=1, minutes=1)


def test_a_device_cookie_is_given_only_for_the_right_password(app: Flask) -> None:
    make_card()
    browser = new_client(app)
    assert lookup(browser, password=WRONG) == 403 and cookie_value(browser) is None
    assert lookup(browser, "8600000000009999") == 403 and cookie_value(browser) is None  # no such card
    first = new_client(app)
    assert first.post("/recharge", data=recharge_form(first)).status_code == 303 and cookie_value(first)
    assert lookup(browser) == 200 and cookie_value(browser)


def test_a_device_cookie_for_card_a_is_useless_for_card_b(app: Flask) -> None:
    make_card()
    make_card(CARD_B)
    owner_of_b = owners_browser(app)  # known for CARD only...
    assert lookup(owner_of_b, CARD_B) == 200  # ...and now for CARD_B too (its own card)
    holder_of_a = new_client(app)
    assert lookup(holder_of_a) == 200 and cookie_value(holder_of_a)  # a real entry, for CARD
    for _ in range(4):
        assert lookup(holder_of_a, CARD_B, WRONG) == 403
    # Those four were counted as an unknown device's: every unknown device of CARD_B now waits.
    assert lookup(new_client(app), CARD_B) == 429
    assert lookup(owner_of_b, CARD_B) == 200
    assert rows_of(throttle_key(CARD_B)) == 1  # the unknown devices' count only: no device of its own


def _forged(key: str, tags: bytes) -> str:
    subject = throttle_key(CARD)
    return DeviceCookie().renewed(subject, tags, day_of(utcnow()), 365, 5).dumps(key)


def test_a_forged_or_tampered_device_cookie_counts_as_unknown(app: Flask) -> None:
    make_card()
    genuine = cookie_value(owners_browser(app))
    assert genuine
    flipped = genuine[:10] + ("A" if genuine[10] != "A" else "B") + genuine[11:]
    forgeries = {
        "tampered": flipped,
        "signed with another key": _forged("not-the-key", b"not-the-key"),
        "our signature, tags of another key": _forged(app.config["SECRET_KEY"], b"not-the-key"),
        "not a cookie of ours": "garbage",
        "oversized": genuine * 20,
    }
    for name, value in forgeries.items():
        db.session.execute(LoginThrottle.__table__.delete())
        db.session.commit()
        stranger = new_client(app)
        stranger.set_cookie(device_cookie.NAME, value, domain="heyon.test")
        assert [lookup(stranger, password=WRONG) for _ in range(4)] == [403] * 4, name
        assert lookup(new_client(app)) == 429, name  # it spent the unknown devices' count
        assert rows_of(throttle_key(CARD)) == 1, name
    db.session.execute(LoginThrottle.__table__.delete())
    db.session.commit()
    stolen = new_client(app)
    stolen.set_cookie(device_cookie.NAME, genuine, domain="heyon.test")
    assert [lookup(stolen, password=WRONG) for _ in range(4)] == [403] * 4
    assert lookup(new_client(app)) == 200  # the genuine cookie: its own count (the control)


def test_the_cookie_holds_no_card_number_and_is_bounded(app: Flask) -> None:
    numbers = [f"86000000000{n:05d}" for n in range(1, 9)]
    for number in numbers:
        make_card(number)
    browser = new_client(app)
    for number in numbers:
        assert lookup(browser, number) == 200
    value = cookie_value(browser)
    assert value and len(value) <= 6 * device_cookie.ENTRY_CHARS
    payload = json.dumps(URLSafeSerializer(app.config["SECRET_KEY"], salt="heyon.device-cookie").loads(value))
    assert not any(n in payload or n[-4:] in payload or throttle_key(n) in payload for n in numbers)
    held = DeviceCookie.loads(value, app.config["SECRET_KEY"], 5)
    assert len(held.entries) == 5  # the five cards opened last; the oldest three are forgotten
    known = [device_cookie.device_for(throttle_key(n), held) is not None for n in numbers]
    assert known == [False] * 3 + [True] * 5


def test_each_right_password_renews_the_entry(app: Flask) -> None:
    make_card()
    owner = owners_browser(app)
    before = device_cookie.device_for(throttle_key(CARD), DeviceCookie.loads(cookie_value(owner), app.config["SECRET_KEY"], 5))
    assert lookup(owner) == 200
    after = device_cookie.device_for(throttle_key(CARD), DeviceCookie.loads(cookie_value(owner), app.config["SECRET_KEY"], 5))
    assert before and after and before != after  # a copy taken before is no longer this device


def test_the_cookie_is_httponly_lax_long_lived_and_secure_over_https(database: str) -> None:
    for https, name in ((False, "heyon_device"), (True, "__Host-heyon_device")):
        with site_for_tests(database, HEYON_HTTPS=https) as app:
            with app.test_request_context("/balance", method="POST"):
                device_cookie.remember("a-subject")
                header = app.process_response(Response()).headers["Set-Cookie"]
            assert header.startswith(f"{name}=") and "HttpOnly" in header and "SameSite=Lax" in header
            assert "Path=/" in header and f"Max-Age={365 * 86400}" in header and "Domain" not in header
            assert ("Secure" in header) is https


def test_flask_cards_unblock_clears_every_count_of_the_card(app: Flask, runner: object) -> None:
    make_card()
    owner = owners_browser(app)
    stolen = new_client(app)
    stolen.set_cookie(device_cookie.NAME, cookie_value(owner) or "", domain="heyon.test")
    for browser in (stolen, new_client(app)):  # a known device's count and the unknown devices'
        assert [lookup(browser, password=WRONG) for _ in range(4)] == [403] * 4
    assert lookup(new_client(app)) == 429 and lookup(owner) == 429
    assert rows_of(throttle_key(CARD)) == 3  # unknown, the device, the devices' allowance
    result = cli(runner, "cards", "unblock", CARD)  # type: ignore[arg-type]
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"card **** {CARD[-4:]} is active", "password throttle cleared (3 record(s))"]
    assert rows_of(throttle_key(CARD)) == 0
    assert lookup(new_client(app)) == 200 and lookup(owner) == 200


# ------------------------------------------------------------------ the guessing bound


Attempt = Callable[[datetime], tuple[str | None, int]]


def guesses(senders: list[Attempt], start: datetime, hours: float) -> list[int]:
    """Each sender guesses as fast as the throttle lets it, from ``start`` for ``hours``: how
    many wrong guesses each got checked."""
    end = start + timedelta(hours=hours)
    ready = [start] * len(senders)
    counted = [0] * len(senders)
    while min(ready) < end:
        i = ready.index(min(ready))
        refused, retry_after = senders[i](ready[i])
        if refused == "credentials":
            counted[i] += 1
        else:
            assert retry_after > 0, refused
            ready[i] += timedelta(seconds=retry_after)
    return counted


def card_sender(cookie: DeviceCookie | None) -> Attempt:
    def attempt(now: datetime) -> tuple[str | None, int]:
        result = authenticate(CARD, WRONG, cookie, now=now)
        return result.refused, result.retry_after
    return attempt


def known_devices(subject: str, how_many: int, now: datetime) -> list[DeviceCookie]:
    """Cookies of browsers that gave the right secret (or of thieves who copied theirs)."""
    return [DeviceCookie().renewed(subject, tag_key(), day_of(now), 365, 5) for _ in range(how_many)]


def test_unknown_devices_get_at_most_37_guesses_a_day_then_24_then_one(app: Flask) -> None:
    make_card()
    start = utcnow()
    days = [guesses([card_sender(None)], start + timedelta(days=d), 24)[0] for d in range(6)]
    # 4 at once, 10 more over 68 minutes of doubling waits, then one an hour; at the 100th in a
    # row the lockout: one a day. It was 100 in all, then never again (the card blocked for good).
    assert days == [37, 24, 24, 15, 1, 1]


def test_about_a_hundred_a_day_whoever_sends_them(app: Flask) -> None:
    """Unknown devices and five known ones (their owners' cookies stolen) at full speed."""
    make_card()
    start = utcnow()
    senders = [card_sender(None)] + [card_sender(c) for c in known_devices(throttle_key(CARD), 5, start)]
    first = guesses(senders, start, 24)
    # The devices' allowance: 30 at once, then one back every 48 minutes (29 more in the day).
    assert first[0] == 37 and sum(first[1:]) == 59
    assert sum(first) <= 100
    second = guesses(senders, start + timedelta(days=1), 24)
    assert sum(second) <= 24 + 30


def test_a_lockout_leaves_the_owners_known_device_alone(app: Flask) -> None:
    make_card()
    start = utcnow()
    owner = known_devices(throttle_key(CARD), 1, start)[0]
    guesses([card_sender(None)], start, 24 * 5)  # five days of a stranger at full speed
    later = start + timedelta(days=5)
    assert authenticate(CARD, PIN, now=later).refused == "locked"
    assert authenticate(CARD, PIN, owner, now=later).ok


# ------------------------------------------------------------------ staff accounts


def staff_cookie(client: FlaskClient) -> str | None:
    return cookie_value(client)


def session_over(client: FlaskClient) -> FlaskClient:
    """The browser after its session ended (closed, or idle): the device cookie stays."""
    client.delete_cookie("session", domain="heyon.test")
    return client


def test_a_stranger_cannot_lock_a_staff_member_out_of_a_known_browser(app: Flask) -> None:
    add_staff("alice")
    own = new_client(app)
    assert sign_in(own, "alice").status_code == 303 and staff_cookie(own)
    stranger = new_client(app)
    for _ in range(100):
        wait_out(staff_auth.password_subject("alice"))
        assert sign_in(stranger, "alice", "wrong-password").status_code == 403
    assert sign_in(stranger, "alice").status_code == 429
    assert sign_in(new_client(app), "alice").status_code == 429
    assert sign_in(session_over(own), "alice").status_code == 303


def test_staff_device_cookie_comes_after_the_code_and_keeps_the_code_step_apart(app: Flask) -> None:
    add_staff("alice")
    first = new_client(app)
    sign_in(first, "alice")
    secret = enrol(first, "alice")
    own = new_client(app)
    assert "/staff/login/code" in sign_in(own, "alice").headers["Location"]
    assert staff_cookie(own) is None  # the password alone does not make a known device
    assert send_code(own, code_for(secret)).status_code == 303  # type: ignore[attr-defined]
    assert staff_cookie(own)
    # Someone who has the password but not the phone guesses codes: only unknown devices wait.
    guesser = new_client(app)
    sign_in(guesser, "alice")
    bad = "000000" if "000000" not in {code_for(secret, s) for s in (-1, 0, 1)} else "999999"
    assert [send_code(guesser, bad).status_code for _ in range(6)] == [403] * 6  # type: ignore[attr-defined]
    assert send_code(guesser, code_for(secret)).status_code == 429  # type: ignore[attr-defined]
    assert "/staff/login/code" in sign_in(session_over(own), "alice").headers["Location"]
    assert send_code(own, code_for(secret, -1)).status_code == 303  # type: ignore[attr-defined]  # the next step's code


def test_a_staff_device_cookie_is_useless_for_another_account(app: Flask) -> None:
    add_staff("alice")
    add_staff("bob")
    browser = new_client(app)
    assert sign_in(browser, "alice").status_code == 303 and staff_cookie(browser)
    session_over(browser)
    for _ in range(6):
        assert sign_in(browser, "bob", "wrong-password").status_code == 403
    assert sign_in(new_client(app), "bob").status_code == 429  # spent as an unknown device of bob
    assert rows_of(staff_auth.password_subject("bob")) == 1


def test_a_forged_staff_device_cookie_counts_as_unknown(app: Flask) -> None:
    add_staff("alice")
    forged = DeviceCookie().renewed(staff_auth.password_subject("alice"), b"not-the-key", day_of(utcnow()), 365, 5)
    stranger = new_client(app)
    stranger.set_cookie(device_cookie.NAME, forged.dumps(app.config["SECRET_KEY"]), domain="heyon.test")
    assert [sign_in(stranger, "alice", "wrong-password").status_code for _ in range(6)] == [403] * 6
    assert sign_in(new_client(app), "alice").status_code == 429


def staff_sender(username: str, cookie: DeviceCookie | None) -> Attempt:
    def attempt(now: datetime) -> tuple[str | None, int]:
        result = staff_auth.authenticate(username, "wrong-password", cookie, now=now)
        return result.refused, result.retry_after
    return attempt


def test_staff_guesses_are_bounded_whoever_sends_them(app: Flask) -> None:
    add_staff("alice")
    start = utcnow()
    devices = known_devices(staff_auth.password_subject("alice"), 5, start)
    counted = guesses([staff_sender("alice", None)] + [staff_sender("alice", c) for c in devices], start, 24)
    assert counted[0] == 39 and sum(counted[1:]) == 59 and sum(counted) <= 100


# ------------------------------------------------------------------ resets and what the pages show


def stranger_fails(app: Flask, username: str, times: int = 6) -> None:
    stranger = new_client(app)
    for _ in range(times):
        sign_in(stranger, username, "wrong-password")


def test_flask_staff_password_clears_every_count_of_the_account(app: Flask, runner: object) -> None:
    add_staff("boss", "admin")
    own = new_client(app)
    sign_in(own, "boss")
    stolen = new_client(app)
    stolen.set_cookie(device_cookie.NAME, staff_cookie(own) or "", domain="heyon.test")
    for _ in range(6):
        sign_in(stolen, "boss", "wrong-password")
    stranger_fails(app, "boss")
    assert sign_in(new_client(app), "boss").status_code == 429
    assert rows_of(staff_auth.password_subject("boss")) == 3
    r = cli(runner, "staff", "password", "boss", "--password", NEW_PASSWORD)  # type: ignore[arg-type]
    assert r.exit_code == 0
    assert r.stdout.splitlines() == ["new password set for boss; its sessions have ended",
                                     "sign-in throttle cleared (3 record(s))"]
    assert rows_of(staff_auth.password_subject("boss")) == 0
    assert sign_in(new_client(app), "boss", NEW_PASSWORD).status_code == 303


def test_the_admin_page_shows_the_throttle_and_setting_a_password_clears_it(app: Flask) -> None:
    add_staff("gina")
    stranger_fails(app, "gina")
    admin = signed_in(app, "admin")
    sid = db.session.scalar(select(StaffUser.id).where(StaffUser.username == "gina"))
    listing = admin.get("/staff/accounts?lang=en").get_data(as_text=True)
    assert "unknown devices wait until" in listing and "6 failure(s) in a row from unknown devices" in listing
    edit = admin.get(f"/staff/accounts/{sid}?lang=en").get_data(as_text=True)
    assert "unknown devices wait until" in edit
    r = admin.post(f"/staff/accounts/{sid}/password", data={"csrf_token": token(admin), "new_password": NEW_PASSWORD,
                                                             "again": NEW_PASSWORD})
    assert r.status_code == 303
    assert rows_of(staff_auth.password_subject("gina")) == 0
    edit = admin.get(f"/staff/accounts/{sid}?lang=en").get_data(as_text=True)
    assert "unknown devices wait until" not in edit and "failure(s)" not in edit
    assert sign_in(new_client(app), "gina", NEW_PASSWORD).status_code == 303


def test_ones_own_account_page_shows_the_throttle_in_force(app: Flask) -> None:
    add_staff("hana")
    own = new_client(app)
    sign_in(own, "hana")
    assert "failure(s)" not in own.get("/staff/account?lang=en").get_data(as_text=True)
    stranger_fails(app, "hana")
    page = own.get("/staff/account?lang=en").get_data(as_text=True)
    assert "unknown devices wait until" in page and "6 failure(s) in a row from unknown devices" in page


def test_resetting_the_second_factor_clears_the_codes_throttle_only(app: Flask, runner: object) -> None:
    add_staff("ivan")
    own = new_client(app)
    sign_in(own, "ivan")
    secret = enrol(own, "ivan")
    guesser = new_client(app)
    sign_in(guesser, "ivan")
    bad = "000000" if "000000" not in {code_for(secret, s) for s in (-1, 0, 1)} else "999999"
    assert [send_code(guesser, bad).status_code for _ in range(6)] == [403] * 6  # type: ignore[attr-defined]
    stranger_fails(app, "ivan")
    db.session.rollback()  # a fresh snapshot: the requests wrote in their own sessions
    states = staff_auth.throttle_states("ivan")
    assert states["code"].in_force and states["password"].in_force
    assert cli(runner, "staff", "reset-totp", "ivan").exit_code == 0  # type: ignore[arg-type]
    db.session.rollback()
    states = staff_auth.throttle_states("ivan")
    assert not states["code"].any and states["password"].in_force
