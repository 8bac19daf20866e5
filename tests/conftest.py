"""Fixtures in the flaskr manner: ``app``, ``client``, ``hx`` (an htmx client) and ``runner``.

Every test that takes ``app`` runs once per database: SQLite always, PostgreSQL when
``TEST_DATABASE_URL`` is set. The schema is built by the real migrations once per session;
each test then gets an empty database (a copied SQLite file, or truncated PostgreSQL tables).
"""
from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from heyon_site import create_app
from heyon_site.ops import logs
from heyon_site.database import scratch_postgres
from heyon_site.extensions import db
from tests.kit import BACKENDS, MIGRATIONS, TEST_CONFIG, new_client, secrets_in, site_for_tests


def _migrate(url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "template.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of our own on the server TEST_DATABASE_URL names, dropped at the end."""
    with scratch_postgres(os.environ["TEST_DATABASE_URL"], "heyon_test") as url:
        _migrate(url)
        yield url


APPEND_ONLY = ("ledger_entries", "audit_log")


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        # The ledger refuses TRUNCATE by design; tests set it aside for the reset only.
        # So does the audit log.
        for table in APPEND_ONLY:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        for table in APPEND_ONLY:
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of the parametrised kind."""
    if request.param == "sqlite":
        path = tmp_path / "heyon.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return url


# A database with no schema at all, for the tests that run the migrations themselves
# (tests/test_migrations.py, tests/promos/test_caps.py).


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


@pytest.fixture
def app(database: str) -> Iterator[Flask]:
    with site_for_tests(database) as app:
        sent: list[tuple[str, dict[str, str]]] = []
        # The sandbox gateway's notifications are collected here instead of sent over the network;
        # tests deliver them with `deliver_sandbox_notifications`.
        app.extensions["heyon.sandbox_sender"] = lambda url, fields, schedule: sent.append((url, dict(fields)))
        app.extensions["heyon.test_outbox"] = sent
        yield app


@pytest.fixture
def books_balance(app: Flask) -> Iterator[None]:
    """Whatever a test sends, the books must still prove afterwards (``ledger.verify``)."""
    from heyon_site.billing import ledger

    yield
    db.session.rollback()
    verdict = ledger.verify(db.session)
    assert verdict.ok, verdict.violations


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return new_client(app)


@pytest.fixture
def hx(app: Flask) -> FlaskClient:
    return new_client(app, htmx=True)


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


# ------------------------------------------------------------------ the whole run's log


@pytest.fixture(scope="session", autouse=True)
def suite_log() -> Iterator[None]:
    """Every record that reaches the root logger during the whole run (WARNING and up, and
    whatever a test lowers the level to with caplog), written as production writes it, is
    searched at the end for the test cards' numbers and passwords. tests/properties/test_privacy.py checks
    its own scenario at DEBUG, live servers included."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    written = stream.getvalue()
    leaked = secrets_in(written)
    lines = [line for line in written.splitlines() if secrets_in(line)]
    assert not leaked, f"{leaked} in the log of this run:\n" + "\n".join(lines[:10])
