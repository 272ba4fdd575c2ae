"""The dashboard at /: escaping, the app picker, definitions, and links that tell the truth."""

import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from capgo_stats import protocol, reports
from support.browser import Page
from support.client import post_ok
from support.payloads import event

NOW = protocol.now_ms()
HOUR = 3_600_000
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures.md"


def page(client, url="/"):
    response = client.get(url)
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def test_an_empty_database_shows_how_to_get_data(client):
    html = page(client)
    assert "No events yet" in html
    assert "cp stats.db.example stats.db" in html


def test_everything_a_device_sent_is_escaped_on_the_page(app, client):
    script = "<script>alert(1)</script>"
    post_ok(
        client,
        [
            event(app_id="com.x", version_name=script, action="set", timestamp=NOW - 2),
            event(app_id="com.x", version_name=script, action="unzip_fail", timestamp=NOW - 1,
                  plugin_version=script, version_os=script),
        ],
    )  # fmt: skip
    client.post("/stats", json=event(app_id="com.x", action="<b>fly</b>"))
    # Ingest refuses such an app id now; a database from before that rule may still hold one.
    row = list(protocol.validate(event(timestamp=NOW - 3), protocol.KNOWN_ACTIONS, NOW))
    row[protocol.COLUMNS.index("app_id")] = script
    app.extensions["store"].write([tuple(row)], [], NOW)
    html = page(client, "/?app_id=com.x")
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;fly&lt;/b&gt;" in html  # the refused action
    parsed = Page(html)
    assert parsed.apps == [script, "com.x"] and parsed.current_app == "com.x"
    assert parsed.row(script)["installs"] == "1"
    assert parsed.figure("failures", table="failures_by_plugin_version", plugin_version=script)
    reflected = page(client, "/?app_id=" + script)  # and what the address bar says
    assert "<script>" not in reflected and Page(reflected).current_app == script


def test_the_app_picker_lists_every_app_and_opens_the_newest(client):
    post_ok(
        client,
        [
            event(app_id="com.old", timestamp=NOW - 5 * HOUR),
            event(app_id="com.new", timestamp=NOW - HOUR),
            event(app_id="com.mid", timestamp=NOW - 2 * HOUR),
        ],
    )
    parsed = Page(page(client))
    assert parsed.apps == ["com.mid", "com.new", "com.old"]
    assert parsed.current_app == "com.new"
    assert Page(page(client, "/?app_id=com.old")).current_app == "com.old"


def normalized(text):
    return " ".join(text.split())


def test_every_figure_definition_is_on_the_page_and_in_the_readme(client):
    post_ok(client, [event(timestamp=NOW - 1)])
    html = normalized(unescape(page(client)))
    readme = normalized(FIGURES.read_text())
    for name, definition in reports.DEFINITIONS.items():
        assert normalized(definition) in html, name
        assert normalized(definition) in readme, name


def links_of(html):
    """Every figure of the page with the URL it links to."""
    found = []
    for match in re.finditer(
        r'data-figure="([^"]+)"[^>]*>(?:<[^a][^>]*>)*<a href="([^"]+)">', html
    ):
        found.append((match.group(1), unescape(match.group(2))))
    return found


def test_every_number_on_the_page_links_to_what_it_counts(client):
    post_ok(
        client,
        [
            event(action="set", version_name="1.0.0", old_version_name="builtin",
                  device_id="a", timestamp=NOW - 3 * HOUR),
            event(action="set", version_name="1.1.0", old_version_name="1.0.0",
                  device_id="a", timestamp=NOW - 2 * HOUR),
            event(action="set", version_name="1.0.0", device_id="b", timestamp=NOW - 2 * HOUR),
            event(action="set_fail", version_name="1.1.0", device_id="b", timestamp=NOW - HOUR),
            event(action="download_fail", version_name="1.1.0", device_id="c",
                  plugin_version="6.0.0", timestamp=NOW - HOUR),
            event(action="set", version_name="1.1.0", device_id="e", is_emulator=True,
                  timestamp=NOW - HOUR),
        ],
    )  # fmt: skip
    html = page(client)
    parsed = Page(html)
    figures = {a["data-figure"] for a, _ in parsed.figures}
    linked = links_of(html)
    assert figures == {name for name, _ in linked}  # every figure is a link
    for _, url in linked:
        assert urlsplit(url).path in ("/stats/events", "/stats/devices", "/stats/rejected"), url
    # and the links of counts lead to exactly that many events
    for name in ("installs", "uninstalls", "failures"):
        for version in ("1.0.0", "1.1.0"):
            [url] = [
                u
                for n, u in linked
                if n == name and f"version={version}" in u and "action" not in u
            ]
            listed = client.get(url).json["events"]
            assert len(listed) == int(parsed.row(version)[name]), (name, version, url)
    for version in ("1.0.0", "1.1.0"):  # and devices to the devices that run the version now
        [url] = [u for n, u in linked if n == "devices" and f"version={version}" in u]
        listed = client.get(url).json["devices"]
        assert len(listed) == int(parsed.row(version)["devices"]), (version, url)
    for name in ("active_1d", "active_7d", "active_30d", "devices_total"):
        [url] = [u for n, u in linked if n == name]
        assert len(client.get(url).json["devices"]) == int(parsed.figure(name)), (name, url)
    [url] = [u for n, u in linked if n == "failures" and "version=1.1.0" in u and "action" not in u]
    assert parse_qs(urlsplit(url).query)["prod"] == ["1"]  # the emulator's events left out


def test_the_refused_total_and_what_its_link_answers_agree(client):
    post_ok(client, [event(app_id="com.x", timestamp=NOW - 1)])
    client.post("/stats", json=[event(app_id="com.x", action="fly"), event(app_id="")])
    html = page(client, "/?app_id=com.x")
    [(_, url)] = [(figure, url) for figure, url in links_of(html) if figure == "refused_total"]
    shown = re.search(r'data-figure="refused_total"><a href="[^"]+">(\d+)</a>', html).group(1)
    assert int(shown) == 2  # the app's refusal and the one without an app id
    assert client.get(url).json["refused"] == 2


def test_a_dev_build_that_counted_nothing_says_why_and_links_to_include_dev(client):
    post_ok(client, [event(app_id="com.dev", is_prod=False, timestamp=NOW - i) for i in range(3)])
    html = page(client, "/?app_id=com.dev")
    assert 'data-notice="dev-only"' in html
    linked = dict(links_of(html))
    assert client.get(linked["hidden_dev_events"]).json["events"] != []
    assert re.search(r'href="/\?[^"]*include_dev=1', unescape(html))
    assert 'data-notice="dev-only"' not in page(client, "/?app_id=com.dev&include_dev=1")


def test_an_app_with_counted_events_shows_no_dev_notice(client):
    post_ok(client, [event(app_id="com.prod", timestamp=NOW - 1), event(app_id="com.prod",
            is_prod=False, device_id="dev", timestamp=NOW - 2)])  # fmt: skip
    assert 'data-notice="dev-only"' not in page(client, "/?app_id=com.prod")


# Names url_for takes as its own arguments, not as query parameters: a query that reached its
# keyword arguments used to end in a 500 or change every link (absolute, another scheme, a
# fragment); an unknown parameter was copied into every link.
FOREIGN_QUERIES = [
    "_method=POST", "endpoint=x", "values=x", "_external=1", "_anchor=x",
    "_scheme=javascript&_external=1", "other=x",
]  # fmt: skip


@pytest.mark.parametrize("query", FOREIGN_QUERIES)
def test_a_query_the_page_does_not_know_is_left_out_of_its_links(client, rows, query):
    post_ok(client, [event(app_id="com.dev", is_prod=False, timestamp=NOW - 1)])  # every link
    html = page(client, f"/?app_id=com.dev&{query}")
    hrefs = [unescape(href) for href in re.findall(r'href="([^"]*)"', html)]
    assert hrefs and all(href.startswith("/") and "#" not in href for href in hrefs), hrefs
    names = {name for href in hrefs for name in parse_qs(urlsplit(href).query)}
    assert not names & {q.split("=")[0] for q in query.split("&")}, names
    assert rows("SELECT count(*) AS n FROM event") == [{"n": 1}]


def test_the_page_keeps_its_own_filters_in_its_links(client):
    post_ok(client, [event(app_id="com.dev", is_prod=False, timestamp=NOW - 1)])
    html = page(client, "/?app_id=com.dev&platform=ios&since=2026-01-01&until=2099-01-01")
    [picker] = re.findall(r'href="(/\?[^"]*)"[^>]*data-app="com.dev"', html)
    assert parse_qs(urlsplit(unescape(picker)).query) == {
        "app_id": ["com.dev"], "platform": ["ios"], "since": ["2026-01-01"], "until": ["2099-01-01"]
    }  # fmt: skip
