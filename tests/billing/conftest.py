"""Billing (heyon_site/billing) takes a SQLAlchemy Session and nothing of Flask: its tests run on a
plain Session over the migrated, empty ``database`` of each backend, with no application or app
context."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import has_app_context
from sqlalchemy import create_engine
from sqlalchemy.orm import Session


@pytest.fixture
def session(database: str) -> Iterator[Session]:
    engine = create_engine(database)
    try:
        with Session(engine) as s:
            yield s
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def no_app_context() -> Iterator[None]:
    """Holds the promise above: a billing test that reached for Flask would find no app context."""
    assert not has_app_context()
    yield
    assert not has_app_context()
