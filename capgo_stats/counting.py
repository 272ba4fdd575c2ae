"""The counting rules, each written once, and the fold that turns raw events into rollups.

Capgo's rules (docs/figures.md says each in words): an event counts when it comes from a
production build on a real device; an install is a `set`; an uninstall a `set` that replaced
another bundle; a failure an action ending in _fail, except the legacy download_fail of old
plugins; the bundle a device runs is the bundle of its latest event that reports one (not a
failure, not a download, not an action naming a target bundle). Pure functions over plain
values, no SQL: the fold, the reports and the raw event list's `counts_as` all use these.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from capgo_stats.protocol import DAY_MS, HOUR_MS

# Not bundles: the bundle inside the native app, and "no bundle known".
NOT_BUNDLES = ("builtin", "unknown")
INSTALL = "set"
FAILURE_SUFFIX = "_fail"
# Actions that name a bundle the device is about to get or just dropped, not the one it runs.
TARGET_ACTIONS = frozenset(
    ("set_next", "delete", "uninstall", "checksum_required", "insufficient_disk_space")
)
DOWNLOAD_PREFIX = "download_"  # download progress, manifest and zip steps, download_fail


def is_prod(is_prod_flag: int | bool, is_emulator: int | bool) -> bool:
    """An event from a production build on a real device: the events every figure counts."""
    return bool(is_prod_flag) and not is_emulator


def bundle_of(version_name: str | None) -> str:
    """The bundle version a version_name names: the part before any ':' (per-file failures)."""
    return (version_name or "").split(":", 1)[0]


def is_failure_action(action: str) -> bool:
    """An action ending in _fail. Whether it counts also depends on counts_as_failure."""
    return action.endswith(FAILURE_SUFFIX)


def reports_running_bundle(action: str, version_name: str | None) -> bool:
    """True when the event's version_name is the bundle the device runs now."""
    return bool(version_name) and not (
        is_failure_action(action) or action.startswith(DOWNLOAD_PREFIX) or action in TARGET_ACTIONS
    )


def replaced_bundle(action: str, old_version_name: str | None, bundle: str) -> str | None:
    """The bundle a `set` replaced (it lost a device: an uninstall), or None."""
    if action != INSTALL:
        return None
    old = bundle_of(old_version_name)
    return old if old and old != bundle else None


_VERSION = re.compile(
    r"[vV]?(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?(\D.*)?", re.DOTALL | re.ASCII
)


def parse_version(text: Any) -> tuple[int, int, int, int] | None:
    """A plugin version as (major, minor, patch, release), or None when it is not one.

    release is 0 for a pre-release ("7.17.0-beta.1", "7.17.0rc1"), which sorts before its
    release (1); build metadata and extra parts ("+b5", ".4") are ignored.
    """
    if not isinstance(text, str):
        return None
    match = _VERSION.fullmatch(text.strip())
    if not match:
        return None
    major, minor, patch, rest = match.groups()
    rest = rest or ""
    pre_release = rest[:1] == "-" or rest[:1].isalpha()
    return int(major), int(minor or 0), int(patch or 0), 0 if pre_release else 1


def download_fail_is_legacy(plugin_version: str | None, platform: str = "") -> bool:
    """True when a download_fail comes from a plugin that sent it for "nothing to download".

    Plugins before 7.17.0 did (6.x before 6.14.25). The Electron updater numbers its releases
    apart (0.0.x) and never did. An unreadable or missing version is taken as a real failure.
    """
    if platform == "electron":
        return False
    version = parse_version(plugin_version)
    if version is None:
        return False
    return version < ((6, 14, 25, 1) if version[0] == 6 else (7, 17, 0, 1))


def counts_as_failure(action: str, plugin_version: str | None, platform: str = "") -> bool:
    """An action ending in _fail, except a legacy download_fail (see download_fail_is_legacy).

    Per-file failures ("1.2.3:www/main.js") count, each for its bundle: a decision, explained
    in docs/figures.md (Capgo's newest receiver leaves them out).
    """
    if not is_failure_action(action):
        return False
    return not (action == "download_fail" and download_fail_is_legacy(plugin_version, platform))


def version_group(bundle: str | None) -> str:
    """The row a bundle is counted in: itself, or builtin / unknown, which are not bundles."""
    if bundle == "builtin":
        return "builtin"
    if not bundle or bundle == "unknown":
        return "unknown"
    return bundle


def counts_as(row: dict, include_dev: bool = False) -> list[str]:
    """The figures a raw event adds one to: install, uninstall (of old_version_name), failure."""
    if not include_dev and not is_prod(row["is_prod"], row["is_emulator"]):
        return []
    figures = []
    if row["action"] == INSTALL:
        figures.append("install")
        if replaced_bundle(row["action"], row["old_version_name"], row["bundle"]):
            figures.append("uninstall")
    if counts_as_failure(row["action"], row["plugin_version"], row["platform"]):
        figures.append("failure")
    return figures


# -- release health: outcomes, issues and times per device and version --------------------------

# The app-health actions a version's issues count (PROTOCOL.md); app_memory_warning,
# webview_resource_error and webview_security_policy_violation are softer and left out.
HEALTH_ISSUES = frozenset((
    "app_crash", "app_crash_native", "app_anr", "app_killed_low_memory",
    "app_killed_excessive_resource_usage", "app_initialization_failure",
    "webview_render_process_gone", "webview_content_process_terminated",
    "webview_unclean_restart", "webview_javascript_error", "webview_unhandled_rejection",
))  # fmt: skip
DOWNLOAD_STARTS = frozenset(("download_zip_start", "download_manifest_start", "download_0"))
LAUNCH = "app_launch_ready"
MAX_INSTALL_MS = 2 * HOUR_MS  # longer download-to-set pairs are left out, as Capgo does
NO_OUTCOME, FAILED, INSTALLED = 0, 1, 2
OUTCOMES = {FAILED: "failed", INSTALLED: "installed"}
STEPS_PER_DOUBLING = 8  # histogram buckets: 2 ** (1 / 8), each about 9 % wider than the last


def is_issue(action: str) -> bool:
    """An app-health action that counts as an issue of the version the device runs."""
    return action in HEALTH_ISSUES


def duration_bucket(ms: float) -> int:
    """The histogram bucket of a duration: floor(8 * log2(ms)), 0 for 1 ms or less."""
    return max(0, math.floor(STEPS_PER_DOUBLING * math.log2(ms))) if ms > 1 else 0


def bucket_ms(bucket: int) -> int:
    """The duration a bucket stands for: its geometric middle, in whole ms."""
    return round(2 ** ((bucket + 0.5) / STEPS_PER_DOUBLING)) if bucket else 1


def launch_duration(action: str, metadata: str | None) -> float | None:
    """metadata.duration_ms of an app_launch_ready, when it is a number of ms >= 0, else None."""
    if action != LAUNCH or not metadata:
        return None
    try:
        value = float(json.loads(metadata).get("duration_ms"))
    except (ValueError, TypeError, AttributeError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _earliest(old: int | None, at: int, happened: bool) -> int | None:
    """The earliest time of something: old, or at when it happened earlier (or first)."""
    if not happened:
        return old
    return at if old is None else min(old, at)


def next_version_state(
    state: VersionDevice | None, at: int, platform: str, prod: int, action: str, event: dict
) -> VersionDevice:
    """A device's record of a version after one more event naming it.

    event: which it is, as booleans: running (reports the bundle it runs), failure (a counted
    failure), download (a download start). Platform and prod stay those of the first event
    folded; a set makes the outcome installed for good, a failure makes it failed when none.
    """
    first, platform, prod, outcome, download, installed, run, issue = state or (
        at, platform, prod, NO_OUTCOME, None, None, None, None,
    )  # fmt: skip
    if action == INSTALL:
        outcome = INSTALLED
    elif event["failure"] and outcome == NO_OUTCOME:
        outcome = FAILED
    return (
        min(first, at), platform, prod, outcome,
        _earliest(download, at, event["download"]),
        _earliest(installed, at, action == INSTALL),
        _earliest(run, at, event["running"]),
        _earliest(issue, at, is_issue(action)),
    )  # fmt: skip


def install_ms(state: VersionDevice) -> int | None:
    """From the first download start to the first set of the version, when within 2 hours."""
    download, installed = state[4], state[5]
    if download is None or installed is None or not 0 <= installed - download <= MAX_INSTALL_MS:
        return None
    return installed - download


def version_buckets(key: VersionKey, state: VersionDevice) -> list[tuple[str, tuple]]:
    """The (table, key) rows of VERSION_COUNTS a device's record of a version counts in."""
    app, bundle, _ = key
    _, platform, prod, outcome, _, installed, run, issue = state
    rows = []
    if outcome in OUTCOMES:
        rows.append(("outcome_devices", (app, bundle, platform, prod, OUTCOMES[outcome])))
    for kind, at in (("active", run), ("issue", issue)):
        if at is not None:
            rows.append(("reach_day", (app, at // DAY_MS, bundle, platform, prod, kind)))
    took = install_ms(state)
    if took is not None:
        day = installed // DAY_MS
        rows.append(("install_day", (app, day, bundle, platform, prod, duration_bucket(took))))
    return rows


def next_day_bundle(
    state: DayBundle | None, at: int, platform: str, prod: int, bundle: str
) -> DayBundle:
    """The bundle a device last ran on a day after one more event reporting one: the latest
    by event time (on a tie, the event folded later), with that event's platform and prod."""
    if state is not None and at < state[3]:
        return state
    return (platform, prod, bundle, at)


def _names_version(action: str, running: bool, failure: bool) -> dict | None:
    """What an event is for its version's record, or None when it does not touch one."""
    download = action in DOWNLOAD_STARTS
    if not (running or failure or download or action == INSTALL):
        return None
    return {"running": running, "failure": failure, "download": download}


# -- the fold -----------------------------------------------------------------------------------
# A batch of raw events, in id order, becomes deltas: counts to add to each rollup row, and the
# new state of each device the batch touched. Folding a sequence in any split gives the same
# tables as folding it at once: each event is applied in order to the state the one before left.

# What the fold reads of each raw event, in this order.
FOLD_COLUMNS = (
    "id", "at", "app_id", "device_id", "action", "platform", "version_name",
    "old_version_name", "plugin_version", "version_os", "is_emulator", "is_prod", "metadata",
)  # fmt: skip

DAY_HOURS = DAY_MS // HOUR_MS
# A device's latest state: (first_seen, last_seen, platform, prod, bundle, bundle_at).
Device = tuple[int, int, str, int, str | None, int | None]
DeviceKey = tuple[str, str]  # (app_id, device_id)
DayKey = tuple[str, int, str]  # (app_id, day, device_id)
# A device's record of one version: (first_at, platform, prod, outcome, download_at, set_at,
# run_at, issue_at); outcome is NO_OUTCOME, FAILED or INSTALLED, the times the earliest seen.
VersionDevice = tuple[int, str, int, int, int | None, int | None, int | None, int | None]
VersionKey = tuple[str, str, str]  # (app_id, bundle, device_id)
# The bundle a device last ran on a day: (platform, prod, bundle, bundle_at), by DayKey.
DayBundle = tuple[str, int, str, int]

# The tables of counts, each with its key columns then its count column, as schema.sql has them.
COUNTS = {
    "rollup_hour": ("app_id", "hour", "action", "bundle", "platform", "prod", "count"),
    "rollup_day": ("app_id", "day", "action", "bundle", "platform", "prod", "count"),
    "failure_hour": (
        "app_id", "hour", "action", "bundle", "platform", "plugin_version", "version_os",
        "prod", "count",
    ),
    "failure_day": (
        "app_id", "day", "action", "bundle", "platform", "plugin_version", "version_os",
        "prod", "count",
    ),
    "uninstall_day": ("app_id", "day", "bundle", "platform", "prod", "count"),
    "device_bundle": ("app_id", "platform", "prod", "bundle", "devices"),
    "device_hour": ("app_id", "hour", "platform", "prod", "devices"),
    "active_day": ("app_id", "day", "prod", "devices"),
    "outcome_devices": ("app_id", "bundle", "platform", "prod", "outcome", "devices"),
    "reach_day": ("app_id", "day", "bundle", "platform", "prod", "kind", "devices"),
    "install_day": ("app_id", "day", "bundle", "platform", "prod", "bucket", "devices"),
    "launch_day": ("app_id", "day", "bundle", "platform", "prod", "bucket", "count"),
    "adoption_day": ("app_id", "day", "platform", "prod", "bundle", "devices"),
}  # fmt: skip
# The counts made from version_device alone, so a rebuild can count them again from it.
VERSION_COUNTS = ("outcome_devices", "reach_day", "install_day")


@dataclass
class Deltas:
    """What one fold adds: counts per table and key, device states, devices first seen a day."""

    counts: dict[str, dict[tuple, int]] = field(
        default_factory=lambda: {table: defaultdict(int) for table in COUNTS}
    )
    devices: dict[DeviceKey, Device] = field(default_factory=dict)
    device_days: dict[DayKey, int] = field(default_factory=dict)  # -> prod of its first event
    versions: dict[VersionKey, VersionDevice] = field(default_factory=dict)
    day_bundles: dict[DayKey, DayBundle] = field(default_factory=dict)


def next_state(
    state: Device | None, at: int, platform: str, prod: int, bundle: str | None
) -> Device:
    """A device's state after one more event (bundle: what it reports running, else None).

    Platform and prod follow the latest event by event time; the bundle follows the latest
    event that reports one. On a tie, the event folded later wins.
    """
    if state is None:
        return (at, at, platform, prod, bundle, at if bundle is not None else None)
    first, last, old_platform, old_prod, old_bundle, bundle_at = state
    if at < last:
        platform, prod = old_platform, old_prod
    if bundle is None or at < (bundle_at or 0):
        bundle, at_bundle = old_bundle, bundle_at
    else:
        at_bundle = at
    return (min(first, at), max(last, at), platform, prod, bundle, at_bundle)


def device_buckets(app_id: str, state: Device) -> tuple[tuple, tuple]:
    """The device_bundle and device_hour keys a device is counted under."""
    _, last, platform, prod, bundle, _ = state
    return (app_id, platform, prod, bundle or ""), (app_id, last // HOUR_MS, platform, prod)


def fold(
    rows: Iterable[tuple],
    devices: dict[DeviceKey, Device],
    days: set[DayKey],
    versions: dict[VersionKey, VersionDevice] | None = None,
    day_bundles: dict[DayKey, DayBundle] | None = None,
) -> Deltas:
    """The deltas of a batch of raw events (FOLD_COLUMNS, in id order).

    devices: the current state of the devices the batch names (absent: never seen); days: which
    of the batch's (app_id, day, device_id) already counted the device as active that day;
    versions: the stored records of the (app_id, bundle, device_id) the batch names;
    day_bundles: the stored bundle each (app_id, day, device_id) of the batch last ran.
    """
    deltas, versions, day_bundles = Deltas(), versions or {}, day_bundles or {}
    counts = deltas.counts
    # Counted per hour first; the day tables are summed from the hours (24 hours make a day).
    hours, failures = Counter(), Counter()
    states, first_days, records = deltas.devices, deltas.device_days, deltas.versions
    for (
        _, at, app, device, action, platform, version, old, plugin, os_, emulator, flag, meta,
    ) in rows:  # fmt: skip
        prod, bundle, hour = int(is_prod(flag, emulator)), bundle_of(version), at // HOUR_MS
        took = launch_duration(action, meta)
        if took is not None:
            launch = (app, at // DAY_MS, bundle, platform, prod, duration_bucket(took))
            counts["launch_day"][launch] += 1
        counted = counts_as_failure(action, plugin, platform)
        running = reports_running_bundle(action, version)
        touch = _names_version(action, running, counted)
        if touch is not None and touch["running"]:
            dkey = (app, at // DAY_MS, device)
            ran = deltas.day_bundles.get(dkey) or day_bundles.get(dkey)
            deltas.day_bundles[dkey] = next_day_bundle(ran, at, platform, prod, bundle)
        if touch is not None:
            vkey = (app, bundle, device)
            record = records.get(vkey) or versions.get(vkey)
            records[vkey] = next_version_state(record, at, platform, prod, action, touch)
        hours[(app, hour, action, bundle, platform, prod)] += 1
        if is_failure_action(action):
            failures[(app, hour, action, bundle, platform, plugin or "", os_ or "", prod)] += 1
        replaced = replaced_bundle(action, old, bundle)
        if replaced:
            counts["uninstall_day"][(app, at // DAY_MS, replaced, platform, prod)] += 1
        key = (app, device)
        now_runs = bundle if running else None
        states[key] = next_state(states.get(key) or devices.get(key), at, platform, prod, now_runs)
        day_key = (app, at // DAY_MS, device)
        if day_key not in first_days and day_key not in days:
            first_days[day_key] = prod
    for table, per_hour in (("rollup", hours), ("failure", failures)):
        counts[f"{table}_hour"].update(per_hour)
        per_day = counts[f"{table}_day"]
        for (app, hour, *rest), n in per_hour.items():
            per_day[(app, hour // DAY_HOURS, *rest)] += n
    for key, state in states.items():
        _move(counts, key[0], devices.get(key), state)
    for (app, day, _), prod in first_days.items():
        counts["active_day"][(app, day, prod)] += 1
    for vkey, record in records.items():
        move_version(counts, vkey, versions.get(vkey), record)
    # A record a repeat left as it was need not be written again: most events repeat one.
    deltas.versions = {key: new for key, new in records.items() if new != versions.get(key)}
    for (app, day, device), ran in deltas.day_bundles.items():
        old = day_bundles.get((app, day, device))
        if old is not None and old[:3] != ran[:3]:
            counts["adoption_day"][(app, day, *old[:3])] -= 1
        if old is None or old[:3] != ran[:3]:
            counts["adoption_day"][(app, day, *ran[:3])] += 1
    return deltas


def move_version(
    counts: dict[str, dict[tuple, int]],
    key: VersionKey,
    old: VersionDevice | None,
    new: VersionDevice | None,
) -> None:
    """Move a device's record of a version from the rows its old state counted in to its new."""
    before = version_buckets(key, old) if old is not None else []
    after = version_buckets(key, new) if new is not None else []
    for table, row in before:
        counts[table][row] -= 1
    for table, row in after:
        counts[table][row] += 1


def _move(
    counts: dict[str, dict[tuple, int]], app_id: str, old: Device | None, new: Device | None
) -> None:
    """Move a device's counts in device_bundle and device_hour from its old state to its new."""
    before = device_buckets(app_id, old) if old is not None else (None, None)
    after = device_buckets(app_id, new) if new is not None else (None, None)
    for table, was, now in zip(("device_bundle", "device_hour"), before, after, strict=True):
        if was == now:
            continue
        if was is not None:
            counts[table][was] -= 1
        if now is not None:
            counts[table][now] += 1


def unfold_devices(devices: dict[DeviceKey, Device]) -> Deltas:
    """The deltas of forgetting devices: they leave the device counts (the rollups keep them)."""
    deltas = Deltas()
    for (app_id, _), state in devices.items():
        _move(deltas.counts, app_id, state, None)
    return deltas
