"""Who may call what: the ingest key on POST /stats, the read token on every other route.

Also the limit on guessing the read token (429 for a client address after too many wrong
tokens), the start-up warnings for a server that others can reach while its reads are open and
for a short token or key, and the draining of a refused body, so that the client sees our
answer rather than a reset.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import click
from flask import Flask, current_app, request
from werkzeug.datastructures import WWWAuthenticate

from capgo_stats.errors import ApiError

log = logging.getLogger("capgo_stats")

# Routes anyone may call even when STATS_READ_TOKEN is set, by their rule: every other route
# needs the token, so a route added later is protected unless it is named here. /stats is the
# plugin's (POST takes the ingest key instead); /healthz is for load balancers and uptime
# checks, which carry no token, and tells nothing but "the database takes writes".
INGEST_ROUTE = "/stats"
OPEN_ROUTES = frozenset({INGEST_ROUTE, "/healthz"})

# An oversized or refused body is read and dropped up to this size before we answer: a server
# that closes a socket with unread data sends a reset, and the client never sees our answer.
DRAIN_LIMIT = 16 * 1024 * 1024

# Guessing the read token: a client address that sent more than MAX_FAILURES wrong tokens within
# FAILURE_WINDOW seconds gets 429 on every read until the window that began with its first wrong
# token has passed (a 4-digit token fell after 4,857 tries in 1.9 s without it). The table is in
# memory, per server process, of at most MAX_CLIENTS addresses (the oldest dropped), and never
# stored or logged. POST /stats is never limited: the plugin treats a 429 as its own signal.
MAX_FAILURES = 10
FAILURE_WINDOW = 60
MAX_CLIENTS = 10_000

# A read token or ingest key shorter than this is warned about at start: it can be guessed.
MIN_SECRET_LENGTH = 16


class Failures:
    """Wrong read tokens per client address in the current window: a small bounded table."""

    def __init__(self, size: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic):
        self.size, self.clock = size, clock
        self._table: OrderedDict[str, tuple[float, int]] = OrderedDict()  # (window start, n)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many addresses the table holds."""
        return len(self._table)

    def record(self, address: str) -> None:
        """Count one wrong token from address; its window begins with its first."""
        now = self.clock()
        with self._lock:
            start, count = self._table.pop(address, (now, 0))
            if now - start >= FAILURE_WINDOW:
                start, count = now, 0
            self._table[address] = (start, count + 1)  # now the newest
            while len(self._table) > self.size:
                self._table.popitem(last=False)

    def retry_after(self, address: str) -> int | None:
        """Seconds until address may read again, None when it may now."""
        with self._lock:
            start, count = self._table.get(address, (0.0, 0))
        left = start + FAILURE_WINDOW - self.clock()
        return math.ceil(left) if count > MAX_FAILURES and left > 0 else None


def check_access() -> None:
    """Before each request: the ingest key on POST /stats, the read token everywhere else."""
    rule, config = request.url_rule, current_app.config
    if rule is None:  # no route matched: the 404/405 answer tells nothing
        return
    if rule.rule == INGEST_ROUTE and request.method == "POST":
        key = config["STATS_INGEST_KEY"]
        if key and not _same_secret(request.args.get("key", ""), key):
            drain_body()
            raise ApiError(
                403,
                "invalid_key",
                "This server takes events only with ?key=<STATS_INGEST_KEY> in statsUrl.",
            )
    elif rule.rule not in OPEN_ROUTES and config["STATS_READ_TOKEN"]:
        check_read_token(config["STATS_READ_TOKEN"])


# What a 401 asks for: a Bearer token, or Basic (so a browser shows its login box).
CHALLENGES = [str(WWWAuthenticate(kind, {"realm": "capgo-stats"})) for kind in ("bearer", "basic")]


def check_read_token(token: str) -> None:
    """A read route: 429 for an address that guessed too often, 401 for a wrong token."""
    failures: Failures = current_app.extensions["read_failures"]
    address = request.remote_addr or ""
    wait = failures.retry_after(address)
    if wait is not None:
        raise ApiError(
            429,
            "too_many_requests",
            "Too many wrong read tokens from this address: retry after"
            f" {wait} s with the right STATS_READ_TOKEN.",
            headers=[("Retry-After", str(wait))],
        )
    given = _read_credential()
    if not _same_secret(given, token):
        if given:  # a browser's first request carries none: that is no guess
            failures.record(address)
        raise ApiError(
            401,
            "unauthorized",
            "Send the read token as the header Authorization: Bearer <STATS_READ_TOKEN>"
            " (in a browser: any user name, the token as password).",
            # Basic as well, so a browser asks for it and the dashboard works as is.
            headers=[("WWW-Authenticate", challenge) for challenge in CHALLENGES],
        )


def _read_credential() -> str:
    """The read token a client sent: `Bearer <token>`, or a Basic password (from a browser)."""
    auth = request.authorization
    if auth is None:
        return ""
    if auth.type == "bearer":
        return auth.token or ""
    return (auth.password or "") if auth.type == "basic" else ""


def _same_secret(given: str, expected: str) -> bool:
    """Compare a secret in constant time, so timing tells nothing of its value."""
    return hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """True when an address to listen on only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_warning(hosts: list[str], read_token: str) -> str | None:
    """The start-up warning for a server that others can reach while reads are open."""
    exposed = [host for host in hosts if not is_loopback(host)]
    if read_token or not exposed:
        return None
    return (
        f"listening on {', '.join(exposed)} without STATS_READ_TOKEN: anyone who can reach"
        " this port can read your stats. Set STATS_READ_TOKEN, or listen on 127.0.0.1."
    )


def init_app(app: Flask) -> None:
    """Check access before every request; warn of short secrets and an exposed `flask run`."""
    app.extensions["read_failures"] = Failures()
    app.before_request(check_access)
    for message in short_secret_warnings(app.config):
        log.warning(message)
    warn_if_flask_run_is_exposed(app)


def short_secret_warnings(config: dict) -> list[str]:
    """A warning for each of the read token and ingest key that is set but short."""
    return [
        f"{name} is {len(config[name])} characters: a short secret can be guessed. Use"
        f" {MIN_SECRET_LENGTH} or more random characters, e.g. the output of"
        " python3 -c 'import secrets; print(secrets.token_urlsafe(24))'."
        for name in ("STATS_READ_TOKEN", "STATS_INGEST_KEY")
        if 0 < len(config[name]) < MIN_SECRET_LENGTH
    ]


def warn_if_flask_run_is_exposed(app: Flask) -> None:
    """Under `flask run --host ...`, warn when the host is reachable and reads are open."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name != "run" or "host" not in ctx.params:
        return
    message = exposure_warning([ctx.params["host"]], app.config["STATS_READ_TOKEN"])
    if message:
        log.warning(message)


def drain_body() -> None:
    """Read and drop what is left of the request body, up to DRAIN_LIMIT bytes."""
    length = request.content_length
    if length is None and not request.environ.get("wsgi.input_terminated"):
        return  # no length and no end marker: nothing we can read safely
    left = DRAIN_LIMIT if length is None else length
    if left > DRAIN_LIMIT:
        return  # too big to be worth it: the client gets a reset
    stream = request.environ["wsgi.input"]
    try:
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):
        return  # the client went away
