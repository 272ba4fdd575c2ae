"""A real gunicorn serving the app on loopback, for tests that need sockets and processes."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Gunicorn:
    """`gunicorn 'app:create_app()'` with our gunicorn.conf.py, in a process group of its own."""

    def __init__(self, db: Path, log: Path, workers: int = 4, **settings: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STATS_", "GUNICORN"))}
        env.update(settings, STATS_DB=str(db))
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0"]
                + ["--workers", str(workers), "app:create_app()"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so we can kill it whole
            )
        self.port = self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> int:
        """Wait until the server answers GET /stats; return its port."""
        deadline = time.monotonic() + timeout
        port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            if port is None:
                found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.log())
                port = int(found.group(1)) if found else None
            elif self._answers(port):
                return port
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gunicorn did not get ready in {timeout} s:\n{self.log()}")

    def _answers(self, port: int) -> bool:
        """True when the liveness check answers 200."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/stats")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()  # a kept-alive connection is not closed by the server

    @property
    def url(self) -> str:
        """The ingest URL."""
        return f"http://127.0.0.1:{self.port}/stats"

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """Send one request on a new connection; return (status, headers, JSON or raw body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            return response.status, response.headers, json.loads(data)
        except ValueError:
            return response.status, response.headers, data

    def log(self) -> str:
        """Everything the server wrote so far (gunicorn's log and the app's)."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 the whole process group: master and workers."""
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
