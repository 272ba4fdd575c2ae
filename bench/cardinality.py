"""Reads under a cardinality flood: how long each read route takes when clients made up 100,000
version names in one app, 100,000 failure breakdowns, or 100,000 app ids.

    python bench/cardinality.py                  # 100,000 of each, about three minutes to build
    python bench/cardinality.py --n 5000 --keep /tmp/flood   # smaller, and keep the databases
    python bench/cardinality.py --kinds failures # one flood only

Each database holds a real app (com.example.app: 50 devices on 1.0.0, 20 failures, a few days
of opens), then the flood: one install from its own device per made-up version (or app), or one
failure per made-up version, plugin version and OS version (update_fail and download_fail in
turn), as ingest stores it, folded by the fold. Each route is asked three times through the test
client; the best time is shown (the first also folds nothing: the databases are folded when
built).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
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
    app = create_app({"TESTING": True, "STATS_DB": str(path), "STATS_FOLD_INTERVAL_S": 0})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="made-up versions and apps")
    parser.add_argument("--keep", help="a folder to build the databases in and keep them")
    parser.add_argument("--reuse", action="store_true", help="measure databases kept before")
    parser.add_argument("--kinds", default=",".join(KINDS), help="floods to build, by comma")
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
            results[kind] = measure(path)
    finally:
        if not args.keep:
            shutil.rmtree(folder)
    print(f"| route | {' | '.join(f'{args.n:,} {kind}' for kind in kinds)} |")
    print(f"|---|{'---:|' * len(kinds)}")
    for url in results[kinds[0]]:
        cells = [f"{results[kind][url] * 1000:.0f} ms" for kind in kinds]
        print(f"| `{url}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
