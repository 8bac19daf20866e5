"""Card PINs are a keyed HMAC: quick to check with the key, untestable without it; cards made
under the old argon2id scheme still open and are moved to the keyed form on their next success."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import event, select, update

from heyon_site.cards.auth import authenticate
from heyon_site.cards.numbers import number_digest
from heyon_site.config import warn_of_a_derived_pin_key
from heyon_site.extensions import db
from heyon_site.models import Card, LoginThrottle
from heyon_site.security import pins
from heyon_site.security.passwords import hasher

from tests.kit import CARD, PIN, make_card, site_for_tests

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def stored_hash() -> str:
    return db.session.scalars(select(Card.password_hash).where(Card.number_digest == number_digest(CARD))).one()


def test_a_keyed_pin_opens_with_its_key_only() -> None:
    stored = pins.hash_pin(KEY, "123456")
    assert stored.startswith("pin1$") and "123456" not in stored
    assert pins.check_pin(KEY, stored, "123456", FAST) == pins.PinCheck(ok=True)
    assert not pins.check_pin(KEY, stored, "123457", FAST).ok
    assert not pins.check_pin(OTHER_KEY, stored, "123456", FAST).ok
    assert not pins.check_pin(KEY, None, "123456", FAST).ok  # no such card
    assert not pins.check_pin(KEY, "pin1$broken", "123456", FAST).ok


def test_the_same_pin_is_stored_differently_on_each_card() -> None:
    assert len({pins.hash_pin(KEY, "123456") for _ in range(20)}) == 20


def test_a_forged_key_id_does_not_help_without_the_key() -> None:
    """Someone holding the table but not the key, who even copies the key id into the hash, still
    cannot make the right PIN match: the MAC needs the key itself."""
    _, _kid, salt, mac = pins.hash_pin(KEY, "123456").split("$")
    forged = f"pin1${pins.key_id(OTHER_KEY)}${salt}${mac}"
    assert not pins.check_pin(OTHER_KEY, forged, "123456", FAST).ok


def test_an_old_argon2_hash_opens_and_asks_to_be_upgraded() -> None:
    old = FAST.hash("123456")
    assert pins.check_pin(KEY, old, "123456", FAST) == pins.PinCheck(ok=True, upgrade=True)
    assert not pins.check_pin(KEY, old, "654321", FAST).ok


def test_a_card_made_before_keyed_pins_still_opens_and_is_upgraded(app: Flask) -> None:
    make_card()
    db.session.execute(update(Card).values(password_hash=hasher().hash(PIN)))  # as issued before
    db.session.commit()
    assert stored_hash().startswith("$argon2id$")
    assert not authenticate(CARD, "000000").ok
    assert stored_hash().startswith("$argon2id$")  # a wrong PIN changes nothing
    assert authenticate(CARD, PIN).ok
    assert pins.is_keyed(stored_hash())
    assert authenticate(CARD, PIN).ok  # and opens under its keyed form


def test_a_database_copied_without_the_key_verifies_no_pin(
    app: Flask, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same database and card key, another PIN key: the right PIN is refused like a wrong one,
    and the log names both key ids (never a key), so the operator sees why."""
    make_card()
    stored = stored_hash()
    with site_for_tests(database, HEYON_PIN_KEY="a-key-that-is-not-the-site's"), caplog.at_level(logging.ERROR):
        refused = authenticate(CARD, PIN)
        assert refused.refused == "credentials"
    assert "card PIN hash made under key" in caplog.text
    assert pins.key_id(app.extensions["heyon.pin_key"]) in caplog.text
    assert authenticate(CARD, PIN).ok  # the site with its key still opens it
    assert stored_hash() == stored


def test_the_pin_key_comes_from_the_setting_or_its_file(database: str, tmp_path: Path) -> None:
    key_file = tmp_path / "pin.key"
    key_file.write_text("from-a-file\n", encoding="utf-8")
    with site_for_tests(database, HEYON_PIN_KEY_FILE=str(key_file)) as site:
        assert site.extensions["heyon.pin_key"] == b"from-a-file"
    with site_for_tests(database, HEYON_PIN_KEY="from-the-environment") as site:
        assert site.extensions["heyon.pin_key"] == b"from-the-environment"


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({"HEYON_PROVIDERS": ("alipay",)}, True),
        ({"HEYON_PROVIDERS": ("alipay",), "HEYON_PIN_KEY": "its-own-key"}, False),
        ({"HEYON_PROVIDERS": ("sandbox",)}, False),  # `make run`: the derived key is fine
    ],
)
def test_a_site_taking_payments_is_told_to_keep_its_own_pin_key(
    settings: dict[str, object], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    assert warn_of_a_derived_pin_key({"SECRET_KEY": "s", **settings}) is warned
    assert ("HEYON_PIN_KEY is not set" in caplog.text) is warned


def test_parallel_wrong_guesses_each_use_an_attempt_up(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyed PIN is checked inside the throttle's one write transaction: guesses sent at once
    are counted one after the other under its lock, and no more are checked than one by one."""
    import threading

    from heyon_site.cards import auth

    make_card()
    db.session.commit()
    free = app.config["HEYON_CARD_FREE_ATTEMPTS"]
    checked: list[str] = []
    real = pins.check_pin

    def counting(*args: object) -> pins.PinCheck:
        checked.append("check")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "check_pin", counting)
    start, answers = threading.Barrier(12), []

    def guess(n: int) -> None:
        with app.app_context():
            start.wait()
            answers.append(authenticate(CARD, f"{n:06d}").refused)
            db.session.remove()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(100, 112)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 12 and None not in answers
    assert len(checked) == free + 1  # the one past the free tries sets the wait for all the rest
    assert answers.count("credentials") == free + 1 and answers.count("throttled") == 12 - free - 1


def test_a_right_pin_with_no_failures_behind_it_writes_no_throttle_row(app: Flask) -> None:
    """The usual sign-in (a keyed PIN, nothing counted against the card) reads the throttle and
    writes nothing to it; a wrong one is counted as before."""
    make_card()
    db.session.commit()
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert authenticate(CARD, PIN).ok
        assert not [s for s in statements if "login_throttles" in s and not s.lstrip().startswith("SELECT")]
        assert authenticate(CARD, "000000").refused == "credentials"
        assert any(s.lstrip().startswith("INSERT INTO login_throttles") for s in statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert db.session.query(LoginThrottle).count() == 1
