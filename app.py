"""capgo-stats: a self-hosted receiver for @capgo/capacitor-updater statistics.

`flask run` finds create_app() here; in production run `gunicorn 'app:create_app()'`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, Unauthorized

import events
import export
import filters
import metrics
import requestlog
from store import DAY_MS, Store, StoreUnavailable

log = logging.getLogger("capgo_stats")

# The OpenAPI description of every route, served as it is in the repository.
OPENAPI = Path(__file__).with_name("openapi.json")

# Every setting, with its default; each can be overridden by the environment variable of the
# same name, or by create_app(test_config).
DEFAULTS: dict[str, Any] = {
    "STATS_DB": "stats.db",
    "STATS_EXTRA_ACTIONS": "",
    "STATS_MAX_BODY": 4 * 1024 * 1024,
    "STATS_BUSY_TIMEOUT_MS": 5000,
    "STATS_DURABLE": False,
    "STATS_RETENTION_DAYS": 0,
    "STATS_MAX_DB_MB": 0,
    "STATS_READ_TOKEN": "",
    "STATS_INGEST_KEY": "",
    "STATS_APP_IDS": "",
    "STATS_HASH_SECRET": "",
    "STATS_LOG_LEVEL": "INFO",
}

# Routes anyone may call even when STATS_READ_TOKEN is set; every other route needs the token,
# so a route added later is protected unless it is named here. /healthz is for load balancers
# and uptime checks, which carry no token, and tells nothing but "the database takes writes".
OPEN_ENDPOINTS = frozenset({"liveness", "ingest", "healthz"})

# An oversized or refused body is read and dropped up to this size before we answer: a server
# that closes a socket with unread data sends a reset, and the client never sees our answer.
DRAIN_LIMIT = 16 * 1024 * 1024

OK_BODY = b'{"status": "ok"}'


class ApiError(HTTPException):
    """An HTTP error with a stable machine-readable code."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.code, self.error = status, error


def _from_env(name: str, default: Any) -> Any:
    """The environment's value for a setting, cast to the type of its default."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise RuntimeError(f"{name} must be a whole number, not {raw!r}") from None
    return raw


def create_app(test_config: dict | None = None) -> Flask:
    """Create the app: settings, database, routes and error handler."""
    app = Flask(__name__)
    app.config.update({name: _from_env(name, default) for name, default in DEFAULTS.items()})
    if test_config:
        app.config.update(test_config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["STATS_MAX_BODY"]
    app.json.sort_keys = False

    store = Store(
        app.config["STATS_DB"],
        busy_timeout_ms=app.config["STATS_BUSY_TIMEOUT_MS"],
        durable=app.config["STATS_DURABLE"],
        max_mb=app.config["STATS_MAX_DB_MB"],
    )
    store.ensure_schema()
    app.extensions["store"] = store
    if app.config["STATS_RETENTION_DAYS"]:
        start_retention(store, app.config["STATS_RETENTION_DAYS"])
    app.extensions["actions"] = events.allowed_actions(app.config["STATS_EXTRA_ACTIONS"])
    app.extensions["app_ids"] = events.names(app.config["STATS_APP_IDS"]) or None

    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(StoreUnavailable, handle_store_unavailable)
    app.before_request(check_access)
    app.add_url_rule("/stats", view_func=liveness, methods=["GET"])
    app.add_url_rule("/stats", view_func=ingest, methods=["POST"])
    app.add_url_rule("/stats/counts", view_func=counts, methods=["GET"])
    # ops: export, monitoring and the API description
    app.add_url_rule("/stats/events.csv", view_func=events_csv, methods=["GET"])
    app.add_url_rule("/metrics", view_func=metrics_text, methods=["GET"])
    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=openapi_document, methods=["GET"])

    import cli
    import views  # the insight routes: JSON reports under /stats/ and the dashboard at /

    cli.init_app(app)
    requestlog.init_app(app)
    app.register_blueprint(views.bp)
    _warn_if_flask_run_is_exposed(app)
    return app


def start_retention(store: Store, days: int) -> None:
    """Prune raw events older than `days` now and then every hour, beside the requests."""

    def prune_forever() -> None:
        while True:
            try:
                deleted = store.prune(events.now_ms() - days * DAY_MS)
                log.info("retention: deleted %d raw events older than %d days", deleted, days)
            except Exception:  # a locked or missing database: try again next hour
                log.exception("retention: prune failed")
            time.sleep(3600)

    threading.Thread(target=prune_forever, name="retention", daemon=True).start()


def get_store() -> Store:
    """The current app's store."""
    return current_app.extensions["store"]


def error_response(status: int, error: str, message: str) -> Response:
    """The one JSON error body every error answer uses."""
    return Response(
        json.dumps({"error": error, "message": message}),
        status=status,
        mimetype="application/json",
    )


def handle_http_error(e: HTTPException) -> Response:
    """Answer every HTTP error, 500 included, as JSON while keeping its headers (Allow...)."""
    if isinstance(e, ApiError):
        error, message = e.error, e.description
    elif e.code == 500:
        # The traceback is logged by Flask; the client learns nothing of our internals.
        error, message = "internal_error", "The server hit an unexpected error."
    else:
        error = (e.name or "error").lower().replace(" ", "_")
        message = e.description or e.name
    response = e.get_response()
    body = error_response(e.code or 500, error, message)
    response.data, response.content_type = body.data, body.content_type
    return response


def handle_store_unavailable(e: StoreUnavailable) -> Response:
    """A read that met a missing database: 503, as for writes, not a 500."""
    return error_response(
        503, "storage_unavailable", "The database cannot be read right now. Retry later."
    )


# -- access ------------------------------------------------------------------------------------


def check_access() -> None:
    """Before each request: the ingest key on POST /stats, the read token everywhere else."""
    endpoint, config = request.endpoint, current_app.config
    if endpoint is None:  # no route matched: the 404/405 answer tells nothing
        return
    if endpoint == "ingest":
        key = config["STATS_INGEST_KEY"]
        if key and not _same_secret(request.args.get("key", ""), key):
            _drain_body()
            raise ApiError(
                403,
                "invalid_key",
                "This server takes events only with ?key=<STATS_INGEST_KEY> in statsUrl.",
            )
    elif endpoint not in OPEN_ENDPOINTS:
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


def _warn_if_flask_run_is_exposed(app: Flask) -> None:
    """Under `flask run --host ...`, warn when the host is reachable and reads are open."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name != "run" or "host" not in ctx.params:
        return
    message = exposure_warning([ctx.params["host"]], app.config["STATS_READ_TOKEN"])
    if message:
        log.warning(message)


def stored_id(field: str, raw: str) -> str | None:
    """A device_id or custom_id from a query, as the store holds it (for look-ups)."""
    return events.stored_id(field, raw, current_app.config["STATS_HASH_SECRET"])


# -- ingest ------------------------------------------------------------------------------------


def liveness() -> dict:
    """GET on the stats URL: a liveness check, as Capgo answers it."""
    return {"status": "ok"}


def ingest() -> Any:
    """POST /stats: store one event or a batch, answer per the plugin's protocol."""
    store, now = get_store(), events.now_ms()
    try:
        items, is_batch = events.parse_body(_read_body())
    except RequestEntityTooLarge:
        _drain_body()
        limit = current_app.config["STATS_MAX_BODY"]
        _refuse_body(now, "body_too_large", f"The body is over {limit} bytes (STATS_MAX_BODY).")
        raise ApiError(413, "body_too_large", f"The body is over {limit} bytes.") from None
    except events.BodyError as e:
        _refuse_body(now, e.code, e.message)
        raise ApiError(400, e.code, e.message) from None

    actions, app_ids = current_app.extensions["actions"], current_app.extensions["app_ids"]
    secret = current_app.config["STATS_HASH_SECRET"]
    rows, refusals, results = [], [], []
    for index, item in enumerate(items):
        outcome = events.validate(item, actions, now, app_ids=app_ids, secret=secret)
        if isinstance(outcome, events.Refusal):
            refusals.append(outcome)
            results.append(
                {
                    "index": index,
                    "status": "error",
                    "error": outcome.code,
                    "message": outcome.message,
                }
            )
        else:
            rows.append(outcome)
            results.append({"index": index, "status": "ok"})
    _write(store, rows, refusals, now)
    if is_batch:
        return {"status": "ok", "results": results}
    if refusals:
        raise ApiError(400, refusals[0].code, refusals[0].message)
    return Response(OK_BODY, mimetype="application/json")  # prebuilt: the hot path


def _write(store: Store, rows: list, refusals: list, now: int) -> None:
    """Write to the store, or answer 503 so the plugin keeps the events and resends them."""
    try:
        store.write(rows, refusals, now)
    except StoreUnavailable:
        raise ApiError(
            503,
            "storage_unavailable",
            "The database cannot take writes right now; the events were not stored. Retry later.",
        ) from None
    g.events = (len(rows), len(refusals))  # for the request's log line


def _read_body() -> bytes:
    """The request body; RequestEntityTooLarge when it is over STATS_MAX_BODY."""
    data = request.get_data(cache=False)
    # werkzeug cuts a chunked body at the limit without an error: reading on tells.
    if request.stream.read(1):
        raise RequestEntityTooLarge()
    return data


def _drain_body() -> None:
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


def _refuse_body(now: int, code: str, message: str) -> None:
    """Tally a body we could not read as events (no app or action is known)."""
    _write(get_store(), [], [events.Refusal(code, message)], now)


# -- reads -------------------------------------------------------------------------------------


def parse_filters() -> dict:
    """The event filters of the query string (see filters.py); a bad value is a 400."""
    try:
        return filters.parse_filters(request.args)
    except filters.FilterError as e:
        raise ApiError(400, "invalid_filter", e.message) from None


def counts() -> dict:
    """GET /stats/counts: how many events each app sent of each action."""
    return {"counts": get_store().counts(parse_filters())}


# -- ops: export, monitoring and the API description ---------------------------------------------


def events_csv() -> Response:
    """GET /stats/events.csv: the matching events as CSV (export format 1), streamed."""
    chunks = export.chunks(get_store(), parse_filters(), "csv")
    heartbeat = current_app.extensions.get("heartbeat")  # set by gunicorn.conf.py
    return Response(
        chunks if heartbeat is None else _beating(chunks, heartbeat),
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="events.csv"',
            "X-Export-Format": str(export.FORMAT_VERSION),
        },
    )


def _beating(chunks: Iterator[str], heartbeat: Callable[[], None]) -> Iterator[str]:
    """Pass the chunks on, telling gunicorn before each that the worker is alive, not stuck."""
    for chunk in chunks:
        heartbeat()
        yield chunk


def metrics_text() -> Response:
    """GET /metrics: stored and refused events, last arrival, database size, for Prometheus."""
    return Response(metrics.render(get_store().metrics()), content_type=metrics.CONTENT_TYPE)


def healthz() -> Any:
    """GET /healthz: 200 when the database answers and takes writes, else 503."""
    try:
        version = get_store().check_writable()
    except StoreUnavailable:
        raise ApiError(
            503, "storage_unavailable", "The database cannot take writes right now."
        ) from None
    return {"status": "ok", "database": "writable", "schema_version": version}


def openapi_document() -> Response:
    """GET /openapi.json: the OpenAPI 3.1 description of every route, kept in the repository."""
    return Response(OPENAPI.read_bytes(), mimetype="application/json")
