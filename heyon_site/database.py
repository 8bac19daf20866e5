"""Transactions that behave the same on SQLite and PostgreSQL.

SQLite allows one writer. A deferred transaction that reads first and writes later fails at
once with "database is locked" when another writer got in between, whatever busy_timeout says;
so every transaction that will write starts with ``BEGIN IMMEDIATE`` (it waits for the lock up
to busy_timeout instead). pysqlite's own implicit transactions are switched off so the
``BEGIN`` we send is the one that counts. PostgreSQL runs at READ COMMITTED; the money code
uses conditional updates and ``ON CONFLICT`` so that is enough there.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar, cast

from sqlalchemy import CursorResult, Engine, Result, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.sql.dml import ReturningInsert

from heyon_site.extensions import Base, db

T = TypeVar("T")

#: The session the money code is handed: a Session, or Flask-SQLAlchemy's ``db.session`` (a
#: scoped_session that passes each call on to the current Session). Both are used the same way.
DbSession: TypeAlias = Session | scoped_session[Any]

#: An INSERT that has ``on_conflict_do_nothing`` and ``on_conflict_do_update``.
UpsertInsert: TypeAlias = postgresql.Insert | sqlite.Insert
_WRITE = "heyon_write"


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None  # we send BEGIN ourselves, below
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cur.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    if conn.dialect.name != "sqlite":
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def begin_write() -> None:
    """Start the session's transaction as a writer (``BEGIN IMMEDIATE`` on SQLite).

    Must come before the transaction's first statement: a transaction already begun is
    committed first, so call it at the top of a unit of work, never in the middle of one.
    """
    if db.session().in_transaction():
        db.session.commit()
    db.session.connection(execution_options={_WRITE: True})


def serialise_on(name: str) -> None:
    """Inside a write transaction: wait for, then hold until it ends, the one lock called
    ``name``, so transactions about the same thing run one after another even when no row of it
    exists yet to lock. SQLite needs nothing: ``BEGIN IMMEDIATE`` already holds the one write
    lock. PostgreSQL takes a transaction-scoped advisory lock on 64 bits of the name's hash."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(name.encode()).digest()
    db.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest[:8], "big", signed=True)})


def _transient(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock detected" in text or "could not serialize" in text


def in_write_transaction(work: Callable[[], T], attempts: int = 4) -> T:
    """Run ``work`` in a write transaction and commit it; retry on lock contention.

    ``work`` must be safe to run again (it is: every money step is guarded or keyed).
    """
    for attempt in range(1, attempts + 1):
        begin_write()
        try:
            result = work()
            db.session.commit()
            return result
        except OperationalError as exc:
            db.session.rollback()
            if attempt == attempts or not _transient(exc):
                raise
            time.sleep(0.05 * 2**attempt)
        except BaseException:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. Session.execute is typed to return a plain Result;
    for those statements it is a CursorResult, which has the count."""
    return cast(CursorResult[Any], result).rowcount


def insert(s: DbSession, model: type[Base]) -> UpsertInsert:
    """A dialect-specific INSERT for the database of ``s`` that supports ``on_conflict_do_nothing`` / ``_do_update``."""
    return _dialect_insert(s.get_bind().dialect.name, model)


def _dialect_insert(dialect: str, model: type[Base]) -> UpsertInsert:
    table = cast(Table, model.__table__)  # every model is declared with a Table
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database {dialect}")


def insert_unless_there(s: DbSession, model: type[Base], conflict: tuple[str, ...]) -> ReturningInsert[Any]:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING RETURNING id``, values given when executed
    (``s.execute(stmt, {...})``); None comes back for a row that was there. Built once per
    database kind and kept: the statements of crediting run on every payment, and building one
    (and its cache key) cost more than running it."""
    return _insert_unless_there(s.get_bind().dialect.name, model, conflict)


@functools.cache
def _insert_unless_there(dialect: str, model: type[Base], conflict: tuple[str, ...]) -> ReturningInsert[Any]:
    table = cast(Table, model.__table__)
    return _dialect_insert(dialect, model).on_conflict_do_nothing(index_elements=list(conflict)).returning(table.c.id)


@contextmanager
def scratch_postgres(server_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database of its own on the PostgreSQL server ``server_url`` names,
    dropped afterwards with whatever is still connected to it: for tests and benchmarks."""
    from sqlalchemy.engine import make_url

    from heyon_site.config import PROJECT_ROOT, database_url

    admin_url = make_url(database_url(server_url, PROJECT_ROOT))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
