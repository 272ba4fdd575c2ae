"""A bounded load and soak test for a capgo-stats server on this machine. Standard library only.

    python bench/load.py --url http://127.0.0.1:8000/stats --requests 5000 --duration 60

Client threads send plugin-like events (single objects as plugins before 8.42 send them, batches
as 8.42+ send them) until --requests requests are sent or --duration seconds have passed,
whichever comes first. Then it prints one row of the results table in bench/README.md. It only
talks to loopback addresses, and it writes events under its own app_id (`bench.load` by default)
so they are easy to tell apart: `DELETE FROM event WHERE app_id = 'bench.load'` removes them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
COLUMNS = (
    "date", "cores", "setup", "requests", "events sent", "events stored", "200", "4xx", "5xx",
    "errors", "events/s", "requests/s", "p50 ms", "p95 ms", "duration s",
)  # fmt: skip


@dataclass
class Tally:
    """What a run sent and what the server answered."""

    requests: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        """The p-th percentile of request latency, in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0

    def row(self, setup: str) -> list[str]:
        """This run as a row of the results table (COLUMNS)."""
        family = Counter({f"{s // 100}xx": 0 for s in (200, 400, 500)})
        for status, n in self.statuses.items():
            family[f"{status // 100}xx"] += n
        seconds = self.seconds or 1e-9
        return [
            datetime.now(UTC).strftime("%Y-%m-%d"),
            str(os.cpu_count()),
            setup,
            str(self.requests),
            str(self.events_sent),
            str(self.events_accepted),
            str(self.statuses[200]),
            str(family["4xx"]),
            str(family["5xx"]),
            str(sum(self.errors.values())),
            f"{self.events_accepted / seconds:.0f}",
            f"{self.requests / seconds:.0f}",
            f"{self.percentile(50):.1f}",
            f"{self.percentile(95):.1f}",
            f"{self.seconds:.1f}",
        ]


class Load:
    """Client threads sending events to one loopback URL, bounded in requests and time."""

    def __init__(
        self,
        url: str,
        clients: int = 8,
        requests: int = 2000,
        duration: float = 60.0,
        batch: int = 50,
        single_share: float = 0.5,
        refused_per_batch: int = 0,
        app_id: str = "bench.load",
        keep_ids: bool = False,
    ):
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK:
            raise ValueError(f"{url}: this load test only talks to loopback (127.0.0.1).")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.clients, self.requests, self.duration = clients, requests, duration
        self.batch, self.single_share = max(1, batch), single_share
        self.refused_per_batch, self.app_id, self.keep_ids = refused_per_batch, app_id, keep_ids
        self.tally = Tally()
        self.run_id = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sent = 0

    def run(self) -> Tally:
        """Send until the request count or the duration is reached (or stop() is called)."""
        start = time.perf_counter()
        threads = [threading.Thread(target=self._client, args=(n,)) for n in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.tally.seconds = time.perf_counter() - start
        return self.tally

    def stop(self) -> None:
        """Make every client stop after its current request."""
        self._stop.set()

    def _next(self) -> int | None:
        """The number of the next request to send, or None when the run is over."""
        with self._lock:
            if self._stop.is_set() or self._sent >= self.requests:
                return None
            self._sent += 1
            return self._sent - 1

    def _client(self, client: int) -> None:
        """One client: build, send and tally requests until the run is over."""
        deadline = time.monotonic() + self.duration
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            while time.monotonic() < deadline and (n := self._next()) is not None:
                events, ids = self._body(client, n)
                started = time.perf_counter()
                try:
                    conn.request("POST", self.path, json.dumps(events).encode())
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    self._record(events, ids, None, b"", 0.0, type(e).__name__)
                    continue
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                latency = time.perf_counter() - started
                self._record(events, ids, response.status, answer, latency, None)
        finally:
            conn.close()

    def _body(self, client: int, n: int) -> tuple[dict | list, list[str]]:
        """A single event or a batch, with device ids unique to this run."""
        # Request n is single when the running share of singles steps up: an exact, even mix.
        single = int((n + 1) * self.single_share) > int(n * self.single_share)
        size = 1 if single else self.batch
        ids = [f"{self.run_id}-{client}-{n}-{i}" for i in range(size)]
        now = int(time.time() * 1000)
        events = [
            {
                "action": "set" if i % 2 else "app_moved_to_foreground",
                "app_id": self.app_id,
                "device_id": device,
                "platform": "android",
                "version_name": "1.0.0",
                "version_build": "1.0",
                "plugin_version": "7.36.1" if single else "8.51.14",
                "is_emulator": False,
                "is_prod": True,
                **({} if single else {"timestamp": now - i}),
            }
            for i, device in enumerate(ids)
        ]
        if single:
            return events[0], ids
        for _ in range(self.refused_per_batch):
            events.append({"action": "launch_rockets", "app_id": self.app_id, "device_id": "x"})
            ids.append("")
        return events, ids

    def _record(self, events, ids, status, answer, latency, error) -> None:
        """Add one request's outcome to the tally."""
        accepted = []
        if status == 200:
            body = json.loads(answer)
            if isinstance(events, dict):
                accepted = ids
            else:
                accepted = [ids[r["index"]] for r in body["results"] if r["status"] == "ok"]
        with self._lock:
            t = self.tally
            t.requests += 1
            t.events_sent += 1 if isinstance(events, dict) else len(events)
            t.events_accepted += len(accepted)
            if self.keep_ids:
                t.accepted_ids.extend(accepted)
            if error:
                t.errors[error] += 1
            else:
                t.statuses[status] += 1
                t.latencies.append(latency)


def main(argv: list[str] | None = None) -> int:
    """Run the load test from the command line and print its results row."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/stats")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--requests", type=int, default=2000, help="requests in all (2000)")
    parser.add_argument("--duration", type=float, default=60, help="at most this many s (60)")
    parser.add_argument("--batch", type=int, default=50, help="events per batch (50)")
    parser.add_argument(
        "--single-share", type=float, default=0.5, help="share of single-event requests (0.5)"
    )
    parser.add_argument("--app-id", default="bench.load")
    parser.add_argument("--setup", default="", help="what you ran against, for the table")
    parser.add_argument("--json", action="store_true", help="print the tally as JSON too")
    args = parser.parse_args(argv)
    try:
        load = Load(
            args.url,
            clients=args.clients,
            requests=args.requests,
            duration=args.duration,
            batch=args.batch,
            single_share=args.single_share,
            app_id=args.app_id,
        )
    except ValueError as e:
        parser.error(str(e))
    tally = load.run()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    print("| " + " | ".join(tally.row(args.setup or args.url)) + " |")
    if tally.errors:
        print(f"connection errors: {dict(tally.errors)}", file=sys.stderr)
    if args.json:
        summary = {k: v for k, v in vars(tally).items() if k not in ("latencies", "accepted_ids")}
        print(json.dumps(summary, default=dict))
    return 0 if not tally.errors and tally.statuses.keys() <= {200} else 1


if __name__ == "__main__":
    sys.exit(main())
