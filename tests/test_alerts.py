"""flask alerts: each new condition POSTed once, signed, remembered in the database."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from app import create_app
from capgo_stats import alerts, fold, protocol
from capgo_stats.settings import SettingError
from support.client import post_ok
from support.payloads import event

HOUR, DAY = 3_600_000, 86_400_000
NOW = protocol.now_ms()
SECRET = "alert-secret-for-tests"


class Receiver(BaseHTTPRequestHandler):
    """A webhook that keeps what it is sent, and answers the status it is told to."""

    received: list = []
    status = 204

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(Receiver.status)
        self.end_headers()

    def log_message(self, *args):
        """Quiet."""


@pytest.fixture
def webhook():
    """A webhook on loopback, its URL; what it received in Receiver.received."""
    Receiver.received, Receiver.status = [], 204
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def signed(tmp_path):
    """An app with STATS_ALERT_SECRET set, and its CLI runner."""
    app = create_app({"STATS_DB": str(tmp_path / "a.db"), "STATS_ALERT_SECRET": SECRET})
    return app.test_client(), app.test_cli_runner()


def rollout(client, failed=3, installed=1, version="2.0.0", at=NOW - HOUR):
    """Devices that failed, and devices that installed, a version."""
    post_ok(client, [event(device_id=f"f{i}", action="set_fail", version_name=version,
                           timestamp=at) for i in range(failed)]
                    + [event(device_id=f"i{i}", action="set", version_name=version,
                             timestamp=at) for i in range(installed)])  # fmt: skip


def messages():
    """The JSON messages the webhook got."""
    return [json.loads(body) for _, body in Receiver.received]


def test_a_new_condition_is_posted_once_signed_and_not_again_while_it_holds(signed, webhook):
    client, runner = signed
    rollout(client, failed=3, installed=1)  # 3 of 4 devices: Wilson 95 % from 30.06 %
    args = ["alerts", "--webhook", webhook, "--max-device-fail-rate", "0.2"]
    first = runner.invoke(args=args)
    assert first.exit_code == 0, first.output
    [(headers, body)] = Receiver.received
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Capgo-Stats-Signature"] == expected
    [message] = messages()
    assert message["condition"] == "device_fail_rate" and message["version"] == "2.0.0"
    assert (message["failed_devices"], message["devices"], message["limit"]) == (3, 4, 0.2)
    assert message["bound"] == 0.3006
    assert runner.invoke(args=args).exit_code == 0
    assert len(Receiver.received) == 1  # still holds: not sent again


def test_a_condition_that_clears_is_forgotten_and_sent_again_when_it_returns(signed, webhook):
    client, runner = signed
    rollout(client, failed=3, installed=1)
    args = ["alerts", "--webhook", webhook, "--max-device-fail-rate", "0.2"]
    runner.invoke(args=args)
    rollout(client, failed=0, installed=40)  # 3 of 44: the bound falls to 2.3 %
    cleared = runner.invoke(args=args)
    assert "CLEARED com.example.app 2.0.0 device_fail_rate" in cleared.output
    rollout(client, failed=40, installed=0, version="2.0.0", at=NOW - 1)
    runner.invoke(args=args)
    sent = [(m["condition"], m.get("resolved", False)) for m in messages()]
    assert sent == [("device_fail_rate", False), ("device_fail_rate", True),
                    ("device_fail_rate", False)]  # fmt: skip
    recovery = messages()[1]
    assert recovery["text"].startswith("RECOVERED com.example.app 2.0.0 device_fail_rate")


def test_an_app_gone_silent_and_a_version_with_issues_are_alerted(signed, webhook):
    client, runner = signed
    post_ok(client, [event(device_id=f"d{i}", action="app_crash", version_name="3.0.0",
                           timestamp=NOW - 10 * HOUR) for i in range(5)])  # fmt: skip
    args = ["alerts", "--webhook", webhook, "--silent-hours", "6", "--max-issue-rate", "0.5"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    found = {m["condition"]: m for m in messages()}
    assert set(found) == {"silent", "issue_rate"}
    assert found["silent"]["version"] is None and found["silent"]["hours_since_last_event"] >= 10
    assert (found["issue_rate"]["issue_devices"], found["issue_rate"]["devices"]) == (5, 5)


def test_a_webhook_that_fails_is_tried_again_at_the_next_check(signed, webhook):
    client, runner = signed
    rollout(client, failed=3, installed=0)
    args = ["alerts", "--webhook", webhook, "--max-device-fail-rate", "0.1"]
    Receiver.status = 500
    failed = runner.invoke(args=args)
    assert failed.exit_code == 1 and "NOT SENT" in failed.output
    Receiver.status = 204
    assert runner.invoke(args=args).exit_code == 0
    assert len(Receiver.received) == 2  # the failed one, then the retry


def test_too_few_devices_raise_no_alert_and_no_limit_is_a_usage_error(runner, client, webhook):
    rollout(client, failed=3, installed=0)
    args = ["alerts", "--webhook", webhook, "--max-device-fail-rate", "0.1", "--min-devices", "5"]
    assert runner.invoke(args=args).exit_code == 0 and Receiver.received == []
    assert runner.invoke(args=["alerts", "--webhook", webhook]).exit_code == 2
    assert runner.invoke(args=["alerts", "--webhook", "file:///etc/passwd",
                               "--silent-hours", "1"]).exit_code == 2  # fmt: skip


def test_without_a_secret_messages_are_not_signed(runner, client, webhook):
    rollout(client, failed=3, installed=0)
    runner.invoke(args=["alerts", "--webhook", webhook, "--max-device-fail-rate", "0.1"])
    [(headers, _)] = Receiver.received
    assert "X-Capgo-Stats-Signature" not in headers


def alerting_app(path, webhook, **settings_):
    """An app whose server checks the alert limits by itself every second."""
    config = {"STATS_DB": str(path), "STATS_ALERT_WEBHOOK": webhook, "STATS_ALERT_INTERVAL_S": 1}
    return create_app({**config, "STATS_ALERT_SILENT_HOURS": "1", **settings_})


def wait_for(condition, seconds=8.0):
    """Poll until condition() is true or the time is up; its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.mark.slow
def test_the_server_checks_the_alert_settings_by_itself_in_one_process_at_a_time(tmp_path, webhook):
    path = tmp_path / "a.db"
    create_app({"STATS_DB": str(path)}).test_client().post(
        "/stats", json=[event(timestamp=NOW - 3 * HOUR)]
    )
    servers = [alerting_app(path, webhook, STATS_ALERT_SECRET=SECRET) for _ in range(2)]
    try:
        assert wait_for(lambda: Receiver.received)
        time.sleep(2.5)  # two more checks' worth: the condition still holds, nothing is resent
        [(headers, body)] = Receiver.received  # once, though two servers check
        assert json.loads(body)["condition"] == "silent"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Capgo-Stats-Signature"] == expected
    finally:
        for server in servers:
            for stop in server.extensions["jobs"]:
                stop.set()


@pytest.mark.parametrize(
    "settings_, message",
    [
        ({"STATS_ALERT_SILENT_HOURS": ""}, "no limit is"),
        ({"STATS_ALERT_MAX_ISSUE_RATE": "lots"}, "STATS_ALERT_MAX_ISSUE_RATE must be a number"),
        ({"STATS_ALERT_MAX_DEVICE_FAIL_RATE": "150%"}, "out of range"),
        ({"STATS_ALERT_WEBHOOK": "ftp://x"}, "http:// or https://"),
    ],
)
def test_alert_settings_that_cannot_work_stop_the_start(tmp_path, settings_, message):
    with pytest.raises(SettingError, match=message):
        alerting_app(tmp_path / "a.db", "http://127.0.0.1:9/hook", **settings_)
    assert not (tmp_path / "a.db").exists()


def test_a_check_judges_the_100_apps_with_the_most_events_and_those_with_an_alert(app):
    store = app.extensions["store"]
    real = [event(app_id="com.real.app", device_id=f"d{i}", timestamp=NOW) for i in range(5)]
    flood = [event(app_id=f"flood.{i:05d}", device_id="x", timestamp=NOW) for i in range(1_500)]
    client = app.test_client()
    for start in range(0, len(flood), 500):
        post_ok(client, flood[start : start + 500])
    post_ok(client, real)
    fold.catch_up(store)  # as flask alerts does first
    store.raise_alert(("flood.01499", "", "silent"), NOW)  # held: judged whatever its rank
    found = alerts.conditions(store, alerts.Limits(silent_hours=1), NOW + 10 * HOUR)
    apps = {app_id for app_id, _, _ in found}
    assert len(apps) == alerts.ALERT_APPS + 1
    assert "com.real.app" in apps and "flood.01499" in apps
