"""Reads under a cardinality flood: how long each read route takes when clients made up 100,000
version names in one app, 100,000 failure breakdowns, or 100,000 app ids.

    python bench/cardinality.py                  # 100,000 of each, about three minutes to build
    python bench/cardinality.py --n 5000 --keep /tmp/flood   # smaller, and keep the databases
    python bench/cardinality.py --kinds failures # one flood only
    python bench/cardinality.py --keep /tmp/flood --reuse --beside   # ingest beside a read

Each database holds a real app (com.example.app: 50 devices on 1.0.0, 20 failures, a few days
of opens), then the flood: one install from its own device per made-up version (or app), or one
failure per made-up version, plugin version and OS version (update_fail and download_fail in
turn), as ingest stores it, folded by the fold. Each route is asked three times through the test
client; the best time is shown (the first also folds nothing: the databases are folded when
built).

With --beside, each database is served by a one-worker gunicorn (gunicorn.conf.py: a gevent
worker), and single-event POSTs are timed one after another for a few seconds, once alone and
once while another client asks the kind's heaviest read (HEAVY) over and over: under gevent a
read that held the event loop held every POST of the worker with it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from capgo_stats import fold  # noqa: E402
from capgo_stats.factory import create_app  # noqa: E402
from capgo_stats.protocol import COLUMNS, DAY_MS  # noqa: E402
from capgo_stats.store import SQLiteStore  # noqa: E402

APP = "com.example.app"
ROUTES = (
    "/stats/versions?app_id={app}",
    "/stats/health?app_id={app}",
    "/stats/adoption?app_id={app}",
    "/stats/failures?app_id={app}",
    "/stats/failures?app_id={app}&version=1.1.0",
    "/stats/summary?app_id={app}",
    "/stats/timeline?app_id={app}",
    "/metrics",
    "/?app_id={app}",
    "/",
)
KINDS = ("versions", "failures", "apps")
# The read each flood makes slowest: what --beside asks over and over beside the POSTs.
HEAVY = {"versions": "/?app_id={app}", "failures": "/?app_id={app}", "apps": "/metrics"}
BESIDE_S = 8  # seconds of POSTs, alone and beside the read


def row(
    at: int,
    device: str,
    app_id: str = APP,
    action: str = "set",
    version: str = "1.0.0",
    plugin: str = "8.0.0",
    os_version: str | None = None,
) -> tuple:
    """One event row in protocol.COLUMNS order, as ingest stores it."""
    values = dict.fromkeys(COLUMNS)
    values.update(
        at=at, received_at=at, device_ts=at, app_id=app_id, device_id=device, action=action,
        platform="android", version_name=version, is_emulator=0, is_prod=1,
        plugin_version=plugin, version_os=os_version, fingerprint=None,
    )  # fmt: skip
    return tuple(values[name] for name in COLUMNS)


def real_app(now: int) -> list[tuple]:
    """The app under the flood: 50 devices on 1.0.0 over a week, opens, 20 failures."""
    rows = []
    for i in range(50):
        at = now - 7 * DAY_MS + i * 3_600_000
        rows.append(row(at, f"real-{i}"))
        rows += [row(at + d * DAY_MS, f"real-{i}", action="app_moved_to_foreground")
                 for d in range(1, 7)]  # fmt: skip
        if i < 20:
            rows.append(row(at + 1000, f"real-{i}", action="update_fail", version="1.1.0"))
    return rows


def flood_row(i: int, kind: str, now: int) -> tuple:
    """The i-th made-up event of a flood of versions, failures or apps."""
    at, device = now - 60_000 + i, f"flood-{i}"
    if kind == "versions":
        return row(at, device, version=f"flood-{i}")
    if kind == "failures":
        action = "download_fail" if i % 2 else "update_fail"
        return row(at, device, action=action, version=f"flood-{i}", plugin=f"{i % 10}.{i}.0",
                   os_version=f"{i}.0")  # fmt: skip
    return row(at, device, app_id=f"flood.{i:06d}")


def build(path: Path, n: int, kind: str, now: int) -> None:
    """A folded database with the real app and a flood of n (kind: versions, failures, apps)."""
    store = SQLiteStore(str(path))
    store.ensure_schema()
    store.write(real_app(now), [], now)
    for start in range(0, n, 5000):
        flood = [flood_row(i, kind, now) for i in range(start, min(start + 5000, n))]
        store.write(flood, [], now)
    fold.catch_up(store)


def measure(path: Path) -> dict[str, float]:
    """The best of three times, in seconds, of each route on the database at path."""
    # No read limit: the whole read is what is timed, even past STATS_READ_TIMEOUT_MS.
    settings = {"STATS_DB": str(path), "STATS_FOLD_INTERVAL_S": 0, "STATS_READ_TIMEOUT_MS": 0}
    app = create_app({"TESTING": True, **settings})
    client = app.test_client()
    times = {}
    for route in ROUTES:
        url = route.format(app=APP)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            response = client.get(url)
            best = min(best, time.perf_counter() - start)
            assert response.status_code == 200, (url, response.status_code)
        times[url] = best
    return times


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    """One request on a new connection: (status, seconds until the whole answer was read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def timed_posts(port: int, seconds: float) -> list[float]:
    """Single-event POSTs one after another for `seconds`: the seconds each took."""
    took, deadline, i = [], time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        event = {"action": "app_moved_to_foreground", "app_id": APP, "device_id": f"beside-{i}",
                 "platform": "android", "version_name": "1.0.0", "version_build": "1.0",
                 "plugin_version": "8.51.14", "is_emulator": False, "is_prod": True}  # fmt: skip
        status, elapsed = request(port, "POST", "/stats", json.dumps(event).encode())
        assert status == 200, (status, i)
        took.append(elapsed)
        i += 1
    return took


def beside(path: Path, kind: str) -> dict[str, float]:
    """POST latency (ms) on a one-worker gunicorn, alone and beside a looping heavy read."""
    from bench.run import gunicorn

    # The POSTs write: the kept database stays as built. A folder of its own, so that no
    # write-ahead log of an earlier run sits beside the copy (SQLite would read it as its own).
    folder = Path(tempfile.mkdtemp(prefix="beside-"))
    copy = folder / path.name
    shutil.copyfile(path, copy)
    env = {"STATS_DB": str(copy), "WEB_CONCURRENCY": "1", "STATS_LOG_LEVEL": "WARNING"}
    env["STATS_READ_TIMEOUT_MS"] = "0"  # the read loops whole, however long it takes
    url, reads, stop = HEAVY[kind].format(app=APP), [], threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            status, elapsed = request(port, "GET", url)
            assert status == 200, (url, status)
            reads.append(elapsed)

    try:
        with gunicorn("app:create_app()", env) as (port, _):
            timed_posts(port, 0.5)  # warm-up: the worker's first requests, its first fold
            alone = timed_posts(port, BESIDE_S)
            reader = threading.Thread(target=read_loop)
            reader.start()
            try:
                time.sleep(0.2)  # the first read has started
                during = timed_posts(port, BESIDE_S)
            finally:
                stop.set()
                reader.join()
    finally:
        shutil.rmtree(folder)
    ms = lambda values, f: f(values) * 1000  # noqa: E731
    return {
        "alone p50": ms(alone, statistics.median), "alone max": ms(alone, max),
        "beside p50": ms(during, statistics.median), "beside max": ms(during, max),
        "posts beside": len(during), "read p50": ms(reads, statistics.median),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="made-up versions and apps")
    parser.add_argument("--keep", help="a folder to build the databases in and keep them")
    parser.add_argument("--reuse", action="store_true", help="measure databases kept before")
    parser.add_argument("--kinds", default=",".join(KINDS), help="floods to build, by comma")
    parser.add_argument("--beside", action="store_true", help="time POSTs beside a heavy read")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    folder = Path(args.keep or tempfile.mkdtemp(prefix="cardinality-"))
    folder.mkdir(parents=True, exist_ok=True)
    now = int(time.time() * 1000)
    results = {}
    try:
        for kind in kinds:
            path = folder / f"{kind}-{args.n}.db"
            if not (args.reuse and path.exists()):
                path.unlink(missing_ok=True)
                start = time.perf_counter()
                build(path, args.n, kind, now)
                print(f"built {path} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            results[kind] = beside(path, kind) if args.beside else measure(path)
    finally:
        if not args.keep:
            shutil.rmtree(folder)
    print(f"| route | {' | '.join(f'{args.n:,} {kind}' for kind in kinds)} |")
    print(f"|---|{'---:|' * len(kinds)}")
    for url in results[kinds[0]]:
        if args.beside:
            print(f"| {url} | {' | '.join(f'{results[kind][url]:,.0f}' for kind in kinds)} |")
            continue
        cells = [f"{results[kind][url] * 1000:.0f} ms" for kind in kinds]
        print(f"| `{url}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
