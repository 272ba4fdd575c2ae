"""gunicorn settings for capgo-stats: `gunicorn 'app:create_app()'` reads this file.

Command-line flags win over these (`-b 127.0.0.1:9000`, `-w 3`); so does GUNICORN_CMD_ARGS.
"""

import os
import sys

# Behind a reverse proxy on the same machine (see docs/operations.md, "Production");
# -b 0.0.0.0:8000 to listen on every interface.
bind = "127.0.0.1:8000"

# sync workers: one request at a time each, connection closed after the answer. Measured: gthread
# piled keep-alive connections onto one worker in a third of runs, leaving the others idle.
worker_class = "sync"
# One worker per core, at least two. Writers take turns on the one database file, so more
# workers only wait on each other: 4 workers on 2 cores took 0.38 of the bare route's req/s
# where 2 took 0.50 (bench/RESULTS.md).
workers = int(os.environ.get("WEB_CONCURRENCY", 0)) or max(2, os.cpu_count() or 1)
keepalive = 2  # only used by other worker classes; kept short for them

# A worker silent this long is stuck, and is replaced. A request waits at most the busy timeout
# for the database (STATS_BUSY_TIMEOUT_MS, 5 s), well inside the plugin's 10-20 s timeouts. A
# long export is not silent: it reports each batch it sends (post_worker_init below).
timeout = 30
graceful_timeout = 10

# No preload_app: each worker creates its app after the fork, so no database connection (nor the
# STATS_RETENTION_DAYS thread) is ever shared across a fork. Workers starting together on a new
# database wait for each other (store.py).

# No access log: it would hold client IP addresses (and the ?key= of statsUrl).
accesslog = None

# No control socket (gunicorn >= 25): we do not use gunicornc, and two servers on one machine
# would share its default path.
control_socket_disable = True


def post_worker_init(worker):
    """Give the app the worker's heartbeat, so an export that is still sending is not killed."""
    extensions = getattr(worker.wsgi, "extensions", None)  # None: not our Flask app
    if extensions is not None:
        extensions["heartbeat"] = worker.notify


def when_ready(server):
    """Warn once at start when the server listens beyond loopback and reads are open."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also under --chdir
    from capgo_stats.web.access import exposure_warning

    hosts = [address[0] for address in server.cfg.address if isinstance(address, tuple)]
    message = exposure_warning(hosts, os.environ.get("STATS_READ_TOKEN", ""))
    if message:
        server.log.warning(message)
