"""Configuration, read once from the environment.

Every setting has a safe embedded default (SQLite in ``instance/``, no payment provider) so
``flask`` commands work on a fresh checkout; production sets the environment variables the
README lists. Tests pass a dict of overrides to ``create_app``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def database_url(raw: str | None, instance_path: Path) -> str:
    """Normalise a database URL: default SQLite file, and psycopg 3 for ``postgresql://``.

    SQLAlchemy reads a bare ``postgresql://`` as psycopg2, which is not installed; the URL as an
    operator writes it (``postgresql:///heyon``) should still work.
    """
    if not raw:
        return f"sqlite:///{instance_path / 'heyon.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw not in (None, "") else default


# The promotion caps: (default, highest allowed). A bonus above the amount paid, or a discount of
# the whole amount, is never allowed (the schema's CHECKs say the same); the defaults are the
# business's own limits. billing.promos.PromoCaps holds them once read.
PROMO_CAPS = {"HEYON_PROMO_MAX_BONUS_PERCENT": (50, 100), "HEYON_PROMO_MAX_DISCOUNT_PERCENT": (30, 99)}


def promo_cap(name: str, raw: object) -> int:
    """A promotion cap as a whole percentage within its bounds; anything else stops start-up."""
    default, highest = PROMO_CAPS[name]
    if raw is None or raw == "":
        return default
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isascii() or not text.isdigit() or int(text) > highest:
        raise ValueError(f"{name} must be a whole percentage from 0 to {highest}, not {raw!r}")
    return int(text)


RECEIPT_PAPERS = ("58", "80", "a4")  # billing.receipts.PAPERS (tests/customer/test_order_pages.py holds them equal)


def receipt_paper(raw: str | None) -> str:
    """The paper a staff reprint starts with (the shop's printer): 58, 80 or a4; anything else
    stops start-up."""
    paper = (raw or "80").strip().lower()
    if paper not in RECEIPT_PAPERS:
        raise ValueError(f"HEYON_RECEIPT_PAPER must be one of {', '.join(RECEIPT_PAPERS)}, not {raw!r}")
    return paper


def check_promo_caps(config: Mapping[str, Any]) -> dict[str, int]:
    """The two caps as ints, for settings given by a test or a caller rather than the environment."""
    return {name: promo_cap(name, config.get(name)) for name in PROMO_CAPS}


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _base_url(env: dict[str, str], name: str) -> str:
    """An http(s) address such as https://pay.example.com (a trailing slash dropped), or ""."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{name} must be an http(s) address such as https://pay.example.com, not {raw!r}")
    return raw.rstrip("/")


# Each payment provider reads its own settings (``providers/<name>.py`` names them); they pass
# through from the environment as they are. Keys may be given as a value or as ``NAME_FILE``.
PROVIDER_SETTING_PREFIXES = ("HEYON_ALIPAY_", "HEYON_WECHAT_", "HEYON_STRIPE_")
# So do the channels of messages to customers (outbox/email.py, outbox/sms.py; README "Messages
# to customers"): SMTP, and the SMS provider with its keys and template codes.
MESSAGE_SETTING_PREFIXES = ("HEYON_SMTP_", "HEYON_SMS_", "HEYON_ALIYUN_", "HEYON_TWILIO_")


class MissingSetting(ValueError):
    """A provider lacks a setting; the message names the variable, never a value."""


def setting(config: Mapping[str, Any], name: str, required: bool = True) -> str:
    """``name`` from the configuration, or the contents of the file ``name + "_FILE"`` names
    (keys mounted as files stay out of the environment and out of ``ps``)."""
    value = config.get(name) or ""
    path = config.get(name + "_FILE") or ""
    if not value and path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MissingSetting(f"{name}_FILE cannot be read ({exc.strerror})") from None
    if required and not value:
        raise MissingSetting(f"{name} (or {name}_FILE) is not set")
    return str(value)


def _own_or_derived_key(config: Mapping[str, Any], name: str, label: bytes) -> bytes:
    """The key setting ``name`` (or its _FILE), or else one derived from SECRET_KEY for ``label``."""
    own = setting(config, name, required=False)
    if own:
        return own.encode()
    return hmac.new(str(config["SECRET_KEY"]).encode(), label, hashlib.sha256).digest()


def card_number_key(config: Mapping[str, Any]) -> bytes:
    """The HMAC key cards are found by (``cards.number_digest``): HEYON_CARD_KEY (or _FILE), or
    else one derived from SECRET_KEY.

    Every stored digest depends on it, so it must stay the same for the life of the database: with
    another key no card can be found, and the numbers cannot be re-hashed (they are not stored).
    Production sets its own so that SECRET_KEY can be rotated (which ends all sessions) freely.
    """
    return _own_or_derived_key(config, "HEYON_CARD_KEY", b"heyon card number digest key")


def card_pin_key(config: Mapping[str, Any]) -> bytes:
    """The key card PINs are checked with (``security.pins``): HEYON_PIN_KEY (or _FILE), or else
    one derived from SECRET_KEY. A database copied without it cannot test a single PIN, so it
    belongs where the database is not: a file only the site can read, the environment, a KMS.

    Like the card key it must stay the same while keyed PINs exist: with another key every card
    refuses its PIN (the log names both key ids) until the right key is back.
    """
    return _own_or_derived_key(config, "HEYON_PIN_KEY", b"heyon card pin key")


def voucher_pin_key(config: Mapping[str, Any]) -> bytes:
    """The key voucher PINs are kept under (``billing.vouchers.pin_digest``): derived from the card
    PIN key, so, like card PINs, a copy of the database without it cannot test a single one."""
    return hmac.new(card_pin_key(config), b"heyon voucher pin digest", hashlib.sha256).digest()


def card_number_digest(key: bytes, number: str) -> str:
    """What ``cards.number_digest`` holds for a normalised card number, under ``key``."""
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()


def _warn_of_a_derived_key(config: Mapping[str, Any], name: str, why: str) -> bool:
    """Log ``why`` when a site taking real payments leaves the key ``name`` to be derived from
    SECRET_KEY; True if it did."""
    real = any(provider != "sandbox" for provider in config.get("HEYON_PROVIDERS") or ())
    if real and not setting(config, name, required=False):
        logging.getLogger(__name__).warning(why)
        return True
    return False


def warn_of_a_derived_card_key(config: Mapping[str, Any]) -> bool:
    """Say so when a site taking real payments finds its cards by the key derived from SECRET_KEY:
    rotating SECRET_KEY would then make every card unfindable. A warning, not a refusal: setting a
    key of its own on a site whose cards already exist would be the very loss to avoid."""
    return _warn_of_a_derived_key(
        config,
        "HEYON_CARD_KEY",
        "HEYON_CARD_KEY is not set: cards are found by a key derived from SECRET_KEY, so SECRET_KEY "
        "must never change (README: Card numbers)",
    )


def warn_of_a_derived_pin_key(config: Mapping[str, Any]) -> bool:
    """The same for the key card PINs are checked with: derived from SECRET_KEY, it lives wherever
    SECRET_KEY does, and rotating SECRET_KEY would refuse every keyed PIN."""
    return _warn_of_a_derived_key(
        config,
        "HEYON_PIN_KEY",
        "HEYON_PIN_KEY is not set: card PINs are checked with a key derived from SECRET_KEY, so SECRET_KEY "
        "must never change and must be kept away from the database (README: Card passwords)",
    )


def from_environment(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings taken from ``env`` (``os.environ`` by default)."""
    env = dict(os.environ if env is None else env)
    return {
        **{k: v for k, v in env.items() if k.startswith(PROVIDER_SETTING_PREFIXES + MESSAGE_SETTING_PREFIXES)},
        "SECRET_KEY": env.get("SECRET_KEY"),
        # The key of the card-number digests (see card_number_key); set once, never changed.
        "HEYON_CARD_KEY": env.get("HEYON_CARD_KEY", ""),
        "HEYON_CARD_KEY_FILE": env.get("HEYON_CARD_KEY_FILE", ""),
        # The key card PINs are checked with (see card_pin_key); kept away from the database.
        "HEYON_PIN_KEY": env.get("HEYON_PIN_KEY", ""),
        "HEYON_PIN_KEY_FILE": env.get("HEYON_PIN_KEY_FILE", ""),
        "DATABASE_URL": env.get("DATABASE_URL"),
        "HEYON_PROVIDERS": _csv(env.get("HEYON_PROVIDERS", "")),
        "HEYON_SANDBOX_SECRET": env.get("HEYON_SANDBOX_SECRET", ""),
        # Where the sandbox gateway posts its notifications (the whole URL). Without it: the
        # notify path on HEYON_SITE_URL, else on HEYON_LISTEN_URL; never the Host a request names.
        "HEYON_SANDBOX_NOTIFY_URL": env.get("HEYON_SANDBOX_NOTIFY_URL", ""),
        # The site's public base address, e.g. https://pay.example.com.
        "HEYON_SITE_URL": _base_url(env, "HEYON_SITE_URL"),
        # The address this server listens on: gunicorn.conf.py sets it from the bound socket.
        "HEYON_LISTEN_URL": _base_url(env, "HEYON_LISTEN_URL"),
        # Refused provider callbacks (bad signature, malformed) per address, every provider's
        # endpoint together; past it the answer is 429 and nothing is written. Verified ones are
        # never counted or limited.
        "HEYON_CALLBACK_REFUSAL_LIMIT": env.get("HEYON_CALLBACK_REFUSAL_LIMIT", "10 per minute;100 per hour"),
        "HEYON_TIMEZONE": env.get("HEYON_TIMEZONE", "Asia/Shanghai"),
        "HEYON_PRESET_AMOUNTS": env.get("HEYON_PRESET_AMOUNTS", "50,100,200"),
        "HEYON_MIN_AMOUNT": env.get("HEYON_MIN_AMOUNT", "10"),
        "HEYON_MAX_AMOUNT": env.get("HEYON_MAX_AMOUNT", "2000"),
        "HEYON_ORDER_EXPIRY_MINUTES": _int(env, "HEYON_ORDER_EXPIRY_MINUTES", 120),
        # A payment that can never be credited (a second payment, a payment after the order
        # closed) is refunded by `flask payments reconcile` this long after it was verified, so
        # a person can still decide otherwise; 0: at the next run.
        "HEYON_AUTO_REFUND_MINUTES": _int(env, "HEYON_AUTO_REFUND_MINUTES", 30),
        # A voucher batch worth more than this many yuan in all is activated by two admins: one
        # asks, another approves (billing.vouchers.activate). 0: every batch.
        "HEYON_VOUCHER_TWO_ADMINS_ABOVE": env.get("HEYON_VOUCHER_TWO_ADMINS_ABOVE", "10000"),
        # Where `flask settlement run` archives the providers' raw statements (default: the
        # instance folder's settlements/); back it up with the database.
        "HEYON_SETTLEMENT_DIR": env.get("HEYON_SETTLEMENT_DIR", ""),
        # The largest invoice PDF staff may upload (bytes); it is kept in the database. The upload
        # route alone takes a body this much larger than MAX_CONTENT_LENGTH (web/pages.py).
        "HEYON_INVOICE_MAX_BYTES": _int(env, "HEYON_INVOICE_MAX_BYTES", 5 * 1024 * 1024),
        # A batch's CSV file is 37 bytes a voucher: 1 MiB holds the sheet's largest batch many times.
        "HEYON_VOUCHER_SHEET_MAX_BYTES": _int(env, "HEYON_VOUCHER_SHEET_MAX_BYTES", 1024 * 1024),
        # Messages to customers: tries before a message is given up into the dead letters.
        "HEYON_OUTBOX_MAX_TRIES": _int(env, "HEYON_OUTBOX_MAX_TRIES", 8),
        # Where SMS go: log (nothing is sent; the log shows it), aliyun or twilio (outbox/sms.py).
        "HEYON_SMS_PROVIDER": (env.get("HEYON_SMS_PROVIDER") or "log").strip().lower(),
        # What a promotion may give: a bonus at most this percent of the amount paid, a discount at
        # most this percent of the amount (billing.promos checks terms and clamps quotes to them).
        **{name: promo_cap(name, env.get(name)) for name in PROMO_CAPS},
        "HEYON_SUPPORT_PHONE": env.get("HEYON_SUPPORT_PHONE", "400-000-0000"),
        "HEYON_SUPPORT_EMAIL": env.get("HEYON_SUPPORT_EMAIL", "support@heyon.example"),
        "HEYON_SUPPORT_HOURS": env.get("HEYON_SUPPORT_HOURS", "09:00-21:00"),
        # The receipt paper staff reprints start with, and a receipt link without one: the shop's
        # printer (58 or 80 mm thermal roll, or A4).
        "HEYON_RECEIPT_PAPER": receipt_paper(env.get("HEYON_RECEIPT_PAPER")),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        # Keys in a shared Redis start with it, so one Redis can serve other sites too.
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX", "heyon"),
        # Processes serving the site on this machine: gunicorn.conf.py sets HEYON_WORKERS from its
        # worker count (`-w` included); other servers say it with WEB_CONCURRENCY.
        "HEYON_WORKERS": _int(env, "HEYON_WORKERS", _int(env, "WEB_CONCURRENCY", 1)),
        # Served only over HTTPS (TLS at the proxy): HSTS, and a session cookie only HTTPS sends.
        "HEYON_HTTPS": _bool(env, "HEYON_HTTPS", False),
        # PostgreSQL connections of each process; see engine_options().
        "HEYON_DB_POOL_SIZE": _int(env, "HEYON_DB_POOL_SIZE", 2),
        "HEYON_DB_MAX_OVERFLOW": _int(env, "HEYON_DB_MAX_OVERFLOW", 3),
        "HEYON_DB_POOL_RECYCLE": _int(env, "HEYON_DB_POOL_RECYCLE", 1800),
        "HEYON_DB_POOL_TIMEOUT": _int(env, "HEYON_DB_POOL_TIMEOUT", 10),
        "HEYON_IP_LIMIT": env.get("HEYON_IP_LIMIT", "30 per minute;300 per hour"),
        "HEYON_IP_FAILURE_LIMIT": env.get("HEYON_IP_FAILURE_LIMIT", "20 per hour"),
        # "Check payment now" on the order page asks the provider: per IP, and per order at most
        # once in HEYON_CHECK_INTERVAL_SECONDS whoever presses it.
        # Failed card logins across all cards (every worker and machine) above which the log
        # raises a card-number spraying alarm, once a minute.
        "HEYON_CARD_SPRAY_LIMIT": env.get("HEYON_CARD_SPRAY_LIMIT", "200 per minute"),
        # Voucher PINs that paid nothing, across the site, above which the log raises an alarm.
        "HEYON_VOUCHER_GUESS_LIMIT": env.get("HEYON_VOUCHER_GUESS_LIMIT", "30 per 10 minutes"),
        # Card-password checks from browsers that never opened that card, across every worker and
        # machine (the rate-limit storage); past it they wait a second, known browsers never do.
        "HEYON_PASSWORD_CHECK_BUDGET": env.get("HEYON_PASSWORD_CHECK_BUDGET", "100 per second"),
        "HEYON_CHECK_LIMIT": env.get("HEYON_CHECK_LIMIT", "6 per minute;60 per hour"),
        "HEYON_CHECK_INTERVAL_SECONDS": _int(env, "HEYON_CHECK_INTERVAL_SECONDS", 10),
        # How long each process keeps the rendered home page, recharge and balance forms and FAQ
        # (web/page_cache.py); a promotion or FAQ change shows there at most this late. 0: render
        # every time.
        "HEYON_PAGE_CACHE_SECONDS": _int(env, "HEYON_PAGE_CACHE_SECONDS", 5),
        "HEYON_PROXY_HOPS": _int(env, "HEYON_PROXY_HOPS", 0),
        "HEYON_STAFF_IDLE_MINUTES": _int(env, "HEYON_STAFF_IDLE_MINUTES", 30),
        # Logs: one JSON object per line (json), or the same fields for a terminal (text).
        "HEYON_LOG_FORMAT": env.get("HEYON_LOG_FORMAT", "json"),
        "HEYON_LOG_LEVEL": env.get("HEYON_LOG_LEVEL", "INFO"),
        # /metrics: with a token, only for `Authorization: Bearer <token>`; without, loopback and
        # private addresses only.
        "HEYON_METRICS_TOKEN": env.get("HEYON_METRICS_TOKEN", ""),
        "HEYON_METRICS_TOKEN_FILE": env.get("HEYON_METRICS_TOKEN_FILE", ""),
        # The network's charging systems that may call /api/v1 (heyon_site/api/auth.py):
        # comma-separated name:key pairs, or a file holding them; read once at start-up.
        "HEYON_USAGE_CLIENTS": env.get("HEYON_USAGE_CLIENTS", ""),
        "HEYON_USAGE_CLIENTS_FILE": env.get("HEYON_USAGE_CLIENTS_FILE", ""),
    }


# What HEYON_HTTPS switches on, besides the HSTS header (web/pages.py). A ``__Host-`` cookie is
# accepted by the browser only over HTTPS, for path /, without a Domain: no subdomain and no
# plain-HTTP page can set or overwrite it.
HTTPS_ONLY: dict[str, Any] = {
    "PREFERRED_URL_SCHEME": "https",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_NAME": "__Host-session",
}


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy's connection pool for PostgreSQL (SQLite keeps Flask-SQLAlchemy's defaults).

    A sync gunicorn worker serves one request at a time and so needs one connection; the rest is
    headroom. Each process may open pool_size + max_overflow connections, so the sum of that over
    every worker of every machine, plus the reconcile runs, must stay below the server's
    max_connections. Pre-ping replaces a connection the server or a firewall dropped while idle;
    recycle retires old ones; a request waits at most pool_timeout seconds for a connection,
    less than gunicorn's own timeout, so it fails with a clear error instead of being killed.
    """
    if not str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        return {}
    return {
        "pool_size": config["HEYON_DB_POOL_SIZE"],
        "max_overflow": config["HEYON_DB_MAX_OVERFLOW"],
        "pool_recycle": config["HEYON_DB_POOL_RECYCLE"],
        "pool_timeout": config["HEYON_DB_POOL_TIMEOUT"],
        "pool_pre_ping": True,
    }


class PerProcessLimits(RuntimeError):
    """Rate limits kept in each process's memory, in a site served by several processes."""


def refuse_per_process_limits(config: Mapping[str, Any]) -> None:
    """Refuse to start a site that takes real payments with per-IP limits in ``memory://`` and
    more than one process: each process would count on its own, and a limit of 5 would let 5
    times the workers through."""
    workers = int(config.get("HEYON_WORKERS") or 1)
    storage = str(config.get("RATELIMIT_STORAGE_URI") or "memory://")
    if not (workers > 1 and config.get("RATELIMIT_ENABLED", True) and storage.startswith("memory://")):
        return
    if all(name == "sandbox" for name in config.get("HEYON_PROVIDERS") or ()):
        # A demo or test site where no real money moves (only the sandbox, or no provider) may
        # run several workers without Redis, as `gunicorn -w 2 wsgi:app` always could; it is
        # told loudly. A site that takes real payments is refused below.
        logging.getLogger(__name__).warning(
            "per-IP rate limits are per process (%d processes, RATELIMIT_STORAGE_URI=%s); "
            "a site taking real payments refuses to start like this",
            workers,
            storage,
        )
        return
    raise PerProcessLimits(
        f"refusing to start: {workers} processes would each keep their own per-IP rate limits "
        f"(RATELIMIT_STORAGE_URI={storage}). Set RATELIMIT_STORAGE_URI=redis://... (shared by "
        "every process and machine), or serve with one worker, or set RATELIMIT_ENABLED=false "
        "to serve without per-IP limits."
    )


class SandboxBesideRealMoney(RuntimeError):
    """The sandbox gateway enabled on a site that takes real payments."""


def refuse_sandbox_beside_real_providers(config: Mapping[str, Any]) -> None:
    """Refuse to start a site that offers the sandbox next to a real payment provider. Anyone can
    "pay" on the sandbox's page, and its notification credits the card like a real payment: on a
    site that takes real money it would be a free recharge for whoever picks it."""
    names = tuple(config.get("HEYON_PROVIDERS") or ())
    real = [name for name in names if name != "sandbox"]
    if "sandbox" in names and real:
        raise SandboxBesideRealMoney(
            f"refusing to start: HEYON_PROVIDERS names the sandbox beside real payment providers "
            f"({', '.join(real)}). Anyone can pay on the sandbox's page, and its payments would credit "
            "real cards. Take sandbox out of HEYON_PROVIDERS on a site that takes real payments, and "
            "run it on a test site of its own."
        )


class Defaults:
    """Values that do not come from the environment."""

    SQLALCHEMY_TRACK_MODIFICATIONS = False
    # A 1 MB form is refused by Werkzeug with 413 before any view runs.
    MAX_CONTENT_LENGTH = 64 * 1024
    MAX_FORM_MEMORY_SIZE = 64 * 1024
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = 6 * 3600
    BABEL_DEFAULT_LOCALE = "zh_Hans"
    BABEL_TRANSLATION_DIRECTORIES = str(PROJECT_ROOT / "translations")
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_STRATEGY = "moving-window"
    # Redis unreachable: limit with each process's memory until it answers again, rather than
    # answer 500 to every limited form (the card and staff throttles are in the database anyway).
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # argon2id parameters (RFC 9106, second recommended option); tests lower them.
    ARGON2_TIME_COST = 3
    ARGON2_MEMORY_COST = 64 * 1024
    ARGON2_PARALLELISM = 2
    # Card password throttle (security/throttle.py), per card number and device: unknown devices share
    # one count, each browser that opened the card before has its own. Free attempts, then
    # doubling delays up to the cap (at most 37 failures in the first day, 24 a day after);
    # after HEYON_CARD_LOCK_AFTER consecutive failures that count is locked out for
    # HEYON_CARD_LOCKOUT_SECONDS (each later failure locks it again: one guess a day), never for
    # good. All known devices of a card share HEYON_CARD_DEVICE_ALLOWANCE failures, one coming
    # back every 24 h / allowance (at most twice it in any 24 h). README: the guessing bound.
    HEYON_CARD_FREE_ATTEMPTS = 3
    HEYON_CARD_MAX_DELAY_SECONDS = 3600
    HEYON_CARD_LOCK_AFTER = 100
    HEYON_CARD_LOCKOUT_SECONDS = 86400
    HEYON_CARD_DEVICE_ALLOWANCE = 30
    # Retry schedule of the sandbox gateway's notifications (seconds), shortened from Alipay's.
    HEYON_SANDBOX_RETRY_SCHEDULE = (0, 1, 2, 5, 15, 60)
    # Staff sign-in and second-factor throttles, per username and device as for cards: free
    # attempts, then doubling delays up to the cap; no lockout beyond the delays.
    HEYON_STAFF_FREE_ATTEMPTS = 5
    HEYON_STAFF_MAX_DELAY_SECONDS = 3600
    HEYON_STAFF_LOCK_AFTER: int | None = None
    HEYON_STAFF_LOCKOUT_SECONDS = 86400
    HEYON_STAFF_DEVICE_ALLOWANCE = 30
    # The device cookie (security/device_cookie.py): how long a browser stays known without a right
    # secret, and for how many cards or staff accounts at once.
    HEYON_DEVICE_COOKIE_DAYS = 365
    HEYON_DEVICE_COOKIE_ENTRIES = 5
    HEYON_PENDING_HELP_MINUTES = 30
    # Below this balance the balance page suggests recharging before service is cut off.
    HEYON_LOW_BALANCE_FEN = 1000


def configure(app: Flask, test_config: Mapping[str, Any] | None = None) -> None:
    """The app's settings: the defaults, then the environment, then a test's overrides; the
    start-up refusals; and what is derived from the settings once."""
    app.config.from_object(Defaults)
    app.config.update({k: v for k, v in from_environment().items() if v is not None})
    app.config.update(test_config or {})
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config.get("DATABASE_URL"), Path(app.instance_path))
    if not app.config.get("SECRET_KEY"):
        # Fine for `make run` on one machine; production sets SECRET_KEY (the README says so).
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))
    refuse_sandbox_beside_real_providers(app.config)
    refuse_per_process_limits(app.config)
    app.config.update(check_promo_caps(app.config))
    warn_of_a_derived_card_key(app.config)
    warn_of_a_derived_pin_key(app.config)
    # Once, at start-up: every card lookup needs it, and an unreadable HEYON_CARD_KEY_FILE stops
    # the site here rather than failing each lookup.
    app.extensions["heyon.card_key"] = card_number_key(app.config)
    app.extensions["heyon.pin_key"] = card_pin_key(app.config)
    app.extensions["heyon.voucher_key"] = voucher_pin_key(app.config)
    if app.config["HEYON_HTTPS"]:
        app.config.update(HTTPS_ONLY)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))


def _instance_secret(instance: Path) -> str:
    """A per-installation key kept in instance/, created once even when workers start together."""
    path = instance / "secret_key"
    if not path.exists():
        tmp = instance / f".secret_key.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: exactly one worker's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
