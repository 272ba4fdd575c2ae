"""The insight routes: versions, timeline, failures, summary, raw events, devices, rejected."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from capgo_stats import counting, protocol
from capgo_stats.store.sqlite_migrations import SCHEMA_VERSION
from support.client import post_ok
from support.old_schema import old_database
from support.payloads import event

HOUR, DAY = 3_600_000, 86_400_000
NOW = protocol.now_ms()


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def query(**args):
    """A query string; '+' in an offset escaped."""
    return "&".join(f"{k}={str(v).replace('+', '%2B')}" for k, v in args.items() if v is not None)


# -- versions agree with the raw events, for any range ----------------------------------------


def expected_from_raw(raw, since, until):
    """(installs, uninstalls, failures) per version, counted straight from raw events."""
    found = {}

    def add(version, index):
        found.setdefault(counting.version_group(version), [0, 0, 0])[index] += 1

    for e in raw:
        if (since is not None and e["at"] < since) or (until is not None and e["at"] >= until):
            continue
        if not e["is_prod"] or e["is_emulator"]:
            continue
        if e["action"] == "set":
            add(e["bundle"], 0)
            old = (e["old_version_name"] or "").split(":")[0]
            if old and old != e["bundle"]:
                add(old, 1)
        if counting.counts_as_failure(e["action"], e["plugin_version"], e["platform"]):
            add(e["bundle"], 2)
    return {version: tuple(n) for version, n in found.items()}


random_events = st.lists(
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(
                ["set", "set_fail", "download_fail", "app_moved_to_foreground"]
            ),
            "version_name": st.sampled_from(["1.0.0", "1.1.0", "1.1.0:www/a.js", "builtin", ""]),
            "old_version_name": st.sampled_from(["", "1.0.0", "1.1.0", "builtin"]),
            "plugin_version": st.sampled_from(["6.10.3", "7.17.0", "8.51.14", ""]),
            "is_prod": st.booleans(),
            "is_emulator": st.booleans(),
            "platform": st.sampled_from(["android", "ios"]),
            "device": st.integers(0, 6),
            "offset": st.integers(0, 3 * DAY),
        }
    ),
    min_size=1,
    max_size=30,
)
offsets = st.none() | st.integers(0, 3 * DAY)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=random_events, since=offsets, until=offsets)
def test_versions_from_rollups_equal_the_raw_events_for_any_range(
    tmp_path_factory, batch, since, until
):
    app = create_app({"STATS_DB": str(tmp_path_factory.mktemp("db") / "s.db")})
    client = app.test_client()
    bodies = []
    for i, e in enumerate(batch):
        fields = {k: v for k, v in e.items() if k not in ("device", "offset")}
        bodies.append(
            event(
                **fields,
                app_id="com.a",
                device_id=f"d{e['device']}",
                timestamp=NOW - e["offset"] - i,
            )
        )
    post_ok(client, bodies)
    since_ms = None if since is None else NOW - since
    until_ms = None if until is None else NOW - until
    report = client.get(
        "/stats/versions?" + query(app_id="com.a", since=since_ms and iso(since_ms),
                                   until=until_ms and iso(until_ms))
    ).json  # fmt: skip
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        since_ms = until_ms  # an empty range
    rows = [*report["versions"], report["builtin"], report["unknown"]]
    got = {
        r["version"]: (r["installs"], r["uninstalls"], r["failures"])
        for r in rows
        if r["installs"] or r["uninstalls"] or r["failures"]
    }
    raw = app.extensions["store"].query("SELECT *, bundle FROM event")
    assert got == expected_from_raw(raw, since_ms, until_ms)
    assert sum(r["devices"] for r in rows) == report["devices"]
    assert all(0 <= r["share"] <= 1 for r in rows)
    if report["devices"]:
        assert abs(sum(r["share"] for r in rows) - 1) < 0.001


MINUTE = 60_000
BASE = (NOW // DAY - 3) * DAY  # midnight, three days ago
RAGGED_RANGES = [
    (BASE + 90 * MINUTE + 17_000, BASE + 2 * DAY + 5 * HOUR + 3 * MINUTE),  # ragged both ends
    (BASE + HOUR, BASE + 2 * DAY),  # whole hours, then whole days
    (None, BASE + 30 * HOUR + 5 * MINUTE),
    (BASE + 47 * HOUR + 59 * MINUTE, None),
    (BASE + 10 * MINUTE, BASE + 50 * MINUTE),  # inside one hour
    (BASE + 23 * HOUR + 30 * MINUTE, BASE + 25 * HOUR + 10 * MINUTE),  # across a midnight
]


@pytest.mark.parametrize("since, until", RAGGED_RANGES)
def test_versions_are_exact_at_the_ragged_edges_of_a_range(client, rows, since, until):
    kinds = [
        {"action": "set", "version_name": "1.1.0", "old_version_name": "1.0.0"},
        {"action": "set_fail", "version_name": "1.1.0"},
        {"action": "download_fail", "version_name": "1.1.0", "plugin_version": "7.0.0"},
        {"action": "download_fail", "version_name": "1.0.0", "plugin_version": "8.0.0"},
        {"action": "set", "version_name": "1.0.0", "old_version_name": "builtin"},
    ]
    post_ok(
        client,
        [
            event(**kinds[i % len(kinds)], device_id=f"d{i % 11}", timestamp=BASE + i * 37 * MINUTE)
            for i in range(72 * 60 // 37)
        ],
    )
    report = client.get(
        "/stats/versions?" + query(app_id="com.example.app", since=since and iso(since),
                                   until=until and iso(until))
    ).json  # fmt: skip
    got = {
        r["version"]: (r["installs"], r["uninstalls"], r["failures"])
        for r in [*report["versions"], report["builtin"]]
        if r["installs"] or r["uninstalls"] or r["failures"]
    }
    raw = rows("SELECT *, bundle FROM event")
    assert got == expected_from_raw(raw, since, until)
    legacy = sum(
        1
        for e in raw
        if e["plugin_version"] == "7.0.0"
        and (since is None or e["at"] >= since)
        and (until is None or e["at"] < until)
    )
    assert report["ignored_legacy_download_fail"] == legacy


# -- bad input: one error shape, never a 500 --------------------------------------------------


@pytest.mark.parametrize(
    "url, status, error",
    [
        ("/stats/versions?app_id=a&action=set", 400, "invalid_filter"),
        ("/stats/versions?app_id=a&include_dev=maybe", 400, "invalid_filter"),
        ("/stats/versions?app_id=a&since=yesterday", 400, "invalid_filter"),
        ("/stats/timeline?app_id=a&interval=week", 400, "invalid_filter"),
        ("/stats/events?limit=0", 400, "invalid_filter"),
        ("/stats/events?limit=1001", 400, "invalid_filter"),
        ("/stats/events?limit=ten", 400, "invalid_filter"),
        ("/stats/events?kind=crash", 400, "invalid_filter"),
        ("/stats/events?prod=2", 400, "invalid_filter"),
        ("/stats/events?cursor=not-a-cursor", 400, "invalid_cursor"),
        ("/stats/devices?prod=7", 400, "invalid_filter"),
        ("/stats/events?cursor=1.2.3", 400, "invalid_cursor"),
        ("/stats/events?cursor=99999999999999999999.1", 400, "invalid_cursor"),
        ("/stats/devices/x?cursor=x.1", 400, "invalid_cursor"),
        ("/stats/devices/no-such-device", 404, "device_not_found"),
        ("/stats/devices?custom_id=nobody", 404, "device_not_found"),
        ("/?action=set", 400, "invalid_filter"),
    ],
)  # fmt: skip
def test_a_bad_report_query_gets_a_json_error_and_writes_nothing(client, rows, url, status, error):
    response = client.get(url)
    assert (response.status_code, response.json["error"]) == (status, error), response.json
    assert response.json["message"]
    assert rows("SELECT count(*) AS n FROM event") == [{"n": 0}]


def test_without_app_id_the_reports_describe_the_app_with_the_newest_event(client):
    for url in ("/stats/versions", "/stats/timeline", "/stats/failures", "/stats/summary"):
        assert client.get(url).json["app_id"] is None  # no app yet: every figure is zero
    assert client.get("/stats/versions").json["devices"] == 0
    post_ok(client, [event(app_id="com.old", timestamp=NOW - HOUR), event(app_id="com.new")])
    for url in ("/stats/versions", "/stats/timeline", "/stats/failures", "/stats/summary"):
        assert client.get(url).json["app_id"] == "com.new", url
    assert client.get("/stats/versions?app_id=com.old").json["devices"] == 1


# -- timeline ---------------------------------------------------------------------------------


def test_an_hourly_timeline_has_48_zero_filled_points_and_says_why_active_devices_is_null(client):
    post_ok(client, [event(timestamp=NOW - 2 * HOUR), event(action="set_fail", timestamp=NOW - 1)])
    report = client.get("/stats/timeline?app_id=com.example.app&interval=hour").json
    points = report["points"]
    assert len(points) == 48
    assert sum(p["installs"] for p in points) == 1 and sum(p["failures"] for p in points) == 1
    assert points[-1]["failures"] == 1 and points[-3]["installs"] == 1
    assert all(p["active_devices"] is None for p in points)
    assert "per day, not per hour" in report["notes"][0]


def test_a_daily_timeline_with_a_platform_filter_has_no_active_devices(client):
    post_ok(client, [event(timestamp=NOW - 1, platform="ios")])
    report = client.get("/stats/timeline?app_id=com.example.app&platform=ios").json
    assert report["points"][-1]["installs"] == 1
    assert report["points"][-1]["active_devices"] is None
    assert "not kept per platform" in report["notes"][0]


def test_a_timeline_range_is_cut_into_whole_days(client):
    day = datetime.fromtimestamp(NOW / 1000, tz=UTC).date().isoformat()
    report = client.get(f"/stats/timeline?app_id=a&since={day}&until={day}").json
    assert [p["t"] for p in report["points"]] == [f"{day}T00:00:00.000Z"]
    next_day = datetime.fromtimestamp(NOW / 1000 + 86_400, tz=UTC).date().isoformat()
    assert report["until"] == f"{next_day}T00:00:00.000Z"  # a date as until: its end


def test_a_timeline_keeps_its_last_400_points_and_says_so(client):
    report = client.get("/stats/timeline?app_id=a&since=2020-01-01&until=2026-01-01").json
    assert len(report["points"]) == 400
    assert report["points"][-1]["t"] == "2026-01-01T00:00:00.000Z"  # a bare until: its end
    assert "keeps the last 400" in report["notes"][0]
    hours = client.get("/stats/timeline?app_id=a&interval=hour&since=2026-01-01&until=2026-02-01")
    assert len(hours.json["points"]) == 400


def test_a_timeline_whose_since_is_after_its_until_is_empty(client):
    report = client.get("/stats/timeline?app_id=a&since=2026-02-01&until=2026-01-01").json
    assert report["points"] == [] and "not before" in report["notes"][0]


# -- summary ----------------------------------------------------------------------------------


def test_the_summary_says_how_long_ago_the_last_event_was_and_who_was_active(client):
    now = protocol.now_ms()  # not NOW: the suite may have run for minutes since it was taken
    post_ok(
        client,
        [
            event(device_id="a", timestamp=now - 10 * 60_000),
            event(device_id="b", timestamp=now - 3 * DAY),
            event(device_id="c", timestamp=now - 20 * DAY),
            event(device_id="d", timestamp=now - 40 * DAY),
            event(device_id="e", timestamp=now - 60_000, is_emulator=True),
        ],
    )
    report = client.get("/stats/summary?app_id=com.example.app").json
    assert report["minutes_since_last_event"] in (0, 1)  # e, the emulator, sent the newest
    assert report["active_devices"] == {"1d": 1, "7d": 2, "30d": 3}
    dev = client.get("/stats/summary?app_id=com.example.app&include_dev=1").json
    assert dev["active_devices"] == {"1d": 2, "7d": 3, "30d": 4}


# -- raw events and devices -------------------------------------------------------------------


def test_raw_events_page_newest_first_and_new_arrivals_never_shift_the_pages(client):
    post_ok(client, [event(device_id=f"d{i}", timestamp=NOW - i * 1000) for i in range(25)])
    seen, cursor = [], None
    for page_number in range(10):
        url = "/stats/events?limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url).json
        seen += [e["device_id"] for e in page["events"]]
        if page_number == 0:  # arrivals while paging: one newer, one older than the cursor
            post_ok(client, [event(device_id="new", timestamp=NOW + 1000)])
            post_ok(client, [event(device_id="late", timestamp=NOW - 100 * 1000)])
        cursor = page["next"]
        if cursor is None:
            break
    original = [f"d{i}" for i in range(25)]
    assert [d for d in seen if d in original] == original  # every one, once, in order
    assert "new" not in seen and seen[-1] == "late"


def test_raw_events_from_several_apps_are_merged_newest_first(client):
    post_ok(
        client,
        [event(app_id=("com.a", "com.b", "com.c")[i % 3], device_id=f"d{i}", timestamp=NOW - i)
         for i in range(12)],
    )  # fmt: skip
    page = client.get("/stats/events?limit=5").json
    assert [e["device_id"] for e in page["events"]] == ["d0", "d1", "d2", "d3", "d4"]
    rest = client.get(f"/stats/events?limit=100&cursor={page['next']}").json
    assert [e["device_id"] for e in rest["events"]] == [f"d{i}" for i in range(5, 12)]
    assert rest["next"] is None


@pytest.mark.parametrize(
    "filters, expected",
    [
        ("kind=install", ["set-new", "set-old", "dev-set"]),
        ("kind=install&prod=1", ["set-new", "set-old"]),
        ("kind=install&prod=0", ["dev-set"]),
        ("kind=failure", ["fail"]),  # a legacy download_fail is no failure
        ("action=download_fail", ["legacy"]),
        ("kind=attempt&version=1.1.0&prod=1", ["set-new", "fail"]),
        ("kind=uninstall&version=1.0.0", ["set-new"]),
        ("version=1.1.0&action=download_complete", ["download"]),
        ("plugin_version=6.10.3", ["legacy"]),
        ("platform=ios", ["ios-open"]),
        ("device_id=DEV-1", ["set-new", "download"]),
        ("custom_id=%20user@example.com", ["fail"]),
        (
            "prod=&kind=&version=",
            ["set-old", "download", "set-new", "fail", "legacy", "dev-set", "ios-open"],
        ),  # empty means no filter
    ],
)
def test_raw_events_take_every_filter(client, filters, expected):
    t = NOW - 1000
    post_ok(
        client,
        [
            event(action="set", version_name="1.0.0", old_version_name="builtin",
                  device_id="other", timestamp=t - 9, metadata={"k": "set-old"}),
            event(action="download_complete", version_name="1.1.0:www/app.js",
                  device_id="Dev-1", timestamp=t - 8, metadata={"k": "download"}),
            event(action="set", version_name="1.1.0", old_version_name="1.0.0",
                  device_id="dev-1", timestamp=t - 7, metadata={"k": "set-new"}),
            event(action="set_fail", version_name="1.1.0", custom_id="user@example.com",
                  device_id="x", timestamp=t - 6, metadata={"k": "fail"}),
            event(action="download_fail", version_name="1.0.0", plugin_version="6.10.3",
                  device_id="y", timestamp=t - 5, metadata={"k": "legacy"}),
            event(action="set", version_name="1.2.0", is_prod=False, device_id="z",
                  timestamp=t - 4, metadata={"k": "dev-set"}),
            event(action="app_moved_to_foreground", platform="ios", device_id="w",
                  timestamp=t - 3, metadata={"k": "ios-open"}),
        ],
    )  # fmt: skip
    response = client.get(f"/stats/events?{filters}")
    assert response.status_code == 200, response.json
    assert sorted(e["metadata"]["k"] for e in response.json["events"]) == sorted(expected)


def test_failure_pages_skip_legacy_download_fail_and_still_list_every_failure(client):
    batch = []
    for i in range(40):
        legacy = i % 5 != 0  # four legacy download_fail, then one real failure
        batch.append(
            event(action="download_fail", plugin_version="6.0.0" if legacy else "8.0.0",
                  device_id=f"d{i}", timestamp=NOW - i * 1000)
        )  # fmt: skip
    post_ok(client, batch)
    seen, cursor = [], None
    while True:
        page = client.get(
            "/stats/events?kind=failure&limit=3" + (f"&cursor={cursor}" if cursor else "")
        ).json
        assert len(page["events"]) <= 3
        seen += [e["device_id"] for e in page["events"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"d{i}" for i in range(0, 40, 5)]


def test_a_raw_event_says_what_it_counts_as(client):
    post_ok(
        client,
        [
            event(action="set", version_name="1.1.0", old_version_name="1.0.0", timestamp=NOW - 3),
            event(action="download_fail", plugin_version="7.0.0", timestamp=NOW - 2),
            event(action="set", is_emulator=True, timestamp=NOW - 1),
        ],
    )
    listed = client.get("/stats/events").json["events"]
    assert [e["counts_as"] for e in listed] == [[], [], ["install", "uninstall"]]
    with_dev = client.get("/stats/events?include_dev=1").json["events"]
    assert with_dev[0]["counts_as"] == ["install", "uninstall"]
    assert listed[0]["is_emulator"] is True and listed[0]["at"].endswith("Z")


def test_a_custom_id_finds_the_events_of_all_its_devices(client):
    post_ok(
        client,
        [
            event(device_id="phone", custom_id="ann@example.com", timestamp=NOW - 3),
            event(device_id="tablet", custom_id="ann@example.com", timestamp=NOW - 2),
            event(device_id="other", custom_id="bob@example.com", timestamp=NOW - 1),
        ],
    )
    report = client.get("/stats/devices?custom_id=ann@example.com%20").json
    assert report["custom_id"] == "ann@example.com"
    assert [e["device_id"] for e in report["events"]] == ["tablet", "phone"]
    assert sorted(s["device_id"] for s in report["current"]) == ["phone", "tablet"]


def test_a_device_timeline_is_bounded_by_limit_and_pages_on(client):
    post_ok(client, [event(action="app_moved_to_foreground", timestamp=NOW - i) for i in range(5)])
    device_id = event()["device_id"]
    first = client.get(f"/stats/devices/{device_id}?limit=3").json
    assert len(first["events"]) == 3 and first["next"]
    rest = client.get(f"/stats/devices/{device_id}?limit=3&cursor={first['next']}").json
    assert len(rest["events"]) == 2 and rest["next"] is None


def test_the_device_list_pages_through_the_devices_that_run_a_version(client):
    post_ok(
        client,
        [event(device_id=f"d{i}", version_name=("1.0.0", "1.1.0")[i % 2], is_prod=i != 3,
               timestamp=NOW - i) for i in range(7)]
        + [event(device_id="x", action="download_complete", version_name="1.1.0")],
    )  # fmt: skip
    listed, cursor = [], None
    while True:
        url = "/stats/devices?app_id=com.example.app&version=1.1.0&limit=2"
        page = client.get(url + (f"&after={cursor}" if cursor else "")).json
        listed += [(d["device_id"], d["bundle"], d["prod"]) for d in page["devices"]]
        cursor = page["next"]
        if not cursor:
            break
    assert listed == [("d1", "1.1.0", True), ("d3", "1.1.0", False), ("d5", "1.1.0", True)]
    prod = client.get("/stats/devices?version=1.1.0&prod=1").json["devices"]
    assert [d["device_id"] for d in prod] == ["d1", "d5"]
    since = iso(NOW - 4).replace("+", "%2B")  # last seen at most 4 ms ago: d0 .. d4 and x
    recent = client.get(f"/stats/devices?since={since}").json["devices"]
    assert [d["device_id"] for d in recent] == ["d0", "d1", "d2", "d3", "d4", "x"]
    unknown = client.get("/stats/devices?version=unknown").json["devices"]
    assert [d["device_id"] for d in unknown] == ["x"]  # only a download: no bundle reported


def test_with_hashed_ids_a_device_is_found_by_the_id_it_sent(tmp_path):
    app = create_app({"STATS_DB": str(tmp_path / "h.db"), "STATS_HASH_SECRET": "s3cret"})
    client = app.test_client()
    post_ok(client, [event(device_id="ABC-1", custom_id="ann@example.com", timestamp=NOW - 1)])
    report = client.get("/stats/devices/Abc-1").json
    assert len(report["events"]) == 1
    assert report["device_id"] not in ("abc-1", "ABC-1")  # shown as stored: hashed
    assert len(client.get("/stats/devices?custom_id=ann@example.com").json["events"]) == 1
    assert len(client.get("/stats/events?device_id=ABC-1").json["events"]) == 1
    assert client.get("/stats/devices/abc-2").status_code == 404


# -- refused events ---------------------------------------------------------------------------


def test_refused_events_are_reported_by_day_app_reason_and_action(client):
    client.post("/stats", data=json.dumps([event(action="fly"), event(action="fly"),
                                           event(app_id="")]))  # fmt: skip
    client.post("/stats", json=event(app_id="com.b", action="fly"))
    client.post("/stats", data=b"not json")
    today = datetime.fromtimestamp(NOW / 1000, tz=UTC).date().isoformat()
    report = client.get("/stats/rejected").json
    assert report["refused"] == 5
    assert report["by_reason_action"] == [
        {"reason": "unknown_action", "action": "fly", "count": 3},
        {"reason": "invalid_json", "action": "", "count": 1},
        {"reason": "missing_field", "action": "set", "count": 1},
    ]
    assert {(r["day"], r["app_id"], r["reason"], r["count"]) for r in report["rows"]} == {
        (today, "com.example.app", "unknown_action", 2),
        (today, "com.b", "unknown_action", 1),
        (today, "", "missing_field", 1),
        (today, "", "invalid_json", 1),
    }
    one_app = client.get("/stats/rejected?app_id=com.b").json
    assert one_app["refused"] == 1
    assert client.get("/stats/rejected?action=set").json["refused"] == 1
    assert client.get("/stats/rejected?until=2020-01-01").json["refused"] == 0


# -- schema 3: failure_day --------------------------------------------------------------------


def test_a_version_2_database_gets_failure_day_filled_from_failure_hour(tmp_path):
    stories = [
        event(action=("set_fail", "download_fail", "unzip_fail", "set")[i % 4],
              plugin_version=("6.10.3", "8.51.14")[i % 2], device_id=f"d{i % 5}",
              version_name=("1.0.0", "1.1.0")[i % 3 == 0], timestamp=NOW - i * 5 * HOUR)
        for i in range(60)
    ]  # fmt: skip
    old_path = tmp_path / "v2.db"
    old_database(old_path, 2, stories)

    migrated = create_app({"STATS_DB": str(old_path)})
    fresh = create_app({"STATS_DB": str(tmp_path / "fresh.db")})
    post_ok(fresh.test_client(), stories)
    store = migrated.extensions["store"]
    assert store.query("PRAGMA user_version") == [{"user_version": SCHEMA_VERSION}]
    by_day = (
        "SELECT app_id, day, action, bundle, platform, plugin_version, version_os, prod, count"
        " FROM failure_day ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
    )
    assert store.query(by_day) == fresh.extensions["store"].query(by_day)
    assert store.query("SELECT sum(count) AS n FROM failure_day") == [{"n": 45}]
    for url in ("/stats/failures?app_id=com.example.app", "/stats/versions?app_id=com.example.app"):
        assert migrated.test_client().get(url).json == fresh.test_client().get(url).json
    # the trigger now fills failure_day for new events too, and migrating again changes nothing
    post_ok(migrated.test_client(), [event(action="set_fail", timestamp=NOW)])
    create_app({"STATS_DB": str(old_path)})
    assert store.query("SELECT sum(count) AS n FROM failure_day") == [{"n": 46}]
