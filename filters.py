"""The event filters shared by the read routes and the `flask` commands: one parser, one message.

Pure functions over plain mappings (a query string or a command's options), no Flask: the route
turns a FilterError into a 400 `invalid_filter`, a command into click's "Invalid value" (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from events import DAY_MS

# Filters that must equal the value, and filters on the event time.
EQUAL = ("app_id", "action", "platform")
TIMES = ("since", "until")


class FilterError(ValueError):
    """A filter value we cannot use; `name` is the filter, `message` says how to fix it."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name, self.message = name, message


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
        raise FilterError(
            name,
            f'"{name}" must be an ISO 8601 date or datetime such as 2026-11-01 or'
            f" 2026-11-01T08:00:00Z, not {value[:40]!r}.",
        ) from None


def parse_filters(args: Mapping[str, Any]) -> dict[str, Any]:
    """The event filters app_id, action, platform, since, until; None (or '') means no filter."""
    filters: dict[str, Any] = {}
    for name in EQUAL:
        value = args.get(name)
        filters[name] = value if value else None
    if filters["platform"]:
        filters["platform"] = filters["platform"].lower()  # stored lowercased
    for name in TIMES:
        value = args.get(name)
        filters[name] = parse_time(name, value, name == "until") if value else None
    return filters
