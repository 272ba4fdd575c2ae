"""The `flask` commands of capgo-stats."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

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


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(init_db_command)
    app.cli.add_command(forget_device_command)
    app.cli.add_command(prune_command)
