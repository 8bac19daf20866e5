"""The migrations against databases that hold data, as a deployed site's do, on both databases.

Every other test starts from an empty schema; these start at an older revision with cards,
orders, ledger entries and payments in it, upgrade, and check that nothing was lost.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from heyon_site.billing import ledger
from heyon_site.billing.cards import find_card, number_digest
from heyon_site.database import scratch_postgres
from heyon_site.extensions import db

from .conftest import BACKENDS, ROOT, site_for_tests

MIGRATIONS = str(ROOT / "migrations")
CARDS = {1: "8600000000001234", 2: "8611223344556677", 3: "1234567890"}  # 16, 16 and 10 digits


@pytest.fixture(params=BACKENDS)
def blank_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database with no schema at all, of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with scratch_postgres(os.environ["TEST_DATABASE_URL"], "heyon_migrate") as url:
        yield url


@pytest.fixture
def site(blank_url: str) -> Iterator[Flask]:
    with site_for_tests(blank_url) as app:
        yield app


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
    verdict = ledger.verify()
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


def test_the_card_number_migration_cannot_be_undone(site: Flask, capfd: pytest.CaptureFixture[str]) -> None:
    upgrade(directory=MIGRATIONS)
    with db.engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    with pytest.raises(SystemExit):  # Flask-Migrate logs the error and exits 1, as `flask db` does
        downgrade(directory=MIGRATIONS, revision="0008")
    assert "restore a backup made before it" in capfd.readouterr().err
    with db.engine.connect() as conn:  # one transaction: the later revisions' downgrades were undone too
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head


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
