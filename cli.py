"""The `flask` commands of capgo-stats."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

import export
import filters
from events import now_ms, stored_id
from store import DAY_MS, StoreUnavailable, day_of


@click.command("init-db")
@click.confirmation_option(prompt="This deletes every stored event. Recreate the database?")
@with_appcontext
def init_db_command() -> None:
    """Delete all data and recreate the database from schema.sql."""
    store = current_app.extensions["store"]
    store.reset()
    click.echo(f"Initialized the database at {store.path}.")


@click.command("forget-device")
@click.argument("device")
@with_appcontext
def forget_device_command(device: str) -> None:
    """Delete every event of a device, given its device_id or a custom_id it sent.

    \b
    Example:
      flask forget-device 3F2504E0-4F89-41D3-9A0C-0305E82C3301
      flask forget-device someone@example.com
    """
    if not device.strip():
        raise click.BadParameter("give a device_id or custom_id, not an empty string.")
    secret = current_app.config["STATS_HASH_SECRET"]
    # Also the raw form when hashing is on: rows stored before the secret was set hold it.
    secrets = ["", secret] if secret else [""]
    device_ids = {stored_id("device_id", device, s) for s in secrets}
    custom_ids = {stored_id("custom_id", device, s) for s in secrets}
    try:
        deleted = current_app.extensions["store"].forget_device(
            sorted(i for i in device_ids if i), sorted(i for i in custom_ids if i)
        )
    except StoreUnavailable as e:
        raise click.ClickException(f"The database cannot take writes right now: {e}") from None
    click.echo(f"Deleted {deleted} event{'' if deleted == 1 else 's'} of that device.")


@click.command("prune")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Keep this many days of raw events. Default: STATS_RETENTION_DAYS.",
)
@with_appcontext
def prune_command(days: int | None) -> None:
    """Delete raw events older than N days; counts, versions and timelines keep them.

    \b
    Example, from cron every night:
        flask prune --days 90
    """
    days = days or current_app.config["STATS_RETENTION_DAYS"]
    if not days:
        raise click.UsageError("Give --days N, or set STATS_RETENTION_DAYS.")
    before = now_ms() - days * DAY_MS
    deleted = current_app.extensions["store"].prune(before)
    click.echo(f"Deleted {deleted} raw events older than {days} days (before {day_of(before)}).")


# -- ops: export and counts ----------------------------------------------------------------------

# The event filters, named as in the routes' query strings (--app-id is ?app_id=).
FILTER_OPTIONS = (
    ("app_id", "ID", "Only events of this app, e.g. com.example.app."),
    ("action", "NAME", "Only events with this action, e.g. set."),
    ("platform", "NAME", "Only events from this platform: android, ios or electron."),
    ("since", "TIME", "Event time at or after this ISO 8601 date or datetime (UTC by default)."),
    ("until", "TIME", "Event time before this instant; a bare date means the end of that day."),
)


def filter_options(command: Callable) -> Callable:
    """Add the event filter options, with the routes' names and meanings, to a command."""
    for name, metavar, help_text in reversed(FILTER_OPTIONS):
        flag = "--" + name.replace("_", "-")
        command = click.option(flag, name, metavar=metavar, help=help_text)(command)
    return command


def parse_filter_options(options: dict[str, Any]) -> dict:
    """The filters of a command's options, parsed as the routes parse their query string."""
    try:
        return filters.parse_filters(options)
    except filters.FilterError as e:
        flag = "--" + e.name.replace("_", "-")
        raise click.BadParameter(e.message, param_hint=f"'{flag}'") from None


@click.command("export")
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(export.FORMATS),
    default="csv",
    show_default=True,
    help="csv: one header row, spreadsheet-safe cells; ndjson: one JSON object per line.",
)
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to FILE (replaced only once the export is complete) instead of stdout.",
)
@with_appcontext
def export_command(fmt: str, out: str | None, **options: Any) -> None:
    """Export the stored events, by app and oldest first, as CSV or NDJSON (format 1).

    Streams in constant memory, whatever the number of events. The columns are listed in
    README.md ("Export format").

    \b
    Examples:
      flask export --since 2026-11-01 > events.csv
      flask export --format ndjson --app-id com.example.app --out events.ndjson
    """
    chunks = export.chunks(current_app.extensions["store"], parse_filter_options(options), fmt)
    if out is None:
        _write_stdout(chunks)
        return
    partial = f"{out}.partial"
    try:
        file = open(partial, "w", encoding="utf-8", newline="")
    except OSError as e:
        message = f"cannot write {out!r}: {e.strerror}."
        raise click.BadParameter(message, param_hint="'--out'") from None
    try:
        with file:
            file.writelines(chunks)
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    click.echo(f"Exported the events to {out}.", err=True)


def _write_stdout(chunks: Any) -> None:
    """Write the export to stdout; a reader that stops early (`| head`) is not an error."""
    try:
        for chunk in chunks:
            click.echo(chunk, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


@click.command("counts")
@filter_options
@with_appcontext
def counts_command(**options: Any) -> None:
    """Print the event counts by app and action, as GET /stats/counts, in aligned columns.

    \b
    Example:
      flask counts --app-id com.example.app --since 2026-11-01
    """
    rows = current_app.extensions["store"].counts(parse_filter_options(options))
    if not rows:
        click.echo("No events match.")
        return
    table = [("app_id", "action", "count")]
    table += [(_printable(r["app_id"]), _printable(r["action"]), str(r["count"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for app_id, action, count in table:
        click.echo(f"{app_id:<{widths[0]}}  {action:<{widths[1]}}  {count:>{widths[2]}}")


def _printable(text: str) -> str:
    """Text safe to print on a terminal: control characters (escape sequences) are escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(forget_device_command)
    app.cli.add_command(prune_command)
    app.cli.add_command(export_command)
    app.cli.add_command(counts_command)
