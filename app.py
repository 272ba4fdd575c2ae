"""capgo-stats: a self-hosted receiver for @capgo/capacitor-updater statistics.

`flask run` finds create_app() here; in production run `gunicorn 'app:create_app()'`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import access
import errors
import events
import export
import filters
import metrics
import requestlog
from errors import ApiError
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

OK_BODY = b'{"status": "ok"}'


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

    app.register_error_handler(HTTPException, errors.handle_http_error)
    app.register_error_handler(StoreUnavailable, errors.handle_store_unavailable)
    app.before_request(access.check_access)
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
    access.warn_if_flask_run_is_exposed(app)
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
        access.drain_body()
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
