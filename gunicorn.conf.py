"""gunicorn settings for production and for `make run`, overridable from the environment.

Threaded workers (gthread), not sync ones. A sync worker serves one connection from accept to
close: one client that connects and sends nothing (or trickles its headers, or keeps its
connection alive) holds the whole process until `timeout` kills it, and under `make run`, which
has one worker, that stopped the site for 30 s. A gthread worker serves from a pool of
threads: a new connection that sends nothing for 5 s goes back to the poller and costs a socket,
not a thread, and an idle kept-alive one waits there too. A client that sends part of a request
and stops does hold a thread until it finishes or goes away, so each worker has several: a few
such clients slow nobody else, and in production nginx (deploy/nginx/heyon.conf) buffers whole
requests before they reach gunicorn, with its own timeouts. argon2 and the database drivers
release the GIL while they work or wait, so the threads of one process share its CPU well.
"""

import os
from typing import Any


def _limits_in_process_memory() -> bool:
    """Per-IP limits switched on and kept in each process's memory (``memory://``, the default)."""
    enabled = os.environ.get("RATELIMIT_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
    return enabled and os.environ.get("RATELIMIT_STORAGE_URI", "memory://").startswith("memory://")


bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Several workers need limits every process shares (Redis). Without that, one worker: `make run`
# on a fresh machine stays exact, and the app would refuse more (see pre_fork).
workers = int(os.environ.get("WEB_CONCURRENCY") or (1 if _limits_in_process_memory() else 2))
worker_class = "gthread"
# A request that needs the database waits for one of the process's pooled connections
# (HEYON_DB_POOL_SIZE + HEYON_DB_MAX_OVERFLOW, 2 + 3 by default) for at most HEYON_DB_POOL_TIMEOUT
# seconds; requests are milliseconds long, so more threads than connections only queue briefly.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Idle kept-alive connections wait in the poller, not in a thread, for this many seconds.
keepalive = 5
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
# Recycle workers now and then so a slow leak never becomes an outage.
max_requests = 2000
max_requests_jitter = 200


def _log_config() -> dict[str, Any]:
    """The app's log lines (HEYON_LOG_FORMAT, HEYON_LOG_LEVEL) for gunicorn's own messages too,
    and no gunicorn access log: the app writes one line per request, with its request id and
    without the query string. heyon_site/ops/logs.py is loaded from its file, standard library only,
    rather than imported as part of the app, for the reason pre_fork gives."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heyon_site", "ops", "logs.py")
    spec = importlib.util.spec_from_file_location("heyon_gunicorn_logs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config: dict[str, Any] = module.gunicorn_logconfig()
    return config


logconfig_dict = _log_config()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


# No runtime control socket: the instances of one machine would share its default path, and
# a release needs no more than `systemctl reload` (HUP).
control_socket_disable = True


def _listen_url(listeners: Any, https: bool) -> str | None:
    """The base URL of the first TCP socket bound (0.0.0.0 and :: reached through loopback)."""
    import socket

    for listener in listeners:
        if listener.family == socket.AF_INET:
            host, port = listener.getsockname()[:2]
            host = "127.0.0.1" if host == "0.0.0.0" else host
        elif listener.family == socket.AF_INET6:
            host, port = listener.getsockname()[:2]
            host = "[::1]" if host == "::" else f"[{host}]"
        else:
            continue
        return f"{'https' if https else 'http'}://{host}:{port}"
    return None


def when_ready(server: Any) -> None:
    """Tell the workers (forked after this, in the master) where this server listens: the
    sandbox gateway posts its notification there when neither HEYON_SANDBOX_NOTIFY_URL nor
    HEYON_SITE_URL is set, never to the Host a request names."""
    url = _listen_url(server.LISTENERS, server.cfg.is_ssl)
    if url is None:  # Unix sockets only: the sandbox says why it sends nothing
        return
    os.environ["HEYON_LISTEN_URL"] = url
    if server.cfg.preload_app:  # built before the sockets were bound
        config = getattr(server.app.wsgi(), "config", None)
        if config is not None:
            config["HEYON_LISTEN_URL"] = url


def pre_fork(server: Any, worker: Any) -> None:
    """Tell each new worker how many processes serve the app: `-w` on the command line, a
    reload (HUP) or a TTIN signal included.

    create_app refuses per-process (``memory://``) rate limits in more than one process, and a
    worker that fails to boot stops gunicorn with its message. The app decides, not this file:
    only the app knows its final settings (a WSGI module may switch limits off in code), and
    importing it here, in the master, would keep old code across a graceful reload (HUP).
    """
    os.environ["HEYON_WORKERS"] = str(server.num_workers)


def on_starting(server: Any) -> None:
    if server.cfg.preload_app:  # the app was built in the master, before any fork: check it here
        from heyon_site.config import refuse_per_process_limits

        config = getattr(server.app.wsgi(), "config", None)
        if config is not None:
            refuse_per_process_limits({**config, "HEYON_WORKERS": server.cfg.workers})
