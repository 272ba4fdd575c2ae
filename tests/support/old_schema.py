"""Databases made by the older schemas in tests/data, for the migration tests."""

import sqlite3
from pathlib import Path

from capgo_stats import protocol

DATA = Path(__file__).resolve().parents[1] / "data"


def old_database(path: Path, version: int, stories: list[dict], *statements: str) -> None:
    """Write a schema-`version` database holding these events (validated now) and statements."""
    now = protocol.now_ms()
    stored = protocol.COLUMNS[:-1]  # the fingerprint came with schema 5
    columns = ", ".join(stored)
    conn = sqlite3.connect(path)
    try:
        conn.executescript((DATA / f"schema_v{version}.sql").read_text())
        conn.executemany(
            f"INSERT INTO event ({columns}) VALUES ({', '.join('?' * len(stored))})",
            [protocol.validate(story, protocol.KNOWN_ACTIONS, now)[:-1] for story in stories],
        )
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()
