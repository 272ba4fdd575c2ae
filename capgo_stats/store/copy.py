"""`flask copy-db`: a SQLite database copied into an empty PostgreSQL one, history and all.

Every table is copied as it is (raw events with their ids, rollups, device states, refusal
tallies, alert states), with PostgreSQL's COPY, in one transaction on the target: a copy that
fails leaves the target empty. The events SQLite had not folded yet go into the fold queue, so
PostgreSQL folds them once. The source is read in one snapshot and never written.
"""

from __future__ import annotations

from collections.abc import Callable

import capgo_stats.store.fold_sql as folding
import capgo_stats.store.postgres_migrations as migrations
from capgo_stats.store.postgres import PostgresStore
from capgo_stats.store.sqlite import SQLiteStore

# meta rows that belong to one database, not to the data: PostgreSQL keeps its own.
OWN_META = ("fold_position", "fold_epoch", "schema_version")


class CopyRefused(Exception):
    """The target cannot be copied into (not empty, or the copy does not add up)."""


def copy_sqlite_to_postgres(
    source: SQLiteStore, target: PostgresStore, progress: Callable[[str, int], None]
) -> dict[str, int]:
    """Copy every table of `source` into the empty `target`; return the rows per table.

    `progress(table, rows)` is called after each table. Text values holding a NUL character,
    which PostgreSQL cannot store (and ingest refuses since), lose it; the count of such
    values is returned under "(values without NUL)".
    """
    if not target.is_empty():
        raise CopyRefused(
            f"{target.path} already holds capgo-stats data: copy into an empty database"
            " (CREATE DATABASE ...), so that nothing is counted twice."
        )
    target.ensure_schema()
    copied: dict[str, int] = {}
    cleaned = 0
    with (
        source.connection() as sconn,
        source.snapshot(sconn),
        target.transaction() as tconn,
    ):
        for table in migrations.tables():
            if table in ("meta", "fold_queue"):
                continue
            columns = [
                name
                for (name,) in tconn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
                    " AND table_schema = current_schema() AND is_generated = 'NEVER'"
                    " ORDER BY ordinal_position",
                    (table,),
                )
            ]
            listed = ", ".join(columns)
            n = 0
            with tconn.raw.cursor().copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
                for row in source.stream(sconn, f"SELECT {listed} FROM {table}", []):
                    if any(isinstance(v, str) and "\x00" in v for v in row):
                        row, dropped = _without_nul(row)
                        cleaned += dropped
                    copy.write_row(row)
                    n += 1
            copied[table] = n
            progress(table, n)
        for key, value in sconn.execute("SELECT key, value FROM meta", ()).fetchall():
            if key not in OWN_META:
                tconn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        position = folding.position(sconn)
        pending = tconn.execute(
            "INSERT INTO fold_queue (id) SELECT id FROM event WHERE id > ?", (position,)
        ).rowcount
        copied["(pending events)"] = pending
        tconn.execute(
            "SELECT setval(pg_get_serial_sequence('event', 'id'),"
            " (SELECT coalesce(max(id), 0) + 1 FROM event), false)"
        )
        _check(sconn, tconn, copied)
    copied["(values without NUL)"] = cleaned
    return copied


def _without_nul(row: tuple) -> tuple[tuple, int]:
    """The row with NUL characters taken out of its text values, and how many values had one."""
    dropped = sum(1 for v in row if isinstance(v, str) and "\x00" in v)
    return tuple(v.replace("\x00", "") if isinstance(v, str) else v for v in row), dropped


def _check(sconn: object, tconn: object, copied: dict[str, int]) -> None:
    """Refuse (rolling the copy back) unless every table holds as many rows on both sides."""
    for table, n in copied.items():
        if table.startswith("("):
            continue
        [(on_source,)] = sconn.execute(f"SELECT count(*) FROM {table}", ()).fetchall()
        [(on_target,)] = tconn.execute(f"SELECT count(*) FROM {table}").fetchall()
        if not on_source == on_target == n:
            raise CopyRefused(
                f"{table}: {on_source} rows in SQLite, {on_target} copied; nothing was kept."
            )
