"""The fold's SQL, the same on every database: read the device states a batch of events needs
and write the deltas counting.fold made of them, all inside the caller's transaction. Which
events are next is each store's own (sqlite.py: a position; postgres.py: a queue).

Each rollup row is written once per fold (the deltas are summed per key first), in key order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from capgo_stats.counting import (
    COUNTS,
    FOLD_COLUMNS,
    VERSION_COUNTS,
    DayBundle,
    DayKey,
    Deltas,
    Device,
    DeviceKey,
    VersionDevice,
    VersionKey,
    bundle_of,
    version_buckets,
)
from capgo_stats.protocol import DAY_MS, HOUR_MS
from capgo_stats.store.base import FoldFn

CHUNK = 300  # keys per look-up: well under SQLite's 32,766 variables
DEVICE_COLUMNS = ("first_seen", "last_seen", "platform", "prod", "bundle", "bundle_at")
VERSION_COLUMNS = (
    "first_at", "platform", "prod", "outcome", "download_at", "set_at", "run_at", "issue_at",
)  # fmt: skip


def plain(conn: Any) -> Any:
    """A cursor that returns plain tuples (the pool's connections return sqlite3.Row)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    return cursor


def position(conn: Any, key: str = "fold_position") -> int:
    """A value of the meta table: the fold's position, or pruned_before."""
    return conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]


def set_position(conn: Any, value: int, key: str = "fold_position") -> None:
    """Set a value of the meta table."""
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))


def batch_after(conn: Any, after: int, limit: int) -> list[tuple]:
    """The next `limit` events after id `after`, in id order (FOLD_COLUMNS)."""
    sql = f"SELECT {', '.join(FOLD_COLUMNS)} FROM event WHERE id > ? ORDER BY id LIMIT ?"
    return plain(conn).execute(sql, (after, limit)).fetchall()


def fill_health(conn: Any, fold: FoldFn, batch: int = 5000) -> None:
    """Fold every stored event into the release-health tables only (a schema-4 upgrade: the
    other rollups are kept as they are). Raw events pruned before are not in them."""
    tables, after = (*VERSION_COUNTS, "launch_day", "adoption_day"), 0
    while rows := batch_after(conn, after, batch):
        deltas = fold_batch_deltas(conn, fold, rows)
        deltas.counts = {table: deltas.counts[table] for table in tables}
        deltas.devices, deltas.device_days = {}, {}
        apply(conn, deltas)
        after = rows[-1][0]


def fold_batch(conn: Any, fold: FoldFn, rows: list[tuple]) -> None:
    """Fold rows: read the state they need and write their deltas."""
    apply(conn, fold_batch_deltas(conn, fold, rows))


def fold_batch_deltas(conn: Any, fold: FoldFn, rows: list[tuple]) -> Deltas:
    """The deltas of rows, from the device states and active days stored now."""
    devices = device_states(conn, {(row[2], row[3]) for row in rows})
    days = seen_days(conn, {(row[2], row[1] // DAY_MS, row[3]) for row in rows})
    versions = version_states(conn, {(row[2], bundle_of(row[6]), row[3]) for row in rows})
    ran = day_bundles(conn, {(row[2], row[1] // DAY_MS, row[3]) for row in rows})
    return fold(rows, devices, days, versions, ran)


# -- rebuild: the held period folded again -------------------------------------------------------

HOUR_TABLES = ("rollup_hour", "failure_hour")
DAY_TABLES = ("rollup_day", "failure_day", "uninstall_day", "active_day", "device_day")
DAY_TABLES += ("launch_day", "adoption_day", "adoption_device")


def clear_held_period(conn: Any, since: int) -> tuple[int, int]:
    """Delete the rows that the raw events from `since` on make again; return the first hour
    and day that are wholly held (raw events of the hour or day before `since` are gone)."""
    hour, day = -(-since // HOUR_MS), -(-since // DAY_MS)
    for table in HOUR_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE hour >= ?", (hour,))
    for table in DAY_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE day >= ?", (day,))
    conn.execute("DELETE FROM device WHERE first_seen >= ?", (since,))
    conn.execute("DELETE FROM version_device WHERE first_at >= ?", (since,))
    return hour, day


def held_only(deltas: Deltas, floors: tuple[int, int]) -> Deltas:
    """The deltas without what falls before the wholly held hours and days (kept as they are),
    and without device counts (recount_devices makes them from the device tables)."""
    hour, day = floors
    for table, counts in deltas.counts.items():
        if table in ("device_bundle", "device_hour", *VERSION_COUNTS):
            counts.clear()
            continue
        floor = hour if table in HOUR_TABLES else day
        for key in [key for key in counts if key[1] < floor]:
            del counts[key]
    for states in (deltas.device_days, deltas.day_bundles):
        for key in [key for key in states if key[1] < day]:
            del states[key]
    return deltas


def recount_devices(conn: Any) -> None:
    """Count device_bundle and device_hour again from the device table."""
    conn.execute("DELETE FROM device_bundle")
    conn.execute("DELETE FROM device_hour")
    conn.execute(
        "INSERT INTO device_bundle (app_id, platform, prod, bundle, devices)"
        " SELECT app_id, platform, prod, coalesce(bundle, ''), count(*) FROM device"
        " GROUP BY 1, 2, 3, 4"
    )
    conn.execute(
        "INSERT INTO device_hour (app_id, hour, platform, prod, devices)"
        f" SELECT app_id, last_seen / {HOUR_MS}, platform, prod, count(*) FROM device"
        " GROUP BY 1, 2, 3, 4"
    )
    recount_versions(conn)


def recount_versions(conn: Any) -> None:
    """Count the VERSION_COUNTS tables again from the version_device table."""
    deltas = Deltas()
    sql = f"SELECT app_id, bundle, device_id, {', '.join(VERSION_COLUMNS)} FROM version_device"
    for row in plain(conn).execute(sql):
        for table, key in version_buckets(row[:3], row[3:]):
            deltas.counts[table][key] += 1
    for table in VERSION_COUNTS:
        conn.execute(f"DELETE FROM {table}")
    apply(conn, deltas)


def _lookup(conn: Any, sql: str, keys: Iterable[tuple]) -> Iterator[tuple]:
    """Rows of `sql` for these keys: grouped by all but their last part, each group looked up
    on the primary key as `prefix = ? ... AND last IN (...)`, CHUNK keys at a time.

    (A row-value `(a, b) IN (VALUES ...)` scans the whole table instead.)
    """
    groups: dict[tuple, list] = {}
    for key in keys:
        groups.setdefault(key[:-1], []).append(key[-1])
    cursor = plain(conn)
    for prefix, lasts in sorted(groups.items()):
        lasts.sort()
        for start in range(0, len(lasts), CHUNK):
            chunk = lasts[start : start + CHUNK]
            yield from cursor.execute(
                sql.format(marks=", ".join("?" * len(chunk))), (*prefix, *chunk)
            )


def device_states(conn: Any, keys: set[DeviceKey]) -> dict[DeviceKey, Device]:
    """The stored state of these (app_id, device_id); absent ones were never seen."""
    sql = (
        f"SELECT app_id, device_id, {', '.join(DEVICE_COLUMNS)} FROM device"
        " WHERE app_id = ? AND device_id IN ({marks})"
    )
    return {(row[0], row[1]): row[2:] for row in _lookup(conn, sql, keys)}


def version_states(conn: Any, keys: set[VersionKey]) -> dict[VersionKey, VersionDevice]:
    """The stored records of these (app_id, bundle, device_id); absent ones have none yet."""
    sql = (
        f"SELECT app_id, bundle, device_id, {', '.join(VERSION_COLUMNS)} FROM version_device"
        " WHERE app_id = ? AND bundle = ? AND device_id IN ({marks})"
    )
    return {row[:3]: row[3:] for row in _lookup(conn, sql, keys)}


def day_bundles(conn: Any, keys: set[DayKey]) -> dict[DayKey, DayBundle]:
    """The bundle each of these (app_id, day, device_id) last ran, when one is stored."""
    sql = (
        "SELECT app_id, day, device_id, platform, prod, bundle, bundle_at FROM adoption_device"
        " WHERE app_id = ? AND day = ? AND device_id IN ({marks})"
    )
    return {row[:3]: row[3:] for row in _lookup(conn, sql, keys)}


def seen_days(conn: Any, keys: set[DayKey]) -> set[DayKey]:
    """Which of these (app_id, day, device_id) already counted the device as active."""
    sql = (
        "SELECT app_id, day, device_id FROM device_day"
        " WHERE app_id = ? AND day = ? AND device_id IN ({marks})"
    )
    return set(_lookup(conn, sql, keys))


def apply(conn: Any, deltas: Deltas) -> None:
    """Write deltas: add the counts (each key once, in key order), set the device states."""
    for table, counts in deltas.counts.items():
        changes = sorted((key, n) for key, n in counts.items() if n)
        if changes:
            conn.executemany(_add_sql(table), [(*key, n) for key, n in changes])
    if deltas.devices:
        columns = ("app_id", "device_id", *DEVICE_COLUMNS)
        conn.executemany(
            f"INSERT INTO device ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            " ON CONFLICT (app_id, device_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in DEVICE_COLUMNS),
            [(*key, *state) for key, state in sorted(deltas.devices.items())],
        )
    if deltas.versions:
        columns = ("app_id", "bundle", "device_id", *VERSION_COLUMNS)
        conn.executemany(
            f"INSERT INTO version_device ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (app_id, bundle, device_id)"
            " DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in VERSION_COLUMNS),
            [(*key, *state) for key, state in sorted(deltas.versions.items())],
        )
    if deltas.day_bundles:
        conn.executemany(
            "INSERT INTO adoption_device (app_id, day, device_id, platform, prod, bundle,"
            " bundle_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, day, device_id)"
            " DO UPDATE SET platform = excluded.platform, prod = excluded.prod,"
            " bundle = excluded.bundle, bundle_at = excluded.bundle_at",
            [(*key, *state) for key, state in sorted(deltas.day_bundles.items())],
        )
    if deltas.device_days:
        conn.executemany(
            "INSERT INTO device_day (app_id, day, device_id, prod) VALUES (?, ?, ?, ?)",
            [(*key, prod) for key, prod in sorted(deltas.device_days.items())],
        )


def _add_sql(table: str) -> str:
    """The upsert that adds a delta to one row of a table of counts."""
    *keys, count = COUNTS[table]
    columns = ", ".join((*keys, count))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * (len(keys) + 1))})"
        f" ON CONFLICT ({', '.join(keys)})"
        f" DO UPDATE SET {count} = {table}.{count} + excluded.{count}"
    )
