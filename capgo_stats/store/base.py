"""The store's interface: what the rest of capgo-stats may ask of a database, whatever it is.

One implementation per database (sqlite.py today). Every method speaks in plain values: rows
as tuples (protocol.COLUMNS order) in, dicts and numbers out, filters as one Filters value.
A database that cannot answer or take a write raises StoreUnavailable, and nothing else of it
leaks out; the web layer answers 503 for it, so the plugin keeps the events and resends them.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar, Token
from typing import Any

from capgo_stats.counting import DayKey, Deltas, Device, DeviceKey
from capgo_stats.filters import Filters
from capgo_stats.protocol import Refusal

# counting.fold: a batch of raw rows, the states they need, to the deltas to write.
FoldFn = Callable[[list[tuple], dict[DeviceKey, Device], set[DayKey], dict, dict], Deltas]


class StoreUnavailable(Exception):
    """The database cannot answer or take the write now (locked, full, read-only or missing)."""


class ReadTimeout(Exception):
    """A read ran past its deadline (STATS_READ_TIMEOUT_MS) and was stopped."""


class SchemaTooNew(RuntimeError):
    """A database of a newer schema than this code knows: refused at start, left untouched."""


# When the reads of the current request (begun by start_deadline) must be done, on the
# time.monotonic() clock; None: no deadline. A context variable, so each request has its own,
# a greenlet's under gevent, a thread's otherwise.
_deadline: ContextVar[float | None] = ContextVar("capgo_stats_read_deadline", default=None)


def start_deadline(ms: int) -> Token:
    """From now on, the store's reads in this context share `ms` milliseconds; reset the
    returned token to end it (end_deadline)."""
    return _deadline.set(time.monotonic() + ms / 1000)


def end_deadline(token: Token) -> None:
    """End a deadline start_deadline began."""
    _deadline.reset(token)


def read_deadline() -> float | None:
    """The current context's read deadline (time.monotonic()), None when it has none."""
    return _deadline.get()


def day_of(ms: int) -> str:
    """The UTC calendar day of an epoch-milliseconds time, as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


class Store(abc.ABC):
    """A database of raw events, their rollups and the refusal tallies."""

    path: str

    # -- schema and writes -------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_schema(self) -> None:
        """Create the database when new, or migrate it to the current schema."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close this process's connections (a later call opens new ones)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every table and create the schema again (all data is lost)."""

    @abc.abstractmethod
    def write(self, rows: list[tuple], refusals: Iterable[Refusal], now_ms: int) -> None:
        """Store events (a resend once) and tally refusals in one transaction."""

    @abc.abstractmethod
    def forget_device(
        self, device_ids: list[str], custom_ids: list[str], unfold: Callable[[dict], Deltas]
    ) -> int:
        """Delete every event and per-device row of these devices; return how many events.

        `unfold` gives the deltas of the device states being deleted (counting.unfold_devices).
        """

    @abc.abstractmethod
    def prune(self, before_ms: int, chunk: int = 5000) -> int:
        """Delete folded raw events older than before_ms; rollups stay. Return how many."""

    # -- the fold ----------------------------------------------------------------------------

    @abc.abstractmethod
    def pending(self) -> int:
        """How many stored events are not folded yet."""

    @abc.abstractmethod
    def upkeep(self) -> None:
        """The background fold's chores after each of its rounds."""

    @abc.abstractmethod
    def fold(self, fold: FoldFn, limit: int = 5000) -> int:
        """Fold the next events after the position (deltas and position in one transaction);
        return how many (0: none pending). `fold` is counting.fold."""

    @abc.abstractmethod
    def rebuild(self, fold: FoldFn, batch: int = 5000) -> tuple[int, int]:
        """Recompute the rollups of the period still held as raw events; (events, since)."""

    @abc.abstractmethod
    def claim(self, key: str, now_ms: int, every_ms: int) -> bool:
        """True for the one caller, across processes, that takes `key` for the next every_ms."""

    @abc.abstractmethod
    def remember(self, key: str, value: int, replace: bool = False) -> int:
        """Keep `value` under `key` in the database unless one is kept already (or `replace`);
        return the value kept."""

    @abc.abstractmethod
    def check_writable(self) -> int:
        """The schema version, once the database was seen to take writes."""

    # -- reads -------------------------------------------------------------------------------

    @abc.abstractmethod
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Run a read query of this database's SQL and return its rows as dicts (tools, tests)."""

    @abc.abstractmethod
    def counts(self, filters: Filters) -> list[dict]:
        """Event counts grouped by app and action, biggest first."""

    @abc.abstractmethod
    def totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> list[dict]:
        """Events per (bundle, action) with the first and last time they were seen.

        `bundles`, here and in the reads below that take it: only the rows of these bundles
        (None: every bundle), for reports that look at a bounded set of versions.
        """

    @abc.abstractmethod
    def download_fail_versions(self, app_id: str, limit: int) -> list[tuple[str, str]]:
        """The (platform, plugin_version) pairs of the app's download_fail events, the `limit`
        with the most events first: what the legacy download_fail rule is asked about."""

    @abc.abstractmethod
    def failure_tally(
        self,
        filters: Filters,
        prod_only: bool,
        legacy: list[tuple[str, str]],
        version: str | None = None,
        bundles: list[str] | None = None,
    ) -> tuple[int, int]:
        """(failures that count, legacy download_fail left out) over [since, until).

        `legacy`, here and below: the (platform, plugin_version) pairs whose download_fail
        does not count. `version`: only the failures of that version (counting.version_group).
        """

    @abc.abstractmethod
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
        """The failures that count, grouped by `keys` (action, bundle, version, platform,
        plugin_version, version_os), most first, then by the keys: {"rows": the first `limit`
        as (*keys, n), "count": how many groups there are}."""

    @abc.abstractmethod
    def uninstall_totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[str, int]:
        """Uninstalls per replaced bundle."""

    @abc.abstractmethod
    def device_bundles(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[str | None, int]:
        """How many devices currently run each bundle (None: no bundle reported yet)."""

    @abc.abstractmethod
    def outcome_totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[tuple[str, str], int]:
        """Devices per (bundle, outcome: installed or failed) over all stored history."""

    @abc.abstractmethod
    def reach_totals(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[tuple[str, str], int]:
        """Devices per (bundle, kind: active or issue) first counted on days of the range."""

    @abc.abstractmethod
    def histograms(
        self, filters: Filters, prod_only: bool, bundles: list[str] | None = None
    ) -> dict[tuple[str, str], dict]:
        """Duration samples per (bundle, launch or install), as {bucket: count}."""

    @abc.abstractmethod
    def active_since(self, filters: Filters, prod_only: bool, since: list[int]) -> list[int]:
        """For each whole hour in `since` (ms), the devices last seen in it or later."""

    @abc.abstractmethod
    def newest_event(self, app_id: str) -> int | None:
        """The event time of the app's newest event, or None."""

    @abc.abstractmethod
    def app_ids(self, limit: int | None = None) -> list[str]:
        """The apps with at least one stored event, by app_id (the first `limit` of them)."""

    @abc.abstractmethod
    def top_apps(self, limit: int) -> list[str]:
        """The `limit` apps with the most events, most first."""

    @abc.abstractmethod
    def app_count(self) -> int:
        """How many apps have events."""

    @abc.abstractmethod
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
        """Counts per (bucket, action, bundle) of whole days or hours lo..hi-1; with `bundles`,
        the counts of every other bundle summed per (bucket, action) under bundle None."""

    @abc.abstractmethod
    def failure_series(
        self,
        filters: Filters,
        interval: str,
        lo: int,
        hi: int,
        prod_only: bool,
        legacy: list[tuple[str, str]],
    ) -> dict[int, int]:
        """The failures that count per bucket of days or hours lo..hi-1."""

    @abc.abstractmethod
    def active_series(self, app_id: str, lo: int, hi: int, prod_only: bool) -> dict[int, int]:
        """Distinct devices per day lo..hi-1 (day numbers)."""

    @abc.abstractmethod
    def adoption_series(
        self, filters: Filters, lo: int, hi: int, prod_only: bool, bundles: list[str] | None = None
    ) -> list[tuple[int, str | None, int]]:
        """(day, bundle, devices) per day lo..hi-1, by the bundle a device last ran that day;
        with `bundles`, the devices of every other bundle summed per day under bundle None."""

    @abc.abstractmethod
    def many_versions(self, app_id: str, limit: int) -> bool:
        """Whether the app named more than `limit` distinct bundles (in any event, or as the
        bundle a `set` replaced), found in time that does not grow with how many it named."""

    @abc.abstractmethod
    def top_bundles(
        self, filters: Filters, prod_only: bool, limit: int, offset: int = 0
    ) -> dict[str, Any]:
        """The bundles devices run now, builtin and unknown left out, by devices (most first),
        then by bundle, backwards: {"bundles": the `limit` after `offset`, "count": how many
        there are, "devices": every device of the app, builtin and unknown included}.
        Read in SQL with ORDER BY ... LIMIT, so an app's made-up names never reach Python."""

    @abc.abstractmethod
    def refusals(self, filters: Filters, app_ids: list[str] | None, limit: int) -> dict:
        """Refused-event tallies: the newest `limit` rows per (day, app, reason, action), the
        `limit` biggest per (reason, action), how many of each, and the total."""

    @abc.abstractmethod
    def event_keys(self, filters: Filters, limit: int, after: tuple[int, int] | None) -> list[dict]:
        """The keys (id, at, action, platform, plugin_version) of matching raw events, newest
        first (by at, then id), after a cursor."""

    @abc.abstractmethod
    def events_by_id(self, ids: list[int], max_bytes: int) -> list[dict]:
        """The raw events of these ids in their order, stopping once max_bytes of text is read."""

    @abc.abstractmethod
    def device_states(self, filters: Filters) -> list[dict]:
        """The latest state per app of a device_id, or of a custom_id's devices."""

    @abc.abstractmethod
    def device_page(
        self, filters: Filters, prod: bool | None, limit: int, after: str | None
    ) -> list[dict]:
        """One app's devices (their latest state) by device id, after a device id."""

    @abc.abstractmethod
    def alert_states(self) -> set[tuple[str, str, str]]:
        """The (app_id, version, condition) alerts sent that still held at the last check."""

    @abc.abstractmethod
    def raise_alert(self, key: tuple[str, str, str], at: int) -> None:
        """Record that an alert was sent."""

    @abc.abstractmethod
    def clear_alerts(self, keys: list[tuple[str, str, str]]) -> None:
        """Forget alerts whose condition no longer holds."""

    @abc.abstractmethod
    def iter_events(
        self, filters: Filters, columns: Sequence[str], batch_size: int = 1000
    ) -> Iterator[list[tuple]]:
        """The matching events by app, then oldest first, a batch at a time (one snapshot)."""

    @abc.abstractmethod
    def metrics(self) -> dict[str, Any]:
        """The numbers of GET /metrics."""

    @abc.abstractmethod
    def size_bytes(self) -> int:
        """Bytes the database takes on disk."""
