"""The dashboard at `/`: one app's versions, timelines, failures and refused events, as HTML.

Drawn from reports.dashboard, the same functions the JSON reads call; every figure links to
the raw events (or devices) it counts.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, url_for

from capgo_stats import protocol, reports
from capgo_stats.render import charts
from capgo_stats.web.context import query_filters, query_flag, read_store, refuse_nul_in_query

bp = Blueprint("dashboard", __name__)
bp.before_request(refuse_nul_in_query)

# The query parameters the page keeps in the links to itself and its JSON (app_id is set apart).
LINKED_PARAMS = ("platform", "since", "until", "include_dev")


@bp.app_template_global()
def events_url(report: dict, **extra: Any) -> str:
    """The raw events behind a figure of the page: the page's filters, then `extra` (None drops)."""
    filters = report["filters"]
    args = {
        "app_id": report["app_id"],
        "platform": filters.platform,
        "since": reports.iso(filters.since),
        "until": reports.iso(filters.until),
        # the figures count prod devices only unless include_dev, so do their events
        **({"include_dev": 1} if report["include_dev"] else {"prod": 1}),
        **extra,
    }
    return url_for("reads.event_list", **{k: v for k, v in args.items() if v is not None})


@bp.app_template_global()
def devices_url(report: dict, version: str) -> str:
    """The devices that run a version now: the drill-down of a devices figure on the page."""
    args = {
        "app_id": report["app_id"],
        "platform": report["filters"].platform,
        "version": version,
        "prod": None if report["include_dev"] else 1,
    }
    return url_for("reads.devices", **{k: v for k, v in args.items() if v is not None})


@bp.get("/")
def dashboard() -> str:
    """The dashboard: one app's versions, timelines, failures and refused events."""
    report = reports.dashboard(
        read_store(),
        query_filters(allow_action=False),
        query_flag("include_dev"),
        protocol.now_ms(),
    )
    return render_template(
        "dashboard.html",
        report=report,
        charts=charts.dashboard_charts(report),
        query=linked_query(),
    )


def linked_query() -> dict[str, str]:
    """The page's own filters from the query, to carry into its links; nothing else."""
    # Only these: any other name went on into every link, and url_for's own arguments
    # (_external, _scheme, _anchor, _method, endpoint) changed the links or ended in a 500.
    return {name: value for name in LINKED_PARAMS if (value := request.args.get(name))}
