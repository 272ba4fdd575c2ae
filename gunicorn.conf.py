"""gunicorn settings for capgo-stats: `gunicorn 'app:create_app()'` reads this file.

Command-line flags win over these (`-b 127.0.0.1:9000`, `-w 3`); so does GUNICORN_CMD_ARGS.
"""

import os
import socket
import sys

# Behind a reverse proxy on the same machine (see docs/operations.md, "Production");
# -b 0.0.0.0:8000 to listen on every interface.
bind = "127.0.0.1:8000"

# gevent workers: each connection is a greenlet, so a client that sends its request slowly, or
# nothing, holds a greenlet, not the worker. With sync workers, one such client per worker
# stopped all ingest until gunicorn killed the workers `timeout` seconds later, again and again;
# gthread is no cure either: a connection that has sent one byte holds a thread until its
# headers end (gunicorn 27, workers/gthread.py). 32 slow clients on 2 workers
# (tests/test_serving.py): sync answered 0 of 5 POSTs within 2 s, gthread with 2x8 threads 0 to
# 3, gevent 5 of 5 in under 20 ms. The price, against sync in the same wrk runs: 15-35 % more
# CPU per request; single-event req/s 0.84 of sync's (median of 41 rounds, half of them between
# 0.70 and 1.02; docs/operations.md).
# Writes still take turns on the database and each 200 still follows its commit.
worker_class = "gevent"
worker_connections = 1000  # open connections per worker; past that, new ones wait to be accepted
# One worker per core, at least two. Writers take turns on the one database file, so more
# workers only wait on each other: 4 workers on 2 cores took 0.38 of the bare route's req/s
# where 2 took 0.50 (bench/RESULTS.md).
workers = int(os.environ.get("WEB_CONCURRENCY", 0)) or max(2, os.cpu_count() or 1)
# The gevent worker gives a request's headers this long to arrive from the connection, then
# closes it: a silent or trickling client is cut off. (Connections are not kept alive: see
# pre_request.) It must stay above 0, or gevent stops timing the headers.
keepalive = 5

# A worker silent this long is stuck (its event loop blocked: a request that only waits, on a
# socket or for the database lock, lets it run), and is replaced. A request waits
# at most the busy timeout for the database (STATS_BUSY_TIMEOUT_MS, 5 s), well inside the
# plugin's 10-20 s timeouts. A long export is not silent: it reports each batch it sends
# (post_worker_init below). A request body must also arrive within this time (pre_request).
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
        extensions["heartbeat"] = _heartbeat(worker)


def _heartbeat(worker):
    """worker.notify, and under gevent a turn for the worker's other connections: an export to
    a fast reader never waits on its socket, so it kept the event loop until it ended.

    sleep(0) is not enough (gevent runs no socket I/O for it): during an export of 100,000
    events (2.4 s), POSTs to the same worker waited about 1 s with it, at most 71 ms with 1 ms,
    which did not slow the export.
    """
    if not _is_gevent(worker):
        return worker.notify
    import gevent

    def beat():
        worker.notify()
        gevent.sleep(0.001)

    return beat


def pre_request(worker, req):
    """One request per connection; under gevent, a body must arrive within `timeout` seconds.

    The connection is closed after each answer, as sync workers do. Kept alive, a connection
    whose next request is already there is served again without the others getting a turn:
    under wrk, 1 % of requests waited 200 ms to 0.8 s (p99), against 20 to 60 ms closed; and
    kept-alive connections stay on the worker that took them, busy or not.
    gevent times the headers (keepalive above), not the body: a client sending a byte a second
    would hold its connection for as long as its body lasts (4 MiB: weeks).
    """
    req.must_close = True
    if _is_gevent(worker) and req.body is not None:
        req.body.reader = _Deadline(req.body.reader, req.unreader.sock, worker.cfg.timeout)


def post_request(worker, req, environ, resp):
    """Stop the request's body deadline: the answer is sent."""
    if req.body is not None and isinstance(req.body.reader, _Deadline):
        req.body.reader.stop()


def _is_gevent(worker):
    return type(worker).__module__ == "gunicorn.workers.ggevent"


class _Deadline:
    """A request body reader that gives up `seconds` after it was made.

    One timer per request (a gevent.Timeout per read costs 5 times as much): when it fires
    during a read, or before the next one, the socket is shut down, so the read ends and the
    client gets no answer (a plugin sends the events again), not the 400 that the app gives a
    body cut short. A body read whole before then is never touched.
    """

    def __init__(self, reader, sock, seconds):
        import gevent

        self.reader, self.sock, self.seconds = reader, sock, seconds
        self.reading = self.expired = False
        self.timer = gevent.get_hub().loop.timer(seconds)
        self.timer.start(self._expire)

    def _expire(self):
        self.expired = True
        if self.reading:
            self._cut()  # wakes the waiting read with an error

    def _cut(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def read(self, size):
        if not self.expired:
            self.reading = True
            try:
                data = self.reader.read(size)
            except OSError:
                if not self.expired:
                    raise
            finally:
                self.reading = False
            if not self.expired:
                return data
        self._cut()
        raise TimeoutError(f"the request body did not arrive within {self.seconds} s")

    def stop(self):
        self.timer.close()


def when_ready(server):
    """Warn once at start when the server listens beyond loopback and reads are open."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also under --chdir
    from capgo_stats.web.access import exposure_warning

    hosts = [address[0] for address in server.cfg.address if isinstance(address, tuple)]
    message = exposure_warning(hosts, os.environ.get("STATS_READ_TOKEN", ""))
    if message:
        server.log.warning(message)
