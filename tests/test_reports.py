"""The counting rules as pure functions: plugin versions, legacy download_fail, rates, cursors."""

import pytest

from capgo_stats import counting, reports
from capgo_stats.errors import ApiError
from capgo_stats.render import charts


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("7.17.0", (7, 17, 0, 1)),
        ("7.17", (7, 17, 0, 1)),
        ("8", (8, 0, 0, 1)),
        ("v7.16.9", (7, 16, 9, 1)),
        (" 6.14.25 ", (6, 14, 25, 1)),
        ("7.17.0-beta.1", (7, 17, 0, 0)),
        ("7.17.0rc1", (7, 17, 0, 0)),
        ("7.17.0+build.5", (7, 17, 0, 1)),
        ("7.17.0.4", (7, 17, 0, 1)),
        ("8.51.14", (8, 51, 14, 1)),
        ("0.0.1", (0, 0, 1, 1)),
        ("", None),
        ("   ", None),
        ("abc", None),
        ("x7.1", None),
        ("99999999999.1", None),
        ("７.１７.０", None),  # full-width digits are not a version
        (None, None),
        (7, None),
    ],
)
def test_a_plugin_version_is_parsed_into_comparable_parts_or_none(text, parsed):
    assert counting.parse_version(text) == parsed


@pytest.mark.parametrize(
    "plugin_version, platform, legacy",
    [
        ("7.16.9", "android", True),
        ("7.17.0", "android", False),
        ("7.17.0-beta.1", "ios", True),
        ("7.36.1", "ios", False),
        ("8.0.0", "android", False),
        ("10.0.0", "android", False),
        ("6.14.24", "android", True),
        ("6.14.25", "android", False),
        ("6.15.0", "ios", False),
        ("6.9.99", "ios", True),
        ("5.99.0", "android", True),
        ("4.13.0", "ios", True),
        ("0.0.1", "android", True),  # an old Electron updater that said "android"
        ("0.0.1", "electron", False),  # the Electron updater numbers its releases apart
        ("", "android", False),  # not sent: we cannot tell, so it counts
        (None, "android", False),
        ("garbage", "ios", False),
    ],
)
def test_download_fail_from_plugins_before_7_17_or_6_14_25_is_legacy(
    plugin_version, platform, legacy
):
    assert counting.download_fail_is_legacy(plugin_version, platform) is legacy


@pytest.mark.parametrize(
    "action, plugin_version, counts",
    [
        ("set_fail", "1.0.0", True),  # only download_fail has the legacy exception
        ("unzip_fail", "6.0.0", True),
        ("download_fail", "7.0.0", False),
        ("download_fail", "7.17.0", True),
        ("finish_download_fail", "7.0.0", True),
        ("set", "8.0.0", False),
        ("checksum_required", "8.0.0", False),
        ("app_crash", "8.0.0", False),
    ],
)
def test_a_failure_is_any_action_ending_in_fail_but_a_legacy_download_fail(
    action, plugin_version, counts
):
    assert counting.counts_as_failure(action, plugin_version, "android") is counts


@pytest.mark.parametrize(
    "bundle, group",
    [("1.2.3", "1.2.3"), ("builtin", "builtin"), ("unknown", "unknown"), ("", "unknown"),
     (None, "unknown")],
)  # fmt: skip
def test_builtin_and_unknown_are_not_bundles(bundle, group):
    assert counting.version_group(bundle) == group


@pytest.mark.parametrize(
    "part, whole, share", [(1, 0, None), (0, 4, 0.0), (3, 5, 0.6), (1, 3, 0.3333), (5, 3, 1.0),
                           (-1, 3, 0.0)],
)  # fmt: skip
def test_a_ratio_is_rounded_and_never_below_0_or_above_1(part, whole, share):
    assert reports.ratio(part, whole) == share


def test_a_cursor_carries_its_event_position():
    cursor = reports.encode_cursor(1_790_000_000_123, 42)
    assert reports.decode_cursor(cursor) == (1_790_000_000_123, 42)
    assert reports.decode_cursor(None) is None and reports.decode_cursor("") is None


@pytest.mark.parametrize(
    "cursor", ["abc", "1", "1.2.3", "1.x", " 1.2", "99999999999999999999.1", "1.-2", "١.٢"]
)
def test_a_cursor_that_is_not_ours_is_an_api_error(cursor):
    with pytest.raises(ApiError) as error:
        reports.decode_cursor(cursor)
    assert (error.value.status, error.value.error) == (400, "invalid_cursor")


@pytest.mark.parametrize(
    "value, top", [(0, 1), (1, 1), (3, 5), (10, 10), (11, 20), (26, 50), (51, 100), (730, 1000)]
)
def test_a_chart_axis_ends_on_a_round_number_at_or_above_the_highest_bar(value, top):
    assert charts.nice_top(value) == top


@pytest.mark.parametrize(
    "top, labels", [(1, ["0", "1"]), (2, ["0", "1", "2"]), (5, ["0", "5"]), (10, ["0", "5", "10"])]
)
def test_a_chart_axis_labels_each_tick_with_its_own_whole_number(top, labels):
    chart = charts.bars("t", "t", ["2026-11-01"], [{"label": "n", "color": "#000",
                        "values": [top], "links": [None]}], stacked=True)  # fmt: skip
    assert [tick["label"] for tick in chart["yticks"]] == labels
