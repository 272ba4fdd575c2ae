"""The one error shape: every error answer is `{"error": code, "message": text}` in JSON.

ApiError carries our own codes; handle_http_error turns every HTTPException (werkzeug's 404, 405
and 500 included) into that shape, keeping the exception's headers (Allow, WWW-Authenticate).
"""

from __future__ import annotations

import json

from flask import Response
from werkzeug.exceptions import HTTPException

from store import StoreUnavailable


class ApiError(HTTPException):
    """An HTTP error with a stable machine-readable code."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.code, self.error = status, error


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
