"""Faults of the database: each answered 503 JSON, logged once, and gone without a restart."""

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from app import create_app
from support.client import post
from support.payloads import event

NOBODY = 65534  # the unprivileged user and group of most Linux systems


def stored_count(app) -> int:
    """How many events the database holds."""
    return app.extensions["store"].query("SELECT count(*) AS n FROM event")[0]["n"]


def fault_lines(caplog) -> list[str]:
    """The store's log lines: one per fault, one per recovery."""
    return [r.getMessage() for r in caplog.records if r.name == "capgo_stats.store"]


def assert_503(response) -> None:
    """The answer to a request the database could not take."""
    assert response.status_code == 503
    assert response.json["error"] == "storage_unavailable"
    assert set(response.json) == {"error", "message"}


@pytest.fixture
def shared_dir():
    """A folder the unprivileged user can reach too (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="capgo-stats-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@contextmanager
def read_only(path: Path):
    """Make a file read-only for this process, also when the tests run as root.

    Root writes through file modes, so as root the block runs with the effective user and
    group of `nobody`, as a server run by a service account would.
    """
    path.chmod(0o444)
    try:
        if os.geteuid() != 0:
            yield
            return
        os.setegid(NOBODY)
        os.seteuid(NOBODY)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        path.chmod(0o666)


def test_a_locked_database_is_logged_once_and_its_recovery_once(tmp_path, caplog):
    path = tmp_path / "x.db"
    app = create_app({"STATS_DB": str(path), "STATS_BUSY_TIMEOUT_MS": 50})
    client = app.test_client()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.INFO, logger="capgo_stats.store"):
        for _ in range(3):
            assert_503(post(client, event()))
        assert_503(post(client, [event(), event()]))
        other.execute("ROLLBACK")
        assert post(client, event()).status_code == 200
        assert post(client, event()).status_code == 200
    other.close()
    [fault, recovery] = fault_lines(caplog)
    assert "database cannot take writes (answering 503): database is locked" == fault
    assert recovery.startswith("database takes writes again")
    assert stored_count(app) == 2


def test_a_full_database_gets_503_stores_no_part_of_the_batch_and_recovers(tmp_path, caplog):
    app = create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_MAX_DB_MB": 1})
    client = app.test_client()

    def batch(n):
        return [event(device_id=f"b{n}-{i}", custom_id="c" * 1000) for i in range(20)]

    with caplog.at_level(logging.INFO, logger="capgo_stats.store"):
        for n in range(200):  # 1 MB holds a few hundred such events
            response = post(client, batch(n))
            if response.status_code != 200:
                break
        assert_503(response)
        before = stored_count(app)
        assert before >= 100 and before % 20 == 0
        assert_503(post(client, batch(n)))
        assert stored_count(app) == before

        # What `flask prune` or forget-device would do: delete rows, freeing pages for reuse.
        other = sqlite3.connect(tmp_path / "x.db")
        with other:
            deleted = other.execute("DELETE FROM event WHERE id <= ?", (before // 2,)).rowcount
        other.close()
        assert post(client, batch(n)).status_code == 200
    assert stored_count(app) == before - deleted + 20
    [fault, recovery] = fault_lines(caplog)
    assert "database or disk is full" in fault
    assert recovery.startswith("database takes writes again")


def test_a_read_only_database_gets_503_and_takes_writes_once_writable(shared_dir, caplog):
    path = shared_dir / "x.db"
    app = create_app({"STATS_DB": str(path)})
    client = app.test_client()
    assert post(client, event()).status_code == 200
    with caplog.at_level(logging.INFO, logger="capgo_stats.store"):
        with read_only(path):
            assert_503(post(client, event()))
            assert_503(post(client, [event()]))
            # Reads still answer, from what was folded before (the fold cannot write either).
            assert client.get("/stats/counts").status_code == 200
        assert post(client, event()).status_code == 200
    assert stored_count(app) == 2
    assert client.get("/stats/counts").json["counts"][0]["count"] == 2
    [fault, recovery] = fault_lines(caplog)
    assert "is read-only" in fault
    assert recovery.startswith("database takes writes again")


def test_a_vanished_database_gets_503_on_every_route_and_works_once_put_back(tmp_path, caplog):
    path = tmp_path / "x.db"
    app = create_app({"STATS_DB": str(path)})
    client = app.test_client()
    assert post(client, event()).status_code == 200
    with caplog.at_level(logging.INFO, logger="capgo_stats.store"):
        path.rename(tmp_path / "moved.db")
        assert_503(post(client, event()))
        assert_503(client.get("/stats/counts"))
        assert not path.exists(), "the server must not create an empty database in its place"
        (tmp_path / "moved.db").rename(path)
        assert post(client, event()).status_code == 200
    assert client.get("/stats/counts").json["counts"][0]["count"] == 2
    [fault, recovery] = fault_lines(caplog)
    assert "is missing" in fault
    assert recovery.startswith("database takes writes again")


def test_a_deleted_database_restored_from_a_backup_is_used_without_a_restart(tmp_path):
    path = tmp_path / "x.db"
    app = create_app({"STATS_DB": str(path)})
    client = app.test_client()
    assert post(client, event(device_id="before-backup")).status_code == 200
    backup = sqlite3.connect(tmp_path / "backup.db")
    source = sqlite3.connect(path)
    source.backup(backup)
    source.close()
    backup.close()
    assert post(client, event(device_id="after-backup")).status_code == 200
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert_503(post(client, event(device_id="while-gone")))
    shutil.copy(tmp_path / "backup.db", path)
    assert post(client, event(device_id="after-restore")).status_code == 200
    devices = app.extensions["store"].query("SELECT device_id FROM event ORDER BY id")
    assert [d["device_id"] for d in devices] == ["before-backup", "after-restore"]


def test_workers_starting_together_on_a_new_database_wait_for_each_other(tmp_path):
    path = tmp_path / "new.db"
    # Another worker is creating the same new database (it holds the write lock for 0.2 s).
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, other.execute, ("ROLLBACK",))
    release.start()
    try:
        app = create_app({"STATS_DB": str(path)})
    finally:
        release.join()
        other.close()
    assert app.extensions["store"].query("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    assert post(app.test_client(), event()).status_code == 200
