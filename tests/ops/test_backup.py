"""`flask db backup PATH`: a consistent copy of a SQLite database taken while it is written to;
PostgreSQL is sent to pg_dump."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from heyon_site import create_app
from heyon_site.billing.recharge import start_recharge
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import RechargeOrder

from tests.kit import TEST_CONFIG, flask_cli, site_for_tests
from tests.kit import cli, make_card, notification

MOST_ORDERS = 5000  # the writer stops here if the backup has not stopped it first


@pytest.fixture
def live_db(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """The site on a SQLite file of its own (a backup is a SQLite matter)."""
    path = tmp_path / "live.db"
    path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{path}"
    with site_for_tests(url) as app:
        yield app, url


def credited(url: str) -> int:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return int(conn.execute("SELECT count(*) FROM recharge_orders WHERE status = 'credited'").fetchone()[0])


class Writer(threading.Thread):
    """Recharges the card without pause: an order, then its signed sandbox notification."""

    def __init__(self, app: Flask, card_id: int) -> None:
        super().__init__(daemon=True)
        self.app, self.card_id = app, card_id
        self.stop, self.done, self.answers = threading.Event(), 0, set[str]()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with self.app.app_context():
                client = self.app.test_client()
                while not self.stop.is_set() and self.done < MOST_ORDERS:
                    placed = in_write_transaction(lambda: start_recharge(db.session, self.card_id, 1000, "sandbox", "en"))
                    fields = notification(placed.order_no, f"{placed.pay_fen / 100:.2f}")
                    self.answers.add(client.post("/pay/notify/sandbox", data=fields).get_data(as_text=True))
                    self.done += 1
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            self.error = exc


def test_a_backup_taken_while_recharging_is_a_consistent_snapshot(live_db: tuple[Flask, str], tmp_path: Path) -> None:
    app, url = live_db
    writer = Writer(app, make_card())
    writer.start()
    try:
        while writer.done < 20 and writer.is_alive():
            writer.stop.wait(0.01)
        before = credited(url)
        copy = tmp_path / "backups" / "heyon copy.db"  # a space, as operators' paths may have
        copy.parent.mkdir()
        result = flask_cli(url, "db", "backup", str(copy))
        after = credited(url)
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None and writer.answers == {"success"}
    assert result.returncode == 0 and f"backup written: {copy}" in result.stdout, result.stderr
    assert before < after  # the site kept crediting while the backup ran

    # The copy is a single self-contained file that passes every check, the books included ...
    assert not Path(f"{copy}-wal").exists()
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    verify = flask_cli(f"sqlite:///{copy}", "ledger", "verify")
    assert verify.returncode == 0 and verify.stdout.startswith("ledger ok:"), verify.stdout + verify.stderr
    # ... and is the database as it was at one moment: between the two counts, and every order
    # it holds is in the live database in the same state, or moved on from pending.
    in_copy = credited(f"sqlite:///{copy}")
    assert before <= in_copy <= after
    with sqlite3.connect(copy) as conn:
        snapshot = dict(conn.execute("SELECT order_no, status FROM recharge_orders"))
    db.session.rollback()
    now = {n: s for n, s in db.session.execute(select(RechargeOrder.order_no, RechargeOrder.status))}
    assert all(now[n] == s or s == "pending" for n, s in snapshot.items())


def test_a_backup_never_overwrites(live_db: tuple[Flask, str], tmp_path: Path) -> None:
    app, _ = live_db
    target = tmp_path / "taken.db"
    target.write_text("yesterday's backup")
    result = cli(app.test_cli_runner(), "db", "backup", str(target))
    assert result.exit_code == 1 and "exists already" in result.output
    assert target.read_text() == "yesterday's backup"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_postgresql_is_sent_to_pg_dump(tmp_path: Path) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": "postgresql://127.0.0.1:1/heyon"})  # never connected to
    result = cli(app.test_cli_runner(), "db", "backup", str(tmp_path / "x.db"))
    assert result.exit_code == 1 and "pg_dump -Fc" in result.output and "point-in-time" in result.output
    assert not (tmp_path / "x.db").exists()


def test_the_books_of_the_copy_are_the_books_of_the_original(live_db: tuple[Flask, str], tmp_path: Path) -> None:
    app, _ = live_db
    make_card(balance_fen=12345)
    copy = tmp_path / "copy.db"
    assert cli(app.test_cli_runner(), "db", "backup", str(copy)).exit_code == 0
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT sum(amount_fen) FROM ledger_entries").fetchone()[0] == 12345
        # The append-only triggers came along: the copy's ledger refuses changes too.
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("UPDATE ledger_entries SET amount_fen = 1")
    assert db.session.scalar(select(func.count()).select_from(RechargeOrder)) == 0
