"""The raw callback log: every provider callback as received, bounded when refused, with what became of it."""

from __future__ import annotations

import hashlib
from typing import cast

from sqlalchemy import Table, bindparam, insert, update

from heyon_site.extensions import db
from heyon_site.models import ProviderCallback, utcnow

_CALLBACKS = cast(Table, ProviderCallback.__table__)

MAX_STORED_BODY = 16 * 1024


# Of a refused callback only this much of the body is kept (with the digest and size of the
# whole): enough to see what it was, and at most about a KiB per row however much was posted.
REFUSED_PREFIX = 1024


def record_callback(
    provider: str,
    body: bytes,
    content_type: str | None,
    remote_addr: str | None,
    outcome: str = "received",
    detail: str = "",
    *,
    keep: int = MAX_STORED_BODY,
) -> int:
    """Keep the first ``keep`` bytes of a callback's body as text, the SHA-256 and the size of
    the whole, and ``outcome``; its id. The caller commits. A verified callback is kept as
    received (up to MAX_STORED_BODY) before its event is applied; a refused one with
    ``keep=REFUSED_PREFIX`` and its final outcome, in one small write."""
    row = {
        "provider": provider[:20],
        "body": body[:keep].decode("utf-8", errors="replace").replace("\x00", "\\x00"),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_size": len(body),
        "content_type": (content_type or "")[:200],
        "remote_addr": (remote_addr or "")[:64],
        "received_at": utcnow(),
        "outcome": outcome,
        "detail": detail[:255] or None,
    }
    return int(db.session.execute(_ADD, row).scalar_one())


# One Core INSERT, built once: it runs on every callback, and the ORM's unit of work adds nothing.
_ADD = insert(_CALLBACKS).returning(_CALLBACKS.c.id)


def set_callback_outcome(callback_id: int, outcome: str, detail: str = "", order_no: str | None = None) -> None:
    order = (order_no or None) and order_no[:24]
    values = {"new_outcome": outcome, "new_detail": detail[:255] or None, "new_order_no": order}
    db.session.execute(_SET_OUTCOME, {"callback": callback_id, **values})


_SET_OUTCOME = (
    update(_CALLBACKS)
    .where(_CALLBACKS.c.id == bindparam("callback"))
    .values(outcome=bindparam("new_outcome"), detail=bindparam("new_detail"), order_no=bindparam("new_order_no"))
)
