"""A real gunicorn on loopback: concurrent load, kill -9, faults and big bodies over sockets."""

import http.client
import json
import logging
import runpy
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from bench.load import Load
from capgo_stats import protocol
from support.live import ROOT
from support.payloads import event

# Real gunicorn servers, sockets and kill -9.
pytestmark = pytest.mark.slow


def stored(db, sql, params=()):
    """Rows read straight from the database file."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_eight_clients_on_four_workers_get_200s_and_every_accepted_event_is_stored(serve, tmp_path):
    server = serve(workers=4)
    # 240 single events and 240 batches of 50 valid events plus one refused: 12,240 accepted.
    load = Load(server.url, clients=8, requests=480, batch=50, refused_per_batch=1, keep_ids=True)
    tally = load.run()
    assert tally.errors == {}
    assert dict(tally.statuses) == {200: 480}
    assert tally.events_accepted == 12_240
    db = tmp_path / "stats.db"
    ids = [row[0] for row in stored(db, "SELECT device_id FROM event")]
    assert len(ids) == tally.events_accepted
    assert set(ids) == set(tally.accepted_ids)
    status, _, body = server.request("GET", "/stats/counts?app_id=bench.load")
    assert status == 200
    assert sum(c["count"] for c in body["counts"]) == tally.events_accepted
    assert stored(db, "SELECT sum(count) FROM refusal WHERE reason = 'unknown_action'") == [(240,)]


def _load_then_kill(server, accepted_before_kill: int):
    """Run a load against the server and kill -9 it once that many events got a 200."""
    load = Load(server.url, clients=8, requests=2000, duration=60, keep_ids=True)
    runner = threading.Thread(target=load.run)
    runner.start()
    deadline = time.monotonic() + 60
    while load.tally.events_accepted < accepted_before_kill and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()
    while not load.tally.errors and time.monotonic() < deadline:
        time.sleep(0.005)  # the clients meet the dead server
    load.stop()
    runner.join(timeout=60)
    return load.tally


def test_kill_9_in_the_middle_of_a_load_loses_no_acknowledged_event(serve, tmp_path):
    db = tmp_path / "stats.db"
    acknowledged = []
    for _ in range(3):
        tally = _load_then_kill(serve(db=db, workers=4), accepted_before_kill=3000)
        assert tally.events_accepted >= 3000
        assert tally.errors, "no request was cut by the kill"
        assert set(tally.statuses) == {200}
        assert tally.statuses[200] < 2000, "the load ended before the kill"
        acknowledged += tally.accepted_ids

    restarted = serve(db=db, workers=4)
    assert stored(db, "PRAGMA integrity_check") == [("ok",)]
    kept = {row[0] for row in stored(db, "SELECT device_id FROM event")}
    assert set(acknowledged) - kept == set()
    status, _, _ = restarted.request("POST", "/stats", json.dumps(event()).encode())
    assert status == 200
    # The background folds were killed too: the counts still equal the raw events kept, once
    # each, whatever moment each kill hit.
    status, _, body = restarted.request("GET", "/stats/counts")
    assert status == 200
    counted = {(c["app_id"], c["action"]): c["count"] for c in body["counts"]}
    raw = stored(db, "SELECT app_id, action, count(*) FROM event GROUP BY 1, 2")
    assert counted == {(app, action): n for app, action, n in raw}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_6_mb_body_gets_a_413_json_answer_not_a_connection_reset(serve, chunked):
    server = serve(workers=1)
    body = b"[" + b" " * (6 * 1024 * 1024) + b"]"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    if chunked:
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        conn.request("POST", "/stats", body=chunks, encode_chunked=True)
    else:
        conn.request("POST", "/stats", body=body)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "body_too_large"
    conn.close()


def test_a_big_batch_with_a_wrong_ingest_key_gets_its_403_not_a_reset(serve):
    server = serve(workers=1, STATS_INGEST_KEY="k3y")
    batch = json.dumps([event(device_id=f"d{i}", custom_id="x" * 1000) for i in range(200)])
    status, _, body = server.request("POST", "/stats?key=wrong", batch.encode())
    assert status == 403
    assert body["error"] == "invalid_key"


def test_a_database_locked_by_another_process_gets_503_then_200_with_one_log_line(serve, tmp_path):
    db = tmp_path / "stats.db"
    server = serve(db=db, workers=1, STATS_BUSY_TIMEOUT_MS="200")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    answers = [server.request("POST", "/stats", json.dumps(event()).encode()) for _ in range(3)]
    assert [status for status, _, _ in answers] == [503] * 3
    assert all(body["error"] == "storage_unavailable" for _, _, body in answers)
    other.execute("ROLLBACK")
    other.close()
    assert server.request("POST", "/stats", json.dumps(event()).encode())[0] == 200
    log = server.log()
    assert log.count("database cannot take writes") == 1
    assert log.count("database takes writes again") == 1
    assert "Traceback" not in log
    assert stored(db, "SELECT count(*) FROM event") == [(1,)]


def _when_ready():
    """The when_ready hook of gunicorn.conf.py."""
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["when_ready"]


@pytest.mark.parametrize(
    "bind, token, warned",
    [
        (("0.0.0.0", 8000), "", True),
        (("::", 8000), "", True),
        (("0.0.0.0", 8000), "s3cret", False),
        (("127.0.0.1", 8000), "", False),
        (("localhost", 8000), "", False),
        ("/run/capgo-stats.sock", "", False),
    ],
)
def test_gunicorn_warns_at_start_when_it_listens_beyond_loopback_without_a_read_token(
    monkeypatch, caplog, bind, token, warned
):
    monkeypatch.setenv("STATS_READ_TOKEN", token)
    server = SimpleNamespace(
        cfg=SimpleNamespace(address=[bind]), log=logging.getLogger("gunicorn.test")
    )
    with caplog.at_level(logging.WARNING):
        _when_ready()(server)
    assert ("without STATS_READ_TOKEN" in caplog.text) is warned


def test_what_gunicorn_imports_before_forking_its_workers_leaves_the_stores_out():
    # psycopg picks how it waits for the server when imported; in gunicorn's master, before
    # gevent patched a worker, it picked a wait that holds the worker's event loop.
    code = (
        "import sys, capgo_stats.web.access;"
        " print(sorted({'psycopg', 'capgo_stats.store'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_gunicorn_on_loopback_starts_without_the_warning(serve):
    server = serve(workers=1)
    assert "STATS_READ_TOKEN" not in server.log()
    assert "Booting worker" in server.log()


def _seed_events(db, n: int) -> None:
    """Store n valid events straight through the store, as the ingest route would."""
    from capgo_stats.store import SQLiteStore as Store

    store, now = Store(str(db)), protocol.now_ms()
    store.ensure_schema()
    actions = protocol.allowed_actions("")
    rows = [
        protocol.validate(event(device_id=f"device-{i}", timestamp=now - i), actions, now)
        for i in range(n)
    ]
    for start in range(0, n, 5000):
        store.write(rows[start : start + 5000], [], now)


EXPORTED = 60_000  # events in the database of the export tests


@pytest.fixture(scope="module")
def export_db(tmp_path_factory):
    """A database of EXPORTED events, seeded once (it takes seconds) for the export tests."""
    db = tmp_path_factory.mktemp("export") / "stats.db"
    _seed_events(db, EXPORTED)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the one file, to copy it
    conn.close()
    return db


def _copy_of(db, tmp_path):
    copy = tmp_path / "stats.db"
    shutil.copyfile(db, copy)
    return copy


def test_a_csv_export_longer_than_the_worker_timeout_is_sent_whole(serve, tmp_path, export_db):
    # gunicorn kills a worker that has not reported for `timeout` seconds; an export reports
    # each batch it sends (under gevent, a worker whose export waits on a slow reader also
    # reports by itself: the next test is the one where the heartbeat matters). This 11 MB
    # export, read at 1.5 MB/s, keeps the worker sending for about 4.5 s once the ~4 MB of
    # socket buffers are full: longer than a 3 s timeout (which must stay above the 2 s a sync
    # worker lingers on a closing connection).
    db, n = _copy_of(export_db, tmp_path), EXPORTED
    server = serve(db=db, workers=1, GUNICORN_CMD_ARGS="--timeout 3")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", server.port))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.sock = sock
    conn.request("GET", "/stats/events.csv")
    response = conn.getresponse()
    assert response.status == 200
    body, started = bytearray(), time.monotonic()
    while chunk := response.read(64 * 1024):  # raises IncompleteRead if the worker was killed
        body += chunk
        time.sleep(max(0.0, len(body) / 1.5e6 - (time.monotonic() - started)))
    conn.close()
    assert time.monotonic() - started > 6  # so the worker sent for longer than its timeout
    assert body.count(b"\r\n") == n + 1  # the header and every event
    assert "WORKER TIMEOUT" not in server.log()


def test_a_fast_read_csv_export_lets_its_worker_answer_others_meanwhile(serve, tmp_path, export_db):
    # Read as fast as it comes, an export never waits on its socket, so under gevent it would
    # keep its worker's event loop to itself; it lets the others in at each batch it sends.
    server = serve(db=_copy_of(export_db, tmp_path), workers=1)
    export = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    export.request("GET", "/stats/events.csv")
    response = export.getresponse()
    body = bytearray(response.read(64 * 1024))  # it has started

    def read_the_rest():
        while chunk := response.read(64 * 1024):
            body.extend(chunk)

    reader = threading.Thread(target=read_the_rest)
    reader.start()
    answers = []
    while reader.is_alive() and len(answers) < 200:
        answers += _timed_posts(server.port, 1, timeout=5)
    reader.join(timeout=20)
    export.close()
    assert body.count(b"\r\n") == EXPORTED + 1
    assert [status for status, _ in answers] == [200] * len(answers), answers
    assert len(answers) >= 5, f"only {len(answers)} answers during the export"
    assert max(seconds for _, seconds in answers) < 0.5, answers


# -- slow clients --------------------------------------------------------------------------------

# The head of a request, and a body of 120 bytes: what a slow client sends a byte at a time.
SLOW_HEAD = (
    b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 120\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
)


class SlowClients:
    """n connections that each send nothing, or a request's headers or body a byte a second.

    One thread sends every byte; it stops at close() or after 60 s, whichever comes first.
    """

    def __init__(self, port: int, n: int, mode: str, interval: float = 1.0):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
        if mode == "body":  # the headers whole, then the body a byte at a time
            for sock in self.socks:
                sock.sendall(SLOW_HEAD)
        self.data = {"silent": b"", "headers": SLOW_HEAD, "body": b"[" + b" " * 118 + b"]"}[mode]
        self.interval, self.stopped = interval, threading.Event()
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.sender.start()

    def _send(self) -> None:
        deadline = time.monotonic() + 60
        for byte in self.data:
            if self.stopped.is_set() or time.monotonic() > deadline:
                return
            for sock in self.socks:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    pass  # cut off by the server
            self.stopped.wait(self.interval)

    def open_count(self) -> int:
        """How many of the connections the server has not closed (nor answered) yet."""
        count = 0
        for sock in self.socks:
            try:
                sock.setblocking(False)
                data = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                count += 1  # nothing to read: still open, still waiting
            except OSError:
                pass  # reset
            else:
                assert data == b"", "a slow client got an answer"  # b"": closed
            finally:
                sock.setblocking(True)
        return count

    def close(self) -> None:
        self.stopped.set()
        self.sender.join(timeout=5)
        for sock in self.socks:
            sock.close()


def _timed_posts(port: int, n: int, timeout: float = 2.0) -> list[tuple[object, float]]:
    """n single-event POSTs in a row, each on a new connection: (status or error, seconds)."""
    answers = []
    for i in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        started = time.monotonic()
        try:
            conn.request("POST", "/stats", json.dumps(event(device_id=f"normal-{i}")).encode())
            response = conn.getresponse()
            response.read()
            answers.append((response.status, time.monotonic() - started))
        except OSError as e:
            answers.append((type(e).__name__, time.monotonic() - started))
        finally:
            conn.close()
    return answers


@pytest.mark.parametrize("mode", ["silent", "headers", "body"])
def test_32_slow_clients_on_2_workers_do_not_stop_ingest_for_others(serve, tmp_path, mode):
    # A phone on a bad network, or anyone, holding connections open: 16 per worker, sending
    # nothing, or their headers or body a byte a second. Old plugins send an event once.
    server = serve(workers=2)
    slow = SlowClients(server.port, 32, mode)
    try:
        time.sleep(1)  # the server has accepted them and is waiting for their bytes
        answers = _timed_posts(server.port, 5)
        still_open = slow.open_count()
    finally:
        slow.close()
    assert [status for status, _ in answers] == [200] * 5, answers
    assert max(seconds for _, seconds in answers) < 2, answers
    assert still_open == 32, "the slow clients were cut off before the test was over"
    stored_ids = {row[0] for row in stored(tmp_path / "stats.db", "SELECT device_id FROM event")}
    assert stored_ids == {f"normal-{i}" for i in range(5)}


@pytest.mark.parametrize(
    "mode, limit", [("silent", 1), ("headers", 1), ("body", 3)], ids=["silent", "headers", "body"]
)
def test_a_client_sending_a_byte_at_a_time_is_cut_off_without_holding_the_worker(
    serve, mode, limit
):
    # The headers get `keepalive` seconds, the body `timeout` seconds (here 1 and 3); the one
    # worker answers others meanwhile, and is not killed for it.
    server = serve(workers=1, GUNICORN_CMD_ARGS="--keep-alive 1 --timeout 3")
    slow = SlowClients(server.port, 4, mode, interval=0.25)
    try:
        started = time.monotonic()
        answers = _timed_posts(server.port, 3)
        while slow.open_count() and time.monotonic() - started < 10:
            time.sleep(0.05)
        cut_after = time.monotonic() - started
        left_open = slow.open_count()
    finally:
        slow.close()
    assert [status for status, _ in answers] == [200] * 3, answers
    assert left_open == 0, f"{left_open} slow clients still open after {cut_after:.1f} s"
    assert limit - 0.2 < cut_after < limit + 2
    log = server.log()
    assert "WORKER TIMEOUT" not in log
    assert "Traceback" not in log


# -- long reads beside ingest --------------------------------------------------------------------

FLOOD_APP = "com.flood.app"


def _failure_flood(db, n: int) -> None:
    """A database whose app FLOOD_APP has n made-up failure breakdowns of today in failure_day,
    as the fold would leave them: what a read of its failures scans (about 1 s per 100,000)."""
    from capgo_stats.store import SQLiteStore

    SQLiteStore(str(db)).ensure_schema()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?)"
            " INSERT INTO failure_day (app_id, day, action, bundle, platform, plugin_version,"
            " version_os, prod, count)"
            " SELECT ?, ?, 'update_fail', 'v' || n, 'android', '8.' || n, n || '.0', 1, 1 FROM i",
            (n, FLOOD_APP, protocol.now_ms() // protocol.DAY_MS),
        )
    conn.close()


def test_a_post_is_answered_while_a_long_read_runs_on_the_same_single_worker(serve, tmp_path):
    # Under gevent a read that held the event loop held every POST of its worker until it ended.
    db = tmp_path / "stats.db"
    _failure_flood(db, 300_000)
    server = serve(db=db, workers=1, STATS_READ_TIMEOUT_MS="0")
    read = {}

    def long_read():
        started = time.monotonic()
        read["status"] = server.request("GET", f"/stats/failures?app_id={FLOOD_APP}")[0]
        read["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=long_read)
    reader.start()
    time.sleep(0.3)  # the read has begun
    answers = _timed_posts(server.port, 5, timeout=30)
    reader.join(timeout=60)
    assert read["status"] == 200
    assert read["seconds"] > 1.5, "the read was too short to tell: make the flood bigger"
    assert [status for status, _ in answers] == [200] * 5, answers
    assert max(seconds for _, seconds in answers) < 0.5, (answers, read)


def test_a_read_past_stats_read_timeout_ms_is_stopped_and_answers_503_at_once(serve, tmp_path):
    db = tmp_path / "stats.db"
    _failure_flood(db, 300_000)  # about 3 s of reading, unbounded
    server = serve(db=db, workers=1, STATS_READ_TIMEOUT_MS="300")
    started = time.monotonic()
    status, _, body = server.request("GET", f"/stats/failures?app_id={FLOOD_APP}")
    took = time.monotonic() - started
    assert (status, body["error"]) == (503, "read_timeout")
    assert took < 1.5, f"the read was stopped after {took:.1f} s, not at its 0.3 s deadline"
    answers = _timed_posts(server.port, 3)
    assert [status for status, _ in answers] == [200] * 3, answers
    assert "Traceback" not in server.log()
