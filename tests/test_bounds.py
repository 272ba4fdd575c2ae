"""Bounded reads: whatever clients send (many distinct names, big metadata), every read answers
in bounded time, size and memory, and the real values stay in sight."""

import contextlib
import json
import time
import tracemalloc
from collections import Counter

import pytest

from capgo_stats import counting, fold, reports
from capgo_stats.filters import Filters
from capgo_stats.protocol import COLUMNS, DAY_MS, HOUR_MS, Refusal
from capgo_stats.render import export
from capgo_stats.store import ReadTimeout, end_deadline, start_deadline
from capgo_stats.web import context
from support.payloads import event

BIG_METADATA = json.dumps({f"key{k:03d}": "x" * 4096 for k in range(64)})


def _row(now, i, app_id="com.example.app", action="set", version="1.2.3", **extra):
    """One stored event row, in protocol.COLUMNS order, written straight to the store."""
    row = {
        "at": now + i,
        "received_at": now,
        "device_ts": now + i,
        "app_id": app_id,
        "device_id": f"dev-{i}",
        "action": action,
        "platform": "android",
        "version_name": version,
        "old_version_name": None,
        "custom_id": None,
        "version_build": None,
        "version_code": None,
        "version_os": None,
        "plugin_version": None,
        "is_emulator": 0,
        "is_prod": 1,
        "default_channel": None,
        "key_id": None,
        "install_source": None,
        "metadata": None,
        "fingerprint": None,
    }
    row.update(extra)
    return tuple(row.values())


def _write(store, rows, now):
    """Write rows in batches, as ingest would, folding nothing."""
    for start in range(0, len(rows), 5000):
        store.write(rows[start : start + 5000], [], now)


def _peak(work):
    """The peak Python memory, in bytes, that work() takes, and what it returned."""
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


# -- memory by bytes, not rows ----------------------------------------------------------------


def _big_events(store, n, now):
    """n events that each carry 64 x 4 KB of metadata."""
    _write(store, [_row(now, i, metadata=BIG_METADATA) for i in range(n)], now)


def test_export_memory_of_events_with_big_metadata_stays_flat_however_many_events(app):
    store, now = app.extensions["store"], int(time.time() * 1000)
    export_size = lambda: sum(len(c) for c in export.chunks(store, Filters(), "csv"))  # noqa: E731
    _big_events(store, 20, now)
    small_peak, small_size = _peak(export_size)
    _big_events(store, 60, now + 1000)
    big_peak, big_size = _peak(export_size)
    assert big_size > 3 * small_size
    assert big_peak < 1.5 * small_peak
    assert big_peak < 40 * 1024 * 1024


def test_a_page_of_events_with_big_metadata_is_cut_by_bytes_and_pages_on(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _big_events(store, 120, now)
    peak, page = _peak(lambda: client.get("/stats/events?limit=1000").json)
    assert 0 < len(page["events"]) < 120
    assert page["next"] is not None
    assert peak < 60 * 1024 * 1024
    seen = [event["id"] for event in page["events"]]
    while page["next"]:
        page = client.get(f"/stats/events?limit=1000&cursor={page['next']}").json
        seen += [event["id"] for event in page["events"]]
    assert sorted(seen, reverse=True) == seen and len(set(seen)) == 120


def _count_reads(monkeypatch, store):
    """Count the store's read queries from now on; returns the counter (a one-item list)."""
    calls = [0]
    for name in ("query", "_rows"):
        original = getattr(store, name)

        def counted(*args, original=original, **kwargs):
            calls[0] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    return calls


def test_a_failure_page_over_many_apps_of_legacy_download_fail_reads_a_bounded_number_of_queries(
    app, client, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    legacy = [
        _row(now, i, app_id=f"com.app{i:04d}", action="download_fail", plugin_version="6.0.0")
        for i in range(150)
    ]
    _write(store, [*legacy, _row(now, 150, action="update_fail", plugin_version="8.0.0")], now)
    client.get("/stats/summary")  # fold first
    calls = _count_reads(monkeypatch, store)
    page = client.get("/stats/events?kind=failure&limit=1").json
    assert [event["action"] for event in page["events"]] == ["update_fail"]
    assert page["next"] is None
    assert calls[0] < 400


# -- many distinct values ---------------------------------------------------------------------


def _real_version(store, now):
    """Version 1.0.0, installed on 50 devices of its own, before the flood."""
    real = [_row(now - 10_000, i, version="1.0.0", device_id=f"real-{i}") for i in range(50)]
    _write(store, real, now)


def _flood_versions(store, n, now, app_id="com.example.app"):
    """n installs, each of its own version (flood-0 ... flood-n), on n devices."""
    _write(store, [_row(now, i, app_id=app_id, version=f"flood-{i}") for i in range(n)], now)


def test_versions_answer_a_page_of_100_and_count_the_rest_however_many_versions(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_versions(store, 5_000, now)
    report = client.get("/stats/versions?app_id=com.example.app").json
    assert len(report["versions"]) == 100
    assert report["more"] == 4_901 and report["next_offset"] == 100
    assert report["versions"][-1]["version"] == "1.0.0"  # most devices, oldest: listed last
    assert report["versions"][-1]["devices"] == 50
    last = client.get("/stats/versions?app_id=com.example.app&offset=4995&limit=10").json
    assert len(last["versions"]) == 6
    assert last["more"] == 0 and last["next_offset"] is None


def test_the_dashboard_shows_100_versions_and_links_to_the_rest(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_versions(store, 5_000, now)
    page = client.get("/?app_id=com.example.app").get_data(as_text=True)
    for name in ("versions", "health"):  # each table: 100 rows, the version in use among them
        table = page.split(f'data-table="{name}"', 1)[1].split("</table>", 1)[0]
        assert table.count('<tr data-version="flood-') == 99, name
        assert '<tr data-version="1.0.0">' in table, name
    assert '<tr data-version="1.0.0">' in page
    assert "4901 more</a>" in page
    assert "/stats/versions?app_id=com.example.app&amp;offset=100" in page
    assert len(page) < 1_000_000


def _flood_apps(store, n, now):
    """One event from each of n made-up apps, and 50 from the real one, com.example.app."""
    real = [_row(now - 10_000, i, device_id=f"real-{i}") for i in range(50)]
    _write(store, [*real, *(_row(now, i, app_id=f"flood.{i:05d}") for i in range(n))], now)


def test_metrics_name_the_100_apps_with_the_most_events_and_sum_the_rest_as_other(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _flood_apps(store, 5_000, now)
    text = client.get("/metrics").get_data(as_text=True)
    events = [line for line in text.splitlines() if line.startswith("capgo_stats_events_total{")]
    assert len(events) == 101
    assert 'capgo_stats_events_total{app_id="com.example.app",action="set"} 50' in events
    assert 'capgo_stats_events_total{app_id="_other",action="set"} 4901' in events
    last = [line for line in text.splitlines() if line.startswith("capgo_stats_last_event_")]
    assert len(last) == 101 and any('app_id="_other"' in line for line in last)
    assert len(text) < 50_000


@pytest.mark.sqlite_only  # SQLite's trace callback shows the statements a scrape runs
def test_a_scrape_reads_the_top_apps_once(app, client, monkeypatch):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _flood_apps(store, 500, now)
    client.get("/stats/summary")  # fold first
    statements, lend = [], store.connection

    @contextlib.contextmanager
    def traced(*args, **kwargs):
        with lend(*args, **kwargs) as conn:
            conn.set_trace_callback(statements.append)
            try:
                yield conn
            finally:
                conn.set_trace_callback(None)

    monkeypatch.setattr(store, "connection", traced)
    assert client.get("/metrics").status_code == 200
    top = [sql for sql in statements if "ORDER BY sum(count) DESC" in sql]
    assert len(top) == 1, top


def test_the_app_picker_lists_100_apps_and_any_other_opens_by_its_app_id(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _flood_apps(store, 5_000, now)
    page = client.get("/").get_data(as_text=True)
    assert page.count(' data-app="') == 100
    assert ' data-app="com.example.app"' in page  # the most events: never crowded out
    assert "4901 more apps" in page and 'name="app_id" required' in page
    other = client.get("/?app_id=flood.04321").get_data(as_text=True)
    assert ' aria-current="page" data-app="flood.04321"' in other
    assert len(page) < 1_000_000


def test_a_report_without_an_app_id_reads_a_bounded_number_of_queries_however_many_apps(
    app, client, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _flood_apps(store, 5_000, now)
    client.get("/stats/summary")  # fold first
    calls = _count_reads(monkeypatch, store)
    assert client.get("/stats/versions").status_code == 200
    assert calls[0] < 300


def test_the_dashboard_without_an_app_id_ranks_the_apps_once(app, client, monkeypatch):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _flood_apps(store, 200, now)
    client.get("/stats/summary")  # fold first
    ranked = []
    top_apps = store.top_apps
    monkeypatch.setattr(store, "top_apps", lambda limit: ranked.append(limit) or top_apps(limit))
    assert client.get("/").status_code == 200
    assert ranked == [reports.APPS_SHOWN]  # a scan of rollup_day each: 80 ms at 100,000 apps


def test_the_refusal_tally_keeps_1000_rows_a_day_and_tallies_new_names_past_it_as_other(
    app, client
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    real = Refusal("unknown_action", "", "com.example.app", "app_custom_event")
    store.write([], [real], now)
    for start in range(0, 20_000, 1000):
        names = [f"made-up-{i}" for i in range(start, start + 1000)]
        store.write([], [Refusal("unknown_action", "", "com.example.app", a) for a in names], now)
    store.write([], [real, real], now)
    report = client.get("/stats/rejected?app_id=com.example.app").json
    assert report["refused"] == 3 + 1000 - 1  # the real row, then made-up names up to 1,000 rows
    everything = client.get("/stats/rejected").json
    assert len(everything["rows"]) == 1000 and everything["more"]["rows"] == 1
    assert everything["refused"] == 20_003
    counts = {(r["app_id"], r["action"]): r["count"] for r in everything["rows"]}
    assert counts[("com.example.app", "app_custom_event")] == 3
    assert counts[("(other)", "(other)")] == 20_000 - 999


def test_failures_list_100_rows_a_breakdown_and_count_the_rest(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    real = [
        _row(now - 10_000, i, action="update_fail", plugin_version="8.0.0", device_id=f"r{i}")
        for i in range(50)
    ]
    flood = [
        _row(now, i, action="update_fail", version=f"flood-{i}", plugin_version=f"9.{i}.0")
        for i in range(5_000)
    ]
    _write(store, [*real, *flood], now)
    report = client.get("/stats/failures?app_id=com.example.app").json
    assert report["failures"] == 5_050
    assert len(report["by_plugin_version"]) == 100 and len(report["by_action_version"]) == 100
    assert report["by_plugin_version"][0] == {"plugin_version": "8.0.0", "count": 50}
    assert report["more"]["by_plugin_version"] == 4_901
    assert report["more"]["by_platform"] == 0


def test_the_timeline_names_100_versions_and_sums_the_others(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_versions(store, 5_000, now)
    report = client.get("/stats/timeline?app_id=com.example.app").json
    for point in report["points"]:
        assert len(point["installs_by_version"]) <= 101
        assert sum(point["installs_by_version"].values()) == point["installs"]
    by_version = report["points"][-1]["installs_by_version"]
    assert by_version["1.0.0"] == 50 and by_version["(other)"] == 5_000 - 99


def test_counts_list_the_1000_biggest_rows_and_count_the_rest(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _flood_apps(store, 5_000, now)
    report = client.get("/stats/counts").json
    assert len(report["counts"]) == 1000 and report["more"] == 4_001
    assert report["counts"][0] == {"app_id": "com.example.app", "action": "set", "count": 50}


def test_a_failure_page_skipping_thousands_of_legacy_events_reads_them_in_one_scan(
    app, client, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    legacy = [
        _row(now, i, app_id=f"com.app{i % 150:03d}", action="download_fail", plugin_version="6.0")
        for i in range(3_000)
    ]
    _write(store, [_row(now - 1, 0, action="update_fail", plugin_version="8.0.0"), *legacy], now)
    client.get("/stats/summary")  # fold first
    calls = _count_reads(monkeypatch, store)
    page = client.get("/stats/events?kind=failure&limit=1").json
    assert [event["action"] for event in page["events"]] == ["update_fail"]
    assert calls[0] < 150


# -- read time under a cardinality flood: the rows a read takes in do not grow with the names ----


def _count_rows(monkeypatch, store):
    """Count the rows the store's read queries hand to Python from now on (a one-item list)."""
    rows = [0]
    for name in ("query", "_rows"):
        original = getattr(store, name)

        def counted(*args, original=original, **kwargs):
            found = original(*args, **kwargs)
            rows[0] += len(found)
            return found

        monkeypatch.setattr(store, name, counted)
    return rows


def _flood_of_every_kind(store, n, now):
    """n made-up versions, each with an install, an uninstall, a launch and a crash (failures
    are left out: the failure breakdowns still read every failing version)."""
    flood = []
    for i in range(n):
        name = f"flood-{i}"
        flood.append(_row(now, 5 * i, version=name, old_version_name=f"old-{i}"))
        flood.append(_row(now, 5 * i + 2, action="app_crash", version=name))
        launch = json.dumps({"duration_ms": "1200"})
        flood.append(_row(now, 5 * i + 3, action="app_launch_ready", version=name, metadata=launch))
    _write(store, flood, now)


ROUTES = (
    "/stats/versions?app_id=com.example.app&limit=10",
    "/stats/health?app_id=com.example.app",
    "/stats/timeline?app_id=com.example.app",
    "/stats/adoption?app_id=com.example.app",
    "/?app_id=com.example.app",
)


def test_the_per_version_reads_take_in_a_bounded_number_of_rows_however_many_versions(
    app, client, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_of_every_kind(store, 3_000, now)
    client.get("/stats/summary")  # fold first
    rows = _count_rows(monkeypatch, store)
    for route in ROUTES:
        rows[0] = 0
        assert client.get(route).status_code == 200, route
        assert rows[0] < 2_000, route  # 100 versions' rows, not one per made-up name


def test_adoption_names_100_versions_a_day_past_1000_and_sums_the_others(app, client):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_versions(store, 1_500, now)
    report = client.get("/stats/adoption?app_id=com.example.app").json
    point = report["points"][-1]
    assert point["devices"] == 1_550
    assert len(point["shares"]) <= 101 and point["shares"]["(other)"] > 0.9
    assert point["shares"]["1.0.0"] == round(50 / 1_550, 4)


def test_past_1000_versions_the_page_rows_have_the_figures_of_reading_every_version(
    app, client, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    real = []
    for v, devices in (("2.0.0", 30), ("2.1.0", 20), ("2.2.0", 10)):
        for i in range(devices):
            device = f"{v}-{i}"
            real.append(_row(now - 10_000, i, version=v, device_id=device, old_version_name="1.0"))
            if i % 3 == 0:
                real.append(_row(now - 9_000, i, action="update_fail", version=v, device_id=device))
    real += [_row(now - 8_000, i, version="builtin", device_id=f"b-{i}") for i in range(5)]
    _write(store, real, now)
    _flood_versions(store, 1_100, now)
    bounded = client.get("/stats/versions?app_id=com.example.app").json
    health = client.get("/stats/health?app_id=com.example.app").json
    monkeypatch.setattr("capgo_stats.reports.MANY_VERSIONS", 10**9)  # every version read
    full = client.get("/stats/versions?app_id=com.example.app").json
    # Past 1,000 names, `more` counts the versions devices run now: not 1.0, only replaced.
    assert bounded.pop("more") == full.pop("more") - 1
    assert bounded == full
    everything = client.get("/stats/health?app_id=com.example.app").json
    shown = {row["version"] for row in health["versions"]}
    assert shown == {row["version"] for row in everything["versions"]}
    assert health["more"] == everything["more"] and health["builtin"] == everything["builtin"]
    for row, full in zip(health["versions"], everything["versions"], strict=True):
        assert {**row, "previous": None, "change": None} == {
            **full,
            "previous": None,
            "change": None,
        }  # the change chain runs over the versions shown


def test_the_gate_reads_one_version_however_many_versions(app, runner, monkeypatch):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_versions(store, 1_500, now)
    runner.invoke(args=["fold"])
    rows = _count_rows(monkeypatch, store)
    result = runner.invoke(
        args=["gate", "--app-id", "com.example.app", "--version", "1.0.0", "--max-fail-rate", "5%"]
    )
    assert "PASS com.example.app 1.0.0" in result.output, result.output
    assert rows[0] < 100


# -- failure floods: made-up versions, plugin versions and OS versions on *_fail events ---------


def _flood_failures(store, n, now, names):
    """n failures, update_fail and download_fail in turn, each with a plugin version and an OS
    version of its own, over `names` made-up version names."""
    flood = [
        _row(now, i, action="download_fail" if i % 2 else "update_fail",
             version=f"flood-{i % names}", plugin_version=f"{i % 10}.{i}.0", version_os=f"{i}.0")
        for i in range(n)
    ]  # fmt: skip
    _write(store, flood, now)


FAILURE_ROUTES = (
    "/stats/failures?app_id=com.example.app",
    "/stats/failures?app_id=com.example.app&version=flood-1",
    "/stats/versions?app_id=com.example.app&limit=10",
    "/stats/timeline?app_id=com.example.app",
    "/?app_id=com.example.app",
)


@pytest.mark.parametrize("names", [10, 3_000])
def test_the_failure_reads_take_in_a_bounded_number_of_rows_however_many_breakdowns(
    app, client, monkeypatch, names
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _real_version(store, now)
    _flood_failures(store, 3_000, now, names)
    client.get("/stats/summary")  # fold first
    rows = _count_rows(monkeypatch, store)
    for route in FAILURE_ROUTES:
        rows[0] = 0
        assert client.get(route).status_code == 200, route
        assert rows[0] < 2_000, route  # the rows shown and a few sums, not one per name
    report = client.get("/stats/failures?app_id=com.example.app").json
    assert report["failures"] + report["ignored_legacy_download_fail"] == 3_000
    assert report["by_platform"] == [{"platform": "android", "count": report["failures"]}]
    shown = len(report["by_plugin_version"])
    assert shown == 100 and shown + report["more"]["by_plugin_version"] == report["failures"]


def test_past_the_plugin_versions_checked_made_up_ones_count_as_failures(app, client, monkeypatch):
    store, now = app.extensions["store"], int(time.time() * 1000)
    legacy = [_row(now, i, action="download_fail", plugin_version="6.0.0") for i in range(20)]
    made_up = [
        _row(now, 100 + i, action="download_fail", plugin_version=f"1.{i}.0") for i in range(10)
    ]
    _write(store, [*legacy, *made_up], now)
    monkeypatch.setattr("capgo_stats.reports.LEGACY_CHECKED", 5)
    report = client.get("/stats/failures?app_id=com.example.app").json
    # 6.0.0 (the most events) and the first four made-up ones are judged legacy; the rest count
    assert report["ignored_legacy_download_fail"] == 24
    assert report["failures"] == 6
    versions = client.get("/stats/versions?app_id=com.example.app").json
    assert versions["ignored_legacy_download_fail"] == 24
    assert versions["versions"][0]["failures"] == 6


PLUGINS = ("6.0.0", "7.16.9", "7.17.0", "7.17.0-beta.1", "6.14.25", None, "v8", "junk", "6.14.24")
VERSION_NAMES = ("1.0.0", "1.0.0:www/a.js", "", "builtin", "unknown", "2.0.0")


def _mixed_failures(now):
    """Failures of every kind the rules tell apart, spread over three days, with ties."""
    rows = []
    for i in range(900):
        plugin = f"8.{i % 301}.0" if i % 3 == 0 else PLUGINS[i % len(PLUGINS)]
        action = ("update_fail", "download_fail", "set_fail", "unzip_fail", "set")[i % 5]
        platform = ("android", "ios", "electron")[i % 7 % 3]
        rows.append(
            _row(now + i * 290_000, i, action=action, platform=platform,
                 version=VERSION_NAMES[i % 11 % 6], plugin_version=plugin,
                 version_os=(None, "14", "15")[i % 4 % 3], is_prod=int(i % 13 != 0))
        )  # fmt: skip
    return rows


def _failures_in_python(rows, since, until, version):
    """/stats/failures worked out from the raw rows with counting.py alone (the reference)."""
    groups = {name: Counter() for name in ("action_version", "plugin_version", "os_version")}
    groups["platform"], total, ignored = Counter(), 0, 0
    for r in (dict(zip(COLUMNS, row, strict=True)) for row in rows):
        group = counting.version_group(counting.bundle_of(r["version_name"]))
        if not (counting.is_failure_action(r["action"]) and since <= r["at"] < until):
            continue
        if not r["is_prod"] or (version is not None and group != version):
            continue
        if not counting.counts_as_failure(r["action"], r["plugin_version"], r["platform"]):
            ignored += 1
            continue
        total += 1
        groups["action_version"][(r["action"], group)] += 1
        groups["plugin_version"][(r["plugin_version"] or "",)] += 1
        groups["os_version"][(r["platform"], r["version_os"] or "")] += 1
        groups["platform"][(r["platform"],)] += 1
    return total, ignored, groups


@pytest.mark.parametrize("version", [None, "1.0.0", "unknown", "builtin"])
def test_the_failure_breakdowns_are_those_of_counting_every_event_in_python(app, client, version):
    store, start = app.extensions["store"], 1_790_000_000_000 // DAY_MS * DAY_MS
    rows = _mixed_failures(start)
    _write(store, rows, start + 3 * DAY_MS)
    since, until = start + 5 * HOUR_MS + 1_234, start + 2 * DAY_MS + 3 * HOUR_MS + 99_000
    query = f"app_id=com.example.app&since={reports.iso(since)}&until={reports.iso(until)}"
    report = client.get(f"/stats/failures?{query}" + (f"&version={version}" if version else ""))
    total, ignored, groups = _failures_in_python(rows, since, until, version)
    assert (report.json["failures"], report.json["ignored_legacy_download_fail"]) == (
        total,
        ignored,
    )
    for name, keys in reports.FAILURE_BREAKDOWNS.items():
        ordered = sorted(groups[name].items(), key=lambda kv: (-kv[1], kv[0]))
        expected = [{**dict(zip(keys, key, strict=True)), "count": n} for key, n in ordered[:100]]
        assert report.json[f"by_{name}"] == expected, name
        assert report.json["more"][f"by_{name}"] == max(len(ordered) - 100, 0), name
    assert version is not None or report.json["more"]["by_plugin_version"] > 0


# -- every read bounded in time (STATS_READ_TIMEOUT_MS) -------------------------------------------

# A read that would run for minutes: a count to a billion, in SQL both stores speak.
ENDLESS = (
    "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 1000000000)"
    " SELECT count(*) AS n FROM i"
)


@contextlib.contextmanager
def _deadline(ms):
    """The store's reads in the block share `ms` milliseconds, as a request's do."""
    token = start_deadline(ms)
    try:
        yield
    finally:
        end_deadline(token)


def test_a_read_past_its_deadline_is_stopped_in_the_middle_of_its_statement(app):
    store = app.extensions["store"]
    with _deadline(50), pytest.raises(ReadTimeout):
        store.query(ENDLESS)
    assert store.query("SELECT 1 AS one") == [{"one": 1}]  # no deadline now; the store reads on


def test_a_passed_read_deadline_leaves_ingest_the_fold_and_the_export_alone(app):
    store, now = app.extensions["store"], int(time.time() * 1000)
    with _deadline(0):
        _write(store, [_row(now, i) for i in range(10)], now)
        assert fold.catch_up(store) == 10
        assert sum(len(batch) for batch in store.iter_events(Filters(), ["id"])) == 10
        with pytest.raises(ReadTimeout):
            store.counts(Filters())


def test_a_flood_read_past_stats_read_timeout_ms_answers_503_read_timeout_and_ingest_goes_on(
    make_app,
):
    bounded = make_app(STATS_READ_TIMEOUT_MS=1)
    store, now = bounded.extensions["store"], int(time.time() * 1000)
    _flood_failures(store, 3_000, now, 3_000)  # each breakdown scans 3,000 rows: well over 1 ms
    client = bounded.test_client()
    response = client.get("/stats/failures?app_id=com.example.app")
    assert response.status_code == 503
    assert response.json == {
        "error": "read_timeout",
        "message": "This read took longer than STATS_READ_TIMEOUT_MS (1 ms) and was stopped:"
        " narrow the range (since, until) or filter by app_id (and platform).",
    }
    assert client.post("/stats", json=event(device_id="after")).status_code == 200
    unbounded = make_app(STATS_READ_TIMEOUT_MS=0).test_client()  # 0: no limit
    report = unbounded.get("/stats/failures?app_id=com.example.app").json
    assert report["failures"] + report["ignored_legacy_download_fail"] == 3_000


READ_ROUTES = (
    "/stats/counts",
    "/stats/versions?app_id=com.example.app",
    "/stats/health?app_id=com.example.app",
    "/stats/adoption?app_id=com.example.app",
    "/stats/timeline?app_id=com.example.app",
    "/stats/failures?app_id=com.example.app",
    "/stats/summary?app_id=com.example.app",
    "/stats/rejected",
    "/stats/events",
    "/stats/devices/dev-0",
    "/stats/devices?app_id=com.example.app",
    "/?app_id=com.example.app",
    "/metrics",
)


def test_every_read_route_answers_read_timeout_once_its_deadline_has_passed(
    app, client, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _write(store, [_row(now, i) for i in range(3)], now)
    # Every deadline passed as it begins, so no read gets in first, however fast.
    monkeypatch.setattr(context, "start_deadline", lambda ms: start_deadline(0))
    for route in READ_ROUTES:
        response = client.get(route)
        assert (response.status_code, response.json["error"]) == (503, "read_timeout"), route
    for route in ("/stats/events.csv", "/healthz", "/stats"):  # an export, no read, no read
        assert client.get(route).status_code == 200, route
    assert client.post("/stats", json=event(device_id="after")).status_code == 200
