"""The audit log: who changed what, one append-only row written in the same transaction as the
change (so neither exists without the other), by the service function that makes the change.

Services take an ``Actor`` and never read the request: a staff screen builds it from the signed-
in member and the request's address (``staff.auth.actor()``); a command uses ``COMMAND_LINE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from heyon_site.extensions import db
from heyon_site.models import AuditLog

SUMMARY_VALUE = 80  # characters of one value in an audit summary


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a member of staff (with the address they came from), or the server's
    command line. ``username`` is copied into each row, so it stays readable whatever happens to
    the account; a failed sign-in by an unknown name is recorded under the name typed."""

    staff_id: int | None
    username: str
    ip: str | None = None


COMMAND_LINE = Actor(None, "(command line)")  # changes made on the server itself


def record(
    actor: Actor, action: str, target: str | None = None, before: str | None = None, after: str | None = None
) -> None:
    """Add one audit row to the current transaction (the caller commits)."""
    db.session.add(
        AuditLog(
            staff_id=actor.staff_id,
            username=actor.username[:64],
            action=action,
            target=target,
            before_summary=before,
            after_summary=after,
            ip=actor.ip,
        )
    )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SUMMARY_VALUE else text[: SUMMARY_VALUE - 1] + "…"


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str]:
    """``k=v`` of the fields that changed, before and after (every field for a new row)."""
    keys = [k for k in after if before.get(k, object()) != after[k]]
    return (
        "; ".join(f"{k}={_short(before[k])}" for k in keys if k in before),
        "; ".join(f"{k}={_short(after[k])}" for k in keys),
    )


def summary(values: dict[str, Any]) -> str:
    """``k=v; k=v`` of a few plain settings (roles, flags), as they are."""
    return "; ".join(f"{k}={v}" for k, v in values.items())
