"""The event export, format 1: CSV or NDJSON, streamed a batch at a time.

Shared by `flask export` and GET /stats/events.csv. The columns are listed in docs/api.md
("Export format"); a change to them is a new FORMAT_VERSION.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from capgo_stats.filters import Filters
from capgo_stats.store import Store

FORMAT_VERSION = 1
FORMATS = ("csv", "ndjson")

# The exported columns, in order. "time" is `at` as ISO 8601 UTC, for people and spreadsheets;
# every other column is stored as is (see schema.sql).
COLUMNS = (
    "id", "time", "at", "received_at", "device_ts", "app_id", "device_id", "action", "platform",
    "version_name", "bundle", "old_version_name", "custom_id", "version_build", "version_code",
    "version_os", "plugin_version", "is_emulator", "is_prod", "default_channel", "key_id",
    "install_source", "metadata",
)  # fmt: skip
STORED = tuple(name for name in COLUMNS if name != "time")  # "id" first
_AT, _FLAGS, _METADATA = (
    STORED.index("at"),
    (STORED.index("is_emulator"), STORED.index("is_prod")),
    STORED.index("metadata"),
)

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such a
# cell gets a leading single quote, which the spreadsheet shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A spreadsheet that splits the file on ";" (Excel in many locales, LibreOffice) or a tab starts
# a cell after each one inside ours, and after a line break, since our quotes then open mid-cell
# and count for nothing (one that ignores quotes does it on "," too); such a cell may open with
# spaces (trimmed) or a quote (taken as quoting). So a formula start there gets the single quote
# too, just before it: a quote in front of the whole cell would leave that piece live. What is
# skipped holds no separator, so the search is linear; it runs first, as most cells have none.
SEPARATED_FORMULA = re.compile(r'[;,\t\r\n][ "]*+(?=[=+\-@])')


def iso_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds, e.g. 2026-11-01T08:00:00.000Z."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def neutralise(value: Any) -> Any:
    """A CSV cell that no spreadsheet will run as a formula; None is an empty cell."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    if SEPARATED_FORMULA.search(value):
        value = SEPARATED_FORMULA.sub(r"\g<0>'", value)
    return value


def _csv_row(row: tuple) -> list:
    """One stored row as CSV cells, in COLUMNS order."""
    cells = [neutralise(value) for value in row]
    cells.insert(1, iso_time(row[_AT]))
    return cells


def _json_row(row: tuple) -> dict:
    """One stored row as a JSON object: flags as booleans, metadata as an object."""
    record = {"id": row[0], "time": iso_time(row[_AT])}
    record.update(zip(STORED[1:], row[1:], strict=True))
    for index in _FLAGS:
        record[STORED[index]] = bool(row[index])
    if row[_METADATA] is not None:
        record["metadata"] = json.loads(row[_METADATA])
    return record


def csv_chunks(batches: Iterable[list[tuple]]) -> Iterator[str]:
    """The CSV text: the header row, then one chunk per batch of rows (RFC 4180, CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for batch in batches:
        writer.writerows(map(_csv_row, batch))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no rows at all: the header alone
        yield buffer.getvalue()


def ndjson_chunks(batches: Iterable[list[tuple]]) -> Iterator[str]:
    """The NDJSON text: one JSON object per line, one chunk per batch of rows."""
    for batch in batches:
        yield "".join(
            json.dumps(_json_row(row), ensure_ascii=False, separators=(",", ":")) + "\n"
            for row in batch
        )


def chunks(store: Store, filters: Filters, fmt: str) -> Iterator[str]:
    """The export of the events matching filters, as text chunks in constant memory.

    The query runs before this returns, so a database error is raised here, not halfway
    through a file.
    """
    formatter = {"csv": csv_chunks, "ndjson": ndjson_chunks}[fmt]
    stream = formatter(store.iter_events(filters, STORED))
    first = next(stream, "")
    return itertools.chain((first,), stream)
