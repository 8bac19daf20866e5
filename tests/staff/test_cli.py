"""`flask staff create`: accounts made from the command line."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from heyon_site.extensions import db
from heyon_site.models import StaffUser
from tests.kit import cli, new_client
from tests.staff.kit import sign_in


def test_cli_creates_staff(app: Flask, runner: object) -> None:
    r = cli(runner, "staff", "create", "boss", "--role", "admin", "--password", "0123456789")  # type: ignore[arg-type]
    assert r.exit_code == 0 and "created staff user boss (admin)" in r.output
    assert cli(runner, "staff", "create", "boss", "--role", "admin", "--password", "0123456789").exit_code != 0  # type: ignore[arg-type]
    short = cli(runner, "staff", "create", "kid", "--role", "editor", "--password", "123456789")  # type: ignore[arg-type]
    assert short.exit_code != 0 and "at least 10" in short.output
    assert cli(runner, "staff", "create", "x", "--role", "root", "--password", "0123456789").exit_code != 0  # type: ignore[arg-type]
    prompted = runner.invoke(args=["staff", "create", "carol", "--role", "cashier"],  # type: ignore[attr-defined]
                             input="0123456789ab\n0123456789ab\n")
    assert prompted.exit_code == 0, prompted.output
    db.session.rollback()
    roles = dict(db.session.execute(select(StaffUser.username, StaffUser.role)).all())
    assert roles == {"boss": "admin", "carol": "cashier"}
    assert sign_in(new_client(app), "carol", "0123456789ab").status_code == 303
