"""GET /metrics (Prometheus text format) and GET /healthz (for load balancers)."""

import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from app import create_app
from capgo_stats.store.sqlite_migrations import SCHEMA_VERSION
from support.payloads import event

# One sample line of the text exposition format: name, optional labels, value.
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{{{LABEL}(,{LABEL})*\}})? -?[0-9.e+]+$")


def scrape(client) -> dict[str, float]:
    """GET /metrics, check every line is well formed, and return the samples by series."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.get_data(as_text=True)
    assert text.endswith("\n")
    samples = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) capgo_stats_\w+ .+$", line), line
            continue
        assert SAMPLE.match(line), line
        series, value = line.rsplit(" ", 1)
        samples[series] = float(value)
    return samples


def test_metrics_count_stored_events_by_app_and_action(client):
    batch = [event(device_id=f"d{i}") for i in range(3)] + [event(app_id="com.b", action="get")]
    client.post("/stats", data=json.dumps(batch))
    samples = scrape(client)
    assert samples['capgo_stats_events_total{app_id="com.example.app",action="set"}'] == 3
    assert samples['capgo_stats_events_total{app_id="com.b",action="get"}'] == 1


def test_metrics_count_refused_events_by_reason(client):
    client.post("/stats", data=json.dumps([event(action="fly"), event(action="walk"), 3]))
    client.post("/stats", data=b"{not json")
    samples = scrape(client)
    assert samples['capgo_stats_refused_events_total{reason="unknown_action"}'] == 2
    assert samples['capgo_stats_refused_events_total{reason="invalid_event"}'] == 1
    assert samples['capgo_stats_refused_events_total{reason="invalid_json"}'] == 1


def test_metrics_give_the_event_time_of_each_apps_newest_event(client, rows):
    now = int(time.time() * 1000)
    client.post("/stats", json=event(app_id="com.a", timestamp=now - 5000))
    client.post("/stats", json=event(app_id="com.a", action="get", timestamp=now - 9000))
    client.post("/stats", json=event(app_id="com.b", device_id="b1", timestamp=now - 1000))
    samples = scrape(client)
    series = 'capgo_stats_last_event_timestamp_seconds{{app_id="{}"}}'
    assert samples[series.format("com.a")] == (now - 5000) / 1000
    assert samples[series.format("com.b")] == (now - 1000) / 1000


def test_metrics_counters_do_not_drop_when_old_raw_events_are_pruned(app, client, runner):
    now = int(time.time() * 1000)
    old = [event(device_id=f"d{i}", timestamp=now - 40 * 86_400_000) for i in range(3)]
    client.post("/stats", data=json.dumps(old + [event(device_id="new", timestamp=now)]))
    before = scrape(client)
    result = runner.invoke(args=["prune", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert app.extensions["store"].query("SELECT count(*) AS n FROM event") == [{"n": 1}]
    after = scrape(client)
    # the only numbers that may move: the size, and the fold's backlog (the first scrape folds)
    moving = ("capgo_stats_database_size_bytes", "capgo_stats_fold_pending_events")
    assert {k: v for k, v in after.items() if k not in moving} == {
        k: v for k, v in before.items() if k not in moving
    }
    assert before['capgo_stats_events_total{app_id="com.example.app",action="set"}'] == 4


@pytest.mark.sqlite_only
def test_metrics_give_the_database_size_on_disk(app, client):
    client.post("/stats", json=event())
    samples = scrape(client)
    path = app.config["STATS_DB"]
    on_disk = os.path.getsize(path) + os.path.getsize(path + "-wal")
    assert samples["capgo_stats_database_size_bytes"] == on_disk > 0


def test_metrics_never_show_a_device_id_or_custom_id(client):
    client.post("/stats", json=event(device_id="secret-device-7", custom_id="someone@example.com"))
    text = client.get("/metrics").get_data(as_text=True)
    assert "secret-device-7" not in text
    assert "someone@example.com" not in text


def test_metrics_escape_quotes_backslashes_and_newlines_in_label_values(app, client):
    # Refused at ingest today, but a database from before that rule can hold such an app id.
    store, now = app.extensions["store"], int(time.time() * 1000)
    row = (now, now, None, 'com."odd"\\app\nx', "d1", "set", "", "") + (None,) * 6
    store.write([row + (0, 1, None, None, None, None, None)], [], now)
    samples = scrape(client)
    assert 'capgo_stats_events_total{app_id="com.\\"odd\\"\\\\app\\nx",action="set"}' in samples


def test_metrics_on_an_empty_database_describe_every_metric(client):
    text = client.get("/metrics").get_data(as_text=True)
    for name, kind in [
        ("capgo_stats_events_total", "counter"),
        ("capgo_stats_refused_events_total", "counter"),
        ("capgo_stats_last_event_timestamp_seconds", "gauge"),
        ("capgo_stats_database_size_bytes", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text


def test_with_a_read_token_metrics_need_it_and_healthz_does_not(tmp_path):
    app = create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_READ_TOKEN": "t0ken"})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/stats/events.csv").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200


def test_metrics_is_a_plain_get_route_so_the_read_token_rule_covers_it(app):
    [rule] = [r for r in app.url_map.iter_rules() if r.rule == "/metrics"]
    assert rule.methods == {"GET", "HEAD", "OPTIONS"}


# -- /healthz ------------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_healthz_is_ok_when_the_database_takes_writes(client, rows):
    response = client.get("/healthz")
    assert response.status_code == 200
    version = rows("PRAGMA user_version")[0]["user_version"]
    assert version == SCHEMA_VERSION
    assert response.json == {
        "status": "ok",
        "database": "writable",
        "schema_version": version,
        "pending_events": 0,
    }
    assert rows("PRAGMA user_version") == [{"user_version": version}]  # nothing was changed


@pytest.fixture
def quick(tmp_path):
    """An app whose writes give up after 50 ms, and its database path."""
    path = tmp_path / "quick.db"
    app = create_app({"STATS_DB": str(path), "STATS_BUSY_TIMEOUT_MS": 50})
    return app.test_client(), path


def assert_unhealthy(response):
    """A 503 in the one error shape."""
    assert response.status_code == 503
    assert response.json == {
        "error": "storage_unavailable",
        "message": "The database cannot take writes right now.",
    }


def test_healthz_is_503_while_another_writer_holds_the_lock_and_ok_after(quick):
    client, path = quick
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    assert_unhealthy(client.get("/healthz"))
    other.execute("ROLLBACK")
    other.close()
    assert client.get("/healthz").status_code == 200


def test_healthz_waits_for_a_short_write_instead_of_failing(tmp_path):
    path = tmp_path / "busy.db"
    client = create_app({"STATS_DB": str(path), "STATS_BUSY_TIMEOUT_MS": 5000}).test_client()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, other.execute, ("ROLLBACK",))
    release.start()
    response = client.get("/healthz")
    release.join()
    other.close()
    assert response.status_code == 200


def test_healthz_is_503_when_the_database_file_is_gone(quick):
    client, path = quick
    path.unlink()
    assert_unhealthy(client.get("/healthz"))


def test_healthz_is_503_when_the_database_file_is_not_a_database(quick):
    client, path = quick
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    assert_unhealthy(client.get("/healthz"))


def test_healthz_is_503_when_the_database_is_read_only(quick, monkeypatch):
    client, path = quick
    store = client.application.extensions["store"]
    real_connect = store._connect

    def read_only(create=False):
        """What SQLite does when the file is not writable: it opens it read-only."""
        conn = real_connect(create)
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        conn.close()
        return ro

    monkeypatch.setattr(store, "_connect", read_only)
    store._drop_pool()
    assert_unhealthy(client.get("/healthz"))


def test_healthz_never_says_why_to_the_client_but_logs_it(quick, caplog):
    client, path = quick
    path.unlink()
    response = client.get("/healthz")
    assert str(path) not in response.get_data(as_text=True)
    assert any(str(path) in r.getMessage() for r in caplog.records)
