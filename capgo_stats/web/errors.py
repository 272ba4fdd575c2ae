"""The one error handler: every error answer is `{"error": code, "message": text}` in JSON.

It answers our ApiError (every error answer of ours, with its headers), werkzeug's own HTTP
errors (404, 405, 413, 500...) keeping their headers (Allow), StoreUnavailable (a read
that met a missing or locked database) and ReadTimeout (a read stopped at its deadline).
"""

from __future__ import annotations

import json

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from capgo_stats.errors import ApiError
from capgo_stats.store import ReadTimeout, StoreUnavailable

UNREADABLE = "The database cannot be read right now. Retry later."
TOO_LONG = (
    "This read took longer than STATS_READ_TIMEOUT_MS ({ms} ms) and was stopped: narrow the"
    " range (since, until) or filter by app_id (and platform)."
)


def error_response(
    status: int, error: str, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    """The one JSON error body every error answer uses."""
    return Response(
        json.dumps({"error": error, "message": message}),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def handle_error(e: Exception) -> Response:
    """Answer an ApiError, an HTTPException (500 included), StoreUnavailable or ReadTimeout in
    the shape."""
    if isinstance(e, ReadTimeout):
        ms = current_app.config["STATS_READ_TIMEOUT_MS"]
        e = ApiError(503, "read_timeout", TOO_LONG.format(ms=ms))
    if isinstance(e, ApiError):
        return error_response(e.status, e.error, e.message, e.headers)
    if isinstance(e, StoreUnavailable):
        return error_response(503, "storage_unavailable", UNREADABLE)
    assert isinstance(e, HTTPException)
    if e.code == 500:
        # The traceback is logged by Flask; the client learns nothing of our internals.
        error, message = "internal_error", "The server hit an unexpected error."
    else:
        error = (e.name or "error").lower().replace(" ", "_")
        message = e.description or e.name
    response = e.get_response()
    body = error_response(e.code or 500, error, message)
    response.data, response.content_type = body.data, body.content_type
    return response


def init_app(app: Flask) -> None:
    """Send every error answer of the app through handle_error."""
    for kind in (ApiError, HTTPException, StoreUnavailable, ReadTimeout):
        app.register_error_handler(kind, handle_error)
