"""Local stand-ins for payment providers' APIs, served on 127.0.0.1 in a thread.

Each provider's kit (``tests/provider_kits/``) builds a ``FakeApi`` with its own routes; the
site under test is configured with ``fake.base_url`` as the provider's API address, so no
test ever reaches a real provider.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

Handler = Callable[[Request], Response]


@dataclass
class FakeApi:
    """A tiny HTTP server: ``routes`` maps (method, path) to a handler; every request is kept in
    ``seen`` so a test can check what the site asked, and ``fail_next`` makes the next N
    requests answer 503 (the provider being down)."""

    routes: dict[tuple[str, str], Handler]
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    fail_next: int = 0
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict, start_response: Callable) -> object:  # type: ignore[type-arg]
        request = Request(environ)
        with self._lock:
            self.seen.append((request.method, request.path, request.get_data()))
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        if failing:
            return Response("unavailable", status=503)(environ, start_response)
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return Response("not found", status=404)(environ, start_response)
        return handler(request)(environ, start_response)


@contextmanager
def serving(api: FakeApi) -> Iterator[FakeApi]:
    """Serve ``api`` on a free port of 127.0.0.1 until the block ends."""
    server = make_server("127.0.0.1", 0, api, threaded=True)
    api.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        thread.join(5)
