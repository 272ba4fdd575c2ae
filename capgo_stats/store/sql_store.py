"""The queries every SQL store shares: written once, in SQL that SQLite and PostgreSQL both
speak, with `?` for parameters (the PostgreSQL store translates them).

A store for one database (sqlite.py, postgres.py) subclasses SQLStore and supplies what differs:
connections and transactions, the schema and its migrations, how events are inserted and how
the fold knows which events are next. Everything else, each read and write, is here once.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import capgo_stats.store.fold_sql as folding
from capgo_stats.counting import NOT_BUNDLES, Deltas
from capgo_stats.filters import Filters
from capgo_stats.protocol import COLUMNS, DAY_MS, HOUR_MS, Refusal
from capgo_stats.store.base import (
    FoldFn,
    ReadTimeout,
    Store,
    StoreUnavailable,
    day_of,
    read_deadline,
)
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
    VERSION_GROUP,
    bundle_in,
    counted_failure,
    device_where,
    event_where,
    marks,
    segment_where,
)

log = logging.getLogger("capgo_stats.store")
UnfoldFn = Callable[[dict], Deltas]
T = TypeVar("T")
Conn = Any  # a DB-API connection taking `?` parameters (sqlite3's, or postgres.py's adapter)

INSERT_EVENT = (
    f"INSERT INTO event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)
TALLY_REFUSAL = (
    "INSERT INTO refusal (day, app_id, reason, action, count) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (day, app_id, reason, action)"
    " DO UPDATE SET count = refusal.count + excluded.count"
)


class SQLStore(Store):
    """The shared queries of a SQL database; subclasses supply the hooks below."""

    # The database's exceptions: any of them, raised by a read or a write, is StoreUnavailable.
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._fault: str | None = None
        self._lock = threading.Lock()

    # -- what each database supplies ---------------------------------------------------------

    @abc.abstractmethod
    def connection(self, write: bool = False) -> AbstractContextManager[Conn]:
        """Lend a connection (outside any transaction) for the block."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Conn]:
        """A write transaction: committed when the block ends, rolled back when it raises."""

    @abc.abstractmethod
    def snapshot(self, conn: Conn) -> AbstractContextManager[None]:
        """One read snapshot on `conn` for the block (several reads that must agree)."""

    def _writing(self, statements: int) -> AbstractContextManager[Conn]:
        """Where a write of that many statements runs: a transaction (a database whose single
        statements are transactions of their own may skip BEGIN and COMMIT for one)."""
        return self.transaction()

    def _retry(self, attempt: Callable[[], T]) -> T:
        """Run attempt(), waiting for locks the way this database needs (SQLite polls)."""
        return attempt()

    @abc.abstractmethod
    def _insert_events(self, conn: Conn, rows: list[tuple]) -> None:
        """Insert raw events (a resend: nothing) so that the fold will find them."""

    @abc.abstractmethod
    def _pending(self, conn: Conn) -> int:
        """How many stored events the fold has not reached yet."""

    def _lock_fold(self, conn: Conn) -> None:
        """Inside a write transaction: wait until no other fold or rebuild runs, and keep them
        out until it ends (nothing to do where write transactions take turns already)."""

    @abc.abstractmethod
    def _take_batch(self, conn: Conn, limit: int) -> list[tuple]:
        """Inside the fold's transaction, its lock held: the next `limit` events to fold
        (FOLD_COLUMNS, by id), marked folded when the transaction commits."""

    @abc.abstractmethod
    def _folded_after(self, conn: Conn, after: int, limit: int) -> list[tuple]:
        """The next `limit` events after id `after` that were folded already (for rebuild)."""

    @abc.abstractmethod
    def _folded_only(self) -> str:
        """A condition on the event table that holds for folded events only (for prune)."""

    def upkeep(self) -> None:
        """Nothing, by default: PostgreSQL's autovacuum keeps its own house."""

    def _after_delete(self, conn: Conn) -> None:
        """What the fold's bookkeeping needs after rows it reads (events, device states) were
        deleted or rewritten outside a fold (nothing, by default)."""

    @abc.abstractmethod
    def stream(self, conn: Conn, sql: str, params: list) -> Iterable[tuple]:
        """The rows of a query as plain tuples, without holding them all in memory."""

    @abc.abstractmethod
    def _bounded(self, conn: Conn, deadline: float) -> AbstractContextManager[None]:
        """The block's statements on `conn` stopped at `deadline` (time.monotonic()), which
        then raises ReadTimeout."""

    def _run_read(self, conn: Conn, deadline: float | None, run: Callable[[float | None], T]) -> T:
        """Run a read, run(deadline): here and now, its statements bounded by `_bounded`. (A
        database may run it elsewhere, and bound it its own way: run(None) is unbounded.)"""
        return run(deadline)

    def write(self, rows: list[tuple], refusals: Iterable[Refusal], now_ms: int) -> None:
        """Store events and tally refusals in one transaction; StoreUnavailable if we cannot."""
        tally: dict[tuple[str, str, str], int] = {}
        for r in refusals:
            key = (r.app_id, r.error, r.action)
            tally[key] = tally.get(key, 0) + 1
        with self.faults_reported(), self._writing(statements=1 + bool(tally)) as conn:
            if rows:
                self._insert_events(conn, rows)
            if tally:
                day = day_of(now_ms)
                tally = _capped(conn, day, tally)
                conn.executemany(TALLY_REFUSAL, [(day, *key, n) for key, n in tally.items()])

    def forget_device(self, device_ids: list[str], custom_ids: list[str], unfold: UnfoldFn) -> int:
        """Delete every event and per-device row of these devices; return how many events.

        A device is matched by its device_id, or by a custom_id it sent in any of its events
        (so its events from before the app set a custom_id go too). The rollups keep their
        counts (they hold no device ids); the device counts lose the devices (`unfold` says
        how). Every list is looked up in chunks, so any number of devices can be forgotten.
        """
        try:
            with self.transaction() as conn:
                devices = set(device_ids)
                for chunk in _chunked(custom_ids):
                    devices.update(
                        row[0]
                        for row in conn.execute(
                            "SELECT DISTINCT device_id FROM event"
                            f" WHERE custom_id IN ({marks(chunk)})",
                            chunk,
                        )
                    )
                states = {}
                for chunk in _chunked(sorted(devices)):
                    for app_id, device_id, *state in conn.execute(
                        f"SELECT app_id, device_id, {', '.join(folding.DEVICE_COLUMNS)}"
                        f" FROM device WHERE device_id IN ({marks(chunk)})",
                        chunk,
                    ):
                        states[(app_id, device_id)] = tuple(state)
                folding.apply(conn, unfold(states))
                deleted = 0
                for column, values in (("device_id", sorted(devices)), ("custom_id", custom_ids)):
                    for chunk in _chunked(values):
                        deleted += conn.execute(
                            f"DELETE FROM event WHERE {column} IN ({marks(chunk)})", chunk
                        ).rowcount
                for table in ("device", "device_day", "version_device", "adoption_device"):
                    for chunk in _chunked(sorted(devices)):
                        conn.execute(
                            f"DELETE FROM {table} WHERE device_id IN ({marks(chunk)})", chunk
                        )
                self._after_delete(conn)
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None
        return deleted

    def claim(self, key: str, now_ms: int, every_ms: int) -> bool:
        """Take `key` (a lease kept in meta) unless another process took it within every_ms."""
        try:
            with self.transaction() as conn:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, 0) ON CONFLICT DO NOTHING", (key,)
                )
                taken = conn.execute(
                    "UPDATE meta SET value = ? WHERE key = ? AND value <= ?",
                    (now_ms, key, now_ms - every_ms),
                ).rowcount
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None
        return taken == 1

    def remember(self, key: str, value: int, replace: bool = False) -> int:
        """Keep `value` under `key` in meta unless one is kept already (or `replace`).

        A value kept already is only read, so a server on a read-only database (a replica)
        still starts."""
        keep = "DO UPDATE SET value = excluded.value" if replace else "DO NOTHING"
        try:
            if not replace:
                kept = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
                if kept:
                    return kept[0][0]
            with self.transaction() as conn:
                conn.execute(
                    f"INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) {keep}",
                    (key, value),
                )
                return folding.position(conn, key)
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None

    # -- the fold ----------------------------------------------------------------------------

    def pending(self) -> int:
        """How many stored events the fold has not reached yet."""
        try:
            with self.connection() as conn:
                return self._retry(lambda: self._pending(conn))
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None

    def fold(self, fold: FoldFn, limit: int = 5000) -> int:
        """Fold the next `limit` events into the rollups, their deltas and the record of what
        was folded in one transaction; return how many (0: nothing was pending)."""
        try:
            with self.transaction() as conn:
                self._lock_fold(conn)
                rows = self._take_batch(conn, limit)
                if rows:
                    folding.fold_batch(conn, fold, rows)
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None
        return len(rows)

    def rebuild(self, fold: FoldFn, batch: int = 5000) -> tuple[int, int]:
        """Recompute the rollups of the period still held as raw events, in one transaction.

        Returns (events folded, pruned_before). Rows of days and hours before pruned_before (the
        time before which `prune` deleted raw events) are kept as they are; so are the devices
        first seen before it, which are folded again over their row rather than from nothing.
        Only events folded already are folded again: those still pending are the next fold's.
        """
        try:
            with self.transaction() as conn:
                self._lock_fold(conn)  # no fold runs beside a rebuild
                since = folding.position(conn, "pruned_before")
                floors = folding.clear_held_period(conn, since)
                folded = after = 0
                while rows := self._folded_after(conn, after, batch):
                    deltas = folding.held_only(folding.fold_batch_deltas(conn, fold, rows), floors)
                    folding.apply(conn, deltas)
                    after = rows[-1][0]
                    folded += len(rows)
                folding.recount_devices(conn)
                self._after_delete(conn)
        except self.errors as e:
            raise StoreUnavailable(str(e)) from None
        return folded, since

    @contextmanager
    def faults_reported(self) -> Iterator[None]:
        """The block's database errors as StoreUnavailable, a fault logged once (not once per
        request), and its end logged once the block works again."""
        try:
            yield
        except self.errors as e:
            self._report_fault(str(e))
            raise StoreUnavailable(str(e)) from None
        except StoreUnavailable as e:
            self._report_fault(str(e))
            raise
        if self._fault:
            self._report_recovery()

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

    def _read(self, work: Callable[[Conn], T], snapshot: bool = False) -> T:
        """work(conn) as one read: on a pooled connection (in one snapshot if asked), stopped
        at the context's read deadline (ReadTimeout), off the event loop where that helps."""
        deadline = read_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            raise ReadTimeout("the read deadline passed before this read began")
        with self.connection() as conn:
            return self._run_read(
                conn, deadline, lambda bound: self._in_read(conn, work, snapshot, bound)
            )

    def _in_read(
        self, conn: Conn, work: Callable[[Conn], T], snapshot: bool, deadline: float | None
    ) -> T:
        """work(conn), in a snapshot if asked, its statements stopped at the deadline if any."""
        with self.snapshot(conn) if snapshot else nullcontext():
            with self._bounded(conn, deadline) if deadline is not None else nullcontext():
                return work(conn)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Run a read query and return its rows as dicts."""
        args = tuple(params)
        return self._read(lambda conn: self._retry(lambda: _dicts(conn.execute(sql, args))))

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

    def totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> list[dict]:
        """Events per (bundle, action) over [since, until), with their first and last time.

        `first`/`last` are epoch ms: the start of the first and last day or hour that held such
        an event (exact where a ragged edge came from raw events).
        """
        found: dict[tuple[str, str], dict] = {}
        for table, lo, hi in time_segments(filters.since, filters.until):
            where, params = _only(segment_where(table, filters, lo, hi, prod_only), bundles)
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

    def download_fail_versions(self, app_id: str, limit: int) -> list[tuple[str, str]]:
        """The (platform, plugin_version) pairs of the app's download_fail events, the `limit`
        with the most events first, then by pair (failure_day, all stored history)."""
        return self._rows(
            "SELECT platform, plugin_version FROM failure_day"
            " WHERE app_id = ? AND action = 'download_fail'"
            " GROUP BY 1, 2 ORDER BY sum(count) DESC, 1, 2 LIMIT ?",
            (app_id, limit),
        )

    def failure_tally(
        self,
        filters: Filters,
        prod_only: bool,
        legacy: list[tuple[str, str]],
        version: str | None = None,
        bundles: list[str] | None = None,
    ) -> tuple[int, int]:
        """(failures that count, legacy download_fail left out) over [since, until)."""
        counted, counted_params = counted_failure(legacy)
        source, params = _failure_source(filters, prod_only)
        where, where_params = _failure_where(version, bundles)
        [(kept, left_out)] = self._rows(
            f"SELECT coalesce(sum(CASE WHEN {counted} = 1 THEN n ELSE 0 END), 0),"
            f" coalesce(sum(CASE WHEN {counted} = 1 THEN 0 ELSE n END), 0)"
            f" FROM {source} WHERE {where}",
            [*counted_params, *counted_params, *params, *where_params],
        )
        return kept, left_out

    def failure_groups(
        self,
        filters: Filters,
        prod_only: bool,
        legacy: list[tuple[str, str]],
        keys: Sequence[str],
        limit: int | None = None,
        version: str | None = None,
        bundles: list[str] | None = None,
    ) -> dict[str, Any]:
        """The failures that count over [since, until), grouped by `keys`, most first, then by
        the keys: {"rows": the first `limit` groups as (*keys, n), "count": how many groups}.
        Grouped, ordered and cut in SQL, so any number of made-up names stays there."""
        columns = ", ".join(f"{FAILURE_KEYS[key]} AS k{i}" for i, key in enumerate(keys))
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        counted, counted_params = counted_failure(legacy)
        source, params = _failure_source(filters, prod_only)
        where, where_params = _failure_where(version, bundles)
        cut, cut_params = ("", []) if limit is None else (" LIMIT ?", [limit])
        # The groups made once, then counted and ranked: count(*) OVER () over 100,000 groups
        # took more than counting the materialized groups: 200 ms against 290 for the OS
        # versions of a flood of 100,000 failures, the same rows.
        rows = self._rows(
            f"WITH g AS MATERIALIZED (SELECT {columns}, sum(n) AS n FROM {source}"
            f" WHERE {counted} = 1 AND {where} GROUP BY {positions})"
            f" SELECT *, (SELECT count(*) FROM g) FROM g"
            f" ORDER BY {len(keys) + 1} DESC, {positions}{cut}",
            [*params, *counted_params, *where_params, *cut_params],
        )
        return {"rows": [row[:-1] for row in rows], "count": rows[0][-1] if rows else 0}

    def uninstall_totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[str, int]:
        """Uninstalls per replaced bundle over [since, until) (uninstall_day, raw edges)."""
        found: dict[str, int] = {}
        for table, lo, hi in uninstall_segments(filters.since, filters.until):
            column = OLD_BUNDLE if table == "event" else "bundle"
            where, params = _only(segment_where(table, filters, lo, hi, prod_only), bundles, column)
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

    def device_bundles(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[str | None, int]:
        """How many devices currently run each bundle (None: no bundle reported yet)."""
        where, params = _only(device_where(filters, prod_only), bundles)
        rows = self._rows(
            f"SELECT nullif(bundle, ''), sum(devices) FROM device_bundle WHERE {where}"
            " GROUP BY bundle HAVING sum(devices) > 0",
            params,
        )
        return dict(rows)

    def outcome_totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[tuple[str, str], int]:
        """Devices per (bundle, outcome) over all stored history (outcome_devices)."""
        where = _only(device_where(filters, prod_only), bundles)
        return self._devices_by("outcome_devices", "outcome", *where)

    def reach_totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[tuple[str, str], int]:
        """Devices per (bundle, kind) whose first event running it ('active') or first issue on
        it ('issue') fell on a UTC day touching [since, until) (reach_day)."""
        where = _only(_day_where(filters, prod_only), bundles)
        return self._devices_by("reach_day", "kind", *where)

    def _devices_by(
        self, table: str, column: str, where: str, params: list
    ) -> dict[tuple[str, str], int]:
        """Devices per (bundle, column) of a table of device counts, over the rows of `where`."""
        rows = self._rows(
            f"SELECT bundle, {column}, sum(devices) FROM {table} WHERE {where}"
            " GROUP BY 1, 2 HAVING sum(devices) > 0",
            params,
        )
        return {(bundle, value): n for bundle, value, n in rows}

    def histograms(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[tuple[str, str], dict]:
        """Samples per (bundle, 'launch' or 'install') and bucket, days touching the range."""
        where, params = _only(_day_where(filters, prod_only), bundles)
        found: dict[tuple[str, str], dict] = {}
        for metric, table, count in HISTOGRAMS:
            for bundle, bucket, n in self._rows(
                f"SELECT bundle, bucket, sum({count}) FROM {table} WHERE {where}"
                f" GROUP BY 1, 2 HAVING sum({count}) > 0",
                params,
            ):
                found.setdefault((bundle, metric), {})[bucket] = n
        return found

    def active_since(self, filters: Filters, prod_only: bool, since: list[int]) -> list[int]:
        """For each hour in `since` (ms, whole hours), how many devices were last seen in it
        or later."""
        where, params = device_where(filters, prod_only)
        hours = [start // HOUR_MS for start in since]
        since_hour = "coalesce(sum(CASE WHEN hour >= ? THEN devices ELSE 0 END), 0)"
        sums = ", ".join(since_hour for _ in hours)
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

    def app_ids(self, limit: int | None = None) -> list[str]:
        """The apps with at least one stored event (the first `limit`), hopping along the
        device index."""
        apps: list[str] = []
        while limit is None or len(apps) < limit:
            after = apps[-1] if apps else ""
            row = self._rows(
                "SELECT app_id FROM device WHERE app_id > ? ORDER BY app_id LIMIT 1", (after,)
            )
            if not row:
                return apps
            apps.append(row[0][0])
        return apps

    def top_apps(self, limit: int) -> list[str]:
        """The `limit` apps with the most events (rollup_day), most first, then by app_id: a
        bounded answer however many apps send."""
        return [app_id for (app_id,) in self._rows(TOP_APPS, (limit,))]

    def app_count(self) -> int:
        """How many apps have events (in rollup_day)."""
        [(count,)] = self._rows(
            "SELECT count(*) FROM (SELECT DISTINCT app_id FROM rollup_day) AS apps"
        )
        return count

    def series(
        self,
        filters: Filters,
        interval: str,
        lo: int,
        hi: int,
        prod_only: bool,
        actions: list[str],
        bundles: list[str] | None = None,
    ) -> list[dict]:
        """Counts per (bucket, action, bundle) of whole days or hours lo..hi-1 of some actions;
        with `bundles`, the other bundles' counts are summed per (bucket, action) as bundle None
        (read on the primary key, so the number of bundles an app has costs nothing)."""
        table = {"day": "rollup_day", "hour": "rollup_hour"}[interval]
        where, params = segment_where(table, filters, lo, hi, prod_only)
        where += f" AND action IN ({marks(actions)})"
        params += actions
        select = f"SELECT {TIME_COLUMN[table]} AS bucket, action"
        names = ("bucket", "action", "bundle", "n")
        if bundles is None:
            return self.query(
                f"{select}, bundle, sum(count) AS n FROM {table} WHERE {where} GROUP BY 1, 2, 3",
                params,
            )
        extra, kept = bundle_in(bundles)
        rows = _others(
            self._rows(
                f"{select}, bundle, sum(count) FROM {table} WHERE {where}{extra} GROUP BY 1, 2, 3",
                [*params, *kept],
            ),
            self._rows(f"{select}, sum(count) FROM {table} WHERE {where} GROUP BY 1, 2", params),
            2,
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def failure_series(
        self,
        filters: Filters,
        interval: str,
        lo: int,
        hi: int,
        prod_only: bool,
        legacy: list[tuple[str, str]],
    ) -> dict[int, int]:
        """The failures that count per day or hour lo..hi-1 (legacy: as in failure_tally),
        summed in SQL: one row per bucket, however many plugin versions failed."""
        table = {"day": "failure_day", "hour": "failure_hour"}[interval]
        where, params = segment_where(table, filters, lo, hi, prod_only)
        counted, counted_params = counted_failure(legacy)
        rows = self._rows(
            f"SELECT {TIME_COLUMN[table]}, sum(count) FROM {table}"
            f" WHERE {where} AND {counted} = 1 GROUP BY 1",
            [*params, *counted_params],
        )
        return dict(rows)

    def active_series(self, app_id: str, lo: int, hi: int, prod_only: bool) -> dict[int, int]:
        """Distinct devices per day lo..hi-1 (day numbers) from active_day."""
        prod = " AND prod = 1" if prod_only else ""
        rows = self._rows(
            "SELECT day, sum(devices) FROM active_day WHERE app_id = ? AND day >= ? AND day < ?"
            f"{prod} GROUP BY day",
            (app_id, lo, hi),
        )
        return dict(rows)

    def adoption_series(
        self,
        filters: Filters,
        lo: int,
        hi: int,
        prod_only: bool,
        bundles: list[str] | None = None,
    ) -> list[tuple[int, str | None, int]]:
        """(day, bundle, devices) for days lo..hi-1: devices by the bundle they last ran; with
        `bundles`, the other bundles' devices are summed per day as bundle None."""
        where, params = device_where(filters, prod_only)
        where += " AND day >= ? AND day < ?"
        params += [lo, hi]
        if bundles is None:
            return self._rows(
                f"SELECT day, bundle, sum(devices) FROM adoption_day WHERE {where}"
                " GROUP BY 1, 2 HAVING sum(devices) > 0",
                params,
            )
        extra, kept = bundle_in(bundles)
        return _others(
            self._rows(
                f"SELECT day, bundle, sum(devices) FROM adoption_day WHERE {where}{extra}"
                " GROUP BY 1, 2 HAVING sum(devices) > 0",
                [*params, *kept],
            ),
            self._rows(
                f"SELECT day, sum(devices) FROM adoption_day WHERE {where} GROUP BY 1", params
            ),
            1,
        )

    def many_versions(self, app_id: str, limit: int) -> bool:
        """Whether the app named more than `limit` bundles: a look at the first limit + 1
        distinct ones of rollup_day and uninstall_day, so as quick for a million as for limit."""
        [(found,)] = self._rows(
            "SELECT count(*) FROM (SELECT DISTINCT bundle FROM ("
            "SELECT bundle FROM rollup_day WHERE app_id = ?"
            " UNION ALL SELECT bundle FROM uninstall_day WHERE app_id = ?) AS named"
            " LIMIT ?) AS distinct_names",
            (app_id, app_id, limit + 1),
        )
        return found > limit

    def top_bundles(
        self, filters: Filters, prod_only: bool, limit: int, offset: int = 0
    ) -> dict[str, Any]:
        """The bundles devices run now (builtin and unknown left out), most devices first, then
        by bundle, backwards: `limit` of them after `offset`; how many there are; all devices."""
        where, params = device_where(filters, prod_only)
        bundles = f"{where} AND devices > 0 AND bundle NOT IN ({marks(NOT_BUNDLE_NAMES)})"
        params_bundles = [*params, *NOT_BUNDLE_NAMES]
        top = self._rows(
            f"SELECT bundle FROM device_bundle WHERE {bundles} GROUP BY bundle"
            " ORDER BY sum(devices) DESC, bundle DESC LIMIT ? OFFSET ?",
            [*params_bundles, limit, offset],
        )
        [(count, devices)] = self._rows(  # one pass for both
            "SELECT count(DISTINCT CASE WHEN devices > 0"
            f" AND bundle NOT IN ({marks(NOT_BUNDLE_NAMES)}) THEN bundle END),"
            f" coalesce(sum(devices), 0) FROM device_bundle WHERE {where}",
            [*NOT_BUNDLE_NAMES, *params],
        )
        return {"bundles": [bundle for (bundle,) in top], "count": count, "devices": devices}

    def refusals(self, filters: Filters, app_ids: list[str] | None, limit: int) -> dict:
        """Refused-event tallies: the `limit` rows per (day, app, reason, action) of the newest
        days, the `limit` biggest sums per (reason, action), how many of each, and the total.

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
        where = " AND ".join(clauses)
        [(refused, row_count)] = self._rows(
            f"SELECT coalesce(sum(count), 0), count(*) FROM refusal WHERE {where}", params
        )
        [(group_count,)] = self._rows(
            f"SELECT count(*) FROM (SELECT DISTINCT reason, action FROM refusal WHERE {where})"
            " AS pairs",
            params,
        )
        rows = self.query(
            f"SELECT day, app_id, reason, action, count FROM refusal WHERE {where}"
            " ORDER BY day DESC, count DESC, app_id, reason, action LIMIT ?",
            [*params, limit],
        )
        groups = self.query(
            f"SELECT reason, action, sum(count) AS count FROM refusal WHERE {where}"
            " GROUP BY reason, action ORDER BY 3 DESC, 1, 2 LIMIT ?",
            [*params, limit],
        )
        return {
            "refused": refused,
            "rows": rows,
            "row_count": row_count,
            "by_reason_action": groups,
            "group_count": group_count,
        }

    def event_keys(self, filters: Filters, limit: int, after: tuple[int, int] | None) -> list[dict]:
        """The keys of matching raw events, newest first (by at, then id), after a cursor.

        Without an app, device or custom id to follow an index, each app is read on its own
        index and the pages are merged, so the list never sorts the whole table; beyond
        MERGE_APPS apps, one scan with SQLite keeping the newest `limit` is cheaper than a
        query per app. Keys only: the rows, metadata and all, come from events_by_id.
        """
        if any(getattr(filters, k) is not None for k in ("app_id", "device_id", "custom_id")):
            return self._event_keys(filters, limit, after)
        apps = self.app_ids(MERGE_APPS + 1)
        if len(apps) > MERGE_APPS:
            return self._event_keys(filters, limit, after)
        page = min(limit, MERGE_PAGE)
        merged = heapq.merge(
            *(self._app_keys(filters.but(app_id=app_id), page, after) for app_id in apps),
            key=lambda row: (row["at"], row["id"]),
            reverse=True,
        )
        return list(itertools.islice(merged, limit))

    def _app_keys(
        self, filters: Filters, page: int, after: tuple[int, int] | None
    ) -> Iterator[dict]:
        """One app's event keys, newest first, read `page` at a time as the merge needs them."""
        while True:
            batch = self._event_keys(filters, page, after)
            yield from batch
            if len(batch) < page:
                return
            after = (batch[-1]["at"], batch[-1]["id"])

    def _event_keys(
        self, filters: Filters, limit: int, after: tuple[int, int] | None
    ) -> list[dict]:
        """One page of raw event keys (see event_keys)."""
        where, params = event_where(filters)
        if after is not None:
            # at <= ? lets the (…, at) index bound the scan; the OR breaks ties by id.
            where += " AND at <= ? AND (at < ? OR id < ?)"
            params += [after[0], after[0], after[1]]
        return self.query(
            f"SELECT {', '.join(KEY_COLUMNS)} FROM event WHERE {where}"
            " ORDER BY at DESC, id DESC LIMIT ?",
            [*params, limit],
        )

    def events_by_id(self, ids: list[int], max_bytes: int) -> list[dict]:
        """The raw events of these ids, in the order given, one row read at a time, stopping
        after the row that takes the text read past max_bytes (so at least one row)."""
        # one snapshot for the whole page
        return self._read(lambda conn: self._events_by_id(conn, ids, max_bytes), snapshot=True)

    def _events_by_id(self, conn: Conn, ids: list[int], max_bytes: int) -> list[dict]:
        """events_by_id on a connection in a snapshot."""
        select = f"SELECT id, {', '.join(SHOWN)}, bundle FROM event WHERE id = ?"
        found: list[dict] = []
        read = 0
        names = ("id", *SHOWN, "bundle")
        for event_id in ids:
            row = self._retry(lambda i=event_id: conn.execute(select, (i,)).fetchone())
            if row is None:  # deleted since its key was read (prune, forget-device)
                continue
            found.append(dict(zip(names, row, strict=True)))
            read += sum(len(value) for value in row if isinstance(value, str))
            if read > max_bytes:
                break
        return found

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

    # -- alert state (flask alerts) ---------------------------------------------------------

    def alert_states(self) -> set[tuple[str, str, str]]:
        """The (app_id, version, condition) alerts sent that still held at the last check."""
        return set(self._rows("SELECT app_id, version, condition FROM alert_state"))

    def raise_alert(self, key: tuple[str, str, str], at: int) -> None:
        """Record that an alert was sent."""
        self._execute_write(
            "INSERT INTO alert_state (app_id, version, condition, raised_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (app_id, version, condition)"
            " DO UPDATE SET raised_at = excluded.raised_at",
            (*key, at),
        )

    def clear_alerts(self, keys: list[tuple[str, str, str]]) -> None:
        """Forget alerts whose condition no longer holds."""
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM alert_state WHERE app_id = ? AND version = ? AND condition = ?", keys
            )

    # -- retention ---------------------------------------------------------------------------

    def prune(self, before_ms: int, chunk: int = 5000) -> int:
        """Delete folded raw events older than before_ms, a chunk per transaction; rollups stay.

        Remembers before_ms as pruned_before (for rebuild): the raw events before it are gone.
        """
        deleted = 0
        with self.transaction() as conn:
            if before_ms > folding.position(conn, "pruned_before"):
                folding.set_position(conn, before_ms, "pruned_before")
        # Never an event the fold has not counted yet: it would be lost to the rollups.
        folded = self._folded_only()
        for app_id in self.app_ids():
            while True:
                with self.transaction() as conn:
                    n = conn.execute(
                        "DELETE FROM event WHERE id IN (SELECT id FROM event"
                        f" WHERE app_id = ? AND at < ? AND {folded} LIMIT ?)",
                        (app_id, before_ms, chunk),
                    ).rowcount
                    self._after_delete(conn)
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
        with self.transaction() as conn:
            conn.execute("DELETE FROM device_day WHERE day < ?", (oldest_day,))
            conn.execute("DELETE FROM adoption_device WHERE day < ?", (oldest_day,))
            # Counts that devices moved out of stay behind at zero: nothing reads them.
            conn.execute("DELETE FROM device_bundle WHERE devices = 0")
            conn.execute("DELETE FROM device_hour WHERE devices = 0")
            self._after_delete(conn)
        return deleted

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Run a read query and return plain tuples."""
        args = tuple(params)
        return self._read(lambda conn: self._retry(lambda: _tuples(conn.execute(sql, args))))

    def _execute_write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one write statement in its own transaction; return the rows it changed."""
        with self.transaction() as conn:
            return conn.execute(sql, tuple(params)).rowcount

    # -- export, metrics and health (the ops routes and commands) -----------------------------

    def iter_events(
        self, filters: Filters, columns: Sequence[str], batch_size: int = 1000
    ) -> Iterator[list[tuple]]:
        """Yield the matching events by app, then oldest first, batch_size rows at a time, or
        fewer once their text passes BATCH_BYTES (big metadata).

        Each app's events are read in the order of the (app_id, at) index, so nothing is sorted
        and memory stays flat, whatever the rows hold. One read transaction: a snapshot, held
        (with its connection) until the last batch is taken or the generator is closed.
        """
        unknown = set(columns) - EVENT_COLUMNS
        if unknown:
            raise ValueError(f"not event columns: {sorted(unknown)}")
        select = f"SELECT {', '.join(columns)} FROM event WHERE "
        # The columns whose size a client decides (the rest are short, capped at ingest).
        text = [i for i, name in enumerate(columns) if name in ("metadata",)]
        with self.connection() as conn, self.snapshot(conn):
            # The first read takes the snapshot (and may have to wait); later ones never wait.
            apps = [filters.app_id] if filters.app_id else self._retry(lambda: _app_ids(conn))
            for app_id in apps:
                where, params = segment_where(
                    "event",
                    filters.but(app_id=app_id),
                    filters.since,
                    filters.until,
                )
                rows = self.stream(conn, select + where + " ORDER BY at, id", params)
                yield from _batches(rows, batch_size, text)

    def metrics(self) -> dict[str, Any]:
        """The numbers of GET /metrics, from the rollups (docs/api.md defines them)."""
        events, refused, last = self._read(
            lambda conn: self._retry(lambda: _metrics(conn)), snapshot=True
        )
        return {
            "events": [tuple(row) for row in events],
            "refused": [tuple(row) for row in refused],
            "last_event_ms": [tuple(row) for row in last],
            "size_bytes": self.size_bytes(),
        }


# Every column of the event table, generated ones included; those an event shows in the API
# (the fingerprint is only the dedupe key).
EVENT_COLUMNS = frozenset(("id", *COLUMNS, "bundle"))
SHOWN = COLUMNS[: COLUMNS.index("fingerprint")]
# What a page of events is chosen by (its order, and the legacy download_fail rule).
KEY_COLUMNS = ("id", "at", "action", "platform", "plugin_version")
# The bundle names whose devices counting.version_group counts as builtin or unknown.
NOT_BUNDLE_NAMES = ("", *NOT_BUNDLES)
METRICS_APPS = 100  # apps /metrics names; the others are summed under OTHER_APPS
TOP_APPS = "SELECT app_id FROM rollup_day GROUP BY app_id ORDER BY sum(count) DESC, app_id LIMIT ?"
OTHER_APPS = "_other"
MERGE_APPS = 100  # event_keys merges one indexed page per app up to this many apps
MERGE_PAGE = 100  # keys read from one app at a time while merging


HISTOGRAMS = (("launch", "launch_day", "count"), ("install", "install_day", "devices"))


def _day_where(filters: Filters, prod_only: bool) -> tuple[str, list]:
    """WHERE on a per-day table: the app, platform, prod, and the UTC days touching the range."""
    where, params = device_where(filters, prod_only)
    if filters.since is not None:
        where += " AND day >= ?"
        params.append(filters.since // DAY_MS)
    if filters.until is not None:
        where += " AND day < ?"
        params.append(-(-filters.until // DAY_MS))
    return where, params


# What the failure reads group by: columns of _failure_source, and the version a bundle counts
# for (builtin, unknown or itself).
FAILURE_KEYS = {
    "action": "action",
    "bundle": "bundle",
    "version": VERSION_GROUP,
    "platform": "platform",
    "plugin_version": "plugin_version",
    "version_os": "version_os",
}
FAILURE_SOURCE = (
    "SELECT action, coalesce(bundle, '') AS bundle, platform,"
    " coalesce(plugin_version, '') AS plugin_version, coalesce(version_os, '') AS version_os,"
)


def _failure_source(filters: Filters, prod_only: bool) -> tuple[str, list]:
    """The failure rows of [since, until) as one aliased subquery f(action, bundle, platform,
    plugin_version, version_os, n): whole days and hours from the rollups, edges from events."""
    parts, params = [], []
    for table, lo, hi in failure_segments(filters.since, filters.until):
        where, piece = segment_where(table, filters, lo, hi, prod_only)
        if table == "event":
            parts.append(f"{FAILURE_SOURCE} 1 AS n FROM event WHERE {where} AND {FAILURE}")
        else:
            parts.append(f"{FAILURE_SOURCE} count AS n FROM {table} WHERE {where}")
        params += piece
    if not parts:  # an empty range
        parts.append(f"{FAILURE_SOURCE} count AS n FROM failure_day WHERE 1 = 0")
    return f"({' UNION ALL '.join(parts)}) AS f", params


def _failure_where(version: str | None, bundles: list[str] | None) -> tuple[str, list]:
    """The condition on f's rows: of one version (as version_group names it), of some bundles."""
    where, params = "1 = 1", []
    if version is not None:
        where, params = f"{VERSION_GROUP} = ?", [version]
    extra, kept = bundle_in(bundles)
    return where + extra, [*params, *kept]


def _only(
    where: tuple[str, list], bundles: list[str] | None, column: str = "bundle"
) -> tuple[str, list]:
    """A WHERE clause and its parameters, kept to some bundles (None: every bundle)."""
    extra, params = bundle_in(bundles, column)
    return where[0] + extra, [*where[1], *params]


def _others(named: list[tuple], totals: list[tuple], key: int) -> list[tuple]:
    """Rows of counts per (*key parts, bundle) of the bundles asked for, then per key one row
    with bundle None holding what the other bundles add up to (totals: (*key parts, n))."""
    named_sums: dict[tuple, int] = {}
    for row in named:
        named_sums[row[:key]] = named_sums.get(row[:key], 0) + row[-1]
    rest = [(*row[:key], None, row[-1] - named_sums.get(row[:key], 0)) for row in totals]
    return [*named, *(row for row in rest if row[-1])]


def _metrics(conn: Conn) -> tuple[list, list, list]:
    """The rows of GET /metrics (read in one snapshot): events per (app, action) and the newest
    event per app, of the METRICS_APPS top apps by name and the others as OTHER_APPS, and refusals.

    The top apps are read once (a GROUP BY over rollup_day) and handed to both scans as a
    list: label values stay bounded however many app ids clients make up."""
    top = [app_id for (app_id,) in conn.execute(TOP_APPS, (METRICS_APPS,)).fetchall()]
    app = f"CASE WHEN app_id IN ({marks(top) or 'NULL'}) THEN app_id ELSE ? END AS app"
    return (
        conn.execute(
            f"SELECT {app}, action, sum(count) FROM rollup_day"
            " GROUP BY app, action ORDER BY app, action",
            (*top, OTHER_APPS),
        ).fetchall(),
        conn.execute(
            "SELECT reason, sum(count) FROM refusal GROUP BY reason ORDER BY reason", ()
        ).fetchall(),
        conn.execute(
            f"SELECT {app}, max(last_seen) FROM device GROUP BY app ORDER BY app",
            (*top, OTHER_APPS),
        ).fetchall(),
    )


def _chunked(values: list[str]) -> Iterator[list[str]]:
    """The values in lists of at most folding.CHUNK, for IN (...) lists of any length."""
    for start in range(0, len(values), folding.CHUNK):
        yield values[start : start + folding.CHUNK]


# A day's refusal tally keeps this many (app, reason, action) rows; a new one beyond it is
# tallied under (OTHER_REFUSED, reason, OTHER_REFUSED): clients choose the app and action
# names they send, and could otherwise grow the tally, and every read of it, without bound.
REFUSAL_ROWS_PER_DAY = 1000
OTHER_REFUSED = "(other)"


def _capped(
    conn: Conn, day: str, tally: dict[tuple[str, str, str], int]
) -> dict[tuple[str, str, str], int]:
    """The tally of one write, with new rows past the day's REFUSAL_ROWS_PER_DAY folded into
    (OTHER_REFUSED, reason, OTHER_REFUSED); rows the day already has keep counting."""
    [(rows,)] = conn.execute("SELECT count(*) FROM refusal WHERE day = ?", (day,)).fetchall()
    if rows + len(tally) <= REFUSAL_ROWS_PER_DAY:
        return tally
    capped: dict[tuple[str, str, str], int] = {}
    for key, n in tally.items():
        known = conn.execute(
            "SELECT 1 FROM refusal WHERE day = ? AND app_id = ? AND reason = ? AND action = ?",
            (day, *key),
        ).fetchone()
        if known is None and key[0] != OTHER_REFUSED:
            if rows < REFUSAL_ROWS_PER_DAY:
                rows += 1
            else:
                key = (OTHER_REFUSED, key[1], OTHER_REFUSED)
        capped[key] = capped.get(key, 0) + n
    return capped


BATCH_BYTES = 2 * 1024 * 1024  # text of a client-sized column one export batch holds at most


def _batches(rows: Iterable[tuple], size: int, text: list[int]) -> Iterator[list[tuple]]:
    """Rows in lists of `size`, or fewer once the `text` columns pass BATCH_BYTES."""
    batch: list[tuple] = []
    read = 0
    for row in rows:
        batch.append(row)
        read += sum(len(row[i] or "") for i in text)
        if len(batch) >= size or read > BATCH_BYTES:
            yield batch
            batch, read = [], 0
    if batch:
        yield batch


def _dicts(cursor: Any) -> list[dict]:
    """A cursor's rows as dicts by column name."""
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _tuples(cursor: Any) -> list[tuple]:
    """A cursor's rows as plain tuples."""
    return [tuple(row) for row in cursor]


def _app_ids(conn: Conn) -> list[str]:
    """Every app_id in the event table, one index seek per app (a loose index scan)."""
    return [
        app_id
        for (app_id,) in conn.execute(
            "WITH RECURSIVE app(id) AS (SELECT min(app_id) FROM event UNION ALL"
            " SELECT (SELECT min(app_id) FROM event WHERE app_id > app.id) FROM app"
            " WHERE app.id IS NOT NULL) SELECT id FROM app WHERE id IS NOT NULL"
        )
    ]


DEVICE_DAY_KEEP_MS = 367 * DAY_MS  # events.PLAUSIBLE_PAST_MS, and a day to spare
