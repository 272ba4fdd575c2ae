"""Rollups, retention and the schema migration: reports must not depend on raw events."""

import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from capgo_stats import fold, jobs, protocol
from capgo_stats.store.sqlite_migrations import SCHEMA_VERSION
from support.client import post, post_ok
from support.old_schema import old_database
from support.payloads import event

HOUR, DAY = 3_600_000, 86_400_000
NOW = protocol.now_ms()


def raw_counts(store, since=None, until=None, **eq):
    """Counts straight from raw events: what the rollups must agree with."""
    clauses, params = ["1 = 1"], []
    for name, value in eq.items():
        clauses.append(f"{name} = ?")
        params.append(value)
    if since is not None:
        clauses.append("at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("at < ?")
        params.append(until)
    rows = store.query(
        "SELECT app_id, action, count(*) AS count FROM event"
        f" WHERE {' AND '.join(clauses)} GROUP BY app_id, action",
        params,
    )
    return sorted(rows, key=lambda r: (-r["count"], r["app_id"], r["action"]))


def iso(ms):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


offsets = st.integers(min_value=0, max_value=5 * DAY)
random_events = st.lists(
    st.tuples(
        st.sampled_from(["com.a", "com.b"]),
        st.sampled_from(["set", "set_fail", "app_moved_to_foreground"]),
        st.sampled_from(["ios", "android"]),
        offsets,
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=random_events, since=st.none() | offsets, until=st.none() | offsets)
def test_counts_from_rollups_equal_counts_from_raw_events_for_any_time_range(
    tmp_path_factory, batch, since, until
):
    app = create_app({"STATS_DB": str(tmp_path_factory.mktemp("db") / "s.db")})
    client = app.test_client()
    post_ok(
        client,
        [
            event(app_id=a, action=act, platform=p, device_id=f"d{i}", timestamp=NOW - off)
            for i, (a, act, p, off) in enumerate(batch)
        ],
    )
    since_ms = None if since is None else NOW - since
    until_ms = None if until is None else NOW - until
    query = "&".join(
        f"{name}={iso(ms).replace('+', '%2B')}"
        for name, ms in (("since", since_ms), ("until", until_ms))
        if ms is not None
    )
    got = client.get(f"/stats/counts?{query}").json["counts"]
    assert got == raw_counts(app.extensions["store"], since_ms, until_ms)
    got = client.get(f"/stats/counts?platform=ios&{query}").json["counts"]
    assert got == raw_counts(app.extensions["store"], since_ms, until_ms, platform="ios")


# What device_bundle and device_hour must always hold: a count over the device table.
DEVICES_BY_BUNDLE = (
    "SELECT app_id, platform, prod, coalesce(bundle, '') AS bundle, count(*) AS devices"
    " FROM device GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
)
DEVICES_BY_HOUR = (
    "SELECT app_id, last_seen / 3600000 AS hour, platform, prod, count(*) AS devices"
    " FROM device GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
)


def device_counts(store):
    """device_bundle and device_hour without the zero rows that moves leave behind."""
    return (
        store.query(
            "SELECT app_id, platform, prod, bundle, devices FROM device_bundle"
            " WHERE devices <> 0 ORDER BY 1, 2, 3, 4"
        ),
        store.query(
            "SELECT app_id, hour, platform, prod, devices FROM device_hour"
            " WHERE devices <> 0 ORDER BY 1, 2, 3, 4"
        ),
    )


device_stories = st.lists(
    st.tuples(
        st.sampled_from(["d1", "d2", "d3"]),
        st.sampled_from(["set", "set_fail", "app_moved_to_foreground", "download_complete"]),
        st.sampled_from(["ios", "android"]),
        st.sampled_from(["1.0.0", "1.1.0", ""]),
        st.booleans(),  # is_prod
        st.integers(min_value=0, max_value=3 * DAY),  # how long ago
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stories=device_stories, forget=st.sampled_from([None, "d1", "d2"]))
def test_device_counts_always_equal_a_count_over_the_devices(tmp_path_factory, stories, forget):
    app = create_app({"STATS_DB": str(tmp_path_factory.mktemp("db") / "s.db")})
    client, store = app.test_client(), app.extensions["store"]
    for device, action, platform, version, prod, ago in stories:  # one request each: in order
        post_ok(
            client,
            event(device_id=device, action=action, platform=platform, version_name=version,
                  is_prod=prod, timestamp=NOW - ago),
        )  # fmt: skip
    if forget:
        fold.forget_device(store, [forget], [])
    fold.catch_up(store)
    assert device_counts(store) == (store.query(DEVICES_BY_BUNDLE), store.query(DEVICES_BY_HOUR))


def test_duplicates_and_refused_events_never_reach_the_rollups(client, rows):
    batch = [event(timestamp=NOW - i, device_id=f"d{i}") for i in range(5)]
    post_ok(client, batch)
    post_ok(client, batch)  # resent: stored once
    post(client, [event(action="not_real"), event(app_id="")])
    assert rows("SELECT sum(count) AS n FROM rollup_hour") == [{"n": 5}]
    assert rows("SELECT sum(count) AS n FROM rollup_day") == [{"n": 5}]
    assert rows("SELECT sum(devices) AS n FROM active_day") == [{"n": 5}]


def test_a_device_runs_the_bundle_of_its_latest_event_that_is_not_a_failure(client, rows):
    post_ok(
        client,
        [
            event(action="set", version_name="1.0.0", timestamp=NOW - 50_000),
            event(action="download_complete", version_name="1.1.0", timestamp=NOW - 40_000),
            event(action="set_fail", version_name="1.1.0", timestamp=NOW - 30_000),
            event(action="app_moved_to_foreground", version_name="1.0.0", timestamp=NOW - 20_000),
            # arrives late, but happened first: does not change the current bundle
            event(action="set", version_name="0.9.0", timestamp=NOW - 90_000),
        ],
    )
    [device] = rows("SELECT bundle, bundle_at, first_seen, last_seen FROM device")
    assert device == {
        "bundle": "1.0.0",
        "bundle_at": NOW - 20_000,
        "first_seen": NOW - 90_000,
        "last_seen": NOW - 20_000,
    }


def test_a_set_replacing_another_bundle_counts_an_uninstall_of_the_old_one(client, rows):
    post_ok(
        client,
        [
            event(action="set", version_name="1.1.0", old_version_name="1.0.0"),
            event(action="set", version_name="1.1.0", old_version_name="1.1.0", device_id="b"),
            event(action="set", version_name="1.1.0", old_version_name="", device_id="c"),
        ],
    )
    assert rows("SELECT bundle, count FROM uninstall_day") == [{"bundle": "1.0.0", "count": 1}]


def seed_history(client):
    """Events over the last 40 days, at odd minutes, across two apps."""
    batch = [
        event(
            app_id=("com.a", "com.b")[i % 2],
            action=("set", "set_fail", "app_moved_to_foreground")[i % 3],
            device_id=f"d{i % 7}",
            version_name=("1.0.0", "1.1.0")[i % 2],
            timestamp=NOW - i * 7 * HOUR - i * 61_000,
        )
        for i in range(140)
    ]
    post_ok(client, batch)


def report_views(client):
    """What a user reads: counts over several ranges, aligned and not."""
    queries = ["", "?app_id=com.a", f"?since={iso(NOW - 35 * DAY)}", "?until=2099-01-01"]
    return {q: client.get("/stats/counts" + q).json for q in queries}


def test_prune_deletes_old_raw_events_and_reports_stay_exactly_as_they_were(app, client, rows):
    seed_history(client)
    before = report_views(client)
    deleted = app.extensions["store"].prune(NOW - 10 * DAY, chunk=7)
    assert deleted == rows("SELECT 140 - count(*) AS n FROM event")[0]["n"]
    assert deleted > 90
    assert rows("SELECT min(at) >= ? AS ok FROM event", (NOW - 10 * DAY,)) == [{"ok": 1}]
    assert report_views(client) == before


def test_prune_pauses_between_chunks_so_the_worker_answers_requests_meanwhile(
    app, client, monkeypatch
):
    # Under gevent workers the retention job runs on the requests' event loop: a pause of 0 s
    # would not let it serve sockets, nor tell gunicorn the worker is alive.
    seed_history(client)
    fold.catch_up(app.extensions["store"])  # prune deletes only what the fold has counted
    pauses = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    deleted = app.extensions["store"].prune(NOW - 10 * DAY, chunk=7)
    assert deleted > 90
    assert len(pauses) >= deleted // 7 - 2  # after every full chunk of each of the two apps
    assert min(pauses) > 0


def test_flask_prune_says_how_many_raw_events_it_deleted(app, client, runner, rows):
    seed_history(client)
    kept = rows("SELECT count(*) AS n FROM event WHERE at >= ?", (NOW - 20 * DAY,))[0]["n"]
    result = runner.invoke(args=["prune", "--days", "20"])
    assert result.exit_code == 0, result.output
    assert f"Deleted {140 - kept} raw events older than 20 days" in result.output
    assert rows("SELECT count(*) AS n FROM event") == [{"n": kept}]


def test_flask_prune_needs_days_when_no_retention_is_set(runner):
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 2
    assert "--days" in result.output


def test_flask_prune_refuses_zero_days(runner):
    assert runner.invoke(args=["prune", "--days", "0"]).exit_code == 2


def test_a_version_1_database_is_migrated_with_its_rollups_backfilled(tmp_path):
    path = tmp_path / "old.db"
    stories = [
        event(app_id=("com.a", "com.b")[i % 2],
              action=("set", "set_fail", "download_complete")[i % 3], device_id=f"D{i % 9}",
              version_name=f"1.{i % 4}.0", old_version_name="1.0.0", timestamp=NOW - i * 5 * HOUR)
        for i in range(60)
    ]  # fmt: skip
    old_database(
        path, 1, stories,
        "INSERT INTO refusal VALUES ('2026-11-01', 'com.a', 'unknown_action', 'x', 3)",
    )  # fmt: skip

    app = create_app({"STATS_DB": str(path)})
    store = app.extensions["store"]
    assert store.query("PRAGMA user_version") == [{"user_version": SCHEMA_VERSION}]
    assert store.query("SELECT count(*) AS n FROM event") == [{"n": 60}]
    assert store.pending() == 60  # schema 1 kept no rollups: the fold makes them from the events
    fold.catch_up(store)
    assert store.query("SELECT sum(count) AS n FROM rollup_day") == [{"n": 60}]
    assert store.query("SELECT count(*) AS n FROM device") == [{"n": 18}]  # 9 ids x 2 apps
    assert store.query("SELECT count(*) AS n FROM refusal") == [{"n": 1}]
    client = app.test_client()
    assert client.get("/stats/counts").json["counts"] == raw_counts(store)
    # the dedupe index came through: a resend of a migrated event is not stored again
    resend = event(
        app_id="com.a", action="set", device_id="D0", version_name="1.0.0",
        old_version_name="1.0.0", timestamp=NOW,
    )  # fmt: skip
    post_ok(client, [resend])
    assert store.query("SELECT count(*) AS n FROM event") == [{"n": 60}]
    # and migrating again is a no-op
    create_app({"STATS_DB": str(path)})
    assert store.query("SELECT sum(count) AS n FROM rollup_day") == [{"n": 60}]


def test_the_server_applies_stats_retention_days_by_itself(tmp_path):
    path = str(tmp_path / "r.db")
    seed_history(create_app({"STATS_DB": path}).test_client())
    app = create_app({"STATS_DB": path, "STATS_RETENTION_DAYS": 10})
    store = app.extensions["store"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        oldest = store.query("SELECT min(at) AS at FROM event")[0]["at"]
        if oldest >= NOW - 10 * DAY:
            break
        time.sleep(0.05)
    assert oldest >= NOW - 10 * DAY
    assert store.query("SELECT sum(count) AS n FROM rollup_day") == [{"n": 140}]


def test_a_version_3_database_gets_its_device_counts_filled_from_the_devices(tmp_path):
    path = tmp_path / "v3.db"
    stories = [
        event(device_id=f"D{i % 7}", platform=("ios", "android")[i % 2],
              version_name=("1.0.0", "1.1.0", "")[i % 3], timestamp=NOW - i * 5 * HOUR)
        for i in range(40)
    ]  # fmt: skip
    old_database(path, 3, stories)

    migrated = create_app({"STATS_DB": str(path)})
    fresh = create_app({"STATS_DB": str(tmp_path / "fresh.db")})
    post_ok(fresh.test_client(), stories)
    fold.catch_up(fresh.extensions["store"])
    store = migrated.extensions["store"]
    assert store.query("PRAGMA user_version") == [{"user_version": SCHEMA_VERSION}]
    assert store.pending() == 0  # a schema-3 database's rollups count every event already
    assert device_counts(store) == (store.query(DEVICES_BY_BUNDLE), store.query(DEVICES_BY_HOUR))
    assert device_counts(store) == device_counts(fresh.extensions["store"])
    for url in ("/stats/versions?app_id=com.example.app", "/stats/summary?app_id=com.example.app"):
        assert migrated.test_client().get(url).json == fresh.test_client().get(url).json


def test_a_database_of_a_newer_schema_than_the_code_is_refused_at_start_untouched(tmp_path):
    from capgo_stats.store.sqlite_migrations import SchemaTooNew

    path = tmp_path / "newer.db"
    post_ok(create_app({"STATS_DB": str(path)}).test_client(), [event()])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")  # as a newer capgo-stats leaves it
    conn.close()
    before = path.read_bytes()
    expected = (
        f"this database is schema {SCHEMA_VERSION + 1}, this code knows up to {SCHEMA_VERSION}:"
        " upgrade capgo-stats"
    )
    with pytest.raises(SchemaTooNew, match=expected) as refused:
        create_app({"STATS_DB": str(path)})
    assert isinstance(refused.value, RuntimeError)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before  # neither migrated nor written


def test_servers_sharing_a_database_prune_once_an_hour_not_once_each(app, monkeypatch):
    calls = []
    monkeypatch.setattr(fold, "prune", lambda store, before: calls.append(before) or 0)
    stops = [jobs.start_retention(app.extensions["store"], 10) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # the other two had their turn meanwhile
    finally:
        for stop in stops:
            stop.set()
    assert len(calls) == 1
