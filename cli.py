"""The `flask` commands of capgo-stats."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


@click.command("init-db")
@click.confirmation_option(prompt="This deletes every stored event. Recreate the database?")
@with_appcontext
def init_db_command() -> None:
    """Delete all data and recreate the database from schema.sql."""
    store = current_app.extensions["store"]
    store.reset()
    click.echo(f"Initialized the database at {store.path}.")


def init_app(app: Flask) -> None:
    """Register the commands on the app."""
    app.cli.add_command(init_db_command)
