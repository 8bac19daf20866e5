"""A real gunicorn on 127.0.0.1: started, waited for, stopped. Shared by the tests
(``tests.kit.live_site``) and the benchmarks (``bench/run.py``'s ``serving``), so both start,
watch and stop a server the same way. Nothing here imports the site: bench imports it before
the project is on the path of its workers.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveSite:
    url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def gunicorn(database_url: str, log: Path, env: dict[str, str], args: list[str], *, port: int | None = None,
             append_log: bool = False, stop_seconds: float = 15, up_seconds: float = 30) -> Iterator[LiveSite]:
    """``python -m gunicorn -b 127.0.0.1:PORT ARGS`` run from the project root with ``env`` (the
    whole environment), its output in ``log``; yielded once /healthz answers 200, and stopped
    afterwards (SIGTERM to its process group, SIGKILL after ``stop_seconds``)."""
    port = port or free_port()
    with log.open("ab" if append_log else "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", *args],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    site = LiveSite(f"http://127.0.0.1:{port}", database_url, proc, log)
    try:
        wait_until_up(site, up_seconds)
        yield site
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_until_up(site: LiveSite, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if site.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited (log: {site.log}): " + site.log_text()[-2000:])
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(site.url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not come up (log: {site.log}): " + site.log_text()[-2000:])
