"""What staff may type, and where sign-in may send them back to.

Dates: staff type days and times in the site's time zone, and the site turns them into UTC
(promotion windows) or into UTC day boundaries (order searches). Python's datetime ends at the
years 1 and 9999, so a day at either end, moved by a zone's offset or by one day, leaves it and
the conversion fails. Only years 2000 to 2100 are accepted: every order and promotion falls in
them, any zone's offset (at most a day) stays far inside the datetime range and PostgreSQL's
timestamp range, and four-digit years keep SQLite's text timestamps sorting in time order.

Return paths: ``?next=`` comes from a link anyone can send. Only the path of a staff page of
this site is followed: printable ASCII (a line break would end the Location header, a space or
a control character has no business in a path), no other host, and a path the staff area
answers on GET.
"""

from __future__ import annotations

from datetime import date, datetime
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.routing.exceptions import RoutingException
from wtforms import DateTimeLocalField, Field
from wtforms.form import BaseForm
from wtforms.validators import InputRequired, ValidationError

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)
LOCAL_TIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]  # what datetime-local inputs send, and by hand
MAX_NEXT = 2000  # characters of a return path; a real one is a few dozen
STAFF_PREFIX = "/staff/"


def in_site_range(moment: date | datetime) -> bool:
    """Whether the site can convert this day or time (EARLIEST to LATEST, both inclusive)."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return EARLIEST <= day <= LATEST


class SiteDates:
    """WTForms validator for a date or datetime field: the day within EARLIEST to LATEST.
    An empty field passes (``Optional``/``InputRequired`` decide about that)."""

    def __init__(self) -> None:
        self.message = _l(
            "Enter a date from %(first)s to %(last)s.", first=EARLIEST.isoformat(), last=LATEST.isoformat()
        )

    def __call__(self, _form: BaseForm, field: Field) -> None:
        if isinstance(field.data, date) and not in_site_range(field.data):
            raise ValidationError(self.message)


def site_time_field(label: str) -> DateTimeLocalField:
    """A required time typed in the site's time zone, within the years the site converts."""
    return DateTimeLocalField(label, [InputRequired(_l("Required.")), SiteDates()], format=LOCAL_TIME_FORMATS)


def staff_page(target: str | None, url_map: Map) -> str | None:
    """``target`` if it is the path (and query) of a staff page of this site, else ``None``."""
    if not target or len(target) > MAX_NEXT or not target.startswith(STAFF_PREFIX):
        return None
    if any(not "!" <= ch <= "~" for ch in target) or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "//" in parts.path:
        return None
    try:
        endpoint, _ = url_map.bind("").match(parts.path, method="GET")
    except (HTTPException, RoutingException):  # not found, not a page, or a redirect to one
        return None
    return target if str(endpoint).startswith("staff.") else None
