"""Group commit: requests that wait together share one transaction, and share its fate."""

import sqlite3
import threading
import time

import pytest

from capgo_stats import protocol
from capgo_stats.store import SQLiteStore, StoreUnavailable
from capgo_stats.web.commit import GroupCommit
from support.payloads import event

NOW = protocol.now_ms()


def row(n: int) -> tuple:
    """One valid event's row, with its own device."""
    item = event(device_id=f"device-{n}", timestamp=NOW - n)
    return protocol.validate(item, protocol.KNOWN_ACTIONS, NOW)


class Gated:
    """A store whose first write, once done, waits until the test opens the gate; it keeps
    what each write was given."""

    def __init__(self, store):
        self.store, self.batches = store, []
        self.held, self.gate = threading.Event(), threading.Event()

    def write(self, rows, refusals, now_ms):
        """Write through to the real store, holding the first writer back afterwards."""
        self.batches.append([r[protocol.COLUMNS.index("device_id")] for r in rows])
        self.store.write(rows, refusals, now_ms)
        if len(self.batches) == 1:
            self.held.set()
            assert self.gate.wait(30)


@pytest.fixture
def store(tmp_path):
    """A real SQLite store that gives up on a locked database after 50 ms."""
    store = SQLiteStore(str(tmp_path / "x.db"), busy_timeout_ms=50)
    store.ensure_schema()
    return store


def start(commit, n: int) -> tuple[threading.Thread, list]:
    """Request n writes its row through commit in a thread of its own; its outcome lands in
    the list it returns."""
    outcome = []

    def request():
        try:
            commit.write([row(n)], [], NOW)
            outcome.append("stored")
        except StoreUnavailable:
            outcome.append("503")

    thread = threading.Thread(target=request)
    thread.start()
    return thread, outcome


def queue_behind_the_first(commit, gated) -> list:
    """The first request writes and is held; three more queue meanwhile. Their outcomes."""
    first, outcome = start(commit, 0)
    assert gated.held.wait(30)
    others = [start(commit, n) for n in (1, 2, 3)]
    while commit.waiting < 3:  # each has handed its rows over and waits
        time.sleep(0.001)
    return [first, outcome], others


def stored_devices(store) -> set[str]:
    """The device ids of the stored events."""
    return {r["device_id"] for r in store.query("SELECT device_id FROM event")}


def test_requests_that_queue_during_a_write_share_the_next_transaction(store):
    gated = Gated(store)
    commit = GroupCommit(gated)
    (first, mine), others = queue_behind_the_first(commit, gated)
    gated.gate.set()
    for thread, _ in [(first, mine), *others]:
        thread.join(30)
    assert gated.batches == [["device-0"], ["device-1", "device-2", "device-3"]]
    assert mine == ["stored"] and all(outcome == ["stored"] for _, outcome in others)
    assert stored_devices(store) == {"device-0", "device-1", "device-2", "device-3"}


def test_a_failed_shared_write_fails_every_request_in_it_and_stores_none_of_them(store):
    gated = Gated(store)
    commit = GroupCommit(gated)
    (first, mine), others = queue_behind_the_first(commit, gated)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the lock: the next write fails
    gated.gate.set()
    for thread, _ in others:
        thread.join(30)
    other.execute("ROLLBACK")
    other.close()
    first.join(30)
    assert mine == ["stored"]
    assert [outcome for _, outcome in others] == [["503"]] * 3
    assert stored_devices(store) == {"device-0"}
    commit.write([row(4)], [], NOW)  # and the next write goes through
    assert stored_devices(store) == {"device-0", "device-4"}


def test_a_lone_request_writes_at_once_and_gets_the_stores_error(store):
    commit = GroupCommit(store)
    commit.write([row(1)], [], NOW)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable):
        commit.write([row(2)], [], NOW)
    other.execute("ROLLBACK")
    other.close()
    assert stored_devices(store) == {"device-1"}


def test_refusals_of_a_shared_write_are_tallied_once_each(store):
    commit = GroupCommit(store)
    refusal = protocol.Refusal("unknown_action", "no", "com.example.app", "dance")
    commit.write([], [refusal], NOW)
    commit.write([row(1)], [refusal, refusal], NOW)
    [tally] = store.query("SELECT reason, action, count FROM refusal")
    assert tally == {"reason": "unknown_action", "action": "dance", "count": 3}
