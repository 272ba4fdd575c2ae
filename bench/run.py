"""The whole benchmark in one command, on loopback, written into bench/RESULTS.md.

    python bench/run.py            # full run: about twenty minutes on 2 cores
    python bench/run.py --smoke    # tiny sizes, a few seconds each: shows the bench still works
    python bench/run.py --ingest --rounds 5 --seconds 8   # the two ingest ratios only, printed

Every figure is measured side by side in the same run and reported as a ratio as well, because
absolute numbers drift on shared machines. Needs wrk (Debian package `wrk`) and gunicorn.
"""

from __future__ import annotations

import argparse
import http.client
import json
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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from bench.load import Load  # noqa: E402
from capgo_stats import fold, protocol  # noqa: E402
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


def wrk(port: int, script: str, seconds: float, connections: int = 8, batch: int = 200) -> dict:
    """Run wrk against POST /stats; return requests/s and answers that were not 2xx."""
    env = {"BENCH_TS": str(protocol.now_ms() - random.randrange(10**9)), "BENCH_BATCH": str(batch)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(BENCH / script),
         f"http://127.0.0.1:{port}/stats"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True,
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


# The apps each ingest ratio compares, served in every round: the bare route, ours, and (for
# single events) ours with its storage cut down (bench/ceiling_app.py): what is left for storage.
# Each app: (gunicorn's app spec, the folder it runs in, settings of its own).
BARE = ("bare_app:create_app()", BENCH, {})
OURS = ("app:create_app()", ROOT, {})
INGEST_APPS = {
    "bare": BARE,
    "ours": OURS,
    "fold off": ("app:create_app()", ROOT, {"STATS_FOLD_INTERVAL_S": "0"}),
    "storage off": ("ceiling_app:create_app('off')", BENCH, {}),
    "one plain INSERT": ("ceiling_app:create_app('plain')", BENCH, {}),
}


def ingest_ratio(apps: dict, batch: int, rounds: int, seconds: int, tmp: Path) -> dict:
    """Req/s of each app with `batch` events per request (1: single objects), and each one's
    median ratio to the bare route, in alternating rounds so drift hits all alike."""
    script = "single.lua" if batch == 1 else "batch.lua"
    rps: dict[str, list[float]] = {name: [] for name in apps}
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    rss = 0.0
    for r in range(rounds):
        for name, (spec, chdir, settings) in apps.items():
            env = {"STATS_DB": str(tmp / f"ingest-{batch}-{r}-{name.replace(' ', '-')}.db")}
            env.update(settings)
            with gunicorn(spec, env, chdir=chdir) as (port, pids):
                before = cpu_seconds(pids)
                result = wrk(port, script, seconds, batch=batch)
                used = cpu_seconds(pids) - before
                if name == "ours":
                    rss = max(rss, rss_mib(pids))
            assert result["non_2xx"] == 0, (name, result)
            rps[name].append(result["rps"])
            cpu[name].append(used / (result["rps"] * seconds) * 1e6)
    ratios = {
        name: statistics.median(o / b for o, b in zip(values, rps["bare"], strict=True))
        for name, values in rps.items()
    }
    cpu_us = {name: statistics.median(values) for name, values in cpu.items()}
    return {"rps": rps, "ratio": ratios, "rss": rss, "cpu_us": cpu_us}


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the processes have used so far (user + system), in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def get_json(port: int, path: str) -> tuple[float, dict]:
    """One GET on a new connection: (milliseconds, JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    conn.close()
    assert response.status == 200, (path, response.status, body[:200])
    return elapsed, json.loads(body)


class Backlog(threading.Thread):
    """Samples the fold's backlog (/healthz pending_events) every 0.2 s while a load runs."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.samples, self.done = port, [], threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self.done.wait(0.2):
            self.samples.append(get_json(self.port, "/healthz")[1]["pending_events"])

    def stop(self) -> list[int]:
        """Stop sampling; the samples."""
        self.done.set()
        self.join()
        return self.samples


def after_load(port: int) -> dict:
    """The backlog left when a load stops, the first read then (it folds it), and later reads."""
    pending = get_json(port, "/healthz")[1]["pending_events"]
    first = get_json(port, "/stats/counts")[0]
    later = statistics.median(get_json(port, "/stats/counts")[0] for _ in range(10))
    return {"pending_at_end": pending, "first_read_ms": first, "later_read_ms": later}


def ingest_batch(seconds: int, n_raw: int, tmp: Path) -> dict:
    """200-event batches through gunicorn, with the fold's backlog sampled meanwhile, vs raw
    executemany of the same rows in one process, with our indexes and with none."""
    with gunicorn(OURS[0], {"STATS_DB": str(tmp / "batch.db")}) as (port, pids):
        backlog = Backlog(port)
        backlog.start()
        result = wrk(port, "batch.lua", seconds, connections=4)
        samples = backlog.stop()
        after = after_load(port)
        rss = rss_mib(pids)
    assert result["non_2xx"] == 0, result
    http_eps = result["rps"] * 200
    rows = bench_rows(n_raw, protocol.now_ms() - 10**8)
    indexed = executemany_rate(rows, tmp / "raw.db")
    bare = executemany_rate(rows, tmp / "raw-no-index.db", indexes=False)
    return {"http": http_eps, "raw": indexed, "raw_no_index": bare, "rss": rss,
            "max_backlog": max(samples, default=0), **after}  # fmt: skip


def burst(n: int, fold_interval: str, tmp: Path) -> dict:
    """n events sent as fast as 4 clients can in 200-event batches, then the first read."""
    env = {
        "STATS_DB": str(tmp / f"burst-{fold_interval}.db"),
        "STATS_FOLD_INTERVAL_S": fold_interval,
    }
    with gunicorn(OURS[0], env) as (port, _):
        started = time.perf_counter()
        tally = Load(f"http://127.0.0.1:{port}/stats", clients=4, requests=n // 200, batch=200,
                     single_share=0, duration=300).run()  # fmt: skip
        sent_s = time.perf_counter() - started
        assert tally.events_accepted == n, tally
        result = after_load(port)
        counted = sum(c["count"] for c in get_json(port, "/stats/counts")[1]["counts"])
    assert counted == n, (counted, n)
    return {"events": n, "seconds": sent_s, "fold_interval": fold_interval, **result}


def bench_rows(n: int, base_ts: int) -> list[tuple]:
    """The rows batch.lua's events become (200 a device), validated as the server would."""
    actions = ["app_moved_to_foreground", "app_moved_to_background", "download_complete", "set",
               "app_launch_ready"]  # fmt: skip
    now = protocol.now_ms()
    rows = []
    for i in range(1, n + 1):
        event = {
            "action": actions[i % 5], "app_id": "com.bench.app",
            "device_id": f"0f673663-459a-44c0-a7f5-{i // 200 % 5000:08d}", "platform": "android",
            "custom_id": "", "version_name": "1.2.3", "version_build": "1.2.0",
            "version_code": "12", "version_os": "14", "plugin_version": "8.51.14",
            "is_emulator": False, "is_prod": True, "defaultChannel": "",
            "old_version_name": "1.2.2", "timestamp": base_ts - i,
        }  # fmt: skip
        rows.append(protocol.validate(event, protocol.KNOWN_ACTIONS, now))
    return rows


def executemany_rate(rows: list[tuple], path: Path, indexes: bool = True) -> float:
    """Rows/s for raw sqlite3 executemany, 200 rows per transaction, on our event table and
    pragmas: with its indexes (the dedupe key among them), or into a table with none."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA.read_text())
    if not indexes:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event'"
            " AND sql IS NOT NULL"
        ).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
    start = time.perf_counter()
    for i in range(0, len(rows), 200):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_EVENT, rows[i : i + 200])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


# -- reads ---------------------------------------------------------------------------------------

APPS = [("com.bench.big", 0.7), ("com.bench.mid", 0.2), ("com.bench.small", 0.1)]
ACTIONS = [
    ("app_moved_to_foreground", 30), ("app_moved_to_background", 28), ("app_launch_ready", 12),
    ("download_complete", 6), ("download_10", 3), ("download_50", 3), ("set", 6), ("get", 4),
    ("noNew", 4), ("set_fail", 1), ("download_fail", 1), ("update_fail", 1), ("unzip_fail", 1),
]  # fmt: skip


def generate(path: Path, n: int, devices: int, days: int = 30, seed: int = 7) -> float:
    """Fill a database with n realistic events from `devices` devices over `days`, straight
    into the store's table, then fold them as the server would; return the fold's events/s."""
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
        # in arrival order, as a real database holds them: ids follow time, a little jittered
        step = days * 86_400_000 / n
        for offset, action in enumerate(picks):
            app = rng.choices(APPS, [w for _, w in APPS])[0][0]
            device = rng.randrange(devices)
            at = now - days * 86_400_000 + int((start + offset) * step) - rng.randrange(60_000)
            bundle = f"1.{min(4, (at - now + days * 86_400_000) // (7 * 86_400_000))}.0"
            rows.append(
                (at, at, at, app, f"dev-{device:07d}", action, ("ios", "android")[device % 2],
                 bundle, None, None, "1.0", "10", "17.4", "8.51.14", int(device % 50 == 0),
                 1, None, None, None, None, None)
            )  # fmt: skip
        conn.execute("BEGIN")
        conn.executemany(INSERT_EVENT, rows)
        conn.execute("COMMIT")
    conn.close()
    store = SQLiteStore(str(path))
    started = time.perf_counter()
    folded = fold.catch_up(store)
    rate = folded / (time.perf_counter() - started)
    store.checkpoint()
    return rate


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
        fold_rate = generate(db, size, devices)
        generated = time.perf_counter() - started
        row = {"events": size, "devices": devices, "bytes_per_event": db.stat().st_size / size}
        row["gen_s"], row["fold_rate"] = generated, fold_rate
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


# The other apps of INGEST_APPS: what each row says.
CEILINGS = {
    "fold off": "the same with the background fold off (STATS_FOLD_INTERVAL_S=0)",
    "storage off": "the same with the storage switched off: parsed, validated, logged, not stored",
    "one plain INSERT": "the same with one INSERT per request into a table with no index, on disk",
}


APP_NAMES = {"bare": "bare route", "ours": "ours"}  # the others: "ours, <name>"


def per_round(result: dict) -> str:
    """ours/bare req/s of each round."""
    pairs = zip(result["rps"]["ours"], result["rps"]["bare"], strict=True)
    return ", ".join(f"{o:,.0f}/{b:,.0f}" for o, b in pairs)


def report(single: dict, five: dict, batch: dict, bursts: list[dict], read_rows: list[dict],
           smoke: bool) -> str:  # fmt: skip
    """The results as Markdown."""
    cpu = os.cpu_count()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {date} on {cpu} cores, Python {sys.version.split()[0]}, SQLite "
        f"{sqlite3.sqlite_version}, gunicorn with the repo's gunicorn.conf.py for every app, "
        "wrk 1 thread, loopback"
        + (" (SMOKE SIZES: not a measurement)" if smoke else "")
        + ". Command: `python bench/run.py`.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| single-event ingest, ours / bare Flask route (req/s per round: {per_round(single)}) "
        f"| **{single['ratio']['ours']:.2f}** | >= 0.75 |",
    ]
    for name, what in CEILINGS.items():
        lines.append(f"| {what} | {single['ratio'][name]:.2f} | (reference) |")
    lines += [
        f"| 5-event arrays, ours / the bare route parsing 5-event arrays (req/s per round: "
        f"{per_round(five)}) | **{five['ratio']['ours']:.2f}** | >= 0.70 |",
        *(
            f"| {what} | {five['ratio'][name]:.2f} | (reference) |"
            for name, what in CEILINGS.items()
        ),
        f"| 200-event batches, events/s through gunicorn / raw executemany into the event table "
        f"with no index ({batch['http']:,.0f} / {batch['raw_no_index']:,.0f}) "
        f"| **{batch['http'] / batch['raw_no_index']:.2f}** | >= 0.15 |",
        f"| the same, against executemany into the event table with its indexes, the dedupe key "
        f"among them ({batch['http']:,.0f} / {batch['raw']:,.0f}) "
        f"| {batch['http'] / batch['raw']:.2f} | (reference) |",
        f"| fold backlog while those batches ran: largest sample of /healthz pending_events, "
        f"and what was left when the load stopped | {batch['max_backlog']:,} / "
        f"{batch['pending_at_end']:,} events | |",
        f"| the first read after that load (it folds what was left) / later reads, counts "
        f"| {batch['first_read_ms']:.0f} / {batch['later_read_ms']:.1f} ms | < 2,000 / < 20 ms |",
    ]
    for b in bursts:
        how = "the background fold on (every 1 s)" if b["fold_interval"] != "0" else (
            "the background fold off: the first read folds them all")  # fmt: skip
        lines.append(
            f"| a burst of {b['events']:,} events in 200-event batches ({b['seconds']:.1f} s), "
            f"{how}: events pending, first read / later reads "
            f"| {b['pending_at_end']:,}; {b['first_read_ms']:.0f} / {b['later_read_ms']:.1f} ms "
            "| < 2,000 / < 20 ms |"
        )
    lines.append(
        f"| gunicorn worker memory (largest RSS) after single / batch load "
        f"| {single['rss']:.0f} / {batch['rss']:.0f} MiB | |"
    )
    lines += [
        "",
        "Worker CPU per request (user + system time of the gunicorn workers during the wrk run,"
        " divided by the requests answered; median of the rounds), in us: where each app's time"
        " goes, less moved by other load on the machine than requests/s:",
        "",
        "| app | single event | 5-event array |",
        "|---|---|---|",
        *(
            f"| {APP_NAMES.get(name, 'ours, ' + name)} "
            f"| {single['cpu_us'][name]:,.0f} | {five['cpu_us'][name]:,.0f} |"
            for name in single["cpu_us"]
        ),
        "",
        "Read latency, median / p95 in ms over sequential requests through gunicorn, size, and"
        " the fold's speed over the generated history:",
        "",
        "| events | devices | " + " | ".join(READS) + " | bytes/event | worker RSS | fold |",
        "|---|---|" + "---|" * (len(READS) + 3),
    ]
    for row in read_rows:
        cells = " | ".join(ms(row[name]) for name in READS)
        lines.append(
            f"| {row['events']:,} | {row['devices']:,} | {cells} "
            f"| {row['bytes_per_event']:.0f} | {row['rss']:.0f} MiB "
            f"| {row['fold_rate']:,.0f} events/s |"
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


def ingest_only(rounds: int, seconds: int) -> None:
    """The two ingest ratio rounds alone, printed, RESULTS.md untouched: for trying a change."""
    with tempfile.TemporaryDirectory(prefix="capgo-bench-") as tmp:
        for batch in (1, 5):
            result = ingest_ratio(INGEST_APPS, batch, rounds, seconds, Path(tmp))
            for name, ratio in result["ratio"].items():
                rps = ", ".join(f"{r:,.0f}" for r in result["rps"][name])
                print(
                    f"{batch} event(s) a request, {name}: {ratio:.2f} ({rps} req/s;"
                    f" worker CPU {result['cpu_us'][name]:,.0f} us a request)",
                    flush=True,
                )


def main() -> None:
    """Run every part of the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it works")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--ingest", action="store_true", help="only the single and 5-event ratio rounds, printed"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --ingest: rounds per app")
    parser.add_argument("--seconds", type=int, default=10, help="with --ingest: wrk seconds")
    args = parser.parse_args()
    if args.ingest:
        ingest_only(args.rounds, args.seconds)
        return
    if args.smoke:
        rounds, seconds, n_raw, n_reads, n_burst = 1, 1, 2_000, 3, 2_000
        sizes = [(1_000, 100), (5_000, 5_000), (5_000, 100)]
    else:
        rounds, seconds, n_raw, n_reads, n_burst = 3, 10, 200_000, 30, 100_000
        # 200 events per device, as in a real app; and once one device per event, as a load
        # test through the API sends them (the device counts must not slow reads down).
        sizes = [(100_000, 500), (1_000_000, 5_000), (1_000_000, 1_000_000), (10_000_000, 50_000)]
    with tempfile.TemporaryDirectory(prefix="capgo-bench-") as tmp:
        tmp = Path(tmp)
        print("single-event ingest...", flush=True)
        single = ingest_ratio(INGEST_APPS, 1, rounds, seconds, tmp)
        print("5-event arrays...", flush=True)
        five = ingest_ratio(INGEST_APPS, 5, rounds, seconds, tmp)
        print("batch ingest and the fold's backlog...", flush=True)
        batch = ingest_batch(seconds, n_raw, tmp)
        print("bursts...", flush=True)
        bursts = [burst(n_burst, interval, tmp) for interval in ("1", "0")]
        print("reads...", flush=True)
        read_rows = reads(sizes, n_reads, tmp)
    table = report(single, five, batch, bursts, read_rows, args.smoke)
    write(args.out, table)
    print(table)


if __name__ == "__main__":
    main()
