"""Ceilings for single-event ingest, for bench/run.py: the real app with its storage changed.

Not a way to run capgo-stats. Served beside the real app under the same gunicorn settings, they
show how much of the bare route's speed is left for storing an event, and what leaving the
design card would buy:
- `off`: every request is parsed, validated, logged and answered as usual, nothing is written;
- `plain`: the same, with one INSERT per request into a table without indexes or rollups, in
  its own transaction: the cheapest write SQLite offers that is on disk before the answer;
- `spool`: a sketch, not shipped. The Flask route appends each request's validated rows to a
  spool file per worker (one write(2), as durable as a WAL commit with synchronous=NORMAL) and
  folds the spool into the store, rollups and all, every SPOOL_FOLD events;
- `spool-wsgi`: the same spool, with POST /stats answered by a plain WSGI function ahead of
  Flask, as the card's "one Flask route" would not allow.
The sketches lack what shipping them would need: folding the spools of crashed workers, folding
before every read, and answering 503 when the fold, not the request, meets a full or read-only
database.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app  # noqa: E402
from capgo_stats import protocol  # noqa: E402
from capgo_stats.store import SQLiteStore  # noqa: E402
from capgo_stats.web.ingest import OK_BODY  # noqa: E402

PLAIN = "plain_event"
SPOOL_FOLD = 256
log = logging.getLogger("capgo_stats.request")


def write_nothing(self: SQLiteStore, rows: list, refusals: list, now_ms: int) -> None:
    """Store.write with the storage switched off."""


def write_plain(self: SQLiteStore, rows: list, refusals: list, now_ms: int) -> None:
    """Store.write cut to one plain INSERT per event, through the same transaction helper."""
    columns = ", ".join(protocol.COLUMNS)
    with self.transaction() as conn:
        conn.executemany(
            f"INSERT INTO {PLAIN} ({columns}) VALUES ({', '.join('?' * len(protocol.COLUMNS))})",
            rows,
        )


class Spool:
    """A worker's spool file of validated rows, folded into the store in batches."""

    def __init__(self, flask_app: Flask):
        self.store: SQLiteStore = flask_app.extensions["store"]
        self.actions = flask_app.extensions["actions"]
        self.path = f"{self.store.path}.spool-{os.getpid()}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.pending = 0

    def take(self, body: bytes) -> None:
        """Validate a request body, append its rows, and fold every SPOOL_FOLD events."""
        now = protocol.now_ms()
        items, _ = protocol.parse_body(body)
        rows = [protocol.validate(i, self.actions, now, app_ids=None, secret="") for i in items]
        os.write(self.fd, json.dumps(rows).encode() + b"\n")
        self.pending += len(rows)
        if self.pending >= SPOOL_FOLD:
            self.fold()

    def fold(self) -> None:
        """Insert every spooled row in one transaction (the trigger keeps the rollups)."""
        with open(self.path, "rb") as f:
            rows = [tuple(row) for line in f for row in json.loads(line)]
        self.store.write(rows, [], protocol.now_ms())
        os.ftruncate(self.fd, 0)
        self.pending = 0


def spool_route(flask_app: Flask) -> Flask:
    """The real app, with the ingest route's body going to a spool."""
    spool = Spool(flask_app)

    def ingest() -> Response:
        spool.take(request.get_data(cache=False))
        return Response(OK_BODY, mimetype="application/json")

    flask_app.view_functions["ingest"] = ingest
    return flask_app


def spool_wsgi(flask_app: Flask) -> Callable:
    """A WSGI function answering POST /stats from a spool, handing the rest to Flask."""
    spool = Spool(flask_app)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(OK_BODY)))]

    def wsgi(environ: dict, start_response: Callable) -> Any:
        if environ["PATH_INFO"] != "/stats" or environ["REQUEST_METHOD"] != "POST":
            return flask_app(environ, start_response)
        started = time.perf_counter()
        spool.take(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", headers)
        ms = (time.perf_counter() - started) * 1000
        log.info("POST /stats 200 %.1fms accepted=1 refused=0", ms)  # as the app logs it
        return [OK_BODY]

    return wsgi


def create_app(storage: str) -> Flask | Callable:
    """The real app, with its storage as `storage` says: off, plain, spool or spool-wsgi."""
    if storage in ("off", "plain"):
        SQLiteStore.write = {"off": write_nothing, "plain": write_plain}[storage]
    flask_app = app.create_app()
    if storage == "plain":
        with flask_app.extensions["store"].transaction() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {PLAIN} ({', '.join(protocol.COLUMNS)})")
    if storage == "spool":
        return spool_route(flask_app)
    if storage == "spool-wsgi":
        return spool_wsgi(flask_app)
    return flask_app
