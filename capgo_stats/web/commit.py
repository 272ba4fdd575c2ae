"""Group commit: the ingest requests of one server process that wait at the same moment share
one store.write, so one commit (the expensive part of a small write) serves them all.

A request hands its rows and refusals over and waits. If no write is running, it writes itself
(it leads); otherwise it joins the queue, and the leader of the next write takes it with every
request that queued while the current write was open. Each request returns only once the
transaction that holds its rows is committed, and a write that fails fails every request in it
(each answers 503; the transaction rolled back, so none of their rows is stored). It calls
nothing but Store.write, so it works for any store.

Under gevent (production) a write blocks the worker's event loop, so nothing could queue while
it runs: a leader first lets the worker's other ready requests run up to their write (they queue
behind it), then writes them all. With threads (`flask run`) the queue fills while the write
before runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import gevent
from gevent import monkey

from capgo_stats.protocol import Refusal
from capgo_stats.store import Store

# The longest a leader waits for the others to reach their write (a write takes about 0.1 ms).
GATHER_S = 0.001


class _Request:
    """One request's share of a write, and what became of it."""

    __slots__ = ("rows", "refusals", "now_ms", "done", "lead", "error")

    def __init__(self, rows: list[tuple], refusals: Iterable[Refusal], now_ms: int):
        self.rows, self.refusals, self.now_ms = rows, refusals, now_ms
        self.done: threading.Event | None = None  # made only when it has to wait
        self.lead = False  # it writes the next batch (it found none running, or was handed it)
        self.error: BaseException | None = None


class GroupCommit:
    """Writes to one store, sharing each transaction between the requests that wait for one."""

    def __init__(self, store: Store):
        self.store = store
        self._queue: list[_Request] = []
        self._writing = False
        self._lock = threading.Lock()
        self.writes = 0  # transactions committed or tried, for tests and the bench
        self.requests = 0  # requests they held
        self._gather = _gather_turn()
        self._coming = 0  # requests on their way to write (a hint: not locked)

    @property
    def waiting(self) -> int:
        """How many requests wait for the next write."""
        return len(self._queue)

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Count a request as on its way to write while the block runs, so that a leader under
        gevent waits for it to join, and one with nobody coming writes at once."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1

    def write(self, rows: list[tuple], refusals: Iterable[Refusal], now_ms: int) -> None:
        """Store these rows and refusals; return once committed, raise what the write raised."""
        mine = _Request(rows, refusals, now_ms)
        with self._lock:
            self._queue.append(mine)
            if self._writing:
                mine.done = threading.Event()
            else:
                self._writing = mine.lead = True
        if mine.done is not None:
            self._wait(mine)
        if mine.lead:
            self._lead(mine)
        if mine.error is not None:
            raise mine.error

    def _wait(self, mine: _Request) -> None:
        """Wait until a leader wrote this request, or handed it the next write."""
        try:
            mine.done.wait()
        except BaseException:  # killed while waiting: it must not hold up the others
            self._abandon(mine)
            raise

    def _lead(self, mine: _Request) -> None:
        """Write everything queued so far as one batch, then hand over to the next waiter."""
        try:
            if self._coming > len(self._queue):  # some are still on their way: let them in
                self._gather()
        except BaseException:  # killed before it took the queue
            self._abandon(mine)
            raise
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._write(batch)
        finally:
            self._hand_over()

    def _write(self, batch: list[_Request]) -> None:
        """One store.write for the whole batch; its outcome goes to every request in it."""
        rows = [row for request in batch for row in request.rows]
        refusals = [refusal for request in batch for refusal in request.refusals]
        self.writes += 1
        self.requests += len(batch)
        try:
            self.store.write(rows, refusals, max(request.now_ms for request in batch))
        except BaseException as e:  # every request in the transaction shares its fate
            for request in batch:
                request.error = e
        for request in batch:
            if request.done is not None:
                request.done.set()

    def _abandon(self, request: _Request) -> None:
        """Take a request that stopped waiting out of the queue; pass its turn to lead on."""
        with self._lock:
            if request in self._queue:
                self._queue.remove(request)
        if request.lead:
            self._hand_over()

    def _hand_over(self) -> None:
        """Wake the first waiting request as the next leader, or note that none is writing."""
        with self._lock:
            if not self._queue:
                self._writing = False
                return
            first = self._queue[0]
        first.lead = True
        first.done.set()


def _gather_turn() -> Callable[[], None]:
    """What a leader does before it takes the queue: under gevent, let the worker's other
    requests that are ready run up to their write first (at most GATHER_S), so they join it."""
    if not monkey.is_module_patched("socket"):
        return lambda: None  # threads: the queue fills while the write before runs
    return _let_the_others_in


def _let_the_others_in() -> None:
    """Yield until the event loop has nothing else ready, or GATHER_S has passed."""
    # gevent.idle alone waits as long as anything else runs: a CSV export never stops.
    with gevent.Timeout(GATHER_S, False):
        gevent.idle()
