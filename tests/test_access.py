"""Access control: open on a laptop, closed where the settings say so."""

import json
import logging

import pytest
from click.testing import CliRunner

from app import create_app
from capgo_stats.web import access
from capgo_stats.web.access import OPEN_ROUTES
from support.payloads import event

TOKEN = "r3ad-t0ken"


@pytest.fixture
def locked(tmp_path):
    """An app with a read token, an ingest key and an app allowlist."""
    return create_app(
        {
            "STATS_DB": str(tmp_path / "x.db"),
            "STATS_READ_TOKEN": TOKEN,
            "STATS_INGEST_KEY": "ingest-k3y",
            "STATS_APP_IDS": " com.example.app , com.example.other,",
        }
    )


def bearer(token):
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def basic(user, password):
    """The Authorization header a browser sends after asking for a user name and password."""
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def stored(app):
    """How many events and refusals the database holds."""
    store = app.extensions["store"]
    events = store.query("SELECT count(*) AS n FROM event")[0]["n"]
    refusals = store.query("SELECT coalesce(sum(count), 0) AS n FROM refusal")[0]["n"]
    return events, refusals


def test_without_settings_reads_and_ingest_are_open(client):
    assert client.post("/stats", json=event()).status_code == 200
    assert client.get("/stats/counts").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        bearer(""),
        bearer(TOKEN + "x"),
        bearer(TOKEN[:-1]),
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        basic("me", "wrong"),
        basic(TOKEN, ""),
        {"X-Token": TOKEN},
    ],
    ids=[
        "none", "wrong", "empty", "longer", "shorter", "no scheme", "basic not encoded",
        "basic wrong password", "basic token as user", "other header",
    ],
)  # fmt: skip
def test_a_read_without_the_right_token_gets_401_json_with_www_authenticate(locked, headers):
    response = locked.test_client().get("/stats/counts", headers=headers)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert set(response.json) == {"error", "message"}
    challenges = response.headers.getlist("WWW-Authenticate")
    assert [c.split()[0] for c in challenges] == ["Bearer", "Basic"]
    assert TOKEN not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/stats/versions", "/stats/counts"])
def test_a_browser_gets_in_with_the_token_as_its_basic_password(locked, path):
    """Browsers cannot send Bearer: the 401 asks for Basic, and any user name will do."""
    response = locked.test_client().get(path, headers=basic("anyone", TOKEN))
    assert response.status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_read_with_the_token_is_answered(locked, scheme):
    response = locked.test_client().get(
        "/stats/counts", headers={"Authorization": f"{scheme} {TOKEN}"}
    )
    assert response.status_code == 200
    assert response.json == {"counts": [], "more": 0}


def test_every_route_but_the_open_ones_needs_the_read_token(locked):
    """Routes added later are covered too: this walks the app's whole URL map."""
    client = locked.test_client()
    checked = 0
    for rule in locked.url_map.iter_rules():
        if rule.rule in OPEN_ROUTES:
            continue
        path = rule.build({arg: "x" for arg in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"OPTIONS"}):
            response = client.open(path, method=method)
            assert response.status_code == 401, (method, path)
            checked += 1
    assert checked >= 2  # GET and HEAD /stats/counts at least


def test_the_liveness_check_and_ingest_stay_open_with_a_read_token(locked):
    client = locked.test_client()
    assert client.get("/stats").json == {"status": "ok"}
    assert client.head("/stats").status_code == 200
    assert client.post("/stats?key=ingest-k3y", json=event()).status_code == 200


def test_the_read_token_is_compared_in_constant_time(locked, monkeypatch):
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    locked.test_client().get("/stats/counts", headers=bearer("guess"))
    assert calls == [(b"guess", TOKEN.encode())]


@pytest.mark.parametrize(
    "query", ["", "?key=", "?key=wrong", "?key=INGEST-K3Y", "?Key=ingest-k3y", "?k=ingest-k3y"]
)
def test_ingest_without_the_right_key_gets_403_json_and_writes_nothing(locked, query):
    client = locked.test_client()
    for body in (event(), [event(), event()]):
        response = client.post("/stats" + query, data=json.dumps(body))
        assert response.status_code == 403
        assert response.json["error"] == "invalid_key"
        assert set(response.json) == {"error", "message"}
    assert stored(locked) == (0, 0)


def test_ingest_with_the_key_in_the_url_is_stored(locked):
    client = locked.test_client()
    response = client.post("/stats?key=ingest-k3y", data=json.dumps([event(), event()]))
    assert response.status_code == 200
    assert stored(locked) == (2, 0)


def test_an_app_outside_the_allowlist_is_refused_per_event_and_tallied(locked):
    client = locked.test_client()
    batch = [event(), event(app_id="com.stranger"), event(app_id="com.example.other")]
    response = client.post("/stats?key=ingest-k3y", data=json.dumps(batch))
    assert [r["status"] for r in response.json["results"]] == ["ok", "error", "ok"]
    assert response.json["results"][1]["error"] == "unknown_app"
    single = client.post("/stats?key=ingest-k3y", json=event(app_id="com.stranger"))
    assert single.status_code == 400
    assert single.json["error"] == "unknown_app"
    assert stored(locked) == (2, 2)
    tally = locked.extensions["store"].query("SELECT app_id, reason, action, count FROM refusal")
    assert tally == [
        {"app_id": "com.stranger", "reason": "unknown_app", "action": "set", "count": 2}
    ]


def _flask_run(monkeypatch, tmp_path, *args):
    """`flask run ARGS` without serving; return what it logged."""
    monkeypatch.setenv("STATS_DB", str(tmp_path / "x.db"))
    monkeypatch.setattr("flask.cli.run_simple", lambda *a, **kw: None)
    from flask.cli import cli

    result = CliRunner().invoke(cli, ["--app", "app:create_app", "run", *args])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args, token, warned",
    [
        (["--host", "0.0.0.0"], "", True),
        (["--host=::"], "", True),
        (["-h", "192.168.1.20"], "", True),
        (["--host", "0.0.0.0"], TOKEN, False),
        ([], "", False),
        (["--host", "localhost"], "", False),
        (["--host", "::1"], "", False),
    ],
)
def test_flask_run_warns_when_it_listens_beyond_loopback_without_a_read_token(
    monkeypatch, tmp_path, caplog, args, token, warned
):
    monkeypatch.setenv("STATS_READ_TOKEN", token)
    with caplog.at_level(logging.WARNING, logger="capgo_stats.app"):
        _flask_run(monkeypatch, tmp_path, *args)
    assert ("without STATS_READ_TOKEN" in caplog.text) is warned


def test_flask_run_host_from_the_environment_is_checked_too(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("FLASK_RUN_HOST", "0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="capgo_stats.app"):
        _flask_run(monkeypatch, tmp_path)
    assert "listening on 0.0.0.0 without STATS_READ_TOKEN" in caplog.text


# -- guessing the read token: a limit per client address, and a warning for a short token ----


def guess(client, token, address="198.51.100.7", path="/stats/counts"):
    """A read with a token from a client address; the response."""
    return client.get(path, headers=bearer(token), environ_base={"REMOTE_ADDR": address})


def test_after_eleven_wrong_tokens_even_the_right_one_gets_429_with_retry_after(locked):
    client = locked.test_client()
    assert [guess(client, f"guess-{i}").status_code for i in range(11)] == [401] * 11
    response = guess(client, TOKEN)
    assert response.status_code == 429
    assert response.json["error"] == "too_many_requests"
    assert set(response.json) == {"error", "message"}
    assert 1 <= int(response.headers["Retry-After"]) <= access.FAILURE_WINDOW
    assert guess(client, TOKEN, path="/").status_code == 429  # every read route


def test_a_client_that_guessed_wrong_does_not_lock_out_another_address(locked):
    client = locked.test_client()
    for i in range(12):
        guess(client, f"guess-{i}")
    assert guess(client, TOKEN, address="203.0.113.9").status_code == 200
    assert guess(client, "guess", address="203.0.113.9").status_code == 401


def test_the_right_token_from_the_start_is_never_slowed(locked):
    client = locked.test_client()
    assert {guess(client, TOKEN).status_code for _ in range(50)} == {200}


def test_a_locked_out_client_reads_again_once_the_window_has_passed(locked):
    now = [1000.0]
    locked.extensions["read_failures"].clock = lambda: now[0]
    client = locked.test_client()
    for i in range(11):
        guess(client, f"guess-{i}")
    assert guess(client, TOKEN).status_code == 429
    now[0] += access.FAILURE_WINDOW - 1
    assert guess(client, TOKEN).headers["Retry-After"] == "1"
    now[0] += 1
    assert guess(client, TOKEN).status_code == 200


def test_wrong_ingest_keys_and_the_ingest_of_a_locked_out_client_never_get_429(locked):
    client = locked.test_client()
    environ = {"REMOTE_ADDR": "198.51.100.7"}
    wrong = [client.post("/stats?key=k", json=event(), environ_base=environ) for _ in range(30)]
    assert {r.status_code for r in wrong} == {403}  # the plugin gives up on a 403, not a 429
    for i in range(12):
        guess(client, f"guess-{i}")
    assert guess(client, TOKEN).status_code == 429
    posted = client.post("/stats?key=ingest-k3y", json=event(), environ_base=environ)
    assert posted.status_code == 200
    assert client.get("/stats", environ_base=environ).status_code == 200
    assert client.get("/healthz", environ_base=environ).status_code == 200
    assert stored(locked) == (1, 0)


def test_a_read_without_any_token_is_not_counted_as_a_guess(locked):
    client = locked.test_client()
    environ = {"REMOTE_ADDR": "198.51.100.7"}
    assert {client.get("/", environ_base=environ).status_code for _ in range(20)} == {401}
    assert guess(client, TOKEN).status_code == 200  # a browser's first, unauthenticated load


def test_the_failure_table_keeps_at_most_its_size_dropping_the_oldest():
    failures = access.Failures(size=3)
    for address in ("a", "b", "c", "d"):
        for _ in range(access.MAX_FAILURES + 1):
            failures.record(address)
    assert failures.retry_after("a") is None  # dropped: the oldest
    assert all(failures.retry_after(address) for address in ("b", "c", "d"))
    assert len(failures) == 3


@pytest.mark.parametrize(
    "settings, warned",
    [
        ({"STATS_READ_TOKEN": "4821"}, ["STATS_READ_TOKEN is 4 characters"]),
        ({"STATS_INGEST_KEY": "k" * 15}, ["STATS_INGEST_KEY is 15 characters"]),
        ({"STATS_READ_TOKEN": "sh0rt", "STATS_INGEST_KEY": "4ls0"}, ["STATS_READ_TOKEN",
         "STATS_INGEST_KEY"]),
        ({"STATS_READ_TOKEN": "t" * 16, "STATS_INGEST_KEY": "k" * 40}, []),
        ({}, []),
    ],
)  # fmt: skip
def test_a_short_read_token_or_ingest_key_is_warned_about_at_start(
    tmp_path, caplog, settings, warned
):
    with caplog.at_level(logging.WARNING, logger="capgo_stats"):
        create_app({"STATS_DB": str(tmp_path / "x.db"), **settings})
    found = [r.getMessage() for r in caplog.records if "characters" in r.getMessage()]
    assert len(found) == len(warned)
    for message, expected in zip(found, warned, strict=True):
        assert expected in message and "16" in message
    assert all(r.name == "capgo_stats" for r in caplog.records if "characters" in r.getMessage())
    for secret in settings.values():
        assert secret not in caplog.text  # the warning never shows the secret
