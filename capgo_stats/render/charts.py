"""Chart geometry for the dashboard: bars as plain numbers, drawn as SVG by templates/_charts.html.

Drawn on the server so the page works offline, with no script and no CDN. A chart is a dict of
bars (x, y, width, height, colour, title, link filters), axis ticks, labels and a legend.
"""

from __future__ import annotations

import math

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#64748b")
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 28
TOP_VERSIONS = 5
DOWNLOAD, APP_OPEN = "download_complete", "app_moved_to_foreground"  # see reports.TIMELINE_ACTIONS


def nice_top(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above value (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def ticks(top: int) -> list[int]:
    """The y axis labels: 0, the middle when it is a whole number, and the top."""
    return [0, top // 2, top] if top % 2 == 0 else [0, top]


def bars(name: str, title: str, labels: list[str], series: list[dict], stacked: bool) -> dict:
    """Bar geometry for one value per label and series, stacked or side by side.

    Each series is {"label", "color", "values": [...], "links": [filters or None, ...]}.
    """
    count = max(len(labels), 1)
    heights = [
        (sum if stacked else max)([0, *(s["values"][i] for s in series)])
        for i in range(len(labels))
    ]
    top = nice_top(max(heights, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / count
    width = slot * 0.8 / (1 if stacked else max(len(series), 1))
    shapes = []
    for i, label in enumerate(labels):
        base = TOP + plot_h
        for j, s in enumerate(series):
            value = s["values"][i]
            if not value:
                continue
            h = value / top * plot_h
            x = LEFT + i * slot + slot * 0.1 + (0 if stacked else j * width)
            y = base - h if stacked else TOP + plot_h - h
            shapes.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "width": round(max(width - 1, 1), 1),
                    "height": round(max(h, 1), 1),
                    "color": s["color"],
                    "title": f"{label}: {s['label']} {value}",
                    "value": value,
                    "series": s["label"],
                    "link": s["links"][i],
                }
            )
            if stacked:
                base -= h
    step = math.ceil(count / 8)
    return {
        "name": name,
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "bottom": TOP + plot_h,
        "bars": shapes,
        "yticks": [
            {"y": round(TOP + plot_h - value / top * plot_h, 1), "label": f"{value:,}"}
            for value in ticks(top)
        ],
        "xlabels": [
            {"x": round(LEFT + (i + 0.5) * slot, 1), "label": label[5:]}
            for i, label in enumerate(labels)
            if i % step == 0
        ],
        "legend": [{"label": s["label"], "color": s["color"]} for s in series],
    }


def _series(label: str, color: str, points: list[dict], key: str, link: dict) -> dict:
    """One series of a timeline figure, each bar linking to that day's events."""
    return {
        "label": label,
        "color": color,
        "values": [p[key] or 0 for p in points],
        "links": [{**link, "since": p["t"][:10], "until": p["t"][:10]} for p in points],
    }


def adoption(points: list[dict]) -> list[dict]:
    """Installs per version per day: the most installed versions, the rest as "other"."""
    totals: dict[str, int] = {}
    for p in points:
        for version, n in p["installs_by_version"].items():
            totals[version] = totals.get(version, 0) + n
    ranked = sorted(totals, key=lambda v: (-totals[v], v))
    shown, rest = ranked[:TOP_VERSIONS], set(ranked[TOP_VERSIONS:])
    series = []
    for color, version in zip(PALETTE, shown, strict=False):
        per_day = [{"t": p["t"], "n": p["installs_by_version"].get(version, 0)} for p in points]
        link = {"kind": "install", "version": version}
        series.append(_series(version, color, per_day, "n", link))
    if rest:
        per_day = [
            {"t": p["t"], "n": sum(n for v, n in p["installs_by_version"].items() if v in rest)}
            for p in points
        ]
        series.append(_series("other", PALETTE[-1], per_day, "n", {"kind": "install"}))
    return series


def version_devices(points: list[dict]) -> list[dict]:
    """Devices per version per day by the bundle each last ran (adoption points), the versions
    with the most device-days first, the rest as "other"; each bar links to that day's events."""
    counts = [
        {version: round(share * p["devices"]) for version, share in p["shares"].items()}
        for p in points
    ]
    totals: dict[str, int] = {}
    for day in counts:
        for version, n in day.items():
            totals[version] = totals.get(version, 0) + n
    ranked = sorted(totals, key=lambda v: (-totals[v], v))
    shown, rest = ranked[:TOP_VERSIONS], set(ranked[TOP_VERSIONS:])
    series = []
    for color, version in zip(PALETTE, shown, strict=False):
        per_day = [
            {"t": p["t"], "n": day.get(version, 0)} for p, day in zip(points, counts, strict=True)
        ]
        link = {"version": version if version not in ("builtin", "unknown") else None}
        series.append(_series(version, color, per_day, "n", link))
    if rest:
        per_day = [
            {"t": p["t"], "n": sum(n for v, n in day.items() if v in rest)}
            for p, day in zip(points, counts, strict=True)
        ]
        series.append(_series("other", PALETTE[-1], per_day, "n", {}))
    return series


def dashboard_charts(report: dict) -> dict:
    """The dashboard's charts, from its timeline; {} when there is no app to show."""
    if "timeline" not in report:
        return {}
    points = report["timeline"]["points"]
    labels = [p["t"][:10] for p in points]
    charts = {
        "adoption": bars(
            "adoption", "Installs per version per day", labels, adoption(points), stacked=True
        ),
        "outcomes": bars(
            "outcomes",
            "Installs and failures per day",
            labels,
            [
                _series("installs", PALETTE[1], points, "installs", {"kind": "install"}),
                _series("failures", "#dc2626", points, "failures", {"kind": "failure"}),
            ],
            stacked=False,
        ),
        "usage": bars(
            "usage",
            "Downloads and app opens per day",
            labels,
            [
                _series("downloads", PALETTE[0], points, "downloads", {"action": DOWNLOAD}),
                _series("app opens", PALETTE[3], points, "app_opens", {"action": APP_OPEN}),
            ],
            stacked=False,
        ),
    }
    if "adoption" in report:
        days = report["adoption"]["points"]
        charts["shares"] = bars(
            "shares",
            "Devices per version per day, by the bundle each last ran",
            [p["t"][:10] for p in days],
            version_devices(days),
            stacked=True,
        )
    if points and points[0]["active_devices"] is not None:
        charts["active"] = bars(
            "active",
            "Active devices per day",
            labels,
            [_series("active devices", PALETTE[4], points, "active_devices", {})],
            stacked=True,
        )
    return charts
