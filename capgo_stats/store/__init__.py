"""The store: the only code that speaks SQL. `open_store` picks the implementation for the
settings (SQLite at STATS_DB today)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capgo_stats.store.base import Store, StoreUnavailable, day_of
from capgo_stats.store.sqlite import SQLiteStore

__all__ = ["Store", "StoreUnavailable", "SQLiteStore", "day_of", "open_store"]


def open_store(settings: Mapping[str, Any]) -> Store:
    """The store the settings name, its schema created or migrated."""
    store = SQLiteStore(
        settings["STATS_DB"],
        busy_timeout_ms=settings["STATS_BUSY_TIMEOUT_MS"],
        durable=settings["STATS_DURABLE"],
        max_mb=settings["STATS_MAX_DB_MB"],
    )
    store.ensure_schema()
    return store
