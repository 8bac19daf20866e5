"""The site's time: stored times are naive UTC (SQLite keeps no zone), and people read and type
them in the site's zone, ``HEYON_TIMEZONE``. Every conversion between the two is here.

A leaf beside ``database.py``: pages, staff screens, commands and receipts all use it, and it
uses nothing of theirs. Callers pass the zone (``zone(config)`` reads it once from the settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

DISPLAY = "%Y-%m-%d %H:%M:%S"


def zone(config: Mapping[str, Any]) -> ZoneInfo:
    """The site's time zone, from the settings."""
    return ZoneInfo(str(config["HEYON_TIMEZONE"]))


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A time as a person typed it in ``tz`` (naive), as stored: naive UTC."""
    return local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    """A stored time (naive UTC) as a person reads it in ``tz``, naive (for a form's field)."""
    return moment.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)


def shown(moment: datetime | None, tz: ZoneInfo) -> str:
    """A stored time as pages, receipts and commands print it; "" for none."""
    return "" if moment is None else to_local(moment, tz).strftime(DISPLAY)


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    """The calendar day in ``tz`` at a stored time."""
    return to_local(moment, tz).date()


def today(tz: ZoneInfo) -> date:
    """The calendar day it is now in ``tz``."""
    return datetime.now(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """Midnight at the start of ``day`` in ``tz``, as stored: naive UTC. A day is 23 or 25 hours
    where the zone keeps daylight saving, so day boundaries are computed, never added up."""
    return to_utc(datetime.combine(day, time()), tz)
