"""PostgreSQL beside SQLite, in one run on loopback, written into bench/POSTGRES.md.

    python bench/postgres.py            # full run: about ten minutes on 2 cores
    python bench/postgres.py --smoke    # tiny sizes: shows the bench still works

Starts a throwaway PostgreSQL cluster (tests/support/postgres.py; as the postgres user when
root), then measures with the same gunicorn.conf.py and wrk as bench/run.py:
- ingest: single events and 200-event batches, on SQLite, on PostgreSQL with one server, and
  with two servers on the one database (wrk against each at once, half the connections each);
- reads: the routes of bench/run.py at n events, on the same database in SQLite and, copied
  with `flask copy-db`'s code, in PostgreSQL;
- retention: `flask prune` of half the events, and single POSTs answered meanwhile.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.run import READS, generate, gunicorn, latency, wrk  # noqa: E402
from capgo_stats import fold, protocol  # noqa: E402
from capgo_stats.store import PostgresStore, SQLiteStore  # noqa: E402
from capgo_stats.store.copy import copy_sqlite_to_postgres  # noqa: E402
from support.postgres import Cluster, find_bin  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
OURS = "app:create_app()"


def ingest(envs: list[dict], script: str, seconds: int, batch: int) -> float:
    """Requests/s of wrk against one server per env at once (8 connections in all)."""
    with ExitStack() as stack:
        ports = [stack.enter_context(gunicorn(OURS, env))[0] for env in envs]
        results: list[dict] = []
        threads = [
            threading.Thread(
                target=lambda p=port: results.append(
                    wrk(p, script, seconds, connections=8 // len(ports), batch=batch)
                )
            )
            for port in ports
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(r["non_2xx"] == 0 for r in results), results
    return sum(r["rps"] for r in results)


def ingest_rounds(cluster: Cluster, tmp: Path, rounds: int, seconds: int) -> dict:
    """Median req/s (single) and events/s (batches) per setup, rounds alternating setups."""
    found: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for kind, script, batch in (("single", "single.lua", 1), ("batch", "batch.lua", 200)):
            pg = cluster.create_database(f"ingest_{kind}_{r}")
            setups = {
                "SQLite, 1 server": [{"STATS_DB": str(tmp / f"ingest-{kind}-{r}.db")}],
                "PostgreSQL, 1 server": [{"STATS_DATABASE_URL": pg}],
                "PostgreSQL, 2 servers": [{"STATS_DATABASE_URL": pg}] * 2,
            }
            for name, envs in setups.items():
                rate = ingest(envs, script, seconds, batch) * batch
                found.setdefault((kind, name), []).append(rate)
    return {key: statistics.median(values) for key, values in found.items()}


def reads(cluster: Cluster, tmp: Path, n: int, samples: int) -> dict:
    """Median ms of each read route on the same n events in SQLite and in PostgreSQL."""
    week_ago = datetime.fromtimestamp(time.time() - 7 * 86400, tz=UTC).strftime("%Y-%m-%d")
    db = tmp / "reads.db"
    generate(db, n, max(1, n // 200))
    url = cluster.create_database("reads")
    target = PostgresStore(url, statement_timeout_ms=0)
    started = time.perf_counter()
    copy_sqlite_to_postgres(SQLiteStore(str(db)), target, lambda table, rows: None)
    copied_s = time.perf_counter() - started
    with target.transaction() as conn:
        conn.execute("ANALYZE")
    target.close()
    found: dict = {"copy_s": copied_s, "n": n}
    for name, env in (
        ("SQLite", {"STATS_DB": str(db)}),
        ("PostgreSQL", {"STATS_DATABASE_URL": url}),
    ):
        with gunicorn(OURS, env) as (port, _):
            for route, path in READS.items():
                pair = latency(port, path.format(week_ago=week_ago), samples)
                found[(route, name)] = pair[0] if pair else None
    return found


def retention(cluster: Cluster, tmp: Path, n: int) -> dict:
    """Seconds to prune the older half of n events, and the p95/max ms of single POSTs sent to
    a server on the same database meanwhile, per store."""
    found = {}
    db = tmp / "prune.db"
    generate(db, n, max(1, n // 200))
    url = cluster.create_database("prune")
    target = PostgresStore(url, statement_timeout_ms=0)
    copy_sqlite_to_postgres(SQLiteStore(str(db)), target, lambda table, rows: None)
    target.close()
    middle = protocol.now_ms() - 15 * 86_400_000
    for name, store, env in (
        ("SQLite", SQLiteStore(str(db)), {"STATS_DB": str(db)}),
        ("PostgreSQL", PostgresStore(url, statement_timeout_ms=0), {"STATS_DATABASE_URL": url}),
    ):
        with gunicorn(OURS, {**env, "STATS_FOLD_INTERVAL_S": "1"}) as (port, _):
            times, stop = [], threading.Event()

            def poster(port=port, times=times, stop=stop) -> None:
                i = 0
                while not stop.is_set():
                    body = f'{{"app_id":"com.bench.big","device_id":"p{i}","action":"set"}}'
                    started = time.perf_counter()
                    status = post(port, body)
                    times.append((time.perf_counter() - started) * 1000)
                    assert status == 200, status
                    i += 1

            thread = threading.Thread(target=poster)
            thread.start()
            started = time.perf_counter()
            deleted = fold.prune(store, middle)
            took = time.perf_counter() - started
            stop.set()
            thread.join()
        store.close()
        times.sort()
        found[name] = {
            "deleted": deleted,
            "seconds": took,
            "p95": times[int(len(times) * 0.95)] if times else 0,
            "max": times[-1] if times else 0,
        }
    return found


def post(port: int, body: str) -> int:
    """POST one event body on a new connection; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/stats", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def report(ingested: dict, read: dict, pruned: dict, command: str) -> str:
    """The results as a markdown table."""
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on 2 cores, PostgreSQL"
        f" {server_version()} (a cluster of its own: fsync on, synchronous_commit off, which like"
        " SQLite's WAL with synchronous=NORMAL may lose the last commits to a power cut, never"
        " its consistency), gunicorn"
        f" with the repo's gunicorn.conf.py, wrk 1 thread, loopback. Command: `{command}`.",
        "",
        "| figure | SQLite, 1 server | PostgreSQL, 1 server | PostgreSQL, 2 servers |",
        "|---|---|---|---|",
    ]
    for kind, label in (
        ("single", "single events, requests/s"),
        ("batch", "200-event batches, events/s"),
    ):
        row = [
            ingested[(kind, name)]
            for name in ("SQLite, 1 server", "PostgreSQL, 1 server", "PostgreSQL, 2 servers")
        ]
        cells = [f"{row[0]:,.0f}"] + [f"{value:,.0f} (x{value / row[0]:.2f})" for value in row[1:]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Reads at {read['n']:,} events, median ms of sequential GETs (the copy into"
        f" PostgreSQL took {read['copy_s']:.0f} s):",
        "",
        "| route | SQLite | PostgreSQL |",
        "|---|---|---|",
    ]
    for route in READS:
        cells = [read[(route, name)] for name in ("SQLite", "PostgreSQL")]
        lines.append(
            f"| {route} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |"
        )
    lines += [
        "",
        "Pruning the older half, with single POSTs answered meanwhile:",
        "",
        "| store | events deleted | seconds | POST p95 ms | POST max ms |",
        "|---|---|---|---|---|",
    ]
    for name, row in pruned.items():
        lines.append(
            f"| {name} | {row['deleted']:,} | {row['seconds']:.1f} | {row['p95']:.1f}"
            f" | {row['max']:.1f} |"
        )
    return "\n".join(lines)


def server_version() -> str:
    """The version of the PostgreSQL binaries the cluster runs."""
    out = subprocess.run([find_bin("pg_ctl"), "--version"], capture_output=True, text=True)
    return out.stdout.split()[2]


def main() -> None:
    """Run everything, print the table and write it between the markers of --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it works")
    parser.add_argument("--out", type=Path, help="default: bench/POSTGRES.md (not with --smoke)")
    args = parser.parse_args()
    rounds, seconds, n, samples = (1, 2, 5_000, 3) if args.smoke else (3, 10, 1_000_000, 20)
    cluster = Cluster(durable=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ingested = ingest_rounds(cluster, Path(tmp), rounds, seconds)
            read = reads(cluster, Path(tmp), n, samples)
            pruned = retention(cluster, Path(tmp), n)
    finally:
        cluster.stop()
    table = report(ingested, read, pruned, "python bench/postgres.py" + " --smoke" * args.smoke)
    print(table)
    out = args.out or (None if args.smoke else ROOT / "bench" / "POSTGRES.md")
    if out:
        text = (
            out.read_text() if out.exists() else f"# PostgreSQL beside SQLite\n\n{START}\n{END}\n"
        )
        head, rest = text.split(START)
        out.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
