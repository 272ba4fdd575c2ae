"""The benchmark still runs: a smoke size in CI, the real figures live in bench/RESULTS.md."""

import subprocess
import sys
from pathlib import Path

import pytest

from support.tools import require

# wrk against real gunicorn servers: the benchmark at smoke size.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def smoke(script, out):
    """Run a benchmark script at smoke size into `out`; return what it wrote."""
    require("wrk", "wrk")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out.read_text()


def test_the_benchmark_runs_at_smoke_size_and_writes_every_figure(tmp_path):
    text = smoke("run.py", tmp_path / "RESULTS.md")
    assert "single-event ingest, ours / bare Flask route" in text
    assert "storage switched off" in text and "one INSERT per request" in text
    assert "5-event arrays, ours / the bare route parsing 5-event arrays" in text
    assert "200-event batches" in text and "with no index" in text
    assert "fold backlog" in text and "the first read after that load" in text
    assert "a burst of 2,000 events" in text and "background fold off" in text
    assert "| 1,000 |" in text and "| 5,000 |" in text
    assert "bytes/event" in text and "events/s |" in text


def test_the_postgresql_benchmark_runs_at_smoke_size_and_writes_every_figure(postgres, tmp_path):
    text = smoke("postgres.py", tmp_path / "POSTGRES.md")
    assert "| single events, requests/s |" in text and "| 200-event batches, events/s |" in text
    assert "PostgreSQL, 2 servers" in text
    assert "| dashboard |" in text and "Pruning the older half" in text
