"""Ceilings for ingest, for bench/run.py: the real app with its storage changed.

Not a way to run capgo-stats. Served beside the real app under the same gunicorn settings, they
show how much of the bare route's speed is left for storing an event:
- `off`: every request is parsed, validated, logged and answered as usual, nothing is written;
- `plain`: the same, with one INSERT per event into a table without indexes, in its own
  transaction: the cheapest write SQLite offers that is on disk before the answer.
(The spool sketches measured before schema 5 are in git history and bench/RESULTS.md's notes.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app  # noqa: E402
from capgo_stats import protocol  # noqa: E402
from capgo_stats.store import SQLiteStore  # noqa: E402

PLAIN = "plain_event"


def write_nothing(self: SQLiteStore, rows: list, refusals: list, now_ms: int) -> None:
    """Store.write with the storage switched off."""


def write_plain(self: SQLiteStore, rows: list, refusals: list, now_ms: int) -> None:
    """Store.write cut to one plain INSERT per event, through the same transaction helper."""
    columns = ", ".join(protocol.COLUMNS)
    with self.transaction() as conn:
        conn.executemany(
            f"INSERT INTO {PLAIN} ({columns}) VALUES ({', '.join('?' * len(protocol.COLUMNS))})",
            rows,
        )


def create_app(storage: str) -> Flask:
    """The real app, with its storage as `storage` says: off or plain."""
    SQLiteStore.write = {"off": write_nothing, "plain": write_plain}[storage]
    flask_app = app.create_app()
    if storage == "plain":
        with flask_app.extensions["store"].transaction() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {PLAIN} ({', '.join(protocol.COLUMNS)})")
    return flask_app
