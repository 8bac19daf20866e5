"""Helpers of the payment tests: a notification posted as a provider sends it, paying on the sandbox
gateway page, and the SQL statements the site sends while a block runs."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from flask.testing import FlaskClient
from sqlalchemy import event
from werkzeug.test import TestResponse

from heyon_site.extensions import db
from tests.kit import csrf_from

NOTIFY = "/pay/notify/sandbox"


FORM = "application/x-www-form-urlencoded"


def post_notify(client: FlaskClient, body: Mapping[str, str] | bytes, content_type: str = FORM) -> TestResponse:
    """POST a notification body exactly as given (a mapping is form-encoded first)."""
    data = urlencode(body).encode() if isinstance(body, Mapping) else body
    return client.post(NOTIFY, data=data, content_type=content_type)


def pay_on_gateway(client: FlaskClient, order_no: str, outcome: str = "pay") -> None:
    """Press one of the sandbox gateway's buttons: pay, fail or silent (pay without notifying)."""
    page = client.get(f"/pay/sandbox/{order_no}")
    assert page.status_code == 200
    done = client.post(f"/pay/sandbox/{order_no}",
                       data={"csrf_token": csrf_from(page.get_data(as_text=True)), "outcome": outcome})
    assert done.status_code == 303, done.get_data(as_text=True)[:300]


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement the site sends while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
