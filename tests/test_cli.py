"""The `flask` commands as a whole, and `flask counts`."""

import json
import re
import time
from pathlib import Path

import click

from support.payloads import event

COMMANDS = Path(__file__).parents[1] / "docs" / "commands.md"


def registered_commands(app):
    """Every command registered on the app, by name."""
    ctx = click.Context(app.cli)
    return {name: app.cli.get_command(ctx, name) for name in app.cli.list_commands(ctx)}


def test_every_command_is_documented_in_the_readme(app):
    commands = registered_commands(app)
    assert {"init-db", "export", "counts"} <= set(commands)
    documented = set(re.findall(r"^\| `flask ([a-z-]+)", COMMANDS.read_text(), re.MULTILINE))
    assert sorted(set(commands) - documented) == []


def test_every_command_has_help_text_and_answers_help(app, runner):
    for name, command in registered_commands(app).items():
        assert command.help, f"flask {name} has no help text"
        result = runner.invoke(args=[name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output
        assert command.help.split("\n")[0] in " ".join(result.output.split())


def test_the_filter_options_have_the_same_names_everywhere(app):
    for name in ("export", "counts"):
        flags = {opt for p in registered_commands(app)[name].params for opt in p.opts}
        assert {"--app-id", "--action", "--platform", "--since", "--until"} <= flags


def seed(client):
    """Events of two apps, all sent now."""
    now = int(time.time() * 1000)
    batch = [event(app_id="com.a", timestamp=now - i) for i in range(12)]
    batch += [event(app_id="com.a", action="set_fail", timestamp=now - 20)]
    batch += [event(app_id="com.longer.name", action="download_fail", timestamp=now - 30)]
    response = client.post("/stats", data=json.dumps(batch))
    assert {r["status"] for r in response.json["results"]} == {"ok"}


def test_counts_prints_the_counts_in_aligned_columns(client, runner):
    seed(client)
    result = runner.invoke(args=["counts"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "app_id           action         count",
        "com.a            set               12",
        "com.a            set_fail           1",
        "com.longer.name  download_fail      1",
    ]


def test_counts_shows_the_same_rows_as_the_route_for_the_same_filters(client, runner):
    seed(client)
    api = client.get("/stats/counts?app_id=com.a&action=set_fail").json["counts"]
    result = runner.invoke(args=["counts", "--app-id", "com.a", "--action", "set_fail"])
    rows = [line.split() for line in result.output.splitlines()[1:]]
    assert rows == [[c["app_id"], c["action"], str(c["count"])] for c in api]


def test_counts_on_no_matching_events_says_so(client, runner):
    seed(client)
    result = runner.invoke(args=["counts", "--platform", "electron"])
    assert result.exit_code == 0
    assert result.output == "No events match.\n"


def test_counts_with_a_bad_time_exits_2_with_the_routes_message(client, runner):
    message = client.get("/stats/counts?until=2026-13-01").json["message"]
    result = runner.invoke(args=["counts", "--until", "2026-13-01"])
    assert result.exit_code == 2
    assert "Invalid value for '--until'" in result.output
    assert message in " ".join(result.output.split())


def test_counts_escapes_terminal_control_characters_in_app_ids(app, runner):
    # Refused at ingest today, but a database from before that rule can hold such an app id.
    store, now = app.extensions["store"], int(time.time() * 1000)
    row = (now, now, None, "com.\x1b[2Jevil", "d1", "set", "", "") + (None,) * 6
    store.write([row + (0, 1, None, None, None, None, None)], [], now)
    result = runner.invoke(args=["counts"])
    assert "\x1b" not in result.output
    assert "com.\\x1b[2Jevil" in result.output
