"""The counting rules as tables, and the fold's state machine: one row, one rule."""

import pytest

from capgo_stats import counting
from capgo_stats.store.sql import VERSION_GROUP

HOUR = 3_600_000


@pytest.mark.parametrize(
    "is_prod, is_emulator, counted",
    [(1, 0, True), (True, False, True), (0, 0, False), (1, 1, False), (0, 1, False)],
)
def test_only_production_builds_on_real_devices_count(is_prod, is_emulator, counted):
    assert counting.is_prod(is_prod, is_emulator) is counted


@pytest.mark.parametrize(
    "version_name, bundle",
    [("1.2.3", "1.2.3"), ("1.2.3:www/main.js", "1.2.3"), ("a:b:c", "a"), ("", ""), (None, "")],
)
def test_the_bundle_is_the_version_name_up_to_its_first_colon(version_name, bundle):
    assert counting.bundle_of(version_name) == bundle


@pytest.mark.parametrize(
    "action, version_name, reports",
    [
        ("set", "1.2.3", True),
        ("app_moved_to_foreground", "1.2.3", True),
        ("app_launch_ready", "builtin", True),
        ("set", "", False),  # no version: nothing to report
        ("set_fail", "1.2.3", False),  # a failure does not move the device
        ("unzip_fail", "1.2.3", False),
        ("download_complete", "1.2.3", False),  # downloads name the target bundle
        ("download_40", "1.2.3", False),
        ("download_manifest_start", "1.2.3", False),
        ("download_zip_complete", "1.2.3", False),
        ("set_next", "1.2.3", False),
        ("delete", "1.2.3", False),
        ("uninstall", "1.2.3", False),
        ("checksum_required", "1.2.3", False),
        ("insufficient_disk_space", "1.2.3", False),
    ],
)
def test_which_events_report_the_bundle_a_device_runs(action, version_name, reports):
    assert counting.reports_running_bundle(action, version_name) is reports


@pytest.mark.parametrize(
    "action, old_version_name, bundle, replaced",
    [
        ("set", "1.0.0", "1.1.0", "1.0.0"),
        ("set", "1.0.0:www/app.js", "1.1.0", "1.0.0"),
        ("set", "1.1.0", "1.1.0", None),  # the same bundle set again
        ("set", "", "1.1.0", None),  # old plugins and billingOnly send none
        ("set", None, "1.1.0", None),
        ("set", "builtin", "1.1.0", "builtin"),
        ("set_fail", "1.0.0", "1.1.0", None),  # only a set replaces
    ],
)
def test_a_set_that_replaced_another_bundle_is_an_uninstall_of_it(
    action, old_version_name, bundle, replaced
):
    assert counting.replaced_bundle(action, old_version_name, bundle) == replaced


@pytest.mark.parametrize(
    "action, failure",
    [("set_fail", True), ("download_fail", True), ("checksum_fail", True), ("set", False),
     ("failed", False), ("checksum_required", False), ("app_crash", False)],
)  # fmt: skip
def test_a_failure_action_ends_in_fail(action, failure):
    assert counting.is_failure_action(action) is failure


NEW = (100, 100, "ios", 1, "1.0.0", 100)


@pytest.mark.parametrize(
    "state, event, after",
    [
        (None, (100, "ios", 1, "1.0.0"), NEW),
        (None, (100, "ios", 1, None), (100, 100, "ios", 1, None, None)),
        # a later event moves platform, prod and (when it reports one) the bundle
        (NEW, (200, "android", 0, "1.1.0"), (100, 200, "android", 0, "1.1.0", 200)),
        # a later event that reports no bundle keeps the bundle
        (NEW, (200, "android", 1, None), (100, 200, "android", 1, "1.0.0", 100)),
        # an earlier event (sent late) moves only first_seen
        (NEW, (50, "android", 0, "0.9.0"), (50, 100, "ios", 1, "1.0.0", 100)),
        # on a tie the event folded later wins
        (NEW, (100, "android", 0, "1.1.0"), (100, 100, "android", 0, "1.1.0", 100)),
    ],
)
def test_a_devices_state_follows_its_latest_event(state, event, after):
    assert counting.next_state(state, *event) == after


def row(event_id, at, action="set", device="d1", version="1.0.0", old=None, prod=1, emulator=0,
        metadata=None):  # fmt: skip
    """A raw event as the fold reads it (FOLD_COLUMNS)."""
    return (event_id, at, "com.a", device, action, "ios", version, old, "8.51.0", "17.4",
            emulator, prod, metadata)  # fmt: skip


def test_a_fold_counts_each_rollup_row_once_per_key():
    deltas = counting.fold(
        [row(1, 10), row(2, 20), row(3, 30, action="unzip_fail", version="1.1.0")], {}, set()
    )
    counts = deltas.counts
    assert counts["rollup_hour"] == {
        ("com.a", 0, "set", "1.0.0", "ios", 1): 2,
        ("com.a", 0, "unzip_fail", "1.1.0", "ios", 1): 1,
    }
    assert counts["failure_day"] == {
        ("com.a", 0, "unzip_fail", "1.1.0", "ios", "8.51.0", "17.4", 1): 1
    }
    assert dict(counts["active_day"]) == {("com.a", 0, 1): 1}
    assert dict(counts["device_bundle"]) == {("com.a", "ios", 1, "1.0.0"): 1}
    assert deltas.devices == {("com.a", "d1"): (10, 30, "ios", 1, "1.0.0", 20)}


def test_a_fold_moves_a_known_device_from_its_old_counts_to_its_new_ones():
    known = {("com.a", "d1"): (10, 20, "ios", 1, "1.0.0", 20)}
    deltas = counting.fold(
        [row(5, 2 * HOUR, version="1.1.0", old="1.0.0")], known, {("com.a", 0, "d1")}
    )
    counts = deltas.counts
    assert dict(counts["device_bundle"]) == {
        ("com.a", "ios", 1, "1.0.0"): -1,
        ("com.a", "ios", 1, "1.1.0"): 1,
    }
    assert dict(counts["device_hour"]) == {("com.a", 0, "ios", 1): -1, ("com.a", 2, "ios", 1): 1}
    assert dict(counts["uninstall_day"]) == {("com.a", 0, "1.0.0", "ios", 1): 1}
    assert dict(counts["active_day"]) == {}  # already counted active that day
    assert deltas.device_days == {}


def test_a_dev_build_is_folded_apart_from_production():
    deltas = counting.fold([row(1, 10, prod=0), row(2, 11, device="d2", emulator=1)], {}, set())
    assert set(deltas.counts["rollup_day"]) == {("com.a", 0, "set", "1.0.0", "ios", 0)}
    assert deltas.counts["rollup_day"][("com.a", 0, "set", "1.0.0", "ios", 0)] == 2


def test_forgetting_devices_takes_them_out_of_the_device_counts_only():
    deltas = counting.unfold_devices({("com.a", "d1"): (10, 2 * HOUR, "ios", 1, "1.0.0", 20)})
    assert dict(deltas.counts["device_bundle"]) == {("com.a", "ios", 1, "1.0.0"): -1}
    assert dict(deltas.counts["device_hour"]) == {("com.a", 2, "ios", 1): -1}
    assert not deltas.counts["rollup_day"]


PARITY_CASES = [  # (action, version_name, old_version_name, is_prod, is_emulator, plugin_version)
    ("set", "1.1.0", "1.0.0", True, False, "8.51.0"),
    ("set", "1.1.0", "1.1.0", True, False, "8.51.0"),
    ("set", "1.1.0:www/a.js", "1.0.0:www/b.js", True, False, "8.51.0"),
    ("set", "1.1.0", "", True, False, "8.51.0"),
    ("set", "1.1.0", "1.0.0", False, False, "8.51.0"),
    ("set", "1.1.0", "1.0.0", True, True, "8.51.0"),
    ("set_fail", "1.2.0", "", True, False, "8.51.0"),
    ("download_fail", "1.2.0", "", True, False, "7.9.0"),  # legacy: not a failure
    ("download_fail", "1.2.0", "", True, False, "7.17.0"),
    ("unzip_fail", "1.2.0:www/x.js", "", True, False, "8.51.0"),
    ("app_moved_to_foreground", "1.1.0", "", True, False, "8.51.0"),
]


def test_the_raw_event_filters_list_exactly_what_the_counting_rules_count(client):
    """The drill-down's SQL filters mirror counting.py: they must agree case by case."""
    bodies = [
        {"action": action, "app_id": "com.a", "device_id": f"d{i}", "platform": "ios",
         "version_name": version, "old_version_name": old, "is_prod": prod,
         "is_emulator": emulator, "plugin_version": plugin, "timestamp": 1_790_000_000_000 + i}
        for i, (action, version, old, prod, emulator, plugin) in enumerate(PARITY_CASES)
    ]  # fmt: skip
    assert client.post("/stats", json=bodies).status_code == 200
    listed = client.get("/stats/events?include_dev=1&limit=100").json["events"]
    assert len(listed) == len(PARITY_CASES)
    for kind in ("install", "failure", "uninstall"):
        found = client.get(f"/stats/events?include_dev=1&kind={kind}&limit=100").json["events"]
        expected = [e["device_id"] for e in listed if kind in e["counts_as"]]
        assert sorted(e["device_id"] for e in found) == sorted(expected), kind
    prod = client.get("/stats/events?prod=1&limit=100").json["events"]
    assert sorted(e["device_id"] for e in prod) == sorted(
        e["device_id"] for e in listed if counting.is_prod(e["is_prod"], e["is_emulator"])
    )
    for e in listed:
        assert e["bundle"] == counting.bundle_of(e["version_name"])


# -- release health: a device's record of a version ------------------------------------------

RUN = {"running": True, "failure": False, "download": False}
FAIL = {"running": False, "failure": True, "download": False}
DOWNLOAD = {"running": False, "failure": False, "download": True}
IN, F, N = counting.INSTALLED, counting.FAILED, counting.NO_OUTCOME


@pytest.mark.parametrize(
    "state, event, after",
    [
        # a first set: installed, and the version runs from then on
        (None, (100, "ios", 1, "set", RUN), (100, "ios", 1, IN, None, 100, 100, None)),
        # a first failure: failed; a retry changes nothing
        (None, (100, "ios", 1, "set_fail", FAIL), (100, "ios", 1, F, None, None, None, None)),
        ((100, "ios", 1, F, None, None, None, None), (200, "ios", 1, "set_fail", FAIL),
         (100, "ios", 1, F, None, None, None, None)),
        # failed then installed: installed; installed then failed: still installed
        ((100, "ios", 1, F, None, None, None, None), (200, "ios", 1, "set", RUN),
         (100, "ios", 1, IN, None, 200, 200, None)),
        ((100, "ios", 1, IN, None, 100, 100, None), (200, "ios", 1, "set_fail", FAIL),
         (100, "ios", 1, IN, None, 100, 100, None)),
        # a repeated set keeps the first; a set sent late (earlier time) becomes the first
        ((100, "ios", 1, IN, None, 100, 100, None), (300, "ios", 1, "set", RUN),
         (100, "ios", 1, IN, None, 100, 100, None)),
        ((100, "ios", 1, IN, None, 100, 100, None), (50, "ios", 1, "set", RUN),
         (50, "ios", 1, IN, None, 50, 50, None)),
        # platform and prod stay those of the first event folded
        ((100, "ios", 1, N, 100, None, None, None), (200, "android", 0, "set", RUN),
         (100, "ios", 1, IN, 100, 200, 200, None)),
        # the earliest download start and the earliest issue
        ((100, "ios", 1, N, 100, None, None, None), (90, "ios", 1, "download_0", DOWNLOAD),
         (90, "ios", 1, N, 90, None, None, None)),
        ((100, "ios", 1, N, None, None, 100, None), (150, "ios", 1, "app_crash", RUN),
         (100, "ios", 1, N, None, None, 100, 150)),
    ],
)  # fmt: skip
def test_a_devices_record_of_a_version_keeps_its_outcome_and_first_times(state, event, after):
    assert counting.next_version_state(state, *event) == after


@pytest.mark.parametrize(
    "download, installed, took",
    [(0, 90_000, 90_000), (0, 2 * HOUR, 2 * HOUR), (0, 2 * HOUR + 1, None),  # over 2 h: out
     (100, 50, None), (None, 50, None), (50, None, None)],  # a set before any download: out
)  # fmt: skip
def test_install_time_runs_from_the_first_download_start_to_the_first_set(
    download, installed, took
):
    assert counting.install_ms((0, "ios", 1, IN, download, installed, None, None)) == took


@pytest.mark.parametrize(
    "ms, bucket, middle",
    [(0, 0, 1), (1, 0, 1), (2, 8, 2), (1000, 79, 981), (1024, 80, 1069), (450, 70, 450)],
)
def test_durations_fall_in_log_spaced_buckets_of_about_nine_percent(ms, bucket, middle):
    assert counting.duration_bucket(ms) == bucket
    assert counting.bucket_ms(bucket) == middle


@pytest.mark.parametrize(
    "action, metadata, duration",
    [("app_launch_ready", '{"duration_ms": "450"}', 450.0),
     ("app_launch_ready", '{"duration_ms": "12.5"}', 12.5),
     ("app_launch_ready", '{"duration_ms": "-3"}', None),
     ("app_launch_ready", '{"duration_ms": "nan"}', None),
     ("app_launch_ready", '{"duration_ms": "soon"}', None), ("app_launch_ready", '{}', None),
     ("app_launch_ready", None, None), ("app_crash", '{"duration_ms": "450"}', None)],
)  # fmt: skip
def test_a_launch_time_is_the_duration_ms_of_an_app_launch_ready(action, metadata, duration):
    assert counting.launch_duration(action, metadata) == duration


@pytest.mark.parametrize(
    "action, issue",
    [("app_crash", True), ("app_anr", True), ("webview_unhandled_rejection", True),
     ("app_memory_warning", False), ("webview_resource_error", False),
     ("webview_security_policy_violation", False), ("set_fail", False)],
)  # fmt: skip
def test_only_the_hard_app_health_actions_are_issues(action, issue):
    assert counting.is_issue(action) is issue


def test_a_fold_counts_a_device_once_per_version_whatever_it_repeats():
    deltas = counting.fold(
        [row(1, 10, "set_fail"), row(2, 20, "set_fail"), row(3, 30), row(4, 40), row(5, 50)],
        {}, set(), {},
    )  # fmt: skip
    assert dict(deltas.counts["outcome_devices"]) == {("com.a", "1.0.0", "ios", 1, "installed"): 1}
    assert dict(deltas.counts["reach_day"]) == {("com.a", 0, "1.0.0", "ios", 1, "active"): 1}


@pytest.mark.parametrize(
    "state, event, after",
    [
        (None, (100, "ios", 1, "1.0.0"), ("ios", 1, "1.0.0", 100)),
        # a later event moves the day's bundle, an earlier one sent late does not
        (("ios", 1, "1.0.0", 100), (200, "ios", 1, "1.1.0"), ("ios", 1, "1.1.0", 200)),
        (("ios", 1, "1.1.0", 200), (150, "ios", 1, "1.0.0"), ("ios", 1, "1.1.0", 200)),
        # on a tie the event folded later wins
        (("ios", 1, "1.0.0", 100), (100, "ios", 1, "1.1.0"), ("ios", 1, "1.1.0", 100)),
    ],
)
def test_the_bundle_a_device_ran_on_a_day_is_that_of_its_latest_event(state, event, after):
    assert counting.next_day_bundle(state, *event) == after


@pytest.mark.parametrize("bundle", ["1.2.3", "", None, "unknown", "builtin", "Unknown", "0"])
def test_the_sql_version_group_is_that_of_the_counting_rules(app, bundle):
    """store/sql.py's VERSION_GROUP mirrors counting.version_group, on each store."""
    [row] = app.extensions["store"].query(
        f"SELECT {VERSION_GROUP} AS version FROM (SELECT CAST(? AS TEXT) AS bundle) AS b",
        [bundle],
    )
    assert row["version"] == counting.version_group(bundle)
