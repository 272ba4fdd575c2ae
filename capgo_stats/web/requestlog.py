"""One log line per request: method, route, status, duration, and events accepted/refused.

It never holds the query string (it may carry a key) nor a device id or custom id: a request
that matched a route is logged by the route's pattern (/stats/devices/<id>), one that did not by
its path with every segment that no route spells out replaced by `*`. Bodies are never logged.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask.logging import has_level_handler

log = logging.getLogger("capgo_stats.request")
STARTED = "capgo_stats.started"  # the WSGI environ key of the request's arrival time
# Werkzeug's development server logs each request, query string included, as
# '127.0.0.1 - - [26/Nov/2026 09:08:21] "GET /stats?key=... HTTP/1.1" 200 -': ours replaces it.
WERKZEUG_REQUEST_LINE = re.compile(r'^\S+ - - \[[^\]]*\] "')


def init_app(app: Flask) -> None:
    """Set the capgo_stats log level from STATS_LOG_LEVEL and log every request of the app."""
    parent = logging.getLogger("capgo_stats")
    parent.setLevel(app.config["STATS_LOG_LEVEL"])  # checked by settings.py
    if not has_level_handler(parent):  # nothing configured (flask run, gunicorn): use stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        parent.addHandler(handler)
    werkzeug = logging.getLogger("werkzeug")
    if hide_werkzeug_request_line not in werkzeug.filters:
        werkzeug.addFilter(hide_werkzeug_request_line)
    app.wsgi_app = _timed(app.wsgi_app)
    app.after_request(_log_request)


def hide_werkzeug_request_line(record: logging.LogRecord) -> bool:
    """Drop the development server's own request line, which shows the query string."""
    return not (
        record.levelno == logging.INFO
        and isinstance(record.msg, str)
        and WERKZEUG_REQUEST_LINE.match(record.msg)
    )


def _timed(wsgi_app: Callable) -> Callable:
    """Wrap a WSGI app to note when each request arrives (cheaper than a before_request hook)."""

    def timed(environ: dict, start_response: Callable) -> Any:
        environ[STARTED] = time.perf_counter()
        return wsgi_app(environ, start_response)

    return timed


def _log_request(response: Response) -> Response:
    """Log the request's line once the answer is ready (before a streamed body is sent)."""
    if log.isEnabledFor(logging.INFO):
        req = request._get_current_object()  # one proxy lookup instead of four
        environ = req.environ
        ms = (time.perf_counter() - environ.get(STARTED, time.perf_counter())) * 1000
        rule = req.url_rule
        path = rule.rule if rule is not None else _masked(req.path)
        args = (environ["REQUEST_METHOD"], path, response.status_code, ms)
        counts = g.get("events")
        msg = "%s %s %s %.1fms" if counts is None else "%s %s %s %.1fms accepted=%d refused=%d"
        # makeRecord + handle, not log.info: skips the stack walk that finds the caller's line.
        log.handle(
            log.makeRecord(log.name, logging.INFO, __file__, 0, msg, args + (counts or ()), None)
        )
    return response


def _masked(path: str) -> str:
    """A path that matched no route, with every segment no route spells out shown as `*`."""
    known = {
        segment
        for rule in current_app.url_map.iter_rules()
        for segment in rule.rule.split("/")
        if "<" not in segment
    }
    return "/".join(s if s in known else "*" for s in path[:200].split("/"))
