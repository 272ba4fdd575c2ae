"""Who may call what: the ingest key on POST /stats, the read token on every other route.

Also the start-up warning for a server that others can reach while its reads are open, and
the draining of a refused body, so that the client sees our answer rather than a reset.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

import click
from flask import Flask, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

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
    elif rule.rule not in OPEN_ROUTES:
        token = config["STATS_READ_TOKEN"]
        if token and not _same_secret(_read_credential(), token):
            raise Unauthorized(
                "Send the read token as the header Authorization: Bearer <STATS_READ_TOKEN>"
                " (in a browser: any user name, the token as password).",
                # Basic as well, so a browser asks for it and the dashboard works as is.
                www_authenticate=[
                    WWWAuthenticate("bearer", {"realm": "capgo-stats"}),
                    WWWAuthenticate("basic", {"realm": "capgo-stats"}),
                ],
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
    """Check access before every request, and warn when `flask run` is exposed."""
    app.before_request(check_access)
    warn_if_flask_run_is_exposed(app)


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
