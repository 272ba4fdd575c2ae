"""The `flask` commands of capgo-stats."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from events import now_ms
from store import DAY_MS, day_of


@click.command("init-db")
@click.confirmation_option(prompt="This deletes every stored event. Recreate the database?")
@with_appcontext
def init_db_command() -> None:
    """Delete all data and recreate the database from schema.sql."""
    store = current_app.extensions["store"]
    store.reset()
    click.echo(f"Initialized the database at {store.path}.")


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


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(prune_command)
