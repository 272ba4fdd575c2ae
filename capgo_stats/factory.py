"""create_app(), the one entry point: `flask run` and `gunicorn 'app:create_app()'` find it
through app.py at the top of the repository."""

from __future__ import annotations

from typing import Any

from flask import Flask

from capgo_stats import alerts, cli, jobs, protocol, settings, web
from capgo_stats.store import open_store


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create the app: settings, store, routes, commands and background work."""
    app = Flask("capgo_stats")  # the package: its templates, its logger name
    app.config.update(settings.load(test_config))
    app.config["MAX_CONTENT_LENGTH"] = app.config["STATS_MAX_BODY"]
    app.json.sort_keys = False

    store = open_store(app.config)
    mark = protocol.secret_mark(app.config["STATS_HASH_SECRET"])
    try:
        kept = store.remember("hash_secret", mark, replace=app.config["STATS_HASH_SECRET_CHANGED"])
        settings.check_hash_secret(kept, mark, store.path)
    except BaseException:
        store.close()  # a refused start keeps no connection open
        raise
    app.extensions["store"] = store
    app.extensions["actions"] = protocol.allowed_actions(app.config["STATS_EXTRA_ACTIONS"])
    app.extensions["app_ids"] = protocol.names(app.config["STATS_APP_IDS"]) or None

    web.init_app(app)
    cli.init_app(app)
    running = app.extensions["jobs"] = []  # each job's stop event
    if app.config["STATS_FOLD_INTERVAL_S"]:
        running.append(jobs.start_folding(store, app.config["STATS_FOLD_INTERVAL_S"]))
    limits = settings.alert_limits(app.config)
    if limits:
        stop = jobs.start_alerts(
            store,
            alerts.Limits(**limits),
            app.config["STATS_ALERT_WEBHOOK"].strip(),
            app.config["STATS_ALERT_SECRET"],
            app.config["STATS_ALERT_INTERVAL_S"],
        )
        running.append(stop)
    if app.config["STATS_RETENTION_DAYS"]:
        running.append(jobs.start_retention(store, app.config["STATS_RETENTION_DAYS"]))
    return app
