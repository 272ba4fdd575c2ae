"""Databases made by the older schemas in tests/data, for the migration tests."""

import sqlite3
from pathlib import Path

import events

DATA = Path(__file__).with_name("data")


def old_database(path: Path, version: int, stories: list[dict], *statements: str) -> None:
    """Write a schema-`version` database holding these events (validated now) and statements."""
    now = events.now_ms()
    columns = ", ".join(events.COLUMNS)
    conn = sqlite3.connect(path)
    try:
        conn.executescript((DATA / f"schema_v{version}.sql").read_text())
        conn.executemany(
            f"INSERT INTO event ({columns}) VALUES ({', '.join('?' * len(events.COLUMNS))})",
            [events.validate(story, events.KNOWN_ACTIONS, now) for story in stories],
        )
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()
