"""The JSON reads under /stats/: counts (the card's second route) and the release insights.

Each route parses the query once into Filters, calls one function of reports.py and answers
its plain data, so the page (web/dashboard.py) and the JSON show the same numbers.
"""

from __future__ import annotations

import re

from flask import Blueprint, request

from capgo_stats import filters, protocol, reports
from capgo_stats.errors import invalid_filter
from capgo_stats.filters import Filters
from capgo_stats.web.context import (
    query_filters,
    query_flag,
    read_store,
    refuse_nul_in_query,
    stored_id,
)

bp = Blueprint("reads", __name__)
bp.before_request(refuse_nul_in_query)

# The extra filters of the raw event list, beyond the shared ones.
EVENT_FILTERS = (*filters.SHARED, "version", "device_id", "custom_id", "plugin_version")
EVENT_FILTERS += ("version_os", "kind", "prod")


# A page size as typed: ASCII digits only (str.isdigit() also takes "²" and "①", which int()
# refuses, and "٣", which it reads as 3), and few enough of them for int() to read.
LIMIT = re.compile(r"[0-9]{1,9}")


def _limit() -> int:
    """The page size: 1 to reports.MAX_LIMIT, 100 when absent."""
    value = request.args.get("limit", "100")
    if not LIMIT.fullmatch(value) or not 1 <= int(value) <= reports.MAX_LIMIT:
        raise invalid_filter(
            "limit",
            f'"limit" must be a whole number from 1 to {reports.MAX_LIMIT}, not {value[:40]!r}.',
        )
    return int(value)


def _offset() -> int:
    """The rows to skip: 0 when absent, else ASCII digits (at most 9 of them)."""
    value = request.args.get("offset", "0")
    if not LIMIT.fullmatch(value):
        raise invalid_filter(
            "offset", f'"offset" must be a whole number from 0, not {value[:40]!r}.'
        )
    return int(value)


def _cursor() -> str | None:
    """The event cursor of the query, checked: a 400 when it is not one of ours."""
    cursor = request.args.get("cursor") or None
    reports.decode_cursor(cursor)
    return cursor


@bp.get("/stats/counts")
def counts() -> dict:
    """GET /stats/counts: how many events each app sent of each action."""
    rows = read_store().counts(query_filters())
    return {"counts": rows[: reports.COUNT_ROWS], "more": max(len(rows) - reports.COUNT_ROWS, 0)}


@bp.get("/stats/versions")
def versions() -> dict:
    """GET /stats/versions: one row per bundle version of an app."""
    report_filters = query_filters(allow_action=False)
    return reports.versions(
        read_store(), report_filters, query_flag("include_dev"), None, _limit(), _offset()
    )


@bp.get("/stats/health")
def health() -> dict:
    """GET /stats/health: per version, active and issue devices, launch and install times."""
    report_filters = query_filters(allow_action=False)
    return reports.health(read_store(), report_filters, query_flag("include_dev"))


@bp.get("/stats/adoption")
def adoption() -> dict:
    """GET /stats/adoption: per UTC day, devices and each version's share of them."""
    report_filters = query_filters(allow_action=False)
    return reports.adoption(
        read_store(), report_filters, query_flag("include_dev"), protocol.now_ms()
    )


@bp.get("/stats/timeline")
def timeline() -> dict:
    """GET /stats/timeline: zero-filled series per day or hour."""
    report_filters = query_filters(allow_action=False)
    interval = request.args.get("interval") or "day"
    return reports.timeline(
        read_store(), report_filters, interval, query_flag("include_dev"), protocol.now_ms()
    )


@bp.get("/stats/failures")
def failures() -> dict:
    """GET /stats/failures: failures by action and version, plugin, OS and platform."""
    report_filters = query_filters(allow_action=False)
    version = request.args.get("version") or None
    return reports.failures(read_store(), report_filters, query_flag("include_dev"), version)


@bp.get("/stats/summary")
def summary() -> dict:
    """GET /stats/summary: last event and recently active devices of an app."""
    report_filters = query_filters(allow_action=False)
    return reports.summary(
        read_store(), report_filters, query_flag("include_dev"), protocol.now_ms()
    )


@bp.get("/stats/rejected")
def rejected() -> dict:
    """GET /stats/rejected: refused events by day, app, reason and action."""
    with_unknown_app = query_flag("include_unknown_app")
    return reports.rejected(read_store(), query_filters(), with_unknown_app)


@bp.get("/stats/events")
def event_list() -> dict:
    """GET /stats/events: raw events, every filter, newest first, a page at a time."""
    event_filters = query_filters(EVENT_FILTERS)
    return reports.event_list(
        read_store(), event_filters, _limit(), _cursor(), query_flag("include_dev")
    )


@bp.get("/stats/devices/<device_id>")
def device(device_id: str) -> dict:
    """GET /stats/devices/<device_id>: one device's events, newest first."""
    report_filters = query_filters(allow_action=False)
    # stored_id: lowercased, and hashed when STATS_HASH_SECRET is set, as ingest stored it
    return _device(report_filters.but(device_id=stored_id("device_id", device_id)))


@bp.get("/stats/devices")
def devices() -> dict:
    """GET /stats/devices: devices and their bundle; with ?custom_id=, that user's events."""
    device_filters = query_filters((*filters.SHARED, "version", "prod", "custom_id"), False)
    if device_filters.custom_id is not None:  # then version and prod filter the events
        return _device(device_filters)
    query_flag("include_dev")  # checked, though only the events of a custom_id use them
    _cursor()
    # The list pages by device id (`after`), the events of a custom_id by event cursor.
    after = request.args.get("after") or None
    return reports.device_list(read_store(), device_filters, device_filters.prod, _limit(), after)


def _device(device_filters: Filters) -> dict:
    """The drill-down answer for a device_id or custom_id filter."""
    return reports.device(
        read_store(), device_filters, _limit(), _cursor(), query_flag("include_dev")
    )
