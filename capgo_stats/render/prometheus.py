"""GET /metrics as text: the Prometheus text exposition format (version 0.0.4).

Written by hand: the format is a few lines of text. No label ever holds a device id.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    """A label value escaped as the exposition format requires: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: list[tuple[dict, Any]]) -> list[str]:
    """The HELP and TYPE lines of one metric, then one line per sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        pairs = ",".join(f'{key}="{escape(text)}"' for key, text in labels.items())
        lines.append(f"{name}{{{pairs}}} {value}" if pairs else f"{name} {value}")
    return lines


def render(snapshot: dict[str, Any]) -> str:
    """The exposition text of a Store.metrics() snapshot."""
    lines = _family(
        "capgo_stats_events_total",
        "counter",
        "Events stored, by app and action; a resent event counts once, pruning lowers nothing.",
        [({"app_id": app, "action": action}, n) for app, action, n in snapshot["events"]],
    )
    lines += _family(
        "capgo_stats_refused_events_total",
        "counter",
        "Events refused and not stored, by reason (the error code); a refused body counts once.",
        [({"reason": reason}, n) for reason, n in snapshot["refused"]],
    )
    lines += _family(
        "capgo_stats_last_event_timestamp_seconds",
        "gauge",
        "Unix time of the app's newest event (event time: device clock when plausible).",
        [({"app_id": app}, f"{ms / 1000:.3f}") for app, ms in snapshot["last_event_ms"]],
    )
    lines += _family(
        "capgo_stats_fold_pending_events",
        "gauge",
        "Events stored but not folded into the rollups yet (the fold's backlog) when scraped.",
        [({}, snapshot["pending"])],
    )
    lines += _family(
        "capgo_stats_database_size_bytes",
        "gauge",
        "Bytes on disk of the SQLite database file and its write-ahead log.",
        [({}, snapshot["size_bytes"])],
    )
    return "\n".join(lines) + "\n"
