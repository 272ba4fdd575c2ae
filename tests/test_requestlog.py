"""The request log: one line per request that helps, and never a key, device id or custom id."""

import json
import logging
import re
import sqlite3

import pytest

from app import create_app
from capgo_stats.settings import SettingError
from capgo_stats.web import requestlog
from support.payloads import event


def request_lines(caplog) -> list[str]:
    """The request log lines captured so far."""
    return [r.getMessage() for r in caplog.records if r.name == "capgo_stats.request"]


def test_each_request_logs_one_line_with_method_route_status_and_duration(client, caplog):
    client.get("/stats/counts?app_id=com.example.app")
    [line] = request_lines(caplog)
    assert re.fullmatch(r"GET /stats/counts 200 \d+\.\dms", line)


def test_the_query_string_is_never_logged(client, caplog):
    client.get("/stats/counts?key=s3cret&app_id=com.example.app")
    client.get("/stats/events.csv?key=s3cret")
    assert request_lines(caplog)
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_an_ingest_line_counts_the_events_accepted_and_refused(client, caplog):
    client.post("/stats", data=json.dumps([event(), event(device_id="b"), event(action="fly")]))
    client.post("/stats", data=b"not json")
    first, second = request_lines(caplog)
    assert re.fullmatch(r"POST /stats 200 \d+\.\dms accepted=2 refused=1", first)
    assert re.fullmatch(r"POST /stats 400 \d+\.\dms accepted=0 refused=1", second)


def test_a_503_line_claims_no_event_accepted(tmp_path, caplog):
    path = tmp_path / "x.db"
    client = create_app({"STATS_DB": str(path), "STATS_BUSY_TIMEOUT_MS": 50}).test_client()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    client.post("/stats", json=event())
    other.execute("ROLLBACK")
    other.close()
    [line] = request_lines(caplog)
    assert re.fullmatch(r"POST /stats 503 \d+\.\dms", line)


def test_an_unexpected_error_is_logged_with_its_500(app, client, caplog, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["store"], "counts", explode)
    app.testing = False
    client.get("/stats/counts")
    assert re.fullmatch(r"GET /stats/counts 500 \d+\.\dms", request_lines(caplog)[-1])


DEVICE, CUSTOM = "0f673663-459a-44c0-a7f5-613f2a4af3ab", "someone@example.com"


@pytest.mark.parametrize(
    "body",
    [
        event(device_id=DEVICE, custom_id=CUSTOM),
        [event(device_id=DEVICE, custom_id=CUSTOM, action="fly")],
        event(device_id=DEVICE, custom_id=CUSTOM, is_prod="yes"),
        event(device_id=DEVICE.upper(), custom_id=CUSTOM, version_name=1),
    ],
)
def test_a_device_id_or_custom_id_in_a_body_never_reaches_the_log(client, caplog, body):
    caplog.set_level(logging.DEBUG)
    client.post("/stats", data=json.dumps(body))
    client.get("/stats/counts")
    text = "\n".join(r.getMessage() for r in caplog.records).lower()
    assert request_lines(caplog)
    assert DEVICE not in text
    assert CUSTOM not in text


def test_a_route_with_an_id_in_its_path_is_logged_by_its_pattern(app, caplog):
    client = app.test_client()
    client.post("/stats", json=event(device_id=DEVICE))
    client.get(f"/stats/devices/{DEVICE}")
    assert request_lines(caplog)[-1].startswith("GET /stats/devices/<device_id> 200 ")


def test_a_path_that_matches_no_route_is_logged_with_unknown_segments_masked(app, caplog):
    client = app.test_client()
    client.get(f"/stats/devices/{DEVICE}/")
    client.delete(f"/stats/devices/{DEVICE}")
    [missing, wrong_method] = request_lines(caplog)
    assert missing.startswith("GET /stats/devices/*/ 404 ")
    assert wrong_method.startswith("DELETE /stats/devices/* 405 ")


def test_stats_log_level_warning_silences_the_request_lines(tmp_path, caplog):
    app = create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_LOG_LEVEL": "warning"})
    app.test_client().get("/stats")
    assert request_lines(caplog) == []


def test_a_bad_stats_log_level_stops_the_app_from_starting_with_a_clear_message(tmp_path):
    with pytest.raises(SettingError, match="STATS_LOG_LEVEL must be one of DEBUG, INFO"):
        create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_LOG_LEVEL": "loud"})


def test_the_development_servers_own_request_line_is_dropped_but_not_its_other_lines():
    def record(level, msg):
        return logging.LogRecord("werkzeug", level, __file__, 1, msg, None, None)

    line = '127.0.0.1 - - [26/Nov/2026 09:08:21] "GET /stats/counts?key=s3cret HTTP/1.1" 200 -'
    assert not requestlog.hide_werkzeug_request_line(record(logging.INFO, line))
    assert requestlog.hide_werkzeug_request_line(record(logging.INFO, " * Running on http://x"))
    assert requestlog.hide_werkzeug_request_line(record(logging.ERROR, line))
