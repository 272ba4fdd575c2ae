"""The web layer: blueprints for ingest, the JSON reads, the dashboard and the ops routes, and
what every request passes through (access, the error handler, the request log)."""

from __future__ import annotations

from flask import Flask

from capgo_stats.web import access, context, dashboard, errors, ingest, ops, reads, requestlog


def init_app(app: Flask) -> None:
    """Register every route and the request hooks on the app."""
    errors.init_app(app)
    access.init_app(app)
    for blueprint in (ingest.bp, reads.bp, dashboard.bp, ops.bp):
        app.register_blueprint(blueprint)
    requestlog.init_app(app)
    app.teardown_request(context.end_read_deadline)
