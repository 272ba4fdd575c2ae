"""Ceilings for single-event ingest: the real app with its storage cut down, for bench/run.py.

Not a way to run capgo-stats. Served beside the real app under the same gunicorn settings, they
show how much of the bare route's speed is left for storing an event:
- `off`: every request is parsed, validated, logged and answered as usual, nothing is written;
- `plain`: the same, with one INSERT per request into a table without indexes or rollups, in
  its own transaction: the cheapest write SQLite offers that is on disk before the answer.
"""

import sys
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app  # noqa: E402
import store  # noqa: E402

PLAIN = "plain_event"


def write_nothing(self: store.Store, rows: list, refusals: list, now_ms: int) -> None:
    """Store.write with the storage switched off."""


def write_plain(self: store.Store, rows: list, refusals: list, now_ms: int) -> None:
    """Store.write cut to one plain INSERT per event, through the same transaction helper."""
    columns = ", ".join(store.COLUMNS)
    with self.transaction() as conn:
        conn.executemany(
            f"INSERT INTO {PLAIN} ({columns}) VALUES ({', '.join('?' * len(store.COLUMNS))})",
            rows,
        )


def create_app(storage: str) -> Flask:
    """The real app, with Store.write replaced as `storage` ('off' or 'plain') says."""
    store.Store.write = {"off": write_nothing, "plain": write_plain}[storage]
    flask_app = app.create_app()
    with flask_app.extensions["store"].transaction() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PLAIN} ({', '.join(store.COLUMNS)})")
    return flask_app
