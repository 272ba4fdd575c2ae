"""When the fold runs: before a read that finds events not folded yet (so a read sees every
event answered 200), in the background of each server process, and on demand (`flask fold`,
`flask rebuild-rollups`). What it does is counting.fold; the store writes it.

Several processes may fold at once: each fold is one write transaction that reads the position
inside it, so the database lets one fold at a time and none folds an event twice.
"""

from __future__ import annotations

import logging
import time

from capgo_stats import counting
from capgo_stats.store import Store, StoreUnavailable

log = logging.getLogger("capgo_stats.fold")

BATCH = 5000  # events per fold transaction: ~50-150 ms of holding the write lock here
# Between two full batches the fold lets go of the lock this long: longer than a waiting writer
# polls (5 ms at most, store/sqlite.py), so ingest gets its turn however large the backlog.
PAUSE_S = 0.006


def catch_up(store: Store, batch: int = BATCH) -> int:
    """Fold every pending event, a batch per transaction; return how many were folded."""
    folded = 0
    while n := store.fold(counting.fold, batch):
        folded += n
        if n == batch:
            time.sleep(PAUSE_S)
    return folded


def before_read(store: Store) -> int:
    """Fold what is pending, so the read counts it, and return how many events were pending; a
    store that cannot write now is read as it is (its figures miss the pending events until it
    can), rather than not at all."""
    pending = 0
    try:
        pending = store.pending()
        if pending:
            catch_up(store)
    except StoreUnavailable as e:
        log.warning("read without folding the pending events: %s", e)
    return pending


def forget_device(store: Store, device_ids: list[str], custom_ids: list[str]) -> int:
    """Fold what is pending (so the rollups keep it), then delete the devices' events."""
    catch_up(store)
    return store.forget_device(device_ids, custom_ids, counting.unfold_devices)


def prune(store: Store, before_ms: int) -> int:
    """Fold what is pending, then delete raw events older than before_ms (rollups keep them)."""
    catch_up(store)
    return store.prune(before_ms)


def rebuild(store: Store) -> tuple[int, int]:
    """Recompute the rollups of the period still held as raw events: (events, pruned_before)."""
    catch_up(store)
    return store.rebuild(counting.fold, BATCH)
