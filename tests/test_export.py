"""`flask export` and GET /stats/events.csv: every stored event out, as CSV or NDJSON."""

import csv
import io
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from capgo_stats.filters import Filters
from capgo_stats.render import export
from support.payloads import BATCH_IOS_8, event

DAY = 86_400_000


@pytest.fixture
def seeded(client):
    """Three events, timed by the device clock: two apps, one with metadata, one a day older."""
    now = int(time.time() * 1000)
    batch = [
        event(app_id="com.a", device_id="dev-2", timestamp=now - 1000, custom_id="=HYPERLINK(1)"),
        event(app_id="com.b", device_id="dev-3", timestamp=now - 500, platform="ios"),
        {**BATCH_IOS_8[1], "app_id": "com.a", "device_id": "dev-1", "timestamp": now - DAY},
    ]
    response = client.post("/stats", data=json.dumps(batch))
    assert [r["status"] for r in response.json["results"]] == ["ok", "ok", "ok"]
    return now


def run_export(runner, *args):
    """Run `flask export` and return its standard output, checking it succeeded."""
    result = runner.invoke(args=["export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode()  # as written: .stdout would turn CRLF into LF


def read_csv(text):
    """Parse CSV text into its header and its rows."""
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    return header, rows


def test_csv_export_has_one_header_row_and_one_row_per_event_by_app_oldest_first(runner, seeded):
    header, rows = read_csv(run_export(runner))
    assert header == list(export.COLUMNS)
    assert [(r[header.index("app_id")], r[header.index("device_id")]) for r in rows] == [
        ("com.a", "dev-1"),
        ("com.a", "dev-2"),
        ("com.b", "dev-3"),
    ]


def test_export_groups_events_by_app_before_ordering_them_by_time(client, runner):
    now = int(time.time() * 1000)
    batch = [
        event(app_id="com.b", device_id="b-old", timestamp=now - 3000),
        event(app_id="com.a", device_id="a-new", timestamp=now - 1000),
        event(app_id="com.a", device_id="a-old", timestamp=now - 2000),
    ]
    client.post("/stats", data=json.dumps(batch))
    lines = run_export(runner, "--format", "ndjson").splitlines()
    assert [json.loads(line)["device_id"] for line in lines] == ["a-old", "a-new", "b-old"]


def test_csv_export_writes_stored_values_as_text_and_null_as_an_empty_cell(runner, seeded, rows):
    header, lines = read_csv(run_export(runner))
    first = dict(zip(header, lines[0], strict=True))
    stored = rows("SELECT * FROM event WHERE device_id = 'dev-1'")[0]
    assert first["at"] == str(stored["at"]) == str(seeded - DAY)
    assert first["time"] == export.iso_time(seeded - DAY)
    assert first["time"].endswith("Z")
    assert first["metadata"] == '{"duration_ms":"450","source":"notifyAppReady"}'
    assert first["is_prod"] == "1" and first["is_emulator"] == "0"
    assert first["old_version_name"] == ""  # NULL
    assert first["version_name"] == first["bundle"] == "1.2.3"


@pytest.mark.parametrize("danger", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote(
    client, runner, danger
):
    client.post("/stats", json=event(custom_id="x", version_name=danger, platform="android"))
    header, rows = read_csv(run_export(runner))
    row = dict(zip(header, rows[0], strict=True))
    assert row["version_name"] == "'" + danger
    assert row["custom_id"] == "x"  # a plain cell is left as it is


FORMULA_START = ("=", "+", "-", "@")


def pieces(text, separator):
    """The cells a spreadsheet that splits on `separator` makes of our CSV text.

    Excel in many locales and LibreOffice split a file on ";" (or a tab); our quotes open
    mid-cell for them, so they honour none: every separator and line break starts a new cell,
    which may open with spaces (trimmed) or a quote (taken as quoting).
    """
    for line in text.replace("\r", "\n").split("\n"):
        for cell in line.split(separator):
            yield cell.lstrip(' "')


# (what the device sent, how the CSV cell reads back): the formula after each separator or line
# break gets the single quote, just before it; the rest of the cell is left as it is.
SEPARATED = [
    ("x;=1+1", "x;'=1+1"),
    ("x,=1+1", "x,'=1+1"),
    ("x\t=1+1", "x\t'=1+1"),
    ("x\n@SUM(A1)", "x\n'@SUM(A1)"),
    ("x\r\n+1", "x\r\n'+1"),
    ("x; =1;y", "x; '=1;y"),
    ('x;"=1"', 'x;"\'=1"'),
    ("a;-1;b;+2", "a;'-1;b;'+2"),
    ("=a;=b", "'=a;'=b"),
]


@pytest.mark.parametrize("danger, written", SEPARATED, ids=[d for d, _ in SEPARATED])
def test_a_formula_after_a_separator_inside_a_csv_cell_gets_a_quote_too(
    client, runner, danger, written
):
    client.post("/stats", json=event(custom_id="x", version_name=danger, version_build="a;b c,d"))
    text = run_export(runner)
    header, rows = read_csv(text)
    row = dict(zip(header, rows[0], strict=True))
    assert row["version_name"] == written
    assert row["version_build"] == "a;b c,d"  # separators without a formula are left alone
    for separator in (",", ";", "\t"):  # and no spreadsheet finds a formula anywhere
        assert not [p for p in pieces(text, separator) if p.startswith(FORMULA_START)]


def test_csv_cells_with_commas_quotes_and_newlines_survive_a_round_trip(client, runner):
    tricky = 'a,b "c"\nd'
    client.post("/stats", json=event(version_build=tricky))
    header, rows = read_csv(run_export(runner))
    assert rows[0][header.index("version_build")] == tricky


def test_ndjson_export_is_one_object_per_line_with_metadata_as_an_object(runner, seeded):
    lines = run_export(runner, "--format", "ndjson").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["device_id"] for r in records] == ["dev-1", "dev-2", "dev-3"]
    assert list(records[0]) == list(export.COLUMNS)
    assert records[0]["metadata"] == {"duration_ms": "450", "source": "notifyAppReady"}
    assert records[0]["is_prod"] is True and records[0]["is_emulator"] is False
    assert records[0]["old_version_name"] is None
    assert records[1]["metadata"] is None
    assert records[1]["custom_id"] == "=HYPERLINK(1)"  # NDJSON is exact: no quote added


def test_export_filters_by_app_id_since_and_until(runner, seeded):
    def devices(*args):
        return [json.loads(line)["device_id"] for line in run_export(runner, *args).splitlines()]

    since = export.iso_time(seeded - 750)
    assert devices("--format", "ndjson", "--app-id", "com.a") == ["dev-1", "dev-2"]
    assert devices("--format", "ndjson", "--since", since) == ["dev-3"]
    assert devices("--format", "ndjson", "--until", since) == ["dev-1", "dev-2"]
    assert devices("--format", "ndjson", "--app-id", "com.a", "--since", since) == []


def test_an_empty_export_is_the_header_alone_in_csv_and_nothing_in_ndjson(runner):
    assert run_export(runner) == ",".join(export.COLUMNS) + "\r\n"
    assert run_export(runner, "--format", "ndjson") == ""


def test_export_out_writes_the_file_and_nothing_to_stdout(runner, seeded, tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "events.ndjson"
    result = runner.invoke(args=["export", "--format", "ndjson", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert len(out.read_text().splitlines()) == 3
    assert list(out.parent.iterdir()) == [out]  # no partial file left behind


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--since", "yesterday"], "--since"),
        (["--until", "2026-13-01"], "--until"),
        (["--format", "xml"], "--format"),
    ],
)
def test_a_bad_export_option_exits_2_and_writes_no_file(runner, seeded, tmp_path, args, flag):
    out = tmp_path / "events.csv"
    result = runner.invoke(args=["export", "--out", str(out), *args])
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert not out.exists()


def test_export_out_into_a_missing_folder_exits_2_with_a_clear_message(runner, tmp_path):
    result = runner.invoke(args=["export", "--out", str(tmp_path / "nowhere" / "events.csv")])
    assert result.exit_code == 2
    assert "Invalid value for '--out'" in result.output
    assert "No such file or directory" in result.output


LIVE_SPELLINGS = {
    "relative": lambda tmp: "stats.db",
    "dotted": lambda tmp: "./sub/../stats.db",
    "absolute": lambda tmp: str(tmp / "stats.db"),
    "symlink": lambda tmp: str(_link(tmp, "link.db", os.symlink)),
    "hard link": lambda tmp: str(_link(tmp, "hard.db", os.link)),
    "wal": lambda tmp: "stats.db-wal",
    "shm": lambda tmp: str(tmp / "stats.db-shm"),
    "journal": lambda tmp: "stats.db-journal",
}


def _link(tmp, name, make):
    """A second name for the live database, made by os.symlink or os.link."""
    make(tmp / "stats.db", tmp / name)
    return tmp / name


@pytest.mark.sqlite_only
@pytest.mark.parametrize("spelling", LIVE_SPELLINGS)
def test_export_out_onto_the_live_database_exits_2_and_leaves_it_whole(
    app, runner, seeded, tmp_path, monkeypatch, spelling
):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "stats.db"
    assert str(db) == app.extensions["store"].path
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    result = runner.invoke(args=["export", "--out", LIVE_SPELLINGS[spelling](tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output
    assert "live database" in result.output
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {name: after[name] for name in before} == before  # nothing overwritten
    assert not [name for name in after if name.endswith(".partial")]
    assert app.extensions["store"].query("SELECT count(*) AS n FROM event") == [{"n": 3}]


def test_export_out_whose_partial_file_is_the_live_database_exits_2(tmp_path):
    from app import create_app

    db = tmp_path / "events.csv.partial"  # the export writes FILE.partial, then renames it
    app = create_app({"STATS_DB": str(db)})
    app.test_client().post("/stats", json=event())
    result = app.test_cli_runner().invoke(args=["export", "--out", str(tmp_path / "events.csv")])
    assert result.exit_code == 2 and "live database" in result.output, result.output
    assert app.extensions["store"].query("SELECT count(*) AS n FROM event") == [{"n": 1}]


def test_export_out_beside_the_live_database_still_works(runner, seeded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("stats.db.csv", "stats-db", "stats.db-wal.csv"):
        assert runner.invoke(args=["export", "--out", name]).exit_code == 0, name
        assert len(read_csv((tmp_path / name).read_text())[1]) == 3


def test_the_cli_and_the_route_give_the_same_filter_error(client, runner):
    api = client.get("/stats/events.csv?since=yesterday").json["message"]
    result = runner.invoke(args=["export", "--since", "yesterday"])
    assert api in " ".join(result.output.split())


def test_events_csv_is_streamed_and_matches_the_cli_export(client, runner, seeded):
    response = client.get("/stats/events.csv?app_id=com.a")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="events.csv"'
    assert response.headers["X-Export-Format"] == "1"
    assert response.get_data(as_text=True) == run_export(runner, "--app-id", "com.a")


def test_events_csv_with_a_bad_filter_is_a_400_json_error(client):
    response = client.get("/stats/events.csv?until=tomorrow")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_filter"


@pytest.mark.sqlite_only
def test_events_csv_on_a_missing_database_is_an_error_not_a_cut_file(app, client):
    Path(app.config["STATS_DB"]).unlink()
    app.testing = False  # as in production: the error is answered, not raised into the test
    response = client.get("/stats/events.csv")
    assert response.status_code >= 500
    assert set(response.json) == {"error", "message"}


def _store_events(store, n, now):
    """Write n distinct stored rows straight to the store (faster than posting them)."""
    rows = [
        (now, now, now + i, "com.example.app", f"dev-{i}", "set", "android", "1.2.3")
        + (None,) * 6
        + (0, 1, None, None, None, None, None)
        for i in range(n)
    ]
    store.write(rows, [], now)


def _export_peak(store):
    """The export's size in characters and the peak Python memory it took, in bytes."""
    tracemalloc.start()
    size = sum(len(chunk) for chunk in export.chunks(store, Filters(), "csv"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return size, peak


@pytest.mark.slow
def test_export_memory_stays_flat_however_many_events(app):
    store, now = app.extensions["store"], int(time.time() * 1000)
    _store_events(store, 5_000, now)
    small_size, small_peak = _export_peak(store)
    _store_events(store, 35_000, now + 10_000)
    big_size, big_peak = _export_peak(store)
    assert big_size > 7 * small_size
    assert big_peak < 1.5 * small_peak


def test_readme_lists_the_export_columns_in_order():
    readme = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    section = readme.split("### Export format")[1].split("\n#")[0]
    listed = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    assert listed == list(export.COLUMNS)
