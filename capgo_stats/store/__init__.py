"""The store: the only code that speaks SQL. `open_store` picks the implementation for the
settings: PostgreSQL at STATS_DATABASE_URL when it is set, else the SQLite file at STATS_DB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capgo_stats.store.base import (
    ReadTimeout,
    SchemaTooNew,
    Store,
    StoreUnavailable,
    day_of,
    end_deadline,
    start_deadline,
)
from capgo_stats.store.postgres import PostgresStore
from capgo_stats.store.sqlite import SQLiteStore

__all__ = [
    "PostgresStore",
    "ReadTimeout",
    "SQLiteStore",
    "SchemaTooNew",
    "Store",
    "StoreUnavailable",
    "day_of",
    "end_deadline",
    "open_store",
    "start_deadline",
]


def open_store(settings: Mapping[str, Any]) -> Store:
    """The store the settings name, its schema created or migrated."""
    store: Store
    if settings["STATS_DATABASE_URL"]:
        store = PostgresStore(
            settings["STATS_DATABASE_URL"],
            pool_size=settings["STATS_PG_POOL_SIZE"],
            wait_ms=settings["STATS_BUSY_TIMEOUT_MS"],
            durable=settings["STATS_DURABLE"],
        )
    else:
        store = SQLiteStore(
            settings["STATS_DB"],
            busy_timeout_ms=settings["STATS_BUSY_TIMEOUT_MS"],
            durable=settings["STATS_DURABLE"],
            max_mb=settings["STATS_MAX_DB_MB"],
            background_checkpoints=bool(settings["STATS_FOLD_INTERVAL_S"]),
        )
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store
