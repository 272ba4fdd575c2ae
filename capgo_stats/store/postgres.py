"""The PostgreSQL store (STATS_DATABASE_URL): one database shared by any number of servers.

Connections come from a psycopg_pool pool per process, opened on first use (gunicorn forks its
workers after loading the app). Every write is one transaction, committed before we answer. A
database that cannot be reached within the pool's wait is StoreUnavailable (a 503, the plugin
keeps its events); broken connections are dropped by the pool and new ones made, so a server
recovers without a restart.

Several servers write at once, so the fold cannot keep a position in the id order (PostgreSQL
hands out ids before commit: a lower id may commit later). Ingest puts each stored event's id
in fold_queue in the same transaction; a fold takes an advisory lock (one folder at a time
across every server), deletes the ids it folds from the queue and writes their deltas in one
transaction. An event is folded once, after its commit, whatever the order of commits.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from typing import Any

import psycopg
import psycopg.adapt
import psycopg.errors
import psycopg_pool
from psycopg.pq import TransactionStatus

import capgo_stats.store.postgres_migrations as migrations
from capgo_stats.counting import FOLD_COLUMNS
from capgo_stats.protocol import COLUMNS
from capgo_stats.store.base import ReadTimeout, StoreUnavailable
from capgo_stats.store.sql_store import SQLStore

FETCH_BYTES = 1024 * 1024  # text an export's fetch from a server-side cursor aims at
FOLD_LOCK = 0x6361_7067_6F00_0002  # pg_advisory_xact_lock key: "capgo", the fold
# The event columns' types, for the arrays one INSERT ... SELECT FROM unnest(...) takes.
INTEGERS = {"at", "received_at", "device_ts", "is_emulator", "is_prod", "fingerprint"}
INSERT_EVENTS = (
    f"WITH stored AS (INSERT INTO event ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join("?::bigint[]" if name in INTEGERS else "?::text[]" for name in COLUMNS)
    + ") ON CONFLICT DO NOTHING RETURNING id) INSERT INTO fold_queue (id) SELECT id FROM stored"
)


@lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    """The shared queries' `?` marks as psycopg's %s (and a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Cursor:
    """A psycopg cursor that takes `?` marks; its rows are tuples."""

    __slots__ = ("raw", "row_factory")

    def __init__(self, raw: psycopg.Cursor):
        self.raw = raw
        self.row_factory = None  # fold_sql.plain() sets it; psycopg rows are tuples already

    def execute(self, sql: str, params: Iterable[Any] = ()) -> psycopg.Cursor:
        """Run a query; the psycopg cursor is what iterates its rows."""
        return self.raw.execute(_pg(sql), tuple(params))


class _Conn:
    """A psycopg connection behind the sqlite3-like calls the shared queries make."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Iterable[Any] = ()) -> psycopg.Cursor:
        """Run one statement with `?` marks."""
        return self.raw.execute(_pg(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> psycopg.Cursor:
        """Run one statement for each row of parameters (psycopg pipelines them)."""
        cursor = self.raw.cursor()
        cursor.executemany(_pg(sql), list(rows))
        return cursor

    def cursor(self) -> _Cursor:
        """A cursor that takes `?` marks."""
        return _Cursor(self.raw.cursor())

    def run_script(self, script: str) -> None:
        """Run a SQL script (many statements, no parameters) inside the current transaction."""
        self.raw.execute(script)


class _IntLoader(psycopg.adapt.Loader):
    """numeric as int, as SQLite gives it: sum() of a BIGINT column is numeric in PostgreSQL,
    and every sum we take is whole (a fraction, should one come, is a float)."""

    def load(self, data: Any) -> int | float:
        """The number, as an int when whole."""
        text = bytes(data)
        return float(text) if b"." in text else int(text)


def _configure(conn: psycopg.Connection) -> None:
    """Set up each new connection of the pool."""
    conn.adapters.register_loader("numeric", _IntLoader)


def redacted(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    host, port, name = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{':' + str(port) if port else ''}/{name}"


class PostgresStore(SQLStore):
    """A PostgreSQL database behind a connection pool."""

    errors = (psycopg.Error,)  # psycopg_pool.PoolTimeout is a psycopg.OperationalError

    def __init__(
        self,
        url: str,
        pool_size: int = 8,
        wait_ms: int = 5000,
        statement_timeout_ms: int = 30000,
        durable: bool = False,
    ):
        super().__init__()
        self.url = url
        self.path = redacted(url)
        self.pool_size = pool_size
        self.wait_ms = wait_ms
        self.options = f"-c statement_timeout={statement_timeout_ms}"
        if durable:  # STATS_DURABLE: whatever the server's default, a 200 is on disk, synced
            self.options += " -c synchronous_commit=on"
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._pid = os.getpid()
        self._pool_lock = threading.Lock()
        self._cursor_names = itertools.count()

    # -- connections -------------------------------------------------------------------------

    def _open_pool(self) -> psycopg_pool.ConnectionPool:
        """This process's pool, opened on first use (and again in a forked child)."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._pool_lock:
            if self._pool is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._pool = psycopg_pool.ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.wait_ms / 1000,  # waiting longer than this for a connection: 503
                    kwargs={
                        "autocommit": True,  # transactions are ours: transaction(), snapshot()
                        "connect_timeout": max(1, self.wait_ms // 1000),
                        "options": self.options,
                        "application_name": "capgo-stats",
                    },
                    configure=_configure,
                    name="capgo-stats",
                    open=True,
                )
            return self._pool

    def close(self) -> None:
        """Close this process's pool (its connections)."""
        with self._pool_lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None

    @contextmanager
    def connection(self, write: bool = False) -> Iterator[_Conn]:
        """Lend a pooled connection (in autocommit: no transaction until one is begun)."""
        with self._open_pool().connection() as raw:
            yield _Conn(raw)

    @contextmanager
    def transaction(self) -> Iterator[_Conn]:
        """A transaction on a pooled connection: COMMIT when the block ends, ROLLBACK when it
        raises."""
        with self.connection(write=True) as conn, conn.raw.transaction():
            yield conn

    def _writing(self, statements: int) -> AbstractContextManager[_Conn]:
        """One statement runs on its own in autocommit, a transaction of its own: one round
        trip, not three (BEGIN, the insert, COMMIT); 0.6 ms a write against 1.6 here."""
        return self.connection(write=True) if statements == 1 else self.transaction()

    @contextmanager
    def snapshot(self, conn: _Conn) -> Iterator[None]:
        """A read-only REPEATABLE READ transaction: every read in it sees one snapshot."""
        with conn.raw.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    @contextmanager
    def _bounded(self, conn: _Conn, deadline: float) -> Iterator[None]:
        """The block's statements under a statement_timeout of the time left to `deadline`,
        set for its transaction only (one begun here outside a snapshot): the server cancels a
        statement past it, which we raise as ReadTimeout. Writes keep the pool's own timeout.

        No thread needed for the event loop: under gevent, psycopg waits for the server
        cooperatively, so the other requests of the worker go on meanwhile."""
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        idle = conn.raw.info.transaction_status == TransactionStatus.IDLE
        try:
            with conn.raw.transaction() if idle else nullcontext():
                conn.execute("SELECT set_config('statement_timeout', ?, true)", (str(left_ms),))
                yield
        except psycopg.errors.QueryCanceled:
            raise ReadTimeout("the read ran past its deadline and was stopped") from None

    # -- schema ------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the schema in a new database, or check the version of an existing one."""
        try:
            with self.transaction() as conn:
                migrations.migrate(conn, self.path)
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot open the database at {self.path}: {e}") from None

    def reset(self) -> None:
        """Drop our tables and create the schema again (all data is lost)."""
        with self.transaction() as conn:
            for table in migrations.tables():
                conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
            migrations.migrate(conn, self.path)

    def is_empty(self) -> bool:
        """True when the database holds none of our tables, or ours without a row."""
        try:
            with self.connection() as conn:
                if migrations.version(conn, self.path) == 0:
                    return True
                return not any(
                    conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                    for table in migrations.tables()
                    if table != "meta"
                )
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot open the database at {self.path}: {e}") from None

    # -- the fold's bookkeeping: a queue of ids ----------------------------------------------

    def _insert_events(self, conn: _Conn, rows: list[tuple]) -> None:
        """Insert the rows in one statement; each stored one's id goes into the fold queue."""
        conn.execute(INSERT_EVENTS, [list(column) for column in zip(*rows, strict=True)])

    def _pending(self, conn: _Conn) -> int:
        """How many ids wait in the fold queue."""
        return conn.execute("SELECT count(*) FROM fold_queue").fetchone()[0]

    def _lock_fold(self, conn: _Conn) -> None:
        """An advisory lock until the transaction ends: one folder at a time across servers."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (FOLD_LOCK,))

    def _take_batch(self, conn: _Conn, limit: int) -> list[tuple]:
        """The next `limit` queued ids out of the queue, and their events."""
        ids = [
            row[0]
            for row in conn.execute(
                "DELETE FROM fold_queue WHERE id IN"
                " (SELECT id FROM fold_queue ORDER BY id LIMIT ?) RETURNING id",
                (limit,),
            )
        ]
        if not ids:
            return []
        # An id without its event (forget-device deleted it first) is simply gone.
        return conn.execute(
            f"SELECT {', '.join(FOLD_COLUMNS)} FROM event WHERE id = ANY(?) ORDER BY id", (ids,)
        ).fetchall()

    def _folded_after(self, conn: _Conn, after: int, limit: int) -> list[tuple]:
        """The next events after id `after` that are not in the fold queue."""
        return conn.execute(
            f"SELECT {', '.join(FOLD_COLUMNS)} FROM event WHERE id > ? AND {self._folded_only()}"
            " ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()

    def _folded_only(self) -> str:
        """Folded events are those whose id left the fold queue."""
        return "NOT EXISTS (SELECT 1 FROM fold_queue WHERE fold_queue.id = event.id)"

    def stream(self, conn: _Conn, sql: str, params: list) -> Iterator[tuple]:
        """The rows of a server-side cursor, closed when done, fetched FETCH_BYTES at a time:
        as many rows per round trip as fit, so a page of big rows stays small in memory."""
        size = 10  # then as many as the rows so far say fit
        with conn.raw.cursor(name=f"capgo_stats_{next(self._cursor_names)}") as cursor:
            cursor.execute(_pg(sql), tuple(params))
            while rows := cursor.fetchmany(size):
                yield from rows
                read = sum(len(value) for row in rows for value in row if isinstance(value, str))
                size = max(1, min(1000, size * FETCH_BYTES // max(read, 1)))

    # -- health ------------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes the database takes on disk (pg_database_size)."""
        [(size,)] = self._rows("SELECT pg_database_size(current_database())")
        return size

    def check_writable(self) -> int:
        """The schema version, once a connection was had and the database takes writes (not a
        read-only replica); StoreUnavailable otherwise."""
        with self.faults_reported(), self.connection() as conn:
            [(version, read_only)] = conn.execute(
                "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
                " current_setting('transaction_read_only')"
            ).fetchall()
            if read_only == "on":
                raise StoreUnavailable(f"the database at {self.path} is read-only")
        return int(version)
