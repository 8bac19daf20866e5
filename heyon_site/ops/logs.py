"""Structured logs: one line per event, each tagged with the id of the request it belongs to.

``HEYON_LOG_FORMAT=json`` (the default) writes one JSON object per line, ASCII only, so no
message, path or traceback can ever start a second line or forge one; ``text`` writes the same
fields for a person at a terminal, control characters escaped. The app writes the access line
itself (``RequestLog``): it knows the request id, and gunicorn's access log is switched off
(``gunicorn_logconfig``) so each request is logged once.

What never reaches a log: card passwords and keys are never passed to a logger; SQL parameters
are hidden from database errors (``hide_parameters``), and SQLAlchemy's statement and row echo
stays off whatever the level, because rows hold card numbers and password hashes. As a last
guard every message, path and traceback has card-number-like digit runs masked to the last four,
and phone numbers and e-mail addresses (customers' personal data) as ``mask_contact`` shows them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the standard library at run time: gunicorn.conf.py loads this file in the master
    from flask import Flask

REQUEST_ID_HEADER = "X-Request-ID"
# An id from upstream (a proxy's $request_id, a load balancer's UUID) is kept only when it is
# plainly an id: it goes into every log line and back out as a header.
_INCOMING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")
_request_id: ContextVar[str | None] = ContextVar("heyon_request_id", default=None)

access_log = logging.getLogger("heyon_site.access")
# Probed every few seconds by load balancers and Prometheus: at INFO they would drown the
# customers' requests, so they are logged at DEBUG.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Held at WARNING whatever HEYON_LOG_LEVEL says. sqlalchemy.engine writes statements and table
# rows (card numbers, password hashes) at INFO and DEBUG; alembic announces its plugins at INFO
# in every worker that imports it; urllib3 writes every request line at DEBUG, and WeChat's
# sign-in API takes the official account's secret in its query string.
QUIET_LOGGERS = ("sqlalchemy.engine", "alembic.runtime.plugins", "urllib3.connectionpool")


def current_request_id() -> str | None:
    return _request_id.get()


def request_id_from(header: str | None) -> str:
    """The upstream id when it is a well-formed one, else a new random one."""
    if header and _INCOMING_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


# ------------------------------------------------------------------ masking

_DIGIT_RUN = re.compile(r"(?<!\d)\d{10,19}(?!\d)")  # card numbers have 10 to 19 digits


def _is_order_no(digits: str, today: date) -> bool:
    """Order numbers (``billing.recharge.new_order_no``) are 16 digits, the recent date first;
    support needs them in the logs, so they are the one digit run of that length left alone."""
    if len(digits) != 16 or not digits.isascii():
        return False
    try:
        day = date(2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return False
    return today - timedelta(days=3660) <= day <= today + timedelta(days=1)


def mask_card_numbers(text: str) -> str:
    if not _DIGIT_RUN.search(text):
        return text
    today = datetime.now(UTC).date()
    return _DIGIT_RUN.sub(lambda m: m[0] if _is_order_no(m[0], today) else "****" + m[0][-4:], text)


def mask_contact(value: str) -> str:
    """A phone number or e-mail address as logs and staff lists show it: enough to tell two apart
    (the last four digits; the first letter and the domain), not enough to reach the person."""
    if "@" in value:
        name, _, domain = value.rpartition("@")
        return f"{name[:1]}***@{domain}"
    digits = [c for c in value if c.isdigit()]
    return "****" + "".join(digits[-4:]) if len(digits) > 4 else "****"


# An e-mail address as any log line might hold one; its domain is kept, like mask_contact's.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number written in international form ("+86 138-0013-8000"), or a Chinese mobile number
# in groups ("138 0013 8000"); eleven digits in one run are a card-like run and masked as such.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d(?:[ -]?\d){5,14}|1[3-9]\d[ -]\d{4}[ -]\d{4})(?![\w])")


def mask_contacts(text: str) -> str:
    """``text`` with every e-mail address and phone number in it masked (``mask_contact``)."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask_contact(m[0]), text)
    if "+" in text or " " in text or "-" in text:
        text = _PHONE.sub(lambda m: mask_contact(m[0]), text)
    return text


def mask_personal(text: str) -> str:
    """What every log line goes through: contacts, then card-number-like digit runs, masked."""
    return mask_card_numbers(mask_contacts(text))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: _ESCAPES.get(m[0]) or f"\\u{ord(m[0]):04x}", text)


# ------------------------------------------------------------------ formatters

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "request_id"}


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: mask_personal(v) if isinstance(v, str) else v
        for k, v in record.__dict__.items()
        if k not in _RECORD_ATTRS and not k.startswith("_")
    }


def _event(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any]:
    event: dict[str, Any] = {
        "timestamp": _timestamp(record.created),
        "level": record.levelname,
        "logger": record.name,
        "message": mask_personal(record.getMessage()),
    }
    rid = getattr(record, "request_id", None) or current_request_id()
    if rid:
        event["request_id"] = rid
    event.update(_extra(record))
    event["pid"] = record.process
    if record.exc_info:
        event["exception"] = mask_personal(formatter.formatException(record.exc_info))
    elif record.exc_text:
        event["exception"] = mask_personal(record.exc_text)
    if record.stack_info:
        event["stack"] = mask_personal(formatter.formatStack(record.stack_info))
    return event


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``ensure_ascii`` escapes every non-ASCII character too, so no
    log reader can take U+2028 or NEL in a message for a line break."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_event(self, record), ensure_ascii=True, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The same event for a terminal: ``time LEVEL logger [request id] message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        event = _event(self, record)
        head = [event.pop(k) for k in ("timestamp", "level", "logger")]
        rid = event.pop("request_id", "-")
        message = event.pop("message")
        trailer = [f"{k}={v}" for k, v in event.items() if k not in ("pid", "exception", "stack")]
        tail = [event[k] for k in ("exception", "stack") if k in event]
        return escape_controls(" ".join([*head, f"[{rid}]", message, *trailer, *tail]))


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def formatter_class(name: str) -> type[logging.Formatter]:
    try:
        return FORMATTERS[(name or "json").strip().lower()]
    except KeyError:
        raise ValueError(f"HEYON_LOG_FORMAT must be json or text, not {name!r}") from None


def configure(fmt: str = "json", level: str | int = "INFO") -> None:
    """Our formatter on the root logger's handlers, or one stderr handler; safe to call again.

    Under gunicorn the root handler exists already (``gunicorn_logconfig``): the worker's app
    gives it this module's formatter, the one that knows the request being served.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter_class(fmt)())
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def gunicorn_logconfig(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own messages (boot, worker timeouts) in our format on
    stderr, and its access log discarded because the app writes one line per request itself."""
    env = os.environ if env is None else env
    level = env.get("HEYON_LOG_LEVEL", "INFO").upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"heyon": {"()": formatter_class(env.get("HEYON_LOG_FORMAT", "json"))}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "heyon", "stream": "ext://sys.stderr"},
            "discard": {"class": "logging.NullHandler"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": ["discard"], "propagate": False},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


# ------------------------------------------------------------------ the request id and access line


def _stamp_request_id(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A record factory that notes the request id when the record is made: a handler may
    format it later (a queue, pytest's capture), after the request has ended."""

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.request_id = _request_id.get()
        return record

    make_record.heyon = True  # type: ignore[attr-defined]  # a marker on the function, read back by getattr below
    return make_record


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestLog:
    """WSGI middleware, outermost: gives every request its id (echoed as ``X-Request-ID``) and
    writes its access line once the app has built the response.

    ``duration_ms`` is the time to build the response; sending the body is the server's and the
    proxy's business. Logged before the body is sent, so a test client that never closes its
    response still gets its line, and the id never outlives its request.
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = _request_id.set(rid)
        started = time.perf_counter()
        status = [500]  # unless the app answers: an exception escaping it becomes gunicorn's 500

        def start(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(line[:3])
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            _log_access(environ, status[0], started)
            _request_id.reset(token)


def _log_access(environ: dict[str, Any], status: int, started: float) -> None:
    method = str(environ.get("REQUEST_METHOD", "-"))[:16]
    # WSGI hands the path over as latin-1; browsers send UTF-8. Never the query string.
    path = str(environ.get("PATH_INFO", "")).encode("latin-1", "replace").decode("utf-8", "replace")[:512]
    path = mask_personal(path)  # masked here, not only by the formatter: pytest's handlers see it too
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    access_log.log(
        level,
        "%s %s %s",
        method,
        path,
        status,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
    )


def init_app(app: Flask) -> None:
    """Before ``db.init_app``: the engine options below must be in place when the engine is made."""
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    # A database error's text would otherwise carry the statement's values: card numbers,
    # password hashes. The statement itself still shows what failed.
    options.setdefault("hide_parameters", True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    app.wsgi_app = RequestLog(app.wsgi_app)  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware
    if not getattr(logging.getLogRecordFactory(), "heyon", False):
        logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))
    formatter_class(app.config["HEYON_LOG_FORMAT"])  # a typo fails at start-up, tests included
    if not app.testing:  # tests capture logs with pytest's own handlers
        configure(app.config["HEYON_LOG_FORMAT"], app.config["HEYON_LOG_LEVEL"])
