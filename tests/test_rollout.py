"""A known rollout, replayed: every report must tell the truth about it.

Bundle 1.1.0 replaces 1.0.0. The expected figures below are worked out by hand from the story,
not from the code:

| device | plugin | events (days ago @ hour, UTC)                                | runs at end |
|--------|--------|---------------------------------------------------------------|-------------|
| A      | 8.51   | set 1.0.0 (10@9), download + set 1.1.0 (3@9), open (2@9)      | 1.1.0       |
| B ios  | 8.51   | set 1.0.0 (10@9), set 1.1.0 (2@10)                            | 1.1.0       |
| C      | 8.51   | set 1.0.0 (10@9), download + set_fail 1.1.0 (3@10),           | 1.0.0       |
|        |        | open 1.0.0 (1@20)                                             |             |
| D ios  | 8.51   | set 1.0.0 (9@9), unzip_fail 1.1.0 (2@11); id sent UPPERCASE   | 1.0.0       |
| E      | 6.10.3 | no timestamps (arrive now): set 1.0.0, legacy download_fail   | 1.0.0       |
| H      | 8.51   | open builtin (1@20)                                           | builtin     |
| I      | 7.17.0 | set 1.0.0 (10@9), download_fail 1.1.0 (1@20): a real failure  | 1.0.0       |
| J      | 7.16.9 | set 1.0.0 (10@9), download_fail 1.1.0 (1@20): legacy, ignored | 1.0.0       |
| F emu  | 8.51   | set 1.1.0 (1@21), set_fail 1.1.0 (1@21): not prod             | 1.1.0       |
| G dev  | 8.51   | set 1.1.0 (1@21): not prod                                    | 1.1.0       |

Every set of 1.0.0 replaces builtin; the sets of 1.1.0 replace 1.0.0.
"""

import json

import pytest

from capgo_stats import protocol, reports
from support.browser import Page, dump_dom, serving

NOW = 1_795_197_600_000  # 2026-11-20T18:00:00Z, frozen for the whole test
DAY, HOUR = 86_400_000, 3_600_000
TODAY = NOW // DAY * DAY

IDS = {name: f"0000000{i}-0000-4000-8000-00000000000{i}" for i, name in enumerate("ABCDEFGHIJ")}
APP = "com.rollout.app"


def at(days_ago: int, hour: int) -> int:
    """A time `days_ago` days before today, at that hour (UTC)."""
    return TODAY - days_ago * DAY + hour * HOUR


def ev(device, action, version, when=None, old="", plugin="8.51.14", platform="android", **kw):
    """One event of the story, as the device's plugin sends it."""
    body = {
        "action": action,
        "app_id": APP,
        "device_id": IDS[device].upper() if device == "D" else IDS[device],
        "platform": platform,
        "version_name": version,
        "old_version_name": old,
        "version_os": "17.4" if platform == "ios" else "14",
        "plugin_version": plugin,
        "is_emulator": False,
        "is_prod": True,
        **kw,
    }
    if when is not None:
        body["timestamp"] = when
    return body


STORY = [
    ev("A", "set", "1.0.0", at(10, 9), old="builtin"),
    ev("A", "download_complete", "1.1.0", at(3, 9)),
    ev("A", "set", "1.1.0", at(3, 9) + 1_000, old="1.0.0"),
    ev("A", "app_moved_to_foreground", "1.1.0", at(2, 9)),
    ev("B", "set", "1.0.0", at(10, 9), old="builtin", platform="ios"),
    ev("B", "set", "1.1.0", at(2, 10), old="1.0.0", platform="ios"),
    ev("C", "set", "1.0.0", at(10, 9), old="builtin"),
    ev("C", "download_complete", "1.1.0", at(3, 10)),
    ev("C", "set_fail", "1.1.0", at(3, 10) + 1_000),
    ev("C", "app_moved_to_foreground", "1.0.0", at(1, 20)),
    ev("D", "set", "1.0.0", at(9, 9), old="builtin", platform="ios"),
    ev("D", "unzip_fail", "1.1.0", at(2, 11), platform="ios"),
    ev("E", "set", "1.0.0", old="builtin", plugin="6.10.3"),
    ev("E", "download_fail", "1.0.0", plugin="6.10.3"),
    ev("H", "app_moved_to_foreground", "builtin", at(1, 20)),
    ev("I", "set", "1.0.0", at(10, 9), old="builtin", plugin="7.17.0"),
    ev("I", "download_fail", "1.1.0", at(1, 20), plugin="7.17.0"),
    ev("J", "set", "1.0.0", at(10, 9), old="builtin", plugin="7.16.9"),
    ev("J", "download_fail", "1.1.0", at(1, 20), plugin="7.16.9"),
    ev("F", "set", "1.1.0", at(1, 21), old="1.0.0", is_emulator=True),
    ev("F", "set_fail", "1.1.0", at(1, 21) + 1_000, is_emulator=True),
    ev("G", "set", "1.1.0", at(1, 21), old="1.0.0", is_prod=False),
]


@pytest.fixture
def rollout(app, client, monkeypatch):
    """The story, posted as the plugins post it, with the clock frozen at NOW."""
    monkeypatch.setattr(protocol, "now_ms", lambda: NOW)
    for body in STORY:
        if "timestamp" in body:
            response = client.post("/stats", data=json.dumps([body]))
            assert response.json["results"][0]["status"] == "ok", response.json
        else:  # old plugins: one object per request
            assert client.post("/stats", json=body).status_code == 200
    return client


def versions(client, query=""):
    response = client.get(f"/stats/versions?app_id={APP}{query}")
    assert response.status_code == 200, response.json
    return response.json


def test_versions_tell_who_runs_what_and_how_the_rollout_went(rollout):
    report = versions(rollout)
    rows = {row["version"]: row for row in report["versions"]}
    assert list(rows) == ["1.1.0", "1.0.0"]
    assert report["devices"] == 8  # A B C D E H I J; the emulator and the dev build left out
    new, old = rows["1.1.0"], rows["1.0.0"]
    assert (new["devices"], new["share"]) == (2, 0.25)  # A, B
    assert (old["devices"], old["share"]) == (5, 0.625)  # C, D, E, I, J
    assert (report["builtin"]["devices"], report["builtin"]["share"]) == (1, 0.125)  # H
    assert report["unknown"]["devices"] == 0
    assert (new["installs"], new["uninstalls"], new["failures"]) == (2, 0, 3)  # fails: C, D, I
    assert (new["attempts"], new["fail_rate"]) == (5, 0.6)
    assert (old["installs"], old["uninstalls"], old["failures"]) == (7, 2, 0)
    assert report["builtin"]["uninstalls"] == 7
    assert report["ignored_legacy_download_fail"] == 2  # E (6.10.3) and J (7.16.9)
    assert (new["first_seen"], new["last_seen"]) == (iso_day(3), iso_day(1))
    assert (old["first_seen"], old["last_seen"]) == (iso_day(10), iso_day(0))


def iso_day(days_ago):
    from datetime import UTC, datetime

    return datetime.fromtimestamp((TODAY - days_ago * DAY) / 1000, tz=UTC).date().isoformat()


def test_with_include_dev_the_emulator_and_the_dev_build_count_too(rollout):
    report = versions(rollout, "&include_dev=1")
    new = next(row for row in report["versions"] if row["version"] == "1.1.0")
    assert report["devices"] == 10
    assert (new["devices"], new["installs"], new["failures"], new["attempts"]) == (4, 4, 4, 8)


def test_failures_break_down_by_action_plugin_os_and_platform(rollout):
    report = rollout.get(f"/stats/failures?app_id={APP}").json
    assert report["failures"] == 3
    assert report["ignored_legacy_download_fail"] == 2
    assert report["by_action_version"] == [
        {"action": "download_fail", "version": "1.1.0", "count": 1},
        {"action": "set_fail", "version": "1.1.0", "count": 1},
        {"action": "unzip_fail", "version": "1.1.0", "count": 1},
    ]
    assert report["by_plugin_version"] == [
        {"plugin_version": "8.51.14", "count": 2},
        {"plugin_version": "7.17.0", "count": 1},
    ]
    assert report["by_os_version"] == [
        {"platform": "android", "version_os": "14", "count": 2},
        {"platform": "ios", "version_os": "17.4", "count": 1},
    ]
    assert report["by_platform"] == [
        {"platform": "android", "count": 2},
        {"platform": "ios", "count": 1},
    ]


def test_the_daily_timeline_shows_the_rollout_day_by_day(rollout):
    report = rollout.get(f"/stats/timeline?app_id={APP}").json
    points = report["points"]
    assert len(points) == 30 and points[-1]["t"].startswith(iso_day(0))
    by_day = {p["t"][:10]: p for p in points}
    figures = ("installs", "failures", "downloads", "app_opens", "active_devices")
    expected = {
        10: (5, 0, 0, 0, 5),  # sets of 1.0.0 by A B C I J
        9: (1, 0, 0, 0, 1),  # D
        3: (1, 1, 2, 0, 2),  # A installs, C fails; both downloaded
        2: (1, 1, 0, 1, 3),  # B installs, D fails, A opens the app
        1: (0, 1, 0, 2, 4),  # I fails (J is legacy); C and H open; F, G not prod
        0: (1, 0, 0, 0, 1),  # E's set arrives now
    }
    for days_ago in range(30):
        point = by_day[iso_day(days_ago)]
        assert tuple(point[f] for f in figures) == expected.get(days_ago, (0, 0, 0, 0, 0))
    assert by_day[iso_day(10)]["installs_by_version"] == {"1.0.0": 5}
    assert by_day[iso_day(3)]["installs_by_version"] == {"1.1.0": 1}


def test_the_device_timeline_lists_its_events_newest_first_whatever_the_id_case(rollout):
    for asked in (IDS["D"].upper(), IDS["D"]):
        report = rollout.get(f"/stats/devices/{asked}").json
        assert report["device_id"] == IDS["D"]
        assert [(e["action"], e["version_name"]) for e in report["events"]] == [
            ("unzip_fail", "1.1.0"),
            ("set", "1.0.0"),
        ]
        assert [e["counts_as"] for e in report["events"]] == [["failure"], ["install", "uninstall"]]
        [state] = report["current"]
        assert (state["bundle"], state["platform"]) == ("1.0.0", "ios")


def test_a_legacy_download_fail_shows_in_the_timeline_of_its_device_but_counts_as_nothing(rollout):
    events_ = rollout.get(f"/stats/devices/{IDS['J']}").json["events"]
    assert [(e["action"], e["counts_as"]) for e in events_] == [
        ("download_fail", []),
        ("set", ["install", "uninstall"]),
    ]


def test_the_device_list_names_who_still_runs_the_old_bundle(rollout):
    listed = rollout.get(f"/stats/devices?app_id={APP}&version=1.0.0&prod=1").json["devices"]
    assert [d["device_id"] for d in listed] == [IDS[name] for name in "CDEIJ"]
    everyone = rollout.get(f"/stats/devices?app_id={APP}&version=1.1.0").json["devices"]
    assert [d["device_id"] for d in everyone] == [IDS[name] for name in "ABFG"]


@pytest.mark.parametrize(
    "args, code, verdict",
    [
        (["--max-fail-rate", "0.5", "--min-devices", "3"], 1, "FAIL"),  # 60 % > 50 %
        (["--max-fail-rate", "0.7", "--min-devices", "3"], 0, "PASS"),
        (["--max-fail-rate", "60%", "--min-devices", "5"], 0, "PASS"),  # exactly at the limit
        (["--max-fail-rate", "0.9", "--min-devices", "6"], 2, "NO DATA"),  # only 5 reporting
    ],
)
def test_flask_gate_judges_the_new_bundle_by_exit_code(rollout, runner, args, code, verdict):
    result = runner.invoke(args=["gate", "--app-id", APP, "--version", "1.1.0", *args])
    assert result.exit_code == code, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"{verdict} {APP} 1.1.0")
    assert "5 devices reporting" in line


def test_flask_gate_passes_the_old_bundle_and_has_no_data_on_an_unknown_one(rollout, runner):
    ok = runner.invoke(args=["gate", "--app-id", APP, "--version", "1.0.0", "--max-fail-rate", "0"])
    assert ok.exit_code == 0, ok.output
    assert "fail rate 0.00% (0 failures / 7 devices reporting)" in ok.output
    missing = ["gate", "--app-id", APP, "--version", "9.9.9", "--max-fail-rate", "1"]
    assert runner.invoke(args=missing).exit_code == 2


def test_the_wilson_lower_bound_is_the_hand_computed_one():
    # 3 of 5, z = 1.96: (0.6 + 0.3841 - 1.96 * sqrt(0.048 + 0.0384)) / 1.7683 = 0.2307
    assert reports.wilson_lower(3, 5) == pytest.approx(0.230724, abs=1e-6)
    # z = 1.645 at 90 %: (0.6 + 0.2706 - 1.645 * sqrt(0.048 + 0.0271)) / 1.5411 = 0.2725
    assert reports.wilson_lower(3, 5, 0.90) == pytest.approx(0.2725, abs=1e-4)
    assert reports.wilson_lower(0, 10) == 0.0


@pytest.mark.parametrize(
    "args, code, verdict",
    [
        # 1.1.0: A and B installed, C, D and I failed: 3 of 5 devices, Wilson 95 % from 23.07 %
        (["--max-device-fail-rate", "0.2"], 1, "FAIL"),
        (["--max-device-fail-rate", "25%"], 0, "PASS"),
        (["--max-device-fail-rate", "0.25", "--confidence", "0.8"], 1, "FAIL"),  # 33.0 %
        (["--max-device-fail-rate", "0.9", "--min-devices", "6"], 2, "NO DATA"),
    ],
)
def test_flask_gate_judges_the_wilson_bound_of_the_device_fail_rate(
    rollout, runner, args, code, verdict
):
    result = runner.invoke(args=["gate", "--app-id", APP, "--version", "1.1.0", *args])
    assert result.exit_code == code, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"{verdict} {APP} 1.1.0")
    if code != 2:
        assert "3 failed_devices / 5 devices with an outcome, 60.00%" in line
    if args[1] == "0.2":
        assert "lower bound 23.07%" in line


def test_flask_gate_judges_the_issue_rate_and_any_fail_wins(rollout, runner):
    base = ["gate", "--app-id", APP, "--version", "1.1.0", "--max-issue-rate", "0"]
    result = runner.invoke(args=base)
    assert result.exit_code == 0, result.output  # no issue from A or B: bound 0 <= 0
    assert "issue rate lower bound 0.00%" in result.output
    assert "0 issue_devices / 2 active devices" in result.output
    both = runner.invoke(args=[*base, "--max-device-fail-rate", "0.1"])
    assert both.exit_code == 1 and len(both.output.splitlines()) == 2
    none = runner.invoke(args=["gate", "--app-id", APP, "--version", "1.1.0"])
    assert none.exit_code == 2 and "Give at least one of" in none.output


@pytest.mark.parametrize("rate", ["abc", "150%", "-0.1", "2", "%"])
def test_flask_gate_refuses_a_rate_that_is_not_one(rollout, runner, rate):
    args = ["gate", "--app-id", APP, "--version", "1.1.0", "--max-fail-rate", rate]
    result = runner.invoke(args=args)
    assert result.exit_code == 2
    assert "Invalid value for '--max-fail-rate'" in result.output


@pytest.mark.slow
def test_the_dashboard_in_chromium_tells_the_same_story(app, rollout, tmp_path):
    with serving(app) as base:
        page = Page(dump_dom(tmp_path / "profile", f"{base}/?app_id={APP}"))
    assert page.current_app == APP
    assert page.row("1.1.0") == {
        "devices": "2",
        "share": "25.0 %",
        "installs": "2",
        "uninstalls": "0",
        "failures": "3",
        "fail_rate": "60.0 %",
        "attempts": "5",
        # A and B installed; C, D and I failed (J's legacy download_fail is no failure)
        "installed_devices": "2",
        "failed_devices": "3",
        "device_fail_rate": "60.0 %",
        "first_seen": iso_day(3),
        "last_seen": iso_day(1),
    }
    # A and B ran 1.1.0 (F and G are not prod); nobody sent an app-health issue
    assert page.figure("active_devices", table="health", version="1.1.0") == "2"
    assert page.figure("issue_free_rate", table="health", version="1.1.0") == "100.0 %"
    shares = {bar["data-series"] for bar in page.bars["shares"]}
    assert shares == {"1.0.0", "1.1.0", "builtin"}
    assert page.row("1.0.0")["devices"] == "5" and page.row("1.0.0")["share"] == "62.5 %"
    assert page.row("builtin")["devices"] == "1"
    assert page.figure("minutes_since_last_event") == "0 minutes ago"
    assert [page.figure(f"active_{d}") for d in ("1d", "7d", "30d")] == ["5", "8", "8"]
    assert page.figure("failures_total") == "3"
    by_plugin = {"table": "failures_by_plugin_version", "plugin_version": "7.17.0"}
    assert page.figure("failures", **by_plugin) == "1"
    installs = [int(bar["data-value"]) for bar in page.bars["outcomes"]
                if bar["data-series"] == "installs"]  # fmt: skip
    assert sum(installs) == 9
    adoption = {bar["data-series"] for bar in page.bars["adoption"]}
    assert adoption == {"1.0.0", "1.1.0"}
