"""POST /stats answered ahead of Flask when every event in it is stored: the plugin's hot path.

Flask's request handling (the request context, routing, the hooks, the Response object) cost
as much as validating and storing a single event. So a WSGI wrapper takes the requests that
need none of it: POST /stats with a Content-Length within STATS_MAX_BODY, the right ingest key
(when one is set), and a body whose every event is valid. It stores them as the route does
(the same checks, the same store.write), answers the route's own 200 or 503, and logs the same
line. Anything else (a refusal, a bad body or key, a chunked body, another route) goes to Flask
with the body put back, so every other answer comes from one place, the route.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.wsgi import get_content_length

from capgo_stats import protocol
from capgo_stats.errors import ApiError
from capgo_stats.store import StoreUnavailable
from capgo_stats.web import ingest, requestlog
from capgo_stats.web.access import INGEST_ROUTE, same_secret
from capgo_stats.web.errors import error_response

JSON = [("Content-Type", "application/json")]


def init_app(app: Flask) -> None:
    """Put the fast path in front of the app's WSGI stack."""
    app.wsgi_app = _FastIngest(app, app.wsgi_app)


class _FastIngest:
    """A WSGI app that answers the plugin's valid POST /stats itself, and passes on the rest."""

    def __init__(self, app: Flask, flask_wsgi: Callable):
        self.config, self.extensions = app.config, app.extensions
        self.__wrapped__ = flask_wsgi  # the stack without the fast path (tests compare them)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Take POST /stats with a body of known length and the right key; pass on the rest."""
        if environ["REQUEST_METHOD"] != "POST" or environ.get("PATH_INFO") != INGEST_ROUTE:
            return self.__wrapped__(environ, start_response)
        length, config = get_content_length(environ), self.config
        if length is None or length > config["STATS_MAX_BODY"] or not _keyed(environ, config):
            return self.__wrapped__(environ, start_response)  # 413, 403, or a chunked body
        return self._take(environ, start_response, length)

    def _take(self, environ: dict, start_response: Callable, length: int) -> Iterable[bytes]:
        """Read, check and store the events; hand the request to Flask unless all are valid."""
        started = time.perf_counter()
        try:
            body = environ["wsgi.input"].read(length)
        except (OSError, ValueError):  # cut off (a client too slow, or gone)
            body = b""  # Flask meets the same short body and answers it as the route does
        now = protocol.now_ms()
        try:
            items, is_batch = protocol.parse_body(body)
        except ApiError:
            return self._replay(environ, body, start_response)
        extensions, secret = self.extensions, self.config["STATS_HASH_SECRET"]
        rows, refusals, _ = ingest.check_events(
            items, now, extensions["actions"], extensions["app_ids"], secret
        )
        if refusals or len(body) < length:  # a short body: Flask answers it as cut off
            return self._replay(environ, body, start_response)
        try:
            extensions["store"].write(rows, [], now)
        except StoreUnavailable:
            _log(started, 503, None)
            answer = error_response(503, "storage_unavailable", ingest.UNWRITABLE)
            return answer(environ, start_response)
        data = ingest.all_ok(len(items)) if is_batch else ingest.OK_BODY
        start_response("200 OK", [*JSON, ("Content-Length", str(len(data)))])
        _log(started, 200, (len(rows), 0))
        return [data]

    def _replay(self, environ: dict, body: bytes, start_response: Callable) -> Any:
        """Hand a request whose body was read to Flask, with the body to read again."""
        environ["wsgi.input"] = io.BytesIO(body)
        return self.__wrapped__(environ, start_response)


def _keyed(environ: dict, config: Mapping[str, Any]) -> bool:
    """True when no ingest key is set, or the query string carries it (read as werkzeug reads
    request.args)."""
    key = config["STATS_INGEST_KEY"]
    if not key:
        return True
    try:
        query = environ.get("QUERY_STRING", "").encode("latin-1").decode()
    except UnicodeError:
        return False  # Flask decides
    for name, value in parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"):
        if name == "key":
            return same_secret(value, key)
    return False


def _log(started: float, status: int, counts: tuple[int, int] | None) -> None:
    """The request log's line for POST /stats."""
    if requestlog.log.isEnabledFor(logging.INFO):
        ms = (time.perf_counter() - started) * 1000
        requestlog.log_line("POST", INGEST_ROUTE, status, ms, counts)
