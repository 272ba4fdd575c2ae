"""The SQLite store: one database file, the embedded default (STATS_DB).

One store per app. Connections are pooled per process (opening one per request costs more than
the insert itself); every write is one BEGIN IMMEDIATE transaction, committed before we answer.
SQLite lets one writer in at a time, so the fold needs no lock of its own, and gives a new
event the highest id + 1, so ids follow the order of commits: the fold keeps a position.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import capgo_stats.store.fold_sql as folding
import capgo_stats.store.sqlite_migrations as migrations
from capgo_stats import counting
from capgo_stats.counting import FOLD_COLUMNS
from capgo_stats.store.base import FoldFn, ReadTimeout, StoreUnavailable
from capgo_stats.store.sql_store import INSERT_EVENT, SQLStore, T

RESTART_TRIES_S = 0.05  # how long the upkeep tries to start the write-ahead log again


class SQLiteStore(SQLStore):
    """A SQLite database file with its connection pool."""

    errors = (sqlite3.DatabaseError,)

    def __init__(
        self,
        path: str,
        busy_timeout_ms: int = 5000,
        durable: bool = False,
        max_mb: int = 0,
        fold: FoldFn = counting.fold,
        background_checkpoints: bool = False,
    ):
        self.path = os.path.abspath(path)
        # Copying the write-ahead log into the database (and its two fsyncs) is done by the
        # background fold's upkeep, not by the commit that fills the log: that POST waited up
        # to 14 ms, and under gevent so did its whole worker (mean 640 -> 576 us a 5-event POST).
        self.background_checkpoints = background_checkpoints
        self.fold_rules = fold  # for the migrations that fill tables from the raw events
        self.busy_timeout_ms = busy_timeout_ms
        self.durable = durable
        self.max_mb = max_mb
        self._pool: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._inode: tuple[int, int, bool] | None = None
        super().__init__()

    # -- connections -------------------------------------------------------------------------

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        """Open a connection with our pragmas; only `create` may make a new file."""
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"file:{self.path}?mode={mode}",
            uri=True,
            # Lock waits are ours (see _wait_for_lock), except while creating or migrating.
            timeout=self.busy_timeout_ms / 1000 if create else 0,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # pooled; never used by two threads at once
        )
        conn.row_factory = sqlite3.Row
        # Switching a new database to WAL needs it to itself and does not wait: workers that
        # start together on a new file got "database is locked" here, so we wait for it.
        self._wait_for_lock(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        if self.background_checkpoints:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        if self.max_mb:  # a full database answers like a full disk: SQLITE_FULL
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {self.max_mb * 1024 * 1024 // page_size}")
        return conn

    def _file_id(self) -> tuple[int, int, bool]:
        """The database file's (device, inode, writable); raises OSError when it is gone."""
        st = os.stat(self.path)
        # A connection opened on a read-only file stays read-only: a change of either drops the
        # pool. (os.access sees what file modes miss for root: immutable files, read-only mounts.)
        return st.st_dev, st.st_ino, os.access(self.path, os.W_OK, effective_ids=True)

    @contextmanager
    def connection(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """Lend a pooled connection; one that saw an error is closed, not returned."""
        if self._pid != os.getpid():  # forked after connections were made: start afresh
            self._pool, self._pid = [], os.getpid()
        try:
            file_id = self._file_id()
        except OSError as e:
            self._drop_pool()
            raise StoreUnavailable(f"database file {self.path} is missing ({e.strerror})") from None
        if file_id != self._inode:  # replaced or restored: old connections point elsewhere
            self._drop_pool()
            self._inode = file_id
        if write and not file_id[2]:
            raise StoreUnavailable(f"database file {self.path} is read-only")
        try:
            conn = self._pool.pop()
        except IndexError:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self._pool.append(conn)

    def _wait_for_lock(self, attempt: Callable[[], T]) -> T:
        """Run attempt(), trying again while another connection holds the lock.

        SQLite's own busy handler sleeps at least a millisecond between tries, more than a
        whole write of ours takes, so two workers writing at once lost most of their time
        asleep. Polling from 0.1 ms up lets them take turns; the total wait is still capped
        by the busy timeout, after which the caller answers 503.
        """
        deadline, delay = None, 0.0001
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.busy_timeout_ms / 1000
                if now >= deadline:
                    raise
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.005)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on a pooled connection: BEGIN IMMEDIATE (waiting for the lock
        our way), COMMIT when the block ends, ROLLBACK when it raises."""
        with self.connection(write=True) as conn:
            self._wait_for_lock(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every pooled connection."""
        self._drop_pool()

    def _drop_pool(self) -> None:
        """Close every pooled connection."""
        while self._pool:
            self._pool.pop().close()

    # -- schema ------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the database when new, or migrate it to the current schema; once per process."""
        conn = self._connect(create=True)
        try:
            if migrations.version(conn) >= migrations.SCHEMA_VERSION:
                return
            conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it
            try:
                migrations.migrate(conn, self.path, self.fold_rules)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def reset(self) -> None:
        """Drop every table and apply schema.sql again (all data is lost)."""
        conn = self._connect(create=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            names = conn.execute(
                "SELECT type, name FROM sqlite_master"
                " WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for kind, name in names:
                conn.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
            conn.execute("PRAGMA user_version = 0")
            conn.execute("COMMIT")
            conn.executescript(migrations.SCHEMA.read_text())
        finally:
            conn.close()
        self._drop_pool()

    # -- writes ------------------------------------------------------------------------------

    @contextmanager
    def snapshot(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A deferred read transaction: the first read takes the snapshot."""
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def _retry(self, attempt: Callable[[], T]) -> T:
        """Run attempt(), waiting for another connection's lock our way."""
        return self._wait_for_lock(attempt)

    # -- reads: bounded, and off gevent's event loop -----------------------------------------

    @contextmanager
    def _bounded(self, conn: sqlite3.Connection, deadline: float) -> Iterator[None]:
        """Stop the block's statements at `deadline`: SQLite asks a progress handler every
        PROGRESS_STEPS steps of its machine, and ends the statement when it says stop."""
        stopped: list[bool] = []

        def past_deadline() -> bool:
            if time.monotonic() < deadline:
                return False
            stopped.append(True)
            return True

        conn.set_progress_handler(past_deadline, PROGRESS_STEPS)
        try:
            with _timeout_if(stopped):
                yield
        finally:
            conn.set_progress_handler(None, 0)

    def _run_read(
        self, conn: sqlite3.Connection, deadline: float | None, run: Callable[[float | None], T]
    ) -> T:
        """Under gevent (gunicorn's workers), run the read in gevent's pool of native threads.

        sqlite3 steps a statement without the GIL, but in the event loop's thread a long read
        held every request of the worker with it: POSTs beside a looping 0.7 s read of a flood
        waited 0.7 s each. From a native thread the loop goes on serving them meanwhile. The
        connection is borrowed and given back in the loop's thread, so the pool is only ever
        touched there, and only the read's thread uses the connection in between.
        """
        pool = _gevent_threadpool()
        if pool is None:
            return run(deadline)
        with self._interrupted_at(conn, deadline):
            return _in_thread(pool, lambda: run(None))

    @contextmanager
    def _interrupted_at(self, conn: sqlite3.Connection, deadline: float | None) -> Iterator[None]:
        """A timer of the event loop that interrupts the connection at `deadline`, for a read
        in another thread. Not the progress handler: each of its calls from that thread waits
        for the GIL, which the loop holds while it serves requests, and beside a stream of
        POSTs a flood read took 2.6 s with it against 1.5 s without."""
        if deadline is None:
            yield
            return
        import gevent

        stopped: list[bool] = []

        def stop() -> None:
            stopped.append(True)
            conn.interrupt()  # safe from any thread; ends the statement running, if any

        timer = gevent.get_hub().loop.timer(max(0.0, deadline - time.monotonic()))
        timer.start(stop)
        try:
            with _timeout_if(stopped):
                yield
        finally:
            timer.close()

    # -- the fold's bookkeeping: a position in the id order --------------------------------

    def _insert_events(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        """Insert the rows; their ids are past the fold's position, so the fold finds them."""
        conn.executemany(INSERT_EVENT, rows)

    def _pending(self, conn: sqlite3.Connection) -> int:
        """How many events are past the fold's position."""
        after = folding.position(conn)
        return conn.execute("SELECT count(*) FROM event WHERE id > ?", (after,)).fetchone()[0]

    def _take_batch(self, conn: sqlite3.Connection, limit: int) -> list[tuple]:
        """The next events after the position, the position moved past them."""
        rows = folding.batch_after(conn, folding.position(conn), limit)
        if rows:
            folding.set_position(conn, rows[-1][0])
        return rows

    def _folded_after(self, conn: sqlite3.Connection, after: int, limit: int) -> list[tuple]:
        """The next folded events (at or before the position) after id `after`."""
        sql = (
            f"SELECT {', '.join(FOLD_COLUMNS)} FROM event WHERE id > ? AND id <= ?"
            " ORDER BY id LIMIT ?"
        )
        return folding.plain(conn).execute(sql, (after, folding.position(conn), limit)).fetchall()

    def _folded_only(self) -> str:
        """Folded events are those at or before the position."""
        return "id <= (SELECT value FROM meta WHERE key = 'fold_position')"

    def _after_delete(self, conn: sqlite3.Connection) -> None:
        """Keep the position at or below the highest id left, and move the epoch on, so a
        fold that read the rows before this does not write what it made of them (fold).

        Every event up to the position was folded, so lowering it refolds nothing; SQLite gives
        the next event the highest id left + 1, which must be after the position to be folded.
        """
        conn.execute(
            "UPDATE meta SET value = min(value, (SELECT coalesce(max(id), 0) FROM event))"
            " WHERE key = 'fold_position'"
        )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('fold_epoch', 1)"
            " ON CONFLICT (key) DO UPDATE SET value = meta.value + 1"
        )

    def fold(self, fold: FoldFn, limit: int = 5000) -> int:
        """Fold the next `limit` events, holding the one write lock only to write the deltas.

        Working them out takes about three times as long as writing them (3.1 of 4.3 s for
        50,000 bench events, profiled), and every POST waits for that lock; so the deltas are
        made in a read snapshot, and
        written if the position and the epoch are still those the snapshot saw (no other fold,
        prune, forget-device or rebuild came between). Otherwise they are made again under
        the lock, as the other stores always do.
        """
        try:
            with self.connection() as conn, self.snapshot(conn):
                seen = self._retry(lambda: _fold_mark(conn))
                rows = folding.batch_after(conn, seen[0], limit)
                deltas = folding.fold_batch_deltas(conn, fold, rows) if rows else None
            if deltas is None:
                return 0
            with self.transaction() as conn:
                if _fold_mark(conn) != seen:
                    rows = self._take_batch(conn, limit)
                    if rows:
                        folding.fold_batch(conn, fold, rows)
                    return len(rows)
                folding.apply(conn, deltas)
                folding.set_position(conn, rows[-1][0])
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None
        return len(rows)

    def stream(self, conn: sqlite3.Connection, sql: str, params: list) -> Iterable[tuple]:
        """A plain-tuple cursor over the query: SQLite steps through it row by row."""
        return folding.plain(conn).execute(sql, params)

    # -- the background fold's upkeep: checkpoints ------------------------------------------

    def upkeep(self) -> None:
        """Copy the write-ahead log into the database beside the writers, then have it start
        again from its head, so it cannot grow for as long as POSTs keep coming.

        PASSIVE copies without waiting for anyone; but the log starts again only after a copy
        that ends with no writer between (RESTART), and with POSTs never pausing, the log grew
        27 MB a second on PASSIVE alone. RESTART is tried until it finds such a moment,
        polling as the writers do, for at most RESTART_TRIES_S (then again next round).
        """
        if not self.background_checkpoints:
            return
        with self.connection() as conn:
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                deadline = time.monotonic() + RESTART_TRIES_S
                while conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.0002)
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    raise

    # -- example database and tools ---------------------------------------------------------

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and empty it (after a bulk load)."""
        with self.connection() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def seal(self) -> None:
        """Leave the file in rollback-journal mode and compacted, to ship it (no -wal file)."""
        self._drop_pool()
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("VACUUM")
        finally:
            conn.close()

    def size_bytes(self) -> int:
        """Bytes on disk of the database file and its write-ahead log."""
        total = 0
        for path in (self.path, self.path + "-wal"):
            try:
                total += os.path.getsize(path)
            except OSError:  # no WAL file right after a checkpoint on close
                pass
        return total

    def check_writable(self) -> int:
        """Take the write lock, write nothing, let go; the schema version, or StoreUnavailable.

        BEGIN IMMEDIATE waits up to the busy timeout for another writer; the rolled-back
        user_version write is what a read-only file refuses.
        """
        with self.faults_reported(), self.connection() as conn:
            # Waits for another writer up to the busy timeout; an error closes the
            # connection, so no lock is kept.
            self._wait_for_lock(lambda: conn.execute("BEGIN IMMEDIATE"))
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("ROLLBACK")
        return version


def _fold_mark(conn: sqlite3.Connection) -> tuple[int, int]:
    """The fold's position and epoch: both stay put unless the fold's inputs changed."""
    return tuple(
        conn.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'fold_position'),"
            " coalesce((SELECT value FROM meta WHERE key = 'fold_epoch'), 0)"
        ).fetchone()
    )


# How many steps of SQLite's virtual machine run between two looks at a read's deadline: about
# 0.6 ms of work here (33 million steps a second), so a read stops within a millisecond of it.
PROGRESS_STEPS = 20_000


@contextmanager
def _timeout_if(stopped: list[bool]) -> Iterator[None]:
    """SQLite's "interrupted" as ReadTimeout, when the deadline is what stopped the statement."""
    try:
        yield
    except sqlite3.OperationalError:
        if stopped:
            raise ReadTimeout("the read ran past its deadline and was stopped") from None
        raise


def _gevent_threadpool() -> Any:
    """gevent's pool of native threads when gevent patched this process (gunicorn's gevent
    workers do), else None (flask run, sync workers, tests, commands)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return None
    import gevent

    return gevent.get_hub().threadpool


def _in_thread(pool: Any, work: Callable[[], T]) -> T:
    """work() in one of the pool's threads, its exception raised here: gevent would also print
    the traceback of one that left the thread (a read timeout is an answer, not a crash)."""

    def caught() -> tuple[bool, Any]:
        try:
            return True, work()
        except BaseException as e:  # raised again in the caller's thread, below
            return False, e

    done, value = pool.apply(caught)
    if not done:
        raise value
    return value


def _is_busy(e: sqlite3.OperationalError) -> bool:
    """True for "database is locked" / "database is busy": another connection is writing."""
    message = str(e)
    return "locked" in message or "busy" in message
