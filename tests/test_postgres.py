"""PostgreSQL as the store: what only it has (a fold queue, advisory locks, a pool, copy-db),
and several servers on one database. Every other storage test runs on it too (conftest.py)."""

import http.client
import json
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from app import create_app
from capgo_stats import counting, fold, protocol
from capgo_stats.settings import SettingError
from capgo_stats.store import PostgresStore, SchemaTooNew
from support.client import post, post_ok
from support.old_schema import old_database
from support.payloads import event
from support.postgres import wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
NOW = protocol.now_ms()
HOUR = 3_600_000
# The reports a user reads, per app: every one must answer the same on both stores.
REPORTS = ("versions", "failures", "summary", "timeline", "health", "adoption", "devices")


def report_urls(apps, events=True):
    """Every report route for these apps, and the app-wide ones; the raw event lists (which
    show ids) only with `events`."""
    urls = ["/stats/counts"] + ["/stats/events?limit=50"] * events
    for app_id in apps:
        urls += [f"/stats/{name}?app_id={app_id}" for name in REPORTS]
        urls += [f"/?app_id={app_id}"] + [f"/stats/events?app_id={app_id}&kind=failure"] * events
    return urls


def same_answers(one, other, urls):
    """Assert that two apps answer every URL with the same status and body."""
    for url in urls:
        a, b = one.test_client().get(url), other.test_client().get(url)
        assert (a.status_code, a.get_data(as_text=True)) == (
            b.status_code,
            b.get_data(as_text=True),
        ), url


def story(n=120):
    """A mixed history of events: installs, failures, uninstalls, launches, two apps."""
    actions = ("set", "set_fail", "download_complete", "app_moved_to_foreground")
    actions += ("app_launch_ready",)
    return [
        event(app_id=("com.a", "com.b")[i % 2], device_id=f"D{i % 11}", action=actions[i % 5],
              platform=("ios", "android")[i % 3 == 0], version_name=f"1.{i % 3}.0",
              old_version_name=f"1.{(i + 1) % 3}.0", plugin_version=("6.10.3", "8.51.14")[i % 2],
              is_prod=i % 7 != 0, timestamp=NOW - i * 3 * HOUR - i,
              metadata={"duration_ms": str(200 + i)})
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def new_database(postgres, request):
    """The URL of a database of its own, made for this test (no schema yet)."""
    return postgres.create_database(f"t_{abs(hash(request.node.nodeid)) % 10**9}")


def sqlite_app(path):
    return create_app({"TESTING": True, "STATS_DB": str(path)})


def pg_app(url, **settings):
    return create_app({"TESTING": True, "STATS_DATABASE_URL": url, **settings})


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"STATS_DATABASE_URL": "mysql://x@h/db"}, "must be a PostgreSQL URL"),
        ({"STATS_DATABASE_URL": "postgresql://x@h/db", "STATS_MAX_DB_MB": 10}, "STATS_MAX_DB_MB"),
        ({"STATS_DATABASE_URL": "postgresql://x@h/db", "STATS_PG_POOL_SIZE": 0}, "POOL_SIZE"),
    ],
)
def test_a_database_setting_that_cannot_work_refuses_to_start(settings, says, tmp_path):
    with pytest.raises(SettingError, match=says):
        create_app({"TESTING": True, "STATS_DB": str(tmp_path / "x.db"), **settings})
    assert not (tmp_path / "x.db").exists()


# -- schema ------------------------------------------------------------------------------------


def test_servers_starting_together_on_a_new_database_create_its_schema_once(new_database):
    apps, errors = [], []

    def start():
        try:
            apps.append(pg_app(new_database))
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(apps) == 6
    for app in apps:
        assert app.test_client().get("/healthz").json["schema_version"] == 5
        app.extensions["store"].close()


def test_a_postgresql_database_of_a_newer_schema_is_refused_and_left_alone(store_kind, app):
    store = app.extensions["store"]
    with store.transaction() as conn:
        conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(SchemaTooNew, match="schema 99"):
        pg_app(store.url)
    assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [{"value": 99}]


def test_healthz_on_postgresql_gives_the_schema_and_the_backlog(store_kind, client):
    post_ok(client, [event(device_id=f"d{i}") for i in range(3)])
    assert client.get("/healthz").json == {
        "status": "ok",
        "database": "writable",
        "schema_version": 5,
        "pending_events": 3,
    }


def test_a_read_only_postgresql_database_is_a_503_on_healthz_and_ingest(store_kind, app, client):
    store = app.extensions["store"]
    name = store.url.rsplit("/", 1)[1]
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    try:
        store.close()  # new connections take the setting
        assert client.get("/healthz").status_code == 503
        assert post(client, event()).status_code == 503
    finally:
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    store.close()
    assert post(client, event()).status_code == 200


def test_a_server_on_a_read_only_database_starts_and_answers_reads(store_kind, app, client):
    """As a dashboard server on a read replica does: reads from what the primary folded."""
    post_ok(client, [event(device_id=f"d{i}") for i in range(3)])
    fold.catch_up(app.extensions["store"])
    post_ok(client, event(device_id="not folded yet"))
    url = app.extensions["store"].url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET default_transaction_read_only = on"
        )
    try:
        replica = pg_app(url)
        reader = replica.test_client()
        assert reader.get("/stats/counts").json["counts"][0]["count"] == 3
        assert reader.get("/healthz").status_code == 503
        assert post(reader, event()).status_code == 503
        replica.extensions["store"].close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(
                f"ALTER DATABASE {url.rsplit('/', 1)[1]} RESET default_transaction_read_only"
            )


# -- the fold queue --------------------------------------------------------------------------


def test_an_event_committed_after_one_with_a_higher_id_is_folded_once(store_kind, app, client):
    """PostgreSQL hands out ids before commit: a position in the id order would skip this."""
    store = app.extensions["store"]
    early = protocol.validate(event(device_id="early"), protocol.KNOWN_ACTIONS, NOW)
    with store.transaction() as conn:
        store._insert_events(conn, [early])  # takes id 1, commits last
        post_ok(client, event(device_id="late"))  # id 2, committed and folded first
        assert fold.catch_up(store) == 1
    assert fold.catch_up(store) == 1
    assert fold.catch_up(store) == 0
    ids = store.query("SELECT id, device_id FROM event ORDER BY id")
    assert [(row["id"], row["device_id"]) for row in ids] == [(1, "early"), (2, "late")]
    assert client.get("/stats/counts").json["counts"][0]["count"] == 2


def test_folds_racing_from_many_threads_count_every_event_once(store_kind, app, client):
    store, stop, folded = app.extensions["store"], threading.Event(), []

    def folder():
        while not stop.is_set():
            folded.append(store.fold(counting.fold, 7))

    folders = [threading.Thread(target=folder) for _ in range(4)]
    for thread in folders:
        thread.start()
    try:
        for i in range(30):
            batch = [event(device_id=f"d{i}", timestamp=NOW - i * 10 - j) for j in range(9)]
            post_ok(client, batch)
    finally:
        stop.set()
        for thread in folders:
            thread.join()
    fold.catch_up(store)
    assert sum(folded) + store.pending() <= 270
    assert client.get("/stats/counts").json["counts"][0]["count"] == 270
    assert store.query("SELECT sum(devices) AS n FROM device_bundle") == [{"n": 30}]
    assert store.query("SELECT count(*) AS n FROM fold_queue") == [{"n": 0}]


# -- an unreachable database ---------------------------------------------------------------


def test_an_unreachable_database_is_a_503_and_the_server_recovers_without_a_restart(
    store_kind, postgres, database
):
    app = pg_app(database["STATS_DATABASE_URL"], STATS_BUSY_TIMEOUT_MS=1000)
    client = app.test_client()
    post_ok(client, event(device_id="before"))
    postgres.stop_server()
    try:
        down = post(client, event(device_id="during"))
        assert down.status_code == 503
        assert down.json["error"] == "storage_unavailable"
        assert client.get("/healthz").status_code == 503
    finally:
        postgres.start_server()
        wait_until_ready(database["STATS_DATABASE_URL"])
    statuses, deadline = [], time.monotonic() + 15
    while 200 not in statuses[-1:] and time.monotonic() < deadline:
        statuses.append(post(client, event(device_id=f"after{len(statuses)}")).status_code)
    assert statuses[-1] == 200  # the pool dropped the broken connections and made new ones
    assert set(statuses) <= {200, 503}
    devices = app.extensions["store"].query("SELECT device_id FROM event ORDER BY id")
    expected = ["before"] + [f"after{i}" for i, status in enumerate(statuses) if status == 200]
    assert [row["device_id"] for row in devices] == expected
    app.extensions["store"].close()


# -- copy-db ---------------------------------------------------------------------------------


def test_copy_db_moves_the_example_database_with_every_report_unchanged(
    store_kind, tmp_path, new_database
):
    shutil.copy(ROOT / "stats.db.example", tmp_path / "stats.db")
    source = sqlite_app(tmp_path / "stats.db")
    result = source.test_cli_runner().invoke(args=["copy-db", "--to", new_database])
    assert result.exit_code == 0, result.output
    assert "Copied 12945 events" in result.output
    assert "set STATS_DATABASE_URL=" in result.output
    moved = pg_app(new_database)
    apps = ["com.example.desktop", "com.example.notes", "com.example.shop"]
    same_answers(source, moved, report_urls(apps))
    for table in ("event", "rollup_day", "refusal", "device", "version_device", "meta"):
        sql = f"SELECT count(*) AS n FROM {table}"
        assert source.extensions["store"].query(sql) == moved.extensions["store"].query(sql)
    # ids carry on after the copied ones, and a copied event's resend is still stored once
    post_ok(moved.test_client(), event(device_id="new"))
    [newest] = moved.extensions["store"].query("SELECT max(id) AS id FROM event")
    assert newest["id"] > 12945
    moved.extensions["store"].close()


def test_copy_db_moves_a_schema_4_database_and_folds_what_it_had_not(
    store_kind, tmp_path, new_database
):
    old_database(tmp_path / "v4.db", 4, story())
    source = sqlite_app(tmp_path / "v4.db")
    late = [event(device_id=f"late{i}", timestamp=NOW - i) for i in range(4)]
    post_ok(source.test_client(), late)
    assert source.extensions["store"].pending() == 4  # posted, not folded yet
    result = source.test_cli_runner().invoke(args=["copy-db", "--to", new_database])
    assert result.exit_code == 0, result.output
    assert "4 events wait for PostgreSQL's fold" in result.output
    moved = pg_app(new_database)
    same_answers(source, moved, report_urls(["com.a", "com.b"]))
    moved.extensions["store"].close()


def test_copy_db_refuses_a_database_that_is_not_empty_and_changes_nothing(
    store_kind, tmp_path, new_database
):
    target = pg_app(new_database)
    post_ok(target.test_client(), event(device_id="already there"))
    source = sqlite_app(tmp_path / "stats.db")
    post_ok(source.test_client(), story(10))
    result = source.test_cli_runner().invoke(args=["copy-db", "--to", new_database])
    assert result.exit_code == 1
    assert "already holds capgo-stats data" in result.output
    kept = target.extensions["store"].query("SELECT device_id FROM event")
    assert kept == [{"device_id": "already there"}]
    target.extensions["store"].close()


# -- several servers on one database ---------------------------------------------------------


def _send(servers, body, acknowledged, lock):
    """POST a body to the first server that answers 200, as a plugin resends; None if none."""
    for server in servers:
        try:
            status, _, _ = server.request("POST", "/stats", json.dumps(body).encode())
        except (OSError, http.client.HTTPException):  # killed before or while answering
            continue
        if status == 200:
            with lock:
                acknowledged.extend(body)
            return server
    return None


@pytest.mark.slow
def test_two_servers_on_one_database_lose_nothing_when_one_is_killed_and_count_as_sqlite(
    store_kind, serve, database, tmp_path
):
    url = database["STATS_DATABASE_URL"]
    one = serve(workers=2, STATS_DATABASE_URL=url)
    two = serve(db=tmp_path / "unused.db", workers=2, STATS_DATABASE_URL=url)
    acknowledged, lock, killed = [], threading.Lock(), threading.Event()

    def client(n):
        order = [one, two] if n % 2 else [two, one]
        for i in range(80):  # 8 clients x 80 bodies x 1-35 events: over 10,000 events
            body = [
                event(app_id=("com.a", "com.b")[n % 2], device_id=f"c{n}d{i % 13}",
                      action=("set", "set_fail", "app_moved_to_foreground", "download_complete",
                              "app_launch_ready")[(i + j) % 5],
                      version_name=f"1.{(i // 10) % 4}.0", platform=("ios", "android")[j % 2],
                      timestamp=NOW - (n * 100_000 + i * 40 + j) * 1000,
                      metadata={"duration_ms": str(100 + j)})
                for j in range(1 + (i * 7 + n) % 35)
            ]  # fmt: skip
            assert _send(order if not killed.is_set() else [one], body, acknowledged, lock)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in clients:
        thread.start()
    while len(acknowledged) < 4000:
        time.sleep(0.01)
    two.kill()
    killed.set()
    for thread in clients:
        thread.join()
    assert len(acknowledged) >= 10_000
    status, _, counts = one.request("GET", "/stats/counts")
    assert status == 200
    assert sum(c["count"] for c in counts["counts"]) == len(acknowledged)
    pg = PostgresStore(url)
    stored = pg.query(
        "SELECT count(*) AS n, count(DISTINCT (device_id, device_ts)) AS d FROM event"
    )
    assert stored == [{"n": len(acknowledged), "d": len(acknowledged)}]
    assert pg.pending() == 0
    pg.close()
    reference = sqlite_app(tmp_path / "reference.db")
    for start in range(0, len(acknowledged), 200):
        post_ok(reference.test_client(), acknowledged[start : start + 200])
    fold.catch_up(reference.extensions["store"])
    moved = pg_app(url)
    same_answers(reference, moved, report_urls(["com.a", "com.b"], events=False))
    moved.extensions["store"].close()


# -- long reads beside ingest, on PostgreSQL under gevent ---------------------------------------


def _failure_flood(url: str, n: int) -> None:
    """n made-up failure breakdowns of today in failure_day, as the fold would leave them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO failure_day (app_id, day, action, bundle, platform, plugin_version,"
            " version_os, prod, count) SELECT 'com.flood.app', %s, 'update_fail', 'v' || n,"
            " 'android', '8.' || n, n || '.0', 1, 1 FROM generate_series(1, %s) AS n",
            (NOW // protocol.DAY_MS, n),
        )
        conn.execute("ANALYZE failure_day")


@pytest.mark.slow
def test_a_post_is_answered_while_a_long_postgresql_read_runs_on_the_same_single_worker(
    store_kind, serve, database
):
    # psycopg chooses how it waits on import: imported by gunicorn's master before gevent
    # patched the worker, every statement held the worker's event loop until it ended.
    url = database["STATS_DATABASE_URL"]
    _failure_flood(url, 300_000)
    server = serve(workers=1, STATS_DATABASE_URL=url, STATS_READ_TIMEOUT_MS="0")
    read = {}

    def long_read():
        started = time.monotonic()
        read["status"] = server.request("GET", "/stats/failures?app_id=com.flood.app")[0]
        read["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=long_read)
    reader.start()
    time.sleep(0.3)  # the read has begun
    answers = []
    for i in range(5):
        started = time.monotonic()
        status, _, _ = server.request(
            "POST", "/stats", json.dumps(event(device_id=f"p{i}")).encode()
        )
        answers.append((status, time.monotonic() - started))
    reader.join(timeout=60)
    assert read["status"] == 200
    assert read["seconds"] > 1.0, "the read was too short to tell: make the flood bigger"
    assert [status for status, _ in answers] == [200] * 5, answers
    assert max(seconds for _, seconds in answers) < 0.5, (answers, read)
