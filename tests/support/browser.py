"""Serve the app on a loopback port and look at it with headless Chromium (Debian's chromium)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

from werkzeug.serving import make_server

from support.tools import require

# Without the background-networking flags Chromium's own connections are refused in CI.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve the app on a free 127.0.0.1 port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium with a throwaway profile; return what it printed."""
    result = subprocess.run(
        [require("chromium", "chromium"), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def dump_dom(profile: Path, url: str) -> str:
    """The page's DOM after Chromium rendered it."""
    return chromium(profile, "--dump-dom", url)


def screenshot(profile: Path, url: str, path: Path, width: int, height: int) -> Path:
    """Save a PNG of the page at a window size; return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chromium(profile, f"--screenshot={path}", f"--window-size={width},{height}", url)
    assert path.stat().st_size > 10_000, "the screenshot is blank"
    return path


class Page(HTMLParser):
    """What a user reads on the dashboard: figures by data-figure, chart bars, app links."""

    def __init__(self, html: str):
        super().__init__()
        self.figures: list[tuple[dict, str]] = []
        self.bars: dict[str, list[dict]] = {}
        self.apps: list[str] = []
        self.current_app: str | None = None
        self._open: list[list] = []  # [attrs, text parts, depth] of figures being read
        self._chart: str | None = None
        self._table: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        """Note figures, charts, bars and app links as they open."""
        attrs = dict(attrs)
        for record in self._open:
            record[2] += 1
        if tag == "table":
            self._table = attrs.get("data-table")
        if "data-figure" in attrs:
            self._open.append([{**attrs, "data-table": self._table}, [], 1])
        if tag == "figure" and "data-chart" in attrs:
            self._chart = attrs["data-chart"]
            self.bars[self._chart] = []
        if tag == "rect" and self._chart and "data-value" in attrs:
            self.bars[self._chart].append(attrs)
        if tag == "a" and "data-app" in attrs:
            self.apps.append(attrs["data-app"])
            if attrs.get("aria-current") == "page":
                self.current_app = attrs["data-app"]

    def handle_endtag(self, tag: str) -> None:
        """Close figures whose element ended."""
        if tag == "figure":
            self._chart = None
        if tag == "table":
            self._table = None
        for record in list(self._open):
            record[2] -= 1
            if record[2] == 0:
                self._open.remove(record)
                self.figures.append((record[0], " ".join("".join(record[1]).split())))

    def handle_data(self, data: str) -> None:
        """Collect the text of open figures."""
        for record in self._open:
            record[1].append(data)

    def figure(self, name: str, **attrs: str) -> str:
        """The text of the one figure with this data-figure and these data-* attributes."""
        wanted = {f"data-{k.replace('_', '-')}": v for k, v in attrs.items()}
        found = [
            text
            for a, text in self.figures
            if a["data-figure"] == name and all(a.get(k) == v for k, v in wanted.items())
        ]
        assert len(found) == 1, (name, attrs, found)
        return found[0]

    def row(self, version: str) -> dict[str, str]:
        """Every figure of the versions table's row for a version, by name."""
        return {
            a["data-figure"]: text
            for a, text in self.figures
            if a.get("data-table") == "versions" and a.get("data-version") == version
        }

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        """A self-closed element (<rect .../>) opens and closes at once."""
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)
