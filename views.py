"""The insight routes: JSON reports under /stats/ and the dashboard at /.

Apart from app.py (the app, ingest, the error handler) because these nine read routes would
double its length. Each route parses the query, calls one function of reports.py and shapes
the answer; the page and the JSON call the same functions, so they show the same numbers.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, url_for

import charts
import events
import reports
from app import get_store, parse_filters, stored_id
from errors import ApiError

bp = Blueprint("insights", __name__)

FLAGS = {"1": True, "true": True, "0": False, "false": False}


def _flag(name: str) -> bool | None:
    """A 0/1 query flag; None when absent or empty, a 400 when it is neither."""
    value = request.args.get(name)
    if not value:
        return None
    if value not in FLAGS:
        raise ApiError(400, "invalid_filter", f'"{name}" must be 1 or 0, not {value[:40]!r}.')
    return FLAGS[value]


def _report_filters(allow_action: bool = False) -> dict:
    """The shared filters of a report; action only where it applies (else a 400)."""
    filters = parse_filters()
    if filters["action"] is not None and not allow_action:
        raise ApiError(
            400, "invalid_filter", f'"action" does not apply to {request.path}; leave it out.'
        )
    return filters


def _limit() -> int:
    """The page size: 1 to reports.MAX_LIMIT, 100 when absent."""
    value = request.args.get("limit", "100")
    if not value.isdigit() or not 1 <= int(value) <= reports.MAX_LIMIT:
        raise ApiError(
            400,
            "invalid_filter",
            f'"limit" must be a whole number from 1 to {reports.MAX_LIMIT}, not {value[:40]!r}.',
        )
    return int(value)


def _cursor() -> str | None:
    """The event cursor of the query, checked: a 400 when it is not one of ours."""
    cursor = request.args.get("cursor") or None
    try:
        reports.decode_cursor(cursor)
    except reports.ReportError as e:
        raise ApiError(e.status, e.code, e.message) from None
    return cursor


def _run(report: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a report, turning its ReportError into the one error shape."""
    try:
        return report(get_store(), *args, **kwargs)
    except reports.ReportError as e:
        raise ApiError(e.status, e.code, e.message) from None


def _event_filters() -> dict:
    """Every filter of the raw event list: the shared ones and version, ids, kind, prod."""
    filters = _report_filters(allow_action=True)
    args = request.args
    kind = args.get("kind") or None
    if kind is not None and kind not in reports.EVENT_KINDS:
        raise ApiError(
            400, "invalid_filter", f'"kind" must be one of {", ".join(reports.EVENT_KINDS)}.'
        )
    ids = {name: stored_id(name, args.get(name) or "") for name in ("device_id", "custom_id")}
    extra = {name: args.get(name) or None for name in ("version", "plugin_version", "version_os")}
    return {**filters, **ids, **extra, "kind": kind}


@bp.app_template_global()
def events_url(report: dict, **extra: Any) -> str:
    """The raw events behind a figure of the page: the page's filters, then `extra` (None drops)."""
    filters = report["filters"]
    args = {
        "app_id": report["app_id"],
        "platform": filters.get("platform"),
        "since": reports.iso(filters.get("since")),
        "until": reports.iso(filters.get("until")),
        # the figures count prod devices only unless include_dev, so do their events
        **({"include_dev": 1} if report["include_dev"] else {"prod": 1}),
        **extra,
    }
    return url_for("insights.event_list", **{k: v for k, v in args.items() if v is not None})


@bp.app_template_global()
def devices_url(report: dict, version: str) -> str:
    """The devices that run a version now: the drill-down of a devices figure on the page."""
    args = {
        "app_id": report["app_id"],
        "platform": report["filters"].get("platform"),
        "version": version,
        "prod": None if report["include_dev"] else 1,
    }
    return url_for("insights.devices", **{k: v for k, v in args.items() if v is not None})


@bp.get("/stats/versions")
def versions() -> dict:
    """GET /stats/versions: one row per bundle version of an app."""
    return _run(reports.versions, _report_filters(), bool(_flag("include_dev")))


@bp.get("/stats/timeline")
def timeline() -> dict:
    """GET /stats/timeline: zero-filled series per day or hour."""
    interval = request.args.get("interval") or "day"
    return _run(
        reports.timeline, _report_filters(), interval, bool(_flag("include_dev")), events.now_ms()
    )


@bp.get("/stats/failures")
def failures() -> dict:
    """GET /stats/failures: failures by action and version, plugin, OS and platform."""
    version = request.args.get("version") or None
    return _run(reports.failures, _report_filters(), bool(_flag("include_dev")), version)


@bp.get("/stats/summary")
def summary() -> dict:
    """GET /stats/summary: last event and recently active devices of an app."""
    return _run(reports.summary, _report_filters(), bool(_flag("include_dev")), events.now_ms())


@bp.get("/stats/rejected")
def rejected() -> dict:
    """GET /stats/rejected: refused events by day, app, reason and action."""
    return _run(reports.rejected, _report_filters(allow_action=True))


@bp.get("/stats/events")
def event_list() -> dict:
    """GET /stats/events: raw events, every filter, newest first, a page at a time."""
    filters = _event_filters()
    prod = _flag("prod")
    return _run(
        reports.event_list,
        {**filters, "prod": prod},
        _limit(),
        _cursor(),
        bool(_flag("include_dev")),
    )


@bp.get("/stats/devices/<device_id>")
def device(device_id: str) -> dict:
    """GET /stats/devices/<device_id>: one device's events, newest first."""
    # stored_id: lowercased, and hashed when STATS_HASH_SECRET is set, as ingest stored it
    ids = {"device_id": stored_id("device_id", device_id), "custom_id": None}
    return _device({**_report_filters(), **ids})


@bp.get("/stats/devices")
def devices() -> dict:
    """GET /stats/devices: devices and their bundle; with ?custom_id=, that user's events."""
    custom_id = stored_id("custom_id", request.args.get("custom_id", ""))
    filters = {
        **_report_filters(),
        "version": request.args.get("version") or None,
        "prod": _flag("prod"),
    }
    if custom_id is not None:  # then version and prod filter the events
        return _device({**filters, "device_id": None, "custom_id": custom_id})
    _flag("include_dev")  # checked, though only the events of a custom_id use them
    _cursor()
    # The list pages by device id (`after`), the events of a custom_id by event cursor.
    after = request.args.get("after") or None
    return _run(reports.device_list, filters, filters["prod"], _limit(), after)


def _device(filters: dict) -> dict:
    """The drill-down answer for a device_id or custom_id filter."""
    return _run(
        reports.device,
        filters,
        _limit(),
        _cursor(),
        bool(_flag("include_dev")),
    )


@bp.get("/")
def dashboard() -> str:
    """The dashboard: one app's versions, timelines, failures and refused events."""
    filters = _report_filters()
    include_dev = bool(_flag("include_dev"))
    report = _run(reports.dashboard, filters, include_dev, events.now_ms())
    return render_template(
        "dashboard.html",
        report=report,
        charts=charts.dashboard_charts(report),
        query={k: v for k, v in request.args.items() if v and k != "app_id"},
    )
