"""The audit log screen (admins)."""

from __future__ import annotations

from flask import Response, request

from heyon_site.staff import queries
from heyon_site.staff.auth import require_role
from heyon_site.staff.blueprint import bp
from heyon_site.web.fragments import render


@bp.get("/audit")
@require_role("admin")
def audit_log() -> Response:
    page = request.args.get("page", 1, type=int) or 1
    return render("staff/audit.html", log=queries.audit_page(page))
