"""Work each server process does beside its requests: retention (STATS_RETENTION_DAYS)."""

from __future__ import annotations

import logging
import threading
import time

from capgo_stats.protocol import DAY_MS, now_ms
from capgo_stats.store import Store

log = logging.getLogger("capgo_stats")


def start_retention(store: Store, days: int) -> None:
    """Prune raw events older than `days` now and then every hour, beside the requests."""

    def prune_forever() -> None:
        while True:
            try:
                deleted = store.prune(now_ms() - days * DAY_MS)
                log.info("retention: deleted %d raw events older than %d days", deleted, days)
            except Exception:  # a locked or missing database: try again next hour
                log.exception("retention: prune failed")
            time.sleep(3600)

    threading.Thread(target=prune_forever, name="retention", daemon=True).start()
