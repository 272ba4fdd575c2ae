"""Privacy: hashed ids, forgetting a device, and nothing stored about the request itself."""

import hashlib
import hmac
import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from app import create_app
from capgo_stats import protocol
from capgo_stats.settings import SettingError
from capgo_stats.web.context import stored_id
from support.payloads import BATCH_IOS_8, event

SECRET = "pepper-0f-the-operator"
DEVICE = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"
EMAIL = "someone.private@example.com"


def keyed(value: str) -> str:
    """HMAC-SHA256 of a value under SECRET, in hex."""
    return hmac.new(SECRET.encode(), value.encode(), hashlib.sha256).hexdigest()


def database_bytes(app) -> bytes:
    """Every byte of the database and its WAL: what a stolen copy would reveal."""
    path = Path(app.extensions["store"].path)
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


@pytest.fixture
def hashed(tmp_path):
    """An app that stores keyed hashes of the ids."""
    return create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_HASH_SECRET": SECRET})


def test_with_a_hash_secret_ids_are_stored_as_keyed_hashes_only(hashed):
    response = hashed.test_client().post(
        "/stats", json=event(device_id=DEVICE, custom_id=f"  {EMAIL} ")
    )
    assert response.status_code == 200
    [row] = hashed.extensions["store"].query("SELECT device_id, custom_id FROM event")
    assert row == {"device_id": keyed(DEVICE.lower()), "custom_id": keyed(EMAIL)}
    leaked = database_bytes(hashed)
    for value in (DEVICE, DEVICE.lower(), EMAIL, SECRET):
        assert value.encode() not in leaked


def test_hashed_ids_keep_one_device_whatever_the_case_and_resends_are_stored_once(hashed):
    client = hashed.test_client()
    client.post("/stats", json=event(device_id=DEVICE))
    client.post("/stats", json=event(device_id=DEVICE.lower()))
    client.post("/stats", data=json.dumps(BATCH_IOS_8))
    client.post("/stats", data=json.dumps(BATCH_IOS_8))
    devices = hashed.extensions["store"].query(
        "SELECT device_id, count(*) AS n FROM event GROUP BY device_id ORDER BY n"
    )
    assert [d["n"] for d in devices] == [2, 2]


def test_a_look_up_by_a_raw_id_finds_the_hashed_rows(hashed):
    hashed.test_client().post("/stats", json=event(device_id=DEVICE, custom_id=EMAIL))
    with hashed.app_context():
        device, custom = stored_id("device_id", DEVICE), stored_id("custom_id", f" {EMAIL}")
    found = hashed.extensions["store"].query(
        "SELECT count(*) AS n FROM event WHERE device_id = ? AND custom_id = ?", (device, custom)
    )
    assert found == [{"n": 1}]


def test_without_a_secret_a_look_up_id_is_only_normalised(app):
    with app.app_context():
        assert stored_id("device_id", DEVICE) == DEVICE.lower()
        assert stored_id("custom_id", f"  {EMAIL} ") == EMAIL
        assert stored_id("custom_id", "   ") is None


def seed(client):
    """Two devices: one that later set a custom_id, and a bystander."""
    client.post("/stats", json=event(device_id=DEVICE, custom_id=""))
    client.post("/stats", json=event(device_id=DEVICE, custom_id=EMAIL, action="set_fail"))
    client.post("/stats", json=event(device_id="bystander", custom_id="other@example.com"))


@pytest.mark.parametrize("given", [DEVICE, DEVICE.lower(), f"{EMAIL}", f" {EMAIL} "])
def test_forget_device_deletes_every_event_of_that_device_only(app, client, runner, rows, given):
    seed(client)
    result = runner.invoke(args=["forget-device", given])
    assert result.exit_code == 0, result.output
    assert result.output == "Deleted 2 events of that device.\n"
    assert [r["device_id"] for r in rows()] == ["bystander"]


@pytest.mark.parametrize("given", [DEVICE, DEVICE.lower(), EMAIL])
def test_forget_device_with_a_hash_secret_hashes_the_id_it_is_given(hashed, given):
    seed(hashed.test_client())
    result = hashed.test_cli_runner().invoke(args=["forget-device", given])
    assert result.output == "Deleted 2 events of that device.\n"
    left = hashed.extensions["store"].query("SELECT device_id FROM event")
    assert left == [{"device_id": keyed("bystander")}]


def test_forget_device_also_deletes_rows_stored_before_the_secret_was_set(make_app):
    make_app().test_client().post("/stats", json=event(device_id=DEVICE))
    # the secret is set later, on purpose
    later = make_app(STATS_HASH_SECRET=SECRET, STATS_HASH_SECRET_CHANGED=True)
    later.test_client().post("/stats", json=event(device_id=DEVICE))
    result = later.test_cli_runner().invoke(args=["forget-device", DEVICE])
    assert result.output == "Deleted 2 events of that device.\n"


def test_forget_device_of_an_unknown_device_deletes_nothing(client, runner, rows):
    seed(client)
    result = runner.invoke(args=["forget-device", "never-seen"])
    assert result.exit_code == 0
    assert result.output == "Deleted 0 events of that device.\n"
    assert len(rows()) == 3


def test_forget_device_refuses_an_empty_id(client, runner, rows):
    seed(client)
    result = runner.invoke(args=["forget-device", "  "])
    assert result.exit_code == 2
    assert "not an empty string" in result.output
    assert len(rows()) == 3


def test_forget_device_on_a_locked_database_says_so_and_deletes_nothing(tmp_path):
    path = tmp_path / "x.db"
    app = create_app({"STATS_DB": str(path), "STATS_BUSY_TIMEOUT_MS": 50})
    seed(app.test_client())
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    result = app.test_cli_runner().invoke(args=["forget-device", DEVICE])
    other.execute("ROLLBACK")
    other.close()
    assert result.exit_code == 1
    assert "database is locked" in result.output
    assert app.extensions["store"].query("SELECT count(*) AS n FROM event") == [{"n": 3}]


def test_no_ip_address_or_request_header_is_stored_or_logged(tmp_path, caplog):
    app = create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_BUSY_TIMEOUT_MS": 50})
    client = app.test_client()
    headers = {
        "X-Forwarded-For": "203.0.113.77",
        "X-Real-IP": "203.0.113.78",
        "User-Agent": "CapacitorUpdater/8.51.14 (com.example.app) ios/17.4 uaMarker",
        "Cookie": "session=cookieMarker",
    }
    environ = {"REMOTE_ADDR": "198.51.100.99"}
    with caplog.at_level(logging.DEBUG):
        client.post(
            "/stats", json=event(device_id="dev-marker"), headers=headers, environ_base=environ
        )
        other = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a fault, so that the store logs something
        client.post(
            "/stats", json=event(device_id="dev-marker"), headers=headers, environ_base=environ
        )
        other.execute("ROLLBACK")
        other.close()
    stored = database_bytes(app)
    assert b"dev-marker" in stored  # the check reads the right bytes
    assert caplog.records, "the fault was logged"
    for marker in ("203.0.113.77", "203.0.113.78", "198.51.100.99", "uaMarker", "cookieMarker"):
        assert marker.encode() not in stored
        assert marker not in caplog.text
    assert "dev-marker" not in caplog.text


def test_forget_device_also_deletes_its_rows_in_the_per_device_tables(app, client, runner):
    seed(client)
    runner.invoke(args=["forget-device", EMAIL])
    store = app.extensions["store"]
    for table in ("device", "device_day"):
        left = store.query(f"SELECT DISTINCT device_id FROM {table}")
        assert left == [{"device_id": "bystander"}], table
    # The rollups hold counts only, and keep them.
    assert store.query("SELECT sum(count) AS n FROM rollup_day") == [{"n": 3}]


@pytest.mark.sqlite_only
def test_forget_device_deletes_a_custom_id_claimed_by_more_devices_than_sqlite_takes_variables(
    app, runner, rows, monkeypatch
):
    store, now = app.extensions["store"], int(time.time() * 1000)
    # SQLite's limit is a build setting (250,000 here, 32,766 in many builds): lower it so a
    # few thousand devices go past it, as a million would on such a build.
    connect = store._connect

    def with_low_limit(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return conn

    monkeypatch.setattr(store, "_connect", with_low_limit)
    store._drop_pool()
    rows_ = [protocol.validate(event(device_id=f"d{i}", custom_id="shared@example.com",
                                     timestamp=now - i), protocol.KNOWN_ACTIONS, now)
             for i in range(2_000)]  # fmt: skip
    store.write(rows_, [], now)
    result = runner.invoke(args=["forget-device", "shared@example.com"])
    assert result.exit_code == 0, result.output
    assert "Deleted 2000 events" in result.output
    assert rows("SELECT count(*) AS n FROM event") == [{"n": 0}]
    assert rows("SELECT count(*) AS n FROM device") == [{"n": 0}]


@pytest.mark.parametrize(
    "first, then", [("", SECRET), (SECRET, ""), (SECRET, "another secret of 24 chars")]
)
def test_a_server_with_another_hash_secret_than_the_database_was_written_with_refuses_to_start(
    make_app, first, then
):
    make_app(STATS_HASH_SECRET=first)
    with pytest.raises(SettingError, match="STATS_HASH_SECRET_CHANGED=1"):
        make_app(STATS_HASH_SECRET=then)
    make_app(STATS_HASH_SECRET=first)  # the same secret starts
    # a change on purpose is remembered: from then on the new secret is the database's
    make_app(STATS_HASH_SECRET=then, STATS_HASH_SECRET_CHANGED=True)
    make_app(STATS_HASH_SECRET=then)
