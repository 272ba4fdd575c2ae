"""POST /stats answered ahead of Flask: the same answers, stores and log lines as the route."""

import json

import pytest
from werkzeug.test import Client

from app import create_app
from support.payloads import BATCH_IOS_8, SINGLE_ANDROID_7, event

KEY = "an-ingest-key-of-16-chars"

BODIES = {
    "one event": json.dumps(SINGLE_ANDROID_7).encode(),
    "a batch": json.dumps(BATCH_IOS_8).encode(),
    "a batch with a refused event": json.dumps([event(), event(action="dance")]).encode(),
    "a refused single event": json.dumps(event(action="dance")).encode(),
    "bad JSON": b'{"action": ',
    "an empty body": b"",
    "an empty array": b"[]",
}


def answer_and_store(wsgi, app, body: bytes, query: str = "") -> tuple:
    """Status, content type, JSON body, then the stored events and refusal tallies."""
    response = Client(wsgi).post(f"/stats{query}", data=body)
    store = app.extensions["store"]
    events = store.query("SELECT device_id, action, version_name FROM event ORDER BY id")
    refused = store.query("SELECT reason, action, count FROM refusal ORDER BY reason")
    return response.status_code, response.content_type, response.get_json(), events, refused


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("query", ["", f"?key={KEY}", "?key=wrong"], ids=["no key", "key", "bad"])
def test_the_fast_path_answers_and_stores_as_the_route_does(tmp_path, body, query):
    settings = {"STATS_INGEST_KEY": KEY} if query else {}
    fast = create_app({"STATS_DB": str(tmp_path / "fast.db"), **settings})
    route = create_app({"STATS_DB": str(tmp_path / "route.db"), **settings})
    by_fast = answer_and_store(fast.wsgi_app, fast, body, query)
    by_route = answer_and_store(route.wsgi_app.__wrapped__, route, body, query)
    assert by_fast == by_route


def test_an_event_taken_by_the_fast_path_is_logged_like_the_routes(tmp_path, caplog):
    app = create_app({"STATS_DB": str(tmp_path / "x.db")})
    with caplog.at_level("INFO", logger="capgo_stats.request"):
        for wsgi in (app.wsgi_app, app.wsgi_app.__wrapped__):  # the fast path, the route
            Client(wsgi).post("/stats", data=json.dumps(BATCH_IOS_8))
    lines = [r.getMessage().split(" ") for r in caplog.records]
    n = len(BATCH_IOS_8)
    assert [line[:3] + line[4:] for line in lines] == [
        ["POST", "/stats", "200", f"accepted={n}", "refused=0"]
    ] * 2
