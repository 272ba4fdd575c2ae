"""stats.db.example: the committed example database, and the dashboard drawn from it."""

import shutil
import sqlite3
from pathlib import Path

import pytest

from app import create_app
from capgo_stats import example
from capgo_stats.store import SQLiteStore as Store
from capgo_stats.store.sqlite_migrations import SCHEMA_VERSION
from support.browser import ARTIFACTS, Page, dump_dom, screenshot, serving

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "stats.db.example"
APPS = ["com.example.desktop", "com.example.notes", "com.example.shop"]


def read_only(path):
    """A connection that cannot change the file (not even its journal mode)."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def schema_of(path):
    with read_only(path) as conn:
        master = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        return master, conn.execute("PRAGMA user_version").fetchone()[0]


def contents_of(path):
    """Every row of every table, in a stable order."""
    with read_only(path) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
        found = {}
        for table in tables:
            width = len(conn.execute(f'SELECT * FROM "{table}" LIMIT 1').description)
            order = ", ".join(str(i + 1) for i in range(width))
            found[table] = conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
        return found


def test_the_example_database_has_exactly_the_schema_of_schema_sql(tmp_path):
    fresh = tmp_path / "fresh.db"
    Store(str(fresh)).ensure_schema()
    assert schema_of(EXAMPLE) == schema_of(fresh)
    assert schema_of(EXAMPLE)[1] == SCHEMA_VERSION


def test_the_example_database_ships_in_rollback_journal_mode_and_small():
    header = EXAMPLE.read_bytes()[:100]
    assert header[:16] == b"SQLite format 3\x00"
    assert (header[18], header[19]) == (1, 1)  # 1 = rollback journal, 2 = WAL
    assert not EXAMPLE.with_name("stats.db.example-wal").exists()
    assert EXAMPLE.stat().st_size < 6 * 1024 * 1024


@pytest.mark.slow
def test_make_example_writes_the_same_bytes_every_run_and_the_committed_rows(runner, tmp_path):
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    result = runner.invoke(args=["make-example", "--out", str(first)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Wrote ") and "events to" in result.output
    example.build(str(second))
    assert first.read_bytes() == second.read_bytes()
    # Same rows as the committed file: regenerate it (flask make-example) when example.py changes.
    assert contents_of(first) == contents_of(EXAMPLE)


def example_app(tmp_path):
    """The app on a copy of the example (opening it would switch the original to WAL)."""
    copy = tmp_path / "stats.db"
    shutil.copyfile(EXAMPLE, copy)
    return create_app({"STATS_DB": str(copy)})


def test_the_example_tells_its_story(tmp_path):
    client = example_app(tmp_path).test_client()
    shop = client.get("/stats/versions?app_id=com.example.shop").json
    rows = {row["version"]: row for row in shop["versions"]}
    assert list(rows) == ["2.4.1", "2.4.0", "2.3.0"]  # newest first; the beta is dev-only
    assert rows["2.4.0"]["fail_rate"] < 0.05 < rows["2.4.1"]["fail_rate"]
    assert rows["2.4.1"]["share"] > rows["2.4.0"]["share"] > 0
    failures = client.get("/stats/failures?app_id=com.example.shop&version=2.4.1").json
    assert {row["platform"] for row in failures["by_os_version"][:2]} == {"android"}
    dev = client.get("/stats/versions?app_id=com.example.shop&include_dev=1").json
    assert "2.5.0-beta.1" in {row["version"] for row in dev["versions"]}
    notes = client.get("/stats/versions?app_id=com.example.notes").json
    assert notes["ignored_legacy_download_fail"] > 0
    refused = client.get("/stats/rejected").json["by_reason_action"]
    assert {row["reason"] for row in refused} == {"unknown_action", "missing_field"}
    timeline = client.get("/stats/timeline?app_id=com.example.shop").json["points"]
    assert all(p["active_devices"] > 0 for p in timeline[:-1])


def png_width(path):
    return int.from_bytes(path.read_bytes()[16:20], "big")


@pytest.mark.slow
def test_the_dashboard_on_the_example_renders_in_chromium_with_the_right_numbers(tmp_path):
    app = example_app(tmp_path)
    profile = tmp_path / "profile"
    with serving(app) as base:
        url = f"{base}/?app_id=com.example.shop"
        page = Page(dump_dom(profile, url))
        wide = screenshot(profile, url, ARTIFACTS / "dashboard.png", 1280, 2600)
        phone = screenshot(profile, url, ARTIFACTS / "dashboard-phone.png", 390, 4200)
    assert (png_width(wide), png_width(phone)) == (1280, 390)
    assert page.apps == APPS and page.current_app == "com.example.shop"
    client = app.test_client()
    report = client.get("/stats/versions?app_id=com.example.shop").json
    for row in report["versions"]:
        shown = page.row(row["version"])
        assert shown["devices"] == str(row["devices"])
        assert shown["share"] == f"{row['share'] * 100:.1f} %"
        assert (shown["installs"], shown["failures"]) == (
            str(row["installs"]),
            str(row["failures"]),
        )
        outcomes = (shown["installed_devices"], shown["failed_devices"])
        assert outcomes == (str(row["installed_devices"]), str(row["failed_devices"]))
    summary = client.get("/stats/summary?app_id=com.example.shop").json
    assert page.figure("active_7d") == str(summary["active_devices"]["7d"])
    assert page.figure("minutes_since_last_event").endswith("days ago")
    assert set(page.bars) == {"shares", "adoption", "outcomes", "usage", "active"}
    assert all(page.bars[name] for name in page.bars)
    points = client.get("/stats/timeline?app_id=com.example.shop").json["points"]
    drawn = sum(
        int(b["data-value"]) for b in page.bars["outcomes"] if b["data-series"] == "failures"
    )
    assert drawn == sum(p["failures"] for p in points)
