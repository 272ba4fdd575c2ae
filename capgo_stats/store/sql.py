"""SQL pieces of the SQLite queries: expressions and WHERE builders over the typed filters.

Every value goes in as a parameter; only column names (ours, never a client's) are spelled out.
"""

from __future__ import annotations

from capgo_stats.filters import Filters
from capgo_stats.store.segments import TIME_COLUMN

# The counting rules are counting.py's. Raw-event reads (the drill-down's filters, the minutes at
# the ragged edges of a time range) need a few of them in SQL, to filter on an index rather than
# in Python, and the failure breakdowns group by version in SQL, so a flood of made-up names
# never reaches Python: these mirror counting.replaced_bundle, is_failure_action, is_prod and
# version_group (and the generated `bundle` column of schema.sql mirrors bundle_of);
# tests/test_counting.py checks that they agree case by case. The legacy download_fail rule
# stays in Python: it judges the plugin versions, and SQL gets the list (counted_failure).
OLD_BUNDLE = (
    "CASE WHEN instr(old_version_name, ':') > 0"
    " THEN substr(old_version_name, 1, instr(old_version_name, ':') - 1)"
    " ELSE coalesce(old_version_name, '') END"
)
FAILURE = r"action LIKE '%\_fail' ESCAPE '\'"
PROD_EVENT = "is_prod = 1 AND is_emulator = 0"
VERSION_GROUP = "CASE WHEN coalesce(bundle, '') IN ('', 'unknown') THEN 'unknown' ELSE bundle END"


def counted_failure(legacy: list[tuple[str, str]]) -> tuple[str, list]:
    """1 for a failure row that counts, 0 for a legacy download_fail: one whose (platform,
    plugin_version) is in `legacy`, the pairs counting.counts_as_failure judged legacy."""
    if not legacy:
        return "1", []
    pairs = ", ".join("(?, ?)" for _ in legacy)
    sql = (
        "CASE WHEN action = 'download_fail'"
        f" AND (platform, plugin_version) IN (VALUES {pairs}) THEN 0 ELSE 1 END"
    )
    return sql, [value for pair in legacy for value in pair]


def marks(values: list) -> str:
    """One '?' per value, comma-separated, for an IN (...) list."""
    return ", ".join("?" * len(values))


def bundle_in(bundles: list[str] | None, column: str = "bundle") -> tuple[str, list]:
    """An extra " AND column IN (...)" for reads kept to some bundles (None: every bundle)."""
    if bundles is None:
        return "", []
    return f" AND {column} IN ({marks(bundles) or 'NULL'})", list(bundles)


def segment_where(
    table: str, filters: Filters, lo: int | None, hi: int | None, prod_only: bool = False
) -> tuple[str, list]:
    """WHERE clause and parameters, on the event table or any rollup, for the filters app_id,
    action and platform, a time piece [lo, hi) in the table's unit, and prod events only."""
    clauses, params = ["1 = 1"], []
    for name in ("app_id", "action", "platform"):
        if getattr(filters, name) is not None:
            clauses.append(f"{name} = ?")
            params.append(getattr(filters, name))
    column = TIME_COLUMN[table]
    if lo is not None:
        clauses.append(f"{column} >= ?")
        params.append(lo)
    if hi is not None:
        clauses.append(f"{column} < ?")
        params.append(hi)
    if prod_only:
        clauses.append(PROD_EVENT if table == "event" else "prod = 1")
    return " AND ".join(clauses), params


def device_where(filters: Filters, prod_only: bool) -> tuple[str, list]:
    """WHERE clause on device and its counts: the app, its platform, and prod devices only."""
    clauses, params = ["app_id = ?"], [filters.app_id]
    if filters.platform is not None:
        clauses.append("platform = ?")
        params.append(filters.platform)
    if prod_only:
        clauses.append("prod = 1")
    return " AND ".join(clauses), params


def event_where(filters: Filters) -> tuple[str, list]:
    """WHERE clause on raw events for every filter of GET /stats/events (see reports.py)."""
    clauses, params = ["1 = 1"], []
    for name in (
        "app_id",
        "action",
        "platform",
        "device_id",
        "custom_id",
        "plugin_version",
        "version_os",
    ):
        if getattr(filters, name) is not None:
            clauses.append(f"{name} = ?")
            params.append(getattr(filters, name))
    kind, version = filters.kind, filters.version
    if kind == "install":
        clauses.append("action = 'set'")
    elif kind == "failure":
        clauses.append(FAILURE)
    elif kind == "attempt":
        clauses.append(f"(action = 'set' OR {FAILURE})")
    elif kind == "uninstall":
        clauses.append(f"action = 'set' AND {OLD_BUNDLE} <> '' AND {OLD_BUNDLE} <> bundle")
    if version is not None:
        # for uninstalls, the version asked about is the one that was replaced
        clauses.append(f"{OLD_BUNDLE if kind == 'uninstall' else 'bundle'} = ?")
        params.append(version)
    if filters.prod is not None:
        clauses.append(PROD_EVENT if filters.prod else f"NOT ({PROD_EVENT})")
    if filters.since is not None:
        clauses.append("at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("at < ?")
        params.append(filters.until)
    return " AND ".join(clauses), params
