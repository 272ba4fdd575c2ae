"""Work each server process does beside its requests: the fold (STATS_FOLD_INTERVAL_S) and
retention (STATS_RETENTION_DAYS). Daemon threads: they end with the process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from capgo_stats import fold
from capgo_stats.protocol import DAY_MS, now_ms
from capgo_stats.store import Store

log = logging.getLogger("capgo_stats")


def _every(seconds: float, name: str, work: Callable[[], None]) -> None:
    """Run work() now and then every `seconds`, in a daemon thread; a failure is logged once
    per kind and tried again next time (a locked or missing database)."""

    def loop() -> None:
        last_error = None
        while True:
            try:
                work()
                last_error = None
            except Exception as e:  # the thread must outlive any fault
                if str(e) != last_error:
                    log.exception("%s failed; trying again in %s s", name, seconds)
                    last_error = str(e)
            time.sleep(seconds)

    threading.Thread(target=loop, name=name, daemon=True).start()


def start_folding(store: Store, seconds: float) -> None:
    """Fold pending events every `seconds`, so reads rarely find any to fold first."""

    def catch_up() -> None:
        fold.catch_up(store)

    _every(seconds, "fold", catch_up)


def start_retention(store: Store, days: int) -> None:
    """Prune raw events older than `days` now and then every hour, beside the requests."""

    def prune() -> None:
        deleted = fold.prune(store, now_ms() - days * DAY_MS)
        log.info("retention: deleted %d raw events older than %d days", deleted, days)

    _every(3600, "retention", prune)
