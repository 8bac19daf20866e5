"""Fixtures in the flaskr manner: ``app``, ``client``, ``hx`` (an htmx client) and ``runner``.

Every test that takes ``app`` runs once per database: SQLite always, PostgreSQL when
``TEST_DATABASE_URL`` is set. The schema is built by the real migrations once per session;
each test then gets an empty database (a copied SQLite file, or truncated PostgreSQL tables).
"""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from heyon_site import create_app
from heyon_site.ops import logs
from heyon_site.database import scratch_postgres
from heyon_site.extensions import db

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_SECRET = "test-sandbox-secret"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])

TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key",
    "HEYON_PROVIDERS": ("sandbox",),
    "HEYON_SANDBOX_SECRET": SANDBOX_SECRET,
    # Where the sandbox gateway sends its notifications (tests collect them: the `app` fixture).
    "HEYON_SITE_URL": "http://heyon.test",
    "SERVER_NAME": "heyon.test",
    # Cheap argon2id for speed; the parameters live in each hash, so verification still works.
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_COST": 1024,
    "ARGON2_PARALLELISM": 1,
    "RATELIMIT_ENABLED": False,
    # Each test sees its own changes at once; tests/test_page_cache.py switches the cache on.
    "HEYON_PAGE_CACHE_SECONDS": 0,
}


def _migrate(url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
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


class ServerLikeClient(FlaskClient):
    """Runs every request in its own app context, as a real server does.

    The ``app`` fixture keeps one context pushed for the whole test (so tests can use the
    database directly), and Flask would reuse it for test requests: ``g`` would then carry
    Flask-Babel's locale and Flask-WTF's CSRF token from one request, or client, into the next.
    """

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        with self.application.app_context():
            return super().open(*args, **kwargs)


@contextmanager
def held(app: Flask) -> Iterator[Flask]:
    """``app`` as tests use it: its clients run each request as a server does, one app context
    is held for the test, and the engine is disposed of afterwards."""
    app.test_client_class = ServerLikeClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def site_for_tests(database: str, **overrides: Any) -> AbstractContextManager[Flask]:
    """The site on ``database`` with TEST_CONFIG and ``overrides``, held as tests use it."""
    return held(create_app({**TEST_CONFIG, "DATABASE_URL": database, **overrides}))


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


def new_client(app: Flask, htmx: bool = False) -> FlaskClient:
    """A fresh browser (its own cookies); with ``htmx``, one that asks as htmx does."""
    c = app.test_client()
    if htmx:
        c.environ_base["HTTP_HX_REQUEST"] = "true"
    return c


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return new_client(app)


@pytest.fixture
def hx(app: Flask) -> FlaskClient:
    return new_client(app, htmx=True)


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


def flask_cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `flask` command of this checkout against a database, as an operator would."""
    full_env = {**os.environ, "FLASK_APP": "wsgi", "DATABASE_URL": url, "SECRET_KEY": "test-secret-key",
                "HEYON_PROVIDERS": "sandbox", "HEYON_SANDBOX_SECRET": SANDBOX_SECRET, **(env or {})}
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------ the whole run's log

# Every card number and card password the tests type, the demo cards' included.
SUITE_SECRETS = ("8600000000001234", "246810", "8611223344556677", "97531864", "13572468",
                 "8600000000000101", "8600000000000119", "8600000000000127", "8600000000000135",
                 "8600000000000018", "135790", "8600000000000026", "246802", "8600000000000034", "112233")


def secrets_in(text: str) -> list[str]:
    """The secrets found as whole tokens: a PIN inside a longer run of digits or letters (a
    timestamp's microseconds, a request id) is not one."""
    return [s for s in SUITE_SECRETS if re.search(rf"(?<![0-9A-Za-z.]){s}(?![0-9A-Za-z])", text)]


@pytest.fixture(scope="session", autouse=True)
def suite_log() -> Iterator[None]:
    """Every record that reaches the root logger during the whole run (WARNING and up, and
    whatever a test lowers the level to with caplog), written as production writes it, is
    searched at the end for the test cards' numbers and passwords. tests/test_privacy.py checks
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
