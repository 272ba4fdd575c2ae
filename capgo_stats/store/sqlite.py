"""The SQLite store: the one implementation of store.base.Store today.

One store per app. Connections are pooled per process (opening one per request costs more than
the insert itself); every write is one BEGIN IMMEDIATE transaction, committed before we answer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import capgo_stats.store.sqlite_migrations as migrations
from capgo_stats.filters import Filters
from capgo_stats.protocol import COLUMNS, DAY_MS, HOUR_MS, Refusal
from capgo_stats.store.base import Store, StoreUnavailable, day_of
from capgo_stats.store.segments import (
    TIME_COLUMN,
    UNIT_MS,
    failure_segments,
    time_segments,
    uninstall_segments,
)
from capgo_stats.store.sql import (
    FAILURE,
    OLD_BUNDLE,
    device_where,
    event_where,
    marks,
    segment_where,
)

log = logging.getLogger("capgo_stats.store")
T = TypeVar("T")

INSERT_EVENT = (
    f"INSERT INTO event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)
TALLY_REFUSAL = (
    "INSERT INTO refusal (day, app_id, reason, action, count) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (day, app_id, reason, action) DO UPDATE SET count = count + excluded.count"
)


class SQLiteStore(Store):
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
                migrations.migrate(conn, self.path)
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

    def write(self, rows: list[tuple], refusals: Iterable[Refusal], now_ms: int) -> None:
        """Store events and tally refusals in one transaction; StoreUnavailable if we cannot."""
        tally: dict[tuple[str, str, str], int] = {}
        for r in refusals:
            key = (r.app_id, r.error, r.action)
            tally[key] = tally.get(key, 0) + 1
        try:
            with self.transaction() as conn:
                if rows:
                    conn.executemany(INSERT_EVENT, rows)
                if tally:
                    day = day_of(now_ms)
                    conn.executemany(TALLY_REFUSAL, [(day, *key, n) for key, n in tally.items()])
        except sqlite3.DatabaseError as e:
            self._report_fault(str(e))
            raise StoreUnavailable(str(e)) from None
        except StoreUnavailable as e:
            self._report_fault(str(e))
            raise
        if self._fault:
            self._report_recovery()

    def forget_device(self, device_ids: list[str], custom_ids: list[str]) -> int:
        """Delete every event and per-device row of these devices; return how many events.

        A device is matched by its device_id, or by a custom_id it sent in any of its events
        (so its events from before the app set a custom_id go too). The rollups keep their
        counts: they hold no device ids.
        """
        customs = ", ".join("?" * len(custom_ids))
        try:
            with self.transaction() as conn:
                devices = device_ids + [
                    row[0]
                    for row in conn.execute(
                        f"SELECT DISTINCT device_id FROM event WHERE custom_id IN ({customs})",
                        custom_ids,
                    )
                ]
                marks = ", ".join("?" * len(devices))
                deleted = conn.execute(
                    f"DELETE FROM event WHERE device_id IN ({marks}) OR custom_id IN ({customs})",
                    devices + custom_ids,
                ).rowcount
                for table in ("device", "device_day"):
                    conn.execute(f"DELETE FROM {table} WHERE device_id IN ({marks})", devices)
        except sqlite3.DatabaseError as e:
            raise StoreUnavailable(str(e)) from None
        return deleted

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
            return self._wait_for_lock(
                lambda: [dict(row) for row in conn.execute(sql, tuple(params))]
            )

    def counts(self, filters: Filters) -> list[dict]:
        """Event counts grouped by app and action, biggest first (from the rollups)."""
        totals: dict[tuple[str, str], int] = {}
        for table, lo, hi in time_segments(filters.since, filters.until):
            where, params = segment_where(table, filters, lo, hi)
            count = "count(*)" if table == "event" else "sum(count)"
            for row in self.query(
                f"SELECT app_id, action, {count} AS n FROM {table} WHERE {where}"
                " GROUP BY app_id, action",
                params,
            ):
                key = (row["app_id"], row["action"])
                totals[key] = totals.get(key, 0) + row["n"]
        ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"app_id": a, "action": b, "count": n} for (a, b), n in ordered]

    # -- insights: the reads behind reports.py ---------------------------------------------
    # Each reads rollups over the pieces time_segments() gives; raw events only for the ragged
    # edges of a range and for the drill-down lists (events_page).

    def totals(self, filters: Filters, prod_only: bool) -> list[dict]:
        """Events per (bundle, action) over [since, until), with their first and last time.

        `first`/`last` are epoch ms: the start of the first and last day or hour that held such
        an event (exact where a ragged edge came from raw events).
        """
        found: dict[tuple[str, str], dict] = {}
        for table, lo, hi in time_segments(filters.since, filters.until):
            where, params = segment_where(table, filters, lo, hi, prod_only)
            column, unit = TIME_COLUMN[table], UNIT_MS[table]
            count = "count(*)" if table == "event" else "sum(count)"
            for row in self.query(
                f"SELECT bundle, action, {count} AS n, min({column}) AS lo, max({column}) AS hi"
                f" FROM {table} WHERE {where} GROUP BY bundle, action",
                params,
            ):
                key = (row["bundle"], row["action"])
                first, last = row["lo"] * unit, row["hi"] * unit
                if key in found:
                    seen = found[key]
                    seen["n"] += row["n"]
                    seen["first"], seen["last"] = min(seen["first"], first), max(seen["last"], last)
                else:
                    found[key] = {"bundle": key[0], "action": key[1], "n": row["n"]}
                    found[key].update(first=first, last=last)
        return list(found.values())

    def failure_totals(self, filters: Filters, prod_only: bool) -> list[dict]:
        """Failure events (action ending in _fail) over [since, until), by every breakdown.

        Grouped by action, bundle, platform, plugin_version and version_os ('' when not sent),
        so reports.py can leave out legacy download_fail before adding up.
        """
        found: dict[tuple, int] = {}
        for table, lo, hi in failure_segments(filters.since, filters.until):
            where, params = segment_where(table, filters, lo, hi, prod_only)
            if table == "event":
                where += f" AND {FAILURE}"
            count = "count(*)" if table == "event" else "sum(count)"
            for row in self._rows(
                f"SELECT action, bundle, platform, coalesce(plugin_version, ''),"
                f" coalesce(version_os, ''), {count} FROM {table} WHERE {where}"
                " GROUP BY 1, 2, 3, 4, 5",
                params,
            ):
                found[row[:5]] = found.get(row[:5], 0) + row[5]
        names = ("action", "bundle", "platform", "plugin_version", "version_os")
        return [{**dict(zip(names, key, strict=True)), "n": n} for key, n in found.items()]

    def uninstall_totals(self, filters: Filters, prod_only: bool) -> dict[str, int]:
        """Uninstalls per replaced bundle over [since, until) (uninstall_day, raw edges)."""
        found: dict[str, int] = {}
        for table, lo, hi in uninstall_segments(filters.since, filters.until):
            where, params = segment_where(table, filters, lo, hi, prod_only)
            if table == "event":
                sql = (
                    f"SELECT {OLD_BUNDLE} AS bundle, count(*) AS n FROM event WHERE {where}"
                    f" AND action = 'set' AND {OLD_BUNDLE} <> '' AND {OLD_BUNDLE} <> bundle"
                    " GROUP BY 1"
                )
            else:
                sql = f"SELECT bundle, sum(count) AS n FROM {table} WHERE {where} GROUP BY 1"
            for row in self.query(sql, params):
                found[row["bundle"]] = found.get(row["bundle"], 0) + row["n"]
        return found

    def device_bundles(self, filters: Filters, prod_only: bool) -> dict[str | None, int]:
        """How many devices currently run each bundle (None: no bundle reported yet)."""
        where, params = device_where(filters, prod_only)
        rows = self._rows(
            f"SELECT nullif(bundle, ''), sum(devices) FROM device_bundle WHERE {where}"
            " GROUP BY bundle HAVING sum(devices) > 0",
            params,
        )
        return dict(rows)

    def active_since(self, filters: Filters, prod_only: bool, since: list[int]) -> list[int]:
        """For each hour in `since` (ms, whole hours), how many devices were last seen in it
        or later."""
        where, params = device_where(filters, prod_only)
        hours = [start // HOUR_MS for start in since]
        sums = ", ".join("coalesce(sum(iif(hour >= ?, devices, 0)), 0)" for _ in hours)
        [row] = self._rows(
            f"SELECT {sums} FROM device_hour WHERE {where} AND hour >= ?",
            [*hours, *params, min(hours, default=0)],
        )
        return list(row)

    def newest_event(self, app_id: str) -> int | None:
        """The event time of the app's newest event, or None when it has none.

        One probe of the (app_id, at) index: the newest raw event outlives any prune. Only when
        every raw event is gone does it fall back to the newest hour in rollup_hour.
        """
        [(newest,)] = self._rows("SELECT max(at) FROM event WHERE app_id = ?", (app_id,))
        if newest is None:
            [(hour,)] = self._rows("SELECT max(hour) FROM rollup_hour WHERE app_id = ?", (app_id,))
            newest = None if hour is None else hour * HOUR_MS
        return newest

    def app_ids(self) -> list[str]:
        """Every app with at least one stored event, hopping along the device index."""
        apps: list[str] = []
        while True:
            after = apps[-1] if apps else ""
            row = self._rows(
                "SELECT app_id FROM device WHERE app_id > ? ORDER BY app_id LIMIT 1", (after,)
            )
            if not row:
                return apps
            apps.append(row[0][0])

    def series(
        self, filters: Filters, interval: str, lo: int, hi: int, prod_only: bool, actions: list[str]
    ) -> list[dict]:
        """Counts per (bucket, action, bundle) of whole days or hours lo..hi-1 of some actions."""
        table = {"day": "rollup_day", "hour": "rollup_hour"}[interval]
        where, params = segment_where(table, filters, lo, hi, prod_only)
        return self.query(
            f"SELECT {TIME_COLUMN[table]} AS bucket, action, bundle, sum(count) AS n"
            f" FROM {table} WHERE {where} AND action IN ({marks(actions)}) GROUP BY 1, 2, 3",
            [*params, *actions],
        )

    def failure_series(
        self, filters: Filters, interval: str, lo: int, hi: int, prod_only: bool
    ) -> list[dict]:
        """Failure counts per (bucket, action, platform, plugin_version), days or hours lo..hi-1."""
        table = {"day": "failure_day", "hour": "failure_hour"}[interval]
        where, params = segment_where(table, filters, lo, hi, prod_only)
        return self.query(
            f"SELECT {TIME_COLUMN[table]} AS bucket, action, platform, plugin_version,"
            f" sum(count) AS n FROM {table} WHERE {where} GROUP BY 1, 2, 3, 4",
            params,
        )

    def active_series(self, app_id: str, lo: int, hi: int, prod_only: bool) -> dict[int, int]:
        """Distinct devices per day lo..hi-1 (day numbers) from active_day."""
        prod = " AND prod = 1" if prod_only else ""
        rows = self._rows(
            "SELECT day, sum(devices) FROM active_day WHERE app_id = ? AND day >= ? AND day < ?"
            f"{prod} GROUP BY day",
            (app_id, lo, hi),
        )
        return dict(rows)

    def refusals(self, filters: Filters, app_ids: list[str] | None) -> list[dict]:
        """Refused-event tallies per (day, app, reason, action), newest day first.

        `since`/`until` are epoch ms; a day is kept when any part of it is in the range.
        """
        clauses, params = ["1 = 1"], []
        if app_ids is not None:
            clauses.append(f"app_id IN ({marks(app_ids)})")
            params += app_ids
        if filters.action is not None:
            clauses.append("action = ?")
            params.append(filters.action)
        if filters.since is not None:
            clauses.append("day >= ?")
            params.append(day_of(filters.since))
        if filters.until is not None:
            clauses.append("day <= ?")
            params.append(day_of(filters.until - 1))
        return self.query(
            f"SELECT day, app_id, reason, action, count FROM refusal WHERE {' AND '.join(clauses)}"
            " ORDER BY day DESC, count DESC, app_id, reason, action",
            params,
        )

    def events_page(
        self, filters: Filters, limit: int, after: tuple[int, int] | None
    ) -> list[dict]:
        """Raw events matching `filters`, newest first (by at, then id), after a cursor.

        Without an app, device or custom id to follow an index, each app is read on its own
        index and the pages are merged, so the list never sorts the whole table.
        """
        if any(getattr(filters, k) is not None for k in ("app_id", "device_id", "custom_id")):
            return self._events_page(filters, limit, after)
        merged = []
        for app_id in self.app_ids():
            merged += self._events_page(filters.but(app_id=app_id), limit, after)
        merged.sort(key=lambda row: (row["at"], row["id"]), reverse=True)
        return merged[:limit]

    def _events_page(
        self, filters: Filters, limit: int, after: tuple[int, int] | None
    ) -> list[dict]:
        """One indexed page of raw events (see events_page)."""
        where, params = event_where(filters)
        if after is not None:
            # at <= ? lets the (…, at) index bound the scan; the OR breaks ties by id.
            where += " AND at <= ? AND (at < ? OR id < ?)"
            params += [after[0], after[0], after[1]]
        return self.query(
            f"SELECT id, {', '.join(COLUMNS)}, bundle FROM event WHERE {where}"
            " ORDER BY at DESC, id DESC LIMIT ?",
            [*params, limit],
        )

    def device_states(self, filters: Filters) -> list[dict]:
        """The device table's rows (latest state per app) for a device_id or a custom_id."""
        if filters.device_id is not None:
            ids = [filters.device_id]
        else:
            ids = [
                row[0]
                for row in self._rows(
                    "SELECT DISTINCT device_id FROM event WHERE custom_id = ? LIMIT 100",
                    (filters.custom_id,),
                )
            ]
        if not ids:
            return []
        return self.query(
            "SELECT app_id, device_id, first_seen, last_seen, platform, prod, bundle, bundle_at"
            f" FROM device WHERE device_id IN ({marks(ids)}) ORDER BY last_seen DESC",
            ids,
        )

    def device_page(
        self, filters: Filters, prod: bool | None, limit: int, after: str | None
    ) -> list[dict]:
        """One app's devices (their latest state) by device id, after a device id.

        filters: app_id (required), platform, since/until on last_seen, and version: the bundle
        the device runs now ("unknown" also takes devices that never reported one).
        """
        clauses, params = ["app_id = ?"], [filters.app_id]
        if filters.platform is not None:
            clauses.append("platform = ?")
            params.append(filters.platform)
        for name, op in (("since", ">="), ("until", "<")):
            if getattr(filters, name) is not None:
                clauses.append(f"last_seen {op} ?")
                params.append(getattr(filters, name))
        if filters.version == "unknown":
            clauses.append("(bundle IS NULL OR bundle IN ('', 'unknown'))")
        elif filters.version is not None:
            clauses.append("bundle = ?")
            params.append(filters.version)
        if prod is not None:
            clauses.append("prod = ?")
            params.append(int(prod))
        if after is not None:
            clauses.append("device_id > ?")
            params.append(after)
        return self.query(
            "SELECT app_id, device_id, first_seen, last_seen, platform, prod, bundle, bundle_at"
            f" FROM device WHERE {' AND '.join(clauses)} ORDER BY device_id LIMIT ?",
            [*params, limit],
        )

    # -- example database --------------------------------------------------------------------

    def seal(self) -> None:
        """Leave the file in rollback-journal mode and compacted, to ship it (no -wal file)."""
        self._drop_pool()
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("VACUUM")
        finally:
            conn.close()

    # -- retention ---------------------------------------------------------------------------

    def prune(self, before_ms: int, chunk: int = 5000) -> int:
        """Delete raw events older than before_ms, a chunk per transaction; rollups stay."""
        deleted = 0
        for (app_id,) in self._rows("SELECT DISTINCT app_id FROM device"):
            while True:
                n = self._execute_write(
                    "DELETE FROM event WHERE id IN (SELECT id FROM event"
                    " WHERE app_id = ? AND at < ? LIMIT ?)",
                    (app_id, before_ms, chunk),
                )
                deleted += n
                if n < chunk:
                    break
                # A turn for the requests: under gunicorn's gevent workers this job shares the
                # worker's event loop with them (gunicorn.conf.py), and 100,000 deletions held
                # every request of the worker for 3 s, longer than `timeout` for a million.
                # sleep(0) would not do: gevent runs no socket I/O for it.
                time.sleep(0.001)
        # device_day only stops a device being counted twice in a day; a late event can still
        # arrive for any day inside the plausibility window, so keep those days.
        oldest_day = min(before_ms, int(time.time() * 1000) - DEVICE_DAY_KEEP_MS) // DAY_MS
        self._execute_write("DELETE FROM device_day WHERE day < ?", (oldest_day,))
        # Counts that devices moved out of stay behind at zero: nothing reads them.
        self._execute_write("DELETE FROM device_bundle WHERE devices = 0")
        self._execute_write("DELETE FROM device_hour WHERE devices = 0")
        return deleted

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Run a read query and return plain tuples."""
        with self.connection() as conn:
            return self._wait_for_lock(
                lambda: [tuple(row) for row in conn.execute(sql, tuple(params))]
            )

    def _execute_write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one write statement in its own transaction; return the rows it changed."""
        with self.transaction() as conn:
            return conn.execute(sql, tuple(params)).rowcount

    # -- export, metrics and health (the ops routes and commands) -----------------------------

    def iter_events(
        self, filters: Filters, columns: Sequence[str], batch_size: int = 1000
    ) -> Iterator[list[tuple]]:
        """Yield the matching events by app, then oldest first, batch_size rows at a time.

        Each app's events are read in the order of the (app_id, at) index, so nothing is sorted
        and memory stays flat. One read transaction: a snapshot, held (with its connection)
        until the last batch is taken or the generator is closed.
        """
        unknown = set(columns) - EVENT_COLUMNS
        if unknown:
            raise ValueError(f"not event columns: {sorted(unknown)}")
        select = f"SELECT {', '.join(columns)} FROM event WHERE "
        with self.connection() as conn:
            conn.execute("BEGIN")
            # The first read takes the snapshot (and may have to wait); later ones never wait.
            apps = self._wait_for_lock(lambda: _app_ids(conn))
            if filters.app_id:
                apps = [filters.app_id]
            cursor = conn.cursor()
            cursor.row_factory = None  # plain tuples: the cheapest rows to format
            for app_id in apps:
                where, params = segment_where(
                    "event",
                    filters.but(app_id=app_id),
                    filters.since,
                    filters.until,
                )
                cursor.execute(select + where + " ORDER BY at, id", params)
                while batch := cursor.fetchmany(batch_size):
                    yield batch
            conn.execute("COMMIT")

    def metrics(self) -> dict[str, Any]:
        """The numbers of GET /metrics, from the rollups (docs/api.md defines them)."""

        def read(conn: sqlite3.Connection) -> tuple[list, list, list]:
            conn.execute("BEGIN")  # one snapshot for the three reads
            try:
                return (
                    conn.execute(
                        "SELECT app_id, action, sum(count) FROM rollup_day"
                        " GROUP BY app_id, action ORDER BY app_id, action"
                    ).fetchall(),
                    conn.execute(
                        "SELECT reason, sum(count) FROM refusal GROUP BY reason ORDER BY reason"
                    ).fetchall(),
                    conn.execute(
                        "SELECT app_id, max(last_seen) FROM device GROUP BY app_id ORDER BY app_id"
                    ).fetchall(),
                )
            finally:
                conn.execute("COMMIT")

        with self.connection() as conn:
            events, refused, last = self._wait_for_lock(lambda: read(conn))
        return {
            "events": [tuple(row) for row in events],
            "refused": [tuple(row) for row in refused],
            "last_event_ms": [tuple(row) for row in last],
            "size_bytes": self.size_bytes(),
        }

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
        try:
            with self.connection() as conn:
                # Waits for another writer up to the busy timeout; an error closes the
                # connection, so no lock is kept.
                self._wait_for_lock(lambda: conn.execute("BEGIN IMMEDIATE"))
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute(f"PRAGMA user_version = {version}")
                conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as e:
            self._report_fault(str(e))
            raise StoreUnavailable(str(e)) from None
        except StoreUnavailable as e:
            self._report_fault(str(e))
            raise
        return version


# Every column of the event table, generated ones included.
EVENT_COLUMNS = frozenset(("id", *COLUMNS, "bundle"))


def _app_ids(conn: sqlite3.Connection) -> list[str]:
    """Every app_id in the event table, one index seek per app (a loose index scan)."""
    return [
        app_id
        for (app_id,) in conn.execute(
            "WITH RECURSIVE app(id) AS (SELECT min(app_id) FROM event UNION ALL"
            " SELECT (SELECT min(app_id) FROM event WHERE app_id > app.id) FROM app"
            " WHERE app.id IS NOT NULL) SELECT id FROM app WHERE id IS NOT NULL"
        )
    ]


def _is_busy(e: sqlite3.OperationalError) -> bool:
    """True for "database is locked" / "database is busy": another connection is writing."""
    message = str(e)
    return "locked" in message or "busy" in message


DEVICE_DAY_KEEP_MS = 367 * DAY_MS  # events.PLAUSIBLE_PAST_MS, and a day to spare
