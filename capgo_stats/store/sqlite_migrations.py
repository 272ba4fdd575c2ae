"""The SQLite schema's migrations: one step per schema version, each inside the caller's
transaction, so a migration is all or nothing. The schema itself is schema.sql at the top.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import capgo_stats.store.fold_sql as folding
from capgo_stats.protocol import COLUMNS, SENT, fingerprint
from capgo_stats.store.base import FoldFn, SchemaTooNew

SCHEMA = Path(__file__).resolve().parents[2] / "schema.sql"
SCHEMA_VERSION = 5

log = logging.getLogger("capgo_stats.store")


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


def migrate(conn: sqlite3.Connection, path: str, fold: FoldFn) -> None:
    """Bring the database to SCHEMA_VERSION, inside the caller's write transaction; `fold` is
    counting.fold, for the tables a step fills from the raw events."""
    found = version(conn)
    if found == 0:
        _run_script(conn, SCHEMA.read_text())
        return
    if found >= SCHEMA_VERSION:
        return
    log.warning("migrating %s from schema %d to %d", path, found, SCHEMA_VERSION)
    if found == 1:
        _migrate_1_to_5(conn)
    else:
        for step in STEPS[found - 2 :]:
            step(conn, fold)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Execute a SQL script statement by statement inside the caller's transaction.

    (executescript() would commit first, and a migration must be all or nothing.)
    """
    for statement in _statements(script):
        conn.execute(statement)


def _statements(script: str) -> list[str]:
    """The statements of a SQL script, in order."""
    statements, statement = [], ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            statements.append(statement)
            statement = ""
    return statements


def _migrate_1_to_5(conn: sqlite3.Connection) -> None:
    """Schema 1 had raw events only: keep them, add every other table; the fold (from position
    0) then fills the rollups from the events, as it does for new ones."""
    _fingerprint_events(conn)
    _run_script(conn, SCHEMA.read_text())


def _migrate_2_to_3(conn: sqlite3.Connection, fold: FoldFn) -> None:
    """Add failure_day, filled from failure_hour (which survives prune)."""
    # Early schema-2 files kept an index that schema 2 later dropped: it doubled upsert costs.
    conn.execute('DROP INDEX IF EXISTS "device#app_id#last_seen"')
    conn.execute(
        "CREATE TABLE failure_day ("
        " app_id TEXT NOT NULL, day INTEGER NOT NULL, action TEXT NOT NULL,"
        " bundle TEXT NOT NULL, platform TEXT NOT NULL, plugin_version TEXT NOT NULL,"
        " version_os TEXT NOT NULL, prod INTEGER NOT NULL, count INTEGER NOT NULL,"
        " PRIMARY KEY (app_id, day, action, bundle, platform, plugin_version, version_os, prod)"
        ") WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO failure_day"
        " (app_id, day, action, bundle, platform, plugin_version, version_os, prod, count)"
        " SELECT app_id, hour / 24, action, bundle, platform, plugin_version, version_os, prod,"
        " sum(count) FROM failure_hour GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
    )


def _migrate_3_to_4(conn: sqlite3.Connection, fold: FoldFn) -> None:
    """Add the device counts, device_bundle and device_hour, filled from the device table."""
    conn.execute(
        "CREATE TABLE device_bundle ("
        " app_id TEXT NOT NULL, platform TEXT NOT NULL, prod INTEGER NOT NULL,"
        " bundle TEXT NOT NULL, devices INTEGER NOT NULL,"
        " PRIMARY KEY (app_id, platform, prod, bundle)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE device_hour ("
        " app_id TEXT NOT NULL, hour INTEGER NOT NULL, platform TEXT NOT NULL,"
        " prod INTEGER NOT NULL, devices INTEGER NOT NULL,"
        " PRIMARY KEY (app_id, hour, platform, prod)) WITHOUT ROWID"
    )
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


def _migrate_4_to_5(conn: sqlite3.Connection, fold: FoldFn) -> None:
    """Drop the triggers (the fold keeps the rollups now), give events the fingerprint dedupe
    key, and record the fold's position: every event so far is counted already. The
    release-health tables are filled by folding the raw events held into them alone.

    pruned_before is taken as the oldest raw event's time: nothing older is held, whether or
    not it was ever pruned.
    """
    triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for (name,) in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    _fingerprint_events(conn)
    for statement in _statements(SCHEMA.read_text()):
        if " ON event (" in statement:  # the event table's indexes, the new dedupe key among them
            conn.execute(statement)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES"
        " ('fold_position', (SELECT coalesce(max(id), 0) FROM event)),"
        " ('pruned_before', (SELECT coalesce(min(at), 0) FROM event))"
    )
    # The release-health tables are new: made and filled from the raw events held.
    _run_script(conn, SCHEMA.read_text())
    folding.fill_health(conn, fold)


STEPS = (_migrate_2_to_3, _migrate_3_to_4, _migrate_4_to_5)


def _fingerprint_events(conn: sqlite3.Connection) -> None:
    """Add the fingerprint to every stored event that has a device timestamp, and drop the old
    event indexes (the dedupe key among them): the caller creates schema 5's.

    Only the step to the current schema may take schema.sql's indexes: an older step that
    needs them gets its own frozen copy when they change again.
    """
    indexes = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'event'"
        " AND sql IS NOT NULL"
    ).fetchall()
    for (name,) in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("ALTER TABLE event ADD COLUMN fingerprint INTEGER")
    conn.create_function("fingerprint", len(SENT_COLUMNS), _fingerprint, deterministic=True)
    conn.execute(
        f"UPDATE event SET fingerprint = fingerprint({', '.join(SENT_COLUMNS)})"
        " WHERE device_ts IS NOT NULL"
    )


SENT_COLUMNS = COLUMNS[SENT]


def _fingerprint(*sent: object) -> int | None:
    """protocol.fingerprint of a stored row's sent fields; None without a device timestamp."""
    return None if sent[0] is None else fingerprint(sent)
