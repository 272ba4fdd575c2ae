"""The stats protocol of @capgo/capacitor-updater: which events we take and how we store them.

Pure functions over plain dicts: no Flask, no SQL. The contract is the plugin's (docs/api.md,
"POST /stats", sums it up with the length limits written here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from capgo_stats.errors import ApiError

DOWNLOAD_STEPS = tuple(f"download_{n}" for n in range(0, 100, 10))

KNOWN_ACTIONS = frozenset(
    (
        # install pipeline
        "set", "set_next", "set_fail", "update_fail", "reset", "delete", "uninstall",
        # download progress
        *DOWNLOAD_STEPS, "download_complete", "download_manifest_start",
        "download_manifest_complete", "download_zip_start", "download_zip_complete",
        # download and install failures
        "download_fail", "finish_download_fail", "windows_path_fail", "canonical_path_fail",
        "directory_path_fail", "unzip_fail", "low_mem_fail", "download_manifest_file_fail",
        "download_manifest_checksum_fail", "download_manifest_brotli_fail", "manifest_path_fail",
        "decrypt_fail", "checksum_fail", "checksum_required", "insufficient_disk_space",
        # app lifecycle
        "app_moved_to_foreground", "app_moved_to_background", "app_nav", "app_launch_start",
        "app_launch_ready", "app_launch_timeout", "os_version_changed",
        "native_app_version_changed",
        # app health
        "app_crash", "app_crash_native", "app_anr", "app_killed_low_memory",
        "app_killed_excessive_resource_usage", "app_initialization_failure",
        "app_memory_warning",
        # web view
        "webview_javascript_error", "webview_unhandled_rejection", "webview_resource_error",
        "webview_security_policy_violation", "webview_unclean_restart",
        "webview_render_process_gone", "webview_content_process_terminated",
        "webview_dom_content_loaded", "webview_page_loaded",
        # update server answers
        "ping", "get", "noNew", "needPlanUpgrade", "missingBundle", "cannotGetBundle",
        "NoChannelOrOverride", "channelMisconfigured", "cannotUpdateViaPrivateChannel",
        "setChannel", "getChannel", "rateLimited", "rate_limit_reached", "InvalidIp",
        "blocked_by_server_url", "keyMismatch", "backend_refusal", "customIdBlocked",
        "disableAutoUpdate", "disableAutoUpdateToMajor", "disableAutoUpdateToMinor",
        "disableAutoUpdateToPatch", "disableAutoUpdateMetadata", "disableAutoUpdateUnderNative",
        "disableDevBuild", "disableProdBuild", "disableEmulator", "disableDevice",
        "disablePlatformIos", "disablePlatformAndroid", "disablePlatformElectron",
    )
)  # fmt: skip

MAX_BATCH = 1000

# Longest value kept per string field; each admits every real payload with room to spare
# (an e-mail as custom_id, "<version>:<file path>" as version_name).
REQUIRED = {"action": 64, "app_id": 255, "device_id": 128}
OPTIONAL = {
    "platform": 32,
    "custom_id": 1024,
    "version_name": 1024,
    "old_version_name": 1024,
    "version_build": 255,
    "version_code": 255,
    "version_os": 255,
    "plugin_version": 64,
    "defaultChannel": 255,
    "key_id": 64,
    "install_source": 64,
}
# The rule Capgo's own receiver applies: an app id is a reverse-domain name (com.example.app).
APP_ID = re.compile(r"[a-z0-9]+(\.[\w-]+)+", re.IGNORECASE | re.ASCII)

METADATA_MAX_KEYS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 64, 128, 4096

# Event times are milliseconds since 1970-01-01 UTC.
HOUR_MS, DAY_MS = 3_600_000, 86_400_000

# A device clock is believed when it is at most a year behind arrival (the plugin keeps unsent
# events across restarts, so old timestamps are real) and not ahead of it: an event cannot
# happen after it arrived, and one believed "23 h from now" made an app look alive for a day.
PLAUSIBLE_PAST_MS = 366 * DAY_MS

# Stored columns, in insert order.
COLUMNS = (
    "at", "received_at", "device_ts", "app_id", "device_id", "action", "platform",
    "version_name", "old_version_name", "custom_id", "version_build", "version_code",
    "version_os", "plugin_version", "is_emulator", "is_prod", "default_channel", "key_id",
    "install_source", "metadata", "fingerprint",
)  # fmt: skip
# What a device sent, as stored: every column but the two times we set and the fingerprint.
SENT = slice(COLUMNS.index("device_ts"), COLUMNS.index("fingerprint"))


def fingerprint(sent: tuple) -> int:
    """A 64-bit hash of the fields a device sent (row[SENT]): the same for a resend, and for
    events that differ in any field, different (the dedupe key, with device_id and device_ts)."""
    digest = hashlib.blake2b(repr(sent).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Refusal:
    """Why one event (or a whole body) was not stored: a stable code and a human message."""

    error: str
    message: str
    app_id: str = ""
    action: str = ""


def _reject_constant(name: str) -> None:
    """Refuse NaN and Infinity, which are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def parse_body(data: bytes) -> tuple[list[Any], bool]:
    """Parse a request body into (items, is_batch); a 400 ApiError when it is not usable."""
    if not data.strip():
        raise ApiError(400, "invalid_json", "The body is empty: send one event object or an array.")
    try:
        body = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise ApiError(
            400, "invalid_json", f"The body is not valid UTF-8 JSON: {_short(e)}"
        ) from None
    if isinstance(body, dict):
        return [body], False
    if isinstance(body, list):
        if len(body) > MAX_BATCH:
            raise ApiError(
                400,
                "too_many_events",
                f"The array holds {len(body)} events; send at most {MAX_BATCH} per request.",
            )
        return body, True
    raise ApiError(400, "invalid_body", "The body must be a JSON object (one event) or an array.")


def _short(e: Exception) -> str:
    """A one-line, bounded description of a parse error."""
    return str(e).splitlines()[0][:200]


def _text_ok(value: str) -> bool:
    """True when a string can be stored as text on every store: UTF-8 (no lone surrogates) and
    no NUL character (PostgreSQL's text cannot hold one)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _tally_label(value: Any, limit: int) -> str:
    """What a refused event's app_id/action is tallied under: the string, cut, or ''."""
    return value[:limit] if isinstance(value, str) and _text_ok(value[:limit]) else ""


def _check_string(name: str, value: Any, limit: int) -> str | None:
    """Return an error message when a string field has the wrong type or size."""
    if not isinstance(value, str):
        return f'"{name}" must be a string, not {type(value).__name__}.'
    if len(value) > limit:
        return f'"{name}" is {len(value)} characters long; the limit is {limit}.'
    if not _text_ok(value):
        return f'"{name}" is not valid text (a NUL character or a lone surrogate).'
    return None


def _check_metadata(value: Any) -> str | None:
    """Return an error message when metadata is not a small object of strings."""
    if not isinstance(value, dict):
        return f'"metadata" must be an object of strings, not {type(value).__name__}.'
    if len(value) > METADATA_MAX_KEYS:
        return f'"metadata" has {len(value)} keys; the limit is {METADATA_MAX_KEYS}.'
    for key, item in value.items():
        problem = _check_string("metadata key", key, METADATA_MAX_KEY) or _check_string(
            f"metadata.{key[:METADATA_MAX_KEY]}", item, METADATA_MAX_VALUE
        )
        if problem:
            return problem
    return None


def _event_time(device_ts: int | None, now_ms: int) -> int:
    """The event time: the device's clock when plausible, else the arrival time."""
    if device_ts is None or not now_ms - PLAUSIBLE_PAST_MS <= device_ts <= now_ms:
        return now_ms
    return device_ts


def _timestamp(value: Any) -> int | None:
    """The device timestamp as integer milliseconds, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) < 2**63:
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None


def _flag(event: dict, name: str, default: bool) -> tuple[int, str | None]:
    """A boolean field as 0/1 with its default, or an error message."""
    value = event.get(name)
    if value is None:
        return int(default), None
    if not isinstance(value, bool):
        return 0, f'"{name}" must be true or false, not {type(value).__name__}.'
    return int(value), None


def pseudonym(value: str, secret: str) -> str:
    """The keyed hash stored instead of an id when STATS_HASH_SECRET is set (HMAC-SHA256, hex)."""
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def secret_mark(secret: str) -> int:
    """What a database remembers of STATS_HASH_SECRET: 0 for none, else 64 bits of a keyed hash
    that tells one secret from another and gives nothing of it away."""
    if not secret:
        return 0
    digest = hmac.new(secret.encode(), b"capgo-stats hash secret", hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big", signed=True) or 1


def stored_id(field: str, value: str, secret: str = "") -> str | None:
    """A device_id (lowercased) or custom_id (trimmed; None when empty) as stored.

    With a secret, the stored value is its keyed hash: ingest and look-ups both call this, so a
    look-up by the raw id finds the hashed rows.
    """
    value = value.lower() if field == "device_id" else value.strip()
    if not value:
        return None
    return pseudonym(value, secret) if secret else value


def validate(
    event: Any,
    actions: frozenset[str],
    now_ms: int,
    app_ids: frozenset[str] | None = None,
    secret: str = "",
) -> tuple | Refusal:
    """Turn one decoded event into a row for the store (see COLUMNS), or a Refusal.

    `app_ids`, when given, is the allowlist of apps (STATS_APP_IDS); `secret` is
    STATS_HASH_SECRET (see stored_id).
    """
    if not isinstance(event, dict):
        return Refusal("invalid_event", "Each event must be a JSON object.")

    def refuse(code: str, message: str) -> Refusal:
        return Refusal(code, message, label("app_id"), label("action"))

    def label(name: str) -> str:
        return _tally_label(event.get(name), REQUIRED[name])

    for name, limit in REQUIRED.items():
        value = event.get(name)
        if value is None or value == "":
            hint = " Set appId in capacitor.config." if name == "app_id" else ""
            return refuse("missing_field", f'"{name}" is required and must not be empty.{hint}')
        problem = _check_string(name, value, limit)
        if problem:
            return refuse("invalid_field", problem)
    if not APP_ID.fullmatch(event["app_id"]):
        return refuse(
            "invalid_field",
            f'"app_id" must be a reverse-domain name such as com.example.app,'
            f" not {label('app_id')!r}.",
        )
    if app_ids is not None and event["app_id"] not in app_ids:
        return refuse(
            "unknown_app", f'"{label("app_id")}" is not an app of this server (STATS_APP_IDS).'
        )
    if event["action"] not in actions:
        return refuse(
            "unknown_action",
            f'"{label("action")}" is not a known action; add it to STATS_EXTRA_ACTIONS to accept'
            " it.",
        )
    text = {}
    for name, limit in OPTIONAL.items():
        value = event.get(name)
        if value is None:
            continue
        # The usual field is a short ASCII string: one test, no call (the hot path). ASCII
        # holds NUL, which PostgreSQL's text cannot: a NUL there made every POST of its batch
        # a 503, and the plugin sent it again and again.
        if not (
            type(value) is str and len(value) <= limit and value.isascii() and "\x00" not in value
        ):
            problem = _check_string(name, value, limit)
            if problem:
                return refuse("invalid_field", problem)
        text[name] = value
    is_emulator, problem = _flag(event, "is_emulator", False)
    if problem:
        return refuse("invalid_field", problem)
    is_prod, problem = _flag(event, "is_prod", True)
    if problem:
        return refuse("invalid_field", problem)
    device_ts = None
    if event.get("timestamp") is not None:
        device_ts = _timestamp(event["timestamp"])
        if device_ts is None:
            return refuse("invalid_field", '"timestamp" must be an integer (epoch milliseconds).')
    metadata = event.get("metadata")
    if metadata is not None:
        problem = _check_metadata(metadata)
        if problem:
            return refuse("invalid_field", problem)
        metadata = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    sent = (
        device_ts,
        event["app_id"],
        stored_id("device_id", event["device_id"], secret),
        event["action"],
        text.get("platform", "").lower(),
        text.get("version_name", ""),
        text.get("old_version_name") or None,
        stored_id("custom_id", text.get("custom_id", ""), secret),
        text.get("version_build") or None,
        text.get("version_code") or None,
        text.get("version_os") or None,
        text.get("plugin_version") or None,
        is_emulator,
        is_prod,
        text.get("defaultChannel") or None,
        text.get("key_id") or None,
        text.get("install_source") or None,
        metadata,
    )
    # Without a device timestamp an event has nothing to tell a resend by: it is never deduped.
    mark = None if device_ts is None else fingerprint(sent)
    return (_event_time(device_ts, now_ms), now_ms, *sent, mark)


def names(setting: str) -> frozenset[str]:
    """The names in a comma-separated setting, trimmed, without empty ones."""
    return frozenset(name.strip() for name in setting.split(",") if name.strip())


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def allowed_actions(extra: str) -> frozenset[str]:
    """The known actions plus the comma-separated extra names an operator configured."""
    return KNOWN_ACTIONS | names(extra)
