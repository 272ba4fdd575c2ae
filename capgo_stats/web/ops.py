"""The ops routes: the CSV export, Prometheus metrics, the health check and the API description."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app

from capgo_stats import fold
from capgo_stats.errors import ApiError
from capgo_stats.render import export, prometheus
from capgo_stats.store import StoreUnavailable
from capgo_stats.web.context import (
    get_store,
    query_filters,
    refuse_nul_in_query,
    start_read_deadline,
)

bp = Blueprint("ops", __name__)
bp.before_request(refuse_nul_in_query)

# The OpenAPI description of every route, served as it is in the repository.
OPENAPI = Path(__file__).resolve().parents[1] / "openapi.json"


@bp.get("/stats/events.csv")
def events_csv() -> Response:
    """GET /stats/events.csv: the matching events as CSV (export format 1), streamed."""
    chunks = export.chunks(get_store(), query_filters(), "csv")
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


@bp.get("/metrics")
def metrics_text() -> Response:
    """GET /metrics: stored and refused events, last arrival, database size, for Prometheus."""
    store = get_store()
    pending = fold.before_read(store)  # the backlog as found, before this read folded it
    start_read_deadline()
    text = prometheus.render({**store.metrics(), "pending": pending})
    return Response(text, content_type=prometheus.CONTENT_TYPE)


@bp.get("/healthz")
def healthz() -> Any:
    """GET /healthz: 200 when the database answers and takes writes, else 503; and how many
    events wait for the fold."""
    try:
        store = get_store()
        version = store.check_writable()
        pending = store.pending()
    except StoreUnavailable:
        raise ApiError(
            503, "storage_unavailable", "The database cannot take writes right now."
        ) from None
    return {
        "status": "ok",
        "database": "writable",
        "schema_version": version,
        "pending_events": pending,
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """GET /openapi.json: the OpenAPI 3.1 description of every route, kept in the repository."""
    return Response(OPENAPI.read_bytes(), mimetype="application/json")
