"""The filters of a read: one small typed value, parsed once from a query string or options.

Shared by the read routes and the `flask` commands: one parser, one message. A value we cannot
use is an ApiError 400 `invalid_filter` naming the parameter; a command shows it as click's
"Invalid value" (exit 2). Pure: no Flask, no SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from capgo_stats.errors import invalid_filter
from capgo_stats.protocol import DAY_MS, stored_id

# The filters every report takes; the raw event list and the device list take more (EXTRA).
SHARED = ("app_id", "action", "platform", "since", "until")
EVENT = ("version", "device_id", "custom_id", "plugin_version", "version_os", "kind", "prod")
KINDS = ("install", "failure", "attempt", "uninstall")
FLAGS = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class Filters:
    """What a read is about; None means "any". Times are epoch ms, [since, until)."""

    app_id: str | None = None
    action: str | None = None
    platform: str | None = None  # lowercased, as stored
    since: int | None = None
    until: int | None = None
    version: str | None = None  # a bundle version
    device_id: str | None = None  # as stored: lowercased, hashed when STATS_HASH_SECRET is set
    custom_id: str | None = None  # as stored, likewise
    plugin_version: str | None = None
    version_os: str | None = None
    kind: str | None = None  # one of KINDS: the events a figure counts
    prod: bool | None = None  # True: production builds on real devices only; False: the others

    def but(self, **changes: Any) -> Filters:
        """The same filters with some changed."""
        return replace(self, **changes)


def parse_time(name: str, value: str, end: bool) -> int:
    """An ISO 8601 date or datetime (UTC unless it says otherwise) as epoch ms.

    A date given as `until` (end=True) means the end of that day.
    """
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return int(start.timestamp() * 1000) + (DAY_MS if end else 0)
        # An unescaped "+01:00" in a query string arrives as " 01:00".
        moment = datetime.fromisoformat(value.replace(" ", "+") if "T" in value else value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    except ValueError:
        raise invalid_filter(
            name,
            f'"{name}" must be an ISO 8601 date or datetime such as 2026-11-01 or'
            f" 2026-11-01T08:00:00Z, not {value[:40]!r}.",
        ) from None


def flag(args: Mapping[str, Any], name: str) -> bool | None:
    """A 0/1 query flag; None when absent or empty, a 400 when it is neither."""
    value = args.get(name)
    if not value:
        return None
    if value not in FLAGS:
        raise invalid_filter(name, f'"{name}" must be 1 or 0, not {value[:40]!r}.')
    return FLAGS[value]


def _kind(value: str) -> str:
    """A kind of event, checked."""
    if value not in KINDS:
        raise invalid_filter("kind", f'"kind" must be one of {", ".join(KINDS)}.')
    return value


def parse(args: Mapping[str, Any], names: Iterable[str] = SHARED, secret: str = "") -> Filters:
    """The filters called `names` out of a query string or a command's options.

    Empty values are no filter. Ids are turned into their stored form (`secret` is
    STATS_HASH_SECRET), so a look-up by the raw id finds the rows ingest stored.
    """
    readers: dict[str, Callable[[str], Any]] = {
        "platform": str.lower,  # stored lowercased
        "since": lambda value: parse_time("since", value, False),
        "until": lambda value: parse_time("until", value, True),
        "device_id": lambda value: stored_id("device_id", value, secret),
        "custom_id": lambda value: stored_id("custom_id", value, secret),
        "kind": _kind,
    }
    found: dict[str, Any] = {}
    for name in names:
        if name == "prod":
            found["prod"] = flag(args, "prod")
            continue
        value = args.get(name)
        if value:
            found[name] = readers.get(name, str)(value)
    return Filters(**found)
