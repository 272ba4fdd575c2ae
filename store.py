"""The SQLite store: the only module that speaks SQL.

One Store per app. Connections are pooled per process (opening one per request costs more than
the insert itself); every write is one BEGIN IMMEDIATE transaction, committed before we answer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from events import COLUMNS, Refusal

SCHEMA = Path(__file__).with_name("schema.sql")
SCHEMA_VERSION = 1

log = logging.getLogger("capgo_stats.store")

INSERT_EVENT = (
    f"INSERT INTO event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)
TALLY_REFUSAL = (
    "INSERT INTO refusal (day, app_id, reason, action, count) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (day, app_id, reason, action) DO UPDATE SET count = count + excluded.count"
)


class StoreUnavailable(Exception):
    """The database cannot take the write now (locked, full, read-only or missing)."""


def day_of(ms: int) -> str:
    """The UTC calendar day of an epoch-milliseconds time, as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


class Store:
    """A SQLite database file with its connection pool and queries."""

    def __init__(
        self, path: str, busy_timeout_ms: int = 5000, durable: bool = False, max_mb: int = 0
    ):
        self.path = os.path.abspath(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.durable = durable
        self.max_mb = max_mb
        self._pool: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._inode: tuple[int, int, bool] | None = None
        self._fault: str | None = None
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        """Open a connection with our pragmas; only `create` may make a new file."""
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"file:{self.path}?mode={mode}",
            uri=True,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # pooled; never used by two threads at once
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
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

    def _drop_pool(self) -> None:
        """Close every pooled connection."""
        while self._pool:
            self._pool.pop().close()

    # -- schema ------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the database from schema.sql when it is new; a no-op when it is current."""
        conn = self._connect(create=True)
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.executescript(SCHEMA.read_text())
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
            conn.executescript(SCHEMA.read_text())
        finally:
            conn.close()
        self._drop_pool()

    # -- writes ------------------------------------------------------------------------------

    def write(self, rows: list[tuple], refusals: Iterable[Refusal], now_ms: int) -> None:
        """Store events and tally refusals in one transaction; StoreUnavailable if we cannot."""
        tally: dict[tuple[str, str, str], int] = {}
        for r in refusals:
            key = (r.app_id, r.code, r.action)
            tally[key] = tally.get(key, 0) + 1
        day = day_of(now_ms)
        try:
            with self.connection(write=True) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if rows:
                        conn.executemany(INSERT_EVENT, rows)
                    if tally:
                        conn.executemany(
                            TALLY_REFUSAL, [(day, *key, n) for key, n in tally.items()]
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as e:
            self._report_fault(str(e))
            raise StoreUnavailable(str(e)) from None
        except StoreUnavailable as e:
            self._report_fault(str(e))
            raise
        if self._fault:
            self._report_recovery()

    def forget_device(self, device_ids: list[str], custom_ids: list[str]) -> int:
        """Delete every event of the devices with these ids; return how many were deleted.

        A device is matched by its device_id, or by a custom_id it sent in any of its events
        (so its events from before the app set a custom_id go too).
        """
        customs = ", ".join("?" * len(custom_ids))
        try:
            with self.connection(write=True) as conn:
                with conn:  # BEGIN ... COMMIT, or ROLLBACK on error
                    conn.execute("BEGIN IMMEDIATE")
                    devices = device_ids + [
                        row[0]
                        for row in conn.execute(
                            f"SELECT DISTINCT device_id FROM event WHERE custom_id IN ({customs})",
                            custom_ids,
                        )
                    ]
                    marks = ", ".join("?" * len(devices))
                    return conn.execute(
                        f"DELETE FROM event WHERE device_id IN ({marks})"
                        f" OR custom_id IN ({customs})",
                        devices + custom_ids,
                    ).rowcount
        except sqlite3.DatabaseError as e:
            raise StoreUnavailable(str(e)) from None

    def _report_fault(self, message: str) -> None:
        """Log a fault once, not once per request."""
        with self._lock:
            if message != self._fault:
                self._fault = message
                log.error("database cannot take writes (answering 503): %s", message)

    def _report_recovery(self) -> None:
        """Log that writes work again after a fault."""
        with self._lock:
            if self._fault:
                log.warning("database takes writes again after: %s", self._fault)
                self._fault = None

    # -- reads -------------------------------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Run a read query and return its rows as dicts."""
        with self.connection() as conn:
            return [dict(row) for row in conn.execute(sql, tuple(params))]

    def counts(self, filters: dict) -> list[dict]:
        """Event counts grouped by app and action, biggest first."""
        where, params = event_where(filters)
        return self.query(
            "SELECT app_id, action, count(*) AS count FROM event"
            f" WHERE {where} GROUP BY app_id, action ORDER BY count DESC, app_id, action",
            params,
        )


# Filter name -> SQL condition on the event table; values are always bound parameters.
EVENT_FILTERS = {
    "app_id": "app_id = ?",
    "action": "action = ?",
    "platform": "platform = ?",
    "since": "at >= ?",
    "until": "at < ?",
}


def event_where(filters: dict) -> tuple[str, list]:
    """A WHERE clause and its parameters for the given filters (None means no filter)."""
    clauses, params = ["1 = 1"], []
    for name, condition in EVENT_FILTERS.items():
        value = filters.get(name)
        if value is not None:
            clauses.append(condition)
            params.append(value)
    return " AND ".join(clauses), params
