"""Part of `make bench`: a batch of 100,000 vouchers made and exported in bounded time and memory.

Runs `flask vouchers create --count N --value 50 --expires ... --csv PATH` as an operator does, on a
fresh SQLite database and (with BENCH_DATABASE_URL or TEST_DATABASE_URL) a scratch PostgreSQL one,
for N = 10,000 and N = 100,000 (BENCH_VOUCHERS sets the larger). Measures the wall time and the
command's peak resident memory (the kernel's own count for that process, from wait4), and checks
the CSV: N rows, N different 16-digit PINs. Memory is bounded when ten times the vouchers costs
about the same memory: the PINs go to the file a chunk at a time, never all held at once.
Writes bench/results/vouchers-latest.md and .json; exits 1 when a target is missed.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
LARGE = int(os.environ.get("BENCH_VOUCHERS", "100000"))
SMALL = LARGE // 10
# Targets: the largest batch within a minute on this 2-core machine, and its peak memory at most
# 40 MB above that of a batch a tenth its size (a list of 100,000 PINs and digests alone would be
# about 25 MB of Python objects; the rows of one chunk are well under 2 MB).
TARGETS = {"seconds": 60.0, "extra_mb": 40.0}


@dataclass
class Run:
    backend: str
    count: int
    seconds: float
    peak_mb: float
    rows: int
    distinct_pins: int
    csv_bytes: int
    last_line: str


def env_for(database_url: str) -> dict[str, str]:
    return {**os.environ, "FLASK_APP": "wsgi", "DATABASE_URL": database_url, "SECRET_KEY": "bench-secret-key",
            "HEYON_PROVIDERS": "sandbox", "HEYON_SANDBOX_SECRET": "bench-sandbox-secret", "PYTHONUNBUFFERED": "1"}


def flask(database_url: str, *args: str) -> None:
    done = subprocess.run([PYTHON, "-m", "flask", *args], cwd=ROOT, env=env_for(database_url), capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def create(backend: str, database_url: str, count: int, folder: Path) -> Run:
    path = folder / f"{backend}-{count}.csv"
    expires = (date.today() + timedelta(days=365)).isoformat()
    args = [PYTHON, "-m", "flask", "vouchers", "create", "--count", str(count), "--value", "50", "--expires", expires,
            "--csv", str(path), "--note", "bench"]
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, env=env_for(database_url), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak memory, in KB on Linux
    seconds = time.perf_counter() - start
    out = (process.stdout.read() if process.stdout else "").strip().splitlines()
    err = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"vouchers create failed:\n{out}\n{err}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    pins = {r["pin"] for r in rows if len(r["pin"]) == 16 and r["pin"].isdigit()}
    return Run(backend, count, seconds, usage.ru_maxrss / 1024, len(rows), len(pins), path.stat().st_size,
               out[-1] if out else "")


def suite(backend: str, database_url: str, folder: Path) -> list[Run]:
    flask(database_url, "db", "upgrade")
    runs = []
    for count in (SMALL, LARGE):
        print(f"[{backend}] flask vouchers create --count {count:,}", file=sys.stderr, flush=True)
        runs.append(create(backend, database_url, count, folder))
    return runs


def judge(runs: list[Run]) -> list[tuple[str, str, bool]]:
    verdicts = []
    for backend in sorted({r.backend for r in runs}):
        small, large = (next(r for r in runs if r.backend == backend and r.count == n) for n in (SMALL, LARGE))
        verdicts.append((f"{backend}: {LARGE:,} vouchers made and exported in <= {TARGETS['seconds']:.0f} s",
                         f"{large.seconds:.1f} s", large.seconds <= TARGETS["seconds"]))
        extra = large.peak_mb - small.peak_mb
        verdicts.append((f"{backend}: peak memory for {LARGE:,} <= {TARGETS['extra_mb']:.0f} MB above {SMALL:,}",
                         f"{large.peak_mb:.0f} MB vs {small.peak_mb:.0f} MB (+{extra:.1f})",
                         extra <= TARGETS["extra_mb"]))
        for r in (small, large):
            whole = r.rows == r.count == r.distinct_pins and r.last_line.startswith("batch ")
            verdicts.append((f"{backend}: the CSV of {r.count:,} holds {r.count:,} different PINs, last line `batch N`",
                             f"{r.rows:,} rows, {r.distinct_pins:,} PINs, `{r.last_line}`", whole))
    return verdicts


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="heyon-bench-vouchers-") as tmp:
        folder = Path(tmp)
        runs += suite("sqlite", f"sqlite:///{tmp}/vouchers.db", folder)
        server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if server:
            from heyon_site.database import scratch_postgres

            with scratch_postgres(server, "heyon_bench_vouchers") as url:
                runs += suite("postgresql", url, folder)
    verdicts = judge(runs)
    lines = [f"# Voucher batches, {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"`flask vouchers create` on {os.cpu_count()} cores; peak memory is the command's own (wait4).", "",
             "| database | vouchers | seconds | vouchers/s | peak MB | CSV bytes |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.backend} | {r.count:,} | {r.seconds:.1f} | {r.count / r.seconds:,.0f} | {r.peak_mb:.0f} | "
              f"{r.csv_bytes:,} |" for r in runs]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'met' if ok else 'missed'} |" for t, m, ok in verdicts]
    report = "\n".join(lines) + "\n"
    (RESULTS / "vouchers-latest.md").write_text(report)
    (RESULTS / "vouchers-latest.json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": [asdict(r) for r in runs],
         "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in verdicts]}, indent=2))
    print(report)
    return 0 if all(ok for _, _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
