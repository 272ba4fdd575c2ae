"""The fold: rollups are derived from the raw events, in batches, whatever the split, and every
read sees every event answered 200."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from capgo_stats import counting, fold, protocol
from support.client import post_ok
from support.old_schema import old_database
from support.payloads import event

HOUR, DAY = 3_600_000, 86_400_000
NOW = protocol.now_ms()
DERIVED = [*counting.COUNTS, "device", "device_day", "version_device", "adoption_device"]
ROOT = Path(__file__).resolve().parents[1]


def derived(store):
    """Every derived table, as sorted rows (zero counts left out: nothing reads them)."""
    tables = {}
    for table in DERIVED:
        count = counting.COUNTS.get(table, (None,))[-1]
        where = f" WHERE {count} <> 0" if count else ""
        tables[table] = [tuple(r.values()) for r in store.query(f"SELECT * FROM {table}{where}")]
        tables[table].sort()
    return tables


def new_app(tmp_path_factory, **settings_):
    """A fresh app on its own database."""
    return create_app({"STATS_DB": str(tmp_path_factory.mktemp("db") / "s.db"), **settings_})


ACTIONS = ["set", "set_fail", "download_complete", "app_moved_to_foreground"]
ACTIONS += ["download_zip_start", "app_crash", "app_launch_ready"]
stories = st.lists(
    st.tuples(
        st.sampled_from(["com.a", "com.b"]),
        st.sampled_from(["d1", "d2", "d3"]),
        st.sampled_from(ACTIONS),
        st.sampled_from(["ios", "android"]),
        st.sampled_from(["1.0.0", "1.1.0", "1.1.0:www/a.js", "builtin", ""]),
        st.sampled_from(["", "1.0.0", "1.1.0"]),
        st.booleans(),
        st.one_of(st.integers(0, 3 * HOUR), st.integers(min_value=0, max_value=3 * DAY)),
    ),
    min_size=1,
    max_size=40,
)


def bodies(story):
    """The events of a story as the plugin sends them."""
    return [
        event(app_id=app, device_id=device, action=action, platform=platform,
              version_name=version, old_version_name=old, is_prod=prod, timestamp=NOW - ago,
              plugin_version="8.51.14", metadata={"duration_ms": str(ago % 5000)})
        for app, device, action, platform, version, old, prod, ago in story
    ]  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=stories, sizes=st.lists(st.integers(min_value=1, max_value=7), min_size=1))
def test_folding_any_split_of_the_events_gives_the_rollups_of_folding_them_at_once(
    tmp_path_factory, story, sizes
):
    at_once, split = new_app(tmp_path_factory), new_app(tmp_path_factory)
    post_ok(at_once.test_client(), bodies(story))
    post_ok(split.test_client(), bodies(story))
    fold.catch_up(at_once.extensions["store"])
    store, n = split.extensions["store"], 0
    while store.pending():
        store.fold(counting.fold, sizes[n % len(sizes)])
        n += 1
    assert derived(split.extensions["store"]) == derived(at_once.extensions["store"])


def recount(store):
    """Events per (app, day, action, bundle, platform, prod), straight from the raw events."""
    rows = store.query(
        "SELECT app_id, at / 86400000 AS day, action, bundle, platform,"
        " is_prod AND NOT is_emulator AS prod, count(*) AS n FROM event GROUP BY 1, 2, 3, 4, 5, 6"
    )
    return sorted(tuple(r.values()) for r in rows)


def rollup(store, table="rollup_day"):
    """A rollup's rows, as recount() gives them."""
    rows = store.query(f"SELECT app_id, day, action, bundle, platform, prod, count FROM {table}")
    return sorted(tuple(r.values()) for r in rows if r["count"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=stories, resent=st.integers(min_value=0, max_value=10), forget=st.booleans())
def test_the_rollups_always_equal_a_recount_of_every_event_ever_stored(
    tmp_path_factory, story, resent, forget
):
    app = new_app(tmp_path_factory)
    client, store = app.test_client(), app.extensions["store"]
    sent = bodies(story)
    post_ok(client, sent[: len(sent) // 2])
    fold.catch_up(store)
    post_ok(client, sent[len(sent) // 2 :] + sent[:resent])  # resends are stored once
    expected = recount(store)  # every event stored, before any is deleted
    if forget:
        fold.forget_device(store, ["d1"], [])  # the rollups keep the counts of its events
    fold.prune(store, NOW - DAY)  # and keep those of the pruned raw events
    assert rollup(store) == expected


def test_two_workers_on_one_database_read_each_others_writes_at_once(tmp_path):
    path = str(tmp_path / "shared.db")
    writer, reader = create_app({"STATS_DB": path}), create_app({"STATS_DB": path})
    for n in range(1, 4):
        post_ok(writer.test_client(), [event(device_id=f"d{n}", timestamp=NOW - n)])
        counts = reader.test_client().get("/stats/counts").json["counts"]
        assert counts == [{"app_id": "com.example.app", "action": "set", "count": n}]
        versions = reader.test_client().get("/stats/versions?app_id=com.example.app").json
        assert versions["versions"][0]["installs"] == n


@pytest.mark.parametrize(
    "url", ["/stats/counts", "/stats/versions", "/stats/timeline", "/stats/failures",
            "/stats/summary", "/", "/metrics"],
)  # fmt: skip
def test_every_read_folds_what_is_pending_first(client, app, url):
    post_ok(client, [event(timestamp=NOW - 1)])
    store = app.extensions["store"]
    assert store.pending() == 1
    assert client.get(url).status_code == 200
    assert store.pending() == 0


def test_flask_counts_counts_an_event_nothing_has_folded_yet(client, runner):
    post_ok(client, [event(timestamp=NOW - 1)])
    result = runner.invoke(args=["counts"])
    assert result.exit_code == 0, result.output
    assert "com.example.app" in result.output and result.output.rstrip().endswith("1")


def test_the_backlog_shows_in_healthz_and_metrics_and_flask_fold_clears_it(client, runner, app):
    post_ok(client, [event(device_id=f"d{i}", timestamp=NOW - i) for i in range(3)])
    assert client.get("/healthz").json["pending_events"] == 3
    result = runner.invoke(args=["fold"])
    assert result.exit_code == 0 and "Folded 3 events" in result.output
    assert client.get("/healthz").json["pending_events"] == 0
    post_ok(client, [event(device_id="late", timestamp=NOW)])
    assert "capgo_stats_fold_pending_events 1\n" in client.get("/metrics").get_data(as_text=True)


def test_the_server_folds_in_the_background_without_any_read(tmp_path):
    app = create_app({"STATS_DB": str(tmp_path / "bg.db"), "STATS_FOLD_INTERVAL_S": 0.05})
    post_ok(app.test_client(), [event(device_id=f"d{i}", timestamp=NOW - i) for i in range(5)])
    store, deadline = app.extensions["store"], time.monotonic() + 5
    while store.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.pending() == 0


def test_prune_never_deletes_an_event_the_fold_has_not_counted(app, client):
    store = app.extensions["store"]
    post_ok(client, [event(device_id=f"d{i}", timestamp=NOW - 20 * DAY) for i in range(4)])
    assert store.prune(NOW - DAY) == 0  # the store alone: nothing is folded, nothing goes
    assert fold.prune(store, NOW - DAY) == 4  # the fold first, then the prune
    assert client.get("/stats/counts").json["counts"][0]["count"] == 4


def test_rebuild_recomputes_the_held_period_and_keeps_pruned_history(app, client, runner):
    store = app.extensions["store"]
    post_ok(client, [event(device_id=f"old{i}", timestamp=NOW - 30 * DAY) for i in range(3)])
    post_ok(client, [event(device_id=f"new{i}", timestamp=NOW - i * HOUR) for i in range(5)])
    fold.prune(store, NOW - 10 * DAY)
    before = derived(store)
    # a counting rule that changed: the stored rollups of the held period no longer agree
    with store.transaction() as conn:
        conn.execute("UPDATE rollup_day SET count = count + 100 WHERE day > ?", (NOW // DAY - 5,))
        conn.execute("UPDATE rollup_hour SET count = 0 WHERE hour > ?", (NOW // HOUR - 99,))
    result = runner.invoke(args=["rebuild-rollups", "--yes"])
    assert result.exit_code == 0, result.output
    assert "from 5 raw events" in result.output
    assert derived(store) == before
    # the 3 pruned events still count, from the rollups kept as they were
    assert client.get("/stats/counts").json["counts"][0]["count"] == 8


def test_a_version_4_database_opens_with_every_report_as_a_fresh_one_gives(tmp_path):
    """Schema 4 kept its rollups with triggers: the migration keeps them and folds nothing."""
    story = [
        event(app_id=("com.a", "com.b")[i % 2], device_id=f"D{i % 9}",
              action=("set", "set_fail", "download_complete", "app_moved_to_foreground")[i % 4],
              platform=("ios", "android")[i % 3 == 0], version_name=f"1.{i % 3}.0",
              old_version_name=f"1.{(i + 1) % 3}.0", plugin_version=("6.10.3", "8.51.14")[i % 2],
              is_prod=i % 7 != 0, timestamp=NOW - i * 3 * HOUR)
        for i in range(80)
    ]  # fmt: skip
    old_database(tmp_path / "v4.db", 4, story)
    migrated = create_app({"STATS_DB": str(tmp_path / "v4.db")})
    fresh = create_app({"STATS_DB": str(tmp_path / "fresh.db")})
    post_ok(fresh.test_client(), story)
    fold.catch_up(fresh.extensions["store"])
    assert migrated.extensions["store"].pending() == 0  # every event was counted already
    assert derived(migrated.extensions["store"]) == derived(fresh.extensions["store"])
    urls = [f"/stats/{r}?app_id={a}" for r in ("versions", "failures", "summary", "timeline")
            for a in ("com.a", "com.b")] + ["/stats/counts", "/?app_id=com.a"]  # fmt: skip
    for url in urls:
        old, new = migrated.test_client().get(url), fresh.test_client().get(url)
        assert old.get_data() == new.get_data(), url
    # the migrated events keep their dedupe: a resend is not stored again
    post_ok(migrated.test_client(), story[:5])
    assert migrated.extensions["store"].query("SELECT count(*) AS n FROM event") == [{"n": 80}]


KILLED_FOLDER = """
from capgo_stats import counting, settings
from capgo_stats.store import open_store
store = open_store(settings.load())  # the store STATS_DB or STATS_DATABASE_URL names
print("ready", flush=True)
while store.fold(counting.fold, 37):
    pass
"""


@pytest.mark.slow
def test_a_fold_killed_at_any_moment_loses_nothing_and_counts_nothing_twice(database, tmp_path):
    killed, clean = (
        create_app(database),
        create_app({"STATS_DB": str(tmp_path / "clean.db")}),
    )
    env = {**os.environ, **{name: str(value) for name, value in database.items()}}
    actions = ("set", "set_fail", "app_moved_to_foreground")
    sent = [
        event(device_id=f"d{i % 50}", action=actions[i % 3], version_name=f"1.{i % 4}.0",
              old_version_name=f"1.{(i + 1) % 4}.0", timestamp=NOW - i * 97_000)
        for i in range(6000)
    ]  # fmt: skip
    for start in range(0, len(sent), 200):
        post_ok(killed.test_client(), sent[start : start + 200])
        post_ok(clean.test_client(), sent[start : start + 200])
    store, kills = killed.extensions["store"], 0
    for delay in (0.05, 0.1, 0.02, 0.15, 0.07, 0.2, 0.03):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_FOLDER], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE)  # fmt: skip
        proc.stdout.readline()  # it has opened the store: let it fold for `delay`
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kills += 1
        if not store.pending():
            break
    assert kills >= 2 and store.pending() < len(sent), "no kill landed while folding"
    fold.catch_up(store)
    fold.catch_up(clean.extensions["store"])
    assert derived(store) == derived(clean.extensions["store"])
    store.close()


@pytest.mark.parametrize("delete", ["forget", "prune"])
def test_an_event_stored_after_the_newest_events_were_deleted_is_still_counted(app, client, delete):
    store = app.extensions["store"]
    old = NOW - 20 * DAY
    post_ok(client, [event(device_id=f"d{i}", timestamp=old + i) for i in range(3)])
    fold.catch_up(store)  # position: the newest event's id
    if delete == "forget":
        fold.forget_device(store, ["d2"], [])  # the newest event goes
    else:
        fold.prune(store, NOW - DAY)  # all of them go
    post_ok(client, [event(device_id="late", timestamp=NOW)])  # SQLite may give it an old id
    counts = client.get("/stats/counts").json["counts"]
    assert sum(c["count"] for c in counts) == 4  # 3 kept by the rollups, and the late one
    assert client.get("/stats/devices/late").status_code == 200


@pytest.mark.slow
def test_ingest_gets_its_turn_while_a_read_folds_a_large_backlog(tmp_path):
    path = str(tmp_path / "busy.db")
    reader, writer = create_app({"STATS_DB": path}), create_app({"STATS_DB": path})
    backlog = [event(device_id=f"d{i % 3000}", timestamp=NOW - i) for i in range(40_000)]
    for start in range(0, len(backlog), 1000):
        post_ok(writer.test_client(), backlog[start : start + 1000])
    store, waits = reader.extensions["store"], []
    folding = threading.Thread(target=fold.catch_up, args=(store,))
    started = time.perf_counter()
    folding.start()
    client = writer.test_client()
    while folding.is_alive():
        sent = time.perf_counter()
        post_ok(client, [event(device_id="live", timestamp=NOW + len(waits))])
        waits.append(time.perf_counter() - sent)
    took = time.perf_counter() - started
    assert len(waits) >= 3, "the fold ended before ingest could try"
    # Each post waits for at most one fold batch, never for the whole backlog.
    assert max(waits) < took / 3, (max(waits), took)


def test_a_post_does_not_wait_while_a_fold_works_out_its_deltas(tmp_path):
    path = str(tmp_path / "s.db")
    folder = create_app({"STATS_DB": path, "STATS_FOLD_INTERVAL_S": 0})
    poster = create_app({"STATS_DB": path, "STATS_BUSY_TIMEOUT_MS": 0})  # no wait for a lock
    post_ok(poster.test_client(), [event(device_id=f"d{i}", timestamp=NOW - i) for i in range(5)])
    answers = []

    def fold_and_post(rows, *states):
        answers.append(poster.test_client().post("/stats", json=event(device_id="live")))
        return counting.fold(rows, *states)

    assert folder.extensions["store"].fold(fold_and_post) == 5
    assert [answer.status_code for answer in answers] == [200]
    counts = folder.test_client().get("/stats/counts").json["counts"]
    assert counts == [{"app_id": "com.example.app", "action": "set", "count": 6}]


@pytest.mark.parametrize("meanwhile", ["fold", "forget", "prune", "rebuild"])
def test_a_fold_whose_inputs_changed_while_it_worked_counts_as_if_it_started_after(
    tmp_path_factory, meanwhile
):
    first, other = new_app(tmp_path_factory), new_app(tmp_path_factory)
    rival = create_app({"STATS_DB": first.config["STATS_DB"]})  # another process, same file
    sent = [event(device_id=f"d{i % 3}", timestamp=NOW - i * HOUR) for i in range(6)]
    for app in (first, other):
        post_ok(app.test_client(), sent)
    steps = {  # the store's own steps: forget-device here deletes events not folded yet
        "fold": lambda store: fold.catch_up(store),
        "forget": lambda store: store.forget_device(["d1"], [], counting.unfold_devices),
        "prune": lambda store: fold.prune(store, NOW - 2 * HOUR),
        "rebuild": lambda store: fold.rebuild(store),
    }

    def interrupted(rows, *states):
        if not interrupted.done:
            interrupted.done = True
            steps[meanwhile](rival.extensions["store"])
        return counting.fold(rows, *states)

    interrupted.done = False
    first.extensions["store"].fold(interrupted)
    fold.catch_up(first.extensions["store"])
    steps[meanwhile](other.extensions["store"])  # the same, one step after the other
    fold.catch_up(other.extensions["store"])
    assert derived(first.extensions["store"]) == derived(other.extensions["store"])


def wal_pages(app):
    """The size of the database's write-ahead log, in pages (it is reused, not shrunk)."""
    return os.path.getsize(app.config["STATS_DB"] + "-wal") // 4096


def post_many(client, n, start=0):
    """n POSTs of 5 events each, every event new."""
    for i in range(start, start + n):
        post_ok(client, [event(device_id=f"d{i}", timestamp=NOW - 5 * i - k) for k in range(5)])


def test_posts_leave_the_log_to_the_background_fold_which_copies_it_into_the_database(tmp_path):
    app = create_app({"STATS_DB": str(tmp_path / "s.db"), "STATS_FOLD_INTERVAL_S": 3600})
    client = app.test_client()
    # About 6 pages a POST. The job's first round, at start, may come late and start the log
    # again once: after half of these POSTs at worst, which still leaves about 3,000 pages.
    post_many(client, 900)
    grown = wal_pages(app)
    assert grown > 2000  # SQLite's own checkpoint, on a commit, comes at 1,000 pages
    app.extensions["store"].upkeep()
    post_many(client, 300, start=900)
    assert wal_pages(app) <= grown  # the log was copied, so it started again from its head


def test_without_the_background_fold_posts_still_copy_the_log_themselves(tmp_path):
    app = create_app({"STATS_DB": str(tmp_path / "s.db"), "STATS_FOLD_INTERVAL_S": 0})
    post_many(app.test_client(), 1200)
    assert wal_pages(app) < 1100
