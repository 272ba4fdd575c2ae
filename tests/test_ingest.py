"""POST /stats and GET /stats: what the plugin sends, and what it gets back."""

import json
import sqlite3
import time

import pytest

from capgo_stats import protocol
from support.client import post
from support.payloads import (
    BATCH_IOS_8,
    REMOVE,
    SINGLE_ANDROID_7,
    SINGLE_ELECTRON,
    SINGLE_IOS_4,
    event,
)


def test_a_single_event_from_plugin_7_is_stored_and_answered_ok(client, rows):
    response = post(client, SINGLE_ANDROID_7, content_type="application/json; charset=utf-8")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    [row] = rows()
    assert row["action"] == "set"
    assert row["app_id"] == "com.example.app"
    assert row["version_name"] == "1.2.3"
    assert row["old_version_name"] == "1.2.2"
    assert row["custom_id"] is None
    assert row["is_prod"] == 1 and row["is_emulator"] == 0
    assert row["device_ts"] is None
    assert row["at"] == row["received_at"]


def test_a_batch_from_plugin_8_is_stored_with_per_event_results(client, rows):
    response = post(client, BATCH_IOS_8, content_type="application/json")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "results": [{"index": 0, "status": "ok"}, {"index": 1, "status": "ok"}],
    }
    stored = rows()
    assert [r["action"] for r in stored] == ["app_moved_to_foreground", "app_launch_ready"]
    assert stored[0]["custom_id"] == "user_1"
    assert stored[0]["install_source"] == "app_store"
    assert stored[1]["device_ts"] == 1766000000450
    assert json.loads(stored[1]["metadata"]) == {"duration_ms": "450", "source": "notifyAppReady"}


def test_an_old_ios_plugin_without_flags_gets_defaults_and_a_lowercased_device(client, rows):
    assert post(client, SINGLE_IOS_4).status_code == 200
    [row] = rows()
    assert row["device_id"] == "9b2c4f1a-7d3e-4a5b-8c6d-0e1f2a3b4c5d"
    assert row["is_prod"] == 1
    assert row["is_emulator"] == 0


def test_the_electron_updater_keys_are_ignored_and_its_unicode_kept(client, rows):
    data = json.dumps(SINGLE_ELECTRON, ensure_ascii=False).encode()
    assert post(client, data, content_type="application/json").status_code == 200
    [row] = rows()
    assert row["platform"] == "electron"
    assert row["action"] == "download_fail"
    assert "bundle_id" not in row


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/json"]
)
def test_the_body_is_parsed_whatever_the_content_type(client, rows, content_type):
    response = post(client, SINGLE_ANDROID_7, content_type=content_type)
    assert response.status_code == 200
    assert len(rows()) == 1


def test_a_utf8_bom_before_the_json_is_accepted(client, rows):
    assert post(client, b"\xef\xbb\xbf" + json.dumps(event()).encode()).status_code == 200
    assert len(rows()) == 1


def test_an_empty_array_is_ok_with_empty_results(client, rows):
    response = post(client, [])
    assert response.status_code == 200
    assert response.json == {"status": "ok", "results": []}
    assert rows() == []


def test_a_batch_stores_the_valid_events_even_when_others_fail(client, rows):
    batch = [event(), event(action="not_an_action"), "text", event(app_id="com.other.app")]
    response = post(client, batch)
    assert response.status_code == 200
    results = response.json["results"]
    assert [r["status"] for r in results] == ["ok", "error", "error", "ok"]
    assert results[1]["error"] == "unknown_action"
    assert results[2]["error"] == "invalid_event"
    assert all(r["message"] for r in results if r["status"] == "error")
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert sorted(r["app_id"] for r in rows()) == ["com.example.app", "com.other.app"]


def test_a_batch_of_1000_events_is_accepted(client, rows):
    batch = [event(device_id=f"d{i}") for i in range(1000)]
    assert post(client, batch).status_code == 200
    assert len(rows()) == 1000


def test_a_batch_of_1001_events_is_refused_whole(client, rows):
    response = post(client, [event()] * 1001)
    assert response.status_code == 400
    assert response.json["error"] == "too_many_events"
    assert rows() == []


# (name, body, expected error code): every one is refused with 400 and stores nothing.
BAD_SINGLE_EVENTS = [
    ("no action", event(action=REMOVE), "missing_field"),
    ("empty action", event(action=""), "missing_field"),
    ("no app_id", event(app_id=REMOVE), "missing_field"),
    ("empty app_id from electron", event(app_id=""), "missing_field"),
    ("no device_id", event(device_id=REMOVE), "missing_field"),
    ("unknown action", event(action="launch_rockets"), "unknown_action"),
    ("action is a number", event(action=3), "invalid_field"),
    ("app_id is a list", event(app_id=["com.x"]), "invalid_field"),
    ("app_id is not reverse-domain", event(app_id="my app"), "invalid_field"),
    ("app_id has one segment", event(app_id="myapp"), "invalid_field"),
    ("app_id starts with a dot", event(app_id=".com.example"), "invalid_field"),
    ("device_id too long", event(device_id="x" * 129), "invalid_field"),
    ("version_code is a number", event(version_code=120), "invalid_field"),
    ("custom_id too long", event(custom_id="x" * 1025), "invalid_field"),
    ("is_prod is a string", event(is_prod="true"), "invalid_field"),
    ("is_emulator is a number", event(is_emulator=0), "invalid_field"),
    ("timestamp is a string", event(timestamp="1766000000000"), "invalid_field"),
    ("timestamp is fractional", event(timestamp=1766000000000.5), "invalid_field"),
    ("timestamp is a boolean", event(timestamp=True), "invalid_field"),
    ("metadata is a list", event(metadata=["a"]), "invalid_field"),
    ("metadata value is a number", event(metadata={"duration_ms": 450}), "invalid_field"),
    ("metadata value too long", event(metadata={"k": "v" * 4097}), "invalid_field"),
    ("lone surrogate", b'{"action":"set","app_id":"com.x","device_id":"\\ud800"}', "invalid_field"),
    *(
        (f"NUL in {name}", event(**{name: "1.0\x00"}), "invalid_field")
        for name in protocol.OPTIONAL
    ),
    ("NUL in a metadata value", event(metadata={"k": "\x00"}), "invalid_field"),
    ("not json", b"action=set", "invalid_json"),
    ("truncated json", b'{"action": "set"', "invalid_json"),
    ("empty body", b"", "invalid_json"),
    ("invalid utf-8", b'{"action":"set","app_id":"\xff\xfe"}', "invalid_json"),
    ("NaN literal", b'{"action":"set","app_id":"a","timestamp":NaN}', "invalid_json"),
    ("a string", b'"set"', "invalid_body"),
    ("a number", b"42", "invalid_body"),
    ("null", b"null", "invalid_body"),
    ("wrapped in events", {"events": [event()]}, "missing_field"),
]


@pytest.mark.parametrize(
    "body, code", [c[1:] for c in BAD_SINGLE_EVENTS], ids=[c[0] for c in BAD_SINGLE_EVENTS]
)
def test_a_bad_single_event_gets_a_400_with_its_code_and_nothing_is_stored(
    client, rows, body, code
):
    response = post(client, body)
    assert response.status_code == 400
    assert response.json["error"] == code
    assert set(response.json) == {"error", "message"}
    assert response.json["message"]
    assert rows() == []


@pytest.mark.parametrize(
    "app_id",
    ["io.ionic.starter", "com.my-company.app_2", "ee.forgr.capacitor_go", "COM.Example.App"],
)
def test_every_reverse_domain_app_id_is_accepted(client, rows, app_id):
    assert post(client, event(app_id=app_id)).status_code == 200
    assert rows()[0]["app_id"] == app_id


def test_null_in_an_optional_field_counts_as_absent(client, rows):
    body = event(custom_id=None, is_prod=None, timestamp=None, metadata=None)
    assert post(client, body).status_code == 200
    [row] = rows()
    assert row["custom_id"] is None and row["is_prod"] == 1 and row["device_ts"] is None


def test_a_long_email_custom_id_and_a_file_path_version_are_kept(client, rows):
    email = "a.very.long.name." * 12 + "@example.com"
    version = "1.2.3:public/assets/chunks/vendor-3f2a9c.js"
    assert post(client, event(custom_id=f"  {email} ", version_name=version)).status_code == 200
    [row] = rows()
    assert row["custom_id"] == email
    assert row["version_name"] == version
    assert row["bundle"] == "1.2.3"


def test_a_non_semver_version_build_is_stored_as_sent(client, rows):
    assert post(client, event(version_build="2024.11 (beta) #7")).status_code == 200
    assert rows()[0]["version_build"] == "2024.11 (beta) #7"


def test_every_known_action_is_accepted(client, rows):

    batch = [event(action=a) for a in sorted(protocol.KNOWN_ACTIONS)]
    results = post(client, batch).json["results"]
    assert all(r["status"] == "ok" for r in results)
    assert len(rows()) == 92


def test_extra_actions_from_the_environment_are_accepted(tmp_path, monkeypatch):
    from app import create_app

    monkeypatch.setenv("STATS_EXTRA_ACTIONS", "brand_new_action, another_one")
    app = create_app({"STATS_DB": str(tmp_path / "x.db")})
    client = app.test_client()
    assert post(client, event(action="brand_new_action")).status_code == 200
    assert post(client, event(action="another_one")).status_code == 200
    assert post(client, event(action="third")).status_code == 400


def test_a_plausible_device_timestamp_is_the_event_time(client, rows):
    now = int(time.time() * 1000)
    assert post(client, event(timestamp=now - 3_600_000)).status_code == 200
    [row] = rows()
    assert row["at"] == now - 3_600_000
    assert row["device_ts"] == now - 3_600_000
    assert abs(row["received_at"] - now) < 60_000


@pytest.mark.parametrize(
    "timestamp", [1766000, 0, -5, 4102444800000], ids=["seconds", "zero", "negative", "year 2100"]
)
def test_an_implausible_device_timestamp_falls_back_to_arrival_time(client, rows, timestamp):
    assert post(client, event(timestamp=timestamp)).status_code == 200
    [row] = rows()
    assert row["at"] == row["received_at"]
    assert row["device_ts"] == timestamp


def test_a_device_clock_running_fast_does_not_make_its_events_arrive_from_the_future(client, rows):
    now = int(time.time() * 1000)
    post(client, event(timestamp=now + 23 * 3_600_000))  # one phone's clock, 23 hours ahead
    [row] = rows()
    assert row["at"] == row["received_at"] and row["at"] <= int(time.time() * 1000)
    summary = client.get("/stats/summary?app_id=com.example.app").json
    assert summary["last_event_at"] <= client.get("/stats/summary").json["as_of"]
    last = [line for line in client.get("/metrics").get_data(as_text=True).splitlines()
            if line.startswith("capgo_stats_last_event_timestamp_seconds{")]  # fmt: skip
    assert float(last[0].split()[-1]) <= time.time() + 1


def test_events_of_one_device_in_one_millisecond_that_differ_in_any_field_are_all_kept(
    client, rows
):
    at = int(time.time() * 1000) - 1000
    errors = [
        event(action="webview_resource_error", timestamp=at, metadata={"url": f"https://x/{i}.js"})
        for i in range(5)
    ]
    assert [r["status"] for r in post(client, errors).json["results"]] == ["ok"] * 5
    assert len(rows()) == 5
    assert [r["status"] for r in post(client, errors).json["results"]] == ["ok"] * 5  # a resend
    assert len(rows()) == 5


def test_a_resent_batch_is_answered_ok_and_not_stored_twice(client, rows):
    assert post(client, BATCH_IOS_8).status_code == 200
    again = post(client, BATCH_IOS_8)
    assert again.status_code == 200
    assert [r["status"] for r in again.json["results"]] == ["ok", "ok"]
    assert len(rows()) == 2
    assert client.get("/stats/counts").json["counts"] == [
        {"app_id": "com.example.app", "action": "app_launch_ready", "count": 1},
        {"app_id": "com.example.app", "action": "app_moved_to_foreground", "count": 1},
    ]


def test_events_without_timestamp_are_all_kept(client, rows):
    """Old plugins send no timestamp: two identical sends are two real events."""
    post(client, SINGLE_ANDROID_7)
    post(client, SINGLE_ANDROID_7)
    assert len(rows()) == 2


def test_same_timestamp_for_a_different_action_or_version_is_a_new_event(client, rows):
    post(client, event(timestamp=1766000000000))
    post(client, event(timestamp=1766000000000, action="set_fail"))
    post(client, event(timestamp=1766000000000, version_name="1.2.4"))
    assert len(rows()) == 3


def test_refused_events_are_tallied_by_day_app_reason_and_action(client, rows):
    post(client, [event(action="launch_rockets"), event(action="launch_rockets"), 7])
    post(client, event(app_id=""))
    post(client, b"{not json")
    tally = rows("SELECT app_id, reason, action, count FROM refusal ORDER BY reason, action")
    assert tally == [
        {"app_id": "", "reason": "invalid_event", "action": "", "count": 1},
        {"app_id": "", "reason": "invalid_json", "action": "", "count": 1},
        {"app_id": "", "reason": "missing_field", "action": "set", "count": 1},
        {"app_id": "com.example.app", "reason": "unknown_action", "action": "launch_rockets"}
        | {"count": 2},
    ]
    days = rows("SELECT DISTINCT day FROM refusal")
    assert days == [{"day": time.strftime("%Y-%m-%d", time.gmtime())}]


def test_a_body_over_the_limit_gets_413_json_and_is_tallied(tmp_path, rows):
    from app import create_app
    from capgo_stats.settings import MIN_MAX_BODY

    app = create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_MAX_BODY": MIN_MAX_BODY})
    client = app.test_client()
    response = post(client, [event(device_id=f"d{i}", custom_id="c" * 1000) for i in range(300)])
    assert response.status_code == 413
    assert response.json["error"] == "body_too_large"
    store = app.extensions["store"]
    assert store.query("SELECT count(*) AS n FROM event") == [{"n": 0}]
    assert store.query("SELECT reason FROM refusal") == [{"reason": "body_too_large"}]


def test_a_locked_database_gets_503_and_the_event_is_stored_once_it_is_free(tmp_path):
    from app import create_app

    path = tmp_path / "x.db"
    app = create_app({"STATS_DB": str(path), "STATS_BUSY_TIMEOUT_MS": 50})
    client = app.test_client()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    response = post(client, SINGLE_ANDROID_7)
    assert response.status_code == 503
    assert response.json["error"] == "storage_unavailable"
    other.execute("ROLLBACK")
    assert post(client, SINGLE_ANDROID_7).status_code == 200
    assert other.execute("SELECT count(*) FROM event").fetchone() == (1,)
    other.close()


def test_get_on_the_stats_url_is_a_liveness_check(client):
    response = client.get("/stats")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_app_nav_the_newest_action_of_capgos_receiver_is_stored_and_counted(client, rows):
    assert post(client, event(action="app_nav")).status_code == 200
    assert [r["action"] for r in rows()] == ["app_nav"]
    assert client.get("/stats/counts").json["counts"][0]["action"] == "app_nav"
