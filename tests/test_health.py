"""Release health: unique-device outcomes, app health per version, launch and install times."""

from capgo_stats import fold, protocol, reports
from support.client import post_ok
from support.payloads import event

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW = protocol.now_ms()
T0 = (NOW // DAY - 5) * DAY + HOUR  # 01:00 UTC: each day's events stay in that day


def ev(device, action, version="1.1.0", at=0, platform="ios", **more):
    """An event of the scripted rollout, `at` ms after T0."""
    more.setdefault("plugin_version", "8.51.14")
    return event(device_id=device, action=action, version_name=version, platform=platform,
                 old_version_name="1.0.0", timestamp=T0 + at, **more)  # fmt: skip


ROLLOUT = [
    # d1 installs 1.1.0 and sets it again later: one installed device
    ev("d1", "download_zip_start", at=0), ev("d1", "set", at=MINUTE), ev("d1", "set", at=DAY),
    # d2 fails and retries: one failed device
    ev("d2", "set_fail", at=0), ev("d2", "set_fail", at=MINUTE),
    # d3 fails, then installs: installed, not failed
    ev("d3", "set_fail", at=0), ev("d3", "set", at=10 * MINUTE),
    # d4 (android) fails a download on a current plugin: failed
    ev("d4", "download_fail", at=0, platform="android", plugin_version="7.36.1"),
    # d5 is a dev build: counted only with include_dev
    ev("d5", "set", at=0, is_prod=False),
    # d6 sends a legacy download_fail (nothing to download): no outcome
    ev("d6", "download_fail", at=0, plugin_version="6.0.0"),
]  # fmt: skip


def row_of(client, version="1.1.0", **args):
    """The /stats/versions row of a version."""
    query = "&".join(f"{k}={v}" for k, v in {"app_id": "com.example.app", **args}.items())
    report = client.get(f"/stats/versions?{query}").json
    return next(r for r in report["versions"] if r["version"] == version)


def outcomes(row):
    """A versions row's unique-device outcomes."""
    return row["installed_devices"], row["failed_devices"], row["device_fail_rate"]


def test_retries_and_repeated_sets_count_once_per_device_and_installed_beats_failed(client):
    post_ok(client, ROLLOUT)
    assert outcomes(row_of(client)) == (2, 2, 0.5)


def test_unique_device_outcomes_count_dev_builds_only_with_include_dev(client):
    post_ok(client, ROLLOUT)
    assert outcomes(row_of(client, include_dev=1)) == (3, 2, 0.4)


def test_unique_device_outcomes_follow_the_platform_filter(client):
    post_ok(client, ROLLOUT)
    assert outcomes(row_of(client, platform="ios")) == (2, 1, 0.3333)
    assert outcomes(row_of(client, platform="android")) == (0, 1, 1.0)


def test_unique_device_outcomes_cover_all_history_whatever_the_range(client):
    post_ok(client, ROLLOUT)
    since = reports.iso(T0 + DAY).replace("+", "%2B")  # only d1's repeated set is after it
    assert outcomes(row_of(client, since=since)) == (2, 2, 0.5)


def test_a_version_with_no_outcome_has_no_device_fail_rate(client):
    post_ok(client, [ev("d1", "app_moved_to_foreground", version="1.0.0")])
    assert outcomes(row_of(client, version="1.0.0")) == (0, 0, None)


def launch(device, version, ms, at):
    """An app_launch_ready that took `ms`."""
    return ev(device, "app_launch_ready", version, at, metadata={"duration_ms": str(ms)})


HEALTH = [
    # 1.0.0, from T0: a1 and a2 run it; a2 crashes twice; a1 launches in 450 and 1000 ms
    ev("a1", "app_moved_to_foreground", "1.0.0"), ev("a2", "app_moved_to_foreground", "1.0.0"),
    launch("a1", "1.0.0", 450, MINUTE), launch("a1", "1.0.0", 1000, 2 * MINUTE),
    ev("a2", "app_crash", "1.0.0", 5 * MINUTE), ev("a2", "app_crash", "1.0.0", 6 * MINUTE),
    ev("a2", "app_memory_warning", "1.0.0", 7 * MINUTE),  # softer: not an issue
    # 1.1.0, a day later: a1 installs it in 90 s and launches in 450 ms
    ev("a1", "download_zip_start", at=DAY), ev("a1", "set", at=DAY + 90_000),
    launch("a1", "1.1.0", 450, DAY + 2 * MINUTE),
    # a2 installs it in 30 s, sets it again an hour later, then hangs once
    ev("a2", "download_0", at=DAY), ev("a2", "set", at=DAY + 30_000),
    ev("a2", "set", at=DAY + HOUR), ev("a2", "app_anr", at=DAY + 2 * HOUR),
    # a3 fails, then installs 3 hours after its download began: no install time
    ev("a3", "download_manifest_start", at=DAY), ev("a3", "set_fail", at=DAY + MINUTE),
    ev("a3", "set", at=DAY + 3 * HOUR),
]  # fmt: skip


def health_of(client, **args):
    """The /stats/health answer, its rows by version."""
    query = "&".join(f"{k}={v}" for k, v in {"app_id": "com.example.app", **args}.items())
    response = client.get(f"/stats/health?{query}")
    assert response.status_code == 200, response.json
    return {row["version"]: row for row in response.json["versions"]}


def test_health_counts_active_and_issue_devices_and_issues_of_each_version(client):
    post_ok(client, HEALTH)
    rows = health_of(client)
    assert list(rows) == ["1.1.0", "1.0.0"]  # newest first
    old, new = rows["1.0.0"], rows["1.1.0"]
    figures = ("active_devices", "issues", "issue_devices", "issue_free_rate")
    assert [old[name] for name in figures] == [2, 2, 1, 0.5]
    assert [new[name] for name in figures] == [3, 1, 1, 0.6667]


def test_launch_and_install_times_are_percentiles_of_their_histogram_buckets(client):
    post_ok(client, HEALTH)
    rows = health_of(client)
    # buckets floor(8 log2 ms), read as their middle 2^((b + 0.5) / 8):
    # 450 ms -> 70 -> 450; 1000 ms -> 79 -> 981; 30 s -> 118 -> 28774; 90 s -> 131 -> 88752
    assert rows["1.0.0"]["launch_ms"] == {"p50": 450, "p90": 981, "samples": 2}
    assert rows["1.0.0"]["install_ms"] == {"p50": None, "p90": None, "samples": 0}
    assert rows["1.1.0"]["launch_ms"] == {"p50": 450, "p90": 450, "samples": 1}
    # a2's repeated set keeps its first; a3's 3-hour pair is left out
    assert rows["1.1.0"]["install_ms"] == {"p50": 28774, "p90": 88752, "samples": 2}


def test_each_health_figure_changes_against_the_version_first_seen_before(client):
    post_ok(client, HEALTH)
    rows = health_of(client)
    assert rows["1.0.0"]["previous"] is None and rows["1.0.0"]["change"] is None
    assert rows["1.1.0"]["previous"] == "1.0.0"
    assert rows["1.1.0"]["change"] == {
        "active_devices": 1, "issues": -1, "issue_devices": 0, "issue_free_rate": 0.1667,
        "launch_p50": 0, "launch_p90": -531, "install_p50": None, "install_p90": None,
    }  # fmt: skip


def test_health_counts_devices_first_seen_on_the_days_of_the_range(client):
    post_ok(client, HEALTH)
    since = reports.iso(T0 + DAY).replace("+", "%2B")
    rows = health_of(client, since=since)
    assert list(rows) == ["1.1.0"]
    assert rows["1.1.0"]["active_devices"] == 3 and rows["1.1.0"]["previous"] is None


def test_health_leaves_dev_builds_out_unless_include_dev(client):
    post_ok(client, [ev("x", "app_crash", "2.0.0", is_prod=False)])
    assert health_of(client) == {}
    dev = health_of(client, include_dev=1)["2.0.0"]
    assert (dev["active_devices"], dev["issues"], dev["issue_devices"]) == (1, 1, 1)


# -- adoption: the bundle each device last ran, per UTC day ------------------------------------

ADOPTION = [
    # day 1: a1 runs 1.0.0 then sets 1.1.0; a2 runs 1.0.0; a3 (android) runs builtin
    ev("a1", "app_moved_to_foreground", "1.0.0"), ev("a1", "set", at=HOUR),
    ev("a2", "app_moved_to_foreground", "1.0.0"),
    ev("a3", "app_moved_to_foreground", "builtin", platform="android"),
    ev("a4", "download_zip_start"),  # names a target bundle, runs none: not counted
    ev("a5", "app_moved_to_foreground", "1.0.0", is_prod=False),  # a dev build
    # day 2: a1 still on 1.1.0; a2 sets it, and an earlier event of 1.0.0 arrives after
    ev("a1", "app_moved_to_foreground", at=DAY), ev("a2", "set", at=DAY + HOUR),
    ev("a2", "app_moved_to_foreground", "1.0.0", at=DAY + 10 * MINUTE),
]  # fmt: skip


def adoption_of(client, **args):
    """The /stats/adoption points over the two days of the story."""
    since, until = reports.iso(T0 - HOUR), reports.iso(T0 - HOUR + 2 * DAY)
    query = {"app_id": "com.example.app", "since": since, "until": until, **args}
    response = client.get("/stats/adoption", query_string=query)
    assert response.status_code == 200, response.json
    return [(p["devices"], p["shares"]) for p in response.json["points"]]


def test_adoption_shares_each_days_devices_by_the_bundle_they_last_ran(client):
    post_ok(client, ADOPTION)
    third = 0.3333
    assert adoption_of(client) == [
        (3, {"1.0.0": third, "1.1.0": third, "builtin": third}),
        (2, {"1.1.0": 1.0}),
    ]


def test_adoption_follows_the_platform_filter_and_include_dev(client):
    post_ok(client, ADOPTION)
    assert adoption_of(client, platform="ios")[0] == (2, {"1.0.0": 0.5, "1.1.0": 0.5})
    assert adoption_of(client, include_dev=1)[0][0] == 4


def test_the_dashboard_draws_the_adoption_chart_stacked_by_version(client):
    post_ok(client, ADOPTION)
    html = client.get("/?app_id=com.example.app").get_data(as_text=True)
    assert 'data-chart="shares"' in html
    assert 'data-series="1.1.0" data-value="2"' in html


# -- the new tables survive a rebuild, and forget a forgotten device ----------------------------


def health_tables(store):
    """The release-health tables, as sorted rows (zero counts left out)."""
    tables = ("version_device", "outcome_devices", "reach_day", "install_day", "launch_day",
              "adoption_device", "adoption_day")  # fmt: skip
    found = {}
    for table in tables:
        rows = store.query(f"SELECT * FROM {table}")
        found[table] = sorted(tuple(r.values()) for r in rows if r.get("devices", 1))
    return found


def test_a_rebuild_makes_the_release_health_tables_again_as_they_were(app, client, runner):
    post_ok(client, ROLLOUT + HEALTH + ADOPTION)
    fold.catch_up(app.extensions["store"])
    before = health_tables(app.extensions["store"])
    assert all(before.values())  # the story fills every one of them
    with app.extensions["store"].transaction() as conn:
        conn.execute("DELETE FROM outcome_devices")
        conn.execute("UPDATE reach_day SET devices = devices + 5")
    result = runner.invoke(args=["rebuild-rollups", "--yes"])
    assert result.exit_code == 0, result.output
    assert health_tables(app.extensions["store"]) == before


def test_forgetting_a_device_deletes_its_version_and_day_records(app, client, rows):
    post_ok(client, HEALTH)
    fold.forget_device(app.extensions["store"], ["a2"], [])
    for table in ("version_device", "adoption_device"):
        assert rows(f"SELECT * FROM {table} WHERE device_id = ?", ("a2",)) == []
        assert rows(f"SELECT * FROM {table} WHERE device_id = ?", ("a1",))
