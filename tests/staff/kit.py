"""Helpers of the staff tests: staff accounts, signing in (the second factor included), the audit log."""
from __future__ import annotations

import time

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import AuditLog, StaffUser
from heyon_site.staff import second_factor
from heyon_site.staff.services import create_staff
from tests.kit import csrf_from, new_client

PASSWORD = "a-long-staff-password"


def add_staff(username: str, role: str = "cashier", password: str = PASSWORD) -> int:
    return in_write_transaction(lambda: create_staff(username, password, role).id)


def login_token(client: FlaskClient) -> str:
    return csrf_from(client.get("/staff/login?lang=en").get_data(as_text=True))


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    return client.post("/staff/login", data={"csrf_token": login_token(client), "username": username, "password": password})


def signed_in(app: Flask, role: str, htmx: bool = False) -> FlaskClient:
    username = f"{role}-user"
    if db.session.scalar(select(StaffUser).where(StaffUser.username == username)) is None:
        add_staff(username, role)
    client = new_client(app, htmx=htmx)
    r = sign_in(client, username)
    assert r.status_code in (303, 204), r.get_data(as_text=True)[:500]
    return client


def audit_rows(action: str | None = None) -> list[AuditLog]:
    db.session.rollback()
    q = select(AuditLog).order_by(AuditLog.id)
    if action:
        q = q.where(AuditLog.action == action)
    return list(db.session.scalars(q))


NEW_PASSWORD = "another-long-password"


def account(username: str) -> StaffUser:
    db.session.rollback()
    user = db.session.scalar(select(StaffUser).where(StaffUser.username == username))
    assert user is not None
    return user


def token(client: FlaskClient, page: str = "/staff/account?lang=en") -> str:
    return csrf_from(client.get(page).get_data(as_text=True))


def code_for(secret: str, steps_ago: int = 0) -> str:
    """The code of ``steps_ago`` steps before now. Not in a step's last two seconds: a code made
    then is checked in the next step, one step older than meant (one step back, the oldest the
    site takes, becomes two; seen once on a loaded machine), so wait for the step to begin."""
    totp = pyotp.TOTP(secret)
    left = totp.interval - time.time() % totp.interval
    if left < 2:
        time.sleep(left + 0.05)
    return totp.generate_otp(totp.timecode(time.time()) - steps_ago)


def enrol(client: FlaskClient, username: str) -> str:
    """Set up the second factor through the pages, as a person with a phone would."""
    page = client.get("/staff/account/totp?lang=en").get_data(as_text=True)
    secret = account(username).totp_pending
    assert secret and second_factor.grouped(secret) in page and "<svg" in page
    r = client.post("/staff/account/totp", data={"csrf_token": csrf_from(page), "code": code_for(secret, steps_ago=1)})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    assert account(username).totp_secret == secret and account(username).totp_pending is None
    return secret


def send_code(client: FlaskClient, code: str, next_url: str = "") -> object:
    page = client.get(f"/staff/login/code?lang=en{next_url}")
    return client.post(f"/staff/login/code{next_url.replace('&', '?', 1)}",
                       data={"csrf_token": csrf_from(page.get_data(as_text=True)), "code": code})
