"""Password hashing: argon2id with the site's parameters, and the dummy hash that makes a miss cost the same."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from argon2 import PasswordHasher, Type
from flask import current_app

MAX_PASSWORD_LENGTH = 64


def normalise_password(text: str) -> str:
    """The PIN as printed: full-width characters from a Chinese IME become ASCII."""
    return unicodedata.normalize("NFKC", text or "").strip()


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)


def hasher() -> PasswordHasher:
    c = current_app.config
    return _hasher(c["ARGON2_TIME_COST"], c["ARGON2_MEMORY_COST"], c["ARGON2_PARALLELISM"])


@lru_cache(maxsize=4)
def dummy_hash(h: PasswordHasher) -> str:
    """A hash to verify against when there is no account, so a miss costs the same argon2 work."""
    return h.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return hasher().hash(normalise_password(password))
