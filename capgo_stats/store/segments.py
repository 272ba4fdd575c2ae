"""How a time range is read: whole days from the day rollups, whole hours from the hour rollups,
and only the ragged minutes at the edges from raw events, so a count is exact and reads little.

Pure arithmetic, shared by every store whatever its SQL.
"""

from __future__ import annotations

from capgo_stats.protocol import DAY_MS, HOUR_MS

Segment = tuple[str, int | None, int | None]  # (table, lo, hi) as time_segments() gives them
# Size of one unit of each table's time column, in ms.
UNIT_MS = {
    "event": 1,
    "rollup_hour": HOUR_MS,
    "failure_hour": HOUR_MS,
    "rollup_day": DAY_MS,
    "failure_day": DAY_MS,
    "uninstall_day": DAY_MS,
}
# The time column of each table, in the unit above.
TIME_COLUMN = {
    "event": "at",
    "rollup_hour": "hour",
    "rollup_day": "day",
    "failure_hour": "hour",
    "failure_day": "day",
    "uninstall_day": "day",
}


def time_segments(since: int | None, until: int | None) -> list[tuple[str, int | None, int | None]]:
    """Split the time range [since, until) into (table, lo, hi) pieces, coarsest table first.

    Whole days come from rollup_day, whole hours from rollup_hour, and only the ragged
    minutes at the edges from raw events, so a count is exact and still reads little.
    lo/hi are in the table's own unit (day number, hour number, or ms); None is open.
    """
    if since is not None and until is not None and since >= until:
        return []
    d_lo = None if since is None else -(-since // DAY_MS)
    d_hi = None if until is None else until // DAY_MS
    if d_lo is not None and d_hi is not None and d_lo >= d_hi:
        return _hour_segments(since, until)
    edges = []
    if since is not None:
        edges += _hour_segments(since, d_lo * DAY_MS)
    if until is not None:
        edges += _hour_segments(d_hi * DAY_MS, until)
    return [("rollup_day", d_lo, d_hi), *edges]


def _hour_segments(lo_ms: int, hi_ms: int) -> list[tuple[str, int | None, int | None]]:
    """Split a bounded range into whole hours and raw-event edges."""
    if lo_ms >= hi_ms:
        return []
    h_lo, h_hi = -(-lo_ms // HOUR_MS), hi_ms // HOUR_MS
    if h_lo >= h_hi:
        return [("event", lo_ms, hi_ms)]
    pieces = [("event", lo_ms, h_lo * HOUR_MS), ("rollup_hour", h_lo, h_hi)]
    pieces.append(("event", h_hi * HOUR_MS, hi_ms))
    return [p for p in pieces if p[0] != "event" or p[1] < p[2]]


def failure_segments(since: int | None, until: int | None) -> list[Segment]:
    """time_segments() for failures: whole days from failure_day, whole hours from failure_hour."""
    tables = {"rollup_day": "failure_day", "rollup_hour": "failure_hour", "event": "event"}
    return [(tables[table], lo, hi) for table, lo, hi in time_segments(since, until)]


def uninstall_segments(since: int | None, until: int | None) -> list[Segment]:
    """time_segments() for uninstalls: whole days from uninstall_day, the rest from raw events."""
    pieces = []
    for table, lo, hi in time_segments(since, until):
        if table == "rollup_day":
            table = "uninstall_day"
        elif table == "rollup_hour":
            table, lo, hi = "event", _times(lo, HOUR_MS), _times(hi, HOUR_MS)
        pieces.append((table, lo, hi))
    return pieces


def _times(value: int | None, factor: int) -> int | None:
    """value * factor, keeping None (an open end) as None."""
    return None if value is None else value * factor
