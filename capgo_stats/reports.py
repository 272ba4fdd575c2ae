"""The figures: versions, rates, timelines, failures, summaries, refusals and the drill-downs.

Reports on top of the store's rollup reads, as plain data for the JSON API and the dashboard
alike, so both show the same numbers. No Flask, no SQL. The rules themselves are in counting.py;
DEFINITIONS says each figure in words, on the page and in docs/figures.md.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from capgo_stats.counting import (
    HEALTH_ISSUES,
    NOT_BUNDLES,
    bucket_ms,
    counts_as,
    counts_as_failure,
    version_group,
)
from capgo_stats.errors import ApiError
from capgo_stats.filters import Filters
from capgo_stats.protocol import DAY_MS, HOUR_MS
from capgo_stats.store import Store

# Shown beside each figure on the dashboard; docs/figures.md repeats them word for
# word (a test checks that), so the page and the API docs cannot drift apart.
DEFINITIONS = {
    "prod": "Only events from production builds on real devices (is_prod true, is_emulator"
    " false) are counted, unless include_dev=1.",
    "devices": "Devices whose current bundle is this version: the bundle of the device's latest"
    " event that reports the bundle it runs (not a failure, not a download). Counted now,"
    " whatever the date range.",
    "share": "This version's devices divided by all devices of the app (builtin and unknown"
    " included), so shares add up to 100 %.",
    "installs": "set events for this version: a device switched to it.",
    "uninstalls": "set events whose old_version_name is this version: a device left it for"
    " another bundle.",
    "failures": "Events whose action ends in _fail for this version, except download_fail from"
    " plugins older than 7.17.0 (6.x older than 6.14.25), which those plugins sent when there"
    " was simply nothing to download.",
    "attempts": "installs + failures: the install attempts that reported an outcome."
    " flask gate calls them devices reporting.",
    "fail_rate": "failures / (installs + failures).",
    "installed_devices": "Distinct devices with a set of this version: repeated sets count once."
    " Over all stored history, whatever the date range.",
    "failed_devices": "Distinct devices with a counted failure of this version and no set of"
    " it: retries count once, and a device that failed then installed counts as installed."
    " Over all stored history, whatever the date range.",
    "device_fail_rate": "failed_devices / (installed_devices + failed_devices).",
    "first_seen": "The UTC day of the first and the last event that named this version.",
    "health_active_devices": "Distinct devices whose first event running this version (an"
    " event reporting it as the bundle the device runs) fell on a UTC day touching the range;"
    " with no range, every device that ever ran it.",
    "issues": "App-health events naming this version: app_crash, app_crash_native, app_anr,"
    " app_killed_low_memory, app_killed_excessive_resource_usage, app_initialization_failure,"
    " webview_render_process_gone, webview_content_process_terminated, webview_unclean_restart,"
    " webview_javascript_error and webview_unhandled_rejection. app_memory_warning,"
    " webview_resource_error and webview_security_policy_violation are softer and left out.",
    "issue_devices": "Distinct devices whose first issue on this version fell on a UTC day"
    " touching the range.",
    "issue_free_rate": "1 - issue_devices / active_devices, kept within 0 and 1; null without"
    " active devices.",
    "launch_ms": "Launch time: metadata.duration_ms of app_launch_ready events (launch to"
    " notifyAppReady), p50 and p90 of the samples on UTC days touching the range.",
    "install_ms": "Install time per device: from its first download start of the version"
    " (download_zip_start, download_manifest_start or download_0) to its first set of it,"
    " pairs over 2 hours left out; p50 and p90, by the UTC day of that set.",
    "percentiles": "Percentiles are read from histograms whose buckets are 2^(1/8) wide: each"
    " value is its bucket's geometric middle, within 4.4 % of the true value.",
    "adoption_devices": "Devices that sent an event reporting the bundle they run (not a"
    " failure, not a download) that UTC day.",
    "adoption_shares": "The share of that day's devices whose last such event that day named"
    " each version (builtin and unknown included), so a day's shares add up to 100 %.",
    "change": "Each figure minus the same figure of the previous version, the one first seen"
    " before it; null for the first version or when either figure is null.",
    "builtin": "builtin is the bundle shipped inside the native app; unknown covers devices"
    " that sent unknown, an empty version, or no version yet. Neither is a bundle: they are"
    " listed apart.",
    "downloads": "download_complete events: a device finished downloading a bundle.",
    "app_opens": "app_moved_to_foreground events: the app came to the foreground.",
    "active_devices": "Distinct devices that sent any event that UTC day (active_day). Not kept"
    " per hour or per platform: null for interval=hour or with a platform filter.",
    "active_recent": "Devices whose latest event is in or after the UTC hour that began 1, 7"
    " or 30 days before the app's newest event (or now, if that is earlier).",
    "last_event": "Time since the newest event of this app, by event time (the device's"
    " clock when plausible, else arrival).",
    "refused": "Events answered with an error and not stored, by arrival day (UTC), app,"
    " reason (the error code) and action; past 1,000 rows a day, a new app and action are"
    " tallied as (other).",
}

TIMELINE_ACTIONS = {"set": "installs", "download_complete": "downloads"}
TIMELINE_ACTIONS["app_moved_to_foreground"] = "app_opens"
DEFAULT_POINTS = {"day": 30, "hour": 48}
MAX_POINTS = 400
INTERVAL_MS = {"day": DAY_MS, "hour": HOUR_MS}


# -- small helpers ----------------------------------------------------------------------------


def iso(ms: int | None) -> str | None:
    """Epoch ms as ISO 8601 UTC with milliseconds (2026-10-01T08:00:00.000Z), None kept."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def day_iso(ms: int | None) -> str | None:
    """Epoch ms as its UTC day, YYYY-MM-DD, None kept."""
    return None if ms is None else time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def ratio(part: int, whole: int) -> float | None:
    """part / whole rounded to 4 places, clamped to [0, 1]; None when whole is 0."""
    if not whole:
        return None
    return round(min(max(part / whole, 0.0), 1.0), 4)


def _window(filters: Filters) -> dict:
    """The since/until of a report as ISO strings (None: open)."""
    return {"since": iso(filters.since), "until": iso(filters.until)}


def with_app(store: Store, filters: Filters, shown: list[dict] | None = None) -> Filters:
    """The filters with an app: the one asked for, else the app with the newest event among
    the APPS_SHOWN apps with the most events (`shown`: apps(store), read by the caller).

    With no app at all, app_id is "", which no event has: every figure is then zero.
    """
    if filters.app_id is not None:
        return filters
    # Among the apps with the most events: made-up app ids cannot take the page over.
    shown = apps(store) if shown is None else shown
    newest = max(shown, key=lambda a: a["last_event_at"] or "", default=None)
    return filters.but(app_id=newest["app_id"] if newest else "")


# -- versions ---------------------------------------------------------------------------------


def _blank_row(version: str) -> dict:
    """A version row with every figure at zero."""
    return {
        "version": version,
        "devices": 0,
        "share": 0.0,
        "installs": 0,
        "uninstalls": 0,
        "failures": 0,
        "attempts": 0,
        "fail_rate": None,
        "installed_devices": 0,
        "failed_devices": 0,
        "device_fail_rate": None,
        "first_seen": None,
        "last_seen": None,
    }


def _ranked_page(
    rows: dict[str, dict], spans: dict[str, list[int]], limit: int | None, offset: int
) -> list[dict]:
    """The page of version rows with the most devices, then attempts, then newest first seen.

    So a flood of made-up names (one device each) cannot push the real ones off the first
    page. Only the page's rows get their rates and days worked out, by the caller.
    """

    def rank(r: dict) -> tuple:
        first = spans.get(r["version"], [None])[0]
        day = -(first // DAY_MS) if first is not None else 1
        return (-r["devices"], -(r["installs"] + r["failures"]), day, _desc(r["version"]))

    ranked = sorted(rows.values(), key=rank)
    return ranked[offset:] if limit is None else ranked[offset : offset + limit]


def _desc(text: str) -> list[int]:
    """A sort key that orders strings backwards (the newest first_seen, then version, first)."""
    return [-ord(char) for char in text] + [1]


MANY_VERSIONS = 1000  # past this many version names in an app, reports read top N in SQL


@dataclass(frozen=True)
class Top:
    """What _top read (None: not many versions), handed on so that the page reads it once."""

    found: dict | None


def _top(
    store: Store,
    filters: Filters,
    prod_only: bool,
    limit: int | None,
    offset: int = 0,
    known: Top | None = None,
) -> dict | None:
    """None for an app of at most MANY_VERSIONS version names, whose reports read every
    version; else the store's top_bundles: the `limit` versions most devices run now (all of
    MANY_VERSIONS when None), so made-up names never reach Python however many there are.
    `known`: the same read, done already by the caller."""
    if known is not None:
        return known.found
    if not store.many_versions(filters.app_id, MANY_VERSIONS):
        return None
    return store.top_bundles(filters, prod_only, MANY_VERSIONS if limit is None else limit, offset)


def _with_apart(bundles: list[str]) -> list[str]:
    """The bundles a bounded report reads: these, and those counted as builtin and unknown."""
    return [*bundles, "", *NOT_BUNDLES]


def versions(
    store: Store,
    filters: Filters,
    include_dev: bool = False,
    legacy: list[tuple[str, str]] | None = None,
    limit: int | None = None,
    offset: int = 0,
    version: str | None = None,
    known: Top | None = None,
) -> dict:
    """One row per bundle version: devices, share, installs, uninstalls, failures, fail rate.

    legacy: legacy_download_fail() for the app, when the caller already has it.
    limit/offset: the page of rows (newest first_seen first) to answer; `more` counts the rest.
    version: only that version's row (flask gate), read alone.

    Past MANY_VERSIONS names, the page is the versions most devices run now, then by name
    (backwards), ranked in SQL, and only its rows are read.
    """
    filters, prod_only = with_app(store, filters), not include_dev
    top, bundles = None, None
    if version is not None:
        top = store.top_bundles(filters, prod_only, 0)
        bundles = _with_apart([version])
    elif (top := _top(store, filters, prod_only, limit, offset, known)) is not None:
        bundles = _with_apart(top["bundles"])
    rows: dict[str, dict] = {}

    def row(bundle: str | None) -> dict:
        group = version_group(bundle)
        return rows.setdefault(group, _blank_row(group))

    spans: dict[str, list[int]] = {}
    for total in store.totals(filters, prod_only, bundles):
        target = row(total["bundle"])
        if total["action"] == "set":
            target["installs"] += total["n"]
        span = spans.setdefault(target["version"], [total["first"], total["last"]])
        span[0], span[1] = min(span[0], total["first"]), max(span[1], total["last"])
    legacy = legacy_download_fail(store, filters) if legacy is None else legacy
    # One row per bundle (at most MANY_VERSIONS, or the bundles asked for), whatever the
    # plugin and OS versions the failures name.
    failed = store.failure_groups(filters, prod_only, legacy, ("bundle",), bundles=bundles)
    for bundle, n in failed["rows"]:
        row(bundle)["failures"] += n
    ignored = store.failure_tally(filters, prod_only, legacy, bundles=bundles)[1]
    for bundle, n in store.uninstall_totals(filters, prod_only, bundles).items():
        row(bundle)["uninstalls"] += n
    devices = store.device_bundles(filters, prod_only, bundles)
    for bundle, n in devices.items():
        row(bundle)["devices"] += n
    for (bundle, outcome), n in store.outcome_totals(filters, prod_only, bundles).items():
        if version_group(bundle) in rows or version_group(bundle) in NOT_BUNDLES:
            row(bundle)[f"{outcome}_devices"] += n  # all history, for the versions listed
    all_devices = sum(devices.values()) if top is None else top["devices"]
    apart = {name: rows.pop(name, _blank_row(name)) for name in NOT_BUNDLES}
    if version is not None:
        page, count = list(rows.values()), len(rows)
    elif top is not None:  # the page ranked in SQL; its rows in that order
        page = [rows.get(bundle) or _blank_row(bundle) for bundle in top["bundles"]]
        count = top["count"]
    else:
        page, count = _ranked_page(rows, spans, limit, offset), len(rows)
    for target in [*page, *apart.values()]:
        target["share"] = ratio(target["devices"], all_devices) or 0.0
        target["attempts"] = target["installs"] + target["failures"]
        target["fail_rate"] = ratio(target["failures"], target["attempts"])
        outcomes = target["installed_devices"] + target["failed_devices"]
        target["device_fail_rate"] = ratio(target["failed_devices"], outcomes)
        span = spans.get(target["version"])
        if span:
            target["first_seen"], target["last_seen"] = day_iso(span[0]), day_iso(span[1])
    page.sort(key=lambda r: (r["first_seen"] or "", r["version"]), reverse=True)
    more = max(count - offset - len(page), 0)
    return {
        "app_id": filters.app_id or None,
        "include_dev": include_dev,
        **_window(filters),
        "devices": all_devices,
        "versions": page,
        "more": more,
        "next_offset": offset + len(page) if more else None,
        **apart,
        "ignored_legacy_download_fail": ignored,
    }


# -- release health per version --------------------------------------------------------------

HEALTH_SHOWN = 100  # version rows of /stats/health and the page's health table
HEALTH_FIGURES = ("active_devices", "issues", "issue_devices", "issue_free_rate")
PERCENTILES = {"p50": 0.5, "p90": 0.9}


def percentiles(histogram: dict[int, int]) -> dict:
    """p50, p90 (nearest rank over the buckets, each its middle in ms) and the sample count."""
    samples = sum(histogram.values())
    found: dict[str, Any] = {name: None for name in PERCENTILES}
    for name, p in PERCENTILES.items():
        rank, seen = max(1, -(-samples * p // 1)), 0
        for bucket in sorted(histogram):
            seen += histogram[bucket]
            if samples and seen >= rank:
                found[name] = bucket_ms(bucket)
                break
    return {**found, "samples": samples}


def _health_row(version: str) -> dict:
    """A health row with every figure at zero."""
    empty = {"p50": None, "p90": None, "samples": 0}
    return {
        "version": version,
        "first_seen": None,
        "active_devices": 0,
        "issues": 0,
        "issue_devices": 0,
        "issue_free_rate": None,
        "launch_ms": dict(empty),
        "install_ms": dict(empty),
        "previous": None,
        "change": None,
    }


def _flat(row: dict) -> dict:
    """A health row's figures by one name each (launch_p50 ...), for its change."""
    flat = {name: row[name] for name in HEALTH_FIGURES}
    for metric in ("launch", "install"):
        for name in PERCENTILES:
            flat[f"{metric}_{name}"] = row[f"{metric}_ms"][name]
    return flat


def _difference(now: Any, before: Any) -> Any:
    """now - before, rounded like a rate, or None when either is None."""
    if now is None or before is None:
        return None
    return round(now - before, 4) if isinstance(now, float) else now - before


def health(
    store: Store,
    filters: Filters,
    include_dev: bool = False,
    limit: int | None = HEALTH_SHOWN,
    known: Top | None = None,
) -> dict:
    """One row per version: active and issue devices, issues, launch and install times.

    At most `limit` versions, those with the most active devices (`more` counts the rest), so
    a flood of made-up names neither grows the answer nor hides the versions in use. Past
    MANY_VERSIONS names, the `limit` versions most devices run now are read, and only them.
    """
    filters, prod_only = with_app(store, filters), not include_dev
    top = _top(store, filters, prod_only, limit, known=known)
    bundles = None if top is None else _with_apart(top["bundles"])
    rows: dict[str, dict] = {}

    def row(bundle: str) -> dict:
        group = version_group(bundle)
        return rows.setdefault(group, _health_row(group))

    first: dict[str, int] = {}
    for total in store.totals(filters, prod_only, bundles):
        target = row(total["bundle"])
        first[target["version"]] = min(first.get(target["version"], total["first"]), total["first"])
        if total["action"] in HEALTH_ISSUES:
            target["issues"] += total["n"]
    for (bundle, kind), n in store.reach_totals(filters, prod_only, bundles).items():
        row(bundle)["active_devices" if kind == "active" else "issue_devices"] += n
    for (bundle, metric), histogram in store.histograms(filters, prod_only, bundles).items():
        merged = row(bundle).setdefault(f"_{metric}", {})
        for bucket, n in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + n
    for version, target in rows.items():
        target["first_seen"] = day_iso(first.get(version))
        target["issue_free_rate"] = _free_rate(target["issue_devices"], target["active_devices"])
        for metric in ("launch", "install"):
            target[f"{metric}_ms"] = percentiles(target.pop(f"_{metric}", {}))
    apart = {name: rows.pop(name, _health_row(name)) for name in NOT_BUNDLES}
    ordered = sorted(rows.values(), key=lambda r: (first.get(r["version"], 0), r["version"]))
    for before, after in zip(ordered, ordered[1:], strict=False):
        was, now = _flat(before), _flat(after)
        after["previous"] = before["version"]
        after["change"] = {name: _difference(now[name], was[name]) for name in now}
    shown, more = ordered[::-1], 0
    if limit is not None and len(shown) > limit:
        ranked = sorted(shown, key=lambda r: (-r["active_devices"], -first.get(r["version"], 0)))
        kept = {r["version"] for r in ranked[:limit]}
        shown, more = [r for r in shown if r["version"] in kept], len(shown) - limit
    if top is not None:
        more = max(top["count"] - len(shown), 0)
    return {
        "app_id": filters.app_id or None,
        "include_dev": include_dev,
        **_window(filters),
        "versions": shown,
        "more": more,
        **apart,
    }


def _free_rate(issue_devices: int, active_devices: int) -> float | None:
    """1 - issue_devices / active_devices within [0, 1]; None without active devices."""
    share = ratio(issue_devices, active_devices)
    return None if share is None else round(1 - share, 4)


# -- the release gate -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What `flask gate` says: its exit code and its one line."""

    code: int
    line: str


def gate(
    store: Store, app_id: str, version: str, max_fail_rate: float, min_devices: int
) -> Verdict:
    """Pass (0) when the version's fail rate is within max_fail_rate, fail (1), or no data (2).

    Counts as /stats/versions does (prod devices, all time): devices reporting are the
    version's attempts, installs + failures.
    """
    report = versions(store, Filters(app_id=app_id), version=version)
    row = next((r for r in report["versions"] if r["version"] == version), None)
    attempts = row["attempts"] if row else 0
    subject = f"{app_id} {version}"
    if attempts == 0 or attempts < min_devices:
        return Verdict(
            2,
            f"NO DATA {subject}: {attempts} devices reporting (installs + failures from prod"
            f" devices), {max(min_devices, 1)} needed.",
        )
    rate = row["failures"] / attempts
    ok = rate <= max_fail_rate
    return Verdict(
        0 if ok else 1,
        f"{'PASS' if ok else 'FAIL'} {subject}: fail rate {rate:.2%} ({row['failures']} failures"
        f" / {attempts} devices reporting) {'<=' if ok else '>'} max {max_fail_rate:.2%};"
        f" {row['devices']} devices run it.",
    )


def wilson_lower(failures: int, n: int, confidence: float = 0.95) -> float:
    """The lower end of the Wilson score interval of failures / n at this (two-sided)
    confidence: 0.95 takes z = 1.96."""
    if n <= 0 or failures <= 0:
        return 0.0  # exactly: the formula leaves a rounding error of 1e-17
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p, z2 = failures / n, z * z
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (p + z2 / (2 * n) - spread) / (1 + z2 / n))


# What each Wilson gate judges: (its name, the row figures of its failures and of its devices).
WILSON_GATES = {
    "device": ("device fail rate", "failed_devices", "devices with an outcome"),
    "issue": ("issue rate", "issue_devices", "active devices"),
}


def wilson_gate(
    store: Store, app_id: str, version: str, kind: str, limit: float, rule: tuple[int, float]
) -> Verdict:
    """Fail (1) when the Wilson lower bound of the version's device failure rate (kind
    "device") or issue rate ("issue") exceeds limit, pass (0) when not, no data (2) when
    fewer devices than rule's min_devices; rule is (min_devices, confidence)."""
    if kind == "device":
        rows = versions(store, Filters(app_id=app_id), version=version)["versions"]
        row = next((r for r in rows if r["version"] == version), _blank_row(version))
        bad, n = row["failed_devices"], row["installed_devices"] + row["failed_devices"]
    else:
        rows = health(store, Filters(app_id=app_id))["versions"]
        row = next((r for r in rows if r["version"] == version), _health_row(version))
        bad, n = row["issue_devices"], row["active_devices"]
    return wilson_verdict(f"{app_id} {version}", kind, bad, n, limit, rule)


def wilson_verdict(
    subject: str, kind: str, bad: int, n: int, limit: float, rule: tuple[int, float]
) -> Verdict:
    """The verdict on `bad` of `n` devices (see wilson_gate), with the bound and the counts."""
    min_devices, confidence = rule
    name, part, whole = WILSON_GATES[kind]
    if n == 0 or n < min_devices:
        return Verdict(
            2, f"NO DATA {subject}: {n} {whole} (prod devices), {max(min_devices, 1)} needed."
        )
    bound = wilson_lower(bad, n, confidence)
    ok = bound <= limit
    return Verdict(
        0 if ok else 1,
        f"{'PASS' if ok else 'FAIL'} {subject}: {name} lower bound {bound:.2%}"
        f" ({confidence:.0%} Wilson; {bad} {part} / {n} {whole}, {bad / n:.2%})"
        f" {'<=' if ok else '>'} max {limit:.2%}.",
    )


# -- timeline ---------------------------------------------------------------------------------


def bucket_range(
    store: Store, filters: Filters, interval: str, now: int
) -> tuple[int, int, list[str]]:
    """The buckets [lo, hi) a timeline covers, in days or hours since 1970, and notes on it.

    Without since/until: the last 30 days (48 hours) up to the app's newest event, or now when
    that is earlier, so an app that went quiet still shows its last month. A longer range keeps
    its last MAX_POINTS buckets; since after until is an empty timeline.
    """
    unit = INTERVAL_MS[interval]
    since, until = filters.since, filters.until
    if until is None:
        newest = store.newest_event(filters.app_id)
        end = min(now, newest) if newest is not None else now
        if since is not None and since > end:
            end = since
        hi = end // unit + 1
    else:
        hi = -(-until // unit)
    lo = hi - DEFAULT_POINTS[interval] if since is None else since // unit
    notes = []
    if lo >= hi:
        lo = hi
        notes.append('No points: "since" is not before "until".')
    elif hi - lo > MAX_POINTS:
        notes.append(
            f"The range holds {hi - lo} {interval}s; a timeline keeps the last {MAX_POINTS}."
            " Narrow since/until to see earlier ones."
        )
        lo = hi - MAX_POINTS
    return lo, hi, notes


def timeline(
    store: Store,
    filters: Filters,
    interval: str = "day",
    include_dev: bool = False,
    now: int = 0,
    known: Top | None = None,
    legacy: list[tuple[str, str]] | None = None,
) -> dict:
    """Zero-filled installs, failures, downloads, app opens and active devices per day or hour."""
    if interval not in INTERVAL_MS:
        raise ApiError(400, "invalid_filter", '"interval" must be day or hour.')
    filters, prod_only, unit = with_app(store, filters), not include_dev, INTERVAL_MS[interval]
    lo, hi, notes = bucket_range(store, filters, interval, now or _now())
    points = [
        {
            "t": iso(bucket * unit),
            "installs": 0,
            "failures": 0,
            "downloads": 0,
            "app_opens": 0,
            "active_devices": None,
            "installs_by_version": {},
        }
        for bucket in range(lo, hi)
    ]
    # Past MANY_VERSIONS names: the versions most devices run now by name, the rest summed.
    top = _top(store, filters, prod_only, TIMELINE_VERSIONS, known=known)
    bundles = None if top is None else _with_apart(top["bundles"])
    for row in store.series(filters, interval, lo, hi, prod_only, list(TIMELINE_ACTIONS), bundles):
        point = points[row["bucket"] - lo]
        point[TIMELINE_ACTIONS[row["action"]]] += row["n"]
        if row["action"] == "set":
            by_version = point["installs_by_version"]
            other = row["bundle"] is None and top is not None
            group = OTHER_VERSIONS if other else version_group(row["bundle"])
            by_version[group] = by_version.get(group, 0) + row["n"]
    _top_versions(points)
    legacy = legacy_download_fail(store, filters) if legacy is None else legacy
    for bucket, n in store.failure_series(filters, interval, lo, hi, prod_only, legacy).items():
        points[bucket - lo]["failures"] += n
    if interval == "hour":
        notes.append("active_devices is null: distinct devices are kept per day, not per hour.")
    elif filters.platform is not None:
        notes.append("active_devices is null: distinct devices are not kept per platform.")
    else:
        active = store.active_series(filters.app_id, lo, hi, prod_only)
        for bucket, point in zip(range(lo, hi), points, strict=True):
            point["active_devices"] = active.get(bucket, 0)
    return {
        "app_id": filters.app_id or None,
        "interval": interval,
        "include_dev": include_dev,
        "since": iso(lo * unit),
        "until": iso(hi * unit),
        "points": points,
        "notes": notes,
    }


def adoption(
    store: Store,
    filters: Filters,
    include_dev: bool = False,
    now: int = 0,
    known: Top | None = None,
) -> dict:
    """One point per UTC day: devices that ran a bundle, and each version's share of them.

    Past MANY_VERSIONS names in the app, the shares name the ADOPTION_VERSIONS versions most
    devices run now, and the others' share is OTHER_VERSIONS.
    """
    filters, prod_only = with_app(store, filters), not include_dev
    lo, hi, notes = bucket_range(store, filters, "day", now or _now())
    top = _top(store, filters, prod_only, ADOPTION_VERSIONS, known=known)
    bundles = None if top is None else _with_apart(top["bundles"])
    per_day: list[dict[str, int]] = [{} for _ in range(lo, hi)]
    for day, bundle, n in store.adoption_series(filters, lo, hi, prod_only, bundles):
        counts = per_day[day - lo]
        group = OTHER_VERSIONS if bundle is None and top is not None else version_group(bundle)
        counts[group] = counts.get(group, 0) + n
    points = []
    for day, counts in zip(range(lo, hi), per_day, strict=True):
        devices = sum(counts.values())
        shares = {version: ratio(n, devices) for version, n in sorted(counts.items())}
        points.append({"t": iso(day * DAY_MS), "devices": devices, "shares": shares})
    return {
        "app_id": filters.app_id or None,
        "include_dev": include_dev,
        "since": iso(lo * DAY_MS),
        "until": iso(hi * DAY_MS),
        "points": points,
        "notes": notes,
    }


TIMELINE_VERSIONS = 100  # versions installs_by_version names; the rest are OTHER_VERSIONS
ADOPTION_VERSIONS = 100  # versions an adoption point names past MANY_VERSIONS in the app
OTHER_VERSIONS = "(other)"


def _top_versions(points: list[dict]) -> None:
    """Keep the TIMELINE_VERSIONS most installed versions of the range in installs_by_version
    by name, and sum the others of each point under OTHER_VERSIONS."""
    totals: dict[str, int] = {}
    for point in points:
        for version, n in point["installs_by_version"].items():
            if version != OTHER_VERSIONS:  # already summed (past MANY_VERSIONS)
                totals[version] = totals.get(version, 0) + n
    if len(totals) <= TIMELINE_VERSIONS:
        return
    top = set(sorted(totals, key=lambda v: (-totals[v], v))[:TIMELINE_VERSIONS])
    for point in points:
        kept, other = {}, 0
        for version, n in point["installs_by_version"].items():
            if version in top:
                kept[version] = n
            else:
                other += n
        if other:
            kept[OTHER_VERSIONS] = kept.get(OTHER_VERSIONS, 0) + other
        point["installs_by_version"] = kept


def _now() -> int:
    """The current time in epoch ms."""
    return time.time_ns() // 1_000_000


# -- failures ---------------------------------------------------------------------------------


COUNT_ROWS = 1000  # (app, action) rows /stats/counts lists, biggest first; `more` counts the rest
FAILURE_ROWS = 100  # rows each breakdown of /stats/failures lists; `more` counts the rest
# Each breakdown of /stats/failures: its name and what it groups by (store.failure_groups keys).
FAILURE_BREAKDOWNS = {
    "action_version": ("action", "version"),
    "plugin_version": ("plugin_version",),
    "os_version": ("platform", "version_os"),
    "platform": ("platform",),
}
# download_fail plugin versions judged by the legacy rule, those with the most events: made-up
# ones past them count as failures, as an unreadable plugin version does.
LEGACY_CHECKED = 1000


def legacy_download_fail(store: Store, filters: Filters) -> list[tuple[str, str]]:
    """The (platform, plugin_version) pairs of the app's download_fail events that do not count
    (counting.counts_as_failure), among the LEGACY_CHECKED with the most events."""
    pairs = store.download_fail_versions(filters.app_id or "", LEGACY_CHECKED)
    return [(p, v) for p, v in pairs if not counts_as_failure("download_fail", v, p)]


def failures(
    store: Store,
    filters: Filters,
    include_dev: bool = False,
    version: str | None = None,
    legacy: list[tuple[str, str]] | None = None,
) -> dict:
    """Failures by action and version, by plugin version, by OS version and by platform.

    Each breakdown is grouped, ranked and cut to FAILURE_ROWS in SQL, so made-up versions,
    plugin versions or OS versions never reach Python however many there are.
    """
    filters, prod_only = with_app(store, filters), not include_dev
    legacy = legacy_download_fail(store, filters) if legacy is None else legacy
    total, ignored = store.failure_tally(filters, prod_only, legacy, version)
    report = {
        "app_id": filters.app_id or None,
        "version": version,
        "include_dev": include_dev,
        **_window(filters),
        "failures": total,
        "ignored_legacy_download_fail": ignored,
        "more": {},
    }
    for name, keys in FAILURE_BREAKDOWNS.items():
        found = store.failure_groups(filters, prod_only, legacy, keys, FAILURE_ROWS, version)
        rows = [
            {**dict(zip(keys, row[:-1], strict=True)), "count": row[-1]} for row in found["rows"]
        ]
        report[f"by_{name}"] = rows
        report["more"][f"by_{name}"] = max(found["count"] - FAILURE_ROWS, 0)
    return report


# -- summary: is anything arriving ------------------------------------------------------------


def summary(store: Store, filters: Filters, include_dev: bool = False, now: int = 0) -> dict:
    """The newest event, how long ago it was, and devices active in the last 1, 7 and 30 days."""
    now, filters = now or _now(), with_app(store, filters)
    newest = store.newest_event(filters.app_id)
    as_of = min(now, newest) if newest is not None else now
    # Whole hours: devices are counted by the hour of their latest event (device_hour).
    windows = {f"{days}d": (as_of - days * DAY_MS) // HOUR_MS * HOUR_MS for days in (1, 7, 30)}
    active = store.active_since(filters, not include_dev, list(windows.values()))
    return {
        "app_id": filters.app_id or None,
        "include_dev": include_dev,
        "last_event_at": iso(newest),
        "minutes_since_last_event": None if newest is None else max(now - newest, 0) // 60_000,
        "as_of": iso(as_of),
        "active_devices": dict(zip(windows, active, strict=True)),
        "active_since": {key: iso(since) for key, since in windows.items()},
    }


APPS_SHOWN = 100  # apps in the picker, and that an app_id left out is chosen from


def apps(store: Store) -> list[dict]:
    """The APPS_SHOWN apps with the most events, with their newest event time, by app_id."""
    return [
        {"app_id": app_id, "last_event_at": iso(store.newest_event(app_id))}
        for app_id in sorted(store.top_apps(APPS_SHOWN))
    ]


# -- refused events ---------------------------------------------------------------------------


REFUSAL_ROWS = 1000  # rows (and reason/action sums) /stats/rejected lists; `more` counts the rest


def rejected(store: Store, filters: Filters, with_unknown_app: bool = False) -> dict:
    """Refused events per day, app, reason and action, with totals by reason.

    with_unknown_app adds the refusals no app could be read from (app_id ""), for the page.
    """
    app_ids = None
    if filters.app_id is not None:
        app_ids = [filters.app_id, ""] if with_unknown_app else [filters.app_id]
    found = store.refusals(filters, app_ids, REFUSAL_ROWS)
    return {
        "app_id": filters.app_id,
        **_window(filters),
        "refused": found["refused"],
        "by_reason_action": found["by_reason_action"],
        "rows": found["rows"],
        "more": {
            "rows": found["row_count"] - len(found["rows"]),
            "by_reason_action": found["group_count"] - len(found["by_reason_action"]),
        },
    }


# -- raw events: drill-down -------------------------------------------------------------------

MAX_LIMIT = 1000


CURSOR = re.compile(r"(-?[0-9]{1,18})\.([0-9]{1,18})", re.ASCII)


def encode_cursor(at: int, event_id: int) -> str:
    """The cursor of the page after the event (at, id): opaque to clients, "at.id" to us."""
    return f"{at}.{event_id}"


def decode_cursor(cursor: str | None) -> tuple[int, int] | None:
    """The (at, id) inside a cursor, None for none; a 400 ApiError when it is not one of ours."""
    if not cursor:
        return None
    match = CURSOR.fullmatch(cursor)
    if not match:
        raise ApiError(
            400, "invalid_cursor", '"cursor" must be the "next" value of an earlier page.'
        )
    return int(match.group(1)), int(match.group(2))


def event_view(row: dict, include_dev: bool = False) -> dict:
    """A stored event as the API shows it: ISO times, booleans, metadata as an object."""
    view = dict(row)
    view["at"], view["received_at"] = iso(row["at"]), iso(row["received_at"])
    view["is_emulator"], view["is_prod"] = bool(row["is_emulator"]), bool(row["is_prod"])
    view["metadata"] = json.loads(row["metadata"]) if row["metadata"] else None
    view["counts_as"] = counts_as(row, include_dev)
    return view


MAX_SCAN = 10_000  # raw events one page may read past while skipping legacy download_fail
SCAN_BATCH = MAX_SCAN  # event keys read at once while skipping them: one scan, not ten
PAGE_BYTES = 2 * 1024 * 1024  # stored text (metadata, mostly) one page of events holds at most


def _counted(row: dict, kind: str | None) -> bool:
    """Whether a raw event the store matched really counts for the kind asked for.

    SQL picks every action ending in _fail; the legacy download_fail rule is applied here.
    """
    if kind == "failure":
        return counts_as_failure(row["action"], row["plugin_version"], row["platform"])
    if kind == "attempt":
        return row["action"] == "set" or _counted(row, "failure")
    return True


def event_list(
    store: Store,
    filters: Filters,
    limit: int = 100,
    cursor: str | None = None,
    include_dev: bool = False,
) -> dict:
    """Raw events matching filters, newest first, one page, with the cursor of the next page.

    kind=failure (and attempt) leave out legacy download_fail, so a figure's link lists exactly
    what it counts; a page skipping many of them may hold fewer than `limit` events, and so
    does a page cut at PAGE_BYTES of stored text (big metadata).
    """
    position, kind = decode_cursor(cursor), filters.kind
    keys: list[dict] = []
    scanned, exhausted = 0, False
    size = limit + 1 if kind not in ("failure", "attempt") else max(limit + 1, SCAN_BATCH)
    while len(keys) <= limit and scanned < MAX_SCAN and not exhausted:
        batch = store.event_keys(filters, size, position)
        exhausted = len(batch) < size
        for key in batch:
            position, scanned = (key["at"], key["id"]), scanned + 1
            if _counted(key, kind):
                keys.append(key)
                if len(keys) > limit:
                    break
    more, keys = len(keys) > limit, keys[:limit]
    rows = store.events_by_id([key["id"] for key in keys], PAGE_BYTES)
    if more or len(rows) < len(keys):
        after = (rows[-1]["at"], rows[-1]["id"]) if rows else position
    else:
        after = None if exhausted else position
    return {
        "events": [event_view(row, include_dev) for row in rows],
        "next": None if after is None else encode_cursor(*after),
    }


def _state(row: dict) -> dict:
    """A device table row as the API shows it: ISO times, prod as a boolean."""
    return {
        **row,
        "prod": bool(row["prod"]),
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        "bundle_at": iso(row["bundle_at"]),
    }


def device(
    store: Store,
    filters: Filters,
    limit: int = 100,
    cursor: str | None = None,
    include_dev: bool = False,
) -> dict:
    """One device's (or one custom_id's devices') events, newest first, and current state."""
    key = "device_id" if filters.device_id is not None else "custom_id"
    page = event_list(store, filters, limit, cursor, include_dev)
    states = store.device_states(filters)
    if not page["events"] and not states and cursor is None:
        raise ApiError(404, "device_not_found", f"No events are stored for this {key}.")
    return {key: getattr(filters, key), "current": [_state(s) for s in states], **page}


def device_list(
    store: Store, filters: Filters, prod: bool | None, limit: int = 100, after: str | None = None
) -> dict:
    """One app's devices and the bundle each runs now, by device id, a page at a time.

    since/until keep the devices last seen in that range; `after` is the `next` of the page
    before: a device id, and any text is a valid place to continue from.
    """
    filters = with_app(store, filters)
    rows = store.device_page(filters, prod, limit + 1, after)
    more, rows = len(rows) > limit, rows[:limit]
    return {
        "app_id": filters.app_id or None,
        "devices": [_state(row) for row in rows],
        "next": rows[-1]["device_id"] if more else None,
    }


# -- the dashboard ----------------------------------------------------------------------------

VERSIONS_SHOWN = 100  # version rows on the page; "N more" links to /stats/versions for the rest
# One Top read serves every table of the page.
assert VERSIONS_SHOWN == HEALTH_SHOWN == TIMELINE_VERSIONS == ADOPTION_VERSIONS


def dashboard(store: Store, filters: Filters, include_dev: bool = False, now: int = 0) -> dict:
    """Everything the page shows for one app, from the same functions as the JSON API."""
    now = now or _now()
    app_list = apps(store)  # read once: ranking 100,000 apps took 80 ms a time
    filters = with_app(store, filters, app_list)
    newest = store.newest_event(filters.app_id) if filters.app_id else None
    if newest is not None and all(app["app_id"] != filters.app_id for app in app_list):
        app_list.append({"app_id": filters.app_id, "last_event_at": iso(newest)})
    report: dict[str, Any] = {
        "apps": app_list,
        "apps_more": max(store.app_count() - len(app_list), 0),
        "app_id": filters.app_id or None,
        "include_dev": include_dev,
        "filters": filters,
        "definitions": DEFINITIONS,
    }
    if not filters.app_id:
        return report
    # Every table of the page shows VERSIONS_SHOWN versions: past MANY_VERSIONS, the same ones.
    known = Top(_top(store, filters, not include_dev, VERSIONS_SHOWN))
    legacy = legacy_download_fail(store, filters)  # read once, used three times
    report["summary"] = summary(store, filters, include_dev, now)
    report["versions"] = versions(store, filters, include_dev, legacy, VERSIONS_SHOWN, known=known)
    report["health"] = health(store, filters, include_dev, known=known)
    report["timeline"] = timeline(store, filters, "day", include_dev, now, known, legacy)
    report["adoption"] = adoption(store, filters, include_dev, now, known)
    report["failures"] = failures(store, filters, include_dev, legacy=legacy)
    report["rejected"] = rejected(store, filters, with_unknown_app=True)
    if not include_dev and _counted_nothing(report["versions"]):
        report["hidden_dev_events"] = sum(row["n"] for row in store.totals(filters, False))
    return report


def _counted_nothing(report: dict) -> bool:
    """True when a versions report has no device, install, uninstall or failure at all."""
    rows = [*report["versions"], *(report[name] for name in NOT_BUNDLES)]
    figures = ("devices", "installs", "uninstalls", "failures")
    return not any(row[figure] for row in rows for figure in figures)
