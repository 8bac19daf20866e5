"""The staff audit log: newest first, paged, and rows the database keeps unchangeable."""
from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import AuditLog
from tests.staff.kit import audit_rows, signed_in


def test_audit_log_lists_newest_first_and_pages(app: Flask) -> None:
    client = signed_in(app, "admin")
    for i in range(55):
        in_write_transaction(lambda i=i: db.session.add(AuditLog(username=f"u{i:02d}", action="test")))
    body = client.get("/staff/audit").get_data(as_text=True)
    assert body.index("u54") < body.index("u53") and "u04" not in body and "page=2" in body
    second = client.get("/staff/audit?page=2").get_data(as_text=True)
    assert "u04" in second and "u54" not in second


def test_audit_rows_cannot_be_changed_or_deleted(app: Flask) -> None:
    in_write_transaction(lambda: db.session.add(AuditLog(username="x", action="test")))
    for statement in ("UPDATE audit_log SET action = 'other'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"):
            in_write_transaction(lambda s=statement: db.session.execute(text(s)))
    if db.engine.dialect.name == "postgresql":
        with pytest.raises(DatabaseError, match="append-only"):
            in_write_transaction(lambda: db.session.execute(text("TRUNCATE audit_log")))
    assert [a.action for a in audit_rows()] == ["test"]
