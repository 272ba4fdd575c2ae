"""The whole benchmark in one command, on loopback, written into bench/RESULTS.md.

    python bench/run.py            # full run: about twenty minutes on 2 cores
    python bench/run.py --smoke    # tiny sizes, a few seconds each: shows the bench still works

Every figure is measured side by side in the same run and reported as a ratio as well, because
absolute numbers drift on shared machines. Needs wrk (Debian package `wrk`) and gunicorn.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from capgo_stats import protocol  # noqa: E402
from capgo_stats.store import SQLiteStore  # noqa: E402
from capgo_stats.store.sqlite import INSERT_EVENT  # noqa: E402
from capgo_stats.store.sqlite_migrations import SCHEMA  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(app_spec: str, env: dict, chdir: Path = ROOT) -> Iterator[tuple[int, list[int]]]:
    """Serve an app with gunicorn (gunicorn.conf.py) on loopback; yield its port and worker pids."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"),
        "--bind", f"127.0.0.1:{port}", "--chdir", str(chdir), app_spec,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # one request line each: it would drown the terminal
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"gunicorn did not start: {app_spec}")
        time.sleep(0.5)  # let every worker boot
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        yield port, [int(p) for p in workers]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def wrk(port: int, script: str, seconds: int, connections: int = 8) -> dict:
    """Run wrk against POST /stats; return requests/s and answers that were not 2xx."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(BENCH / script),
         f"http://127.0.0.1:{port}/stats"],
        env={**os.environ, "BENCH_TS": str(protocol.now_ms() - random.randrange(10**9))},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0, "socket": errors}


def rss_mib(pids: list[int]) -> float:
    """The largest resident memory among these processes, in MiB."""
    sizes = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
    return max(sizes)


# -- ingest ------------------------------------------------------------------------------------


# The apps the single-event figure compares, each served in every round: the bare route, ours,
# and ours with its storage cut down (bench/ceiling_app.py), which shows what is left for storage.
SINGLE_APPS = {
    "bare": ("bare_app:create_app()", BENCH),
    "ours": ("app:create_app()", ROOT),
    "storage off": ("ceiling_app:create_app('off')", BENCH),
    "one plain INSERT": ("ceiling_app:create_app('plain')", BENCH),
    "spool": ("ceiling_app:create_app('spool')", BENCH),
    "spool, plain WSGI": ("ceiling_app:create_app('spool-wsgi')", BENCH),
}


def ingest_single(rounds: int, seconds: int, tmp: Path) -> dict:
    """Single-event req/s of each app in SINGLE_APPS, alternating so drift hits all alike."""
    rps: dict[str, list[float]] = {name: [] for name in SINGLE_APPS}
    rss = 0.0
    for r in range(rounds):
        for name, (spec, chdir) in SINGLE_APPS.items():
            env = {"STATS_DB": str(tmp / f"single-{r}-{name.replace(' ', '-')}.db")}
            with gunicorn(spec, env, chdir=chdir) as (port, pids):
                result = wrk(port, "single.lua", seconds)
                if name == "ours":
                    rss = max(rss, rss_mib(pids))
            assert result["non_2xx"] == 0, (name, result)
            rps[name].append(result["rps"])
    ratios = {
        name: statistics.median(o / b for o, b in zip(values, rps["bare"], strict=True))
        for name, values in rps.items()
    }
    return {"rps": rps, "ratio": ratios, "rss": rss}


def bench_rows(n: int, base_ts: int) -> list[tuple]:
    """The rows batch.lua's events become, validated as the server would."""
    actions = ["app_moved_to_foreground", "app_moved_to_background", "download_complete", "set",
               "app_launch_ready"]  # fmt: skip
    now = protocol.now_ms()
    rows = []
    for i in range(1, n + 1):
        event = {
            "action": actions[i % 5], "app_id": "com.bench.app",
            "device_id": f"0f673663-459a-44c0-a7f5-{i % 5000:08d}", "platform": "android",
            "custom_id": "", "version_name": "1.2.3", "version_build": "1.2.0",
            "version_code": "12", "version_os": "14", "plugin_version": "8.51.14",
            "is_emulator": False, "is_prod": True, "defaultChannel": "",
            "old_version_name": "1.2.2", "timestamp": base_ts - i,
        }  # fmt: skip
        rows.append(protocol.validate(event, protocol.KNOWN_ACTIONS, now))
    return rows


def executemany_rate(rows: list[tuple], path: Path, rollups: bool = True) -> float:
    """Rows/s for raw sqlite3 executemany, 200 rows per transaction, on our schema and pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA.read_text())
    if not rollups:
        conn.execute('DROP TRIGGER "event#rollup"')
    start = time.perf_counter()
    for i in range(0, len(rows), 200):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_EVENT, rows[i : i + 200])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def ingest_batch(seconds: int, n_raw: int, tmp: Path) -> dict:
    """200-event batches through gunicorn vs raw executemany of the same rows, one process."""
    with gunicorn("app:create_app()", {"STATS_DB": str(tmp / "batch.db")}) as (port, pids):
        result = wrk(port, "batch.lua", seconds, connections=4)
        rss = rss_mib(pids)
    assert result["non_2xx"] == 0, result
    http_eps = result["rps"] * 200
    rows = bench_rows(n_raw, protocol.now_ms() - 10**8)
    raw = executemany_rate(rows, tmp / "raw.db")
    bare = executemany_rate(rows, tmp / "raw-no-rollups.db", rollups=False)
    return {"http": http_eps, "raw": raw, "raw_no_rollups": bare, "rss": rss}


# -- reads ---------------------------------------------------------------------------------------

APPS = [("com.bench.big", 0.7), ("com.bench.mid", 0.2), ("com.bench.small", 0.1)]
ACTIONS = [
    ("app_moved_to_foreground", 30), ("app_moved_to_background", 28), ("app_launch_ready", 12),
    ("download_complete", 6), ("download_10", 3), ("download_50", 3), ("set", 6), ("get", 4),
    ("noNew", 4), ("set_fail", 1), ("download_fail", 1), ("update_fail", 1), ("unzip_fail", 1),
]  # fmt: skip


def generate(path: Path, n: int, devices: int, days: int = 30, seed: int = 7) -> None:
    """Fill a database with n realistic events from `devices` devices over `days`, straight
    into the store's table."""
    rng = random.Random(seed)
    SQLiteStore(str(path)).ensure_schema()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # generation only: the server never runs like this
    now = protocol.now_ms()
    names = [a for a, _ in ACTIONS]
    weights = [w for _, w in ACTIONS]
    chunk = 50_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        picks = rng.choices(names, weights, k=size)
        rows = []
        for action in picks:
            app = rng.choices(APPS, [w for _, w in APPS])[0][0]
            device = rng.randrange(devices)
            at = now - rng.randrange(days * 86_400_000)
            bundle = f"1.{min(4, (at - now + days * 86_400_000) // (7 * 86_400_000))}.0"
            rows.append(
                (at, at, at, app, f"dev-{device:07d}", action, ("ios", "android")[device % 2],
                 bundle, None, None, "1.0", "10", "17.4", "8.51.14", int(device % 50 == 0),
                 1, None, None, None, None)
            )  # fmt: skip
        conn.execute("BEGIN")
        conn.executemany(INSERT_EVENT, rows)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


READS = {
    "counts": "/stats/counts",
    "counts, one app, 7 days": "/stats/counts?app_id=com.bench.big&since={week_ago}",
    "versions": "/stats/versions?app_id=com.bench.big",
    "timeline": "/stats/timeline?app_id=com.bench.big&interval=day",
    "dashboard": "/?app_id=com.bench.big",
}


def latency(port: int, path: str, n: int) -> tuple[float, float] | None:
    """Median and p95 milliseconds of n sequential GETs; None when the route is not there."""
    times = []
    for i in range(n + 2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - start) * 1000
        conn.close()
        if response.status == 404:
            return None
        assert response.status == 200, (path, response.status)
        if i >= 2:  # the first two warm the page cache
            times.append(elapsed)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def reads(sizes: list[tuple[int, int]], n: int, tmp: Path) -> list[dict]:
    """Read latencies and database size at each (stored events, devices)."""
    week_ago = datetime.fromtimestamp(time.time() - 7 * 86400, tz=UTC).strftime("%Y-%m-%d")
    results = []
    for size, devices in sizes:
        db = tmp / f"reads-{size}-{devices}.db"
        started = time.perf_counter()
        generate(db, size, devices)
        generated = time.perf_counter() - started
        row = {"events": size, "devices": devices, "bytes_per_event": db.stat().st_size / size}
        row["gen_s"] = generated
        with gunicorn("app:create_app()", {"STATS_DB": str(db)}) as (port, pids):
            for name, path in READS.items():
                row[name] = latency(port, path.format(week_ago=week_ago), n)
            row["rss"] = rss_mib(pids)
        results.append(row)
        db.unlink()
    return results


# -- report --------------------------------------------------------------------------------------


def ms(pair: tuple[float, float] | None) -> str:
    """'median / p95' in ms, or n/a."""
    return "n/a" if pair is None else f"{pair[0]:.1f} / {pair[1]:.1f}"


# The other apps of SINGLE_APPS: what each row says, and what it is for.
CEILINGS = {
    "storage off": (
        "the same with the storage switched off: parsed, validated, logged, not stored",
        "ceiling of any storage",
    ),
    "one plain INSERT": (
        "the same with one INSERT per request, no indexes or rollups, on disk",
        "ceiling of a SQLite write per request",
    ),
    "spool": (
        "a sketch, not shipped: the Flask route appends to a spool file, folded every 256",
        "sketch: no insert before the answer",
    ),
    "spool, plain WSGI": (
        "the same sketch answered by a plain WSGI function ahead of Flask",
        "sketch: no Flask route either",
    ),
}


def report(single: dict, batch: dict, read_rows: list[dict], smoke: bool) -> str:
    """The results as Markdown."""
    cpu = os.cpu_count()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {date} on {cpu} cores, Python {sys.version.split()[0]}, SQLite "
        f"{sqlite3.sqlite_version}, gunicorn with the repo's gunicorn.conf.py for both apps, "
        "wrk 1 thread, loopback"
        + (" (SMOKE SIZES: not a measurement)" if smoke else "")
        + ". Command: `python bench/run.py`.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
    ]
    ours, bare = single["rps"]["ours"], single["rps"]["bare"]
    per_round = ", ".join(f"{o:,.0f}/{b:,.0f}" for o, b in zip(ours, bare, strict=True))
    lines.append(
        f"| single-event ingest, ours / bare Flask route (req/s per round: {per_round}) "
        f"| **{single['ratio']['ours']:.2f}** | >= 0.85 |"
    )
    for name, (what, note) in CEILINGS.items():
        lines.append(f"| {what} | {single['ratio'][name]:.2f} | ({note}) |")
    lines.append(
        f"| 200-event batches, events/s through gunicorn / raw executemany on the same schema "
        f"({batch['http']:,.0f} / {batch['raw']:,.0f}) | **{batch['http'] / batch['raw']:.2f}** "
        "| >= 0.30 |"
    )
    lines.append(
        f"| the same, against executemany with the rollup trigger dropped "
        f"({batch['http']:,.0f} / {batch['raw_no_rollups']:,.0f}) "
        f"| {batch['http'] / batch['raw_no_rollups']:.2f} | (for reference) |"
    )
    lines.append(
        f"| gunicorn worker memory (largest RSS) after single / batch load "
        f"| {single['rss']:.0f} / {batch['rss']:.0f} MiB | |"
    )
    lines += [
        "",
        "Read latency, median / p95 in ms over sequential requests through gunicorn, and size:",
        "",
        "| events | devices | " + " | ".join(READS) + " | bytes/event | worker RSS |",
        "|---|---|" + "---|" * (len(READS) + 2),
    ]
    for row in read_rows:
        cells = " | ".join(ms(row[name]) for name in READS)
        lines.append(
            f"| {row['events']:,} | {row['devices']:,} | {cells} "
            f"| {row['bytes_per_event']:.0f} | {row['rss']:.0f} MiB |"
        )
    first, last = read_rows[0], read_rows[-1]
    growth = last["events"] / first["events"]
    slow = [
        f"{name} x{last[name][0] / first[name][0]:.1f}"
        for name in READS
        if first[name] and last[name]
    ]
    lines += [
        "",
        f"From {first['events']:,} to {last['events']:,} events (x{growth:,.0f}), median read "
        f"time grew: {', '.join(slow)}. Targets: counts < 20 ms and dashboard < 300 ms at 1M "
        "and 10M events; reads grow sub-linearly.",
    ]
    return "\n".join(lines)


def write(path: Path, table: str) -> None:
    """Put the table between the result markers, keeping the hand-written notes around it."""
    text = path.read_text() if path.exists() else f"# Benchmark\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main() -> None:
    """Run every part of the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it works")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    if args.smoke:
        rounds, seconds, n_raw, n_reads = 1, 1, 2_000, 3
        sizes = [(1_000, 100), (5_000, 5_000), (5_000, 100)]
    else:
        rounds, seconds, n_raw, n_reads = 3, 10, 200_000, 30
        # 200 events per device, as in a real app; and once one device per event, as a load
        # test through the API sends them (the device counts must not slow reads down).
        sizes = [(100_000, 500), (1_000_000, 5_000), (1_000_000, 1_000_000), (10_000_000, 50_000)]
    with tempfile.TemporaryDirectory(prefix="capgo-bench-") as tmp:
        tmp = Path(tmp)
        print("single-event ingest...", flush=True)
        single = ingest_single(rounds, seconds, tmp)
        print("batch ingest...", flush=True)
        batch = ingest_batch(seconds, n_raw, tmp)
        print("reads...", flush=True)
        read_rows = reads(sizes, n_reads, tmp)
    table = report(single, batch, read_rows, args.smoke)
    write(args.out, table)
    print(table)


if __name__ == "__main__":
    main()
