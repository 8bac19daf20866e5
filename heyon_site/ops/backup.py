"""``flask db backup PATH``: a consistent copy of the SQLite database while the site writes to it.

It uses SQLite's online backup API (``sqlite3.Connection.backup``) in a single step: the whole
copy is made inside one read transaction, so it is the database exactly as one moment's commits
left it, and in WAL mode the writers carry on meanwhile. (Copied in several steps, a write by
another connection would restart the copy, which under steady traffic might never finish.)
``VACUUM INTO`` would also give a consistent copy, and a compacted one, but it rebuilds every
table and index while the read transaction is open; the backup API only copies pages.

The copy is written next to PATH under a temporary name, checked (``PRAGMA quick_check``),
switched to a single self-contained file (rollback journal, no ``-wal``), flushed to disk and
only then linked to PATH, so PATH is either absent or a complete, checked backup.

PostgreSQL is refused: ``pg_dump`` is its consistent online backup (README, "Backups").
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path
from urllib.request import pathname2url

import click
from flask import Flask

from heyon_site.extensions import db

POSTGRESQL_ADVICE = (
    "flask db backup copies SQLite databases only. For PostgreSQL use pg_dump, e.g. "
    'pg_dump -Fc -f heyon.dump "$DATABASE_URL" (a consistent snapshot while the site runs), '
    'or a base backup with WAL archiving for point-in-time recovery; see the README, "Backups".'
)


class BackupError(Exception):
    pass


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy the live database ``source`` to the new file ``target``; return its size in bytes."""
    if target.exists():
        raise BackupError(f"{target} exists already; give the backup a new name")
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    # mode=rw: never create an empty database where the real one was expected.
    live = sqlite3.connect(f"file:{pathname2url(str(source))}?mode=rw", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(partial)
        try:
            live.backup(copy)  # pages=-1: one step, one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            copy.close()
        if verdict != "ok":
            raise BackupError(f"the copy failed its check ({verdict}); the database itself may be damaged")
        with partial.open("rb+") as f:
            os.fsync(f.fileno())
        os.link(partial, target)  # never replaces a file that appeared meanwhile
        _fsync_dir(target.parent)
        return target.stat().st_size
    finally:
        live.close()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Copy the SQLite database to PATH, consistently, while the site runs (not PostgreSQL: pg_dump)."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite":
        raise click.ClickException(POSTGRESQL_ADVICE)
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        raise click.ClickException("an in-memory database cannot be backed up")
    try:
        size = backup_sqlite(Path(url.database), path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"backup failed: {exc}") from None
    click.echo(f"backup written: {path} ({size} bytes, check ok)")


def init_app(app: Flask) -> None:
    """Add ``backup`` to Flask-Migrate's ``db`` group, which every app of this project shares."""
    from flask_migrate.cli import db as db_group

    db_group.add_command(backup_command)
