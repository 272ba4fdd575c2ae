"""The card's route: POST /stats takes one event or a batch, as every plugin version sends them.

GET /stats is the liveness check Capgo's receiver answers too. Each event is checked by
protocol.validate; the accepted rows and the refusal tallies go to the store in one transaction,
committed before we answer (docs/api.md, "POST /stats", gives the answers and why).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from capgo_stats import protocol
from capgo_stats.errors import ApiError
from capgo_stats.store import StoreUnavailable
from capgo_stats.web.access import drain_body
from capgo_stats.web.context import get_store, setting

bp = Blueprint("ingest", __name__)

OK_BODY = b'{"status": "ok"}'


@bp.get("/stats")
def liveness() -> dict:
    """GET on the stats URL: a liveness check, as Capgo answers it."""
    return {"status": "ok"}


@bp.post("/stats")
def ingest() -> Any:
    """POST /stats: store one event or a batch, answer per the plugin's protocol."""
    now = protocol.now_ms()
    try:
        items, is_batch = protocol.parse_body(_read_body())
    except RequestEntityTooLarge:
        drain_body()
        limit = setting("STATS_MAX_BODY")
        _refuse_body(now, "body_too_large", f"The body is over {limit} bytes (STATS_MAX_BODY).")
        raise ApiError(413, "body_too_large", f"The body is over {limit} bytes.") from None
    except ApiError as e:
        _refuse_body(now, e.error, e.message)
        raise

    extensions = current_app.extensions
    actions, app_ids = extensions["actions"], extensions["app_ids"]
    secret = setting("STATS_HASH_SECRET")
    rows, refusals, results = [], [], []
    for index, item in enumerate(items):
        outcome = protocol.validate(item, actions, now, app_ids=app_ids, secret=secret)
        if isinstance(outcome, protocol.Refusal):
            refusals.append(outcome)
            results.append(
                {
                    "index": index,
                    "status": "error",
                    "error": outcome.error,
                    "message": outcome.message,
                }
            )
        else:
            rows.append(outcome)
            results.append({"index": index, "status": "ok"})
    _write(rows, refusals, now)
    if is_batch:
        if not refusals:  # the common answer, prebuilt once per batch size: the hot path
            return Response(_all_ok(len(items)), mimetype="application/json")
        return {"status": "ok", "results": results}
    if refusals:
        raise ApiError(400, refusals[0].error, refusals[0].message)
    return Response(OK_BODY, mimetype="application/json")  # prebuilt: the hot path


@functools.lru_cache(maxsize=protocol.MAX_BATCH + 1)
def _all_ok(size: int) -> bytes:
    """The answer to a batch of `size` events that were all stored."""
    results = [{"index": index, "status": "ok"} for index in range(size)]
    return json.dumps({"status": "ok", "results": results}).encode()


def _write(rows: list, refusals: list, now: int) -> None:
    """Write to the store, or answer 503 so the plugin keeps the events and resends them."""
    try:
        get_store().write(rows, refusals, now)
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


def _refuse_body(now: int, error: str, message: str) -> None:
    """Tally a body we could not read as events (no app or action is known)."""
    _write([], [protocol.Refusal(error, message)], now)
