"""Card password attempts are throttled per card (in the database) and per client IP."""
from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, event, update

from heyon_site.cards.auth import authenticate, delay_after, throttle_key
from heyon_site.database import begin_write
from heyon_site.extensions import db
from heyon_site.models import LoginThrottle, RechargeOrder, utcnow
from heyon_site.security.throttle import _locked_row

from tests.kit import new_client
from tests.kit import CARD, PIN, make_card, recharge_form

OTHER = "8600000000005678"


def attempt(client: FlaskClient, password: str, card: str = CARD) -> int:
    return client.post("/recharge", data=recharge_form(client, card_number=card, password=password)).status_code


def wait_out(number: str) -> None:
    """Move the card's delay into the past, as if the customer had waited."""
    db.session.execute(update(LoginThrottle).where(LoginThrottle.key == throttle_key(number))
                       .values(blocked_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_delays_grow_and_are_capped(app: Flask) -> None:
    free = app.config["HEYON_CARD_FREE_ATTEMPTS"]
    delays = [delay_after(n) for n in range(1, 40)]
    assert delays[:free] == [0] * free
    assert delays[free:free + 3] == [2, 4, 8]
    assert delays == sorted(delays) and max(delays) == app.config["HEYON_CARD_MAX_DELAY_SECONDS"]


def test_after_the_free_attempts_even_the_right_password_waits_for_that_card_only(app: Flask, client: FlaskClient) -> None:
    make_card()
    make_card(OTHER)
    free = app.config["HEYON_CARD_FREE_ATTEMPTS"]
    assert [attempt(client, "000000") for _ in range(free + 1)] == [403] * (free + 1)
    refused = client.post("/recharge", data=recharge_form(client, password=PIN))
    assert refused.status_code == 429 and "Too many wrong attempts" in refused.get_data(as_text=True)
    assert attempt(client, PIN, OTHER) == 303  # another card is not affected
    wait_out(CARD)
    assert attempt(client, PIN) == 303  # the delay has passed: the right password works again...
    assert db.session.get(LoginThrottle, throttle_key(CARD)) is None  # ...and resets the count
    assert db.session.query(RechargeOrder).count() == 2


def test_unknown_numbers_are_throttled_exactly_like_real_ones(app: Flask) -> None:
    make_card()
    free = app.config["HEYON_CARD_FREE_ATTEMPTS"]
    real = [authenticate(CARD, "000000").refused for _ in range(free + 2)]
    unknown = [authenticate("8600000000009999", "000000").refused for _ in range(free + 2)]
    assert real == unknown == ["credentials"] * (free + 1) + ["throttled"]


def test_a_lockout_is_for_a_time_never_for_good(app: Flask) -> None:
    """It used to be for good (100 failures, and nothing but a database edit opened the card
    again): a stranger knowing only the number could block a card. Now the count that reaches
    HEYON_CARD_LOCK_AFTER is locked out for HEYON_CARD_LOCKOUT_SECONDS, then tries again."""
    make_card()
    app.config["HEYON_CARD_LOCK_AFTER"] = 6
    for _ in range(6):
        wait_out(CARD)
        assert authenticate(CARD, "000000").refused == "credentials"
    locked = authenticate(CARD, PIN)  # not even the right one during the lockout
    assert locked.refused == "locked" and 86400 - 5 <= locked.retry_after <= 86400
    wait_out(CARD)  # a day later
    assert authenticate(CARD, "000000").refused == "credentials"
    assert authenticate(CARD, PIN).refused == "locked"  # each failure past the limit locks it out again
    wait_out(CARD)
    assert authenticate(CARD, PIN).ok


def test_the_throttle_stores_no_card_number(app: Flask) -> None:
    make_card()
    authenticate(CARD, "000000")
    keys = [k for (k,) in db.session.query(LoginThrottle.key)]
    assert keys == [throttle_key(CARD)] and CARD not in keys[0]


@pytest.fixture
def limited(app: Flask) -> Flask:
    app.config["RATELIMIT_ENABLED"] = True
    app.config["HEYON_IP_FAILURE_LIMIT"] = "3 per hour"
    from heyon_site.extensions import limiter

    limiter.init_app(app)  # re-read the settings: the fixture's app had limits switched off
    limiter.reset()
    return app


def test_failed_attempts_are_limited_per_client_ip(limited: Flask) -> None:
    make_card()
    # Different card numbers from one address: the per-card throttle alone would never trigger.
    numbers = [f"86000000000{n:05d}" for n in range(1, 5)]
    c = new_client(limited)
    assert [attempt(c, "000000", n) for n in numbers[:3]] == [403, 403, 403]
    assert attempt(c, "000000", numbers[3]) == 429
    other_ip = new_client(limited)
    other_ip.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    assert attempt(other_ip, PIN) == 303


def test_a_row_deleted_between_its_insert_and_its_lock_is_made_again(app: Flask, database: str) -> None:
    """The race two servers met on PostgreSQL: the insert found the row, a right password then
    deleted it, and the lock found nothing (a 500). The insert and the lock are tried again."""
    if not database.startswith("postgresql"):
        pytest.skip("SQLite's writer holds the whole database: nobody can delete in between")
    key = throttle_key(CARD)
    now = utcnow()
    db.session.add(LoginThrottle(key=key, subject=key, failures=2, updated_at=now))
    db.session.commit()
    deleted: list[str] = []

    def delete_it_first(conn: object, cursor: object, statement: str, *_: object) -> None:
        if "FOR UPDATE" in statement and not deleted:
            deleted.append(statement)
            with db.engine.connect() as other:  # another connection, as another server would
                other.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
                other.commit()

    event.listen(db.engine, "before_cursor_execute", delete_it_first)
    try:
        begin_write()
        row = _locked_row(key, key, now)
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", delete_it_first)
    assert deleted, "the deletion never ran in between"
    assert row.key == key and row.failures == 0  # made again, empty
