"""Work each server process does beside its requests: the fold (STATS_FOLD_INTERVAL_S),
retention (STATS_RETENTION_DAYS) and the alert check (STATS_ALERT_WEBHOOK). Daemon threads (or
greenlets, under gevent workers): they end with the process, and never hold up a request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from capgo_stats import alerts, fold
from capgo_stats.protocol import DAY_MS, now_ms
from capgo_stats.store import Store

log = logging.getLogger("capgo_stats")


def _every(seconds: float, name: str, work: Callable[[], None]) -> threading.Event:
    """Run work() now and then every `seconds`, in a daemon thread, until the returned event is
    set; a failure is logged once per kind and tried again next time (a locked database)."""
    stop = threading.Event()

    def loop() -> None:
        last_error = None
        while not stop.is_set():
            try:
                work()
                last_error = None
            except Exception as e:  # the thread must outlive any fault
                if str(e) != last_error:
                    log.exception("%s failed; trying again in %s s", name, seconds)
                    last_error = str(e)
            stop.wait(seconds)

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop


def start_folding(store: Store, seconds: float) -> threading.Event:
    """Fold pending events every `seconds`, so reads rarely find any to fold first, then do
    the store's upkeep (SQLite: the checkpoints that POSTs leave to this job)."""

    def catch_up() -> None:
        fold.catch_up(store)
        store.upkeep()

    return _every(seconds, "fold", catch_up)


def start_retention(store: Store, days: int) -> threading.Event:
    """Prune raw events older than `days` now and then every hour, beside the requests, in one
    process at a time (a lease in the database: several servers share one PostgreSQL)."""

    def prune() -> None:
        if not store.claim("retention", now_ms(), 3600 * 1000 - 500):
            return  # another process prunes this hour
        deleted = fold.prune(store, now_ms() - days * DAY_MS)
        log.info("retention: deleted %d raw events older than %d days", deleted, days)

    return _every(3600, "retention", prune)


def start_alerts(
    store: Store, limits: alerts.Limits, url: str, secret: str, seconds: int
) -> threading.Event:
    """Check the alert limits every `seconds`, in one process at a time (a lease in the
    database); a webhook that fails or hangs only delays this check, which tries it again."""

    def check() -> None:
        now = now_ms()
        if not store.claim("alert_check", now, seconds * 1000 - 500):
            return  # another process checks this time
        fold.before_read(store)
        outcome = alerts.check(store, limits, url, secret, now)
        for line in outcome.lines:
            (log.info if line.startswith(("SENT", "CLEARED")) else log.debug)("alerts: %s", line)
        if not outcome.ok:
            log.warning("alerts: a webhook POST failed; it is tried again at the next check")

    return _every(seconds, "alerts", check)
