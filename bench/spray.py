"""A password spray while a real customer uses the site (part of `make bench`, or alone:
`python bench/spray.py`).

Wrong PINs for random card numbers from SPRAY_ADDRESSES (default 1,000) addresses behind one
proxy hop (HEYON_PROXY_HOPS=1, X-Forwarded-For from the list), each address within its own
limits, at SPRAY_RATE (default 300) requests a second for SPRAY_SECONDS (default 60), on 2
gunicorn workers with the limits in Redis (SPRAY_REDIS_URL, default redis://127.0.0.1:6379/14).
Meanwhile a customer with a browser that opened its card before recharges and looks up its
balance, one of the two every second. Measured: the customer's p95 and any 5xx, the spray's
answers (only 4xx expected), each worker's resident memory, the rate actually sent.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import CSRF_TOKEN, DEMO_CARDS, OFFER, RESULTS, fetch, log, prepare_database, serving  # noqa: E402

ADDRESSES = int(os.environ.get("SPRAY_ADDRESSES", "1000"))
RATE = float(os.environ.get("SPRAY_RATE", "300"))
SECONDS = float(os.environ.get("SPRAY_SECONDS", "60"))
REDIS = os.environ.get("SPRAY_REDIS_URL", "redis://127.0.0.1:6379/14")
THREADS = 48
TARGETS = {"customer_p95_ms": 2000, "worker_rss_mb": 120}
CUSTOMER_ADDRESS = "198.51.100.7"
WARM_UP_ADDRESS = "198.51.100.8"
FORM_ID = re.compile(rb'name="form_id" type="hidden" value="([^"]+)"')


def addresses(n: int) -> list[str]:
    """n addresses from the documentation and benchmarking ranges (RFC 5737, RFC 2544)."""
    return [str(a) for a in itertools.islice(ipaddress.ip_network("198.18.0.0/15").hosts(), n)]


@dataclass
class Browser:
    """One browser's cookies and the form it loaded, behind one address."""

    address: str
    cookies: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        h = {"X-Forwarded-For": self.address}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return h

    def remember(self, set_cookie: str) -> None:
        # http.client folds several Set-Cookie headers into one, comma-joined; names are ours.
        for part in re.split(r",\s*(?=[A-Za-z_]+=)", set_cookie):
            name, _, rest = part.partition("=")
            if name.strip() and rest:
                self.cookies[name.strip()] = rest.split(";")[0]

    def get(self, base: str, path: str) -> bytes:
        r = fetch(base, "GET", path, headers=self.headers())
        if r.status != 200:
            raise RuntimeError(f"GET {path} from {self.address}: {r.status}")
        self.remember(r.headers.get("set-cookie", ""))
        return r.body

    def post(self, base: str, path: str, fields: dict[str, str]) -> int:
        r = fetch(base, "POST", path, urlencode(fields), self.headers())
        self.remember(r.headers.get("set-cookie", ""))
        return r.status


def token(page: bytes) -> str:
    match = CSRF_TOKEN.search(page)
    if not match:
        raise RuntimeError("no CSRF token on the form")
    return match.group(1).decode()


@dataclass
class Spray:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


@dataclass
class Customer:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=20)[-1] if len(self.latencies_ms) >= 2 else 0.0


def customer(base: str, stop: float) -> Customer:
    """A customer whose browser opened the card before: a recharge, then a balance lookup, one
    action a second (each form within its 30-a-minute limit)."""
    number, pin = DEMO_CARDS[0]
    # The card was opened on this phone before, on another network (so that lookup is not one of
    # this address's 30 a minute): the phone keeps the device cookie it got then.
    before = Browser(WARM_UP_ADDRESS)
    opened = before.post(base, "/balance", {"csrf_token": token(before.get(base, "/balance")), "card_number": number,
                                            "password": pin})
    if opened != 200:
        raise RuntimeError(f"the customer's card did not open before the spray: {opened}")
    me = Browser(CUSTOMER_ADDRESS, dict(before.cookies))
    result = Customer()
    second = 0
    while time.monotonic() < stop:
        due = time.monotonic() + 1
        t0 = time.perf_counter()
        if second % 2 == 0:
            page = me.get(base, "/recharge")
            offer, form_id = OFFER.search(page), FORM_ID.search(page)
            fields = {"csrf_token": token(page), "card_number": number, "password": pin, "amount": "100",
                      "custom_amount": "", "method": "sandbox", "offer": offer.group(1).decode() if offer else "",
                      "form_id": form_id.group(1).decode() if form_id else ""}
            status, what = me.post(base, "/recharge", fields), "recharge"
            ok = status == 303
        else:
            status = me.post(base, "/balance", {"csrf_token": token(me.get(base, "/balance")), "card_number": number,
                                                "password": pin})
            what, ok = "balance", status == 200
        result.latencies_ms.append((time.perf_counter() - t0) * 1000)
        result.statuses[f"{what} {status}" + ("" if ok else " (unexpected)")] += 1
        second += 1
        time.sleep(max(0.0, due - time.monotonic()))
    return result


def worker_pids(base: str) -> list[int]:
    """The gunicorn workers serving ``base``: processes started with its address whose parent
    was started with it too (the master)."""
    bind = base.removeprefix("http://")
    mine: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if bind.encode() in (proc / "cmdline").read_bytes():
                mine[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    return [pid for pid, parent in mine.items() if parent in mine]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(base: str, stop: float, peaks: dict[int, float]) -> None:
    while time.monotonic() < stop:
        for pid in worker_pids(base):
            try:
                peaks[pid] = max(peaks.get(pid, 0.0), rss_mb(pid))
            except OSError:
                pass
        time.sleep(0.5)


@dataclass
class Verdict:
    target: str
    measured: str
    met: bool


def run() -> tuple[Spray, Customer, dict[int, float], list[Verdict]]:
    import redis

    redis.Redis.from_url(REDIS).flushdb()  # this run's limits only (its own database number)
    env = {"HEYON_PROXY_HOPS": "1", "RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": REDIS}
    with tempfile.TemporaryDirectory(prefix="heyon-spray-") as tmp:
        url = f"sqlite:///{tmp}/spray.db"
        log(f"spray: {ADDRESSES} addresses, {RATE:.0f} requests/s for {SECONDS:.0f} s, 2 workers, limits in Redis")
        prepare_database(url)
        with serving(url, Path(tmp) / "gunicorn.log", extra_env=env, app="wsgi:app") as base:
            log("spray: opening the forms of every address")
            forms = _open_forms(base)
            # One clock for all three, started once the forms are open.
            stop = time.monotonic() + SECONDS
            peaks: dict[int, float] = {}
            found: dict[str, Customer] = {}
            watchers = [threading.Thread(target=lambda: found.setdefault("customer", customer(base, stop))),
                        threading.Thread(target=memory, args=(base, stop, peaks))]
            for t in watchers:
                t.start()
            result = _spray_with(base, forms, stop)
            for t in watchers:
                t.join()
    cust = found["customer"]
    server_errors = sum(n for k, n in cust.statuses.items() if k.split()[1].startswith("5"))
    spray_not_4xx = sum(n for s, n in result.statuses.items() if not 400 <= s < 500)
    worst = max(peaks.values(), default=0.0)
    verdicts = [
        Verdict(f"spray rate {RATE:.0f} requests/s", f"{result.rate:.0f}/s", result.rate >= RATE * 0.95),
        Verdict(f"customer p95 <= {TARGETS['customer_p95_ms'] / 1000:.0f} s under the spray",
                f"{cust.p95_ms:.0f} ms", cust.p95_ms <= TARGETS["customer_p95_ms"]),
        Verdict("customer: zero 5xx and every answer as expected",
                ", ".join(f"{k}: {n}" for k, n in sorted(cust.statuses.items())),
                server_errors == 0 and not any("unexpected" in k for k in cust.statuses)),
        Verdict("spray gets only 4xx", ", ".join(f"{s}: {n}" for s, n in sorted(result.statuses.items())),
                spray_not_4xx == 0),
        Verdict(f"worker resident memory <= {TARGETS['worker_rss_mb']} MB", f"{worst:.0f} MB",
                0 < worst <= TARGETS["worker_rss_mb"]),
    ]
    return result, cust, peaks, verdicts


def _open_forms(base: str) -> tuple[list[Browser], dict[str, str]]:
    browsers = [Browser(a) for a in addresses(ADDRESSES)]
    return browsers, {b.address: token(b.get(base, "/balance")) for b in browsers}


def _spray_with(base: str, forms: tuple[list[Browser], dict[str, str]], stop: float) -> Spray:
    browsers, tokens = forms
    result = Spray()
    lock = threading.Lock()
    schedule = itertools.count()
    start = time.monotonic()
    rng = random.Random(7)

    def worker() -> None:
        while True:
            with lock:
                i = next(schedule)
                number = "86" + "".join(rng.choice("0123456789") for _ in range(14))
                pin = f"{rng.randrange(10**6):06d}"
            due = start + i / RATE
            if due >= stop:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            b = browsers[i % len(browsers)]
            try:
                status = b.post(base, "/balance", {"csrf_token": tokens[b.address], "card_number": number,
                                                   "password": pin})
            except OSError:
                status = 0  # refused or reset: counted, and it is not a 4xx
            with lock:
                result.sent += 1
                result.statuses[status] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - start
    return result


def markdown(result: Spray, cust: Customer, peaks: dict[int, float], verdicts: list[Verdict]) -> str:
    lines = ["## Spray: wrong PINs from many addresses while a customer uses the site", "",
             f"{ADDRESSES} addresses, {result.sent} wrong PINs in {result.seconds:.0f} s ({result.rate:.0f}/s), "
             f"customer actions {len(cust.latencies_ms)}, customer median {statistics.median(cust.latencies_ms):.0f} ms"
             if cust.latencies_ms else "", "",
             "| target | measured | |", "|---|---|---|"]
    lines += [f"| {v.target} | {v.measured} | {'met' if v.met else 'missed'} |" for v in verdicts]
    lines += ["", "Worker peak resident memory: " + ", ".join(f"{mb:.0f} MB" for mb in sorted(peaks.values())), ""]
    return "\n".join(lines)


def main() -> int:
    result, cust, peaks, verdicts = run()
    report = markdown(result, cust, peaks, verdicts)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spray-latest.md").write_text(report)
    (RESULTS / "spray-latest.json").write_text(json.dumps({
        "addresses": ADDRESSES, "rate": RATE, "seconds": SECONDS, "sent": result.sent, "sent_rate": result.rate,
        "spray_statuses": {str(k): v for k, v in result.statuses.items()},
        "customer_statuses": dict(cust.statuses), "customer_p95_ms": cust.p95_ms,
        "customer_latencies_ms": cust.latencies_ms, "worker_peak_rss_mb": sorted(peaks.values()),
        "targets": [asdict(v) for v in verdicts]}, indent=2))
    print(report)
    for v in verdicts:
        print(f"{v.target}: {v.measured}: {'met' if v.met else 'missed'}")
    return 0  # like run.py: the figures and their verdicts are the result, not the exit status


if __name__ == "__main__":
    sys.exit(main())
