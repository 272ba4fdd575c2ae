"""The app as a whole: configuration, the database file, errors, and commands."""

import multiprocessing
import sqlite3

import pytest

from app import create_app
from capgo_stats.settings import SettingError
from support.payloads import event


def test_create_app_reads_settings_from_stats_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("STATS_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv("STATS_MAX_BODY", "1048576")
    monkeypatch.setenv("STATS_DURABLE", "1")
    app = create_app()
    assert app.config["STATS_DB"] == str(tmp_path / "env.db")
    assert app.config["MAX_CONTENT_LENGTH"] == 1048576
    assert app.config["STATS_DURABLE"] is True
    assert (tmp_path / "env.db").exists()


def test_a_setting_that_is_not_a_number_stops_the_app_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("STATS_MAX_BODY", "4MB")
    with pytest.raises(SettingError, match="STATS_MAX_BODY must be a whole number"):
        create_app()


@pytest.mark.parametrize(
    "name, value, advice",
    [
        ("STATS_MAX_BODY", "0", "Set STATS_MAX_BODY to 262144 or more"),
        ("STATS_MAX_BODY", "65535", "a full batch of 200 events"),
        ("STATS_MAX_BODY", "-1", "Set STATS_MAX_BODY to 262144 or more"),
        ("STATS_BUSY_TIMEOUT_MS", "-1", "STATS_BUSY_TIMEOUT_MS cannot be negative"),
        ("STATS_READ_TIMEOUT_MS", "-1", "STATS_READ_TIMEOUT_MS cannot be negative"),
        ("STATS_RETENTION_DAYS", "-30", "STATS_RETENTION_DAYS cannot be negative"),
        ("STATS_MAX_DB_MB", "-1", "STATS_MAX_DB_MB cannot be negative"),
    ],
)
def test_a_setting_that_would_lose_data_stops_the_start_with_what_to_do(
    tmp_path, monkeypatch, name, value, advice
):
    monkeypatch.setenv("STATS_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=advice):
        create_app()
    with pytest.raises(SettingError, match=advice):  # from test_config as from the environment
        create_app({"STATS_DB": str(tmp_path / "env.db"), name: int(value)})
    assert not (tmp_path / "env.db").exists()  # refused before the database was opened


def test_the_lowest_stats_max_body_takes_a_full_plugin_batch(tmp_path):
    from capgo_stats.settings import MIN_MAX_BODY
    from support.payloads import BATCH_IOS_8

    app = create_app({"STATS_DB": str(tmp_path / "x.db"), "STATS_MAX_BODY": MIN_MAX_BODY})
    batch = [{**BATCH_IOS_8[i % 2], "device_id": f"device-{i:032d}"} for i in range(200)]
    response = app.test_client().post("/stats", json=batch)
    assert response.status_code == 200, response.json
    stored = app.extensions["store"].query("SELECT count(*) AS n FROM event")
    assert stored == [{"n": len({(e["device_id"], e["action"]) for e in batch})}]


def test_the_default_database_is_stats_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("STATS_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    create_app()
    assert (tmp_path / "stats.db").exists()


@pytest.mark.sqlite_only
def test_the_database_is_created_on_first_use_with_its_schema_version(app):
    from capgo_stats.store.sqlite_migrations import SCHEMA_VERSION

    store = app.extensions["store"]
    assert store.query("PRAGMA user_version") == [{"user_version": SCHEMA_VERSION}]
    assert store.query("PRAGMA journal_mode") == [{"journal_mode": "wal"}]


@pytest.mark.sqlite_only
def test_schema_sql_applied_twice_does_no_harm(app, client):
    from capgo_stats.store.sqlite_migrations import SCHEMA

    client.post("/stats", json=event())
    store = app.extensions["store"]
    with store.connection() as conn:
        conn.executescript(SCHEMA.read_text())
        conn.executescript(SCHEMA.read_text())
    assert store.query("SELECT count(*) AS n FROM event") == [{"n": 1}]


def test_init_db_asks_first_and_keeps_the_data_when_told_no(runner, client, app):
    client.post("/stats", json=event())
    result = runner.invoke(args=["init-db"], input="n\n")
    assert result.exit_code == 1
    assert app.extensions["store"].query("SELECT count(*) AS n FROM event") == [{"n": 1}]


def test_init_db_with_yes_recreates_an_empty_database(runner, client, app):
    client.post("/stats", json=event())
    result = runner.invoke(args=["init-db", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Initialized the database" in result.output
    store = app.extensions["store"]
    assert store.query("SELECT count(*) AS n FROM event") == [{"n": 0}]
    assert client.post("/stats", json=event()).status_code == 200


def test_an_unknown_url_is_a_404_json_error(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_a_wrong_method_is_a_405_json_error_that_keeps_allow(client):
    response = client.delete("/stats")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


def test_an_unexpected_error_is_a_500_json_error_without_internals(app, client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.extensions["store"], "counts", explode)
    app.testing = False  # as in production: the error is answered, not raised into the test
    response = client.get("/stats/counts")
    assert response.status_code == 500
    assert response.json == {
        "error": "internal_error",
        "message": "The server hit an unexpected error.",
    }
    assert b"secret" not in response.data


def _send_events(db_path: str, worker: int, n: int, results) -> None:
    """Post n events one by one from a process of its own."""
    app = create_app({"STATS_DB": db_path})
    client = app.test_client()
    statuses = [
        client.post("/stats", json=event(device_id=f"w{worker}-{i}")).status_code for i in range(n)
    ]
    results.put(statuses)


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    db = str(tmp_path / "multi.db")
    create_app({"STATS_DB": db})
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_send_events, args=(db, w, 300, results)) for w in range(2)]
    for p in procs:
        p.start()
    statuses = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [set(s) for s in statuses] == [{200}, {200}]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM event").fetchone() == (600,)


@pytest.mark.parametrize("path", ["/stats", "/stats/counts"])
def test_head_requests_work_on_read_routes(client, path):
    assert client.head(path).status_code == 200
