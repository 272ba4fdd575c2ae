"""The cost of the request log on the ingest hot path.

Three servers under bench/run.py's gunicorn settings (gunicorn.conf.py, 2 workers), each loaded
by wrk on loopback with bench/single.lua: bench/bare_app.py (the yardstick), POST /stats at
STATS_LOG_LEVEL=WARNING (no request line) and POST /stats at STATS_LOG_LEVEL=INFO (one line per
request, to a file). Rounds rotate the order. Prints the median requests/s, the workers' CPU time
per request (read from /proc: steadier than requests/s on a shared machine), and the in-process
cost of one line (Flask's test client, best of five loops). Bounded: rounds x 3 wrk runs of
--seconds each, on 127.0.0.1 only. Needs wrk and gunicorn, as bench/run.py does.

    python bench/request_log.py [--rounds 3] [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import bare_app  # noqa: E402
import run  # noqa: E402  (bench/run.py: gunicorn and wrk helpers)

from app import create_app  # noqa: E402
from support.payloads import SINGLE_ANDROID_7  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time these processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


@contextmanager
def stderr_to(path: Path):
    """Send this process's stderr (and so its children's) to a file for a while."""
    saved = os.dup(2)
    with open(path, "w") as file:
        os.dup2(file.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def measure(spec: str, env: dict, chdir: Path, seconds: int) -> tuple[float, float]:
    """Requests/s and worker CPU microseconds per request of one gunicorn + wrk run."""
    with run.gunicorn(spec, env, chdir=chdir) as (port, pids):
        before = cpu_seconds(pids)
        result = run.wrk(port, "single.lua", seconds)
        used = cpu_seconds(pids) - before
    assert result["non_2xx"] == 0, result
    return result["rps"], used / (result["rps"] * seconds) * 1e6


def per_request_us(client, body: bytes, n: int = 3000, repeats: int = 5) -> float:
    """The fastest of `repeats` loops of n POST /stats through a test client, in us each."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            client.post("/stats", data=body)
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def in_process(tmp: Path) -> dict[str, float]:
    """Microseconds per request through Flask's test client, logging to a file as deployed."""
    body = json.dumps(SINGLE_ANDROID_7).encode()
    timings = {"bare": per_request_us(bare_app.create_app().test_client(), body)}
    for level in ("WARNING", "INFO"):
        app = create_app({"STATS_DB": str(tmp / f"in-{level}.db"), "STATS_LOG_LEVEL": level})
        handler = logging.FileHandler(tmp / f"in-{level}.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("capgo_stats").handlers[:] = [handler]
        timings[level] = per_request_us(app.test_client(), body)
    return timings


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="length of one wrk run")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        local = in_process(tmp)
        servers = {
            "bare": ("bare_app:create_app()", {}, BENCH),
            "WARNING": ("app:create_app()", {"STATS_LOG_LEVEL": "WARNING"}, run.ROOT),
            "INFO": ("app:create_app()", {"STATS_LOG_LEVEL": "INFO"}, run.ROOT),
        }
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in servers}
        order = list(servers)
        for r in range(options.rounds):
            for label in order[r % 3 :] + order[: r % 3]:  # rotate: no server always goes last
                spec, env, chdir = servers[label]
                env = {**env, "STATS_DB": str(tmp / f"{label}-{r}.db")}
                with stderr_to(tmp / f"{label}-{r}.log"):
                    results[label].append(measure(spec, env, chdir, options.seconds))
        lines = (tmp / f"INFO-{options.rounds - 1}.log").read_text().count("capgo_stats.request")
    rps = {label: statistics.median(r for r, _ in runs) for label, runs in results.items()}
    cpu = {label: statistics.median(c for _, c in runs) for label, runs in results.items()}
    print("| server | req/s (median) | worker CPU us/request | in-process us/request |")
    print("|---|---|---|---|")
    for label in servers:
        print(f"| {label} | {rps[label]:.0f} | {cpu[label]:.0f} | {local[label]:.0f} |")
    print(f"\nrequest lines written in the last INFO run: {lines}")
    print(f"ingest / bare, req/s: {rps['WARNING'] / rps['bare']:.2f} without the request log,")
    print(f"  {rps['INFO'] / rps['bare']:.2f} with it")
    print(f"the request log costs {cpu['INFO'] - cpu['WARNING']:.0f} us of worker CPU per request")
    print(f"  ({(cpu['INFO'] - cpu['WARNING']) / cpu['WARNING']:.1%} of an ingest request), and")
    print(f"  {local['INFO'] - local['WARNING']:.0f} us in-process")


if __name__ == "__main__":
    main()
