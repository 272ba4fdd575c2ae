"""What a request reaches through its app: the store, the settings, and the query's filters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app, g, request

from capgo_stats import filters, fold
from capgo_stats.errors import invalid_filter
from capgo_stats.filters import Filters
from capgo_stats.protocol import stored_id as _stored_id
from capgo_stats.store import Store, end_deadline, start_deadline


def refuse_nul_in_query() -> None:
    """A 400 for a query value holding a NUL character: no stored value holds one (ingest
    refuses it), and PostgreSQL's text cannot even be compared with one."""
    for name, value in request.args.items(multi=True):
        if "\x00" in value:
            raise invalid_filter(name, f'"{name}" holds a NUL character.')


def get_store() -> Store:
    """The current app's store."""
    return current_app.extensions["store"]


def read_store() -> Store:
    """The current app's store, with every event answered so far folded, and the request's
    read deadline begun: for the reads."""
    store = get_store()
    fold.before_read(store)
    start_read_deadline()
    return store


def start_read_deadline() -> None:
    """From now until the request ends, its reads share STATS_READ_TIMEOUT_MS (0: no limit).

    Begun after the fold that precedes a read, so the limit is on reads alone: never on
    ingest, the fold, or an export (whose batches are each short, and which sends as it reads).
    """
    ms = setting("STATS_READ_TIMEOUT_MS")
    if ms and "read_deadline" not in g:
        g.read_deadline = start_deadline(ms)


def end_read_deadline(error: BaseException | None = None) -> None:
    """When the request ends: end its read deadline, if it had one."""
    token = g.pop("read_deadline", None)
    if token is not None:
        end_deadline(token)


def setting(name: str) -> Any:
    """A STATS_* setting of the current app."""
    return current_app.config[name]


def stored_id(field: str, raw: str) -> str | None:
    """A device_id or custom_id from a query, as the store holds it (for look-ups)."""
    return _stored_id(field, raw, setting("STATS_HASH_SECRET"))


def query_filters(names: Iterable[str] = filters.SHARED, allow_action: bool = True) -> Filters:
    """The filters of the query string, parsed once; `action` only where it applies."""
    parsed = filters.parse(request.args, names, setting("STATS_HASH_SECRET"))
    if parsed.action is not None and not allow_action:
        raise invalid_filter("action", f'"action" does not apply to {request.path}; leave it out.')
    return parsed


def query_flag(name: str) -> bool:
    """A 0/1 query flag such as include_dev; absent is False."""
    return bool(filters.flag(request.args, name))
