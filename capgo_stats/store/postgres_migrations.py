"""The PostgreSQL schema's migrations: one step per schema version, run at start inside one
transaction under an advisory lock, so servers starting together on a new database take turns
and the later ones find it done. The schema is postgres_schema.sql beside this file.

PostgreSQL joined at schema 5 (the version of schema.sql then); its numbers follow SQLite's, so
a version names the same tables on both.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from capgo_stats.store.base import SchemaTooNew

SCHEMA = Path(__file__).with_name("postgres_schema.sql")
SCHEMA_VERSION = 5
MIGRATION_LOCK = 0x6361_7067_6F00_0001  # pg_advisory_xact_lock key: "capgo", migrations

log = logging.getLogger("capgo_stats.store")


def version(conn: Any, where: str) -> int:
    """The schema version the database holds (0: none of our tables); SchemaTooNew past ours."""
    [(meta,)] = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchall()
    if not meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    found = row[0] if row else 0
    if found > SCHEMA_VERSION:  # a newer capgo-stats wrote it: we would write it wrong
        raise SchemaTooNew(
            f"{where}: this database is schema {found}, this code knows up to"
            f" {SCHEMA_VERSION}: upgrade capgo-stats (or set STATS_DATABASE_URL to another"
            " database)."
        )
    return found


def migrate(conn: Any, where: str) -> None:
    """Bring the database to SCHEMA_VERSION, inside the caller's transaction, one server at a
    time (the lock is let go when the caller's transaction ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
    found = version(conn, where)
    if found >= SCHEMA_VERSION:
        return
    log.warning("creating the capgo-stats schema %d in %s", SCHEMA_VERSION, where)
    conn.run_script(SCHEMA.read_text())
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (SCHEMA_VERSION,),
    )


def tables() -> list[str]:
    """The names of the tables the schema makes, in the order it makes them."""
    return re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA.read_text())
