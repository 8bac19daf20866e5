"""Operator commands for cards and demo data (`flask cards ...`, `flask seed-demo`), through the real `flask`
command (`flask_cli`, a subprocess as an operator runs it) or the in-process runner where that is enough."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select, update

from heyon_site.billing import ledger
from heyon_site.cards.auth import authenticate
from heyon_site.cards.cli import DEMO_CARDS
from heyon_site.cards.numbers import number_digest
from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import AuditLog, Card
from tests.kit import CARD, PIN, balance, cli, flask_cli, make_card

AMOUNT = re.compile(r"\d+\.\d{2}")


def stored_cards() -> list[str]:
    """The cards in the database, as what they are found by (their numbers are not stored)."""
    db.session.rollback()
    return sorted(db.session.scalars(select(Card.number_digest)))


def cards_of(*numbers: str) -> list[str]:
    return sorted(number_digest(n) for n in numbers)


def write_csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "cards.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_create_and_show_through_the_real_command(database: str, app: Flask) -> None:
    created = flask_cli(database, "cards", "create", CARD, "--password", PIN, "--balance", "12.34")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"created card **** {CARD[-4:]} with balance 12.34"
    shown = flask_cli(database, "cards", "show", CARD)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [f"card:    **** {CARD[-4:]}", "status:  active", "balance: 12.34"]
    assert AMOUNT.findall(shown.stdout)[-1] == "12.34"  # scripts read the last amount
    assert CARD not in created.stdout + created.stderr + shown.stdout + shown.stderr  # only ever masked
    assert balance() == 1234 and ledger.verify(db.session).ok


def test_create_books_the_opening_balance_in_the_ledger(runner: FlaskCliRunner) -> None:
    assert cli(runner, "cards", "create", "8600 0000 0000 1234", "--password", PIN, "--balance", "¥1,280.50").exit_code == 0
    assert balance() == 128050
    verdict = ledger.verify(db.session)
    assert verdict.ok and verdict.entries == 1


def test_creating_the_same_card_twice_fails(runner: FlaskCliRunner) -> None:
    assert cli(runner, "cards", "create", CARD, "--password", PIN, "--balance", "1").exit_code == 0
    again = cli(runner, "cards", "create", CARD, "--password", "999999", "--balance", "500")
    assert again.exit_code == 1
    assert f"card **** {CARD[-4:]} exists already" in again.stderr
    assert stored_cards() == cards_of(CARD) and balance() == 100


@pytest.mark.parametrize("amount", ["12.345", "-1", "abc", "1e2", "NaN", "", "1,2.3.4"])
def test_a_bad_balance_is_refused_clearly(runner: FlaskCliRunner, amount: str) -> None:
    result = cli(runner, "cards", "create", CARD, "--password", PIN, f"--balance={amount}")
    assert result.exit_code == 2
    assert f"{amount!r} is not an amount like 12.34" in result.stderr
    assert stored_cards() == []


@pytest.mark.parametrize("number", ["123", "abc", "8600-0000-0000-12345678", "８６ab００００００００１２３４"])
def test_a_bad_number_is_refused_clearly(runner: FlaskCliRunner, number: str) -> None:
    result = cli(runner, "cards", "create", number, "--password", PIN, "--balance", "1")
    assert result.exit_code == 2
    assert "a card number has 10 to 19 digits" in result.stderr
    assert stored_cards() == []


@pytest.mark.parametrize("pin", ["123", "x" * 65])
def test_a_bad_password_is_refused_clearly(runner: FlaskCliRunner, pin: str) -> None:
    result = cli(runner, "cards", "create", CARD, "--password", pin)
    assert result.exit_code == 2 and "4 to 64 characters" in result.stderr
    assert stored_cards() == []


@pytest.mark.parametrize("number", ["8600000000009999", "not a number"])
def test_show_an_unknown_card_fails(runner: FlaskCliRunner, number: str) -> None:
    make_card()
    result = cli(runner, "cards", "show", number)
    assert result.exit_code == 1 and "no such card" in result.stderr


def test_unblock_sets_a_blocked_card_active(runner: FlaskCliRunner) -> None:
    card_id = make_card()
    in_write_transaction(lambda: db.session.execute(update(Card).where(Card.id == card_id).values(status="blocked")))
    result = cli(runner, "cards", "unblock", CARD)
    assert result.exit_code == 0 and result.stdout.strip() == f"card **** {CARD[-4:]} is active"
    assert "status:  active" in cli(runner, "cards", "show", CARD).stdout


def test_operators_card_changes_write_audit_rows(runner: FlaskCliRunner) -> None:
    """Cards made and unblocked on the command line are recorded like any staff change: who,
    what, and the money an opening balance brings into the books (never a whole card number)."""
    assert cli(runner, "cards", "create", CARD, "--password", PIN, "--balance", "12.34").exit_code == 0
    assert cli(runner, "cards", "unblock", CARD).exit_code == 0
    db.session.rollback()
    rows = [(a.action, a.username, a.target, a.after_summary)
            for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert rows == [("cards.issue", "(command line)", f"1 card(s): **** {CARD[-4:]}", "opening_balance=12.34"),
                    ("card.unblock", "(command line)", f"card **** {CARD[-4:]}", None)]


def test_unblock_with_a_bad_number_fails_cleanly(runner: FlaskCliRunner) -> None:
    result = cli(runner, "cards", "unblock", "12")
    assert result.exit_code != 0


GOOD_ROWS = ("8600000000000101,1111,1.00", "8600000000000102,2222,", "8600 0000 0000 0103,3333,１２．５０")


def test_import_a_csv_through_the_real_command(database: str, app: Flask, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "number,password,balance", *GOOD_ROWS)
    result = flask_cli(database, "cards", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported 3 card(s), total opening balance 13.50"
    imported = ("8600000000000101", "8600000000000102", "8600000000000103")
    assert stored_cards() == cards_of(*imported)
    assert [balance(n) for n in imported] == [100, 0, 1250]
    assert ledger.verify(db.session).ok


def test_import_without_a_balance_column(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "number,password", "8600000000000101,1111")
    assert cli(runner, "cards", "import", str(path)).exit_code == 0
    assert stored_cards() == cards_of("8600000000000101") and balance("8600000000000101") == 0


BAD_LINES = {
    "bad balance": ("8600000000000104,4444,12.345", "line 3: '12.345' is not an amount like 12.34"),
    "negative balance": ("8600000000000104,4444,-1", "line 3: '-1' is not an amount like 12.34"),
    "bad number": ("86000001,4444,1.00", "line 3: not a card number"),
    "short password": ("8600000000000104,44,1.00", "line 3: a card password has 4 to 64 characters"),
    "missing password": ("8600000000000104", "line 3: a card password has 4 to 64 characters"),
    "listed twice": ("8600000000000101,4444,1.00", "line 3: card **** 0101 is listed twice or exists already"),
    "exists already": (f"{CARD},4444,1.00", f"line 3: card **** {CARD[-4:]} is listed twice or exists already"),
}


@pytest.mark.parametrize(("bad_line", "message"), BAD_LINES.values(), ids=BAD_LINES.keys())
def test_one_bad_line_imports_nothing(runner: FlaskCliRunner, tmp_path: Path, bad_line: str, message: str) -> None:
    make_card(balance_fen=700)  # already there before the import
    path = write_csv(tmp_path, "number,password,balance", GOOD_ROWS[0], bad_line, GOOD_ROWS[2])
    result = cli(runner, "cards", "import", str(path))
    assert result.exit_code == 1
    assert message in result.stderr.splitlines()
    assert "1 line(s) refused; nothing imported" in result.stderr
    assert stored_cards() == cards_of(CARD) and balance() == 700
    assert ledger.verify(db.session).ok


def test_import_without_the_header_imports_nothing(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path, *GOOD_ROWS)
    result = cli(runner, "cards", "import", str(path))
    assert result.exit_code == 1 and "the first line must name the columns" in result.stderr
    assert stored_cards() == []


def test_the_error_names_the_file_line_even_after_a_blank_line(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "number,password,balance", GOOD_ROWS[0], "", "8600000000000104,4444,12.345")
    result = cli(runner, "cards", "import", str(path))
    assert "line 4: '12.345' is not an amount like 12.34" in result.stderr.splitlines()


def test_a_file_that_is_not_utf8_is_refused_cleanly(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_bytes("number,password,balance\n8600000000000101,密码1234,1.00\n".encode("gbk"))
    result = cli(runner, "cards", "import", str(path))
    assert result.exit_code == 1 and stored_cards() == []


def test_seed_demo_creates_the_demo_cards_once(runner: FlaskCliRunner) -> None:
    first = cli(runner, "seed-demo")
    assert first.exit_code == 0
    demo = cards_of(*(number for number, _, _ in DEMO_CARDS))
    assert stored_cards() == demo
    assert [balance(n) for n, _, _ in DEMO_CARDS] == [5000, 0, 128050]  # 50.00, 0.00, 1280.50
    second = cli(runner, "seed-demo")
    assert second.exit_code == 0
    assert second.stdout.splitlines() == [f"demo card **** {n[-4:]} exists" for n, _, _ in DEMO_CARDS]
    assert stored_cards() == demo
    verdict = ledger.verify(db.session)
    assert verdict.ok and verdict.entries == 2  # the 0.00 card has no opening entry


def test_seed_demo_passwords_open_the_cards(runner: FlaskCliRunner) -> None:
    cli(runner, "seed-demo")
    for number, pin, _ in DEMO_CARDS:
        assert authenticate(number, pin).ok, number
