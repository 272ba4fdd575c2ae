"""The SQLite schema's migrations: one step per schema version, each inside the caller's
transaction, so a migration is all or nothing. The schema itself is schema.sql at the top.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from capgo_stats.protocol import COLUMNS

SCHEMA = Path(__file__).resolve().parents[2] / "schema.sql"
SCHEMA_VERSION = 4

log = logging.getLogger("capgo_stats.store")


class SchemaTooNew(RuntimeError):
    """A database of a newer schema than this code knows: refused at start, left untouched."""


def version(conn: sqlite3.Connection) -> int:
    """The schema version the database holds (0: a new file); SchemaTooNew past ours."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:  # a newer capgo-stats wrote it: we would write it wrong
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        raise SchemaTooNew(
            f"{path}: this database is schema {found}, this code knows up to"
            f" {SCHEMA_VERSION}: upgrade capgo-stats (or set STATS_DB to another file)."
        )
    return found


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the database to SCHEMA_VERSION, inside the caller's write transaction."""
    found = version(conn)
    if found == 1:
        log.warning("migrating %s to schema %d (rollups)", path, SCHEMA_VERSION)
        _migrate_1_to_2(conn)  # replays every event: lands on the latest schema
    elif found in (2, 3):
        log.warning("migrating %s to schema %d", path, SCHEMA_VERSION)
        if found == 2:
            _migrate_2_to_3(conn)
        _migrate_3_to_4(conn)
    elif found < SCHEMA_VERSION:
        _run_script(conn, SCHEMA.read_text())


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Execute a SQL script statement by statement inside the caller's transaction.

    (executescript() would commit first, and a migration must be all or nothing.)
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Add the rollups and fill them by replaying every stored event through their trigger."""
    for index in ("event#dedupe", "event#at", "event#device_id#at"):
        conn.execute(f'DROP INDEX IF EXISTS "{index}"')
    conn.execute("ALTER TABLE event RENAME TO event_v1")
    _run_script(conn, SCHEMA.read_text())
    columns = ", ".join(("id", *COLUMNS))
    conn.execute(f"INSERT INTO event ({columns}) SELECT {columns} FROM event_v1 ORDER BY id")
    conn.execute("DROP TABLE event_v1")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Add failure_day, filled from failure_hour (which survives prune), and its trigger line."""
    conn.execute('DROP TRIGGER IF EXISTS "event#rollup"')  # recreated below with failure_day
    # Early schema-2 files still have the indexes schema 2 later replaced: match schema.sql.
    for index in ("event#dedupe", "event#device_id#at", "device#app_id#last_seen"):
        conn.execute(f'DROP INDEX IF EXISTS "{index}"')
    _run_script(conn, SCHEMA.read_text())
    conn.execute(
        "INSERT INTO failure_day"
        " (app_id, day, action, bundle, platform, plugin_version, version_os, prod, count)"
        " SELECT app_id, hour / 24, action, bundle, platform, plugin_version, version_os, prod,"
        " sum(count) FROM failure_hour GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
    )


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Add the device counts, device_bundle and device_hour, filled from the device table."""
    _run_script(conn, SCHEMA.read_text())
    conn.execute(
        "INSERT INTO device_bundle (app_id, platform, prod, bundle, devices)"
        " SELECT app_id, platform, prod, coalesce(bundle, ''), count(*) FROM device"
        " GROUP BY 1, 2, 3, 4"
    )
    conn.execute(
        "INSERT INTO device_hour (app_id, hour, platform, prod, devices)"
        " SELECT app_id, last_seen / 3600000, platform, prod, count(*) FROM device"
        " GROUP BY 1, 2, 3, 4"
    )
