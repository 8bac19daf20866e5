"""The migrations against databases that hold data, as a deployed site's do, on both databases.

Every other test starts from an empty schema; these start at an older revision with cards,
orders, ledger entries and payments in it, upgrade, and check that nothing was lost.
"""
from __future__ import annotations


import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from heyon_site.billing import ledger
from heyon_site.cards.numbers import find_card
from heyon_site.cards.numbers import number_digest
from heyon_site.extensions import db

from tests.kit import MIGRATIONS, site_for_tests

HEAD = ScriptDirectory(MIGRATIONS).get_current_head()
CARDS = {1: "8600000000001234", 2: "8611223344556677", 3: "1234567890"}  # 16, 16 and 10 digits


def books_at_0008() -> None:
    """Three cards with the money on them the way 0008's schema kept it: numbers in clear."""
    with db.engine.begin() as conn:
        for id_, number in CARDS.items():
            conn.execute(text("INSERT INTO cards (id, number, password_hash, status, balance_fen, created_at) "
                              "VALUES (:id, :number, 'argon2-hash', 'active', :fen, '2026-01-01 08:00:00')"),
                         {"id": id_, "number": number, "fen": 1000 * id_})
            conn.execute(text("INSERT INTO recharge_orders (id, order_no, token, card_id, provider, status, amount_fen, "
                              "pay_fen, bonus_fen, paid_fen, provider_txn_id, locale, created_at, updated_at, finalized_at) "
                              "VALUES (:id, :no, :token, :id, 'sandbox', 'credited', :fen, :fen, 0, :fen, :txn, 'zh', "
                              "'2026-01-01 08:00:00', '2026-01-01 08:01:00', '2026-01-01 08:01:00')"),
                         {"id": id_, "no": f"HY2026010100000{id_}", "token": f"token{id_}", "fen": 1000 * id_,
                          "txn": f"sandbox-{id_}"})
            conn.execute(text("INSERT INTO ledger_entries (card_id, order_id, kind, amount_fen, key, created_at) "
                              "VALUES (:id, :id, 'recharge', :fen, :key, '2026-01-01 08:01:00')"),
                         {"id": id_, "fen": 1000 * id_, "key": f"order:{id_}:recharge"})
            conn.execute(text("INSERT INTO payment_events (provider, provider_txn_id, kind, order_id, amount_fen, "
                              "outcome, created_at) VALUES ('sandbox', :txn, 'paid', :id, :fen, 'credited', "
                              "'2026-01-01 08:01:00')"), {"id": id_, "fen": 1000 * id_, "txn": f"sandbox-{id_}"})


def test_upgrading_a_site_with_cards_keeps_every_card_findable_and_drops_the_numbers(site: Flask) -> None:
    upgrade(directory=MIGRATIONS, revision="0008")
    books_at_0008()
    upgrade(directory=MIGRATIONS)

    for id_, number in CARDS.items():
        card = find_card(number)
        assert card is not None and (card.id, card.last4, card.balance_fen) == (id_, number[-4:], 1000 * id_)
    assert find_card("8600000000004321") is None
    columns = {c["name"] for c in inspect(db.engine).get_columns("cards")}
    assert "number" not in columns and {"number_digest", "last4"} <= columns
    with db.engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM cards")) for v in row)
    assert not [n for n in CARDS.values() if n in stored]
    verdict = ledger.verify(db.session)
    assert verdict.ok and (verdict.cards, verdict.credited_orders, verdict.total_fen) == (3, 3, 6000), verdict


def test_after_an_upgrade_foreign_keys_are_enforced_again(site: Flask) -> None:
    """SQLite migrates with foreign keys off (to copy tables); the pooled connection must not
    keep them off afterwards."""
    upgrade(directory=MIGRATIONS, revision="0008")
    books_at_0008()
    upgrade(directory=MIGRATIONS)
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("INSERT INTO ledger_entries (card_id, kind, amount_fen, key, created_at) "
                          "VALUES (999, 'adjustment', 1, 'orphan', '2026-01-01 00:00:00')"))


def version() -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def test_the_card_number_migration_cannot_be_undone(site: Flask, capfd: pytest.CaptureFixture[str]) -> None:
    upgrade(directory=MIGRATIONS)
    head = version()
    with pytest.raises(SystemExit):  # Flask-Migrate logs the error and exits 1, as `flask db` does
        downgrade(directory=MIGRATIONS, revision="0008")
    assert "restore a backup made before it" in capfd.readouterr().err
    assert version() == head  # the later steps down were undone with it: one transaction


def test_the_models_and_the_migrations_describe_the_same_schema(site: Flask) -> None:
    upgrade(directory=MIGRATIONS)
    with db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert differences == []


def test_the_digest_depends_on_the_card_key(app: Flask, database: str) -> None:
    """With its own HEYON_CARD_KEY, a site finds cards by another digest than with the default
    derived from SECRET_KEY; so the key must never change once cards exist (README)."""
    derived = number_digest(CARDS[1])
    with site_for_tests(database, HEYON_CARD_KEY="a-separate-card-key"):
        own = number_digest(CARDS[1])
    assert len(derived) == len(own) == 64 and derived != own and CARDS[1] not in derived + own


def test_0013_flags_the_credited_orders_whose_close_was_ignored(site: Flask) -> None:
    """Before 0013 a close of a credited order (a full refund at Alipay) was kept as an ignored
    'closed' event; the upgrade puts those orders in front of a person and keeps every row."""
    upgrade(directory=MIGRATIONS, revision="0008")
    books_at_0008()
    upgrade(directory=MIGRATIONS, revision="0009")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO payment_events (provider, provider_txn_id, kind, order_id, amount_fen, "
                          "outcome, created_at) VALUES ('sandbox', 'sandbox-2', 'closed', 2, 2000, 'ignored', "
                          "'2026-01-02 09:00:00')"))
    upgrade(directory=MIGRATIONS)

    with db.engine.connect() as conn:
        flags = conn.execute(text("SELECT id, attention, attention_at FROM recharge_orders ORDER BY id")).all()
        counts = conn.execute(text("SELECT kind, COUNT(*) FROM payment_events GROUP BY kind ORDER BY kind")).all()
    assert [(id_, reason, str(at)[:19] if at else None) for id_, reason, at in flags] == [
        (1, None, None), (2, "money_returned", "2026-01-02 09:00:00"), (3, None, None)]
    assert [tuple(row) for row in counts] == [("closed", 1), ("paid", 3)]
    verdict = ledger.verify(db.session)
    assert verdict.ok and (verdict.credited_orders, verdict.total_fen) == (3, 6000), verdict

    # The new kind is accepted, and anything else still refused by the database.
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO payment_events (provider, provider_txn_id, kind, order_id, amount_fen, "
                          "outcome, created_at) VALUES ('sandbox', 're-1', 'refunded', 1, 1000, 'refunded', "
                          "'2026-01-03 09:00:00')"))
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text("INSERT INTO payment_events (provider, provider_txn_id, kind, order_id, amount_fen, "
                          "outcome, created_at) VALUES ('sandbox', 're-2', 'reversed', 1, 1000, 'x', "
                          "'2026-01-03 09:00:00')"))


def test_0013_goes_back_to_0009_while_no_refund_is_on_record(site: Flask) -> None:
    upgrade(directory=MIGRATIONS)
    downgrade(directory=MIGRATIONS, revision="0009")
    columns = {c["name"] for c in inspect(db.engine).get_columns("recharge_orders")}
    assert not {"attention", "attention_at"} & columns
    upgrade(directory=MIGRATIONS)


def test_throttle_rows_made_before_0011_keep_throttling_and_resets_find_them(site: Flask) -> None:
    """0011 gives every throttle row its subject; the rows of 0009 (unknown devices' counts,
    keyed by the subject itself) get their own key, so the throttle in force survives the
    upgrade and `flask cards unblock` clears it. The staff copy of the throttle is dropped."""
    from heyon_site.cards.auth import authenticate, clear_throttle, hash_card_pin, throttle_key
    from heyon_site.database import in_write_transaction

    upgrade(directory=MIGRATIONS, revision="0009")
    with db.engine.begin() as conn:
        # The card as 0009 knew it, in SQL: today's model has columns that schema has not.
        conn.execute(text("INSERT INTO cards (number_digest, last4, password_hash, status, balance_fen, created_at) "
                          "VALUES (:digest, :last4, :hash, 'active', 0, '2026-01-01 08:00:00')"),
                     {"digest": number_digest(CARDS[1]), "last4": CARDS[1][-4:], "hash": hash_card_pin("246810")})
        conn.execute(text("INSERT INTO login_throttles (key, failures, blocked_until, updated_at) "
                          "VALUES (:key, 9, :until, '2026-01-01 08:00:00')"),
                     {"key": throttle_key(CARDS[1]), "until": "2999-01-01 00:00:00"})
        conn.execute(text("INSERT INTO staff_users (username, password_hash, role, active, session_version, "
                          "failed_logins, created_at, totp_required) VALUES ('alice', 'h', 'admin', :yes, 1, 3, "
                          "'2026-01-01 08:00:00', :no)"), {"yes": True, "no": False})
    upgrade(directory=MIGRATIONS)
    assert authenticate(CARDS[1], "246810").refused == "throttled"  # the old row still counts
    assert in_write_transaction(lambda: clear_throttle(CARDS[1])) == 1
    assert authenticate(CARDS[1], "246810").ok
    staff_columns = {c["name"] for c in inspect(db.engine).get_columns("staff_users")}
    assert "failed_logins" not in staff_columns and "blocked_until" not in staff_columns
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT username FROM staff_users")).scalar_one() == "alice"
    downgrade(directory=MIGRATIONS, revision="0009")
    assert "subject" not in {c["name"] for c in inspect(db.engine).get_columns("login_throttles")}
    assert "failed_logins" in {c["name"] for c in inspect(db.engine).get_columns("staff_users")}
    upgrade(directory=MIGRATIONS)


def test_callbacks_kept_before_0012_keep_their_body_and_get_no_digest(site: Flask) -> None:
    upgrade(directory=MIGRATIONS, revision="0009")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO provider_callbacks (provider, received_at, body, outcome) "
                          "VALUES ('sandbox', '2026-01-01 08:00:00', 'a=b', 'bad_signature')"))
    upgrade(directory=MIGRATIONS)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT provider, body, outcome, body_sha256, body_size FROM provider_callbacks")).all()
    assert [tuple(r) for r in rows] == [("sandbox", "a=b", "bad_signature", None, None)]
    downgrade(directory=MIGRATIONS, revision="0009")
    columns = {c["name"] for c in inspect(db.engine).get_columns("provider_callbacks")}
    assert "body_sha256" not in columns and "body_size" not in columns
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT body FROM provider_callbacks")).scalar_one() == "a=b"
