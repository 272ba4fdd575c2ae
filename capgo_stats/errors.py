"""ApiError: the one error type behind the one error shape, `{"error": code, "message": text}`.

Raised wherever an answer is known to be an error (protocol, filters, reports, routes); the web
layer's one handler (web/errors.py) turns it, werkzeug's own HTTP errors and StoreUnavailable
into that shape. Plain Python: the modules that raise it know nothing of HTTP but the status.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answer: its HTTP status, a stable machine-readable code and a human message.

    `param` names the query parameter (or command option) at fault, when there is one, so the
    CLI can point at its own option instead; `headers` go with the answer (WWW-Authenticate on a
    401, Retry-After on a 429).
    """

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ):
        super().__init__(message)
        self.status, self.error, self.message, self.param = status, error, message, param
        self.headers = headers or []


def invalid_filter(name: str, message: str) -> ApiError:
    """A 400 for a query parameter we cannot use: `message` says how to fix it."""
    return ApiError(400, "invalid_filter", message, param=name)
