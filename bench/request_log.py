"""The cost of the request log on the ingest hot path, over HTTP on loopback.

Runs gunicorn (2 sync workers, or gthread workers with --threads) and wrk against, in turn: a
bare Flask route that reads the body and answers {"status":"ok"}, POST /stats with
STATS_LOG_LEVEL=WARNING (no request log), and POST /stats with STATS_LOG_LEVEL=INFO (one line
per request, to a file). Prints requests per second and the ratios. Needs gunicorn and wrk;
bounded: three runs of `--seconds` each, on 127.0.0.1 only.

    python bench/request_log.py --seconds 10 [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from payloads import SINGLE_ANDROID_7  # noqa: E402

BARE_APP = """
from flask import Flask, request

def create_app():
    app = Flask(__name__)

    @app.post("/stats")
    def stats():
        request.get_data()
        return {"status": "ok"}

    return app
"""


GUNICORN_ARGS: list[str] = []


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int) -> None:
    """Wait until something listens on the port (10 s at most)."""
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def run(label: str, module: str, cwd: str, env: dict, seconds: int, lua: str, log: str) -> float:
    """Serve `module:create_app()` with gunicorn, load it with wrk, return requests per second."""
    port = free_port()
    with open(log, "w") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
             *GUNICORN_ARGS, f"{module}:create_app()"],
            cwd=cwd, env={**os.environ, **env}, stderr=err, stdout=err,
        )  # fmt: skip
        try:
            wait_for(port)
            out = subprocess.run(
                ["wrk", "-t1", "-c8", f"-d{seconds}s", "-s", lua, f"http://127.0.0.1:{port}/stats"],
                capture_output=True, text=True, check=True, timeout=seconds + 30,
            ).stdout  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=10)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(f"{label:<34} {rps:9.0f} req/s" + (f"  ({errors.group(1)} non-2xx!)" if errors else ""))
    return rps


def per_request_us(client, body: bytes, n: int = 3000, repeats: int = 5) -> float:
    """The fastest of `repeats` loops of n POST /stats through a test client, in us per request."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            client.post("/stats", data=body)
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def in_process(tmp: str) -> None:
    """The same three servers without HTTP: Flask's test client, best of five loops each."""
    import logging

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, tmp)
    import bare

    from app import create_app

    body = json.dumps(SINGLE_ANDROID_7).encode()
    timings = {"bare Flask route": per_request_us(bare.create_app().test_client(), body)}
    for level in ("WARNING", "INFO"):
        app = create_app({"STATS_DB": f"{tmp}/in-{level}.db", "STATS_LOG_LEVEL": level})
        parent = logging.getLogger("capgo_stats")
        parent.handlers[:] = [logging.FileHandler(f"{tmp}/in-{level}.log")]  # as in production
        parent.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        timings[f"POST /stats, STATS_LOG_LEVEL={level}"] = per_request_us(app.test_client(), body)
    for label, us in timings.items():
        print(f"in-process {label:<36} {us:6.1f} us/request")
    quiet, logged = (
        timings["POST /stats, STATS_LOG_LEVEL=WARNING"],
        timings["POST /stats, STATS_LOG_LEVEL=INFO"],
    )
    print(f"in-process cost of the request log: {logged - quiet:.1f} us/request")


def main() -> None:
    """Run the three servers round after round, in a rotating order, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server")
    parser.add_argument("--threads", type=int, default=0, help="gthread workers (keep-alive)")
    options = parser.parse_args()
    if options.threads:
        GUNICORN_ARGS.extend(["-k", "gthread", "--threads", str(options.threads)])
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bare.py").write_text(BARE_APP)
        lua = Path(tmp, "post.lua")
        body = json.dumps(SINGLE_ANDROID_7).replace("\\", "\\\\").replace('"', '\\"')
        lua.write_text(
            f'wrk.method = "POST"\nwrk.body = "{body}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        servers = {
            "bare Flask route": ("bare", tmp, {}),
            "POST /stats, STATS_LOG_LEVEL=WARNING": (
                "app",
                str(ROOT),
                {"STATS_DB": f"{tmp}/w.db", "STATS_LOG_LEVEL": "WARNING"},
            ),
            "POST /stats, STATS_LOG_LEVEL=INFO": (
                "app",
                str(ROOT),
                {"STATS_DB": f"{tmp}/i.db", "STATS_LOG_LEVEL": "INFO"},
            ),
        }
        in_process(tmp)
        rates: dict[str, list[float]] = {label: [] for label in servers}
        labels = list(servers)
        for n in range(options.rounds):
            for label in labels[n % 3 :] + labels[: n % 3]:  # rotate: no server always runs last
                module, cwd, env = servers[label]
                log = f"{tmp}/{module}-{env.get('STATS_LOG_LEVEL', '')}.log"
                rates[label].append(run(label, module, cwd, env, options.seconds, str(lua), log))
        lines = Path(f"{tmp}/app-INFO.log").read_text().count("capgo_stats.request")
        print(f"request log lines in the last INFO run: {lines}")
    median = {label: statistics.median(values) for label, values in rates.items()}
    bare, quiet, logged = (median[label] for label in labels)
    print(f"medians: bare {bare:.0f}, ingest without log {quiet:.0f}, with log {logged:.0f} req/s")
    print(f"ingest / bare route: {quiet / bare:.2f} without the log, {logged / bare:.2f} with it")
    print(f"cost of the request log on ingest: {1 - logged / quiet:.1%}")


if __name__ == "__main__":
    main()
